/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * ec_decode.c - the engine that lets OpenSSL 3.0 and 3.1 decode EC public keys without a
 * provider decoder (contract and reasons in ec_decode.h). The ENGINE API is deprecated
 * in OpenSSL 3 and still present through 3.x; it is used here for this one purpose, on
 * the versions that need it, and nowhere else.
 */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/crypto.h>
#include <openssl/engine.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <stdio.h>

#include "tls/ec_decode.h"

/* 3.2.0: the first release with the decoder cache (#21426). */
#define FIRST_FIXED 0x30200000UL
#define ENGINE_ID "ktlsgate-ec-decode"

static const int ec_nids[] = { EVP_PKEY_EC };

/* ENGINE_PKEY_METHS_PTR: the list of nids, or the method for one. The method handed out
 * is OpenSSL's built-in one, so nothing of the EC arithmetic is ours. */
static int ec_pkey_meths(ENGINE *e, EVP_PKEY_METHOD **pmeth, const int **nids, int nid)
{
	(void)e;
	if (pmeth == NULL) {
		*nids = ec_nids;
		return 1;
	}
	*pmeth = nid == EVP_PKEY_EC ? (EVP_PKEY_METHOD *)EVP_PKEY_meth_find(EVP_PKEY_EC) : NULL;
	return *pmeth != NULL;
}

/* The engine init() added, from OpenSSL's engine list (a reference the caller frees), or
 * NULL when there is none (never registered, or fini() ran). Paused, it stays in that
 * list: only its registration in the pkey-method table comes and goes. */
static ENGINE *our_engine(void)
{
	ENGINE *e = ENGINE_by_id(ENGINE_ID);

	if (e == NULL)
		ERR_clear_error();   /* "no such engine": not an error here */
	return e;
}

void kg_tls_ec_decode_pause(void)
{
	ENGINE *e = our_engine();

	if (e != NULL)
		ENGINE_unregister_pkey_meths(e);
	ENGINE_free(e);
}

void kg_tls_ec_decode_resume(void)
{
	ENGINE *e = our_engine();

	if (e != NULL && !ENGINE_register_pkey_meths(e))
		ERR_clear_error();   /* decoders again: slower, as correct */
	ENGINE_free(e);
}

void kg_tls_ec_decode_fini(void)
{
	ENGINE *e = our_engine();

	if (e != NULL) {
		ENGINE_unregister_pkey_meths(e);
		(void)ENGINE_remove(e);
	}
	ENGINE_free(e);
}

bool kg_tls_ec_decode_needed(unsigned long openssl_version_num)
{
	return openssl_version_num < FIRST_FIXED;
}

int kg_tls_ec_decode_init(bool enabled, char *err, size_t errlen)
{
	ENGINE *e;
	unsigned long code;

	if (!enabled || !kg_tls_ec_decode_needed(OpenSSL_version_num()))
		return 0;
	e = ENGINE_new();
	if (e == NULL || !ENGINE_set_id(e, ENGINE_ID) ||
	    !ENGINE_set_name(e, "ktlsgate: EC public keys by the built-in EC method") ||
	    !ENGINE_set_pkey_meths(e, ec_pkey_meths) || !ENGINE_add(e) ||
	    !ENGINE_register_pkey_meths(e)) {
		code = ERR_peek_last_error();
		snprintf(err, errlen, "OpenSSL refused the EC decoding engine: %s",
			 code != 0 ? ERR_reason_error_string(code) : "unknown error");
		if (e != NULL)
			(void)ENGINE_remove(e);
		ERR_clear_error();
		ENGINE_free(e);
		return -1;
	}
	/* The engine list holds its own reference until OpenSSL's cleanup at exit. */
	ENGINE_free(e);
	return 1;
}
