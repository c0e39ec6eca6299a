/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Part relay (daemon/relay/): a session's data path after the handoff. One ops table
 * per path (HAProxy's xprt_ops idea). TLS device sides try, in this order: ktls_splice
 * and ktls_tx (relay_ktls.c), the record relay (relay_record.c, record.c), the OpenSSL
 * relay (relay.c). Plain device sides (io->dev_plain: `plain` and `proxy` listeners)
 * try sockmap, splice, plain (relay_plain.c; sockmap.c loads bpf/sockmap.bpf.c), and
 * never a TLS relay. pipe_pool.c lends splice pipes, backend.c opens the broker socket,
 * ssl_io.c reads and writes a session's SSL (for the relays and the connection alike).
 * Way in: this header. A relay sees a session as a struct kg_relay_io, which the
 * connection (struct kg_conn) embeds: both sockets, the SSL or the record state, the two
 * plaintext buffers, the flags and counters below, and a read-only context borrowed
 * for the session's life. It touches nothing else: no struct kg_conn, no worker, no
 * clock, no core header.
 * Ownership: the connection owns all of it and frees it in kg_conn_close() (with
 * kg_record_session_free() and kg_ktls_session_release()); a relay's start() may free
 * the SSL (its point of no return) and a relay borrows pipes only while bytes are in
 * flight. Who closes: never a relay. pump() returns why the session must end and the
 * connection closes it (one teardown, kg_conn_close()). A relay re-arms the session's
 * two sockets in the worker's epoll (io->epfd, ktlsgate/evsrc.h) and nothing else.
 */
/*
 * relay.h - the relay ops table, the session view it works on, and the helpers the
 * relays share. The bytes already read from the device (the CONNECT and whatever was
 * pipelined behind it) sit in io->up and are forwarded first, in order.
 */
#ifndef KTLSGATE_RELAY_H
#define KTLSGATE_RELAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ktlsgate/compiler.h"
#include "ktlsgate/evsrc.h"
#include "ops/metrics.h"
#include "policy/reason.h"
#include "tls/tls_keys.h"

struct kg_config;
struct kg_pipe;
struct kg_pipe_pool;
struct kg_record_session;
struct kg_sockmap;

/* A byte buffer allocated only while it holds bytes (idle sessions cost nothing). */
struct kg_buf {
	uint8_t *data;
	size_t len, off, cap;
};

int kg_buf_reserve(struct kg_buf *b, size_t cap) KG_MUST_USE;
void kg_buf_release(struct kg_buf *b);   /* free when empty */
void kg_buf_free(struct kg_buf *b);

/*
 * What a relay may touch of a session. The connection's handshake and CONNECT states
 * use the same fields (the SSL, io->up) before the handoff; from the handoff on, the
 * session's relay is their only writer, and the connection reads them (mode, the
 * counters, the eof/shut flags) between pumps.
 */
struct kg_relay_io {
	struct kg_evsrc dev;               /* device socket */
	struct kg_evsrc be;                /* broker socket, fd -1 until connected */
	SSL *ssl;                          /* freed at the start of ktls_splice / record */
	struct kg_tls_key_tracker keytrk;  /* traffic secrets + record counts, wiped at handoff */
	struct kg_record_session *rec;     /* the record relay's state, NULL otherwise */
	struct kg_buf up;                  /* device -> broker (the CONNECT first) */
	struct kg_buf down;                /* broker -> device */
	struct kg_pipe *pipe[KG_DIR_MAX];  /* kTLS: borrowed from *pipes while bytes are in flight */
	uint64_t bytes_up, bytes_down;     /* delivered to the broker / to the device */
	enum kg_relay_mode mode;           /* the relay in charge (set by kg_relay_start()) */
	bool want_read, want_write;        /* what the last TLS call waits for */
	bool dev_eof, be_eof;              /* that side's stream ended */
	bool be_shut;                      /* FIN passed on to the broker */
	bool ktls_ulp;                     /* the TLS ULP is attached to dev.fd */
	bool ktls_tx, ktls_rx;             /* what the kernel really does for this session */
	/* Why this session, set up for kernel TLS (io->ktls_ulp), fell to a lower rung:
	 * set by relay_ktls.c's first fallback, read by the connection to audit it
	 * (kg_ktls_fallback_detail()). The cipher name is OpenSSL's static string. */
	bool ktls_fell_back;
	enum kg_ktls_fallback ktls_fallback;
	int ktls_fallback_errno;           /* rx_install_failed: the setsockopt's errno */
	const char *ktls_cipher;           /* the negotiated suite, static */
	const char *ktls_version;          /* "TLSv1.3", static */
	bool recheck;                      /* set by a pump that waits on the kernel alone
					    * (a sockmap tail after a FIN): pump again at the
					    * worker's next tick, no fd event will come */
	bool dev_plain;                    /* the device side is plain TCP (no io->ssl): set
					    * by the connection before kg_relay_start() */
	/* The sockmap relay's session (relay_plain.c): the two sockets' SO_COOKIEs (device,
	 * broker), io->bytes_* and the bytes written to each socket (device, broker) when
	 * they went into the SOCKHASH, and whether they are in. */
	uint64_t sm_cookie[2];
	uint64_t sm_base_up, sm_base_down;
	uint64_t sm_wbase[2];
	/* Back-pressure (relay_plain.c): per source socket (device, broker), whether the
	 * verdict keeps its bytes (held: the daemon relays that direction), whether every
	 * redirected byte before them has reached the sink, whether recv() saw its end,
	 * and the bytes the daemon wrote for it. */
	bool sm_held[2], sm_drained[2], sm_src_done[2], sm_release_asked[2];
	uint64_t sm_held_bytes[2];
	bool sm_in;

	/* Borrowed, read-only but for *ktls_unavailable; set when the connection starts and
	 * valid for its life. */
	unsigned worker_idx;               /* for logs */
	uint64_t cid;                      /* the connection's id, for logs */
	const char *device_id;             /* for logs: "" until the handshake verified it */
	const struct kg_config *cfg;       /* the session's pinned snapshot */
	struct kg_metrics *metrics;        /* the worker's (only the worker writes them) */
	struct kg_pipe_pool *pipes;        /* the worker's splice pipes */
	bool *ktls_unavailable;            /* the worker's: the kernel refused the TLS ULP */
	struct kg_sockmap *sockmap;        /* the daemon's sockmap program (sockmap.h), NULL
					    * when it could not load: plain sessions splice */
	int epfd;                          /* the worker's epoll: io->dev and io->be are
					    * re-armed there (ktlsgate/evsrc.h) */
};


struct kg_relay_ops {
	const char *name;                    /* "userspace", "ktls_splice", ... */
	enum kg_relay_mode mode;
	/* Can this path carry io? (kernel support, negotiated cipher...) */
	bool (*usable)(const struct kg_relay_io *io);
	/* Take over io (point of no return for offloads). KG_OK, KG_E_AGAIN (wait for
	 * the device and retry), or an error (io unchanged: the next rung is tried). */
	int (*start)(struct kg_relay_io *io);
	/* Pump bytes after an event. KG_REASON_OK: the session goes on, interest is
	 * re-armed. Anything else: the session is over for that reason; what an orderly
	 * end sends (our close_notify, an alert) is sent, and the caller closes it. */
	enum kg_reason (*pump)(struct kg_relay_io *io);
};

/* A session's device stream (ssl_io.c), for the relays and for the connection
 * before the handoff (the CONNECT, a refusal). Read/write decrypted bytes through
 * io->ssl, or the socket's own for a plain device side (io->dev_plain): >0 bytes, 0 on
 * clean close (close_notify, EOF, a reset while reading), KG_E_AGAIN
 * (io->want_read/want_write tell which), or KG_E_IO / KG_E_PROTO. */
long kg_ssl_io_read(struct kg_relay_io *io, void *buf, size_t len);
long kg_ssl_io_write(struct kg_relay_io *io, const void *buf, size_t len);
/* Send close_notify (best effort, non-blocking; nothing once io->ssl is freed). */
void kg_ssl_io_shutdown(struct kg_relay_io *io);
/* What the OpenSSL call on io->ssl that returned ret means, in the words above (0,
 * KG_E_AGAIN with the want flags set, KG_E_IO, KG_E_PROTO). The handshake step
 * (core/conn_tls.c) maps SSL_do_handshake()'s result here too. */
long kg_ssl_io_result(struct kg_relay_io *io, int ret);

/* Largest amount either plaintext buffer (io->up, io->down) holds. */
#define KG_RELAY_BUF 16384u

/* Shared by the relays: the broker side is plain TCP whatever the device side is.
 * Both return >0 progress, 0 none, <0 close with *why set. */
/* Send io->up to the broker until it is empty or the socket is full. */
int kg_relay_flush_up(struct kg_relay_io *io, enum kg_reason *why);
/* Receive from the broker into io->down while it has room. If drained is not NULL, it
 * is read first (true: skip) and set once the socket has nothing more for now. */
int kg_relay_fill_down(struct kg_relay_io *io, bool *drained, enum kg_reason *why);

/* Read the device (kg_ssl_io_read) into io->up while it has room, then flush io->up to
 * the broker (the user-space SSL relay's, ktls_tx's and the plain copy's upward
 * direction). >0 progress, 0 none, <0 close with *why set. */
int kg_relay_ssl_up(struct kg_relay_io *io, enum kg_reason *why);
/* Receive from the broker into io->down, then write it to the device
 * (kg_ssl_io_write) until it is empty or the device is full (the user-space SSL
 * relay's and the plain copy's downward direction). Same results. */
int kg_relay_ssl_down(struct kg_relay_io *io, enum kg_reason *why);

/* End of stream, in order, for every relay: once the broker closed and everything it
 * sent reached the device, the session is over (true, *why set; the caller sends our
 * close_notify). Once the device's stream ended and its bytes reached the broker, the
 * broker gets a FIN (io->be_shut set) and the session goes on until the broker closes;
 * the connection bounds that wait by refuse_linger_ms. *_pending: bytes of that
 * direction not yet delivered. */
bool kg_relay_finished(struct kg_relay_io *io, bool up_pending, bool down_pending,
		       enum kg_reason *why);
/* Arm epoll after a pump: dev_ev is what the device side needs (relay-specific), the
 * broker side follows from io->up / io->down; a side at EOF is unregistered unless it
 * is still written to. Returns 0 or -1. */
int kg_relay_arm(struct kg_relay_io *io, uint32_t dev_ev);

/* Before the handshake (core/conn_tls.c): should this session try kernel TLS? If so,
 * the TLS ULP is attached to the device socket here and OpenSSL is told to offload
 * (SSL_OP_ENABLE_KTLS). False when the config forbids it or the kernel cannot. */
bool kg_ktls_prepare(struct kg_relay_io *io);

/* The fallback io->ktls_fallback names, in words for the audit line's detail (the
 * cipher, the version, the kernel's errno): into buf (cap bytes, NUL-terminated).
 * Returns buf. Meaningful only when io->ktls_fell_back. */
const char *kg_ktls_fallback_detail(const struct kg_relay_io *io, char *buf, size_t cap);

/* Give back what a kTLS or splice session borrowed (pipes); called by kg_conn_close(). */
void kg_ktls_session_release(struct kg_relay_io *io);

/* The splice machinery relay_ktls.c and relay_plain.c share. One direction: buffered
 * bytes first, then the pipe, then splice (or, for little, copy) more from the source
 * until nothing moves; src_ktls: the device is a kTLS receive socket whose non-data
 * records stop splice(). >0 progress, 0 none, <0 close with *why. */
int kg_relay_splice_dir(struct kg_relay_io *io, enum kg_dir d, bool src_ktls, enum kg_reason *why);
/* Bytes of direction d not yet delivered (buffer or pipe). */
bool kg_relay_pending(const struct kg_relay_io *io, enum kg_dir d);
/* Arm both sockets for the splice relays (dev_read_ssl: the device is read through
 * OpenSSL, whose want_write asks for EPOLLOUT). 0 or -1. */
int kg_relay_splice_arm(struct kg_relay_io *io, bool dev_read_ssl);

/* Sockmap sessions (relay_plain.c): the kernel moves the bytes, so io->bytes_up /
 * bytes_down (and the byte metrics) are brought up to date from its counters here.
 * The connection calls it before it judges the idle deadline of a sockmap session
 * (true: bytes moved since the last call, *up_moved says whether device -> broker
 * did) and kg_sockmap_session_end() from kg_conn_close() (final counters read, the
 * session's map entries deleted). Both are no-ops for other sessions. */
bool kg_sockmap_session_sync(struct kg_relay_io *io, bool *up_moved);
void kg_sockmap_session_end(struct kg_relay_io *io);
/* The verdict noticed this session (kg_sockmap_notices()): measure what each direction's
 * sink has not taken yet and pause a source past the limit (relay_plain.c, "Back-
 * pressure"); a paused session sets io->recheck and its pump resumes it. */
void kg_sockmap_session_check(struct kg_relay_io *io);
/* Free the record relay's state (keys cleansed). NULL is fine. */
void kg_record_session_free(struct kg_record_session *rs);

extern const struct kg_relay_ops kg_relay_ktls_splice; /* "ktls_splice" */
extern const struct kg_relay_ops kg_relay_ktls_tx;     /* "ktls_tx" */
extern const struct kg_relay_ops kg_relay_record;     /* "userspace": SSL freed */
extern const struct kg_relay_ops kg_relay_userspace;  /* "userspace_ssl" */
extern const struct kg_relay_ops kg_relay_sockmap;    /* "sockmap": plain, in the kernel */
extern const struct kg_relay_ops kg_relay_splice;     /* "splice": plain, zero copy */
extern const struct kg_relay_ops kg_relay_plain;      /* "plain": plain, user-space copy */

/* Start the first relay, in order of preference, that is usable for io and whose
 * start() succeeds (a failed start leaves io as it was, but for bytes of io->up it may
 * have sent: io->up.off and io->bytes_up say so); sets io->mode and TCP
 * keepalive on both sockets. io->dev_plain picks the ladder (plain or TLS). NULL if none; NULL with *again set if a rung must wait
 * for the device (half a record inside OpenSSL): call again when the device is
 * readable. */
const struct kg_relay_ops *kg_relay_start(struct kg_relay_io *io, bool *again);
const struct kg_relay_ops *kg_relay_for_mode(enum kg_relay_mode mode);

/* Can this session move to another process as two sockets and a record (the live
 * handover, core/handover.h)? Only when all its state is the kernel's: ktls_splice with
 * both keys installed (the SSL freed), or a plain device side copied or spliced; both
 * sockets open, neither stream ended, nothing buffered here or in a pipe. A session
 * with bytes in flight is asked again later; the others (an SSL, the record relay's
 * keys, sockmap entries) finish where they are. Pure. */
bool kg_relay_transferable(const struct kg_relay_io *io);

/* The idle timeout of a relayed session (pure): 1.5 x a non-zero MQTT keep-alive, only
 * device->broker traffic counting (*any_dir false); else idle_timeout_s, traffic
 * either way counting. 0: none. The connection keeps the deadline (conn.c). */
uint32_t kg_relay_idle_ms(uint16_t keepalive, unsigned idle_timeout_s, bool *any_dir);

#endif
