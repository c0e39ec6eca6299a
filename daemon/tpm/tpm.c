/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * tpm.c - the TPM through tpm2-tss ESAPI (contract in tpm.h). Key creation happens here
 * so the CLI needs no tpm2-tools; signing does not (tpm_key.c, through the provider).
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
