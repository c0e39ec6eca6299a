/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * tpm_foreign.c - the TPM key as OpenSSL's TLS stack sees it (contract in tpm_key.h,
 * kg_tpm_foreign_key()).
 *
 * libssl must not run the tpm2 provider's own DigestSign: it hashes in the TPM
 * (HashSequenceStart / SequenceUpdate / SequenceComplete and a context save/load per
 * handshake), and once its signature implementation is preferred by the property query
 * it also verifies the devices' signatures in the TPM (LoadExternal / VerifySignature,
 * which failed here: alert decrypt_error). So the SSL_CTX gets a "foreign" EC key: the
 * public half in an EC_KEY whose EC_KEY_METHOD signs a finished digest with
 * EVP_PKEY_sign() on the TPM key: TPM2_Sign, nothing else. Hashing, peer verification,
 * ECDHE and the rest run in the default provider. A non-default EC_KEY_METHOD is
 * OpenSSL 3.0's supported "foreign key" path (the API is deprecated, not removed).
 */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <string.h>

#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "tpm/tpm_key.h"

struct foreign {
	EVP_PKEY *tpm;          /* the provider key (tpm2 keymgmt) */
	OSSL_LIB_CTX *libctx;   /* where its signature is fetched */
};

static void foreign_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
			 void *argp)
{
	struct foreign *f = ptr;

	(void)parent;
	(void)ad;
	(void)idx;
	(void)argl;
	(void)argp;
	if (f == NULL)
		return;
	EVP_PKEY_free(f->tpm);   /* the provider flushes its transient object, if any */
	OPENSSL_free(f);
}

/* OpenSSL's ex_data index registry is process-wide by design. Asked once, at the first
 * SSL_CTX build (main thread, before workers and reloads exist). */
static int ex_index(void)
{
	static int idx = -1;

	if (idx < 0)
		idx = EC_KEY_get_ex_new_index(0, NULL, NULL, NULL, foreign_free);
	return idx;
}

static ECDSA_SIG *tpm_sign_sig(const unsigned char *dgst, int dlen, const BIGNUM *kinv,
			       const BIGNUM *r, EC_KEY *ec)
{
	struct foreign *f = EC_KEY_get_ex_data(ec, ex_index());
	unsigned char der[160];
	const unsigned char *p = der;
	size_t len = sizeof(der);
	EVP_PKEY_CTX *pc;
	ECDSA_SIG *sig = NULL;

	(void)kinv;
	(void)r;
	if (f == NULL || dlen <= 0)
		goto out;
	pc = EVP_PKEY_CTX_new_from_pkey(f->libctx, f->tpm, KG_TPM_PROPQ);
	if (pc == NULL)
		goto out;
	if (EVP_PKEY_sign_init(pc) == 1 &&
	    EVP_PKEY_sign(pc, der, &len, dgst, (size_t)dlen) == 1)
		sig = d2i_ECDSA_SIG(NULL, &p, (long)len);
	EVP_PKEY_CTX_free(pc);
out:
	/* The handshake fails with an internal error the device sees; the operator sees
	 * ktlsgate_tpm_errors_total{op="sign"} (a worker thread: an atomic add). */
	if (sig == NULL)
		kg_tpm_count_error(KG_TPM_OP_SIGN);
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

EVP_PKEY *kg_tpm_foreign_key(OSSL_LIB_CTX *libctx, EVP_PKEY *tpm, char *err, size_t errlen)
{
	static EC_KEY_METHOD *meth; /* built once per process, never changed after */
	unsigned char *spki = NULL;
	const unsigned char *p;
	struct foreign *f = NULL;
	EC_KEY *ec = NULL;
	EVP_PKEY *out = NULL;
	int n;

	if (!EVP_PKEY_is_a(tpm, "EC")) {
		snprintf(err, errlen, "only ECDSA TPM keys are supported by the daemon so far");
		return NULL;
	}
	if (meth == NULL) {
		EC_KEY_METHOD *m = EC_KEY_METHOD_new(EC_KEY_OpenSSL());

		if (m == NULL)
			goto fail;
		EC_KEY_METHOD_set_sign(m, tpm_sign, NULL, tpm_sign_sig);
		meth = m;
	}
	n = i2d_PUBKEY(tpm, &spki);
	if (n <= 0)
		goto fail;
	p = spki;
	ec = d2i_EC_PUBKEY(NULL, &p, n);
	f = OPENSSL_zalloc(sizeof(*f));
	if (ec == NULL || f == NULL || !EC_KEY_set_method(ec, meth))
		goto fail;
	if (!EVP_PKEY_up_ref(tpm))
		goto fail;
	f->tpm = tpm;
	f->libctx = libctx;
	if (!EC_KEY_set_ex_data(ec, ex_index(), f)) {
		EVP_PKEY_free(tpm);
		goto fail;
	}
	f = NULL; /* owned by ec now (foreign_free) */
	out = EVP_PKEY_new();
	if (out == NULL || !EVP_PKEY_assign_EC_KEY(out, ec))
		goto fail;
	OPENSSL_free(spki);
	return out;
fail:
	snprintf(err, errlen, "wrapping the TPM key for TLS failed");
	EVP_PKEY_free(out);
	EC_KEY_free(ec);
	OPENSSL_free(f);
	OPENSSL_free(spki);
	return NULL;
}
