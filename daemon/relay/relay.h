/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * relay.h - the data path after the handoff. A relay is an ops table (HAProxy's
 * xprt_ops idea): the handoff picks one per session; the user-space SSL relay is the
 * one that works everywhere, kTLS + splice and the sockmap path slot in beside it
 * (issue 3). All bytes already read from the device (the CONNECT and whatever was
 * pipelined behind it) sit in c->up and are forwarded first, in order.
 */
#ifndef KTLSGATE_RELAY_H
#define KTLSGATE_RELAY_H

#include "core/conn.h"

struct kg_relay_ops {
	const char *name;                    /* "userspace", "ktls_splice", ... */
	enum kg_relay_mode mode;
	/* Can this path carry c? (kernel support, negotiated cipher...) */
	bool (*usable)(const struct kg_conn *c);
	/* Take over c (point of no return for offloads). KG_OK, KG_E_AGAIN (wait for
	 * the device and retry), or an error (c unchanged: the next rung is tried). */
	int (*start)(struct kg_conn *c);
	/* Pump bytes after an event. Returns KG_STEP_WAIT or KG_STEP_DONE (closed). */
	enum kg_step (*pump)(struct kg_conn *c);
};

/* Largest amount either plaintext buffer (c->up, c->down) holds. */
#define KG_RELAY_BUF 16384u

/* Shared by the relays: the broker side is plain TCP whatever the device side is.
 * Both return >0 progress, 0 none, <0 close with *why set. */
/* Send c->up to the broker until it is empty or the socket is full. */
int kg_relay_flush_up(struct kg_conn *c, enum kg_reason *why);
/* Receive from the broker into c->down while it has room. If drained is not NULL, it
 * is read first (true: skip) and set once the socket has nothing more for now. */
int kg_relay_fill_down(struct kg_conn *c, bool *drained, enum kg_reason *why);

/* Read the device through OpenSSL into c->up while it has room, then flush c->up to
 * the broker (the user-space SSL relay's and ktls_tx's upward direction). >0
 * progress, 0 none, <0 close with *why set. */
int kg_relay_ssl_up(struct kg_conn *c, enum kg_reason *why);

/* End of stream, in order, for every relay: once the broker closed and everything it
 * sent reached the device, the session is over (true, *why set; the caller sends our
 * close_notify). Once the device's stream ended and its bytes reached the broker, the
 * broker gets a FIN and the session goes on until the broker closes (at most
 * refuse_linger_ms). *_pending: bytes of that direction not yet delivered. */
bool kg_relay_finished(struct kg_conn *c, bool up_pending, bool down_pending,
		       enum kg_reason *why);/* Arm epoll after a pump: dev_ev is what the device side needs (relay-specific), the
 * broker side follows from c->up / c->down; a side at EOF is unregistered unless it
 * is still written to. Returns 0 or -1. */
int kg_relay_arm(struct kg_conn *c, uint32_t dev_ev);

/* Before the handshake (tls.c): should this session try kernel TLS? If so, the TLS
 * ULP is attached to the device socket here and OpenSSL is told to offload
 * (SSL_OP_ENABLE_KTLS). False when the config forbids it or the kernel cannot. */
bool kg_ktls_prepare(struct kg_conn *c);

/* Give back what a kTLS session borrowed (pipes); called by kg_conn_close(). */
void kg_ktls_session_release(struct kg_conn *c);

extern const struct kg_relay_ops kg_relay_ktls_splice; /* "ktls_splice" */
extern const struct kg_relay_ops kg_relay_ktls_tx;     /* "ktls_tx" */
extern const struct kg_relay_ops kg_relay_record;     /* "userspace": SSL freed */
extern const struct kg_relay_ops kg_relay_userspace;  /* "userspace_ssl" */

/* Start the first relay, in order of preference, that is usable for c and whose
 * start() succeeds (a failed start leaves c as it was). NULL if none; NULL with
 * *again set if a rung must wait for the device (half a record inside OpenSSL):
 * call again when the device is readable. */
const struct kg_relay_ops *kg_relay_start(struct kg_conn *c, bool *again);
/* Free the record relay's state (keys cleansed). NULL is fine. */
void kg_record_session_free(struct kg_record_session *rs);
const struct kg_relay_ops *kg_relay_for_mode(enum kg_relay_mode mode);

/* The relaying state's step: the session's relay pumps, and traffic that counts
 * refreshes the idle deadline (c->active_ms). */
enum kg_step kg_relay_pump(struct kg_conn *c);
/* The idle timeout of a session (pure): 1.5 x a non-zero MQTT keep-alive, only
 * device->broker traffic counting (*any_dir false); else idle_timeout_s, traffic
 * either way counting. 0: none. */
uint32_t kg_relay_idle_ms(uint16_t keepalive, unsigned idle_timeout_s, bool *any_dir);

#endif
