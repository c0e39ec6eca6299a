/* SPDX-License-Identifier: BSD-2-Clause */
/* check_regcache.c - units of the hot-path view of a shared registry
 * (registry/registry_cache.h): bound and LRU eviction, negative entries, invalidation,
 * the generation race, the resync flush, key -> device entries, the down state. */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "registry/registry_cache.h"
#include "testlib.h"

static struct kg_device dev(const char *id)
{
	struct kg_device d;

	memset(&d, 0, sizeof(d));
	snprintf(d.id, sizeof(d.id), "%s", id);
	d.status = KG_DEV_ENABLED;
	d.attestation = KG_ATT_CA;
	return d;
}

static const char T1[] = "1111111111111111111111111111111111111111111111111111111111111111";
static const char T2[] = "2222222222222222222222222222222222222222222222222222222222222222";

START_TEST(hit_miss_and_negative)
{
	struct kg_regcache *c = kg_regcache_new(8, false, 600);
	struct kg_device d = dev("a"), out;
	struct kg_regcache_stats st;

	ck_assert_ptr_nonnull(c);
	ck_assert_int_eq(kg_regcache_device(c, "a", &out), KG_RC_MISS);
	kg_regcache_put_device(c, kg_regcache_gen(c), "a", &d);
	kg_regcache_put_device(c, kg_regcache_gen(c), "ghost", NULL);
	memset(&out, 0, sizeof(out));
	ck_assert_int_eq(kg_regcache_device(c, "a", &out), KG_RC_FOUND);
	ck_assert_str_eq(out.id, "a");
	ck_assert_int_eq(kg_regcache_device(c, "ghost", &out), KG_RC_NONE);
	kg_regcache_stats(c, &st);
	ck_assert_uint_eq(st.hits, 2);
	ck_assert_uint_eq(st.misses, 1);
	ck_assert_uint_eq(st.size, 2);
	/* an unseen device that is then added: its change drops the negative entry */
	kg_regcache_drop_device(c, "ghost");
	ck_assert_int_eq(kg_regcache_device(c, "ghost", &out), KG_RC_MISS);
	kg_regcache_free(c);
}
END_TEST

START_TEST(bound_and_lru_eviction)
{
	struct kg_regcache *c = kg_regcache_new(3, false, 600);
	struct kg_device out;
	struct kg_regcache_stats st;
	const char *ids[] = { "a", "b", "c" };

	for (int i = 0; i < 3; i++) {
		struct kg_device d = dev(ids[i]);

		kg_regcache_put_device(c, kg_regcache_gen(c), ids[i], &d);
	}
	/* a is used: b is now the least recent and goes first */
	ck_assert_int_eq(kg_regcache_device(c, "a", &out), KG_RC_FOUND);
	{
		struct kg_device d = dev("d");

		kg_regcache_put_device(c, kg_regcache_gen(c), "d", &d);
	}
	kg_regcache_stats(c, &st);
	ck_assert_uint_eq(st.size, 3);
	ck_assert_uint_eq(st.evictions, 1);
	ck_assert_int_eq(kg_regcache_device(c, "b", &out), KG_RC_MISS);
	ck_assert_int_eq(kg_regcache_device(c, "a", &out), KG_RC_FOUND);
	ck_assert_int_eq(kg_regcache_device(c, "c", &out), KG_RC_FOUND);
	ck_assert_int_eq(kg_regcache_device(c, "d", &out), KG_RC_FOUND);
	/* negative entries count against the same bound */
	for (int i = 0; i < 100; i++) {
		char id[16];

		snprintf(id, sizeof(id), "n%d", i);
		kg_regcache_put_device(c, kg_regcache_gen(c), id, NULL);
	}
	kg_regcache_stats(c, &st);
	ck_assert_uint_eq(st.size, 3);
	ck_assert_uint_eq(st.evictions, 101);
	kg_regcache_free(c);
}
END_TEST

START_TEST(generation_race)
{
	struct kg_regcache *c = kg_regcache_new(8, false, 600);
	struct kg_device d = dev("a"), out;
	uint64_t g;

	/* a worker starts a store read ... */
	g = kg_regcache_gen(c);
	/* ... the watcher hears that the device changed ... */
	kg_regcache_drop_device(c, "a");
	/* ... and the (stale) row the worker read must not come back */
	kg_regcache_put_device(c, g, "a", &d);
	ck_assert_int_eq(kg_regcache_device(c, "a", &out), KG_RC_MISS);
	kg_regcache_put_thumb(c, g, T1, NULL);
	ck_assert_int_eq(kg_regcache_thumb(c, T1, &out), KG_RC_MISS);
	kg_regcache_put_cred_find(c, g, KG_ATT_TOKEN, T1, "a");
	{
		char id[KG_DEVICE_ID_MAX + 1];

		ck_assert_int_eq(kg_regcache_cred_find(c, KG_ATT_TOKEN, T1, id), KG_RC_MISS);
	}
	/* a read started after the change is stored */
	kg_regcache_put_device(c, kg_regcache_gen(c), "a", &d);
	ck_assert_int_eq(kg_regcache_device(c, "a", &out), KG_RC_FOUND);
	kg_regcache_free(c);
}
END_TEST

START_TEST(thumbprint_follows_the_device)
{
	struct kg_regcache *c = kg_regcache_new(8, false, 600);
	struct kg_device d = dev("pinned"), out;

	d.attestation = KG_ATT_THUMBPRINT;
	memcpy(d.thumb_primary, T1, sizeof(T1));
	kg_regcache_put_thumb(c, kg_regcache_gen(c), T1, &d);
	kg_regcache_put_thumb(c, kg_regcache_gen(c), T2, NULL);
	memset(&out, 0, sizeof(out));
	ck_assert_int_eq(kg_regcache_thumb(c, T1, &out), KG_RC_FOUND);
	ck_assert_str_eq(out.id, "pinned");
	ck_assert_int_eq(kg_regcache_device(c, "pinned", &out), KG_RC_FOUND);
	ck_assert_int_eq(kg_regcache_thumb(c, T2, &out), KG_RC_NONE);
	/* any device change: T2 may be someone's now, and pinned's T1 may be gone */
	kg_regcache_drop_device(c, "pinned");
	ck_assert_int_eq(kg_regcache_thumb(c, T1, &out), KG_RC_MISS);
	ck_assert_int_eq(kg_regcache_thumb(c, T2, &out), KG_RC_MISS);
	/* a row that no longer holds the thumbprint does not answer for it */
	d.thumb_primary[0] = '\0';
	memcpy(d.thumb_primary, T2, sizeof(T2));
	kg_regcache_put_thumb(c, kg_regcache_gen(c), T1, &d);  /* as if read before a rotation */
	ck_assert_int_eq(kg_regcache_thumb(c, T1, &out), KG_RC_MISS);
	kg_regcache_free(c);
}
END_TEST

START_TEST(credentials)
{
	struct kg_regcache *c = kg_regcache_new(8, false, 600);
	struct kg_device d = dev("tok"), out;
	struct kg_credential cr[KG_CRED_PER_DEVICE], got[KG_CRED_PER_DEVICE];
	char id[KG_DEVICE_ID_MAX + 1];
	size_t n = 99;

	memset(cr, 0, sizeof(cr));
	d.attestation = KG_ATT_TOKEN;
	cr[0].kind = KG_ATT_TOKEN;
	memcpy(cr[0].secret, T1, sizeof(T1));
	/* creds without a cached row are not kept */
	kg_regcache_put_creds(c, kg_regcache_gen(c), "tok", cr, 1);
	ck_assert_int_eq(kg_regcache_creds(c, "tok", got, &n), KG_RC_MISS);
	kg_regcache_put_cred_find(c, kg_regcache_gen(c), KG_ATT_TOKEN, T1, "tok");
	kg_regcache_put_device(c, kg_regcache_gen(c), "tok", &d);
	/* the key -> device entry answers only once the device's creds hold the key */
	ck_assert_int_eq(kg_regcache_cred_find(c, KG_ATT_TOKEN, T1, id), KG_RC_MISS);
	kg_regcache_put_cred_find(c, kg_regcache_gen(c), KG_ATT_TOKEN, T1, "tok");
	kg_regcache_put_creds(c, kg_regcache_gen(c), "tok", cr, 1);
	ck_assert_int_eq(kg_regcache_cred_find(c, KG_ATT_TOKEN, T1, id), KG_RC_FOUND);
	ck_assert_str_eq(id, "tok");
	ck_assert_int_eq(kg_regcache_creds(c, "tok", got, &n), KG_RC_FOUND);
	ck_assert_uint_eq(n, 1);
	ck_assert_str_eq(got[0].secret, T1);
	/* the same row stored again keeps them; another row (or none) drops them */
	kg_regcache_put_device(c, kg_regcache_gen(c), "tok", &d);
	ck_assert_int_eq(kg_regcache_creds(c, "tok", got, &n), KG_RC_FOUND);
	d.status = KG_DEV_DISABLED;
	kg_regcache_put_device(c, kg_regcache_gen(c), "tok", &d);
	ck_assert_int_eq(kg_regcache_creds(c, "tok", got, &n), KG_RC_MISS);
	kg_regcache_put_device(c, kg_regcache_gen(c), "tok", NULL);
	d.status = KG_DEV_ENABLED;
	kg_regcache_put_device(c, kg_regcache_gen(c), "tok", &d);
	ck_assert_int_eq(kg_regcache_creds(c, "tok", got, &n), KG_RC_MISS);
	kg_regcache_put_creds(c, kg_regcache_gen(c), "tok", cr, 1);
	kg_regcache_put_cred_find(c, kg_regcache_gen(c), KG_ATT_BASIC, "nobody", NULL);
	ck_assert_int_eq(kg_regcache_cred_find(c, KG_ATT_BASIC, "nobody", id), KG_RC_NONE);
	kg_regcache_drop_device(c, "tok");
	ck_assert_int_eq(kg_regcache_cred_find(c, KG_ATT_TOKEN, T1, id), KG_RC_MISS);
	ck_assert_int_eq(kg_regcache_cred_find(c, KG_ATT_BASIC, "nobody", id), KG_RC_MISS);
	ck_assert_int_eq(kg_regcache_creds(c, "tok", got, &n), KG_RC_MISS);
	ck_assert_int_eq(kg_regcache_device(c, "tok", &out), KG_RC_MISS);
	kg_regcache_free(c);
}
END_TEST

START_TEST(resync_flushes_everything)
{
	struct kg_regcache *c = kg_regcache_new(64, false, 600);
	struct kg_device out;
	struct kg_regcache_stats st;
	uint64_t g;

	for (int i = 0; i < 20; i++) {
		char id[16];
		struct kg_device d;

		snprintf(id, sizeof(id), "d%d", i);
		d = dev(id);
		kg_regcache_put_device(c, kg_regcache_gen(c), id, i % 2 ? &d : NULL);
	}
	g = kg_regcache_gen(c);
	kg_regcache_drop_all(c);
	kg_regcache_stats(c, &st);
	ck_assert_uint_eq(st.size, 0);
	for (int i = 0; i < 20; i++) {
		char id[16];

		snprintf(id, sizeof(id), "d%d", i);
		ck_assert_int_eq(kg_regcache_device(c, id, &out), KG_RC_MISS);
	}
	{
		struct kg_device d = dev("d1");

		kg_regcache_put_device(c, g, "d1", &d);   /* read before the resync */
	}
	ck_assert_int_eq(kg_regcache_device(c, "d1", &out), KG_RC_MISS);
	kg_regcache_free(c);
}
END_TEST

START_TEST(down_state_and_fail_open_memory)
{
	struct kg_regcache *c = kg_regcache_new(8, true, 600);
	struct kg_device d = dev("seen"), e = dev("off"), out;
	struct kg_regcache_stats st;

	ck_assert(kg_regcache_up(c));
	ck_assert(!kg_regcache_stale(c));
	kg_regcache_read_ok(c, false);
	ck_assert(!kg_regcache_up(c));
	ck_assert(!kg_regcache_stale(c));        /* the watcher still hears changes */
	kg_regcache_read_ok(c, true);
	ck_assert(kg_regcache_up(c));
	kg_regcache_watch_up(c, false);
	ck_assert(!kg_regcache_up(c));
	ck_assert(kg_regcache_stale(c));
	kg_regcache_watch_up(c, true);
	ck_assert(kg_regcache_up(c));

	e.status = KG_DEV_DISABLED;
	kg_regcache_put_device(c, kg_regcache_gen(c), "seen", &d);
	kg_regcache_put_device(c, kg_regcache_gen(c), "off", &e);
	ck_assert(!kg_regcache_recent(c, "seen", 1000, &out));   /* cached, never admitted */
	kg_regcache_admitted(c, "seen", 1000);
	kg_regcache_admitted(c, "off", 1000);
	ck_assert(kg_regcache_recent(c, "seen", 1000 + 600, &out));
	ck_assert_str_eq(out.id, "seen");
	ck_assert(!kg_regcache_recent(c, "seen", 1000 + 601, &out));  /* too long ago */
	ck_assert(!kg_regcache_recent(c, "off", 1000, &out));          /* not enabled */
	ck_assert(!kg_regcache_recent(c, "never", 1000, &out));
	kg_regcache_count_refusal(c);
	kg_regcache_count_failopen(c);
	kg_regcache_stats(c, &st);
	ck_assert_uint_eq(st.refusals, 1);
	ck_assert_uint_eq(st.failopen_admits, 1);
	ck_assert(st.up);
	kg_regcache_free(c);
}
END_TEST

/* Workers read and store while the watcher drops: no lost entry, no crash (run under
 * ASan too), and the bound holds throughout. */
struct race { struct kg_regcache *c; int seed; };

static void *reader(void *arg)
{
	struct race *r = arg;
	struct kg_device out;

	for (int i = 0; i < 20000; i++) {
		char id[16];
		struct kg_device d;

		snprintf(id, sizeof(id), "d%d", (i * 7 + r->seed) % 50);
		d = dev(id);
		if (kg_regcache_device(r->c, id, &out) == KG_RC_MISS) {
			uint64_t g = kg_regcache_gen(r->c);

			kg_regcache_put_device(r->c, g, id, i % 3 ? &d : NULL);
		} else if (kg_regcache_device(r->c, id, &out) == KG_RC_FOUND) {
			ck_assert_str_eq(out.id, id);
		}
		kg_regcache_put_thumb(r->c, kg_regcache_gen(r->c), T1, NULL);
	}
	return NULL;
}

static void *dropper(void *arg)
{
	struct race *r = arg;

	for (int i = 0; i < 5000; i++) {
		char id[16];

		snprintf(id, sizeof(id), "d%d", i % 50);
		if (i % 100 == 99)
			kg_regcache_drop_all(r->c);
		else
			kg_regcache_drop_device(r->c, id);
	}
	return NULL;
}

START_TEST(threads)
{
	struct kg_regcache *c = kg_regcache_new(32, false, 600);
	struct race r[3] = { { c, 1 }, { c, 2 }, { c, 3 } };
	pthread_t t[3];
	struct kg_regcache_stats st;

	ck_assert_int_eq(pthread_create(&t[0], NULL, reader, &r[0]), 0);
	ck_assert_int_eq(pthread_create(&t[1], NULL, reader, &r[1]), 0);
	ck_assert_int_eq(pthread_create(&t[2], NULL, dropper, &r[2]), 0);
	for (int i = 0; i < 3; i++)
		pthread_join(t[i], NULL);
	kg_regcache_stats(c, &st);
	ck_assert_uint_le(st.size, 32);
	kg_regcache_drop_all(c);
	kg_regcache_stats(c, &st);
	ck_assert_uint_eq(st.size, 0);
	kg_regcache_free(c);
}
END_TEST

Suite *kg_suite_regcache(void)
{
	Suite *s = suite_create("regcache");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, hit_miss_and_negative);
	tcase_add_test(tc, bound_and_lru_eviction);
	tcase_add_test(tc, generation_race);
	tcase_add_test(tc, thumbprint_follows_the_device);
	tcase_add_test(tc, credentials);
	tcase_add_test(tc, resync_flushes_everything);
	tcase_add_test(tc, down_state_and_fail_open_memory);
	tcase_add_test(tc, threads);
	suite_add_tcase(s, tc);
	return s;
}
