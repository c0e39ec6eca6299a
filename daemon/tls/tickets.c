/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * tickets.c - the ticket key store, OpenSSL's ticket key callback on it, and the
 * identity a ticket carries (tickets.h).
 *
 * Why our own keys rather than OpenSSL's built-in ticket key: OpenSSL makes one key
 * per SSL_CTX at random and never rotates it, and a reload makes a new SSL_CTX, which
 * would throw every ticket away; ours outlive reloads, rotate on a clock, sit in the
 * secure heap, and can be exported for sealing. Same algorithms as OpenSSL's own
 * (AES-256-CBC, HMAC-SHA256), so the ticket format is OpenSSL's.
 *
 * Why the identity is checked against the session's peer certificate although both
 * come out of the same MAC'd ticket: the check is what binds the two; should a later
 * change put a certificate into the session some other way (post-handshake auth), a
 * mismatch refuses instead of carrying the old identity over.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>

#include "policy/credential.h"
#include "tls/tickets.h"
#include "tls/verify.h"

struct kg_ticket_key {
	struct kg_ticket_key_material m;
	int64_t born;
	int64_t retired;     /* 0: the current key */
};

struct kg_ticket_keys {
	pthread_rwlock_t lock;
	_Atomic int64_t lifetime;
	struct kg_ticket_key *keys;   /* secure heap, KG_TICKET_KEYS_MAX slots; [0] current */
	size_t n;
	_Atomic uint64_t rotations;
	EVP_CIPHER *cipher;           /* fetched once: no per-ticket fetch */
};

/* The SSL_CTX ex_data slot pointing at the store (the key callback takes no argument).
 * OpenSSL's ex_data indexes are process-wide by design: written once under
 * pthread_once, read-only afterwards (as tls_keys.c's). */
static pthread_once_t ex_once = PTHREAD_ONCE_INIT;
static int ex_index = -1;

static void ex_index_init(void)
{
	ex_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

static int store_index(void)
{
	if (pthread_once(&ex_once, ex_index_init) != 0)
		return -1;
	return ex_index;
}

struct kg_ticket_keys *kg_ticket_keys_new(int64_t lifetime)
{
	struct kg_ticket_keys *k = calloc(1, sizeof(*k));

	if (k == NULL)
		return NULL;
	k->keys = OPENSSL_secure_zalloc(KG_TICKET_KEYS_MAX * sizeof(*k->keys));
	k->cipher = EVP_CIPHER_fetch(NULL, "AES-256-CBC", NULL);
	if (k->keys == NULL || k->cipher == NULL || pthread_rwlock_init(&k->lock, NULL) != 0) {
		OPENSSL_secure_free(k->keys);
		EVP_CIPHER_free(k->cipher);
		free(k);
		return NULL;
	}
	atomic_init(&k->lifetime, lifetime);
	return k;
}

void kg_ticket_keys_free(struct kg_ticket_keys *k)
{
	if (k == NULL)
		return;
	OPENSSL_secure_clear_free(k->keys, KG_TICKET_KEYS_MAX * sizeof(*k->keys));
	EVP_CIPHER_free(k->cipher);
	pthread_rwlock_destroy(&k->lock);
	free(k);
}

void kg_ticket_keys_set_lifetime(struct kg_ticket_keys *k, int64_t lifetime)
{
	atomic_store(&k->lifetime, lifetime);
}

int64_t kg_ticket_keys_next_due(struct kg_ticket_keys *k)
{
	int64_t due = 0;

	pthread_rwlock_rdlock(&k->lock);
	if (k->n > 0 && k->keys[0].retired == 0)
		due = k->keys[0].born + atomic_load(&k->lifetime);
	pthread_rwlock_unlock(&k->lock);
	return due;
}

uint64_t kg_ticket_keys_rotations(const struct kg_ticket_keys *k)
{
	return atomic_load_explicit(&k->rotations, memory_order_relaxed);
}

size_t kg_ticket_keys_count(struct kg_ticket_keys *k)
{
	size_t n;

	pthread_rwlock_rdlock(&k->lock);
	n = k->n;
	pthread_rwlock_unlock(&k->lock);
	return n;
}

static bool current_due(const struct kg_ticket_keys *k, int64_t now, int64_t life)
{
	return k->n == 0 || k->keys[0].retired != 0 || now >= k->keys[0].born + life ||
	       now < k->keys[0].born;   /* the clock went back: do not trust the span */
}

/* Drop retired keys whose window closed (write lock held). */
static void prune(struct kg_ticket_keys *k, int64_t now, int64_t life)
{
	size_t i = 0;

	while (i < k->n) {
		if (k->keys[i].retired != 0 && now >= k->keys[i].retired + life) {
			OPENSSL_cleanse(&k->keys[i], sizeof(k->keys[i]));
			memmove(&k->keys[i], &k->keys[i + 1], (k->n - i - 1) * sizeof(k->keys[0]));
			k->n--;
			OPENSSL_cleanse(&k->keys[k->n], sizeof(k->keys[0]));
		} else {
			i++;
		}
	}
}

/* Write lock held. */
static int rotate_locked(struct kg_ticket_keys *k, int64_t now, int64_t life)
{
	struct kg_ticket_key fresh;

	prune(k, now, life);
	if (!current_due(k, now, life))
		return 0;
	if (RAND_priv_bytes(fresh.m.name, sizeof(fresh.m.name)) != 1 ||
	    RAND_priv_bytes(fresh.m.aes, sizeof(fresh.m.aes)) != 1 ||
	    RAND_priv_bytes(fresh.m.hmac, sizeof(fresh.m.hmac)) != 1) {
		OPENSSL_cleanse(&fresh, sizeof(fresh));
		return -1;
	}
	fresh.born = now;
	fresh.retired = 0;
	if (k->n > 0 && k->keys[0].retired == 0)
		k->keys[0].retired = now;
	/* Full: the oldest retired key goes (its tickets resume by full handshake). */
	if (k->n == KG_TICKET_KEYS_MAX) {
		OPENSSL_cleanse(&k->keys[k->n - 1], sizeof(k->keys[0]));
		k->n--;
	}
	memmove(&k->keys[1], &k->keys[0], k->n * sizeof(k->keys[0]));
	k->keys[0] = fresh;
	k->n++;
	OPENSSL_cleanse(&fresh, sizeof(fresh));
	atomic_fetch_add_explicit(&k->rotations, 1, memory_order_relaxed);
	return 1;
}

int kg_ticket_keys_rotate(struct kg_ticket_keys *k, int64_t now)
{
	int rc;

	pthread_rwlock_wrlock(&k->lock);
	rc = rotate_locked(k, now, atomic_load(&k->lifetime));
	pthread_rwlock_unlock(&k->lock);
	return rc;
}

int kg_ticket_keys_for_encrypt(struct kg_ticket_keys *k, int64_t now,
			       struct kg_ticket_key_material *out)
{
	int64_t life = atomic_load(&k->lifetime);
	int rc = 0;

	pthread_rwlock_rdlock(&k->lock);
	if (!current_due(k, now, life)) {
		*out = k->keys[0].m;
		pthread_rwlock_unlock(&k->lock);
		return 0;
	}
	pthread_rwlock_unlock(&k->lock);
	/* Due: the first worker to get here rotates, the others find it done. */
	pthread_rwlock_wrlock(&k->lock);
	if (rotate_locked(k, now, life) < 0)
		rc = -1;
	else
		*out = k->keys[0].m;
	pthread_rwlock_unlock(&k->lock);
	return rc;
}

int kg_ticket_keys_for_decrypt(struct kg_ticket_keys *k, const unsigned char *name, int64_t now,
			       struct kg_ticket_key_material *out)
{
	int64_t life = atomic_load(&k->lifetime);
	int rc = 0;

	pthread_rwlock_rdlock(&k->lock);
	for (size_t i = 0; i < k->n; i++) {
		const struct kg_ticket_key *key = &k->keys[i];

		if (CRYPTO_memcmp(key->m.name, name, KG_TICKET_NAME_LEN) != 0)
			continue;
		if (key->retired == 0 && now >= key->born) {
			/* Past its span but not yet rotated: still its own tickets' key. */
			*out = key->m;
			rc = now < key->born + life ? 1 : 2;
		} else if (key->retired != 0 && now < key->retired + life) {
			*out = key->m;
			rc = 2;
		}
		break;
	}
	pthread_rwlock_unlock(&k->lock);
	return rc;
}

/* Export: "KGTK" 1, count, then per key name, aes, hmac, born, retired (big endian). */
#define EXPORT_HDR 6
#define EXPORT_KEY (KG_TICKET_NAME_LEN + 32 + 32 + 8 + 8)

static void put64(unsigned char *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (unsigned char)v;
}

static uint64_t get64(const unsigned char *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

int kg_ticket_keys_export(struct kg_ticket_keys *k, unsigned char **out, size_t *len)
{
	unsigned char *b, *p;
	size_t n;

	pthread_rwlock_rdlock(&k->lock);
	n = k->n;
	b = OPENSSL_secure_malloc(EXPORT_HDR + n * EXPORT_KEY);
	if (b == NULL) {
		pthread_rwlock_unlock(&k->lock);
		return -1;
	}
	memcpy(b, "KGTK", 4);
	b[4] = 1;
	b[5] = (unsigned char)n;
	p = b + EXPORT_HDR;
	for (size_t i = 0; i < n; i++, p += EXPORT_KEY) {
		memcpy(p, k->keys[i].m.name, KG_TICKET_NAME_LEN);
		memcpy(p + 16, k->keys[i].m.aes, 32);
		memcpy(p + 48, k->keys[i].m.hmac, 32);
		put64(p + 80, (uint64_t)k->keys[i].born);
		put64(p + 88, (uint64_t)k->keys[i].retired);
	}
	pthread_rwlock_unlock(&k->lock);
	*out = b;
	*len = EXPORT_HDR + n * EXPORT_KEY;
	return 0;
}

int kg_ticket_keys_import(struct kg_ticket_keys *k, const unsigned char *in, size_t len)
{
	struct kg_ticket_key *keys;
	size_t n;

	if (len < EXPORT_HDR || memcmp(in, "KGTK", 4) != 0 || in[4] != 1)
		return -1;
	n = in[5];
	if (n > KG_TICKET_KEYS_MAX || len != EXPORT_HDR + n * EXPORT_KEY)
		return -1;
	keys = OPENSSL_secure_zalloc(KG_TICKET_KEYS_MAX * sizeof(*keys));
	if (keys == NULL)
		return -1;
	for (size_t i = 0; i < n; i++) {
		const unsigned char *p = in + EXPORT_HDR + i * EXPORT_KEY;

		memcpy(keys[i].m.name, p, KG_TICKET_NAME_LEN);
		memcpy(keys[i].m.aes, p + 16, 32);
		memcpy(keys[i].m.hmac, p + 48, 32);
		keys[i].born = (int64_t)get64(p + 80);
		keys[i].retired = (int64_t)get64(p + 88);
		/* Only the first may be current: the rest are retired, newest first. */
		if (keys[i].born < 0 || keys[i].retired < 0 || (i > 0 && keys[i].retired == 0)) {
			OPENSSL_secure_clear_free(keys, KG_TICKET_KEYS_MAX * sizeof(*keys));
			return -1;
		}
	}
	pthread_rwlock_wrlock(&k->lock);
	OPENSSL_secure_clear_free(k->keys, KG_TICKET_KEYS_MAX * sizeof(*k->keys));
	k->keys = keys;
	k->n = n;
	pthread_rwlock_unlock(&k->lock);
	return 0;
}

/*
 * OpenSSL's ticket key callback (SSL_CTX_set_tlsext_ticket_key_evp_cb). enc: 1 with
 * the key to encrypt under, -1 failure. Decrypt: 0 unknown or expired key (a full
 * handshake), 1 ok, 2 ok but renew (a retired key). TLS 1.2 never gets here: the
 * decrypt callback (core) declines its tickets, so none is issued; 0 is its answer
 * anyway (an empty ticket in TLS 1.2, never asked for in TLS 1.3).
 */
static int ticket_key_cb(SSL *s, unsigned char key_name[16], unsigned char iv[EVP_MAX_IV_LENGTH],
			 EVP_CIPHER_CTX *ctx, EVP_MAC_CTX *hctx, int enc)
{
	int idx = store_index();
	struct kg_ticket_keys *k = idx >= 0 ? SSL_CTX_get_ex_data(SSL_get_SSL_CTX(s), idx) : NULL;
	struct kg_ticket_key_material m;
	OSSL_PARAM params[3];
	int rc;

	if (k == NULL)
		return enc ? -1 : 0;
	if (enc) {
		if (SSL_version(s) != TLS1_3_VERSION)
			return 0;
		if (kg_ticket_keys_for_encrypt(k, (int64_t)time(NULL), &m) < 0)
			return -1;
		if (RAND_bytes(iv, EVP_CIPHER_get_iv_length(k->cipher)) != 1) {
			rc = -1;
			goto out;
		}
		memcpy(key_name, m.name, KG_TICKET_NAME_LEN);
		rc = 1;
	} else {
		rc = kg_ticket_keys_for_decrypt(k, key_name, (int64_t)time(NULL), &m);
		if (rc == 0)
			return 0;
	}
	params[0] = OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, m.hmac, sizeof(m.hmac));
	params[1] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0);
	params[2] = OSSL_PARAM_construct_end();
	if (EVP_MAC_CTX_set_params(hctx, params) != 1 ||
	    (enc ? EVP_EncryptInit_ex2(ctx, k->cipher, m.aes, iv, NULL)
		 : EVP_DecryptInit_ex2(ctx, k->cipher, m.aes, iv, NULL)) != 1)
		rc = enc ? -1 : 0;
out:
	OPENSSL_cleanse(&m, sizeof(m));
	return rc;
}

int kg_tickets_ctx_setup(SSL_CTX *ctx, struct kg_ticket_keys *k, int64_t lifetime,
			 SSL_CTX_generate_session_ticket_fn gen,
			 SSL_CTX_decrypt_session_ticket_fn dec, void *arg)
{
	int idx = store_index();

	if (idx < 0 || k == NULL || SSL_CTX_set_ex_data(ctx, idx, k) != 1)
		return -1;
	/* Stateless tickets: no server cache (nothing to share between workers or
	 * instances but the keys). */
	SSL_CTX_clear_options(ctx, SSL_OP_NO_TICKET);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	/* Required with client certificates (else OpenSSL refuses every resumption):
	 * one constant, so tickets survive reloads; what a ticket may resume is decided
	 * by the identity in it (the decrypt callback), not by this. */
	if (SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"ktlsgate", 8) != 1)
		return -1;
	/* One ticket per handshake: a device reconnects one connection at a time. */
	if (SSL_CTX_set_num_tickets(ctx, 1) != 1)
		return -1;
	/* No 0-RTT: early data is replayable and would reach the broker before the
	 * policy ran. PSK only with (EC)DHE: a stolen ticket key must not decrypt
	 * recorded sessions (off here; only [tls] resumption_psk_ke turns it on, in
	 * tls.h kg_tls_set_psk_ke()). */
	if (SSL_CTX_set_max_early_data(ctx, 0) != 1 || SSL_CTX_set_recv_max_early_data(ctx, 0) != 1)
		return -1;
	SSL_CTX_clear_options(ctx, SSL_OP_ALLOW_NO_DHE_KEX);
	SSL_CTX_set_timeout(ctx, (long)lifetime);
	if (SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_key_cb) != 1)
		return -1;
	if (SSL_CTX_set_session_ticket_cb(ctx, gen, dec, arg) != 1)
		return -1;
	return 0;
}

/* ---- what a ticket says ---------------------------------------------------- */

/* Format 1: version, verified, method, module_off, trust_gen(8), not_after(8),
 * verified_at(8), leaf_sha256(32), id_len, id, ca_len, ca. Unverified: the first two
 * bytes only. */
#define ID_FIXED (4 + 24 + 32)

int kg_ticket_id_from_identity(struct kg_ticket_id *t, const struct kg_identity *id, uint64_t gen,
			       int64_t now)
{
	size_t n = 0;

	memset(t, 0, sizeof(*t));
	if (id == NULL)
		return 0;
	if (strlen(id->thumbprint) != KG_SHA256_HEX_LEN ||
	    OPENSSL_hexstr2buf_ex(t->leaf_sha256, sizeof(t->leaf_sha256), &n,
				  id->thumbprint, '\0') != 1 || n != 32)
		return -1;
	t->verified = true;
	t->method = id->method;
	t->trust_gen = gen;
	t->not_after = id->not_after;
	t->verified_at = now;
	memcpy(t->device_id, id->device_id, sizeof(t->device_id));
	t->module_off = id->module_off;
	memcpy(t->ca_name, id->ca_name, sizeof(t->ca_name));
	return 0;
}

int kg_ticket_id_encode(const struct kg_ticket_id *t, unsigned char *buf, size_t cap)
{
	size_t idl, cal, n;

	if (cap < 2)
		return -1;
	buf[0] = 1;
	buf[1] = t->verified;
	if (!t->verified)
		return 2;
	idl = strnlen(t->device_id, sizeof(t->device_id));
	cal = strnlen(t->ca_name, sizeof(t->ca_name));
	n = ID_FIXED + 1 + idl + 1 + cal;
	if (n > cap || idl > KG_DEVICE_ID_MAX || cal >= KG_NAME_MAX || t->module_off > idl ||
	    (unsigned)t->method > 255)
		return -1;
	buf[2] = (unsigned char)t->method;
	buf[3] = (unsigned char)t->module_off;
	put64(buf + 4, t->trust_gen);
	put64(buf + 12, (uint64_t)t->not_after);
	put64(buf + 20, (uint64_t)t->verified_at);
	memcpy(buf + 28, t->leaf_sha256, 32);
	buf[ID_FIXED] = (unsigned char)idl;
	memcpy(buf + ID_FIXED + 1, t->device_id, idl);
	buf[ID_FIXED + 1 + idl] = (unsigned char)cal;
	memcpy(buf + ID_FIXED + 2 + idl, t->ca_name, cal);
	return (int)n;
}

int kg_ticket_id_decode(const unsigned char *buf, size_t len, struct kg_ticket_id *t)
{
	size_t idl, cal, off;

	memset(t, 0, sizeof(*t));
	if (len < 2 || buf[0] != 1 || buf[1] > 1)
		return -1;
	if (buf[1] == 0)
		return len == 2 ? 0 : -1;
	if (len < ID_FIXED + 2)
		return -1;
	idl = buf[ID_FIXED];
	if (idl == 0 || idl > KG_DEVICE_ID_MAX || len < ID_FIXED + 2 + idl)
		return -1;
	cal = buf[ID_FIXED + 1 + idl];
	if (cal >= KG_NAME_MAX || len != ID_FIXED + 2 + idl + cal)
		return -1;
	if (buf[2] != KG_ATT_CA && buf[2] != KG_ATT_THUMBPRINT)
		return -1;
	t->verified = true;
	t->method = (enum kg_attestation)buf[2];
	t->trust_gen = get64(buf + 4);
	t->not_after = (int64_t)get64(buf + 12);
	t->verified_at = (int64_t)get64(buf + 20);
	memcpy(t->leaf_sha256, buf + 28, 32);
	memcpy(t->device_id, buf + ID_FIXED + 1, idl);
	memcpy(t->ca_name, buf + ID_FIXED + 2 + idl, cal);
	/* The one rule for a device id; and the module split where it says. */
	if (!kg_identity_valid(t->device_id, idl, &off) || off != buf[3] ||
	    memchr(t->ca_name, '\0', cal) != NULL ||
	    (t->method == KG_ATT_CA) != (cal > 0)) {
		memset(t, 0, sizeof(*t));
		return -1;
	}
	t->module_off = off;
	return 0;
}

void kg_ticket_id_to_identity(const struct kg_ticket_id *t, struct kg_identity *id)
{
	memset(id, 0, sizeof(*id));
	memcpy(id->device_id, t->device_id, sizeof(id->device_id));
	id->module_off = t->module_off;
	kg_hex_lower(t->leaf_sha256, sizeof(t->leaf_sha256), id->thumbprint);
	id->method = t->method;
	memcpy(id->ca_name, t->ca_name, sizeof(id->ca_name));
	id->not_after = t->not_after;
}

enum kg_resume_refusal kg_ticket_check(const struct kg_ticket_id *t, X509 *peer, uint64_t gen,
				       int64_t now)
{
	unsigned char md[32];
	unsigned int mdlen = 0;

	if (!t->verified || peer == NULL)
		return KG_RESUME_BAD_TICKET;
	if (X509_digest(peer, EVP_sha256(), md, &mdlen) != 1 || mdlen != sizeof(md) ||
	    CRYPTO_memcmp(md, t->leaf_sha256, sizeof(md)) != 0)
		return KG_RESUME_LEAF_MISMATCH;
	if (t->trust_gen != gen)
		return KG_RESUME_TRUST_CHANGED;
	if (now > t->not_after)
		return KG_RESUME_LEAF_EXPIRED;
	if (now < t->verified_at || now - t->verified_at > KG_TICKET_MAX_AGE)
		return KG_RESUME_TOO_OLD;
	return KG_RESUME_OK;
}

bool kg_ticket_renew_due(int64_t issued, int64_t now, int64_t lifetime, bool reuse)
{
	if (!reuse || issued > now)
		return true;
	return now - issued >= lifetime / 2;
}
