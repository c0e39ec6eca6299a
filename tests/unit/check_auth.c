/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * check_auth.c - the CONNECT credential engine (daemon/auth/) against a real SQLite
 * registry, OpenSSL's HMAC and scrypt, and real threads:
 *  - every vector below was made by tests/unit/auth_vectors.py with Python's hmac,
 *    hashlib (sha256, scrypt) and urllib.parse, not by the code under test; the SAS
 *    "as sent" token spells its resource with lower-case escapes (%2f), so it verifies
 *    only in that form;
 *  - each refusal is compared by status, reason and CONNACK, exactly;
 *  - the limiter runs on an injected clock; the pool's eventfd is polled as a worker
 *    would.
 */
#include <check.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth/auth_check.h"
#include "auth/auth_conf.h"
#include "auth/auth_limit.h"
#include "auth/auth_pool.h"
#include "ops/err.h"
#include "registry/registry.h"
#include "testlib.h"

Suite *kg_suite_auth(void);

/* ---- vectors: python3 tests/unit/auth_vectors.py ---------------------------------- */
#define K1 "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA="
#define K2 "ZWZnaGlqa2xtbm9wcXJzdHV2d3h5ent8fX5/gIGCg4Q="
#define K3 "ycrLzM3Oz9DR0tPU1dbX2Nna29zd3t/g4eLj5OXm5+g="
#define SAS_P "SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fdev-1&sig=qbiPiGylWTjVrsx1VJQthdIqlMYhbaFtQGjZIZYUoEE%3D&se=1900000000"
#define SAS_S "SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fdev-1&sig=Q%2F6oKHCoAhdJw4b6B0kDn%2FOg%2BtNVIgcSIz6%2FkUf5dgw%3D&se=1900000000"
#define SAS_RAW "SharedAccessSignature sr=myhub.azure-devices.net%2fdevices%2fdev-1&sig=Rd5ISNkFGC3O8A1qgAoGPy2y%2BFf2SYQRPY1d0oF3xBE%3D&se=1900000000"
#define SAS_EXPIRED "SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fdev-1&sig=lYVkjjgZFnxNNcfJpEdYYojr26Beb6NoAUN3itix9UU%3D&se=1700000000"
#define SAS_OTHER_RES "SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fdev-2&sig=z5YGvP72iiS607CmEob3BceiAS3JfeG90UahYYcgfSc%3D&se=1900000000"
#define SAS_WRONG_KEY "SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fdev-1&sig=DYfZa1kxUiCvjnxK4M94tyo64uUX18MwAX%2BwAe1vw1o%3D&se=1900000000"
#define SAS_SKN "SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fdev-1&sig=qbiPiGylWTjVrsx1VJQthdIqlMYhbaFtQGjZIZYUoEE%3D&se=1900000000&skn=iothubowner"
#define SAS_SHORT "SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fdev-1&sig=mCJwZz8LHpzWdpJVyNQeDXXSP%2FVlX%2F17%2Bt0OnK8IViE%3D&se=1800000600"
#define SAS_BASICDEV "SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fbas-1&sig=gFRHeC04MoNy56fen4tn7GToSWElbrtBVcD8DKb1c08%3D&se=1900000000"
#define TOKEN "tb-AbCdEf0123456789xyz"
#define TOKEN_SHA "e198393bdf56d8ee17485a05a3e49711417394670e92e3fe3ecdb4619683c863"
#define PW1 "correct horse battery"
#define PW2 "second-pass-0123"
#define PHC1 "$scrypt$ln=10,r=8,p=1$AAECAwQFBgcICQoLDA0ODw$hKGWL22WtdGfIbxEPAZ06BS2bWyYKuZIKvypfAlYOWk"
#define PHC2 "$scrypt$ln=10,r=8,p=1$MjM0NTY3ODk6Ozw9Pj9AQQ$UNsykZ/MlqPmKKs1pz9P76MikRS+SMGTVvlFfiBxeRs"
#define PW_SLOW "slow-password-1"
#define PW_DEFAULT "default-cost-pw"
#define PHC_DEFAULT "$scrypt$ln=15,r=8,p=1$yMnKy8zNzs/Q0dLT1NXW1w$i0/uzeOTrBoTrvLSO2aCHOUtaKztlq6K2+lfo+ryNxs"
#define PHC_SLOW "$scrypt$ln=14,r=8,p=1$ZGVmZ2hpamtsbW5vcHFycw$NgJ4T3UBe34tgreuFTpOXCSDFC4wYfD007DbYOGtKQg"

#define HUB "myhub.azure-devices.net"
#define NOW 1800000000
#define USER_DEV1 HUB "/dev-1/?api-version=2021-04-12"

static char tmpdir[256], dbpath[300];
static struct kg_registry *reg;

static void add_dev(const char *id, enum kg_attestation att)
{
	struct kg_device d;

	memset(&d, 0, sizeof(d));
	snprintf(d.id, sizeof(d.id), "%s", id);
	d.status = KG_DEV_ENABLED;
	d.attestation = att;
	ck_assert_int_eq(kg_registry_device_add(reg, &d), 0);
}

static void add_cred(const char *id, enum kg_attestation kind, enum kg_cred_slot slot,
		     const char *user, const char *secret)
{
	struct kg_credential c;

	memset(&c, 0, sizeof(c));
	c.kind = kind;
	c.slot = slot;
	snprintf(c.username, sizeof(c.username), "%s", user);
	snprintf(c.secret, sizeof(c.secret), "%s", secret);
	ck_assert_int_eq(kg_registry_cred_set(reg, id, &c), 0);
}

static void setup(void)
{
	char err[KG_ERRBUF];

	kg_test_tmpdir(tmpdir, sizeof(tmpdir));
	snprintf(dbpath, sizeof(dbpath), "%s/registry.db", tmpdir);
	ck_assert_int_eq(kg_registry_open(dbpath, KG_REG_READWRITE, &reg, err, sizeof(err)), 0);
	add_dev("dev-1", KG_ATT_SAS);
	add_cred("dev-1", KG_ATT_SAS, KG_CRED_PRIMARY, "", K1);
	add_cred("dev-1", KG_ATT_SAS, KG_CRED_SECONDARY, "", K2);
	add_dev("tok-1", KG_ATT_TOKEN);
	add_cred("tok-1", KG_ATT_TOKEN, KG_CRED_PRIMARY, "", TOKEN_SHA);
	add_dev("bas-1", KG_ATT_BASIC);
	add_cred("bas-1", KG_ATT_BASIC, KG_CRED_PRIMARY, "alice", PHC1);
	add_cred("bas-1", KG_ATT_BASIC, KG_CRED_SECONDARY, "alice", PHC2);
	/* a SAS key stored on a basic device: the kind is the device's attestation */
	add_cred("bas-1", KG_ATT_SAS, KG_CRED_PRIMARY, "", K1);
	add_dev("cert-1", KG_ATT_CA);
}

static void teardown(void)
{
	kg_registry_close(reg);
	reg = NULL;
	kg_test_rmdir(tmpdir);
}

static struct kg_auth_conf conf_default(void)
{
	struct kg_auth_conf c;

	kg_auth_conf_defaults(&c);
	return c;
}

static struct kg_auth_input input(const char *user, const char *pw, const char *cid)
{
	struct kg_auth_input in;

	memset(&in, 0, sizeof(in));
	in.username = user;
	in.username_len = user ? strlen(user) : 0;
	in.password = (const uint8_t *)pw;
	in.password_len = pw ? strlen(pw) : 0;
	in.client_id = cid ? cid : "";
	in.client_id_len = cid ? strlen(cid) : 0;
	in.now = NOW;
	in.now_ms = 1000;
	return in;
}

/* ---- SAS ----------------------------------------------------------------------- */

static const struct sas_case {
	const char *name, *user, *token, *cid;
	unsigned max_ttl;
	const char *hub;              /* [auth] sas_hub */
	enum kg_auth_status status;
	enum kg_reason reason;
	enum kg_connack connack;
} sas_cases[] = {
	{ "primary", USER_DEV1, SAS_P, "dev-1", 0, "", KG_AUTH_OK, KG_REASON_OK, KG_CONNACK_ACCEPTED },
	{ "secondary", USER_DEV1, SAS_S, "dev-1", 0, "", KG_AUTH_OK, KG_REASON_OK, KG_CONNACK_ACCEPTED },
	{ "as_sent_form", USER_DEV1, SAS_RAW, "dev-1", 0, "", KG_AUTH_OK, KG_REASON_OK, KG_CONNACK_ACCEPTED },
	{ "old_user_name", HUB "/dev-1/api-version=2016-11-14", SAS_P, "dev-1", 0, "", KG_AUTH_OK,
	  KG_REASON_OK, KG_CONNACK_ACCEPTED },
	{ "hub_configured", USER_DEV1, SAS_P, "dev-1", 0, "MYHUB.azure-devices.net", KG_AUTH_OK,
	  KG_REASON_OK, KG_CONNACK_ACCEPTED },
	{ "hub_other", USER_DEV1, SAS_P, "dev-1", 0, "otherhub.azure-devices.net", KG_AUTH_REFUSED,
	  KG_REASON_BAD_CREDENTIALS, KG_CONNACK_BAD_CREDENTIALS },
	{ "user_hub_other", "otherhub.azure-devices.net/dev-1/?api-version=2021-04-12", SAS_P, "dev-1",
	  0, "", KG_AUTH_REFUSED, KG_REASON_BAD_CREDENTIALS, KG_CONNACK_BAD_CREDENTIALS },
	{ "expired", USER_DEV1, SAS_EXPIRED, "dev-1", 0, "", KG_AUTH_REFUSED,
	  KG_REASON_CREDENTIAL_EXPIRED, KG_CONNACK_BAD_CREDENTIALS },
	{ "other_resource", USER_DEV1, SAS_OTHER_RES, "dev-1", 0, "", KG_AUTH_REFUSED,
	  KG_REASON_BAD_CREDENTIALS, KG_CONNACK_BAD_CREDENTIALS },
	{ "wrong_key", USER_DEV1, SAS_WRONG_KEY, "dev-1", 0, "", KG_AUTH_REFUSED,
	  KG_REASON_BAD_CREDENTIALS, KG_CONNACK_BAD_CREDENTIALS },
	{ "skn", USER_DEV1, SAS_SKN, "dev-1", 0, "", KG_AUTH_REFUSED, KG_REASON_BAD_CREDENTIALS,
	  KG_CONNACK_BAD_CREDENTIALS },
	{ "max_ttl_over", USER_DEV1, SAS_P, "dev-1", 3600, "", KG_AUTH_REFUSED,
	  KG_REASON_BAD_CREDENTIALS, KG_CONNACK_BAD_CREDENTIALS },
	{ "max_ttl_within", USER_DEV1, SAS_SHORT, "dev-1", 3600, "", KG_AUTH_OK, KG_REASON_OK,
	  KG_CONNACK_ACCEPTED },
	{ "client_id_other", USER_DEV1, SAS_P, "dev-2", 0, "", KG_AUTH_REFUSED,
	  KG_REASON_CLIENT_ID_MISMATCH, KG_CONNACK_BAD_CLIENT_ID },
	{ "unknown_device", HUB "/dev-2/?api-version=2021-04-12", SAS_OTHER_RES, "dev-2", 0, "",
	  KG_AUTH_REFUSED, KG_REASON_UNKNOWN_DEVICE, KG_CONNACK_NOT_AUTHORIZED },
	{ "basic_device", HUB "/bas-1/?api-version=2021-04-12", SAS_BASICDEV, "bas-1", 0, "",
	  KG_AUTH_REFUSED, KG_REASON_ATTESTATION_MISMATCH, KG_CONNACK_NOT_AUTHORIZED },
	{ "cert_device", HUB "/cert-1/?api-version=2021-04-12", SAS_P, "cert-1", 0, "",
	  KG_AUTH_REFUSED, KG_REASON_ATTESTATION_MISMATCH, KG_CONNACK_NOT_AUTHORIZED },
	{ "garbage_token", USER_DEV1, "SharedAccessSignature sr=x", "dev-1", 0, "", KG_AUTH_REFUSED,
	  KG_REASON_BAD_CREDENTIALS, KG_CONNACK_BAD_CREDENTIALS },
};

START_TEST(test_sas)
{
	const struct sas_case *c = &sas_cases[_i];
	struct kg_auth_conf conf = conf_default();
	struct kg_auth_input in = input(c->user, c->token, c->cid);
	struct kg_auth_result res;
	struct kg_auth_job job;

	conf.sas_max_ttl = c->max_ttl;
	snprintf(conf.sas_hub, sizeof(conf.sas_hub), "%s", c->hub);
	kg_auth_check(&conf, reg, NULL, &in, &res, &job);
	ck_assert_msg(res.kind == KG_AUTH_SAS, "%s: kind %d", c->name, res.kind);
	ck_assert_msg(res.status == c->status && res.reason == c->reason && res.connack == c->connack,
		      "%s: status %d reason %s connack %d (%s)", c->name, res.status,
		      kg_reason_str(res.reason), res.connack, res.why);
	if (c->status == KG_AUTH_OK)
		ck_assert_str_eq(res.device.id, "dev-1");
	/* the id the user name named, for the audit line, even without a row */
	{
		const char *a = strchr(c->user, '/') + 1, *b = strchr(a, '/');

		ck_assert_uint_eq(strlen(res.device.id), (size_t)(b - a));
		ck_assert_mem_eq(res.device.id, a, (size_t)(b - a));
	}
}
END_TEST

/* One byte of the signature changed in each position class: refused, never a crash. */
START_TEST(test_sas_sig_flip)
{
	struct kg_auth_conf conf = conf_default();
	char tok[sizeof(SAS_P)];
	struct kg_auth_result res;
	struct kg_auth_job job;
	char *sig;
	struct kg_auth_input in;

	memcpy(tok, SAS_P, sizeof(tok));
	sig = strstr(tok, "sig=") + 4;
	sig[5] = sig[5] == 'A' ? 'B' : 'A';
	in = input(USER_DEV1, tok, "dev-1");
	kg_auth_check(&conf, reg, NULL, &in, &res, &job);
	ck_assert_int_eq(res.status, KG_AUTH_REFUSED);
	ck_assert_int_eq(res.reason, KG_REASON_BAD_CREDENTIALS);
}
END_TEST

/* ---- token --------------------------------------------------------------------- */

START_TEST(test_token)
{
	struct kg_auth_conf conf = conf_default();
	struct kg_auth_result res;
	struct kg_auth_job job;
	struct kg_auth_input in = input(TOKEN, NULL, "anything");

	kg_auth_check(&conf, reg, NULL, &in, &res, &job);
	ck_assert_int_eq(res.kind, KG_AUTH_TOKEN);
	ck_assert_int_eq(res.status, KG_AUTH_OK);
	ck_assert_str_eq(res.device.id, "tok-1");

	/* an empty password is no password (ThingsBoard clients send one or none) */
	in = input(TOKEN, "", "anything");
	kg_auth_check(&conf, reg, NULL, &in, &res, &job);
	ck_assert_int_eq(res.kind, KG_AUTH_TOKEN);
	ck_assert_int_eq(res.status, KG_AUTH_OK);

	in = input("tb-AbCdEf0123456789xyZ", NULL, "x");     /* one letter's case */
	kg_auth_check(&conf, reg, NULL, &in, &res, &job);
	ck_assert_int_eq(res.kind, KG_AUTH_TOKEN);
	ck_assert_int_eq(res.status, KG_AUTH_REFUSED);
	ck_assert_int_eq(res.reason, KG_REASON_BAD_CREDENTIALS);
	ck_assert_int_eq(res.connack, KG_CONNACK_BAD_CREDENTIALS);
	ck_assert_str_eq(res.device.id, "");

	/* too short to be a token, no password: basic without a password */
	in = input("short", NULL, "x");
	kg_auth_check(&conf, reg, NULL, &in, &res, &job);
	ck_assert_int_eq(res.kind, KG_AUTH_BASIC);
	ck_assert_int_eq(res.reason, KG_REASON_BAD_CREDENTIALS);

	/* no credentials at all */
	in = input(NULL, NULL, "x");
	kg_auth_check(&conf, reg, NULL, &in, &res, &job);
	ck_assert_int_eq(res.status, KG_AUTH_REFUSED);
	ck_assert_int_eq(res.reason, KG_REASON_BAD_CREDENTIALS);
}
END_TEST

/* A token stored on a device that authenticates otherwise: not authorised. */
START_TEST(test_token_wrong_kind)
{
	struct kg_auth_conf conf = conf_default();
	struct kg_auth_result res;
	struct kg_auth_job job;
	struct kg_auth_input in = input(TOKEN, NULL, "x");

	ck_assert_int_eq(kg_registry_cred_clear(reg, "tok-1", KG_ATT_TOKEN, KG_CRED_PRIMARY), 0);
	add_cred("dev-1", KG_ATT_TOKEN, KG_CRED_PRIMARY, "", TOKEN_SHA);
	kg_auth_check(&conf, reg, NULL, &in, &res, &job);
	ck_assert_int_eq(res.status, KG_AUTH_REFUSED);
	ck_assert_int_eq(res.reason, KG_REASON_ATTESTATION_MISMATCH);
	ck_assert_int_eq(res.connack, KG_CONNACK_NOT_AUTHORIZED);
	ck_assert_str_eq(res.device.id, "dev-1");
}
END_TEST

/* ---- basic --------------------------------------------------------------------- */

static struct kg_auth_result basic(const char *user, const char *pw, struct kg_auth_limit *lim)
{
	struct kg_auth_conf conf = conf_default();
	struct kg_auth_input in = input(user, pw, "c1");
	struct kg_auth_result res, fin;
	struct kg_auth_job job;

	kg_auth_check(&conf, reg, lim, &in, &res, &job);
	ck_assert_int_eq(res.kind, KG_AUTH_BASIC);
	if (res.status != KG_AUTH_PENDING)
		return res;
	ck_assert_str_eq(res.device.id, "bas-1");
	ck_assert_uint_eq(job.password_len, strlen(pw));
	kg_auth_job_run(&job, &fin);
	/* the job's password is wiped once it ran */
	ck_assert_uint_eq(job.password_len, 0);
	for (size_t i = 0; i < sizeof(job.password); i++)
		ck_assert_uint_eq(job.password[i], 0);
	return fin;
}

START_TEST(test_basic)
{
	struct kg_auth_result r;

	r = basic("alice", PW1, NULL);
	ck_assert_int_eq(r.status, KG_AUTH_OK);
	ck_assert_int_eq(r.reason, KG_REASON_OK);
	ck_assert_str_eq(r.device.id, "bas-1");
	r = basic("alice", PW2, NULL);            /* the secondary slot's password */
	ck_assert_int_eq(r.status, KG_AUTH_OK);
	r = basic("alice", "correct horse batterY", NULL);
	ck_assert_int_eq(r.status, KG_AUTH_REFUSED);
	ck_assert_int_eq(r.reason, KG_REASON_BAD_CREDENTIALS);
	ck_assert_int_eq(r.connack, KG_CONNACK_BAD_CREDENTIALS);
	ck_assert_str_eq(r.device.id, "bas-1");
	r = basic("mallory", PW1, NULL);          /* no such user: refused at once */
	ck_assert_int_eq(r.status, KG_AUTH_REFUSED);
	ck_assert_int_eq(r.reason, KG_REASON_BAD_CREDENTIALS);
	ck_assert_str_eq(r.device.id, "");
}
END_TEST

/* The CLI's default cost (ln=15, r=8): needs more than OpenSSL's default maxmem, so it
 * verifies only with kg_scrypt_mem() passed on. */
START_TEST(test_basic_default_cost)
{
	struct kg_auth_job j;
	struct kg_auth_result r;

	memset(&j, 0, sizeof(j));
	snprintf(j.device.id, sizeof(j.device.id), "bas-1");
	snprintf(j.hashes[0], sizeof(j.hashes[0]), "%s", PHC_DEFAULT);
	j.n_hashes = 1;
	memcpy(j.password, PW_DEFAULT, strlen(PW_DEFAULT));
	j.password_len = strlen(PW_DEFAULT);
	kg_auth_job_run(&j, &r);
	ck_assert_int_eq(r.status, KG_AUTH_OK);
	memcpy(j.password, "default-cost-pW", 15);
	j.password_len = 15;
	kg_auth_job_run(&j, &r);
	ck_assert_int_eq(r.status, KG_AUTH_REFUSED);
	ck_assert_int_eq(r.reason, KG_REASON_BAD_CREDENTIALS);
}
END_TEST

/* A Azure-looking user name with a non-SAS password is basic; a basic device cannot
 * be reached with a SAS token even if its key would verify (test_sas basic_device). */
START_TEST(test_x509_only)
{
	struct kg_auth_conf conf = conf_default();
	struct kg_auth_result res;
	struct kg_auth_job job;
	struct kg_auth_input in = input(USER_DEV1, SAS_P, "dev-1");

	conf.x509_only = true;
	kg_auth_check(&conf, reg, NULL, &in, &res, &job);
	ck_assert_int_eq(res.status, KG_AUTH_REFUSED);
	ck_assert_int_eq(res.reason, KG_REASON_X509_REQUIRED);
	ck_assert_int_eq(res.connack, KG_CONNACK_NOT_AUTHORIZED);
	conf.x509_only = false;
	in.x509_only = true;                      /* the listener's own switch */
	kg_auth_check(&conf, reg, NULL, &in, &res, &job);
	ck_assert_int_eq(res.reason, KG_REASON_X509_REQUIRED);
	in.x509_only = false;
	kg_auth_check(&conf, reg, NULL, &in, &res, &job);
	ck_assert_int_eq(res.status, KG_AUTH_OK);
}
END_TEST

/* ---- limiter ------------------------------------------------------------------- */

START_TEST(test_limit_bucket)
{
	struct kg_auth_limit *l = kg_auth_limit_new(3, 1000, 64);
	struct kg_auth_limit_stats st;

	ck_assert_ptr_nonnull(l);
	ck_assert(kg_auth_limit_take(l, KG_LIMIT_DEVICE, "d", 10000));
	ck_assert(kg_auth_limit_take(l, KG_LIMIT_DEVICE, "d", 10000));
	ck_assert(kg_auth_limit_take(l, KG_LIMIT_DEVICE, "d", 10000));
	ck_assert(!kg_auth_limit_take(l, KG_LIMIT_DEVICE, "d", 10000));
	ck_assert(!kg_auth_limit_peek(l, KG_LIMIT_DEVICE, "d", 10999));
	/* another key, and the same text in the other scope, have their own buckets */
	ck_assert(kg_auth_limit_take(l, KG_LIMIT_DEVICE, "e", 10000));
	ck_assert(kg_auth_limit_take(l, KG_LIMIT_SOURCE, "d", 10000));
	/* one refill later exactly one more */
	ck_assert(kg_auth_limit_peek(l, KG_LIMIT_DEVICE, "d", 11000));
	ck_assert(kg_auth_limit_take(l, KG_LIMIT_DEVICE, "d", 11000));
	ck_assert(!kg_auth_limit_take(l, KG_LIMIT_DEVICE, "d", 11000));
	/* three refills: full again, three more */
	for (int i = 0; i < 3; i++)
		ck_assert(kg_auth_limit_take(l, KG_LIMIT_DEVICE, "d", 14000));
	ck_assert(!kg_auth_limit_take(l, KG_LIMIT_DEVICE, "d", 14000));
	/* a refund gives one back; forgive fills it */
	kg_auth_limit_refund(l, KG_LIMIT_DEVICE, "d");
	ck_assert(kg_auth_limit_take(l, KG_LIMIT_DEVICE, "d", 14000));
	ck_assert(!kg_auth_limit_take(l, KG_LIMIT_DEVICE, "d", 14000));
	kg_auth_limit_forgive(l, KG_LIMIT_DEVICE, "d");
	for (int i = 0; i < 3; i++)
		ck_assert(kg_auth_limit_take(l, KG_LIMIT_DEVICE, "d", 14000));
	kg_auth_limit_stats(l, &st);
	ck_assert_uint_eq(st.limited, 5);
	kg_auth_limit_free(l);
}
END_TEST

/* Workers and pool threads share one limiter: under contention the bucket still
 * hands out exactly its burst. */
struct hammer {
	struct kg_auth_limit *l;
	atomic_uint won;
};

static void *hammer_main(void *arg)
{
	struct hammer *h = arg;

	for (int i = 0; i < 2000; i++)
		if (kg_auth_limit_take(h->l, KG_LIMIT_DEVICE, "shared", 5000))
			atomic_fetch_add(&h->won, 1);
	return NULL;
}

START_TEST(test_limit_threads)
{
	struct hammer h = { .l = kg_auth_limit_new(100, 1000000, 64) };
	pthread_t t[4];

	atomic_init(&h.won, 0);
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, hammer_main, &h), 0);
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	ck_assert_uint_eq(atomic_load(&h.won), 100);
	kg_auth_limit_free(h.l);
}
END_TEST

/* The table stays within its slots whatever the number of keys; evictions counted. */
START_TEST(test_limit_bounded)
{
	struct kg_auth_limit *l = kg_auth_limit_new(2, 60000, 64);
	struct kg_auth_limit_stats st;
	char key[32];

	for (int i = 0; i < 5000; i++) {
		snprintf(key, sizeof(key), "dev-%d", i);
		ck_assert(kg_auth_limit_take(l, KG_LIMIT_DEVICE, key, 1000));
	}
	kg_auth_limit_stats(l, &st);
	ck_assert_uint_eq(st.entries, 64);
	ck_assert_uint_eq(st.evictions, 5000 - 64);
	/* a minute later every bucket is full again: new keys (8: at most a set's worth in
	 * one set) take those slots and evict nothing */
	for (int i = 0; i < 8; i++) {
		snprintf(key, sizeof(key), "later-%d", i);
		ck_assert(kg_auth_limit_take(l, KG_LIMIT_DEVICE, key, 1000 + 60000));
	}
	kg_auth_limit_stats(l, &st);
	ck_assert_uint_eq(st.evictions, 5000 - 64);
	ck_assert_uint_le(st.entries, 64);
	kg_auth_limit_free(l);
}
END_TEST

/* Through the check: burst failures for one device, then even the right token is
 * refused unchecked; a refill lets it in and the success forgives the rest. */
START_TEST(test_limit_device)
{
	struct kg_auth_conf conf = conf_default();
	struct kg_auth_limit *l = kg_auth_limit_new(3, 1000, 64);
	struct kg_auth_result res;
	struct kg_auth_job job;
	struct kg_auth_input bad = input(USER_DEV1, SAS_WRONG_KEY, "dev-1");
	struct kg_auth_input good = input(USER_DEV1, SAS_P, "dev-1");
	struct kg_auth_limit_stats st;

	for (int i = 0; i < 3; i++) {
		kg_auth_check(&conf, reg, l, &bad, &res, &job);
		ck_assert_int_eq(res.reason, KG_REASON_BAD_CREDENTIALS);
	}
	kg_auth_check(&conf, reg, l, &good, &res, &job);
	ck_assert_int_eq(res.status, KG_AUTH_REFUSED);
	ck_assert_int_eq(res.reason, KG_REASON_AUTH_RATE_LIMITED);
	ck_assert_int_eq(res.connack, KG_CONNACK_NOT_AUTHORIZED);
	/* basic too: refused before any scrypt (no job) */
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(basic("alice", "wrong-password", l).reason, KG_REASON_BAD_CREDENTIALS);
	ck_assert_int_eq(basic("alice", PW1, l).reason, KG_REASON_AUTH_RATE_LIMITED);
	good.now_ms = bad.now_ms + 1000;
	kg_auth_check(&conf, reg, l, &good, &res, &job);
	ck_assert_int_eq(res.status, KG_AUTH_OK);
	for (int i = 0; i < 3; i++) {
		bad.now_ms = good.now_ms;
		kg_auth_check(&conf, reg, l, &bad, &res, &job);
		ck_assert_int_eq(res.reason, KG_REASON_BAD_CREDENTIALS);
	}
	kg_auth_limit_stats(l, &st);
	ck_assert_uint_eq(st.limited, 2);
	kg_auth_limit_free(l);
}
END_TEST

/* Misses that name no device are limited per source key; another source is not. */
START_TEST(test_limit_source)
{
	struct kg_auth_conf conf = conf_default();
	struct kg_auth_limit *l = kg_auth_limit_new(2, 1000, 64);
	struct kg_auth_result res;
	struct kg_auth_job job;
	struct kg_auth_input in = input("tb-guess-00000000", NULL, "x");

	in.source_key = "192.0.2.0/24";
	for (int i = 0; i < 2; i++) {
		kg_auth_check(&conf, reg, l, &in, &res, &job);
		ck_assert_int_eq(res.reason, KG_REASON_BAD_CREDENTIALS);
	}
	/* the right token from that source is not even looked at */
	in = input(TOKEN, NULL, "x");
	in.source_key = "192.0.2.0/24";
	kg_auth_check(&conf, reg, l, &in, &res, &job);
	ck_assert_int_eq(res.reason, KG_REASON_AUTH_RATE_LIMITED);
	in.source_key = "198.51.100.0/24";
	kg_auth_check(&conf, reg, l, &in, &res, &job);
	ck_assert_int_eq(res.status, KG_AUTH_OK);
	in.source_key = "192.0.2.0/24";
	in.now_ms += 1000;
	kg_auth_check(&conf, reg, l, &in, &res, &job);
	ck_assert_int_eq(res.status, KG_AUTH_OK);
	kg_auth_limit_free(l);
}
END_TEST

/* ---- pool ---------------------------------------------------------------------- */

static struct kg_auth_job mkjob(const char *phc, const char *pw)
{
	struct kg_auth_job j;

	memset(&j, 0, sizeof(j));
	snprintf(j.device.id, sizeof(j.device.id), "bas-1");
	snprintf(j.hashes[0], sizeof(j.hashes[0]), "%s", phc);
	j.n_hashes = 1;
	memcpy(j.password, pw, strlen(pw));
	j.password_len = strlen(pw);
	return j;
}

/* Wait for the worker's eventfd, then pop; returns how many were popped. */
static size_t wait_pop(struct kg_auth_pool *p, unsigned w, struct kg_auth_done *out, size_t max,
		       int timeout_ms)
{
	struct pollfd pfd = { .fd = kg_auth_pool_fd(p, w), .events = POLLIN };

	if (poll(&pfd, 1, timeout_ms) != 1)
		return 0;
	return kg_auth_pool_pop(p, w, out, max);
}

START_TEST(test_pool_jobs)
{
	struct kg_auth_pool *p = NULL;
	struct kg_auth_done done[16];
	struct kg_auth_pool_stats st;
	bool seen[20] = { false };
	size_t got = 0;

	ck_assert_int_eq(kg_auth_pool_new(2, 32, 2, &p), 0);
	for (unsigned i = 0; i < 20; i++) {
		struct kg_auth_job j = mkjob(PHC1, i % 2 ? PW1 : "not-the-password");

		ck_assert_int_eq(kg_auth_pool_submit(p, i % 2, 100 + i, &j), 0);
		ck_assert_uint_eq(j.password_len, 0);     /* the caller's copy is wiped */
	}
	for (int spins = 0; got < 20 && spins < 200; spins++) {
		for (unsigned w = 0; w < 2; w++) {
			size_t n = wait_pop(p, w, done, 16, 50);

			for (size_t k = 0; k < n; k++) {
				unsigned i = (unsigned)(done[k].tag - 100);

				ck_assert_uint_lt(i, 20);
				ck_assert(!seen[i]);
				ck_assert_uint_eq(i % 2, w);      /* back to the worker that sent it */
				seen[i] = true;
				ck_assert_int_eq(done[k].res.status, i % 2 ? KG_AUTH_OK : KG_AUTH_REFUSED);
				ck_assert_str_eq(done[k].res.device.id, "bas-1");
				ck_assert_uint_gt(done[k].kdf_ns, 0);
			}
			got += n;
		}
	}
	ck_assert_uint_eq(got, 20);
	/* drained: the eventfds are no longer readable */
	for (unsigned w = 0; w < 2; w++) {
		struct pollfd pfd = { .fd = kg_auth_pool_fd(p, w), .events = POLLIN };

		ck_assert_int_eq(poll(&pfd, 1, 0), 0);
	}
	kg_auth_pool_stats(p, &st);
	ck_assert_uint_eq(st.submitted, 20);
	ck_assert_uint_eq(st.completed, 20);
	ck_assert_uint_eq(st.queued, 0);
	ck_assert_uint_gt(st.kdf_ns, 0);
	kg_auth_pool_free(p);
}
END_TEST

/* One thread, a queue of 2: of 10 jobs sent at once, those beyond the bound are
 * refused, and every queued one still completes. */
START_TEST(test_pool_full)
{
	struct kg_auth_pool *p = NULL;
	struct kg_auth_done done[16];
	struct kg_auth_pool_stats st;
	unsigned queued = 0, full = 0;
	size_t got = 0;

	ck_assert_int_eq(kg_auth_pool_new(1, 2, 1, &p), 0);
	for (unsigned i = 0; i < 10; i++) {
		struct kg_auth_job j = mkjob(PHC_SLOW, PW_SLOW);
		int rc = kg_auth_pool_submit(p, 0, i, &j);

		ck_assert(rc == 0 || rc == KG_E_BUSY);
		ck_assert_uint_eq(j.password_len, 0);     /* wiped either way */
		if (rc == 0)
			queued++;
		else
			full++;
	}
	/* at most one running and two waiting while we submitted in microseconds */
	ck_assert_uint_le(queued, 3);
	ck_assert_uint_eq(queued + full, 10);
	kg_auth_pool_stats(p, &st);
	ck_assert_uint_eq(st.rejected, full);
	for (int spins = 0; got < queued && spins < 100; spins++)
		got += wait_pop(p, 0, done + got, 16 - got, 100);
	ck_assert_uint_eq(got, queued);
	for (size_t k = 0; k < got; k++)
		ck_assert_int_eq(done[k].res.status, KG_AUTH_OK);
	kg_auth_pool_free(p);
}
END_TEST

/* Cancelled jobs, waiting or running, never reach the worker; the next one does. */
START_TEST(test_pool_cancel)
{
	struct kg_auth_pool *p = NULL;
	struct kg_auth_done done[4];
	struct kg_auth_pool_stats st;
	struct kg_auth_job a = mkjob(PHC_SLOW, PW_SLOW), b = mkjob(PHC_SLOW, PW_SLOW), c;

	ck_assert_int_eq(kg_auth_pool_new(1, 4, 1, &p), 0);
	ck_assert_int_eq(kg_auth_pool_submit(p, 0, 1, &a), 0);
	ck_assert_int_eq(kg_auth_pool_submit(p, 0, 2, &b), 0);
	for (int i = 0; i < 5000; i++) {          /* until job 1 is on the thread */
		kg_auth_pool_stats(p, &st);
		if (st.running == 1)
			break;
		usleep(1000);
	}
	ck_assert_uint_eq(st.running, 1);
	ck_assert_int_eq(kg_auth_pool_cancel(p, 0, 2), 1);   /* waiting */
	ck_assert_int_eq(kg_auth_pool_cancel(p, 0, 1), 1);   /* running */
	ck_assert_int_eq(kg_auth_pool_cancel(p, 0, 7), 0);   /* unknown */
	c = mkjob(PHC1, PW1);
	ck_assert_int_eq(kg_auth_pool_submit(p, 0, 3, &c), 0);
	ck_assert_uint_eq(wait_pop(p, 0, done, 4, 10000), 1);
	ck_assert_uint_eq(done[0].tag, 3);
	ck_assert_int_eq(done[0].res.status, KG_AUTH_OK);
	kg_auth_pool_stats(p, &st);
	ck_assert_uint_eq(st.cancelled, 2);
	ck_assert_uint_eq(st.completed, 1);
	kg_auth_pool_free(p);
}
END_TEST

/* Many jobs from three workers, every third cancelled at some point of its life
 * (waiting, running or finished): each other one arrives once, at its own worker, and
 * no cancelled one ever does. Under ASan this is also the pool's leak and race check. */
START_TEST(test_pool_stress)
{
	enum { JOBS = 150, WORKERS = 3 };
	struct kg_auth_pool *p = NULL;
	struct kg_auth_done done[JOBS];
	struct kg_auth_pool_stats st;
	int seen[JOBS] = { 0 };
	size_t got = 0, want = 0;

	ck_assert_int_eq(kg_auth_pool_new(2, JOBS, WORKERS, &p), 0);
	for (unsigned i = 0; i < JOBS; i++) {
		struct kg_auth_job j = mkjob(PHC1, PW1);

		ck_assert_int_eq(kg_auth_pool_submit(p, i % WORKERS, i, &j), 0);
		if (i >= 3 && (i - 3) % 3 == 0)   /* cancel an earlier one, wherever it is */
			ck_assert_int_eq(kg_auth_pool_cancel(p, (i - 3) % WORKERS, i - 3), 1);
	}
	for (unsigned i = 0; i < JOBS; i++)
		want += !(i + 3 < JOBS && i % 3 == 0);
	for (int spins = 0; got < want && spins < 400; spins++)
		for (unsigned w = 0; w < WORKERS; w++) {
			size_t n = wait_pop(p, w, done, JOBS, 20);

			for (size_t k = 0; k < n; k++) {
				ck_assert_uint_lt(done[k].tag, JOBS);
				ck_assert_uint_eq(done[k].tag % WORKERS, w);
				ck_assert_msg(!(done[k].tag + 3 < JOBS && done[k].tag % 3 == 0),
					      "cancelled job %u delivered", (unsigned)done[k].tag);
				ck_assert_int_eq(seen[done[k].tag]++, 0);
				ck_assert_int_eq(done[k].res.status, KG_AUTH_OK);
			}
			got += n;
		}
	ck_assert_uint_eq(got, want);
	for (int i = 0; i < 2000; i++) {          /* running cancelled ones end too */
		kg_auth_pool_stats(p, &st);
		if (st.running == 0)
			break;
		usleep(1000);
	}
	ck_assert_uint_eq(st.cancelled, JOBS - want);
	ck_assert_uint_eq(st.completed, want);
	kg_auth_pool_free(p);
}
END_TEST

/* ---- [auth] -------------------------------------------------------------------- */

START_TEST(test_conf)
{
	struct kg_auth_conf c;
	char why[256];

	kg_auth_conf_defaults(&c);
	ck_assert(!c.present);
	ck_assert_uint_eq(c.kdf_threads, 1);
	ck_assert_uint_eq(c.kdf_queue, 64);
	ck_assert_uint_eq(c.failure_burst, 10);
	ck_assert_uint_eq(c.failure_refill_ms, 6000);
	ck_assert_uint_eq(c.failure_track, 4096);
	ck_assert_uint_eq(c.sas_max_ttl, 0);
	ck_assert_str_eq(c.sas_hub, "");
	ck_assert(!c.x509_only);
	ck_assert_int_eq(kg_auth_conf_set(&c, "sas_hub", "Hub-1.azure-devices.net", NULL, why, sizeof(why)), 0);
	ck_assert_str_eq(c.sas_hub, "Hub-1.azure-devices.net");
	ck_assert_int_eq(kg_auth_conf_set(&c, "sas_max_ttl", "86400", NULL, why, sizeof(why)), 0);
	ck_assert_uint_eq(c.sas_max_ttl, 86400);
	ck_assert_int_eq(kg_auth_conf_set(&c, "kdf_threads", "2", NULL, why, sizeof(why)), 0);
	ck_assert_int_eq(kg_auth_conf_set(&c, "x509_only", "yes", NULL, why, sizeof(why)), 0);
	ck_assert(c.x509_only && c.present);
	ck_assert_int_eq(kg_auth_conf_set(&c, "kdf_threads", "0", NULL, why, sizeof(why)), -1);
	ck_assert_str_eq(why, "[auth] kdf_threads: '0' is not an integer in 1..64");
	ck_assert_int_eq(kg_auth_conf_set(&c, "kdf_queue", "-1", NULL, why, sizeof(why)), -1);
	ck_assert_int_eq(kg_auth_conf_set(&c, "failure_burst", "1x", NULL, why, sizeof(why)), -1);
	ck_assert_int_eq(kg_auth_conf_set(&c, "sas_hub", "hub/x", NULL, why, sizeof(why)), -1);
	ck_assert_int_eq(kg_auth_conf_set(&c, "x509_only", "maybe", NULL, why, sizeof(why)), -1);
	ck_assert_int_eq(kg_auth_conf_set(&c, "nope", "1", NULL, why, sizeof(why)), -1);
	ck_assert_str_eq(why, "unknown key 'nope' in [auth]");
	ck_assert_int_eq(kg_auth_conf_validate(&c, NULL, why, sizeof(why)), 0);
}
END_TEST

Suite *kg_suite_auth(void)
{
	Suite *s = suite_create("auth");
	TCase *tc = tcase_create("check");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_loop_test(tc, test_sas, 0, (int)(sizeof(sas_cases) / sizeof(sas_cases[0])));
	tcase_add_test(tc, test_sas_sig_flip);
	tcase_add_test(tc, test_token);
	tcase_add_test(tc, test_token_wrong_kind);
	tcase_add_test(tc, test_basic);
	tcase_add_test(tc, test_basic_default_cost);
	tcase_add_test(tc, test_x509_only);
	tcase_add_test(tc, test_limit_device);
	tcase_add_test(tc, test_limit_source);
	suite_add_tcase(s, tc);

	tc = tcase_create("limit");
	tcase_add_test(tc, test_limit_bucket);
	tcase_add_test(tc, test_limit_bounded);
	tcase_add_test(tc, test_limit_threads);
	suite_add_tcase(s, tc);

	tc = tcase_create("pool");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_pool_jobs);
	tcase_add_test(tc, test_pool_full);
	tcase_add_test(tc, test_pool_cancel);
	tcase_add_test(tc, test_pool_stress);
	tcase_add_test(tc, test_conf);
	suite_add_tcase(s, tc);
	return s;
}
