/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * conn.h - one device connection: a table-driven state machine with a deadline per
 * state and exactly one teardown, kg_conn_close().
 *
 *  ACCEPTED -> TLS_HANDSHAKE -> IDENTIFIED -> POLICY -> MQTT_CONNECT
 *           -> BACKEND_CONNECT -> HANDOFF -> RELAYING -> CLOSED
 *  (a refusal detours through REFUSING: CONNACK, close_notify, linger, close)
 *
 * A device without a certificate (a `tls` listener's, a `plain` one's) proves who it
 * is in its CONNECT: IDENTIFIED (or, plain, ACCEPTED) -> MQTT_CONNECT -> AUTH (the
 * credential check, and the policy on the identity it found) -> BACKEND_CONNECT.
 * A `proxy` listener's connection opens with the front's PROXY v2 header:
 * ACCEPTED -> PROXY_HEADER -> POLICY (a certificate the front verified) or
 * MQTT_CONNECT (credentials).
 *
 * A struct kg_conn belongs to one worker thread and is touched only by it. It owns
 * both fds, the SSL, its buffers, and pins a snapshot for life; registry rows are
 * copied in, never borrowed.
 */
#ifndef KTLSGATE_CONN_H
#define KTLSGATE_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <openssl/ssl.h>

#include "ktlsgate/compiler.h"
#include "ops/metrics.h"
#include "mqtt/mqtt.h"
#include "policy/policy.h"
#include "policy/reason.h"
#include "core/srclimit.h"
#include "relay/relay.h"
#include "tls/tls_keys.h"
#include "tls/verify.h"

enum kg_conn_state {
	KG_ST_ACCEPTED,
	KG_ST_PROXY_HEADER,
	KG_ST_TLS_HANDSHAKE,
	KG_ST_IDENTIFIED,
	KG_ST_POLICY,
	KG_ST_MQTT_CONNECT,
	KG_ST_AUTH,
	KG_ST_BACKEND_CONNECT,
	KG_ST_HANDOFF,
	KG_ST_RELAYING,
	KG_ST_REFUSING,
	KG_ST_CLOSED,
	KG_ST_MAX
};

/* What a state step tells the driver (nginx's NGX_OK / NGX_AGAIN, as data). */
enum kg_step {
	KG_STEP_NEXT,  /* state changed: run the new state's step now */
	KG_STEP_WAIT,  /* interest re-armed: wait for the fd or the deadline */
	KG_STEP_DONE   /* connection closed and freed: touch nothing */
};

struct kg_worker;
struct kg_snapshot;

struct kg_conn {
	uint64_t cid;                      /* worker index << 48 | sequence */
	struct kg_worker *w;
	struct kg_snapshot *snap;          /* pinned for life */
	const struct kg_listener_conf *listener; /* the one it came in on (in snap) */
	uint16_t listen_idx;               /* its address's index in [daemon] listen */
	enum kg_conn_state state;
	uint64_t deadline_ms;              /* 0: none */
	uint64_t accepted_us, hs_start_us;
	int64_t since;                     /* wall clock of accept */

	/* Both sockets, the SSL, the buffers, what the relays see (relay.h). A relay
	 * re-arms the two sockets in the worker's epoll itself (io->epfd) and reaches
	 * the connection only through its pump()'s close reason, handled in conn.c. */
	struct kg_relay_io io;
	/* A handshake paused for the TPM signer (tpm_key.h): its SSL's async wait fds
	 * (the answer's eventfd, the deadline's timerfd) in the worker's epoll */
	struct kg_evsrc async_ev[2];
	bool tpm_wait;
	enum kg_evtype ev_type;            /* the event being handled (set by the worker) */
	uint32_t ev_events;

	char peer[64];
	union {                            /* the device's address (the XDP gate keys on it) */
		struct sockaddr sa;
		struct sockaddr_in in;
		struct sockaddr_in6 in6;
	} peer_sa;
	socklen_t peer_salen;
	struct kg_srckey src;              /* its source (srclimit.h) */
	bool behind_proxy;                 /* peer_sa is a PROXY header's: the XDP gate,
					    * which sees only the front, is not fed */
	bool proxy_cert;                   /* identity from the front's certificate TLVs */
	bool has_proxy_sha256;             /* the front sent the certificate's SHA-256 */
	uint8_t cred_kind;                 /* enum kg_auth_kind of CONNECT credentials;
					    * KG_AUTH_KIND_MAX: none (yet) */
	bool auth_pending;                 /* a password check waits in the auth pool
					    * under tag cid (cancelled by the close) */
	/* while auth_pending: on the worker's auth_waiting list, where the pool's results
	 * find their connection without walking every live one */
	struct kg_conn *auth_prev, *auth_next;
	bool src_held;                     /* counted pending there until the handshake ends */
	bool identified, verify_ran, decided, audited;
	/* TLS resumption (tls/tickets.h): ticket_id, c->id came from a ticket the decrypt
	 * callback accepted (cleared when the verify callback runs after all); resumed,
	 * the handshake completed as a resumption (then ticket_id must be set);
	 * resumed_psk_ke, without an (EC)DHE share ([tls] resumption_psk_ke; said in the
	 * admission's audit lines, not carried across a handover). */
	bool ticket_id, resumed, resumed_psk_ke;
	bool tls_done;                     /* the TLS handshake completed (session list) */
	int64_t resumed_verified_at;       /* the ticket's full verification, unix s */
	bool failopen;            /* its row came from the cache under registry_down = fail-open */
	enum kg_reason verify_reason;
	int x509_err;
	struct kg_identity id;
	struct kg_leaf_ref leaf;           /* issuer + serial: a new CRL re-checks the session */
	struct kg_verdict verdict;
	uint8_t mqtt_level;
	uint32_t connect_len;              /* bytes of the CONNECT at the start of io.up */

	uint8_t refusal[8];                /* the CONNACK refusal being sent */
	size_t refusal_len, refusal_off;
	size_t drained;                    /* bytes dropped while lingering (bounded) */

	/* idle timeout while relaying: the deadline scan closes the session when
	 * active_ms + idle_ms has passed; a pump that moved bytes refreshes active_ms */
	uint16_t keepalive;                /* the CONNECT's keep-alive, seconds */
	uint32_t idle_ms;                  /* 0: none */
	bool idle_any_dir;                 /* broker->device traffic counts too */
	uint64_t active_ms;

	struct kg_conn *prev, *next;       /* worker's list of live conns */
};

extern const char *const kg_conn_state_names[KG_ST_MAX];

/* Start a connection on an accepted fd (takes ownership of fd) from the listening
 * address listen_idx (an index into the config's listen[]). A source over its
 * per-source limits (srclimit.h) is closed here, audited as source_limit. ACCEPTED
 * waits for the first bytes: the SSL is allocated only then. */
void kg_conn_start(struct kg_worker *w, int fd, const struct sockaddr *sa, socklen_t salen,
		   size_t listen_idx);
/* Drive the state machine after an event (or on entry). */
void kg_conn_run(struct kg_conn *c);
/* The one teardown: audit (if not yet), metrics, unregister, free. */
void kg_conn_close(struct kg_conn *c, enum kg_reason why);
/* The only writer of c->state: logs from -> to and sets the state's deadline. */
void kg_conn_set_state(struct kg_conn *c, enum kg_conn_state st);
/* The auth pool's verdict on this connection's password (the worker matched the
 * tag): go on as st_auth would have with it. */
struct kg_auth_result;
void kg_conn_auth_done(struct kg_conn *c, const struct kg_auth_result *res);
/* Deadline passed. */
void kg_conn_timeout(struct kg_conn *c);
/* Set epoll interest for one of the conn's fds. */
int kg_conn_watch(struct kg_conn *c, struct kg_evsrc *src, uint32_t events) KG_MUST_USE;
/* Remove the fd from epoll (events = UINT32_MAX marks "not registered"). */
int kg_conn_unwatch(struct kg_conn *c, struct kg_evsrc *src) KG_MUST_USE;
/* Write an audit decision record for c. */
void kg_conn_audit(struct kg_conn *c, bool allow, enum kg_reason reason, const char *detail);

/*
 * The live-session handover (conn_xfer.c; core/handover.h moves the records and the
 * sockets between the processes). Worker thread only.
 * kg_conn_export: a relaying session whose state is all in the kernel
 * (kg_relay_transferable()) leaves this process: its record into *out, its device and
 * broker sockets into fds[0], fds[1] (now the caller's, out of the worker's epoll), and
 * the connection is freed without a close: no audit line, no close counted. false:
 * not now (c untouched), or c was closed on an epoll error.
 * kg_conn_adopt: such a record and its two sockets (taken in every case: closed on
 * refusal) become a relaying connection of worker w, under the newest snapshot; NULL
 * when the record does not fit this configuration or the sockets are not what it says.
 * The connection may already be closed when it returns (its first pump found the
 * end): check c->state. The caller then revalidates it (the policy under the newest
 * registry: a revocation made while it travelled reaches it here).
 */
struct kg_ho_session;
bool kg_conn_export(struct kg_conn *c, struct kg_ho_session *out, int fds[2]);
struct kg_conn *kg_conn_adopt(struct kg_worker *w, const struct kg_ho_session *s, int dev_fd,
			      int be_fd, char *why, size_t whylen);

/* Internal to core/conn*.c: a zeroed connection of w on fd (not linked, state
 * ACCEPTED, the snapshot's reference taken over); link it into w's list and counts;
 * free it (the teardown's second half: state CLOSED, fds closed, unlinked, reaped
 * after this loop turn). */
struct kg_snapshot;
struct kg_listener_conf;
struct kg_conn *kg_conn_alloc(struct kg_worker *w, struct kg_snapshot *snap,
			      const struct kg_listener_conf *lc, int fd, const struct sockaddr *sa,
			      socklen_t salen);
void kg_conn_link(struct kg_conn *c);
void kg_conn_release(struct kg_conn *c);

#endif
