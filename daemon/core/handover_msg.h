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
 * messages (the live-session handover, issue 14's next slice, adds its own) without
 * breaking this one. Every length is checked against the frame: garbage never reads
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
	KG_HO_FD_KIND_MAX
};

struct kg_ho_fd {
	uint8_t kind;           /* enum kg_ho_fd_kind */
	uint16_t worker;        /* LISTEN: the worker that held it */
	uint16_t index;         /* LISTEN: the address's index in [daemon] listen order */
	char text[KG_HO_TEXT_MAX + 1];   /* LISTEN: the address as configured; XDP: ifname */
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
	/* FORWARD: the verb line; LIST_REPLY: the JSON lines (not NUL-terminated, text_len) */
	const char *text;       /* points into the decoded buffer */
	size_t text_len;
};

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

/* The frame size a LIST_REPLY of text_len bytes needs. */
static inline size_t kg_ho_list_reply_size(size_t text_len)
{
	return KG_HO_HEADER + 4 + text_len;
}

#endif
