/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * check_policy.c - the pure admission decision, table-driven: every branch of
 * kg_policy_decide() (unknown device and auto-enrolment, each status, attestation
 * mismatch, backend precedence and absence) and the client-id check.
 * Configs are built by hand (zeroed, fields filled) so this suite depends on no
 * parser.
 */
#include <check.h>
#include <string.h>

#include "policy/policy.h"
#include "testlib.h"

#define NONE ((enum kg_device_status)-1)   /* "no registry row" in the table */

struct policy_case {
	const char *name;
	/* device row (status NONE: unknown device) */
	enum kg_device_status status;
	enum kg_attestation dev_att;
	const char *dev_backend;
	const char *dev_ca;
	/* issuing CA row (NULL name: none) */
	const char *ca_name;
	bool ca_auto;
	const char *ca_backend;
	/* identity and config */
	enum kg_attestation method;
	const char *id_ca;
	const char *default_backend;
	/* expected verdict */
	bool allow, enroll;
	enum kg_reason reason;
	enum kg_connack connack;
	const char *backend;   /* NULL: not checked */
	enum kg_ca_status ca_status;   /* the CA row's (effective) status; 0 = enabled */
};

#define ENA KG_DEV_ENABLED
#define ATT_CA KG_ATT_CA
#define ATT_TP KG_ATT_THUMBPRINT
#define PIN_A "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define PIN_B "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
#define DENY_NA(r) false, false, r, KG_CONNACK_NOT_AUTHORIZED, NULL, KG_CA_ENABLED
#define DENY_BAN(r) false, false, r, KG_CONNACK_BANNED, NULL, KG_CA_ENABLED
#define NO_BACKEND false, false, KG_REASON_NO_BACKEND, KG_CONNACK_SERVER_UNAVAILABLE
#define ALLOW(b) true, false, KG_REASON_OK, KG_CONNACK_ACCEPTED, b, KG_CA_ENABLED
#define ENROLL(b) true, true, KG_REASON_ENROLLED, KG_CONNACK_ACCEPTED, b, KG_CA_ENABLED
/* CA status cases: the verdict, then the CA row's status */
#define CA_NA(st) false, false, KG_REASON_CA_DISABLED, KG_CONNACK_NOT_AUTHORIZED, NULL, st
#define CA_BAN(st) false, false, KG_REASON_CA_DISABLED, KG_CONNACK_BANNED, NULL, st
#define ALLOW_CA(b, st) true, false, KG_REASON_OK, KG_CONNACK_ACCEPTED, b, st

static const struct policy_case cases[] = {
	/* unknown devices */
	{ "unknown, auto-enroll CA", NONE, 0, "", "", "g1", true, "b-ca", ATT_CA, "g1", "b-def",
	  ENROLL("b-ca") },
	{ "unknown, auto-enroll CA without backend", NONE, 0, "", "", "g1", true, "", ATT_CA, "g1",
	  "b-def", ENROLL("b-def") },
	{ "unknown, CA not auto-enroll", NONE, 0, "", "", "g1", false, "b-ca", ATT_CA, "g1", "b-def",
	  DENY_NA(KG_REASON_UNKNOWN_DEVICE) },
	{ "unknown, no CA row", NONE, 0, "", "", NULL, false, "", ATT_CA, "g1", "b-def",
	  DENY_NA(KG_REASON_UNKNOWN_DEVICE) },
	{ "unknown, thumbprint method, auto-enroll CA", NONE, 0, "", "", "g1", true, "b-ca", ATT_TP, "",
	  "b-def", DENY_NA(KG_REASON_UNKNOWN_DEVICE) },
	{ "unknown, auto-enroll CA, backend not configured", NONE, 0, "", "", "g1", true, "b-gone",
	  ATT_CA, "g1", "b-def", NO_BACKEND, "b-gone", KG_CA_ENABLED },
	{ "unknown, auto-enroll CA, no backend anywhere", NONE, 0, "", "", "g1", true, "", ATT_CA, "g1",
	  "", NO_BACKEND, "", KG_CA_ENABLED },
	/* status */
	{ "disabled", KG_DEV_DISABLED, ATT_CA, "", "", "g1", false, "", ATT_CA, "g1", "b-def",
	  DENY_NA(KG_REASON_DISABLED) },
	{ "suspended", KG_DEV_SUSPENDED, ATT_CA, "", "", "g1", false, "", ATT_CA, "g1", "b-def",
	  DENY_NA(KG_REASON_SUSPENDED) },
	{ "quarantined", KG_DEV_QUARANTINED, ATT_CA, "", "", "g1", false, "", ATT_CA, "g1", "b-def",
	  DENY_BAN(KG_REASON_QUARANTINED) },
	{ "decommissioned", KG_DEV_DECOMMISSIONED, ATT_TP, "", "", NULL, false, "", ATT_TP, "",
	  "b-def", DENY_BAN(KG_REASON_DECOMMISSIONED) },
	{ "status before attestation", KG_DEV_SUSPENDED, ATT_TP, "", "", "g1", true, "", ATT_CA, "g1",
	  "b-def", DENY_NA(KG_REASON_SUSPENDED) },
	{ "status out of range fails closed", KG_DEV_STATUS_MAX, ATT_CA, "", "", "g1", false, "",
	  ATT_CA, "g1", "b-def", DENY_NA(KG_REASON_DISABLED) },
	{ "known but disabled under auto-enroll CA", KG_DEV_DISABLED, ATT_CA, "", "g1", "g1", true,
	  "b-ca", ATT_CA, "g1", "b-def", DENY_NA(KG_REASON_DISABLED) },
	/* attestation */
	{ "CA device came with a pinned leaf", ENA, ATT_CA, "", "", NULL, false, "", ATT_TP, "",
	  "b-def", DENY_NA(KG_REASON_ATTESTATION_MISMATCH) },
	{ "pinned device came through a CA", ENA, ATT_TP, "", "", "g1", false, "", ATT_CA, "g1",
	  "b-def", DENY_NA(KG_REASON_ATTESTATION_MISMATCH) },
	{ "CA device came through another CA", ENA, ATT_CA, "", "g1", "g2", false, "", ATT_CA, "g2",
	  "b-def", DENY_NA(KG_REASON_ATTESTATION_MISMATCH) },
	{ "CA device without a bound CA, any CA", ENA, ATT_CA, "", "", "g2", false, "", ATT_CA, "g2",
	  "b-def", ALLOW("b-def") },
	{ "CA device through its own CA", ENA, ATT_CA, "", "g1", "g1", false, "", ATT_CA, "g1",
	  "b-def", ALLOW("b-def") },
	/* backend precedence: device > CA > default */
	{ "device backend wins", ENA, ATT_CA, "b-dev", "g1", "g1", false, "b-ca", ATT_CA, "g1",
	  "b-def", ALLOW("b-dev") },
	{ "CA backend next", ENA, ATT_CA, "", "g1", "g1", false, "b-ca", ATT_CA, "g1", "b-def",
	  ALLOW("b-ca") },
	{ "default last", ENA, ATT_CA, "", "g1", "g1", false, "", ATT_CA, "g1", "b-def",
	  ALLOW("b-def") },
	{ "pinned device, default", ENA, ATT_TP, "", "", NULL, false, "", ATT_TP, "", "b-def",
	  ALLOW("b-def") },
	{ "pinned device, own backend", ENA, ATT_TP, "b-dev", "", NULL, false, "", ATT_TP, "", "",
	  ALLOW("b-dev") },
	{ "device backend missing: no fallback", ENA, ATT_CA, "b-gone", "g1", "g1", false, "b-ca",
	  ATT_CA, "g1", "b-def", NO_BACKEND, "b-gone", KG_CA_ENABLED },
	{ "CA backend missing: no fallback", ENA, ATT_CA, "", "g1", "g1", false, "b-gone", ATT_CA,
	  "g1", "b-def", NO_BACKEND, "b-gone", KG_CA_ENABLED },
	{ "default missing", ENA, ATT_TP, "", "", NULL, false, "", ATT_TP, "", "b-gone", NO_BACKEND,
	  "b-gone", KG_CA_ENABLED },
	{ "no default, nothing named", ENA, ATT_CA, "", "", "g1", false, "", ATT_CA, "g1", "",
	  NO_BACKEND, "", KG_CA_ENABLED },
	/* CA status (issue 10): before everything else, enrolment included */
	{ "CA disabled", ENA, ATT_CA, "", "g1", "g1", false, "", ATT_CA, "g1", "b-def",
	  CA_NA(KG_CA_DISABLED) },
	{ "CA revoked: banned", ENA, ATT_CA, "", "g1", "g1", false, "", ATT_CA, "g1", "b-def",
	  CA_BAN(KG_CA_REVOKED) },
	{ "CA status out of range fails closed", ENA, ATT_CA, "", "g1", "g1", false, "", ATT_CA,
	  "g1", "b-def", CA_BAN(KG_CA_STATUS_MAX) },
	{ "CA disabled stops auto-enrolment", NONE, 0, "", "", "g1", true, "b-ca", ATT_CA, "g1",
	  "b-def", CA_NA(KG_CA_DISABLED) },
	{ "CA disabled before device status", KG_DEV_QUARANTINED, ATT_CA, "", "g1", "g1", false, "",
	  ATT_CA, "g1", "b-def", CA_NA(KG_CA_DISABLED) },
	{ "CA disabled, unbound device too", ENA, ATT_CA, "", "", "g1", false, "", ATT_CA, "g1",
	  "b-def", CA_NA(KG_CA_DISABLED) },
	{ "pinned device ignores CA status", ENA, ATT_TP, "", "", "g1", false, "", ATT_TP, "",
	  "b-def", ALLOW_CA("b-def", KG_CA_REVOKED) },
};

static void make_cfg(struct kg_config *cfg, const char *default_backend)
{
	static const char *const names[] = { "b-def", "b-ca", "b-dev" };

	memset(cfg, 0, sizeof(*cfg));
	for (size_t i = 0; i < KG_NITEMS(names); i++)
		strcpy(cfg->backends[cfg->n_backends++].name, names[i]);
	strcpy(cfg->default_backend, default_backend);
	cfg->client_id_check = KG_CLIENT_ID_EXACT;
}

START_TEST(test_decide_table)
{
	const struct policy_case *c = &cases[_i];
	struct kg_config cfg;
	struct kg_identity id;
	struct kg_device dev;
	struct kg_ca ca;
	struct kg_policy_input in = { .id = &id, .cfg = &cfg };
	struct kg_verdict v;

	make_cfg(&cfg, c->default_backend);
	memset(&id, 0, sizeof(id));
	strcpy(id.device_id, "dev-1");
	id.method = c->method;
	strcpy(id.ca_name, c->id_ca);
	strcpy(id.thumbprint, PIN_A);
	if (c->status != NONE) {
		memset(&dev, 0, sizeof(dev));
		strcpy(dev.id, "dev-1");
		dev.status = c->status;
		dev.attestation = c->dev_att;
		if (c->dev_att == ATT_TP)
			strcpy(dev.thumb_primary, PIN_A);   /* the pin tests are test_decide_pin */
		strcpy(dev.backend, c->dev_backend);
		strcpy(dev.ca_name, c->dev_ca);
		in.device = &dev;
	}
	if (c->ca_name != NULL) {
		memset(&ca, 0, sizeof(ca));
		strcpy(ca.name, c->ca_name);
		ca.verified = true;
		ca.auto_enroll = c->ca_auto;
		strcpy(ca.backend, c->ca_backend);
		ca.status = c->ca_status;
		in.ca = &ca;
	}
	memset(&v, 0x5a, sizeof(v));   /* every field must be written */
	kg_policy_decide(&in, &v);
	ck_assert_msg(v.allow == c->allow, "%s: allow %d", c->name, v.allow);
	ck_assert_msg(v.enroll == c->enroll, "%s: enroll %d", c->name, v.enroll);
	ck_assert_msg(v.reason == c->reason, "%s: reason %s, want %s", c->name,
		      kg_reason_str(v.reason), kg_reason_str(c->reason));
	ck_assert_msg(v.connack == c->connack, "%s: connack %d want %d", c->name, v.connack,
		      c->connack);
	ck_assert_msg(memchr(v.backend, '\0', sizeof(v.backend)) != NULL, "%s: backend unterminated",
		      c->name);
	if (c->backend != NULL)
		ck_assert_msg(strcmp(v.backend, c->backend) == 0, "%s: backend \"%s\" want \"%s\"",
			      c->name, v.backend, c->backend);
	if (!c->allow && c->backend == NULL)
		ck_assert_msg(v.backend[0] == '\0', "%s: backend on a refusal", c->name);
}
END_TEST

START_TEST(test_ca_status_direct)
{
	struct kg_identity id;
	struct kg_ca ca;
	enum kg_connack ck = KG_CONNACK_MAX;

	memset(&id, 0, sizeof(id));
	memset(&ca, 0, sizeof(ca));
	id.method = KG_ATT_CA;
	ck_assert_int_eq(kg_policy_ca_status(&id, &ca, &ck), KG_REASON_OK);
	ck_assert_int_eq(ck, KG_CONNACK_ACCEPTED);
	ck_assert_int_eq(kg_policy_ca_status(&id, NULL, &ck), KG_REASON_OK);
	ca.status = KG_CA_DISABLED;
	ck_assert_int_eq(kg_policy_ca_status(&id, &ca, &ck), KG_REASON_CA_DISABLED);
	ck_assert_int_eq(ck, KG_CONNACK_NOT_AUTHORIZED);
	ck_assert_int_eq(kg_policy_ca_status(&id, &ca, NULL), KG_REASON_CA_DISABLED);
	ca.status = KG_CA_REVOKED;
	ck_assert_int_eq(kg_policy_ca_status(&id, &ca, &ck), KG_REASON_CA_DISABLED);
	ck_assert_int_eq(ck, KG_CONNACK_BANNED);
	id.method = KG_ATT_THUMBPRINT;
	ck_assert_int_eq(kg_policy_ca_status(&id, &ca, &ck), KG_REASON_OK);
	ck_assert_int_eq(kg_policy_ca_status(NULL, &ca, &ck), KG_REASON_OK);
}
END_TEST

struct uc_case {
	enum kg_username_check global;
	int ca;                       /* -2: no CA row, -1: a row without override, else mode */
	enum kg_username_check want;
};

/* (global, the CA's override present or absent) -> the rule (issue 10 section 7). */
static const struct uc_case uc_cases[] = {
	{ KG_USERNAME_STRICT, -2, KG_USERNAME_STRICT },
	{ KG_USERNAME_REWRITE, -2, KG_USERNAME_REWRITE },
	{ KG_USERNAME_PASS, -2, KG_USERNAME_PASS },
	{ KG_USERNAME_STRICT, -1, KG_USERNAME_STRICT },
	{ KG_USERNAME_REWRITE, -1, KG_USERNAME_REWRITE },
	{ KG_USERNAME_PASS, -1, KG_USERNAME_PASS },
	{ KG_USERNAME_PASS, KG_USERNAME_STRICT, KG_USERNAME_STRICT },
	{ KG_USERNAME_PASS, KG_USERNAME_REWRITE, KG_USERNAME_REWRITE },
	{ KG_USERNAME_STRICT, KG_USERNAME_REWRITE, KG_USERNAME_REWRITE },
	{ KG_USERNAME_STRICT, KG_USERNAME_PASS, KG_USERNAME_PASS },
	{ KG_USERNAME_REWRITE, KG_USERNAME_STRICT, KG_USERNAME_STRICT },
	{ KG_USERNAME_REWRITE, 9, KG_USERNAME_STRICT },   /* unknown override: fail closed */
	{ KG_USERNAME_PASS, 9, KG_USERNAME_STRICT },
};

START_TEST(test_username_check_table)
{
	const struct uc_case *c = &uc_cases[_i];
	struct kg_ca ca;

	memset(&ca, 0, sizeof(ca));
	ca.has_username_check = c->ca >= 0;
	ca.username_check = c->ca >= 0 ? (enum kg_username_check)c->ca : KG_USERNAME_PASS;
	ck_assert_int_eq(kg_policy_username_check(c->global, c->ca == -2 ? NULL : &ca), c->want);
}
END_TEST

/* The verdict carries the rule: the CA's for a CA-attested identity, the config's for
 * a pinned leaf even if a CA row were passed, strict on bad input. */
START_TEST(test_decide_username_check)
{
	struct kg_config cfg;
	struct kg_identity id;
	struct kg_device dev;
	struct kg_ca ca;
	struct kg_policy_input in = { .id = &id, .cfg = &cfg, .device = &dev, .ca = &ca };
	struct kg_verdict v;

	make_cfg(&cfg, "b-def");
	cfg.username_check = KG_USERNAME_PASS;
	memset(&id, 0, sizeof(id));
	strcpy(id.device_id, "dev-1");
	id.method = KG_ATT_CA;
	strcpy(id.ca_name, "factory");
	memset(&dev, 0, sizeof(dev));
	strcpy(dev.id, "dev-1");
	dev.status = KG_DEV_ENABLED;
	dev.attestation = KG_ATT_CA;
	memset(&ca, 0, sizeof(ca));
	strcpy(ca.name, "factory");
	ca.verified = true;

	memset(&v, 0x5a, sizeof(v));
	kg_policy_decide(&in, &v);
	ck_assert(v.allow);
	ck_assert_int_eq(v.username_check, KG_USERNAME_PASS);
	ca.has_username_check = true;
	ca.username_check = KG_USERNAME_STRICT;
	memset(&v, 0x5a, sizeof(v));
	kg_policy_decide(&in, &v);
	ck_assert(v.allow);
	ck_assert_int_eq(v.username_check, KG_USERNAME_STRICT);
	/* also on a refusal (the CONNECT is refused anyway, but nothing is left unset) */
	ca.status = KG_CA_DISABLED;
	memset(&v, 0x5a, sizeof(v));
	kg_policy_decide(&in, &v);
	ck_assert(!v.allow);
	ck_assert_int_eq(v.username_check, KG_USERNAME_STRICT);
	ca.status = KG_CA_ENABLED;
	/* a pinned leaf answers to no CA */
	id.method = KG_ATT_THUMBPRINT;
	dev.attestation = KG_ATT_THUMBPRINT;
	strcpy(id.thumbprint, PIN_A);
	strcpy(dev.thumb_primary, PIN_A);
	memset(&v, 0x5a, sizeof(v));
	kg_policy_decide(&in, &v);
	ck_assert(v.allow);
	ck_assert_int_eq(v.username_check, KG_USERNAME_PASS);
}
END_TEST

/* A pinned leaf is the device only while its row pins it: primary or secondary; a pin
 * changed or removed since the handshake (resumption, live revalidation) refuses. */
START_TEST(test_decide_pin)
{
	struct kg_config cfg;
	struct kg_identity id;
	struct kg_device dev;
	struct kg_policy_input in = { .id = &id, .cfg = &cfg, .device = &dev };
	struct kg_verdict v;

	make_cfg(&cfg, "b-def");
	memset(&id, 0, sizeof(id));
	strcpy(id.device_id, "dev-1");
	id.method = KG_ATT_THUMBPRINT;
	strcpy(id.thumbprint, PIN_A);
	memset(&dev, 0, sizeof(dev));
	strcpy(dev.id, "dev-1");
	dev.status = KG_DEV_ENABLED;
	dev.attestation = KG_ATT_THUMBPRINT;

	strcpy(dev.thumb_primary, PIN_A);
	kg_policy_decide(&in, &v);
	ck_assert(v.allow);
	ck_assert(kg_policy_pinned(&dev, PIN_A));
	/* the secondary pins it too (a rotation) */
	strcpy(dev.thumb_primary, PIN_B);
	strcpy(dev.thumb_secondary, PIN_A);
	kg_policy_decide(&in, &v);
	ck_assert(v.allow);
	/* re-pinned */
	dev.thumb_secondary[0] = '\0';
	memset(&v, 0x5a, sizeof(v));
	kg_policy_decide(&in, &v);
	ck_assert(!v.allow && !v.enroll);
	ck_assert_int_eq(v.reason, KG_REASON_THUMBPRINT_MISMATCH);
	ck_assert_int_eq(v.connack, KG_CONNACK_NOT_AUTHORIZED);
	ck_assert_str_eq(v.backend, "");
	/* no pin left: empty slots pin nothing, not even an empty thumbprint */
	dev.thumb_primary[0] = '\0';
	kg_policy_decide(&in, &v);
	ck_assert_int_eq(v.reason, KG_REASON_THUMBPRINT_MISMATCH);
	id.thumbprint[0] = '\0';
	kg_policy_decide(&in, &v);
	ck_assert_int_eq(v.reason, KG_REASON_THUMBPRINT_MISMATCH);
	ck_assert(!kg_policy_pinned(&dev, ""));
	/* a prefix, a malformed or a NULL thumbprint pins nothing */
	strcpy(dev.thumb_primary, PIN_A);
	ck_assert(!kg_policy_pinned(&dev, "aaaa"));
	ck_assert(!kg_policy_pinned(&dev, PIN_A "a"));
	ck_assert(!kg_policy_pinned(&dev, NULL));
	ck_assert(!kg_policy_pinned(NULL, PIN_A));
	/* status is judged first: a disabled device says disabled, not mismatch */
	dev.status = KG_DEV_DISABLED;
	kg_policy_decide(&in, &v);
	ck_assert_int_eq(v.reason, KG_REASON_DISABLED);
}
END_TEST

START_TEST(test_decide_bad_input)
{
	struct kg_config cfg;
	struct kg_identity id;
	struct kg_policy_input in = { .id = NULL, .cfg = &cfg };
	struct kg_verdict v;

	make_cfg(&cfg, "b-def");
	memset(&v, 0x5a, sizeof(v));
	kg_policy_decide(&in, &v);
	ck_assert(!v.allow && !v.enroll);
	ck_assert_int_eq(v.reason, KG_REASON_UNKNOWN_DEVICE);
	ck_assert_int_eq(v.username_check, KG_USERNAME_STRICT);

	memset(&id, 0, sizeof(id));
	in.id = &id;
	in.cfg = NULL;
	memset(&v, 0x5a, sizeof(v));
	kg_policy_decide(&in, &v);
	ck_assert(!v.allow && !v.enroll);

	memset(&v, 0x5a, sizeof(v));
	kg_policy_decide(NULL, &v);
	ck_assert(!v.allow && !v.enroll);
}
END_TEST

struct cid_case {
	enum kg_client_id_check mode;
	const char *device_id;
	const char *client_id;   /* NULL: a NULL pointer */
	size_t len;
	bool ok;
};

static const struct cid_case cid_cases[] = {
	{ KG_CLIENT_ID_EXACT, "dev-1", "dev-1", 5, true },
	{ KG_CLIENT_ID_EXACT, "dev-1/mod", "dev-1/mod", 9, true },
	{ KG_CLIENT_ID_EXACT, "dev-1", "dev-", 4, false },       /* prefix */
	{ KG_CLIENT_ID_EXACT, "dev-1", "dev-12", 6, false },     /* longer */
	{ KG_CLIENT_ID_EXACT, "dev-1", "dev-1", 4, false },      /* length says prefix */
	{ KG_CLIENT_ID_EXACT, "dev-1", "DEV-1", 5, false },      /* bytes, not case-folded */
	{ KG_CLIENT_ID_EXACT, "dev-1", "dev-1\0x", 7, false },   /* embedded NUL */
	{ KG_CLIENT_ID_EXACT, "dev-1", "dev-1\0", 6, false },    /* trailing NUL */
	{ KG_CLIENT_ID_EXACT, "dev-1", "", 0, false },           /* empty client id */
	{ KG_CLIENT_ID_EXACT, "dev-1", NULL, 0, false },
	{ KG_CLIENT_ID_EXACT, "", "", 0, false },                /* no identity: nothing matches */
	{ KG_CLIENT_ID_OFF, "dev-1", "anything", 8, true },
	{ KG_CLIENT_ID_OFF, "dev-1", "", 0, true },
	{ KG_CLIENT_ID_OFF, "dev-1", NULL, 0, true },
	{ (enum kg_client_id_check)42, "dev-1", "dev-1", 5, false }, /* unknown mode */
};

START_TEST(test_client_id_table)
{
	const struct cid_case *c = &cid_cases[_i];
	struct kg_config cfg;
	struct kg_identity id;

	memset(&cfg, 0, sizeof(cfg));
	cfg.client_id_check = c->mode;
	memset(&id, 0, sizeof(id));
	strcpy(id.device_id, c->device_id);
	ck_assert_msg(kg_policy_client_id_ok(&cfg, &id, (const uint8_t *)c->client_id, c->len) == c->ok,
		      "case %d: mode %d id \"%s\" client \"%s\"/%zu", _i, c->mode, c->device_id,
		      c->client_id ? c->client_id : "(null)", c->len);
}
END_TEST

START_TEST(test_client_id_max_length)
{
	struct kg_config cfg;
	struct kg_identity id;
	uint8_t cid[KG_DEVICE_ID_MAX + 1];

	memset(&cfg, 0, sizeof(cfg));
	memset(&id, 0, sizeof(id));
	memset(id.device_id, 'd', KG_DEVICE_ID_MAX);
	memset(cid, 'd', sizeof(cid));
	ck_assert(kg_policy_client_id_ok(&cfg, &id, cid, KG_DEVICE_ID_MAX));
	ck_assert(!kg_policy_client_id_ok(&cfg, &id, cid, KG_DEVICE_ID_MAX + 1));
	ck_assert(!kg_policy_client_id_ok(NULL, &id, cid, KG_DEVICE_ID_MAX));
	ck_assert(!kg_policy_client_id_ok(&cfg, NULL, cid, KG_DEVICE_ID_MAX));
}
END_TEST

Suite *kg_suite_policy(void)
{
	Suite *s = suite_create("policy");
	TCase *tc = tcase_create("policy");

	tcase_add_loop_test(tc, test_decide_table, 0, (int)KG_NITEMS(cases));
	tcase_add_test(tc, test_ca_status_direct);
	tcase_add_test(tc, test_decide_bad_input);
	tcase_add_test(tc, test_decide_pin);
	tcase_add_loop_test(tc, test_username_check_table, 0, (int)KG_NITEMS(uc_cases));
	tcase_add_test(tc, test_decide_username_check);
	tcase_add_loop_test(tc, test_client_id_table, 0, (int)KG_NITEMS(cid_cases));
	tcase_add_test(tc, test_client_id_max_length);
	suite_add_tcase(s, tc);
	return s;
}
