/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Part tpm (daemon/tpm/): the server key held in a TPM. tpm.c (tpm2-tss ESAPI, this
 * header), tpm_pem.c (the "TSS2 PRIVATE KEY" file, pure), tpm_key.c (the tpm2 OpenSSL
 * provider in a libctx of its own; tpm_key.h), tpm_foreign.c (the key as libssl signs
 * with it), tpm_conf.c (the [tpm] config section; tpm_conf.h).
 * Way in: tpm_key.h for the daemon (an EVP_PKEY the SSL_CTX uses), this header for the
 * CLI (`ktlsgate tpm ...`). Uses ops only. The only part that includes <tss2/...>.
 */
/*
 * tpm.h - the TPM itself, through tpm2-tss ESAPI (tpm.c, the only file that includes
 * <tss2/...>): open a TCTI, describe the TPM, create the server key (persistent at a
 * handle, or as a TSS2 key blob), flush transient objects and sessions a crashed user
 * left behind; load the server key, read its public part, sign with it (ECDSA, raw
 * RSA). The CLI uses it directly; the daemon only from its signer thread
 * (tpm_signer.h), which owns the daemon's one TPM connection.
 * tpm_pem.c: the "TSS2 PRIVATE KEY" file format the provider reads, pure code (no TPM).
 * Not thread-safe: one struct kg_tpm per thread. Every call blocks on the TPM (a stopped
 * TPM: forever).
 */
#ifndef KTLSGATE_TPM_H
#define KTLSGATE_TPM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ktlsgate/compiler.h"

struct kg_tpm;

enum kg_tpm_alg { KG_TPM_ECDSA_P256, KG_TPM_RSA2048 };

#define KG_TPM_MAX_LISTED 64
#define KG_TPM_RH_OWNER 0x40000001u

struct kg_tpm_info {
	char manufacturer[5];         /* TPM2_PT_MANUFACTURER as 4 ASCII chars, e.g. "IBM " */
	char vendor[17];              /* TPM2_PT_VENDOR_STRING_1..4 */
	uint32_t fw1, fw2;            /* TPM2_PT_FIRMWARE_VERSION_1/2 */
	uint32_t spec_level, spec_rev;/* TPM2_PT_LEVEL, TPM2_PT_REVISION (x100) */
	uint32_t persistent[KG_TPM_MAX_LISTED];
	size_t n_persistent;          /* persistent objects (0x81...) */
	size_t n_transient;           /* transient objects loaded right now */
	uint32_t transient_free;      /* TPM2_PT_HR_TRANSIENT_AVAIL: free slots */
	uint32_t persistent_free;     /* TPM2_PT_HR_PERSISTENT_AVAIL */
};

/* Open the TPM named by tcti (tpm2-tss loader syntax; NULL or "": its default search)
 * and send TPM2_Startup(CLEAR) if nobody did. 0, or -1 with err. */
int kg_tpm_open(const char *tcti, struct kg_tpm **out, char *err, size_t errlen) KG_MUST_USE;
void kg_tpm_close(struct kg_tpm *t);

int kg_tpm_get_info(struct kg_tpm *t, struct kg_tpm_info *info, char *err, size_t errlen) KG_MUST_USE;

/* Is a persistent object at handle? 1 yes, 0 no, -1 error (err). */
int kg_tpm_handle_exists(struct kg_tpm *t, uint32_t handle, char *err, size_t errlen);

/* A new signing key (no auth, not duplicable; RSA: sign and decrypt, scheme NULL) under the owner hierarchy's standard
 * primary (the template the tpm2 provider rebuilds for TSS2 blobs), made persistent at
 * handle. 0; KG_E_EXISTS if the handle is taken; KG_E_IO otherwise (err). Flushes every
 * transient it created. */
int kg_tpm_keygen_persistent(struct kg_tpm *t, enum kg_tpm_alg alg, uint32_t handle, char *err,
			     size_t errlen) KG_MUST_USE;

/* The TSS2 key file contents (tpm_pem.c). Blobs are marshalled TPM2B_PUBLIC /
 * TPM2B_PRIVATE, opaque here. */
#define KG_TSS2_BLOB_MAX 1024
struct kg_tss2_key {
	bool empty_auth;
	uint32_t parent;              /* KG_TPM_RH_OWNER: the provider rebuilds the primary */
	uint8_t pub[KG_TSS2_BLOB_MAX];
	size_t pub_len;
	uint8_t priv[KG_TSS2_BLOB_MAX];
	size_t priv_len;
};

/* Same key, but returned as a TSS2 blob (wrapped by the TPM's storage key: useless
 * outside this TPM) instead of made persistent. 0, or -1 with err. */
int kg_tpm_keygen_blob(struct kg_tpm *t, enum kg_tpm_alg alg, struct kg_tss2_key *out, char *err,
		       size_t errlen) KG_MUST_USE;

/* Flush every transient object and loaded session this connection can see. With a
 * resource manager (tabrmd, /dev/tpmrm0) those are only our own; without one (swtpm,
 * /dev/tpm0) the TPM has a single user, so they are leftovers of a crashed process.
 * *flushed counts them. 0, or -1 with err. */
int kg_tpm_flush_transients(struct kg_tpm *t, unsigned *flushed, char *err, size_t errlen) KG_MUST_USE;

/*
 * The server key, loaded for signing. No OpenSSL types: the public part is the raw
 * numbers (big-endian), which tpm_foreign.c turns into an EVP_PKEY.
 */
struct kg_tpm_pub {
	enum kg_tpm_alg alg;
	uint8_t x[32], y[32];         /* ECC P-256 point */
	uint8_t n[256];               /* RSA-2048 modulus */
	size_t n_len;
	uint32_t e;                   /* RSA public exponent */
};

struct kg_tpm_loaded {
	uint32_t tr;                  /* ESYS_TR of the key */
	bool transient;               /* loaded from a blob: flushed by unload */
	struct kg_tpm_pub pub;
};

/* Load the key at a persistent handle (blob NULL) or the TSS2 key blob under the owner
 * standard primary (the primary is flushed again). An RSA key must allow sign and
 * decrypt with scheme NULL (raw RSA, so PSS works): an older sign-only key is refused
 * with a message naming `ktlsgate tpm keygen --rsa`. 0, or -1 with err. */
int kg_tpm_key_load(struct kg_tpm *t, uint32_t handle, const struct kg_tss2_key *blob,
		    struct kg_tpm_loaded *out, char *err, size_t errlen) KG_MUST_USE;
void kg_tpm_key_unload(struct kg_tpm *t, struct kg_tpm_loaded *k);

/* Results of the signing calls: TPM_OK; TPM_REFUSED: the TPM answered with an error
 * (the connection is fine); TPM_BROKEN: the connection failed (reconnect). */
enum kg_tpm_res { KG_TPM_OK = 0, KG_TPM_REFUSED = -1, KG_TPM_BROKEN = -2 };

/* ECDSA over a digest of 20, 32, 48 or 64 bytes (the hash is named by the length);
 * r and s (32 bytes each, big-endian, left-padded). */
enum kg_tpm_res kg_tpm_sign_ecdsa(struct kg_tpm *t, const struct kg_tpm_loaded *k,
				  const uint8_t *dgst, size_t dlen, uint8_t r[32], uint8_t s[32],
				  char *err, size_t errlen);
/* The raw RSA private operation on in (n_len bytes, < n) into out (n_len bytes). */
enum kg_tpm_res kg_tpm_rsa_raw(struct kg_tpm *t, const struct kg_tpm_loaded *k, const uint8_t *in,
			       size_t len, uint8_t *out, char *err, size_t errlen);

/*
 * A small secret sealed under the owner storage primary (the one keys use): a keyedhash
 * data object, no auth, fixedTPM/fixedParent (never duplicable). The blobs (marshalled
 * TPM2B_PUBLIC / TPM2B_PRIVATE) are useless without this TPM's owner seed. The daemon
 * seals a 32-byte wrapping key (tls/ticket_store.h); KG_TPM_SEAL_MAX is the TPM's
 * MAX_SYM_DATA. Transients flushed on every path. Results as for the signing calls.
 */
#define KG_TPM_SEAL_MAX 128
#define KG_TPM_SEALED_BLOB_MAX 256
struct kg_tpm_sealed {
	uint8_t pub[KG_TPM_SEALED_BLOB_MAX];
	size_t pub_len;
	uint8_t priv[KG_TPM_SEALED_BLOB_MAX];
	size_t priv_len;
};
enum kg_tpm_res kg_tpm_seal(struct kg_tpm *t, const uint8_t *data, size_t len,
			    struct kg_tpm_sealed *out, char *err, size_t errlen);
enum kg_tpm_res kg_tpm_unseal(struct kg_tpm *t, const struct kg_tpm_sealed *in, uint8_t *out,
			      size_t cap, size_t *len, char *err, size_t errlen);

/* tpm_pem.c. DER of TPMKey (the TSS2 key file spec, OID 2.23.133.10.1.3 loadable key):
 * 0, or -1 if it does not fit cap / is not such a key (policies and secrets refused). */
int kg_tss2_key_to_der(const struct kg_tss2_key *k, uint8_t *out, size_t cap, size_t *len) KG_MUST_USE;
int kg_tss2_key_from_der(const uint8_t *der, size_t len, struct kg_tss2_key *k) KG_MUST_USE;
/* PEM "-----BEGIN TSS2 PRIVATE KEY-----" text (malloc'd, NUL-terminated) / parse. */
char *kg_tss2_key_to_pem(const struct kg_tss2_key *k);
int kg_tss2_key_from_pem(const char *text, size_t len, struct kg_tss2_key *k) KG_MUST_USE;
/* Does the file start with a TSS2 PRIVATE KEY PEM block? (reads its first line) */
bool kg_tss2_file_is_key(const char *path);

#endif
