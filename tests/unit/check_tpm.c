/* SPDX-License-Identifier: BSD-2-Clause */
/* check_tpm.c - units of the TPM module that need no TPM: the [tpm] config section,
 * handle and TCTI parsing, the TSS2 key file codec (DER and PEM round trips). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/config.h"
#include "tpm/tpm.h"
#include "tpm/tpm_conf.h"
#include "tpm/tpm_signer.h"
#include "testlib.h"

static const char *const base =
	"[daemon]\ncert = /c\nkey = /k\nregistry = /r\n";

static int parse(const char *daemon_key, const char *tpm, struct kg_config *cfg, char *err,
		 size_t errlen)
{
	char text[1024];

	snprintf(text, sizeof(text), "[daemon]\ncert = /c\nkey = %s\nregistry = /r\n%s",
		 daemon_key, tpm);
	return kg_config_parse_string(text, "t.conf", cfg, err, errlen);
}

START_TEST(unknown_key_names_file_and_line)
{
	struct kg_config *cfg = calloc(1, sizeof(*cfg));
	char text[512], err[KG_ERRBUF];

	ck_assert_ptr_nonnull(cfg);
	snprintf(text, sizeof(text), "%s[tpm]\nbogus = 1\n", base);
	ck_assert_int_eq(kg_config_parse_string(text, "t.conf", cfg, err, sizeof(err)), -1);
	ck_assert_str_eq(err, "t.conf:6: unknown key 'bogus' in [tpm]");
	free(cfg);
}
END_TEST

START_TEST(tcti_and_fallback_parse)
{
	struct kg_config *cfg = calloc(1, sizeof(*cfg));
	char err[KG_ERRBUF];

	ck_assert_ptr_nonnull(cfg);
	ck_assert_int_eq(parse("handle:0x81000101",
			       "[tpm]\ntcti = swtpm:host=127.0.0.1,port=2321\n"
			       "key_fallback = /etc/k.pem\ncert_fallback = /etc/c.pem\n",
			       cfg, err, sizeof(err)),
			 0);
	ck_assert(cfg->tpm.present);
	ck_assert_str_eq(cfg->tpm.tcti, "swtpm:host=127.0.0.1,port=2321");
	ck_assert_str_eq(cfg->tpm.key_fallback, "/etc/k.pem");
	ck_assert_str_eq(cfg->tpm.cert_fallback, "/etc/c.pem");
	ck_assert_str_eq(cfg->key_file, "handle:0x81000101");
	ck_assert_uint_eq(cfg->tpm.sign_queue, 64);
	ck_assert_uint_eq(cfg->tpm.sign_timeout_ms, 1000);
	ck_assert_int_eq(parse("handle:0x81000101", "[tpm]\nsign_queue = 8\nsign_timeout_ms = 250\n",
			       cfg, err, sizeof(err)),
			 0);
	ck_assert_uint_eq(cfg->tpm.sign_queue, 8);
	ck_assert_uint_eq(cfg->tpm.sign_timeout_ms, 250);
	/* no [tpm] section: defaults, nothing set */
	ck_assert_int_eq(parse("/k", "", cfg, err, sizeof(err)), 0);
	ck_assert(!cfg->tpm.present);
	ck_assert_str_eq(cfg->tpm.tcti, "");
	ck_assert_uint_eq(cfg->tpm.sign_timeout_ms, 1000);
	free(cfg);
}
END_TEST

static const struct {
	const char *key, *tpm, *err;
} bad_conf[] = {
	{ "/k", "[tpm]\ntcti = swtpm:host=$HOME\n", "t.conf:6: 'tcti': '" },
	{ "/k", "[tpm]\ntcti = :port=1\n", "t.conf:6: 'tcti': '" },
	{ "/k", "[tpm]\ncert_fallback = /c2\n", "t.conf:5: [tpm]: 'cert_fallback' without" },
	{ "/k", "[tpm]\nsign_queue = 0\n", "t.conf:6: 'sign_queue': want 1..4096" },
	{ "/k", "[tpm]\nsign_timeout_ms = 5\n", "t.conf:6: 'sign_timeout_ms': want 10..60000" },
	{ "/k", "[tpm]\nsign_timeout_ms = 1s\n", "t.conf:6: 'sign_timeout_ms': want 10..60000" },
	{ "handle:0x80000001", "", "t.conf: [tpm]: [daemon] key 'handle:0x80000001'" },
	{ "handle:81000101", "", "t.conf: [tpm]: [daemon] key 'handle:81000101'" },
	{ "handle:0x81000101x", "", "t.conf: [tpm]: [daemon] key" },
};

START_TEST(bad_conf_table)
{
	struct kg_config *cfg = calloc(1, sizeof(*cfg));
	char err[KG_ERRBUF] = "";

	ck_assert_ptr_nonnull(cfg);
	ck_assert_int_eq(parse(bad_conf[_i].key, bad_conf[_i].tpm, cfg, err, sizeof(err)), -1);
	ck_assert_msg(strncmp(err, bad_conf[_i].err, strlen(bad_conf[_i].err)) == 0,
		      "case %d: got '%s'", _i, err);
	free(cfg);
}
END_TEST

START_TEST(handle_parse)
{
	uint32_t h = 0;

	ck_assert_int_eq(kg_tpm_parse_handle("0x81000101", &h), 0);
	ck_assert_uint_eq(h, 0x81000101u);
	ck_assert_int_eq(kg_tpm_parse_handle("0X81FFFFFF", &h), 0);
	ck_assert_uint_eq(h, 0x81ffffffu);
	ck_assert_int_eq(kg_tpm_parse_handle("0x80ffffff", &h), -1);  /* transient */
	ck_assert_int_eq(kg_tpm_parse_handle("0x82000000", &h), -1);
	ck_assert_int_eq(kg_tpm_parse_handle("2164261121", &h), -1);  /* decimal */
	ck_assert_int_eq(kg_tpm_parse_handle("0x", &h), -1);
	ck_assert_int_eq(kg_tpm_parse_handle("0x-81000101", &h), -1);
	ck_assert_int_eq(kg_tpm_parse_handle("0x81000101 ", &h), -1);
	ck_assert_int_eq(kg_tpm_parse_handle("0x0000000081000101", &h), 0); /* same value */
	ck_assert_int_eq(kg_tpm_parse_handle("0x100000000", &h), -1);
	ck_assert_int_eq(kg_tpm_parse_keyref("handle:0x81000102", &h), 0);
	ck_assert_uint_eq(h, 0x81000102u);
	ck_assert_int_eq(kg_tpm_parse_keyref("/etc/key.pem", &h), -1);
	ck_assert(kg_tpm_tcti_valid("device:/dev/tpmrm0"));
	ck_assert(kg_tpm_tcti_valid("tabrmd"));
	ck_assert(!kg_tpm_tcti_valid("swtpm:host=a\nb"));
	ck_assert(!kg_tpm_tcti_valid("sw tpm"));
}
END_TEST

static void sample_key(struct kg_tss2_key *k, size_t publen, size_t privlen, uint32_t parent)
{
	memset(k, 0, sizeof(*k));
	k->empty_auth = true;
	k->parent = parent;
	for (size_t i = 0; i < publen; i++)
		k->pub[i] = (uint8_t)(i * 7 + 1);
	for (size_t i = 0; i < privlen; i++)
		k->priv[i] = (uint8_t)(i * 13 + 5);
	k->pub_len = publen;
	k->priv_len = privlen;
}

START_TEST(tss2_der_round_trip)
{
	static const struct {
		size_t pub, priv;
		uint32_t parent;
		bool auth;
	} cases[] = {
		{ 90, 126, KG_TPM_RH_OWNER, true },       /* ECC P-256 sizes */
		{ 282, 222, 0x81000001, false },          /* RSA-2048, persistent parent */
		{ 1, 1, 1, true },
		{ KG_TSS2_BLOB_MAX, KG_TSS2_BLOB_MAX, 0x7fffffff, true },
	};
	uint8_t der[2 * KG_TSS2_BLOB_MAX + 64];
	struct kg_tss2_key in, out;
	size_t len;

	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		sample_key(&in, cases[c].pub, cases[c].priv, cases[c].parent);
		in.empty_auth = cases[c].auth;
		ck_assert_int_eq(kg_tss2_key_to_der(&in, der, sizeof(der), &len), 0);
		ck_assert_int_eq(kg_tss2_key_from_der(der, len, &out), 0);
		ck_assert_int_eq(out.empty_auth, in.empty_auth);
		ck_assert_uint_eq(out.parent, in.parent);
		ck_assert_uint_eq(out.pub_len, in.pub_len);
		ck_assert_uint_eq(out.priv_len, in.priv_len);
		ck_assert_mem_eq(out.pub, in.pub, in.pub_len);
		ck_assert_mem_eq(out.priv, in.priv, in.priv_len);
		/* every truncation and a trailing byte are refused */
		for (size_t cut = 0; cut < len; cut += (len > 64 ? 17 : 1))
			ck_assert_int_eq(kg_tss2_key_from_der(der, cut, &out), -1);
		der[len] = 0;
		ck_assert_int_eq(kg_tss2_key_from_der(der, len + 1, &out), -1);
		/* too small an output buffer */
		ck_assert_int_eq(kg_tss2_key_to_der(&in, der, len - 1, &len), -1);
	}
}
END_TEST

/* Bytes as the tpm2 provider writes them: parent 0x40000001 is "02 04 40 00 00 01";
 * 0x81000001 needs a leading zero ("02 05 00 81 00 00 01"). */
START_TEST(tss2_der_exact_bytes)
{
	static const uint8_t want[] = { 0x30, 0x1a, 0x06, 0x06, 0x67, 0x81, 0x05, 0x0a, 0x01,
					0x03, 0xa0, 0x03, 0x01, 0x01, 0xff, 0x02, 0x05, 0x00,
					0x81, 0x00, 0x00, 0x01, 0x04, 0x01, 0xaa, 0x04, 0x01,
					0xbb };
	struct kg_tss2_key k = { .empty_auth = true, .parent = 0x81000001, .pub_len = 1,
				 .priv_len = 1 };
	uint8_t der[64];
	size_t len;

	k.pub[0] = 0xaa;
	k.priv[0] = 0xbb;
	ck_assert_int_eq(kg_tss2_key_to_der(&k, der, sizeof(der), &len), 0);
	ck_assert_uint_eq(len, sizeof(want));
	ck_assert_mem_eq(der, want, sizeof(want));
}
END_TEST

START_TEST(tss2_der_refuses)
{
	/* wrong OID (2.23.133.10.1.4: importable key), and a [1] policy field */
	static const uint8_t importable[] = { 0x30, 0x14, 0x06, 0x06, 0x67, 0x81, 0x05, 0x0a,
					      0x01, 0x04, 0x02, 0x04, 0x40, 0x00, 0x00, 0x01,
					      0x04, 0x01, 0xaa, 0x04, 0x01, 0xbb };
	static const uint8_t policy[] = { 0x30, 0x18, 0x06, 0x06, 0x67, 0x81, 0x05, 0x0a, 0x01,
					  0x03, 0x02, 0x04, 0x40, 0x00, 0x00, 0x01, 0xa1, 0x02,
					  0x30, 0x00, 0x04, 0x01, 0xaa, 0x04, 0x01, 0xbb };
	/* non-minimal length (0x81 0x14) */
	static const uint8_t longlen[] = { 0x30, 0x81, 0x14, 0x06, 0x06, 0x67, 0x81, 0x05, 0x0a,
					   0x01, 0x03, 0x02, 0x04, 0x40, 0x00, 0x00, 0x01, 0x04,
					   0x01, 0xaa, 0x04, 0x01, 0xbb };
	struct kg_tss2_key k;

	ck_assert_int_eq(kg_tss2_key_from_der(importable, sizeof(importable), &k), -1);
	ck_assert_int_eq(kg_tss2_key_from_der(policy, sizeof(policy), &k), -1);
	ck_assert_int_eq(kg_tss2_key_from_der(longlen, sizeof(longlen), &k), -1);
}
END_TEST

START_TEST(tss2_pem_round_trip)
{
	struct kg_tss2_key in, out;
	char *pem;

	sample_key(&in, 90, 126, KG_TPM_RH_OWNER);
	pem = kg_tss2_key_to_pem(&in);
	ck_assert_ptr_nonnull(pem);
	ck_assert(strncmp(pem, "-----BEGIN TSS2 PRIVATE KEY-----\n", 33) == 0);
	ck_assert_int_eq(kg_tss2_key_from_pem(pem, strlen(pem), &out), 0);
	ck_assert_uint_eq(out.parent, KG_TPM_RH_OWNER);
	ck_assert_mem_eq(out.priv, in.priv, in.priv_len);
	/* another PEM type is refused */
	memcpy(pem + 11, "XSS2", 4);
	ck_assert_int_eq(kg_tss2_key_from_pem(pem, strlen(pem), &out), -1);
	free(pem);
}
END_TEST

/* The signer's start without a TPM (port 1 on loopback refuses at once): a connect
 * failure, named as such; a bad key name fails before any TPM is tried; with
 * key_fallback the daemon's start goes on (1, no signer). */
START_TEST(signer_start_without_tpm)
{
	struct kg_config *cfg = calloc(1, sizeof(*cfg));
	struct kg_tpm_signer_opts o = { .tcti = "swtpm:host=127.0.0.1,port=1",
					.keyref = "handle:0x81000101" };
	struct kg_tpm_signer *sg = (struct kg_tpm_signer *)1;
	enum kg_tpm_op failed = KG_TPM_OP_MAX;
	char err[KG_ERRBUF] = "";

	ck_assert_ptr_nonnull(cfg);
	ck_assert_int_eq(kg_tpm_signer_new(&o, &sg, &failed, err, sizeof(err)), -1);
	ck_assert_ptr_null(sg);
	ck_assert_int_eq(failed, KG_TPM_OP_CONNECT);
	ck_assert_msg(strstr(err, "TPM at 'swtpm:host=127.0.0.1,port=1': cannot connect") != NULL,
		      "%s", err);
	o.keyref = "/nonexistent/key.tss.pem";
	ck_assert_int_eq(kg_tpm_signer_new(&o, &sg, &failed, err, sizeof(err)), -1);
	ck_assert_int_eq(failed, KG_TPM_OP_LOAD);
	ck_assert_msg(strstr(err, "/nonexistent/key.tss.pem") != NULL, "%s", err);
	/* the daemon's start */
	ck_assert_int_eq(parse("handle:0x81000101", "[tpm]\ntcti = swtpm:host=127.0.0.1,port=1\n",
			       cfg, err, sizeof(err)),
			 0);
	ck_assert_int_eq(kg_tpm_signer_from_config(cfg, &sg, &failed, err, sizeof(err)), -1);
	ck_assert_msg(strncmp(err, "server key handle:0x81000101: TPM at", 36) == 0, "%s", err);
	ck_assert_int_eq(parse("handle:0x81000101",
			       "[tpm]\ntcti = swtpm:host=127.0.0.1,port=1\nkey_fallback = /k.pem\n",
			       cfg, err, sizeof(err)),
			 0);
	ck_assert_int_eq(kg_tpm_signer_from_config(cfg, &sg, &failed, err, sizeof(err)), 1);
	ck_assert_ptr_null(sg);
	/* a file key: no signer, nothing tried */
	ck_assert_int_eq(parse("/k", "", cfg, err, sizeof(err)), 0);
	ck_assert_int_eq(kg_tpm_signer_from_config(cfg, &sg, &failed, err, sizeof(err)), 0);
	ck_assert_ptr_null(sg);
	free(cfg);
}
END_TEST

Suite *kg_suite_tpm(void)
{
	Suite *s = suite_create("tpm");
	TCase *tc = tcase_create("conf");
	TCase *tk = tcase_create("tss2_key");
	TCase *ts = tcase_create("signer");

	tcase_add_test(tc, unknown_key_names_file_and_line);
	tcase_add_test(tc, tcti_and_fallback_parse);
	tcase_add_loop_test(tc, bad_conf_table, 0, (int)(sizeof(bad_conf) / sizeof(bad_conf[0])));
	tcase_add_test(tc, handle_parse);
	suite_add_tcase(s, tc);
	tcase_add_test(tk, tss2_der_round_trip);
	tcase_add_test(tk, tss2_der_exact_bytes);
	tcase_add_test(tk, tss2_der_refuses);
	tcase_add_test(tk, tss2_pem_round_trip);
	suite_add_tcase(s, tk);
	tcase_add_test(ts, signer_start_without_tpm);
	suite_add_tcase(s, ts);
	return s;
}
