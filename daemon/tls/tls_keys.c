/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * tls_keys.c - capture and derive a server session's record-layer keys at handoff.
 *
 * OpenSSL 3.0 has no public getter for traffic keys or record sequence numbers, so:
 * - TLS 1.3: the two application traffic secrets come from the keylog callback
 *   (the same lines SSLKEYLOGFILE would print), and key/iv are derived from them with
 *   HKDF-Expand-Label (EVP_KDF "TLS13-KDF", EXPAND_ONLY, prefix "tls13 ").
 * - TLS 1.2: the key block is PRF(master_secret, "key expansion",
 *   server_random || client_random) (RFC 5246 6.3) with EVP_KDF "TLS1-PRF".
 * - Sequence numbers: every record header OpenSSL reads or writes passes through the
 *   message callback as SSL3_RT_HEADER, and every handshake message as
 *   SSL3_RT_HANDSHAKE after the record(s) carrying it. Counting headers per
 *   direction after that direction's Finished gives the records under the
 *   application keys: TLS 1.3 switches keys right after Finished, so that count is
 *   the next sequence number, and it includes post-handshake records such as
 *   NewSessionTicket (which SSL_accept writes before returning when tickets are
 *   on); TLS 1.2 Finished is itself record 0 under the new keys, so add 1.
 *   Counting from the Finished rather than from SSL_accept's return is what keeps
 *   tickets from shifting the numbers. The self-talk tests in
 *   tests/unit/check_record.c check these counts byte for byte against OpenSSL.
 * Nothing here logs: the tracker and the keys are secrets.
 */
#include <pthread.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/ssl.h>

#include "ops/err.h"
#include "tls/tls_keys.h"

/* The KDFs of every export, fetched once per SSL_CTX (kg_tls_keys_ctx_setup()) and
 * freed with it: EVP_KDF_fetch() by name is a method-store lookup under a lock, and
 * a TLS 1.3 export derives four times. */
struct ctx_kdfs {
	EVP_KDF *tls13;   /* "TLS13-KDF" */
	EVP_KDF *tls1_prf;   /* "TLS1-PRF" */
};

/* The SSL ex_data slot holding the tracker, and the SSL_CTX one holding its
 * struct ctx_kdfs. OpenSSL's ex_data indexes are process-wide by design, so these
 * are the one piece of process state: written once under pthread_once, read-only
 * afterwards. */
static pthread_once_t ex_once = PTHREAD_ONCE_INIT;
static int ex_index = -1;
static int ctx_ex_index = -1;

static void ctx_kdfs_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
			  void *argp)
{
	struct ctx_kdfs *k = ptr;

	(void)parent; (void)ad; (void)idx; (void)argl; (void)argp;
	if (k == NULL)
		return;
	EVP_KDF_free(k->tls13);
	EVP_KDF_free(k->tls1_prf);
	OPENSSL_free(k);
}

static void ex_index_init(void)
{
	ex_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
	ctx_ex_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, ctx_kdfs_free);
}

static int tracker_index(void)
{
	if (pthread_once(&ex_once, ex_index_init) != 0)
		return -1;
	return ex_index;
}

/* The KDF `name` for ssl: its SSL_CTX's pre-fetched one (a reference taken here,
 * EVP_KDF_free() it as a fetched one), else fetched now (a context not set up). */
static EVP_KDF *kdf_for(SSL *ssl, bool tls13)
{
	const struct ctx_kdfs *k = NULL;
	EVP_KDF *kdf;

	if (tracker_index() >= 0 && ctx_ex_index >= 0)
		k = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ctx_ex_index);
	kdf = k != NULL ? (tls13 ? k->tls13 : k->tls1_prf) : NULL;
	if (kdf != NULL && EVP_KDF_up_ref(kdf) == 1)
		return kdf;
	return EVP_KDF_fetch(NULL, tls13 ? "TLS13-KDF" : "TLS1-PRF", NULL);
}

/* The six suites we can carry, by IANA id. */
struct suite {
	uint16_t id;
	uint16_t version;
	enum kg_aead aead;
};

static const struct suite suites[] = {
	{ 0x1301, KG_TLS13, KG_AEAD_AES_128_GCM },       /* TLS_AES_128_GCM_SHA256 */
	{ 0x1302, KG_TLS13, KG_AEAD_AES_256_GCM },       /* TLS_AES_256_GCM_SHA384 */
	{ 0x1303, KG_TLS13, KG_AEAD_CHACHA20_POLY1305 }, /* TLS_CHACHA20_POLY1305_SHA256 */
	{ 0xC02B, KG_TLS12, KG_AEAD_AES_128_GCM },       /* ECDHE-ECDSA-AES128-GCM-SHA256 */
	{ 0xC02F, KG_TLS12, KG_AEAD_AES_128_GCM },       /* ECDHE-RSA-AES128-GCM-SHA256 */
	{ 0xC02C, KG_TLS12, KG_AEAD_AES_256_GCM },       /* ECDHE-ECDSA-AES256-GCM-SHA384 */
	{ 0xC030, KG_TLS12, KG_AEAD_AES_256_GCM },       /* ECDHE-RSA-AES256-GCM-SHA384 */
	{ 0xCCA9, KG_TLS12, KG_AEAD_CHACHA20_POLY1305 }, /* ECDHE-ECDSA-CHACHA20-POLY1305 */
	{ 0xCCA8, KG_TLS12, KG_AEAD_CHACHA20_POLY1305 }, /* ECDHE-RSA-CHACHA20-POLY1305 */
};

unsigned kg_tls_aead_key_len(enum kg_aead aead)
{
	switch (aead) {
	case KG_AEAD_AES_128_GCM:
		return 16;
	case KG_AEAD_AES_256_GCM:
	case KG_AEAD_CHACHA20_POLY1305:
		return 32;
	default:
		return 0;
	}
}

unsigned kg_tls_aead_iv_len(uint16_t version, enum kg_aead aead)
{
	if (kg_tls_aead_key_len(aead) == 0)
		return 0;
	if (version == KG_TLS13)
		return 12;
	if (version != KG_TLS12)
		return 0;
	/* RFC 5288 3: GCM's implicit part is 4 bytes; RFC 7905 2: ChaCha's is 12. */
	return aead == KG_AEAD_CHACHA20_POLY1305 ? 12 : 4;
}

const char *kg_tls_aead_name(enum kg_aead aead)
{
	switch (aead) {
	case KG_AEAD_AES_128_GCM:
		return "AES-128-GCM";
	case KG_AEAD_AES_256_GCM:
		return "AES-256-GCM";
	case KG_AEAD_CHACHA20_POLY1305:
		return "ChaCha20-Poly1305";
	default:
		return "none";
	}
}

/* Keylog line: "<LABEL> <client_random hex> <secret hex>". Only the two
 * application traffic secrets are kept; everything else is ignored. */
static void keylog_cb(const SSL *ssl, const char *line)
{
	static const char cts[] = "CLIENT_TRAFFIC_SECRET_0 ";
	static const char sts[] = "SERVER_TRAFFIC_SECRET_0 ";
	int idx = tracker_index();
	struct kg_tls_key_tracker *t = idx >= 0 ? SSL_get_ex_data(ssl, idx) : NULL;
	uint8_t *dst;
	uint8_t *dst_len;
	const char *hex;
	size_t n = 0;

	if (t == NULL)
		return;
	if (strncmp(line, cts, sizeof(cts) - 1) == 0) {
		dst = t->client_secret;
		dst_len = &t->client_secret_len;
	} else if (strncmp(line, sts, sizeof(sts) - 1) == 0) {
		dst = t->server_secret;
		dst_len = &t->server_secret_len;
	} else {
		return;
	}
	hex = strrchr(line, ' ');
	if (hex == NULL)
		return;
	if (OPENSSL_hexstr2buf_ex(dst, KG_TLS_SECRET_MAX, &n, hex + 1, '\0') != 1 ||
	    (n != 32 && n != 48)) {
		/* A secret we cannot hold: leave it missing, so export says NOTFOUND. */
		OPENSSL_cleanse(dst, KG_TLS_SECRET_MAX);
		*dst_len = 0;
		ERR_clear_error();
		return;
	}
	*dst_len = (uint8_t)n;
}

/* Every record header read (write_p 0) or written (1) comes through here once, as
 * does every handshake message, after the header of the record that carried it. */
static void msg_cb(int write_p, int version, int content_type, const void *buf, size_t len,
		   SSL *ssl, void *arg)
{
	struct kg_tls_key_tracker *t = arg;
	const uint8_t *msg = buf;

	(void)version;
	(void)ssl;
	if (t == NULL)
		return;
	if (content_type == SSL3_RT_HEADER) {
		if (write_p)
			t->wr++;
		else
			t->rd++;
		return;
	}
	if (content_type != SSL3_RT_HANDSHAKE || len < 1)
		return;
	if (msg[0] == SSL3_MT_FINISHED) {
		/* This direction's keys change here (1.3) or changed at its CCS (1.2). */
		if (write_p) {
			t->fin_wr = true;
			t->wr = 0;
		} else {
			t->fin_rd = true;
			t->rd = 0;
		}
	} else if (msg[0] == SSL3_MT_KEY_UPDATE) {
		t->rekeyed = true;
		/* type(1) length(3) request_update(1): 1 = update_requested */
		if (!write_p && len >= 5 && msg[4] == 1)
			t->update_requested = true;
	}
}

int kg_tls_keys_ctx_setup(SSL_CTX *ctx)
{
	struct ctx_kdfs *k;

	if (tracker_index() < 0 || ctx_ex_index < 0)
		return KG_E_RESOURCE;
	SSL_CTX_set_keylog_callback(ctx, keylog_cb);
	if (SSL_CTX_get_ex_data(ctx, ctx_ex_index) != NULL)
		return KG_OK;   /* set up before: its KDFs are there */
	/* A KDF that cannot be fetched now is fetched again (and fails) at export: an
	 * unusable KDF does not refuse the context, as before. */
	k = OPENSSL_zalloc(sizeof(*k));
	if (k == NULL)
		return KG_E_RESOURCE;
	k->tls13 = EVP_KDF_fetch(NULL, "TLS13-KDF", NULL);
	k->tls1_prf = EVP_KDF_fetch(NULL, "TLS1-PRF", NULL);
	ERR_clear_error();
	if (SSL_CTX_set_ex_data(ctx, ctx_ex_index, k) != 1) {
		ctx_kdfs_free(NULL, k, NULL, 0, 0, NULL);
		return KG_E_RESOURCE;
	}
	return KG_OK;
}

int kg_tls_keys_track(SSL *ssl, struct kg_tls_key_tracker *t)
{
	int idx = tracker_index();

	memset(t, 0, sizeof(*t));
	if (idx < 0 || SSL_set_ex_data(ssl, idx, t) != 1)
		return KG_E_RESOURCE;
	SSL_set_msg_callback(ssl, msg_cb);
	SSL_set_msg_callback_arg(ssl, t);
	return KG_OK;
}

void kg_tls_keys_handshake_done(SSL *ssl, struct kg_tls_key_tracker *t)
{
	(void)ssl;
	t->done = true;
}

void kg_tls_keys_untrack(SSL *ssl)
{
	int idx = tracker_index();

	SSL_set_msg_callback(ssl, NULL);
	SSL_set_msg_callback_arg(ssl, NULL);
	if (idx >= 0)
		(void)SSL_set_ex_data(ssl, idx, NULL);
}

/* HKDF-Expand-Label(secret, label, "", len) (RFC 8446 7.1). */
static int tls13_expand(EVP_KDF *kdf, const char *md, const uint8_t *secret, size_t secret_len,
			const char *label, uint8_t *out, size_t len)
{
	static const char prefix[] = "tls13 ";
	int mode = EVP_KDF_HKDF_MODE_EXPAND_ONLY;
	EVP_KDF_CTX *kctx = NULL;
	OSSL_PARAM params[7];
	int ret = KG_E_INTERNAL;

	kctx = EVP_KDF_CTX_new(kdf);
	if (kctx == NULL)
		goto out;
	params[0] = OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode);
	params[1] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)md, 0);
	params[2] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)secret,
						      secret_len);
	params[3] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_PREFIX, (void *)prefix,
						      sizeof(prefix) - 1);
	params[4] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_LABEL, (void *)label,
						      strlen(label));
	params[5] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_DATA, (void *)"", 0);
	params[6] = OSSL_PARAM_construct_end();
	if (EVP_KDF_derive(kctx, out, len, params) == 1)
		ret = KG_OK;
out:
	EVP_KDF_CTX_free(kctx);
	return ret;
}

static int tls13_dir(EVP_KDF *kdf, const char *md, const uint8_t *secret, size_t secret_len,
		     struct kg_tls_dir_keys *d)
{
	int ret = tls13_expand(kdf, md, secret, secret_len, "key", d->key, d->key_len);

	if (ret == KG_OK)
		ret = tls13_expand(kdf, md, secret, secret_len, "iv", d->iv, d->iv_len);
	return ret;
}

/* RFC 5246 6.3: key_block = PRF(master, "key expansion", server_random ||
 * client_random), cut into client key, server key, client IV, server IV (AEAD
 * suites have no MAC keys). */
static int tls12_keys(SSL *ssl, const char *md, struct kg_tls_keys *k)
{
	static const char label[] = "key expansion";
	uint8_t master[SSL_MAX_MASTER_KEY_LENGTH];
	uint8_t seed[sizeof(label) - 1 + 2 * SSL3_RANDOM_SIZE];
	uint8_t block[2 * (KG_TLS_KEY_MAX + KG_TLS_IV_MAX)];
	size_t klen = k->rx.key_len, ivlen = k->rx.iv_len, mlen;
	SSL_SESSION *sess = SSL_get_session(ssl);
	EVP_KDF *kdf = NULL;
	EVP_KDF_CTX *kctx = NULL;
	OSSL_PARAM params[4];
	int ret = KG_E_INTERNAL;

	if (sess == NULL)
		return KG_E_INVALID;
	mlen = SSL_SESSION_get_master_key(sess, master, sizeof(master));
	memcpy(seed, label, sizeof(label) - 1);
	if (mlen == 0 ||
	    SSL_get_server_random(ssl, seed + sizeof(label) - 1, SSL3_RANDOM_SIZE) !=
		    SSL3_RANDOM_SIZE ||
	    SSL_get_client_random(ssl, seed + sizeof(label) - 1 + SSL3_RANDOM_SIZE,
				  SSL3_RANDOM_SIZE) != SSL3_RANDOM_SIZE)
		goto out;
	kdf = kdf_for(ssl, false);
	if (kdf == NULL || (kctx = EVP_KDF_CTX_new(kdf)) == NULL)
		goto out;
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)md, 0);
	params[1] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SECRET, master, mlen);
	params[2] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SEED, seed, sizeof(seed));
	params[3] = OSSL_PARAM_construct_end();
	if (EVP_KDF_derive(kctx, block, 2 * (klen + ivlen), params) != 1)
		goto out;
	/* The server reads what the client writes. */
	memcpy(k->rx.key, block, klen);
	memcpy(k->tx.key, block + klen, klen);
	memcpy(k->rx.iv, block + 2 * klen, ivlen);
	memcpy(k->tx.iv, block + 2 * klen + ivlen, ivlen);
	ret = KG_OK;
out:
	EVP_KDF_CTX_free(kctx);
	EVP_KDF_free(kdf);
	OPENSSL_cleanse(master, sizeof(master));
	OPENSSL_cleanse(block, sizeof(block));
	return ret;
}

int kg_tls_keys_export(SSL *ssl, const struct kg_tls_key_tracker *t, struct kg_tls_keys *out)
{
	const SSL_CIPHER *c = SSL_get_current_cipher(ssl);
	const EVP_MD *md = c != NULL ? SSL_CIPHER_get_handshake_digest(c) : NULL;
	const struct suite *s = NULL;
	int version = SSL_version(ssl);
	uint16_t id;
	int ret;

	memset(out, 0, sizeof(*out));
	if (c == NULL || md == NULL || !SSL_is_init_finished(ssl) || !t->done || !t->fin_rd ||
	    !t->fin_wr || t->rekeyed)
		return KG_E_INVALID;
	id = SSL_CIPHER_get_protocol_id(c);
	for (size_t i = 0; i < KG_NITEMS(suites); i++)
		if (suites[i].id == id && suites[i].version == version)
			s = &suites[i];
	if (s == NULL)
		return KG_E_INVALID;
	/* Bytes OpenSSL already took off the socket would be lost to the new owner:
	 * decrypted-but-unread data (SSL_pending) or raw buffered bytes (read_ahead). */
	if (SSL_pending(ssl) > 0 || SSL_has_pending(ssl))
		return KG_E_AGAIN;

	out->version = s->version;
	out->aead = s->aead;
	out->rx.key_len = out->tx.key_len = (uint8_t)kg_tls_aead_key_len(s->aead);
	out->rx.iv_len = out->tx.iv_len = (uint8_t)kg_tls_aead_iv_len(s->version, s->aead);
	if (s->version == KG_TLS13) {
		const char *mdname = EVP_MD_get0_name(md);
		EVP_KDF *kdf;

		if (t->client_secret_len != EVP_MD_get_size(md) ||
		    t->server_secret_len != EVP_MD_get_size(md)) {
			ret = KG_E_NOTFOUND;
			goto fail;
		}
		kdf = kdf_for(ssl, true);
		ret = kdf == NULL ? KG_E_INTERNAL
				  : tls13_dir(kdf, mdname, t->client_secret, t->client_secret_len, &out->rx);
		if (ret == KG_OK)
			ret = tls13_dir(kdf, mdname, t->server_secret, t->server_secret_len, &out->tx);
		EVP_KDF_free(kdf);
		if (ret != KG_OK)
			goto fail;
		/* Both Finished messages were under the handshake keys: the application
		 * keys' record 0 is the first record after each direction's Finished. */
		out->rx.seq = t->rd;
		out->tx.seq = t->wr;
	} else {
		ret = tls12_keys(ssl, EVP_MD_get0_name(md), out);
		if (ret != KG_OK)
			goto fail;
		/* Each direction's Finished was record 0 under these keys. */
		out->rx.seq = 1 + t->rd;
		out->tx.seq = 1 + t->wr;
	}
	return KG_OK;

fail:
	ERR_clear_error();
	kg_tls_keys_wipe(out);
	return ret;
}

void kg_tls_keys_wipe(struct kg_tls_keys *k)
{
	OPENSSL_cleanse(k, sizeof(*k));
}

void kg_tls_key_tracker_wipe(struct kg_tls_key_tracker *t)
{
	OPENSSL_cleanse(t, sizeof(*t));
}
