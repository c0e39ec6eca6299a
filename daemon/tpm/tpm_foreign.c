/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * tpm_foreign.c - the TPM key as OpenSSL's TLS stack sees it (contract in tpm_key.h,
 * kg_tpm_foreign_key()).
 *
 * The SSL_CTX gets a "foreign" key: the public half in an EC_KEY (or RSA) whose
 * EC_KEY_METHOD (RSA_METHOD) hands the private operation to the TPM signer thread
 * (tpm_signer.h): ECDSA over the finished digest, or the raw RSA operation on a block
 * OpenSSL has already padded (PSS) or that we pad here (PKCS#1 v1.5 type 1). Hashing,
 * peer verification, ECDHE and the rest run in the default provider, never in the TPM.
 * A non-default EC_KEY_METHOD / RSA_METHOD is OpenSSL 3.0's supported "foreign key"
 * path (the API is deprecated, not removed): such keys stay on the legacy EVP_PKEY
 * methods, which call ours.
 *
 * Waiting: inside an ASYNC job (libssl in SSL_MODE_ASYNC) the job pauses, with the SSL's
 * eventfd (the signer's answer) and timerfd (the deadline) as its wait fds; the worker
 * steps the handshake again when one is readable. Outside a job, poll() on an eventfd.
 */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>

#include <openssl/async.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>

#include "tpm/tpm_key.h"
#include "tpm/tpm_signer.h"

/* Our mark in OpenSSL's error queue when the signer gave no signature (reason code of
 * ERR_LIB_USER, which OpenSSL leaves to applications). */
#define ERR_NO_SIGNATURE 0x7d1

/* Keys of the SSL's async wait fds (their addresses are what counts). */
static const char key_answer = 'a', key_deadline = 'd';

/* OpenSSL's ex_data index registry is process-wide by design. Asked once, at the first
 * SSL_CTX build (main thread, before workers and reloads exist). */
static int ec_index(void)
{
	static int idx = -1;

	if (idx < 0)
		idx = EC_KEY_get_ex_new_index(0, NULL, NULL, NULL, NULL);
	return idx;
}

static int rsa_index(void)
{
	static int idx = -1;

	if (idx < 0)
		idx = RSA_get_ex_new_index(0, NULL, NULL, NULL, NULL);
	return idx;
}

static void drain(int fd)
{
	uint64_t v;

	while (read(fd, &v, sizeof(v)) > 0)
		;
}

static void close_wait_fd(ASYNC_WAIT_CTX *ctx, const void *key, OSSL_ASYNC_FD fd, void *custom)
{
	(void)ctx;
	(void)key;
	(void)custom;
	close(fd);
}

/* The SSL's two wait fds, made on its first signature and kept until SSL_free (the
 * wait ctx's cleanup closes them): the worker's epoll never sees an fd number that
 * was closed and reused under it. -1 on failure. */
static int wait_fds(ASYNC_WAIT_CTX *w, int *answer, int *deadline)
{
	void *custom;
	int efd, tfd;

	if (ASYNC_WAIT_CTX_get_fd(w, &key_answer, answer, &custom) &&
	    ASYNC_WAIT_CTX_get_fd(w, &key_deadline, deadline, &custom))
		return 0;
	efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (efd < 0 || tfd < 0)
		goto fail;
	if (!ASYNC_WAIT_CTX_set_wait_fd(w, &key_answer, efd, NULL, close_wait_fd))
		goto fail;
	efd = -1;   /* the wait ctx's now */
	if (!ASYNC_WAIT_CTX_set_wait_fd(w, &key_deadline, tfd, NULL, close_wait_fd))
		goto fail;
	return ASYNC_WAIT_CTX_get_fd(w, &key_answer, answer, &custom) &&
			       ASYNC_WAIT_CTX_get_fd(w, &key_deadline, deadline, &custom)
		       ? 0
		       : -1;
fail:
	if (efd >= 0)
		close(efd);
	if (tfd >= 0)
		close(tfd);
	return -1;
}

/* In a job: pause until the answer, the deadline, or a step without either (the
 * caller gave up: kg_tpm_async_abandon). true when the answer is there. */
static bool wait_async(ASYNC_JOB *job, struct kg_tpm_signer *s, enum kg_tpm_req_op op,
		       const uint8_t *in, size_t len, struct kg_tpm_req **out)
{
	ASYNC_WAIT_CTX *w = ASYNC_get_wait_ctx(job);
	struct itimerspec its = { 0 };
	struct kg_tpm_req *r;
	int efd, tfd;
	uint64_t dl;

	*out = NULL;
	if (w == NULL || wait_fds(w, &efd, &tfd) != 0)
		return false;
	drain(efd);
	drain(tfd);
	r = kg_tpm_signer_submit(s, op, in, len, efd);
	if (r == NULL)
		return false;
	*out = r;
	dl = kg_tpm_req_deadline(r);
	its.it_value.tv_sec = (time_t)(dl / 1000000000u);
	its.it_value.tv_nsec = (long)(dl % 1000000000u);
	if (timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL) != 0)
		return kg_tpm_req_wait(r, efd);   /* no timer: wait here, bounded */
	/* One pause: the worker steps the handshake when the answer or the deadline
	 * comes; a step with neither (the connection is going away) ends the wait too. */
	if (ASYNC_pause_job())
		drain(efd);
	memset(&its, 0, sizeof(its));
	(void)timerfd_settime(tfd, 0, &its, NULL);
	drain(tfd);
	return kg_tpm_req_done(r);
}

/* The private operation through the signer: out gets r||s (64) or the RSA block. */
static int signer_op(struct kg_tpm_signer *s, enum kg_tpm_req_op op, const uint8_t *in,
		     size_t len, uint8_t *out, size_t cap, size_t *outlen)
{
	ASYNC_JOB *job = ASYNC_get_current_job();
	struct kg_tpm_req *r = NULL;
	bool ok;
	int rc = -1;

	if (s == NULL)
		return -1;
	if (job != NULL) {
		ok = wait_async(job, s, op, in, len, &r);
	} else {
		int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);

		if (efd < 0)
			return -1;
		r = kg_tpm_signer_submit(s, op, in, len, efd);
		ok = r != NULL && kg_tpm_req_wait(r, efd);
		close(efd);   /* the request has its own dup */
	}
	if (ok)
		rc = kg_tpm_req_result(r, out, cap, outlen);
	if (r != NULL)
		kg_tpm_req_release(r);
	if (rc != 0)
		ERR_raise_data(ERR_LIB_USER, ERR_NO_SIGNATURE, "the TPM gave no signature");
	return rc;
}

bool kg_tpm_err_unavailable(void)
{
	/* ours comes first: libssl adds its own (SSLfatal) after the key method failed */
	unsigned long e = ERR_peek_error();

	return e != 0 && ERR_GET_LIB(e) == ERR_LIB_USER && ERR_GET_REASON(e) == ERR_NO_SIGNATURE;
}

static ECDSA_SIG *tpm_sign_sig(const unsigned char *dgst, int dlen, const BIGNUM *kinv,
			       const BIGNUM *rr, EC_KEY *ec)
{
	struct kg_tpm_signer *s = EC_KEY_get_ex_data(ec, ec_index());
	uint8_t rs[64];
	size_t n = 0;
	BIGNUM *r = NULL, *sv = NULL;
	ECDSA_SIG *sig;

	(void)kinv;
	(void)rr;
	/* A failure: the handshake fails with an internal error the device sees; the
	 * operator sees ktlsgate_tpm_errors_total and the tpm_unavailable audit. */
	if (dlen <= 0 || signer_op(s, KG_TPM_REQ_ECDSA, dgst, (size_t)dlen, rs, sizeof(rs), &n) != 0 ||
	    n != 64)
		return NULL;
	sig = ECDSA_SIG_new();
	r = BN_bin2bn(rs, 32, NULL);
	sv = BN_bin2bn(rs + 32, 32, NULL);
	if (sig == NULL || r == NULL || sv == NULL || !ECDSA_SIG_set0(sig, r, sv)) {
		ECDSA_SIG_free(sig);
		BN_free(r);
		BN_free(sv);
		return NULL;
	}
	return sig;
}

static int tpm_sign(int type, const unsigned char *dgst, int dlen, unsigned char *out,
		    unsigned int *outlen, const BIGNUM *kinv, const BIGNUM *r, EC_KEY *ec)
{
	ECDSA_SIG *sig = tpm_sign_sig(dgst, dlen, kinv, r, ec);
	int n;

	(void)type;
	if (sig == NULL)
		return 0;
	n = i2d_ECDSA_SIG(sig, &out);
	ECDSA_SIG_free(sig);
	if (n <= 0)
		return 0;
	*outlen = (unsigned)n;
	return 1;
}

/* RSA "private encrypt": what signing is. PSS arrives padded (RSA_NO_PADDING), PKCS#1
 * v1.5 as the DigestInfo we pad with type 1. Returns the signature's length or -1. */
static int tpm_rsa_priv_enc(int flen, const unsigned char *from, unsigned char *to, RSA *rsa,
			    int padding)
{
	struct kg_tpm_signer *s = RSA_get_ex_data(rsa, rsa_index());
	uint8_t block[256];
	int n = RSA_size(rsa);
	size_t got = 0;

	if (n != (int)sizeof(block) || flen <= 0)
		return -1;
	if (padding == RSA_NO_PADDING) {
		if (flen != n)
			return -1;
		memcpy(block, from, (size_t)n);
	} else if (padding == RSA_PKCS1_PADDING) {
		if (!RSA_padding_add_PKCS1_type_1(block, n, from, flen))
			return -1;
	} else {
		return -1;
	}
	if (signer_op(s, KG_TPM_REQ_RSA_RAW, block, (size_t)n, to, (size_t)n, &got) != 0 ||
	    got != (size_t)n)
		return -1;
	return n;
}

static EVP_PKEY *ec_key(struct kg_tpm_signer *signer, const struct kg_tpm_pub *pub)
{
	static EC_KEY_METHOD *meth; /* built once per process, never changed after */
	EC_KEY *ec = EC_KEY_new_by_curve_name(NID_X9_62_prime256v1);
	BIGNUM *x = BN_bin2bn(pub->x, 32, NULL), *y = BN_bin2bn(pub->y, 32, NULL);
	EVP_PKEY *out = NULL;

	if (meth == NULL) {
		EC_KEY_METHOD *m = EC_KEY_METHOD_new(EC_KEY_OpenSSL());

		if (m == NULL)
			goto fail;
		EC_KEY_METHOD_set_sign(m, tpm_sign, NULL, tpm_sign_sig);
		meth = m;
	}
	if (ec == NULL || x == NULL || y == NULL ||
	    !EC_KEY_set_public_key_affine_coordinates(ec, x, y) || !EC_KEY_set_method(ec, meth) ||
	    !EC_KEY_set_ex_data(ec, ec_index(), signer))
		goto fail;
	out = EVP_PKEY_new();
	if (out == NULL || !EVP_PKEY_assign_EC_KEY(out, ec))
		goto fail;
	BN_free(x);
	BN_free(y);
	return out;
fail:
	EVP_PKEY_free(out);
	EC_KEY_free(ec);
	BN_free(x);
	BN_free(y);
	return NULL;
}

static EVP_PKEY *rsa_key(struct kg_tpm_signer *signer, const struct kg_tpm_pub *pub)
{
	static RSA_METHOD *meth; /* built once per process, never changed after */
	RSA *rsa = RSA_new();
	BIGNUM *n = BN_bin2bn(pub->n, (int)pub->n_len, NULL), *e = BN_new();
	EVP_PKEY *out = NULL;

	if (meth == NULL) {
		RSA_METHOD *m = RSA_meth_dup(RSA_PKCS1_OpenSSL());

		if (m == NULL || !RSA_meth_set1_name(m, "ktlsgate TPM signer") ||
		    !RSA_meth_set_priv_enc(m, tpm_rsa_priv_enc)) {
			RSA_meth_free(m);
			goto fail;
		}
		meth = m;
	}
	if (rsa == NULL || n == NULL || e == NULL || !BN_set_word(e, pub->e) ||
	    !RSA_set0_key(rsa, n, e, NULL))
		goto fail;
	n = e = NULL;   /* rsa's */
	if (!RSA_set_method(rsa, meth) || !RSA_set_ex_data(rsa, rsa_index(), signer))
		goto fail;
	out = EVP_PKEY_new();
	if (out == NULL || !EVP_PKEY_assign_RSA(out, rsa))
		goto fail;
	return out;
fail:
	EVP_PKEY_free(out);
	RSA_free(rsa);
	BN_free(n);
	BN_free(e);
	return NULL;
}

EVP_PKEY *kg_tpm_foreign_key(struct kg_tpm_signer *signer, char *err, size_t errlen)
{
	const struct kg_tpm_pub *pub = kg_tpm_signer_pub(signer);
	EVP_PKEY *k = pub->alg == KG_TPM_RSA2048 ? rsa_key(signer, pub) : ec_key(signer, pub);

	if (k == NULL) {
		snprintf(err, errlen, "wrapping the TPM key for TLS failed");
		ERR_clear_error();
	}
	return k;
}

void kg_tpm_async_abandon(SSL *ssl)
{
	/* Each step resumes the job, which sees no answer and no deadline and gives up;
	 * the handshake then fails without another pause. Bounded all the same. */
	for (int i = 0; i < 4 && SSL_waiting_for_async(ssl); i++)
		(void)SSL_do_handshake(ssl);
	ERR_clear_error();
}

/* One signature with md over a fixed text, checked with the key's public half. */
static int sign_verify(EVP_PKEY *key, int rsa_padding)
{
	static const unsigned char msg[] = "ktlsgate TPM key self-test";
	unsigned char sig[512];
	size_t len = sizeof(sig);
	EVP_MD_CTX *mc = EVP_MD_CTX_new();
	EVP_PKEY_CTX *pc = NULL;
	int ok = 0;

	if (mc == NULL || EVP_DigestSignInit(mc, &pc, EVP_sha256(), NULL, key) != 1)
		goto out;
	if (rsa_padding != 0 && EVP_PKEY_CTX_set_rsa_padding(pc, rsa_padding) != 1)
		goto out;
	if (EVP_DigestSign(mc, sig, &len, msg, sizeof(msg)) != 1)
		goto out;
	EVP_MD_CTX_free(mc);
	mc = EVP_MD_CTX_new();
	if (mc == NULL || EVP_DigestVerifyInit(mc, &pc, EVP_sha256(), NULL, key) != 1)
		goto out;
	if (rsa_padding != 0 && EVP_PKEY_CTX_set_rsa_padding(pc, rsa_padding) != 1)
		goto out;
	ok = EVP_DigestVerify(mc, sig, len, msg, sizeof(msg)) == 1;
out:
	EVP_MD_CTX_free(mc);
	return ok ? 0 : -1;
}

int kg_tpm_key_selftest(EVP_PKEY *key, char *err, size_t errlen)
{
	int rc;

	if (EVP_PKEY_is_a(key, "RSA"))
		rc = sign_verify(key, RSA_PKCS1_PSS_PADDING) == 0 &&
				     sign_verify(key, RSA_PKCS1_PADDING) == 0
			     ? 0
			     : -1;
	else
		rc = sign_verify(key, 0);
	if (rc != 0) {
		snprintf(err, errlen, "the TPM key did not make a valid signature%s",
			 kg_tpm_err_unavailable() ? " (no answer from the TPM in time)" : "");
		ERR_clear_error();
	}
	return rc;
}
