/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * check_tickets.c - units of tls/tickets.h: the ticket key store (rotation, a retired
 * key decrypting within its window and refused after it, export/import), the identity a
 * ticket carries (encode/decode, malformed input), kg_ticket_check(), and real TLS 1.3
 * resumptions between an OpenSSL client and a server set up by kg_tickets_ctx_setup()
 * (a resumption under a live key, none once the key's window closed, none for TLS 1.2);
 * the sealed ticket-key file format (tls/ticket_store.h): round trip, every truncation,
 * garbage, other versions, and a load that never reaches the TPM for a bad file.
 */
#include <check.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>

#include "cli/pki.h"
#include "tls/ticket_store.h"
#include "tls/session_cache.h"
#include "tls/tickets.h"
#include "tls/tls_keys.h"
#include "tls/verify.h"
#include "testlib.h"

/* ---- the key store ---------------------------------------------------------- */

START_TEST(rotation_on_schedule)
{
	struct kg_ticket_keys *k = kg_ticket_keys_new(100);
	struct kg_ticket_key_material a, b;

	ck_assert_ptr_nonnull(k);
	ck_assert_uint_eq(kg_ticket_keys_count(k), 0);
	ck_assert_int_eq(kg_ticket_keys_rotate(k, 1000), 1);     /* none yet: made */
	ck_assert_int_eq(kg_ticket_keys_rotate(k, 1099), 0);     /* not due */
	ck_assert_int_eq(kg_ticket_keys_for_encrypt(k, 1050, &a), 0);
	ck_assert_int_eq(kg_ticket_keys_for_encrypt(k, 1099, &b), 0);
	ck_assert_mem_eq(a.name, b.name, KG_TICKET_NAME_LEN);
	ck_assert_mem_eq(a.aes, b.aes, sizeof(a.aes));
	/* Due: the next ticket rotates (lazily, on the worker that makes it). */
	ck_assert_int_eq(kg_ticket_keys_for_encrypt(k, 1100, &b), 0);
	ck_assert(memcmp(a.name, b.name, KG_TICKET_NAME_LEN) != 0);
	ck_assert(memcmp(a.aes, b.aes, sizeof(a.aes)) != 0);
	ck_assert(memcmp(a.hmac, b.hmac, sizeof(a.hmac)) != 0);
	ck_assert_uint_eq(kg_ticket_keys_rotations(k), 2);
	ck_assert_uint_eq(kg_ticket_keys_count(k), 2);
	/* A clock that went back does not keep a key forever: rotate. */
	ck_assert_int_eq(kg_ticket_keys_rotate(k, 900), 1);
	kg_ticket_keys_free(k);
}
END_TEST

START_TEST(retired_key_decrypts_within_lifetime)
{
	struct kg_ticket_keys *k = kg_ticket_keys_new(100);
	struct kg_ticket_key_material k1, k2, got;
	unsigned char other[KG_TICKET_NAME_LEN] = { 0 };

	ck_assert_int_eq(kg_ticket_keys_for_encrypt(k, 1000, &k1), 0);
	ck_assert_int_eq(kg_ticket_keys_for_decrypt(k, k1.name, 1010, &got), 1);
	ck_assert_mem_eq(got.aes, k1.aes, sizeof(got.aes));
	ck_assert_mem_eq(got.hmac, k1.hmac, sizeof(got.hmac));
	ck_assert_int_eq(kg_ticket_keys_rotate(k, 1150), 1);   /* k1 retired at 1150 */
	ck_assert_int_eq(kg_ticket_keys_for_encrypt(k, 1150, &k2), 0);
	/* k1's last ticket (made at 1149) lives until 1249: still decrypted, renewed */
	ck_assert_int_eq(kg_ticket_keys_for_decrypt(k, k1.name, 1249, &got), 2);
	ck_assert_mem_eq(got.aes, k1.aes, sizeof(got.aes));
	ck_assert_int_eq(kg_ticket_keys_for_decrypt(k, k2.name, 1249, &got), 1);
	/* past its window: refused (a full handshake), even before it is pruned */
	ck_assert_int_eq(kg_ticket_keys_for_decrypt(k, k1.name, 1250, &got), 0);
	ck_assert_int_eq(kg_ticket_keys_for_decrypt(k, other, 1200, &got), 0);
	/* the next rotation wipes it */
	ck_assert_int_eq(kg_ticket_keys_rotate(k, 1260), 1);
	ck_assert_uint_eq(kg_ticket_keys_count(k), 2);          /* k2 retired + k3 */
	ck_assert_int_eq(kg_ticket_keys_for_decrypt(k, k1.name, 1260, &got), 0);
	ck_assert_int_eq(kg_ticket_keys_for_decrypt(k, k2.name, 1300, &got), 2);
	/* a shorter lifetime (a reload) closes the windows sooner */
	kg_ticket_keys_set_lifetime(k, 60);
	ck_assert_int_eq(kg_ticket_keys_for_decrypt(k, k2.name, 1320, &got), 0);
	kg_ticket_keys_free(k);
}
END_TEST

START_TEST(store_never_over_capacity)
{
	struct kg_ticket_keys *k = kg_ticket_keys_new(100);

	/* A lifetime raised by a reload keeps retired keys longer: the oldest goes. */
	kg_ticket_keys_set_lifetime(k, 1000000);
	for (int i = 0; i < 10; i++) {
		ck_assert_int_eq(kg_ticket_keys_rotate(k, 1000 + (int64_t)i * 1000000), 1);
		ck_assert_uint_le(kg_ticket_keys_count(k), KG_TICKET_KEYS_MAX);
	}
	kg_ticket_keys_free(k);
}
END_TEST

START_TEST(export_import_round_trip)
{
	struct kg_ticket_keys *a = kg_ticket_keys_new(100), *b = kg_ticket_keys_new(100);
	struct kg_ticket_key_material k1, k2, got;
	unsigned char *bytes = NULL, *bad;
	size_t len = 0;

	ck_assert_int_eq(kg_ticket_keys_for_encrypt(a, 1000, &k1), 0);
	ck_assert_int_eq(kg_ticket_keys_for_encrypt(a, 1100, &k2), 0);
	ck_assert_int_eq(kg_ticket_keys_export(a, &bytes, &len), 0);
	ck_assert_int_eq(kg_ticket_keys_import(b, bytes, len), 0);
	/* b decrypts a's tickets exactly as a would, and encrypts with a's current key */
	ck_assert_int_eq(kg_ticket_keys_for_decrypt(b, k1.name, 1150, &got), 2);
	ck_assert_mem_eq(got.hmac, k1.hmac, sizeof(got.hmac));
	ck_assert_int_eq(kg_ticket_keys_for_decrypt(b, k2.name, 1150, &got), 1);
	ck_assert_int_eq(kg_ticket_keys_for_encrypt(b, 1150, &got), 0);
	ck_assert_mem_eq(got.name, k2.name, KG_TICKET_NAME_LEN);
	/* malformed: refused whole, the store unchanged */
	bad = malloc(len + 1);
	memcpy(bad, bytes, len);
	ck_assert_int_eq(kg_ticket_keys_import(b, bad, len - 1), -1);    /* short */
	bad[len] = 0;
	ck_assert_int_eq(kg_ticket_keys_import(b, bad, len + 1), -1);    /* trailing */
	bad[0] = 'X';
	ck_assert_int_eq(kg_ticket_keys_import(b, bad, len), -1);        /* magic */
	memcpy(bad, bytes, len);
	bad[4] = 2;
	ck_assert_int_eq(kg_ticket_keys_import(b, bad, len), -1);        /* version */
	memcpy(bad, bytes, len);
	bad[5] = KG_TICKET_KEYS_MAX + 1;
	ck_assert_int_eq(kg_ticket_keys_import(b, bad, len), -1);        /* count */
	ck_assert_int_eq(kg_ticket_keys_import(b, bad, 3), -1);
	ck_assert_int_eq(kg_ticket_keys_for_decrypt(b, k2.name, 1150, &got), 1);
	free(bad);
	OPENSSL_secure_clear_free(bytes, len);
	kg_ticket_keys_free(a);
	kg_ticket_keys_free(b);
}
END_TEST

/* ---- the identity in a ticket ----------------------------------------------- */

static struct kg_identity sample_identity(void)
{
	struct kg_identity id;

	memset(&id, 0, sizeof(id));
	strcpy(id.device_id, "dev-1/mod");
	id.module_off = 6;
	strcpy(id.thumbprint, "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff");
	id.method = KG_ATT_CA;
	strcpy(id.ca_name, "factory");
	id.not_after = 2000000000;
	return id;
}

START_TEST(identity_round_trip)
{
	struct kg_identity id = sample_identity(), back;
	struct kg_ticket_id t, u;
	unsigned char buf[KG_TICKET_ID_MAX];
	int n;

	ck_assert_int_eq(kg_ticket_id_from_identity(&t, &id, 0x1122334455667788ULL, 1700000000), 0);
	n = kg_ticket_id_encode(&t, buf, sizeof(buf));
	ck_assert_int_gt(n, 0);
	ck_assert_int_eq(kg_ticket_id_decode(buf, (size_t)n, &u), 0);
	ck_assert(u.verified);
	ck_assert_int_eq(u.method, KG_ATT_CA);
	ck_assert_uint_eq(u.trust_gen, 0x1122334455667788ULL);
	ck_assert_int_eq(u.not_after, 2000000000);
	ck_assert_int_eq(u.verified_at, 1700000000);
	ck_assert_str_eq(u.device_id, "dev-1/mod");
	ck_assert_uint_eq(u.module_off, 6);
	ck_assert_str_eq(u.ca_name, "factory");
	kg_ticket_id_to_identity(&u, &back);
	ck_assert_str_eq(back.thumbprint, id.thumbprint);
	ck_assert_str_eq(back.device_id, id.device_id);
	ck_assert_str_eq(back.ca_name, id.ca_name);
	ck_assert_int_eq(back.method, id.method);
	ck_assert_int_eq(back.not_after, id.not_after);
	/* a thumbprint device: no CA */
	id.method = KG_ATT_THUMBPRINT;
	id.ca_name[0] = '\0';
	strcpy(id.device_id, "pinned");
	id.module_off = 0;
	ck_assert_int_eq(kg_ticket_id_from_identity(&t, &id, 7, 1), 0);
	n = kg_ticket_id_encode(&t, buf, sizeof(buf));
	ck_assert_int_eq(kg_ticket_id_decode(buf, (size_t)n, &u), 0);
	ck_assert_int_eq(u.method, KG_ATT_THUMBPRINT);
	ck_assert_str_eq(u.ca_name, "");
	/* an unverified session: two bytes, never resumes */
	ck_assert_int_eq(kg_ticket_id_from_identity(&t, NULL, 7, 1), 0);
	n = kg_ticket_id_encode(&t, buf, sizeof(buf));
	ck_assert_int_eq(n, 2);
	ck_assert_int_eq(kg_ticket_id_decode(buf, 2, &u), 0);
	ck_assert(!u.verified);
	ck_assert_int_eq(kg_ticket_check(&u, NULL, 7, 1), KG_RESUME_BAD_TICKET);
	/* a thumbprint that is no SHA-256 is not put in a ticket */
	strcpy(id.thumbprint, "zz");
	ck_assert_int_eq(kg_ticket_id_from_identity(&t, &id, 7, 1), -1);
}
END_TEST

START_TEST(identity_malformed)
{
	struct kg_identity id = sample_identity();
	struct kg_ticket_id t, u;
	unsigned char buf[KG_TICKET_ID_MAX + 8], bad[KG_TICKET_ID_MAX + 8];
	int n;

	ck_assert_int_eq(kg_ticket_id_from_identity(&t, &id, 9, 1), 0);
	n = kg_ticket_id_encode(&t, buf, sizeof(buf));
	ck_assert_int_gt(n, 2);
	/* every truncation, and one byte too many */
	for (int len = 0; len < n; len++)
		ck_assert_msg(kg_ticket_id_decode(buf, (size_t)len, &u) == -1, "len %d", len);
	memcpy(bad, buf, (size_t)n);
	bad[n] = 0;
	ck_assert_int_eq(kg_ticket_id_decode(bad, (size_t)n + 1, &u), -1);
	/* version, verified flag, method */
	memcpy(bad, buf, (size_t)n);
	bad[0] = 2;
	ck_assert_int_eq(kg_ticket_id_decode(bad, (size_t)n, &u), -1);
	memcpy(bad, buf, (size_t)n);
	bad[1] = 2;
	ck_assert_int_eq(kg_ticket_id_decode(bad, (size_t)n, &u), -1);
	memcpy(bad, buf, (size_t)n);
	bad[2] = KG_ATT_SAS;
	ck_assert_int_eq(kg_ticket_id_decode(bad, (size_t)n, &u), -1);
	memcpy(bad, buf, (size_t)n);
	bad[2] = KG_ATT_THUMBPRINT;      /* a CA name with a thumbprint method */
	ck_assert_int_eq(kg_ticket_id_decode(bad, (size_t)n, &u), -1);
	/* module offset that is not where the '/' is */
	memcpy(bad, buf, (size_t)n);
	bad[3] = 2;
	ck_assert_int_eq(kg_ticket_id_decode(bad, (size_t)n, &u), -1);
	/* a device id the verifier would never have accepted (a space) */
	memcpy(bad, buf, (size_t)n);
	bad[4 + 24 + 32 + 1] = ' ';
	ck_assert_int_eq(kg_ticket_id_decode(bad, (size_t)n, &u), -1);
	/* a NUL inside the CA name */
	memcpy(bad, buf, (size_t)n);
	bad[n - 2] = '\0';
	ck_assert_int_eq(kg_ticket_id_decode(bad, (size_t)n, &u), -1);
	/* an unverified marker with trailing bytes */
	ck_assert_int_eq(kg_ticket_id_decode((const unsigned char *)"\x01\x00\x00", 3, &u), -1);
	/* a buffer too small to encode into */
	ck_assert_int_eq(kg_ticket_id_encode(&t, buf, 10), -1);
}
END_TEST

/* ---- certificates and a TLS server and client -------------------------------- */

static char pki_dir[PATH_MAX];

static void pki_path(char *out, size_t cap, const char *sub, const char *file)
{
	int n = snprintf(out, cap, "%s/%s/%s", pki_dir, sub, file);

	ck_assert(n > 0 && (size_t)n < cap);
}

static void pki_setup(void)
{
	static const struct { enum kg_pki_kind kind; const char *cn, *sub; } certs[] = {
		{ KG_PKI_SERVER, "gate.test", "server" },
		{ KG_PKI_DEVICE, "dev-a", "dev-a" },
		{ KG_PKI_DEVICE, "dev-b", "dev-b" },
	};
	char root[PATH_MAX], out[PATH_MAX], err[512] = "";
	struct kg_pki_req req = { .kind = KG_PKI_ROOT, .cn = "Tickets Test Root", .out_dir = root,
				  .key = KG_KEY_EC_P256 };

	kg_test_tmpdir(pki_dir, sizeof(pki_dir));
	ck_assert(snprintf(root, sizeof(root), "%s/root", pki_dir) < (int)sizeof(root));
	ck_assert_msg(kg_pki_make(&req, err, sizeof(err)) == 0, "%s", err);
	for (size_t i = 0; i < sizeof(certs) / sizeof(certs[0]); i++) {
		ck_assert(snprintf(out, sizeof(out), "%s/%s", pki_dir, certs[i].sub) < (int)sizeof(out));
		req = (struct kg_pki_req){ .kind = certs[i].kind, .cn = certs[i].cn, .out_dir = out,
					   .issuer_dir = root, .key = KG_KEY_EC_P256 };
		ck_assert_msg(kg_pki_make(&req, err, sizeof(err)) == 0, "%s", err);
	}
}

static void pki_teardown(void)
{
	kg_test_rmdir(pki_dir);
}

static X509 *load_cert(const char *sub)
{
	char path[PATH_MAX];
	FILE *f;
	X509 *x;

	pki_path(path, sizeof(path), sub, "cert.pem");
	f = fopen(path, "r");
	ck_assert_ptr_nonnull(f);
	x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	ck_assert_ptr_nonnull(x);
	return x;
}

/* ticket_reuse: a resumption renews the ticket only from half its lifetime on; a
 * ticket "issued" in the future (a clock step back) is renewed; reuse off: always. */
START_TEST(renew_due_at_half_life)
{
	const int64_t t0 = 1700000000, life = 7200;

	ck_assert(!kg_ticket_renew_due(t0, t0, life, true));
	ck_assert(!kg_ticket_renew_due(t0, t0 + life / 2 - 1, life, true));
	ck_assert(kg_ticket_renew_due(t0, t0 + life / 2, life, true));
	ck_assert(kg_ticket_renew_due(t0, t0 + life + 5, life, true));
	ck_assert(kg_ticket_renew_due(t0 + 10, t0, life, true));
	ck_assert(kg_ticket_renew_due(t0, t0, life, false));
	ck_assert(kg_ticket_renew_due(t0, t0 + 1, life, false));
	/* the shortest lifetime allowed (60 s): renewed from 30 s */
	ck_assert(!kg_ticket_renew_due(t0, t0 + 29, 60, true));
	ck_assert(kg_ticket_renew_due(t0, t0 + 30, 60, true));
}
END_TEST

START_TEST(check_binds_leaf_generation_and_time)
{
	X509 *a = load_cert("dev-a"), *b = load_cert("dev-b");
	struct kg_identity id;
	struct kg_ticket_id t;
	int64_t now = 1700000000;

	memset(&id, 0, sizeof(id));
	strcpy(id.device_id, "dev-a");
	id.method = KG_ATT_CA;
	strcpy(id.ca_name, "root");
	ck_assert_int_eq(kg_cert_sha256_hex(a, id.thumbprint), 0);
	id.not_after = kg_cert_not_after(a);
	now = id.not_after - 86400 * 30;
	ck_assert_int_eq(kg_ticket_id_from_identity(&t, &id, 42, now), 0);
	ck_assert_int_eq(kg_ticket_check(&t, a, 42, now + 10), KG_RESUME_OK);
	/* another certificate in the session than the one the identity was proven with */
	ck_assert_int_eq(kg_ticket_check(&t, b, 42, now + 10), KG_RESUME_LEAF_MISMATCH);
	ck_assert_int_eq(kg_ticket_check(&t, NULL, 42, now + 10), KG_RESUME_BAD_TICKET);
	/* another trust: a CA, CRL or reload change since */
	ck_assert_int_eq(kg_ticket_check(&t, a, 43, now + 10), KG_RESUME_TRUST_CHANGED);
	/* the leaf expired since */
	ck_assert_int_eq(kg_ticket_check(&t, a, 42, id.not_after + 1), KG_RESUME_LEAF_EXPIRED);
	/* verified more than 7 days ago (renewed tickets keep the first time) */
	ck_assert_int_eq(kg_ticket_check(&t, a, 42, now + KG_TICKET_MAX_AGE + 1), KG_RESUME_TOO_OLD);
	ck_assert_int_eq(kg_ticket_check(&t, a, 42, now - 1), KG_RESUME_TOO_OLD);
	X509_free(a);
	X509_free(b);
}
END_TEST

/* What the daemon's callbacks do, reduced: the identity in the ticket, checked on use. */
struct cb_state {
	int gen_calls, dec_calls;
	SSL_TICKET_STATUS last_status;
	bool had_identity;
};

static struct cb_state cbs;
static X509 *cb_leaf;

static int gen_cb(SSL *s, void *arg)
{
	struct kg_identity id;
	struct kg_ticket_id t;
	unsigned char buf[KG_TICKET_ID_MAX];
	int n;

	(void)arg;
	cbs.gen_calls++;
	memset(&id, 0, sizeof(id));
	strcpy(id.device_id, "dev-a");
	id.method = KG_ATT_CA;
	strcpy(id.ca_name, "root");
	ck_assert_int_eq(kg_cert_sha256_hex(cb_leaf, id.thumbprint), 0);
	id.not_after = kg_cert_not_after(cb_leaf);
	ck_assert_int_eq(kg_ticket_id_from_identity(&t, &id, 5, (int64_t)time(NULL)), 0);
	n = kg_ticket_id_encode(&t, buf, sizeof(buf));
	ck_assert_int_gt(n, 0);
	ck_assert_int_eq(SSL_SESSION_set1_ticket_appdata(SSL_get0_session(s), buf, (size_t)n), 1);
	return 1;
}

static SSL_TICKET_RETURN dec_cb(SSL *s, SSL_SESSION *ss, const unsigned char *name, size_t namelen,
				SSL_TICKET_STATUS status, void *arg)
{
	void *data = NULL;
	size_t len = 0;
	struct kg_ticket_id t;

	(void)name;
	(void)namelen;
	(void)arg;
	cbs.dec_calls++;
	cbs.last_status = status;
	if (SSL_version(s) != TLS1_3_VERSION)
		return SSL_TICKET_RETURN_IGNORE;
	if (status != SSL_TICKET_SUCCESS && status != SSL_TICKET_SUCCESS_RENEW)
		return SSL_TICKET_RETURN_IGNORE_RENEW;
	if (SSL_SESSION_get0_ticket_appdata(ss, &data, &len) != 1 ||
	    kg_ticket_id_decode(data, len, &t) != 0 ||
	    kg_ticket_check(&t, SSL_SESSION_get0_peer(ss), 5, (int64_t)time(NULL)) != KG_RESUME_OK)
		return SSL_TICKET_RETURN_IGNORE_RENEW;
	cbs.had_identity = true;
	/* Always a new ticket after a resumption: clients use a ticket once (RFC 8446
	 * C.4), and the new one carries the same identity and verification time. */
	return SSL_TICKET_RETURN_USE_RENEW;
}

static int accept_any(int ok, X509_STORE_CTX *x)
{
	(void)ok;
	(void)x;
	return 1;
}

static SSL_CTX *server_ctx(struct kg_ticket_keys *k)
{
	char cert[PATH_MAX], key[PATH_MAX];
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

	ck_assert_ptr_nonnull(ctx);
	pki_path(cert, sizeof(cert), "server", "chain.pem");
	pki_path(key, sizeof(key), "server", "key.pem");
	/* As tls.c leaves it (resumption off), then kg_tickets_ctx_setup() as daemon.c. */
	ck_assert(SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) == 1);
	SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	ck_assert(SSL_CTX_set_num_tickets(ctx, 0) == 1);
	ck_assert(SSL_CTX_use_certificate_chain_file(ctx, cert) == 1);
	ck_assert(SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) == 1);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, accept_any);
	ck_assert_int_eq(kg_tls_keys_ctx_setup(ctx), 0);
	ck_assert_int_eq(kg_tickets_ctx_setup(ctx, k, 7200, gen_cb, dec_cb, NULL), 0);
	ck_assert_int_eq(SSL_CTX_get_max_early_data(ctx), 0);
	ck_assert_int_eq(SSL_CTX_get_recv_max_early_data(ctx), 0);
	ck_assert((SSL_CTX_get_options(ctx) & SSL_OP_ALLOW_NO_DHE_KEX) == 0);
	return ctx;
}

static SSL_CTX *client_ctx(int version)
{
	char cert[PATH_MAX], key[PATH_MAX];
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	ck_assert_ptr_nonnull(ctx);
	pki_path(cert, sizeof(cert), "dev-a", "cert.pem");
	pki_path(key, sizeof(key), "dev-a", "key.pem");
	ck_assert(SSL_CTX_set_min_proto_version(ctx, version) == 1);
	ck_assert(SSL_CTX_set_max_proto_version(ctx, version) == 1);
	ck_assert(SSL_CTX_use_certificate_file(ctx, cert, SSL_FILETYPE_PEM) == 1);
	ck_assert(SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) == 1);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL);
	return ctx;
}

static bool want_io(SSL *ssl, int ret)
{
	int e = SSL_get_error(ssl, ret);

	return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE;
}

/*
 * One connection: handshake both ends, let the client read the server's tickets (one
 * byte of application data behind them), check the server can export the session's
 * keys (the record relay's input after a resumption too). Returns the client's session
 * (a reference) and whether the server resumed.
 */
static SSL_SESSION *one_connection(SSL_CTX *sctx, SSL_CTX *cctx, SSL_SESSION *offer, bool *resumed)
{
	int sv[2];
	bool cdone = false, sdone = false;
	SSL *srv, *cli;
	struct kg_tls_key_tracker trk;
	struct kg_tls_keys keys;
	SSL_SESSION *got;
	char byte = 0;
	int r;

	ck_assert(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
	srv = SSL_new(sctx);
	cli = SSL_new(cctx);
	ck_assert(SSL_set_fd(srv, sv[0]) == 1 && SSL_set_fd(cli, sv[1]) == 1);
	memset(&trk, 0, sizeof(trk));
	ck_assert_int_eq(kg_tls_keys_track(srv, &trk), 0);
	if (offer != NULL)
		ck_assert(SSL_set_session(cli, offer) == 1);
	SSL_set_accept_state(srv);
	SSL_set_connect_state(cli);
	for (int i = 0; i < 1000 && !(cdone && sdone); i++) {
		if (!cdone) {
			r = SSL_do_handshake(cli);
			cdone = r == 1;
			ck_assert_msg(cdone || want_io(cli, r), "client handshake failed");
		}
		if (!sdone) {
			r = SSL_do_handshake(srv);
			sdone = r == 1;
			ck_assert_msg(sdone || want_io(srv, r), "server handshake failed");
			if (sdone)
				kg_tls_keys_handshake_done(srv, &trk);
		}
	}
	ck_assert(cdone && sdone);
	*resumed = SSL_session_reused(srv) == 1;
	ck_assert_int_eq(SSL_session_reused(cli), *resumed);
	/* TLS 1.3 secrets came through the keylog on a resumption as on a full one */
	ck_assert_int_eq(kg_tls_keys_export(srv, &trk, &keys), 0);
	ck_assert_int_gt(keys.rx.key_len, 0);
	ck_assert_int_eq(SSL_write(srv, "x", 1), 1);
	for (int i = 0; i < 1000; i++) {
		r = SSL_read(cli, &byte, 1);
		if (r == 1)
			break;
		ck_assert(want_io(cli, r));
	}
	ck_assert_int_eq(byte, 'x');
	got = SSL_get1_session(cli);
	/* Closed cleanly: OpenSSL marks a session not resumable when its SSL is freed
	 * without a close_notify sent. */
	(void)SSL_shutdown(cli);
	(void)SSL_shutdown(srv);
	SSL_free(srv);
	SSL_free(cli);
	close(sv[0]);
	close(sv[1]);
	kg_tls_key_tracker_wipe(&trk);
	return got;
}

/* Offer a copy of s (a client marks an offered session used) and return the new one. */
static SSL_SESSION *again(SSL_CTX *sctx, SSL_CTX *cctx, SSL_SESSION *s, bool *resumed)
{
	SSL_SESSION *copy = SSL_SESSION_dup(s), *got;

	ck_assert_ptr_nonnull(copy);
	got = one_connection(sctx, cctx, copy, resumed);
	SSL_SESSION_free(copy);
	return got;
}

START_TEST(tls13_resumes_under_live_key_only)
{
	struct kg_ticket_keys *k = kg_ticket_keys_new(7200);
	SSL_CTX *sctx, *sctx2, *cctx = client_ctx(TLS1_3_VERSION);
	SSL_SESSION *s, *t;
	bool resumed;
	unsigned char *bytes;
	size_t len;

	cb_leaf = load_cert("dev-a");
	memset(&cbs, 0, sizeof(cbs));
	sctx = server_ctx(k);
	s = one_connection(sctx, cctx, NULL, &resumed);
	ck_assert(!resumed);
	ck_assert_int_eq(cbs.gen_calls, 1);   /* one ticket per handshake */
	ck_assert(SSL_SESSION_is_resumable(s));
	t = again(sctx, cctx, s, &resumed);
	ck_assert(resumed);
	ck_assert(cbs.had_identity);
	ck_assert_int_eq(cbs.last_status, SSL_TICKET_SUCCESS);
	ck_assert_int_eq(cbs.gen_calls, 2);   /* renewed: the client has a fresh one */
	SSL_SESSION_free(s);
	s = t;
	/* a second SSL_CTX (a reload) with the same store resumes it too */
	sctx2 = server_ctx(k);
	t = again(sctx2, cctx, s, &resumed);
	ck_assert(resumed);
	SSL_SESSION_free(s);
	s = t;
	SSL_CTX_free(sctx2);
	/* another store (a restart without the sealed keys): not ours, a full handshake */
	ck_assert_int_eq(kg_ticket_keys_export(k, &bytes, &len), 0);
	kg_ticket_keys_free(k);
	k = kg_ticket_keys_new(7200);
	SSL_CTX_free(sctx);
	sctx = server_ctx(k);
	cbs.last_status = SSL_TICKET_NONE;
	SSL_SESSION_free(again(sctx, cctx, s, &resumed));
	ck_assert(!resumed);
	ck_assert_int_eq(cbs.last_status, SSL_TICKET_NO_DECRYPT);
	/* the same keys imported (what sealing will restore): resumed again */
	ck_assert_int_eq(kg_ticket_keys_import(k, bytes, len), 0);
	OPENSSL_secure_clear_free(bytes, len);
	SSL_SESSION_free(again(sctx, cctx, s, &resumed));
	ck_assert(resumed);
	/* the key's window closed (retired long ago, then dropped): a full handshake */
	ck_assert_int_eq(kg_ticket_keys_rotate(k, (int64_t)time(NULL) + 7200), 1);
	ck_assert_int_eq(kg_ticket_keys_rotate(k, (int64_t)time(NULL) + 7200 * 3), 1);
	cbs.last_status = SSL_TICKET_NONE;
	SSL_SESSION_free(again(sctx, cctx, s, &resumed));
	ck_assert(!resumed);
	ck_assert_int_eq(cbs.last_status, SSL_TICKET_NO_DECRYPT);
	SSL_SESSION_free(s);
	SSL_CTX_free(sctx);
	SSL_CTX_free(cctx);
	kg_ticket_keys_free(k);
	X509_free(cb_leaf);
}
END_TEST

START_TEST(tls12_gets_no_ticket)
{
	struct kg_ticket_keys *k = kg_ticket_keys_new(7200);
	SSL_CTX *sctx, *cctx = client_ctx(TLS1_2_VERSION);
	SSL_SESSION *s1, *s2;
	bool resumed;
	const unsigned char *tick = NULL;
	size_t ticklen = 0;

	cb_leaf = load_cert("dev-a");
	memset(&cbs, 0, sizeof(cbs));
	sctx = server_ctx(k);
	s1 = one_connection(sctx, cctx, NULL, &resumed);
	ck_assert(!resumed);
	SSL_SESSION_get0_ticket(s1, &tick, &ticklen);
	ck_assert_uint_eq(ticklen, 0);
	ck_assert_int_eq(cbs.gen_calls, 0);
	s2 = one_connection(sctx, cctx, s1, &resumed);
	ck_assert(!resumed);
	SSL_SESSION_free(s1);
	SSL_SESSION_free(s2);
	SSL_CTX_free(sctx);
	SSL_CTX_free(cctx);
	kg_ticket_keys_free(k);
	X509_free(cb_leaf);
}
END_TEST

/* ---- the sealed ticket-key file (ticket_store.h) ----------------------------- */

static void file_sample(struct kg_ticket_file *f)
{
	memset(f, 0, sizeof(*f));
	f->sealed_len = 180;
	for (size_t i = 0; i < f->sealed_len; i++)
		f->sealed[i] = (uint8_t)(i * 7 + 1);
	memset(f->nonce, 0xa5, sizeof(f->nonce));
	f->ct_len = 6 + 96;
	for (size_t i = 0; i < f->ct_len; i++)
		f->ct[i] = (uint8_t)(255 - i);
	memset(f->tag, 0x3c, sizeof(f->tag));
}

START_TEST(file_round_trip)
{
	struct kg_ticket_file f, g;
	uint8_t buf[KG_TICKET_FILE_MAX];
	size_t aad;
	int n;

	file_sample(&f);
	n = kg_ticket_file_encode(&f, buf, sizeof(buf));
	ck_assert_int_eq(n, 8 + 180 + 12 + 2 + 102 + 16);
	ck_assert_mem_eq(buf, "KGTS\x01\x00", 6);
	ck_assert_int_eq(kg_ticket_file_decode(buf, (size_t)n, &g, &aad), 0);
	ck_assert_uint_eq(g.version, KG_TICKET_FILE_VERSION);
	ck_assert_uint_eq(aad, 8 + 180 + 12 + 2);
	ck_assert_uint_eq(g.sealed_len, f.sealed_len);
	ck_assert_mem_eq(g.sealed, f.sealed, f.sealed_len);
	ck_assert_mem_eq(g.nonce, f.nonce, sizeof(f.nonce));
	ck_assert_uint_eq(g.ct_len, f.ct_len);
	ck_assert_mem_eq(g.ct, f.ct, f.ct_len);
	ck_assert_mem_eq(g.tag, f.tag, sizeof(f.tag));
	/* a buffer one byte short, or lengths out of range: refused */
	ck_assert_int_eq(kg_ticket_file_encode(&f, buf, (size_t)n - 1), -1);
	f.sealed_len = KG_TICKET_FILE_SEALED_MAX + 1;
	ck_assert_int_eq(kg_ticket_file_encode(&f, buf, sizeof(buf)), -1);
	file_sample(&f);
	f.ct_len = 0;
	ck_assert_int_eq(kg_ticket_file_encode(&f, buf, sizeof(buf)), -1);
}
END_TEST

START_TEST(file_truncated_or_extended)
{
	struct kg_ticket_file f, g;
	uint8_t buf[KG_TICKET_FILE_MAX + 1];
	size_t aad;
	int n;

	file_sample(&f);
	n = kg_ticket_file_encode(&f, buf, sizeof(buf));
	ck_assert_int_gt(n, 0);
	for (int len = 0; len < n; len++)
		ck_assert_msg(kg_ticket_file_decode(buf, (size_t)len, &g, &aad) == -1,
			      "truncated to %d of %d bytes: accepted", len, n);
	buf[n] = 0;
	ck_assert_int_eq(kg_ticket_file_decode(buf, (size_t)n + 1, &g, &aad), -1);
}
END_TEST

START_TEST(file_header_checks)
{
	struct kg_ticket_file f, g;
	uint8_t buf[KG_TICKET_FILE_MAX], bad[KG_TICKET_FILE_MAX];
	size_t aad;
	int n;

	file_sample(&f);
	n = kg_ticket_file_encode(&f, buf, sizeof(buf));
	ck_assert_int_gt(n, 0);
	memcpy(bad, buf, (size_t)n);
	bad[4] = 2;   /* a later version */
	ck_assert_int_eq(kg_ticket_file_decode(bad, (size_t)n, &g, &aad), -1);
	memcpy(bad, buf, (size_t)n);
	bad[0] = 'X';
	ck_assert_int_eq(kg_ticket_file_decode(bad, (size_t)n, &g, &aad), -1);
	memcpy(bad, buf, (size_t)n);
	bad[5] = 1;   /* reserved */
	ck_assert_int_eq(kg_ticket_file_decode(bad, (size_t)n, &g, &aad), -1);
	memcpy(bad, buf, (size_t)n);
	bad[6] = 0;
	bad[7] = 0;   /* no sealed object */
	ck_assert_int_eq(kg_ticket_file_decode(bad, (size_t)n, &g, &aad), -1);
	memcpy(bad, buf, (size_t)n);
	bad[6] = 0xff;   /* sealed length beyond the file */
	ck_assert_int_eq(kg_ticket_file_decode(bad, (size_t)n, &g, &aad), -1);
	memcpy(bad, buf, (size_t)n);
	bad[8 + 180 + 12] = 0xff;   /* ciphertext length beyond the file */
	ck_assert_int_eq(kg_ticket_file_decode(bad, (size_t)n, &g, &aad), -1);
}
END_TEST

/* Random bytes behind a valid magic and version: never accepted with lengths out of
 * range, never read out of bounds (ASan run). */
START_TEST(file_garbage)
{
	struct kg_ticket_file g;
	uint8_t buf[KG_TICKET_FILE_MAX];
	uint32_t x = 12345;
	size_t aad;

	for (int round = 0; round < 2000; round++) {
		size_t len = 8 + (size_t)(round % (KG_TICKET_FILE_MAX - 8));

		for (size_t i = 0; i < len; i++) {
			x = x * 1103515245u + 12345u;
			buf[i] = (uint8_t)(x >> 16);
		}
		memcpy(buf, "KGTS\x01\x00", 6);
		if (kg_ticket_file_decode(buf, len, &g, &aad) == 0) {
			ck_assert_uint_le(g.sealed_len, KG_TICKET_FILE_SEALED_MAX);
			ck_assert_uint_le(g.ct_len, KG_TICKET_FILE_CT_MAX);
			ck_assert_uint_eq(aad + g.ct_len + KG_TICKET_FILE_TAG, len);
		}
	}
}
END_TEST

/* Load: no file is 0 (fresh keys, no warning); a malformed file is -1 before any TPM
 * call (the signer is NULL here) and leaves the keys alone. */
START_TEST(file_load_without_tpm)
{
	struct kg_ticket_keys *k = kg_ticket_keys_new(3600);
	unsigned char *before = NULL, *after = NULL;
	size_t blen = 0, alen = 0;
	struct kg_ticket_trust tr;
	char dir[] = "/tmp/kg-tkf-XXXXXX", path[PATH_MAX], err[256];
	FILE *fp;

	ck_assert_ptr_nonnull(k);
	ck_assert_int_eq(kg_ticket_keys_rotate(k, 1000), 1);
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/ticket-keys.sealed", dir);
	ck_assert_int_eq(kg_ticket_store_load(path, k, &tr, NULL, err, sizeof(err)), 0);
	fp = fopen(path, "wb");
	ck_assert_ptr_nonnull(fp);
	fputs("KGTS\x01", fp);   /* truncated */
	fclose(fp);
	ck_assert_int_eq(kg_ticket_keys_export(k, &before, &blen), 0);
	ck_assert_int_eq(kg_ticket_store_load(path, k, &tr, NULL, err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, "not a sealed ticket key file"));
	ck_assert_int_eq(kg_ticket_keys_export(k, &after, &alen), 0);
	ck_assert_uint_eq(alen, blen);
	ck_assert_mem_eq(after, before, blen);
	OPENSSL_secure_clear_free(before, blen);
	OPENSSL_secure_clear_free(after, alen);
	unlink(path);
	rmdir(dir);
	kg_ticket_keys_free(k);
}
END_TEST

/* ---- the session cache (tls/session_cache.h) ---------------------------------- */

/* A TLS 1.3 session with the id i (4 bytes big-endian, then 28 zero bytes). */
static SSL_SESSION *sess_with_id(uint32_t i, int version)
{
	SSL_SESSION *s = SSL_SESSION_new();
	unsigned char id[32] = { 0 };

	ck_assert_ptr_nonnull(s);
	id[0] = (unsigned char)(i >> 24);
	id[1] = (unsigned char)(i >> 16);
	id[2] = (unsigned char)(i >> 8);
	id[3] = (unsigned char)i;
	ck_assert_int_eq(SSL_SESSION_set1_id(s, id, sizeof(id)), 1);
	ck_assert_int_eq(SSL_SESSION_set_protocol_version(s, version), 1);
	return s;
}

/* Is the session with id i in c (and then the same object as want, if given)? */
static bool cached(struct kg_session_cache *c, uint32_t i, const SSL_SESSION *want)
{
	unsigned char id[32] = { 0 };
	SSL_SESSION *got;
	bool same;

	id[0] = (unsigned char)(i >> 24);
	id[1] = (unsigned char)(i >> 16);
	id[2] = (unsigned char)(i >> 8);
	id[3] = (unsigned char)i;
	got = kg_session_cache_get(c, id, sizeof(id));
	if (got == NULL)
		return false;
	same = want == NULL || got == want;
	SSL_SESSION_free(got);   /* the reference get handed out */
	return same;
}

START_TEST(session_cache_keeps_and_hands_out_references)
{
	struct kg_session_cache *c = kg_session_cache_new(10, NULL, NULL);
	SSL_SESSION *a = sess_with_id(1, TLS1_3_VERSION), *b = sess_with_id(2, TLS1_3_VERSION);
	unsigned char other[32] = { 9 };

	ck_assert_ptr_nonnull(c);
	ck_assert_int_eq(kg_session_cache_add(c, a), 1);   /* a's reference is the cache's now */
	ck_assert_int_eq(kg_session_cache_add(c, b), 1);
	ck_assert_uint_eq(kg_session_cache_count(c), 2);
	ck_assert(cached(c, 1, a));
	ck_assert(cached(c, 2, b));
	ck_assert_ptr_null(kg_session_cache_get(c, other, sizeof(other)));
	ck_assert_ptr_null(kg_session_cache_get(c, other, 0));
	/* a reference taken by get outlives the entry */
	{
		unsigned char id[32] = { 0, 0, 0, 1 };
		SSL_SESSION *held = kg_session_cache_get(c, id, sizeof(id));

		ck_assert_ptr_eq(held, a);
		kg_session_cache_remove(c, a);
		ck_assert(!cached(c, 1, NULL));
		ck_assert_int_eq(SSL_SESSION_set_timeout(held, 10), 1);   /* still a live object */
		SSL_SESSION_free(held);
	}
	ck_assert_uint_eq(kg_session_cache_count(c), 1);
	kg_session_cache_free(c);   /* b goes with it (ASan: no leak, no double free) */
}
END_TEST

START_TEST(session_cache_evicts_the_oldest)
{
	struct kg_session_cache *c = kg_session_cache_new(3, NULL, NULL);

	ck_assert_ptr_nonnull(c);
	for (uint32_t i = 1; i <= 5; i++)
		ck_assert_int_eq(kg_session_cache_add(c, sess_with_id(i, TLS1_3_VERSION)), 1);
	ck_assert_uint_eq(kg_session_cache_count(c), 3);
	ck_assert_uint_eq(kg_session_cache_evictions(c), 2);
	ck_assert(!cached(c, 1, NULL) && !cached(c, 2, NULL));
	ck_assert(cached(c, 3, NULL) && cached(c, 4, NULL) && cached(c, 5, NULL));
	/* a reload's smaller cache drops the oldest at once */
	kg_session_cache_set_max(c, 1);
	ck_assert_uint_eq(kg_session_cache_count(c), 1);
	ck_assert_uint_eq(kg_session_cache_evictions(c), 4);
	ck_assert(cached(c, 5, NULL));
	/* 0 keeps nothing: the reference stays the caller's */
	kg_session_cache_set_max(c, 0);
	ck_assert_uint_eq(kg_session_cache_count(c), 0);
	{
		SSL_SESSION *s = sess_with_id(6, TLS1_3_VERSION);

		ck_assert_int_eq(kg_session_cache_add(c, s), 0);
		SSL_SESSION_free(s);
	}
	kg_session_cache_free(c);
}
END_TEST

START_TEST(session_cache_refuses_and_replaces)
{
	struct kg_session_cache *c = kg_session_cache_new(100, NULL, NULL);
	SSL_SESSION *t12 = sess_with_id(7, TLS1_2_VERSION), *noid = SSL_SESSION_new();
	SSL_SESSION *first = sess_with_id(8, TLS1_3_VERSION), *again = sess_with_id(8, TLS1_3_VERSION);

	ck_assert_ptr_nonnull(c);
	ck_assert_ptr_nonnull(noid);
	ck_assert_int_eq(SSL_SESSION_set_protocol_version(noid, TLS1_3_VERSION), 1);
	/* TLS 1.2 sessions are never resumed; a session without an id cannot be found */
	ck_assert_int_eq(kg_session_cache_add(c, t12), 0);
	ck_assert_int_eq(kg_session_cache_add(c, noid), 0);
	SSL_SESSION_free(t12);
	SSL_SESSION_free(noid);
	/* the same id again replaces the first */
	ck_assert_int_eq(kg_session_cache_add(c, first), 1);
	ck_assert_int_eq(kg_session_cache_add(c, again), 1);
	ck_assert_uint_eq(kg_session_cache_count(c), 1);
	ck_assert(cached(c, 8, again));
	/* removing a session that is not the cached one (a stale object) changes nothing */
	{
		SSL_SESSION *stale = sess_with_id(8, TLS1_3_VERSION);

		kg_session_cache_remove(c, stale);
		SSL_SESSION_free(stale);
	}
	ck_assert(cached(c, 8, again));
	kg_session_cache_free(c);
}
END_TEST

/* Made with 0 (the daemon's cache when the start had no session_cache), grown by a
 * reload: the entries added before and after the growth are all found. */
START_TEST(session_cache_grows)
{
	struct kg_session_cache *c = kg_session_cache_new(0, NULL, NULL);

	ck_assert_ptr_nonnull(c);
	kg_session_cache_set_max(c, 10);
	for (uint32_t i = 0; i < 10; i++)
		ck_assert_int_eq(kg_session_cache_add(c, sess_with_id(i, TLS1_3_VERSION)), 1);
	kg_session_cache_set_max(c, 50000);
	for (uint32_t i = 10; i < 50000; i++)
		ck_assert_int_eq(kg_session_cache_add(c, sess_with_id(i * 2654435761u, TLS1_3_VERSION)), 1);
	ck_assert_uint_eq(kg_session_cache_count(c), 50000);
	for (uint32_t i = 0; i < 10; i++)
		ck_assert(cached(c, i, NULL));
	for (uint32_t i = 10; i < 50000; i += 97)
		ck_assert(cached(c, i * 2654435761u, NULL));
	ck_assert_uint_eq(kg_session_cache_evictions(c), 0);
	kg_session_cache_free(c);
}
END_TEST

/* Many sessions through a small cache: it never holds more than its size and what it
 * holds is exactly the newest. */
START_TEST(session_cache_many)
{
	struct kg_session_cache *c = kg_session_cache_new(1000, NULL, NULL);

	ck_assert_ptr_nonnull(c);
	for (uint32_t i = 0; i < 20000; i++) {
		ck_assert_int_eq(kg_session_cache_add(c, sess_with_id(i * 2654435761u, TLS1_3_VERSION)), 1);
		ck_assert_uint_le(kg_session_cache_count(c), 1000);
	}
	for (uint32_t i = 19000; i < 20000; i++)
		ck_assert(cached(c, i * 2654435761u, NULL));
	ck_assert(!cached(c, 18999u * 2654435761u, NULL));
	ck_assert_uint_eq(kg_session_cache_evictions(c), 19000);
	kg_session_cache_free(c);
}
END_TEST

Suite *kg_suite_tickets(void)
{
	Suite *s = suite_create("tickets");
	TCase *tc = tcase_create("keys");
	TCase *tls = tcase_create("tls");
	TCase *file = tcase_create("file");

	tcase_add_test(tc, rotation_on_schedule);
	tcase_add_test(tc, renew_due_at_half_life);
	tcase_add_test(tc, retired_key_decrypts_within_lifetime);
	tcase_add_test(tc, store_never_over_capacity);
	tcase_add_test(tc, export_import_round_trip);
	tcase_add_test(tc, identity_round_trip);
	tcase_add_test(tc, identity_malformed);
	tcase_add_test(tc, session_cache_keeps_and_hands_out_references);
	tcase_add_test(tc, session_cache_evicts_the_oldest);
	tcase_add_test(tc, session_cache_refuses_and_replaces);
	tcase_add_test(tc, session_cache_many);
	tcase_add_test(tc, session_cache_grows);
	suite_add_tcase(s, tc);
	tcase_add_unchecked_fixture(tls, pki_setup, pki_teardown);
	tcase_set_timeout(tls, 60);
	tcase_add_test(tls, check_binds_leaf_generation_and_time);
	tcase_add_test(tls, tls13_resumes_under_live_key_only);
	tcase_add_test(tls, tls12_gets_no_ticket);
	suite_add_tcase(s, tls);
	tcase_add_test(file, file_round_trip);
	tcase_add_test(file, file_truncated_or_extended);
	tcase_add_test(file, file_header_checks);
	tcase_add_test(file, file_garbage);
	tcase_add_test(file, file_load_without_tpm);
	suite_add_tcase(s, file);
	return s;
}
