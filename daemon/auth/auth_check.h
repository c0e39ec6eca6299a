/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * auth_check.h - who a CONNECT's credentials say the device is, and whether they
 * verify (issue 15): an Azure SAS token, a ThingsBoard-style access token, or a user
 * name and password (scrypt).
 *
 * Which kind (docs/credentials.md, "The CONNECT check"):
 *   - the user name is an Azure user name ({hub}/{deviceId}/...) and the password
 *     starts "SharedAccessSignature ": sas;
 *   - no password (absent or empty) and the user name can be a token: token;
 *   - anything else: basic.
 * Two steps, so the slow one can leave the worker:
 *   kg_auth_check()    on the worker, with its own registry handle: parse, look up,
 *                      limiter, and for sas and token the whole verification. For
 *                      basic it returns KG_AUTH_PENDING with a job: copied inputs, no
 *                      pointer into the connection or the registry.
 *   kg_auth_job_run()  anywhere (an auth_pool thread): scrypt against the device's
 *                      primary then secondary hash; settles the limiter; wipes the
 *                      password. kg_auth_job_wipe() for a job that never runs.
 * The verdict is only about the credential: the caller then applies the same policy as
 * for X.509 devices (status, backend: kg_policy_decide() with result.device).
 */
#ifndef KTLSGATE_AUTH_CHECK_H
#define KTLSGATE_AUTH_CHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ktlsgate/compiler.h"
#include "auth/auth_conf.h"
#include "auth/auth_limit.h"
#include "mqtt/mqtt.h"
#include "ops/metrics.h"
#include "policy/reason.h"
#include "registry/registry.h"

#define KG_AUTH_PASSWORD_MAX 1024     /* basic: the CLI's bound (docs/credentials.md) */

enum kg_auth_kind { KG_AUTH_SAS, KG_AUTH_TOKEN, KG_AUTH_BASIC, KG_AUTH_KIND_MAX };

enum kg_auth_status {
	KG_AUTH_OK,                   /* verified: result.device is the device */
	KG_AUTH_REFUSED,              /* reason, connack and why say why */
	KG_AUTH_PENDING,              /* basic: submit the job, its result comes later */
};

struct kg_auth_input {
	const char *username;         /* the CONNECT's user name, NULL when absent */
	size_t username_len;
	const uint8_t *password;      /* its password, NULL when absent */
	size_t password_len;
	const char *client_id;        /* its client id (sas: must be the device id) */
	size_t client_id_len;
	int64_t now;                  /* wall clock, s since the epoch: SAS expiry */
	uint64_t now_ms;              /* monotonic ms: the limiter */
	/* The limiter's key for misses that name no device (unknown token or user name,
	 * SAS for an unknown id): the source as [limits] source_prefix_v4/_v6 mask it
	 * (core/srclimit.h kg_srclimit_key()), as text, e.g. "192.0.2.7/32". NULL:
	 * no source limit. */
	const char *source_key;
	bool x509_only;               /* the listener's x509_only (ORed with [auth]'s) */
};

struct kg_auth_result {
	enum kg_auth_status status;
	enum kg_auth_kind kind;       /* valid unless reason is x509_required / bad_mqtt */
	enum kg_reason reason;        /* KG_REASON_OK when status is OK */
	enum kg_connack connack;      /* the refusal's CONNACK */
	const char *why;              /* constant sentence for the audit detail */
	/* The device the credential named, for policy and the audit line: its registry
	 * row when one was read; only the id for sas naming an unknown device or another
	 * client id; all zero ("" id) when nothing was named (unknown token or user name). */
	struct kg_device device;
};

/* A password check for the pool: copied inputs only (the connection may be gone by
 * the time it runs). */
struct kg_auth_job {
	struct kg_device device;
	char hashes[KG_CRED_SLOT_MAX][KG_CRED_SECRET_MAX + 1];  /* primary, then secondary */
	size_t n_hashes;
	uint8_t password[KG_AUTH_PASSWORD_MAX];
	size_t password_len;
	struct kg_auth_limit *limit;  /* shared, outlives every job (NULL: none) */
};

const char *kg_auth_kind_str(enum kg_auth_kind k);     /* "sas", "token", "basic" */

/* The metric outcome of a final verdict (not PENDING) for
 * kg_metrics.auth_attempts[res->kind][...]: ok, rate_limited, overload (reason
 * auth_overload, set by the caller when the pool was full), else refused. A verdict of
 * x509_required has no kind (KG_AUTH_KIND_MAX): it counts in decisions, not here. */
enum kg_auth_outcome kg_auth_outcome(const struct kg_auth_result *res);

/*
 * The fast step, on the worker. reg: the worker's registry handle; limit: the shared
 * limiter (NULL: none). Fills *res; on KG_AUTH_PENDING fills *job (which then holds
 * a copy of the password: run it, or wipe it). Never blocks but on the registry read.
 */
void kg_auth_check(const struct kg_auth_conf *conf, struct kg_registry *reg,
		   struct kg_auth_limit *limit, const struct kg_auth_input *in,
		   struct kg_auth_result *res, struct kg_auth_job *job);

/* The slow step (scrypt), on any thread: the verdict of a pending check, into *res
 * (status OK or REFUSED, kind basic, device from the job). Settles the limiter and
 * wipes the job's password. */
void kg_auth_job_run(struct kg_auth_job *job, struct kg_auth_result *res);

/* Wipe a job's secrets without running it (cancelled, or refused by a full queue); the
 * limiter token its check took goes back (the attempt was never judged). */
void kg_auth_job_wipe(struct kg_auth_job *job);

#endif
