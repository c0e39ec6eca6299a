/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * tpm_signer.h - the daemon's one TPM connection, owned by one thread (tpm_signer.c).
 *
 * A TPM without a resource manager (swtpm, /dev/tpm0) serves one connection at a time
 * and takes 30-100 ms per signature, and a stopped one never answers: so no worker ever
 * calls it. Workers (and start-up code) submit a request (ECDSA over a digest, or the
 * raw RSA private operation) to a bounded queue; the thread runs them one by one and
 * signals each on the caller's eventfd. Every request has an absolute deadline
 * ([tpm] sign_timeout); a request released before it is done is abandoned (the thread
 * drops it, or frees it when the TPM call in progress returns).
 *
 * Health: up or down. A TPM call that fails at the connection level (swtpm killed)
 * makes it down: submissions fail at once, and the thread reconnects with backoff
 * (100 ms doubling to 5 s), reloads the key, checks its public part is the one loaded
 * at start (the certificate's), and is up again. One log line per transition. While a
 * TPM call has outlived a request's deadline (a stopped TPM), the signer is "stalled":
 * submissions fail at once until that call returns.
 * Created by main.c when [daemon] key is a TPM key, owned by struct kg_daemon.
 * Thread-safe: submit/wait/release from any thread.
 */
#ifndef KTLSGATE_TPM_SIGNER_H
#define KTLSGATE_TPM_SIGNER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ktlsgate/compiler.h"
#include "ops/metrics.h"   /* enum kg_tpm_op, KG_TPM_SIGN_BUCKETS */
#include "tpm/tpm.h"

struct kg_config;
struct kg_tpm_signer;
struct kg_tpm_req;

enum kg_tpm_req_op { KG_TPM_REQ_ECDSA, KG_TPM_REQ_RSA_RAW, KG_TPM_REQ_SEAL, KG_TPM_REQ_UNSEAL };
/* A request's input/output room: an RSA block, or a sealed object's two blobs. */
#define KG_TPM_REQ_BUF (4 + 2 * KG_TPM_SEALED_BLOB_MAX)

struct kg_tpm_signer_opts {
	const char *tcti;            /* "" or NULL: tpm2-tss's default */
	const char *keyref;          /* "handle:0x81..." or a TSS2 PRIVATE KEY file */
	unsigned queue_max;          /* waiting requests; 0: 64 */
	uint64_t timeout_ms;         /* per request; 0: 1000 */
};

/* Connect, flush leftovers of a crashed process, load the key (all within
 * KG_TPM_START_TIMEOUT_S: a TPM that never answers fails the start, it does not hang
 * it), start the thread. 0; -1 with err: KG_TPM_OP_CONNECT or _LOAD in *failed (may be
 * NULL). */
#define KG_TPM_START_TIMEOUT_S 10
int kg_tpm_signer_new(const struct kg_tpm_signer_opts *o, struct kg_tpm_signer **out,
		      enum kg_tpm_op *failed, char *err, size_t errlen) KG_MUST_USE;
/* Stop the thread, unload the key, close the TPM (NULL-safe). A thread stuck in a TPM
 * call is left behind (the process is exiting). */
void kg_tpm_signer_free(struct kg_tpm_signer *s);

/* The key's public part as loaded at start. */
const struct kg_tpm_pub *kg_tpm_signer_pub(const struct kg_tpm_signer *s);
/* Is this signer the one cfg asks for ([tpm] tcti and [daemon] key)? */
bool kg_tpm_signer_matches(const struct kg_tpm_signer *s, const char *tcti, const char *keyref);

/* Submit: in is a digest (ECDSA) or n_len bytes (RSA). The result is signalled by
 * writing to notify_fd (an eventfd: the request keeps a dup of it). NULL: failed at
 * once (down, stalled, queue full, bad input; counted). */
struct kg_tpm_req *kg_tpm_signer_submit(struct kg_tpm_signer *s, enum kg_tpm_req_op op,
					const uint8_t *in, size_t len, int notify_fd);
/* CLOCK_MONOTONIC ns after which the request is given up. */
uint64_t kg_tpm_req_deadline(const struct kg_tpm_req *r);
bool kg_tpm_req_done(const struct kg_tpm_req *r);
/* Block (poll on its eventfd) until done or the deadline: true when done. */
bool kg_tpm_req_wait(struct kg_tpm_req *r, int notify_fd);
/* Done and succeeded: 0 with out (r||s, 64 bytes, or the n_len RSA result); else -1. */
int kg_tpm_req_result(const struct kg_tpm_req *r, uint8_t *out, size_t cap, size_t *len);
/* Drop the caller's hold. Not done yet: abandoned (past its deadline: counted as a
 * timeout). */
void kg_tpm_req_release(struct kg_tpm_req *r);

/*
 * Seal a secret (<= KG_TPM_SEAL_MAX bytes) to this TPM / unseal it again (tpm.h
 * kg_tpm_seal), through the thread, blocking the caller up to the signer's deadline
 * (main thread only: start-up and rotations, never a worker). The sealed form is
 * opaque bytes (at most KG_TPM_REQ_BUF). Failures are counted like a failed signature
 * (ktlsgate_tpm_errors_total kind "seal"; a missed deadline "timeout"). 0, or -1 with
 * err (down, refused: e.g. another TPM's blob, timeout).
 */
int kg_tpm_signer_seal(struct kg_tpm_signer *s, const uint8_t *secret, size_t len,
		       uint8_t *out, size_t cap, size_t *out_len, char *err, size_t errlen) KG_MUST_USE;
int kg_tpm_signer_unseal(struct kg_tpm_signer *s, const uint8_t *sealed, size_t len,
			 uint8_t *out, size_t cap, size_t *out_len, char *err, size_t errlen) KG_MUST_USE;

struct kg_tpm_signer_stats {
	bool up;
	uint64_t queue;                            /* waiting now */
	uint64_t errors[KG_TPM_OP_MAX];
	uint64_t sign_buckets[KG_TPM_SIGN_BUCKETS]; /* cumulative counts, last is +Inf */
	uint64_t sign_count;
	double sign_sum;                           /* seconds */
};
void kg_tpm_signer_stats(struct kg_tpm_signer *s, struct kg_tpm_signer_stats *out);

/*
 * The daemon's start: cfg's key is not a TPM key -> 0, *out NULL. A TPM key -> a
 * signer, 0. The TPM unreachable (or the key not loadable) and [tpm] key_fallback set
 * -> 1, *out NULL, after a loud warning (the server key is then a file). Else -1 with
 * err. *failed says which TPM step failed (for ktlsgate_tpm_errors_total).
 */
int kg_tpm_signer_from_config(const struct kg_config *cfg, struct kg_tpm_signer **out,
			      enum kg_tpm_op *failed, char *err, size_t errlen) KG_MUST_USE;

#endif
