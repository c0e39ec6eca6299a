/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * tpm.c - the TPM through tpm2-tss ESAPI (contract in tpm.h). Key creation happens here
 * so the CLI needs no tpm2-tools. The daemon signs here too, from its signer thread
 * (tpm_signer.c): ESAPI on one connection, no OpenSSL provider in the daemon.
 *
 * The parent of every key is the owner hierarchy's primary built from the same template
 * the tpm2 OpenSSL provider uses when a TSS2 blob names parent 0x40000001: a primary is
 * derived from the hierarchy seed and the template, so the provider rebuilds the very
 * same storage key and can load our blob. Persistent keys use the same parent, so both
 * forms are the same kind of key.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tss2/tss2_esys.h>
#include <tss2/tss2_mu.h>
#include <tss2/tss2_rc.h>
#include <tss2/tss2_sys.h>
#include <tss2/tss2_tctildr.h>

#include "ops/err.h"
#include "tpm/tpm.h"

struct kg_tpm {
	TSS2_TCTI_CONTEXT *tcti;
	ESYS_CONTEXT *esys;
};

#define KEY_ATTRS                                                                        \
	(TPMA_OBJECT_USERWITHAUTH | TPMA_OBJECT_SIGN_ENCRYPT | TPMA_OBJECT_FIXEDTPM |     \
	 TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_NODA)
#define PRIMARY_ATTRS                                                                    \
	(TPMA_OBJECT_USERWITHAUTH | TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_DECRYPT |        \
	 TPMA_OBJECT_NODA | TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |              \
	 TPMA_OBJECT_SENSITIVEDATAORIGIN)

static void tss_err(char *err, size_t errlen, const char *what, TSS2_RC rc)
{
	snprintf(err, errlen, "%s: %s (0x%x)", what, Tss2_RC_Decode(rc), rc);
}

int kg_tpm_open(const char *tcti, struct kg_tpm **out, char *err, size_t errlen)
{
	struct kg_tpm *t = calloc(1, sizeof(*t));
	const char *name = tcti && tcti[0] ? tcti : NULL;
	TSS2_RC rc;

	*out = NULL;
	if (t == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	rc = Tss2_TctiLdr_Initialize(name, &t->tcti);
	if (rc != TSS2_RC_SUCCESS) {
		snprintf(err, errlen, "TPM at '%s': cannot connect: %s", name ? name : "(default)",
			 Tss2_RC_Decode(rc));
		goto out_free;
	}
	rc = Esys_Initialize(&t->esys, t->tcti, NULL);
	if (rc != TSS2_RC_SUCCESS) {
		tss_err(err, errlen, "Esys_Initialize", rc);
		goto out_tcti;
	}
	/* A real TPM was started by the firmware; a fresh simulator may not be. */
	rc = Esys_Startup(t->esys, TPM2_SU_CLEAR);
	if (rc != TSS2_RC_SUCCESS && rc != TPM2_RC_INITIALIZE) {
		snprintf(err, errlen, "TPM at '%s': %s", name ? name : "(default)",
			 Tss2_RC_Decode(rc));
		goto out_esys;
	}
	*out = t;
	return 0;

out_esys:
	Esys_Finalize(&t->esys);
out_tcti:
	Tss2_TctiLdr_Finalize(&t->tcti);
out_free:
	free(t);
	return -1;
}

void kg_tpm_close(struct kg_tpm *t)
{
	if (t == NULL)
		return;
	Esys_Finalize(&t->esys);
	Tss2_TctiLdr_Finalize(&t->tcti);
	free(t);
}

static int get_handles(struct kg_tpm *t, uint32_t first, uint32_t *out, size_t cap, size_t *n,
		       char *err, size_t errlen)
{
	TPMS_CAPABILITY_DATA *cap_data = NULL;
	TPMI_YES_NO more = TPM2_YES;
	uint32_t next = first;
	TSS2_RC rc;

	*n = 0;
	while (more) {
		TPML_HANDLE *h;

		rc = Esys_GetCapability(t->esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
					TPM2_CAP_HANDLES, next, TPM2_MAX_CAP_HANDLES, &more,
					&cap_data);
		if (rc != TSS2_RC_SUCCESS) {
			tss_err(err, errlen, "GetCapability(handles)", rc);
			return -1;
		}
		h = &cap_data->data.handles;
		for (uint32_t i = 0; i < h->count; i++) {
			/* the TPM lists from `first` on; stop at the end of that range */
			if ((h->handle[i] & 0xff000000u) != (first & 0xff000000u)) {
				more = TPM2_NO;
				break;
			}
			if (*n < cap)
				out[*n] = h->handle[i];
			(*n)++;
			next = h->handle[i] + 1;
		}
		if (h->count == 0)
			more = TPM2_NO;
		Esys_Free(cap_data);
		cap_data = NULL;
	}
	return 0;
}

static uint32_t prop_value(const TPML_TAGGED_TPM_PROPERTY *p, TPM2_PT pt)
{
	for (uint32_t i = 0; i < p->count; i++)
		if (p->tpmProperty[i].property == pt)
			return p->tpmProperty[i].value;
	return 0;
}

static void be32_chars(uint32_t v, char *dst)
{
	dst[0] = (char)(v >> 24);
	dst[1] = (char)(v >> 16);
	dst[2] = (char)(v >> 8);
	dst[3] = (char)v;
}

int kg_tpm_get_info(struct kg_tpm *t, struct kg_tpm_info *info, char *err, size_t errlen)
{
	TPMS_CAPABILITY_DATA *cap_data = NULL;
	uint32_t scratch[KG_TPM_MAX_LISTED];
	const TPML_TAGGED_TPM_PROPERTY *p;
	TSS2_RC rc;

	memset(info, 0, sizeof(*info));
	rc = Esys_GetCapability(t->esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
				TPM2_CAP_TPM_PROPERTIES, TPM2_PT_FIXED, TPM2_MAX_TPM_PROPERTIES,
				NULL, &cap_data);
	if (rc != TSS2_RC_SUCCESS) {
		tss_err(err, errlen, "GetCapability(fixed properties)", rc);
		return -1;
	}
	p = &cap_data->data.tpmProperties;
	be32_chars(prop_value(p, TPM2_PT_MANUFACTURER), info->manufacturer);
	for (unsigned i = 0; i < 4; i++)
		be32_chars(prop_value(p, TPM2_PT_VENDOR_STRING_1 + i), info->vendor + 4 * i);
	/* vendor strings are NUL-padded; keep what is printable */
	for (size_t i = 0; i < sizeof(info->vendor) - 1; i++)
		if ((unsigned char)info->vendor[i] < 0x20 || (unsigned char)info->vendor[i] > 0x7e)
			info->vendor[i] = '\0';
	for (size_t i = 0; i < sizeof(info->manufacturer) - 1; i++)
		if ((unsigned char)info->manufacturer[i] < 0x20 ||
		    (unsigned char)info->manufacturer[i] > 0x7e)
			info->manufacturer[i] = ' ';
	info->fw1 = prop_value(p, TPM2_PT_FIRMWARE_VERSION_1);
	info->fw2 = prop_value(p, TPM2_PT_FIRMWARE_VERSION_2);
	info->spec_level = prop_value(p, TPM2_PT_LEVEL);
	info->spec_rev = prop_value(p, TPM2_PT_REVISION);
	Esys_Free(cap_data);
	cap_data = NULL;

	rc = Esys_GetCapability(t->esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
				TPM2_CAP_TPM_PROPERTIES, TPM2_PT_VAR, TPM2_MAX_TPM_PROPERTIES,
				NULL, &cap_data);
	if (rc != TSS2_RC_SUCCESS) {
		tss_err(err, errlen, "GetCapability(variable properties)", rc);
		return -1;
	}
	info->transient_free = prop_value(&cap_data->data.tpmProperties, TPM2_PT_HR_TRANSIENT_AVAIL);
	info->persistent_free = prop_value(&cap_data->data.tpmProperties,
					   TPM2_PT_HR_PERSISTENT_AVAIL);
	Esys_Free(cap_data);

	if (get_handles(t, TPM2_PERSISTENT_FIRST, info->persistent, KG_TPM_MAX_LISTED,
			&info->n_persistent, err, errlen) != 0)
		return -1;
	if (info->n_persistent > KG_TPM_MAX_LISTED)
		info->n_persistent = KG_TPM_MAX_LISTED;
	return get_handles(t, TPM2_TRANSIENT_FIRST, scratch, KG_TPM_MAX_LISTED,
			   &info->n_transient, err, errlen);
}

int kg_tpm_handle_exists(struct kg_tpm *t, uint32_t handle, char *err, size_t errlen)
{
	uint32_t h[1];
	size_t n;

	/* listing starts at `handle`: the first one listed is it, or a later one */
	if (get_handles(t, handle, h, 1, &n, err, errlen) != 0)
		return -1;
	return n > 0 && h[0] == handle;
}

static void key_template(enum kg_tpm_alg alg, TPM2B_PUBLIC *pub)
{
	memset(pub, 0, sizeof(*pub));
	pub->publicArea.nameAlg = TPM2_ALG_SHA256;
	pub->publicArea.objectAttributes = KEY_ATTRS;
	if (alg == KG_TPM_RSA2048) {
		pub->publicArea.type = TPM2_ALG_RSA;
		/* sign|decrypt with scheme NULL: the daemon signs with the raw RSA private
		 * operation (TPM2_RSA_Decrypt), padding added by OpenSSL, so both PKCS#1
		 * v1.5 and PSS work; TPM2_Sign has no PSS with TLS's salt length. */
		pub->publicArea.objectAttributes |= TPMA_OBJECT_DECRYPT;
		pub->publicArea.parameters.rsaDetail.symmetric.algorithm = TPM2_ALG_NULL;
		/* NULL scheme: TLS picks PKCS#1 v1.5 or PSS and the hash per signature */
		pub->publicArea.parameters.rsaDetail.scheme.scheme = TPM2_ALG_NULL;
		pub->publicArea.parameters.rsaDetail.keyBits = 2048;
		pub->publicArea.parameters.rsaDetail.exponent = 0;
	} else {
		pub->publicArea.type = TPM2_ALG_ECC;
		pub->publicArea.parameters.eccDetail.symmetric.algorithm = TPM2_ALG_NULL;
		pub->publicArea.parameters.eccDetail.scheme.scheme = TPM2_ALG_NULL;
		pub->publicArea.parameters.eccDetail.curveID = TPM2_ECC_NIST_P256;
		pub->publicArea.parameters.eccDetail.kdf.scheme = TPM2_ALG_NULL;
	}
}

/* The provider's storage primary (see the file comment): ECC P-256 if the TPM has ECC. */
static int create_primary(struct kg_tpm *t, ESYS_TR *primary, char *err, size_t errlen)
{
	TPM2B_SENSITIVE_CREATE sens = { 0 };
	TPM2B_DATA outside = { 0 };
	TPML_PCR_SELECTION pcrs = { 0 };
	TPM2B_PUBLIC tmpl = { 0 };
	TSS2_RC rc;

	tmpl.publicArea.type = TPM2_ALG_ECC;
	tmpl.publicArea.nameAlg = TPM2_ALG_SHA256;
	tmpl.publicArea.objectAttributes = PRIMARY_ATTRS;
	tmpl.publicArea.parameters.eccDetail.symmetric.algorithm = TPM2_ALG_AES;
	tmpl.publicArea.parameters.eccDetail.symmetric.keyBits.aes = 128;
	tmpl.publicArea.parameters.eccDetail.symmetric.mode.aes = TPM2_ALG_CFB;
	tmpl.publicArea.parameters.eccDetail.scheme.scheme = TPM2_ALG_NULL;
	tmpl.publicArea.parameters.eccDetail.curveID = TPM2_ECC_NIST_P256;
	tmpl.publicArea.parameters.eccDetail.kdf.scheme = TPM2_ALG_NULL;
	rc = Esys_CreatePrimary(t->esys, ESYS_TR_RH_OWNER, ESYS_TR_PASSWORD, ESYS_TR_NONE,
				ESYS_TR_NONE, &sens, &tmpl, &outside, &pcrs, primary, NULL, NULL,
				NULL, NULL);
	if (rc != TSS2_RC_SUCCESS) {
		tss_err(err, errlen, "CreatePrimary(owner)", rc);
		return -1;
	}
	return 0;
}

/* Create (not load) a key under a fresh primary; the primary is flushed. */
static int create_key(struct kg_tpm *t, enum kg_tpm_alg alg, ESYS_TR *primary_out,
		      TPM2B_PUBLIC **pub, TPM2B_PRIVATE **priv, char *err, size_t errlen)
{
	TPM2B_SENSITIVE_CREATE sens = { 0 };
	TPM2B_DATA outside = { 0 };
	TPML_PCR_SELECTION pcrs = { 0 };
	TPM2B_PUBLIC tmpl;
	ESYS_TR primary = ESYS_TR_NONE;
	TSS2_RC rc;

	if (create_primary(t, &primary, err, errlen) != 0)
		return -1;
	key_template(alg, &tmpl);
	rc = Esys_Create(t->esys, primary, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &sens,
			 &tmpl, &outside, &pcrs, priv, pub, NULL, NULL, NULL);
	if (rc != TSS2_RC_SUCCESS) {
		tss_err(err, errlen, "Create", rc);
		(void)Esys_FlushContext(t->esys, primary);
		return -1;
	}
	if (primary_out != NULL) {
		*primary_out = primary;
	} else {
		(void)Esys_FlushContext(t->esys, primary);
	}
	return 0;
}

int kg_tpm_keygen_persistent(struct kg_tpm *t, enum kg_tpm_alg alg, uint32_t handle, char *err,
			     size_t errlen)
{
	TPM2B_PUBLIC *pub = NULL;
	TPM2B_PRIVATE *priv = NULL;
	ESYS_TR primary = ESYS_TR_NONE, key = ESYS_TR_NONE, persist = ESYS_TR_NONE;
	TSS2_RC rc;
	int ex, ret = KG_E_IO;

	ex = kg_tpm_handle_exists(t, handle, err, errlen);
	if (ex != 0) {
		if (ex > 0)
			snprintf(err, errlen, "handle 0x%08x is already in use", handle);
		return ex > 0 ? KG_E_EXISTS : KG_E_IO;
	}
	if (create_key(t, alg, &primary, &pub, &priv, err, errlen) != 0)
		return KG_E_IO;
	rc = Esys_Load(t->esys, primary, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, priv, pub,
		       &key);
	if (rc != TSS2_RC_SUCCESS) {
		tss_err(err, errlen, "Load", rc);
		goto out;
	}
	rc = Esys_EvictControl(t->esys, ESYS_TR_RH_OWNER, key, ESYS_TR_PASSWORD, ESYS_TR_NONE,
			       ESYS_TR_NONE, handle, &persist);
	if (rc != TSS2_RC_SUCCESS) {
		tss_err(err, errlen, "EvictControl", rc);
		if ((rc & 0xfff) == TPM2_RC_NV_DEFINED)
			ret = KG_E_EXISTS;
		goto out;
	}
	(void)Esys_TR_Close(t->esys, &persist);
	ret = 0;
out:
	if (key != ESYS_TR_NONE)
		(void)Esys_FlushContext(t->esys, key);
	(void)Esys_FlushContext(t->esys, primary);
	Esys_Free(pub);
	Esys_Free(priv);
	return ret;
}

int kg_tpm_keygen_blob(struct kg_tpm *t, enum kg_tpm_alg alg, struct kg_tss2_key *out, char *err,
		       size_t errlen)
{
	TPM2B_PUBLIC *pub = NULL;
	TPM2B_PRIVATE *priv = NULL;
	size_t off;
	TSS2_RC rc;
	int ret = -1;

	memset(out, 0, sizeof(*out));
	if (create_key(t, alg, NULL, &pub, &priv, err, errlen) != 0)
		return -1;
	off = 0;
	rc = Tss2_MU_TPM2B_PUBLIC_Marshal(pub, out->pub, sizeof(out->pub), &off);
	if (rc != TSS2_RC_SUCCESS) {
		tss_err(err, errlen, "marshal public", rc);
		goto out;
	}
	out->pub_len = off;
	off = 0;
	rc = Tss2_MU_TPM2B_PRIVATE_Marshal(priv, out->priv, sizeof(out->priv), &off);
	if (rc != TSS2_RC_SUCCESS) {
		tss_err(err, errlen, "marshal private", rc);
		goto out;
	}
	out->priv_len = off;
	out->parent = KG_TPM_RH_OWNER;
	out->empty_auth = true;
	ret = 0;
out:
	Esys_Free(pub);
	Esys_Free(priv);
	return ret;
}

int kg_tpm_flush_transients(struct kg_tpm *t, unsigned *flushed, char *err, size_t errlen)
{
	static const uint32_t ranges[] = { TPM2_TRANSIENT_FIRST, TPM2_HMAC_SESSION_FIRST,
					   TPM2_POLICY_SESSION_FIRST };
	TSS2_SYS_CONTEXT *sys = NULL;
	uint32_t h[KG_TPM_MAX_LISTED];
	size_t n;
	TSS2_RC rc;

	*flushed = 0;
	/* SAPI: ESAPI can only flush what it has a TR for, and a session handle from
	 * another process cannot become one. */
	rc = Esys_GetSysContext(t->esys, &sys);
	if (rc != TSS2_RC_SUCCESS) {
		tss_err(err, errlen, "Esys_GetSysContext", rc);
		return -1;
	}
	for (size_t r = 0; r < sizeof(ranges) / sizeof(ranges[0]); r++) {
		if (get_handles(t, ranges[r], h, KG_TPM_MAX_LISTED, &n, err, errlen) != 0)
			return -1;
		if (n > KG_TPM_MAX_LISTED)
			n = KG_TPM_MAX_LISTED;
		for (size_t i = 0; i < n; i++) {
			rc = Tss2_Sys_FlushContext(sys, h[i]);
			if (rc != TSS2_RC_SUCCESS) {
				snprintf(err, errlen, "FlushContext(0x%08x): %s", h[i],
					 Tss2_RC_Decode(rc));
				return -1;
			}
			(*flushed)++;
		}
	}
	return 0;
}

/* A TPM answer (TPM layer) leaves the connection usable; anything from the TCTI, SAPI
 * or ESAPI layers (I/O, a malformed or missing response) means it is not. */
static enum kg_tpm_res classify(TSS2_RC rc)
{
	return (rc & TSS2_RC_LAYER_MASK) == TSS2_TPM_RC_LAYER ? KG_TPM_REFUSED : KG_TPM_BROKEN;
}

static int read_pub(struct kg_tpm *t, struct kg_tpm_loaded *k, char *err, size_t errlen)
{
	TPM2B_PUBLIC *pub = NULL;
	const TPMT_PUBLIC *a;
	TSS2_RC rc;
	int ret = -1;

	rc = Esys_ReadPublic(t->esys, k->tr, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &pub, NULL,
			     NULL);
	if (rc != TSS2_RC_SUCCESS) {
		tss_err(err, errlen, "ReadPublic", rc);
		return -1;
	}
	a = &pub->publicArea;
	memset(&k->pub, 0, sizeof(k->pub));
	if (!(a->objectAttributes & TPMA_OBJECT_SIGN_ENCRYPT) ||
	    (a->objectAttributes & TPMA_OBJECT_RESTRICTED)) {
		snprintf(err, errlen, "not an unrestricted signing key");
		goto out;
	}
	if (a->type == TPM2_ALG_ECC) {
		const TPMS_ECC_POINT *q = &a->unique.ecc;

		if (a->parameters.eccDetail.curveID != TPM2_ECC_NIST_P256 || q->x.size > 32 ||
		    q->y.size > 32) {
			snprintf(err, errlen, "ECC key on a curve other than P-256");
			goto out;
		}
		k->pub.alg = KG_TPM_ECDSA_P256;
		memcpy(k->pub.x + 32 - q->x.size, q->x.buffer, q->x.size);
		memcpy(k->pub.y + 32 - q->y.size, q->y.buffer, q->y.size);
	} else if (a->type == TPM2_ALG_RSA) {
		const TPMS_RSA_PARMS *r = &a->parameters.rsaDetail;

		if (r->keyBits != 2048 || a->unique.rsa.size != 256) {
			snprintf(err, errlen, "RSA key of %u bits (2048 supported)", r->keyBits);
			goto out;
		}
		if (!(a->objectAttributes & TPMA_OBJECT_DECRYPT) || r->scheme.scheme != TPM2_ALG_NULL) {
			snprintf(err, errlen,
				 "this RSA key is sign-only (an older `ktlsgate tpm keygen --rsa`): "
				 "TLS needs raw RSA for PSS; make a new key with "
				 "`ktlsgate tpm keygen --rsa` and a certificate for it");
			goto out;
		}
		k->pub.alg = KG_TPM_RSA2048;
		memcpy(k->pub.n, a->unique.rsa.buffer, 256);
		k->pub.n_len = 256;
		k->pub.e = r->exponent ? r->exponent : 65537;
	} else {
		snprintf(err, errlen, "key type 0x%x is neither ECC nor RSA", a->type);
		goto out;
	}
	ret = 0;
out:
	Esys_Free(pub);
	return ret;
}

int kg_tpm_key_load(struct kg_tpm *t, uint32_t handle, const struct kg_tss2_key *blob,
		    struct kg_tpm_loaded *out, char *err, size_t errlen)
{
	ESYS_TR tr = ESYS_TR_NONE, primary = ESYS_TR_NONE;
	TPM2B_PUBLIC pub;
	TPM2B_PRIVATE priv;
	size_t off = 0;
	TSS2_RC rc;

	memset(out, 0, sizeof(*out));
	if (blob == NULL) {
		rc = Esys_TR_FromTPMPublic(t->esys, handle, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
					   &tr);
		if (rc != TSS2_RC_SUCCESS) {
			snprintf(err, errlen, "handle:0x%08x: %s", handle, Tss2_RC_Decode(rc));
			return -1;
		}
	} else {
		memset(&pub, 0, sizeof(pub));
		memset(&priv, 0, sizeof(priv));
		if (blob->parent != KG_TPM_RH_OWNER) {
			snprintf(err, errlen, "key blob parent 0x%08x (only the owner primary)",
				 blob->parent);
			return -1;
		}
		if (Tss2_MU_TPM2B_PUBLIC_Unmarshal(blob->pub, blob->pub_len, &off, &pub) !=
			    TSS2_RC_SUCCESS ||
		    (off = 0, Tss2_MU_TPM2B_PRIVATE_Unmarshal(blob->priv, blob->priv_len, &off,
							      &priv)) != TSS2_RC_SUCCESS) {
			snprintf(err, errlen, "key blob: malformed public or private part");
			return -1;
		}
		if (create_primary(t, &primary, err, errlen) != 0)
			return -1;
		rc = Esys_Load(t->esys, primary, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &priv,
			       &pub, &tr);
		(void)Esys_FlushContext(t->esys, primary);
		if (rc != TSS2_RC_SUCCESS) {
			tss_err(err, errlen, "Load", rc);
			return -1;
		}
		out->transient = true;
	}
	out->tr = tr;
	if (read_pub(t, out, err, errlen) != 0) {
		kg_tpm_key_unload(t, out);
		return -1;
	}
	return 0;
}

void kg_tpm_key_unload(struct kg_tpm *t, struct kg_tpm_loaded *k)
{
	ESYS_TR tr = k->tr;

	if (tr == ESYS_TR_NONE || tr == 0)
		return;
	if (k->transient)
		(void)Esys_FlushContext(t->esys, tr);
	else
		(void)Esys_TR_Close(t->esys, &tr);
	k->tr = ESYS_TR_NONE;
}

static TPMI_ALG_HASH hash_by_len(size_t len)
{
	switch (len) {
	case 20: return TPM2_ALG_SHA1;
	case 32: return TPM2_ALG_SHA256;
	case 48: return TPM2_ALG_SHA384;
	case 64: return TPM2_ALG_SHA512;
	default: return TPM2_ALG_NULL;
	}
}

enum kg_tpm_res kg_tpm_sign_ecdsa(struct kg_tpm *t, const struct kg_tpm_loaded *k,
				  const uint8_t *dgst, size_t dlen, uint8_t r[32], uint8_t s[32],
				  char *err, size_t errlen)
{
	TPM2B_DIGEST digest = { 0 };
	TPMT_SIG_SCHEME scheme;
	/* a NULL ticket: the digest was not made by the TPM, which is fine for an
	 * unrestricted key */
	TPMT_TK_HASHCHECK ticket = { .tag = TPM2_ST_HASHCHECK, .hierarchy = TPM2_RH_NULL };
	TPMT_SIGNATURE *sig = NULL;
	const TPMS_SIGNATURE_ECC *e;
	TSS2_RC rc;

	memset(&scheme, 0, sizeof(scheme));
	scheme.scheme = TPM2_ALG_ECDSA;
	scheme.details.ecdsa.hashAlg = hash_by_len(dlen);
	if (k->pub.alg != KG_TPM_ECDSA_P256 || scheme.details.ecdsa.hashAlg == TPM2_ALG_NULL) {
		snprintf(err, errlen, "ECDSA: digest of %zu bytes", dlen);
		return KG_TPM_REFUSED;
	}
	digest.size = (uint16_t)dlen;
	memcpy(digest.buffer, dgst, dlen);
	rc = Esys_Sign(t->esys, k->tr, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &digest,
		       &scheme, &ticket, &sig);
	if (rc != TSS2_RC_SUCCESS) {
		tss_err(err, errlen, "Sign", rc);
		return classify(rc);
	}
	e = &sig->signature.ecdsa;
	if (sig->sigAlg != TPM2_ALG_ECDSA || e->signatureR.size > 32 || e->signatureS.size > 32) {
		snprintf(err, errlen, "Sign: unexpected signature");
		Esys_Free(sig);
		return KG_TPM_REFUSED;
	}
	memset(r, 0, 32);
	memset(s, 0, 32);
	memcpy(r + 32 - e->signatureR.size, e->signatureR.buffer, e->signatureR.size);
	memcpy(s + 32 - e->signatureS.size, e->signatureS.buffer, e->signatureS.size);
	Esys_Free(sig);
	return KG_TPM_OK;
}

enum kg_tpm_res kg_tpm_rsa_raw(struct kg_tpm *t, const struct kg_tpm_loaded *k, const uint8_t *in,
			       size_t len, uint8_t *out, char *err, size_t errlen)
{
	TPM2B_PUBLIC_KEY_RSA cipher = { 0 };
	TPMT_RSA_DECRYPT scheme;
	TPM2B_DATA label = { 0 };
	TPM2B_PUBLIC_KEY_RSA *msg = NULL;
	TSS2_RC rc;

	memset(&scheme, 0, sizeof(scheme));
	scheme.scheme = TPM2_ALG_NULL;
	if (k->pub.alg != KG_TPM_RSA2048 || len != k->pub.n_len) {
		snprintf(err, errlen, "RSA: input of %zu bytes", len);
		return KG_TPM_REFUSED;
	}
	cipher.size = (uint16_t)len;
	memcpy(cipher.buffer, in, len);
	rc = Esys_RSA_Decrypt(t->esys, k->tr, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &cipher,
			      &scheme, &label, &msg);
	if (rc != TSS2_RC_SUCCESS) {
		tss_err(err, errlen, "RSA_Decrypt", rc);
		return classify(rc);
	}
	if (msg->size > len) {
		snprintf(err, errlen, "RSA_Decrypt: %u bytes back", msg->size);
		Esys_Free(msg);
		return KG_TPM_REFUSED;
	}
	/* the TPM may drop leading zero bytes of the result */
	memset(out, 0, len);
	memcpy(out + len - msg->size, msg->buffer, msg->size);
	Esys_Free(msg);
	return KG_TPM_OK;
}

/* A sealed data object: no auth (the blobs are only good in this TPM, and the daemon
 * must unseal unattended), userWithAuth, fixedTPM + fixedParent so it can never be
 * duplicated out; keyedhash with a NULL scheme is the TPM's "sealed data" shape. */
#define SEAL_ATTRS                                                                       \
	(TPMA_OBJECT_USERWITHAUTH | TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |      \
	 TPMA_OBJECT_NODA)

enum kg_tpm_res kg_tpm_seal(struct kg_tpm *t, const uint8_t *data, size_t len,
			    struct kg_tpm_sealed *out, char *err, size_t errlen)
{
	TPM2B_SENSITIVE_CREATE sens = { 0 };
	TPM2B_DATA outside = { 0 };
	TPML_PCR_SELECTION pcrs = { 0 };
	TPM2B_PUBLIC tmpl = { 0 };
	TPM2B_PUBLIC *pub = NULL;
	TPM2B_PRIVATE *priv = NULL;
	ESYS_TR primary = ESYS_TR_NONE;
	enum kg_tpm_res res = KG_TPM_REFUSED;
	size_t off;
	TSS2_RC rc;

	memset(out, 0, sizeof(*out));
	if (len == 0 || len > KG_TPM_SEAL_MAX || len > sizeof(sens.sensitive.data.buffer)) {
		snprintf(err, errlen, "seal: %zu bytes (1..%d)", len, KG_TPM_SEAL_MAX);
		return KG_TPM_REFUSED;
	}
	sens.sensitive.data.size = (UINT16)len;
	memcpy(sens.sensitive.data.buffer, data, len);
	tmpl.publicArea.type = TPM2_ALG_KEYEDHASH;
	tmpl.publicArea.nameAlg = TPM2_ALG_SHA256;
	tmpl.publicArea.objectAttributes = SEAL_ATTRS;
	tmpl.publicArea.parameters.keyedHashDetail.scheme.scheme = TPM2_ALG_NULL;
	if (create_primary(t, &primary, err, errlen) != 0) {
		/* the primary failing says nothing about the connection: ask the TPM */
		res = KG_TPM_BROKEN;
		goto out;
	}
	rc = Esys_Create(t->esys, primary, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &sens,
			 &tmpl, &outside, &pcrs, &priv, &pub, NULL, NULL, NULL);
	if (rc != TSS2_RC_SUCCESS) {
		tss_err(err, errlen, "Create(sealed data)", rc);
		res = classify(rc);
		goto out;
	}
	off = 0;
	rc = Tss2_MU_TPM2B_PUBLIC_Marshal(pub, out->pub, sizeof(out->pub), &off);
	out->pub_len = off;
	if (rc == TSS2_RC_SUCCESS) {
		off = 0;
		rc = Tss2_MU_TPM2B_PRIVATE_Marshal(priv, out->priv, sizeof(out->priv), &off);
		out->priv_len = off;
	}
	if (rc != TSS2_RC_SUCCESS) {
		tss_err(err, errlen, "marshal sealed object", rc);
		goto out;
	}
	res = KG_TPM_OK;
out:
	if (primary != ESYS_TR_NONE)
		(void)Esys_FlushContext(t->esys, primary);
	explicit_bzero(&sens, sizeof(sens));
	Esys_Free(pub);
	Esys_Free(priv);
	return res;
}

enum kg_tpm_res kg_tpm_unseal(struct kg_tpm *t, const struct kg_tpm_sealed *in, uint8_t *out,
			      size_t cap, size_t *len, char *err, size_t errlen)
{
	TPM2B_PUBLIC pub;
	TPM2B_PRIVATE priv;
	TPM2B_SENSITIVE_DATA *data = NULL;
	ESYS_TR primary = ESYS_TR_NONE, obj = ESYS_TR_NONE;
	enum kg_tpm_res res = KG_TPM_REFUSED;
	size_t off = 0;
	TSS2_RC rc;

	*len = 0;
	memset(&pub, 0, sizeof(pub));
	memset(&priv, 0, sizeof(priv));
	if (Tss2_MU_TPM2B_PUBLIC_Unmarshal(in->pub, in->pub_len, &off, &pub) != TSS2_RC_SUCCESS ||
	    off != in->pub_len ||
	    (off = 0, Tss2_MU_TPM2B_PRIVATE_Unmarshal(in->priv, in->priv_len, &off, &priv)) !=
		    TSS2_RC_SUCCESS ||
	    off != in->priv_len) {
		snprintf(err, errlen, "unseal: malformed sealed object");
		return KG_TPM_REFUSED;
	}
	if (pub.publicArea.type != TPM2_ALG_KEYEDHASH ||
	    (pub.publicArea.objectAttributes & (TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT)) !=
		    (TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT)) {
		snprintf(err, errlen, "unseal: not a sealed data object of this daemon");
		return KG_TPM_REFUSED;
	}
	if (create_primary(t, &primary, err, errlen) != 0) {
		res = KG_TPM_BROKEN;
		goto out;
	}
	rc = Esys_Load(t->esys, primary, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &priv, &pub,
		       &obj);
	if (rc != TSS2_RC_SUCCESS) {
		/* another TPM's (or another owner seed's) blob fails its integrity check here */
		tss_err(err, errlen, "Load(sealed data)", rc);
		res = classify(rc);
		goto out;
	}
	rc = Esys_Unseal(t->esys, obj, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &data);
	if (rc != TSS2_RC_SUCCESS) {
		tss_err(err, errlen, "Unseal", rc);
		res = classify(rc);
		goto out;
	}
	if (data->size > cap) {
		snprintf(err, errlen, "unseal: %u bytes, room for %zu", data->size, cap);
		goto out;
	}
	memcpy(out, data->buffer, data->size);
	*len = data->size;
	res = KG_TPM_OK;
out:
	if (data != NULL) {
		explicit_bzero(data, sizeof(*data));
		Esys_Free(data);
	}
	if (obj != ESYS_TR_NONE)
		(void)Esys_FlushContext(t->esys, obj);
	if (primary != ESYS_TR_NONE)
		(void)Esys_FlushContext(t->esys, primary);
	return res;
}
