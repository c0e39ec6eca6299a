/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * handover_msg.h - the messages of the listener handover channel (`ktlsgated
 * --takeover`, handover.h), encoded and decoded. Pure: bytes in, a struct out, no I/O,
 * no allocation; the file descriptors that travel with a KG_HO_FDS message are the
 * caller's (SCM_RIGHTS), this module only describes them.
 *
 * Frame: "KGHO", version (1 byte), type (1), 2 reserved zero bytes, payload length (4,
 * big endian), payload. A version this build does not know is KG_HO_UNSUPPORTED (the
 * peer then refuses cleanly); a type it does not know, within a known version, is
 * skipped by the caller (KG_HO_OK with type KG_HO_UNKNOWN): a newer peer may add
 * messages without breaking this one: the live-session handover's ADOPT and SESSIONS
 * are such, and an older peer skips them (its sessions then drain where they are). Every length is checked against the frame: garbage never reads
 * past it.
 */
#ifndef KTLSGATE_HANDOVER_MSG_H
#define KTLSGATE_HANDOVER_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KG_HO_MAGIC "KGHO"
#define KG_HO_VERSION 1
#define KG_HO_HEADER 12
/* The largest payload either side accepts (a session list: about 350 bytes a session,
 * so 12 000 sessions; a longer list is cut and says so). */
#define KG_HO_PAYLOAD_MAX (4u << 20)
/* File descriptors in one KG_HO_FDS message: below the kernel's SCM_MAX_FD (253). */
#define KG_HO_MAX_FDS 240
#define KG_HO_TEXT_MAX 255

enum kg_ho_type {
	KG_HO_UNKNOWN = 0,    /* decoded: a type this build does not know (skip it) */
	KG_HO_FDS = 1,        /* old -> new: the sockets, with SCM_RIGHTS */
	KG_HO_ACCEPTING = 2,  /* new -> old: my workers accept; stop accepting, drain */
	KG_HO_FORWARD = 3,    /* new -> old: a revocation verb to run too (control.h) */
	KG_HO_STATE = 4,      /* old -> new: what is left to drain (periodic, and done) */
	KG_HO_LIST = 5,       /* new -> old: send your session list */
	KG_HO_LIST_REPLY = 6, /* old -> new: JSON lines, one per session */
	KG_HO_ADOPT = 7,      /* new -> old: I adopt relaying sessions (before ACCEPTING) */
	KG_HO_SESSIONS = 8,   /* old -> new: relaying sessions, two fds each (SCM_RIGHTS) */
	KG_HO_TYPE_MAX
};

enum kg_ho_parse { KG_HO_OK, KG_HO_SHORT, KG_HO_MALFORMED, KG_HO_UNSUPPORTED };

/* What one passed descriptor is. */
enum kg_ho_fd_kind {
	KG_HO_FD_LISTEN = 1,   /* a worker's listening socket for one listen address */
	KG_HO_FD_METRICS = 2,  /* the /metrics HTTP listener */
	KG_HO_FD_LOCK = 3,     /* the instance lock (instance.h): the flock moves with it */
	KG_HO_FD_XDP_LINK = 4, /* the XDP gate's bpf_link on one interface (text: its name) */
	KG_HO_FD_CONTROL = 5,  /* the control socket's listening fd */
	KG_HO_FD_XDP_GATE = 6, /* the XDP gate's program or a map (index: enum kg_edge_obj;
				* text: the program's build id) */
	KG_HO_FD_KIND_MAX
};

struct kg_ho_fd {
	uint8_t kind;           /* enum kg_ho_fd_kind */
	uint16_t worker;        /* LISTEN: the worker that held it */
	uint16_t index;         /* LISTEN: the address's index in [daemon] listen order */
	char text[KG_HO_TEXT_MAX + 1];   /* LISTEN: the address as configured; XDP_LINK:
					  * ifname; XDP_GATE: build id */
};

struct kg_ho_msg {
	enum kg_ho_type type;
	uint8_t raw_type;       /* the type byte as sent (KG_HO_UNKNOWN keeps it here) */
	uint32_t pid;           /* FDS, ACCEPTING, STATE: the sender */
	/* FDS */
	uint16_t workers;       /* the old process's worker count */
	uint16_t n_fds;
	struct kg_ho_fd fds[KG_HO_MAX_FDS];
	/* STATE */
	uint32_t connections;   /* live connections, any state */
	uint32_t sessions;      /* of those, relaying */
	uint32_t handshakes;    /* of those, in the TLS handshake */
	bool done;              /* the last STATE: the old process exits now */
	/* LIST, LIST_REPLY: the request's sequence number */
	uint32_t seq;
	/* FORWARD: the verb line; LIST_REPLY: the JSON lines (not NUL-terminated, text_len);
	 * SESSIONS: the n_sessions records (kg_ho_session_next() walks them) */
	const char *text;       /* points into the decoded buffer */
	size_t text_len;
	uint16_t n_sessions;    /* SESSIONS */
};

/*
 * One relaying session passed to the new process (KG_HO_SESSIONS): what the connection
 * needs to go on relaying, be listed and be revoked there. Its two sockets travel as
 * descriptors, device then broker, in record order. Only sessions whose bytes are all
 * in the kernel travel (kg_relay_transferable()): nothing buffered here goes with them.
 */
#define KG_HO_SESSIONS_MAX (KG_HO_MAX_FDS / 2)
#define KG_HO_PEER_MAX 64

enum {
	KG_HO_S_RESUMED = 1u << 0,
	KG_HO_S_TLS_DONE = 1u << 1,
	KG_HO_S_FAILOPEN = 1u << 2,
	KG_HO_S_KTLS_TX = 1u << 3,
	KG_HO_S_KTLS_RX = 1u << 4,
	KG_HO_S_KTLS_ULP = 1u << 5,
	KG_HO_S_IDLE_ANY_DIR = 1u << 6,
	KG_HO_S_DEV_PLAIN = 1u << 7,
	KG_HO_S_BEHIND_PROXY = 1u << 8,
	KG_HO_S_PROXY_CERT = 1u << 9,
	KG_HO_S_ALL = (1u << 10) - 1
};

struct kg_ho_session {
	uint8_t mode;              /* enum kg_relay_mode */
	uint8_t method;            /* enum kg_attestation */
	uint8_t mqtt_level;
	uint8_t cred_kind;         /* enum kg_auth_kind, or its MAX: none */
	uint8_t username_check;    /* enum kg_username_check */
	uint16_t flags;            /* KG_HO_S_* */
	uint16_t listen_idx;       /* [daemon] listen index (the takeover keeps them) */
	uint16_t worker;           /* the worker that held it */
	uint16_t keepalive;
	uint16_t module_off;
	uint16_t reason;           /* the admitting verdict's reason (ok, enrolled) */
	uint32_t idle_ms;          /* 0: none */
	uint32_t idle_for_ms;      /* since the traffic that counts for the idle timeout */
	uint64_t cid;              /* its id in the old process (for logs) */
	int64_t since;             /* accept, unix s */
	int64_t not_after;         /* the leaf's notAfter */
	int64_t resumed_verified_at;
	uint64_t bytes_up, bytes_down;
	uint64_t cookie[2];        /* SO_COOKIE of the device and broker sockets (the fd
				    * store pairs them by it; the channel by position) */
	char device_id[129];       /* KG_DEVICE_ID_MAX + 1 */
	char thumbprint[65];       /* KG_SHA256_HEX_LEN + 1 */
	char ca_name[64];          /* KG_NAME_MAX */
	char backend[64];          /* KG_NAME_MAX */
	char peer[KG_HO_PEER_MAX];
	uint8_t peer_sa[28];       /* sockaddr_in or _in6, peer_salen bytes (0: none) */
	uint8_t peer_salen;
	uint8_t leaf_issuer_md[16];/* struct kg_leaf_ref */
	uint8_t leaf_serial[32];
	uint8_t leaf_serial_len;
	bool leaf_serial_neg;
};

/* The next record of a decoded SESSIONS message: *cur starts at m->text (len
 * m->text_len); returns false at the end. The decoder validated every record, so a
 * record it accepted always decodes. */
bool kg_ho_session_next(const uint8_t **cur, size_t *left, struct kg_ho_session *out);

/* Decode one frame from buf. KG_HO_OK fills m and *used (bytes of the frame);
 * KG_HO_SHORT: a frame has begun, more bytes are needed (*used 0); KG_HO_MALFORMED:
 * bad magic, reserved bytes, lengths or values (the channel must be closed);
 * KG_HO_UNSUPPORTED: another protocol version. */
enum kg_ho_parse kg_ho_decode(const uint8_t *buf, size_t len, struct kg_ho_msg *m, size_t *used);

/* Encoders: the whole frame into out (cap bytes). Return its length, or 0 when it does
 * not fit or a value is out of range (n_fds > KG_HO_MAX_FDS, a text too long). */
size_t kg_ho_encode_fds(uint8_t *out, size_t cap, uint32_t pid, uint16_t workers,
			const struct kg_ho_fd *fds, uint16_t n_fds);
size_t kg_ho_encode_accepting(uint8_t *out, size_t cap, uint32_t pid);
size_t kg_ho_encode_forward(uint8_t *out, size_t cap, const char *line);
size_t kg_ho_encode_state(uint8_t *out, size_t cap, uint32_t pid, uint32_t connections,
			  uint32_t sessions, uint32_t handshakes, bool done);
size_t kg_ho_encode_list(uint8_t *out, size_t cap, uint32_t seq);
/* text: text_len bytes of JSON lines (cut at KG_HO_PAYLOAD_MAX - 4 by the caller). */
size_t kg_ho_encode_list_reply(uint8_t *out, size_t cap, uint32_t seq, const char *text,
			       size_t text_len);

size_t kg_ho_encode_adopt(uint8_t *out, size_t cap, uint32_t pid);
/* n (1..KG_HO_SESSIONS_MAX) records; 0 when they do not fit or one is out of range. */
size_t kg_ho_encode_sessions(uint8_t *out, size_t cap, uint32_t pid,
			     const struct kg_ho_session *s, uint16_t n);
/* Room enough for a SESSIONS frame of n records. */
#define KG_HO_SESSION_WIRE_MAX 600
static inline size_t kg_ho_sessions_size(uint16_t n)
{
	return KG_HO_HEADER + 6 + (size_t)n * KG_HO_SESSION_WIRE_MAX;
}

/* The frame size a LIST_REPLY of text_len bytes needs. */
static inline size_t kg_ho_list_reply_size(size_t text_len)
{
	return KG_HO_HEADER + 4 + text_len;
}

#endif
