/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * check_registry_file.c - the registry as a file other processes can touch: created
 * 0600 whatever the umask (-wal/-shm too), a lock held by another connection is
 * waited for, counted and reported as KG_E_BUSY with a message (nothing written), and
 * the daemon's instance lock beside it admits one holder and names it.
 */
#include <check.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ops/err.h"
#include "core/instance.h"
#include "registry/registry.h"
#include "testlib.h"

static char tmpdir[256];
static char dbpath[512];

static void setup(void)
{
	kg_test_tmpdir(tmpdir, sizeof(tmpdir));
	snprintf(dbpath, sizeof(dbpath), "%s/registry.db", tmpdir);
}

static void teardown(void)
{
	kg_test_rmdir(tmpdir);
}

static unsigned mode_of(const char *path)
{
	struct stat st;

	ck_assert_msg(stat(path, &st) == 0, "%s missing", path);
	return (unsigned)(st.st_mode & 07777);
}

static struct kg_device device(const char *id)
{
	struct kg_device d = { .status = KG_DEV_ENABLED, .attestation = KG_ATT_CA };

	snprintf(d.id, sizeof(d.id), "%s", id);
	return d;
}

START_TEST(test_created_private)
{
	struct kg_registry *reg = NULL;
	struct kg_device d = device("dev-1");
	char err[256], side[600];
	mode_t old = umask(0);   /* SQLite alone would make it 0666 & ~0 = 0644 */

	ck_assert_int_eq(kg_registry_open(dbpath, KG_REG_READWRITE, &reg, err, sizeof(err)), 0);
	umask(old);
	ck_assert_int_eq(kg_registry_device_add(reg, &d), 0);
	ck_assert_uint_eq(mode_of(dbpath), 0600);
	snprintf(side, sizeof(side), "%s-wal", dbpath);
	ck_assert_uint_eq(mode_of(side), 0600);
	snprintf(side, sizeof(side), "%s-shm", dbpath);
	ck_assert_uint_eq(mode_of(side), 0600);
	kg_registry_close(reg);
}
END_TEST

START_TEST(test_busy_reported)
{
	struct kg_registry *holder = NULL, *reg = NULL;
	struct kg_device d = device("dev-busy"), got;
	char err[256];
	time_t t0;
	int rc;

	ck_assert_int_eq(kg_registry_open(dbpath, KG_REG_READWRITE, &holder, err, sizeof(err)), 0);
	ck_assert_int_eq(kg_registry_open(dbpath, KG_REG_READWRITE, &reg, err, sizeof(err)), 0);
	ck_assert_uint_eq(atomic_load(&reg->busy_waits), 0);
	ck_assert_int_eq(kg_registry_begin(holder), 0);   /* holds the write lock */
	t0 = time(NULL);
	rc = kg_registry_device_add(reg, &d);
	ck_assert_int_eq(rc, KG_E_BUSY);
	ck_assert_msg(time(NULL) - t0 >= 4, "gave up after %lld s, not the busy timeout",
		      (long long)(time(NULL) - t0));
	ck_assert_uint_eq(atomic_load(&reg->busy_waits), 1);
	ck_assert_msg(strstr(kg_registry_strerror(reg, rc), "locked by another process") != NULL,
		      "message: %s", kg_registry_strerror(reg, rc));
	ck_assert_str_eq(kg_err_str(KG_E_BUSY), "locked by another process");
	/* nothing written; once released, the same write lands */
	kg_registry_rollback(holder);
	ck_assert_int_eq(kg_registry_device_get(reg, "dev-busy", &got), KG_E_NOTFOUND);
	ck_assert_int_eq(kg_registry_device_add(reg, &d), 0);
	ck_assert_int_eq(kg_registry_device_get(holder, "dev-busy", &got), 0);
	kg_registry_close(reg);
	kg_registry_close(holder);
}
END_TEST

START_TEST(test_instance_lock)
{
	char err[512] = "", want[64], lockpath[600];
	int fd, fd2;

	fd = kg_instance_lock(dbpath, err, sizeof(err));
	ck_assert_msg(fd >= 0, "first lock: %s", err);
	snprintf(lockpath, sizeof(lockpath), "%s.lock", dbpath);
	ck_assert_uint_eq(mode_of(lockpath), 0600);
	/* flock belongs to the open file description: a second open in this process is
	 * refused as another daemon's would be */
	ck_assert_int_eq(kg_instance_lock(dbpath, err, sizeof(err)), -1);
	snprintf(want, sizeof(want), "(pid %ld, holding ", (long)getpid());
	ck_assert_msg(strstr(err, want) != NULL && strstr(err, lockpath) != NULL, "message: %s", err);
	close(fd);
	fd2 = kg_instance_lock(dbpath, err, sizeof(err));
	ck_assert_msg(fd2 >= 0, "after release: %s", err);
	/* a handover passes the lock: adopted for the same registry, refused (and closed)
	 * for another one, or for a URL registry */
	ck_assert_int_eq(kg_instance_lock_adopt(fd2, dbpath), fd2);
	ck_assert_int_eq(kg_instance_lock_adopt(-1, dbpath), -1);
	{
		char other[540], otherlock[560];
		int fd3;

		snprintf(other, sizeof(other), "%s-other.db", dbpath);
		fd3 = kg_instance_lock(other, err, sizeof(err));
		ck_assert_msg(fd3 >= 0, "other registry: %s", err);
		ck_assert_int_eq(kg_instance_lock_adopt(fd3, dbpath), -1);
		ck_assert_int_eq(fcntl(fd3, F_GETFD), -1);   /* closed: its lock released */
		fd3 = kg_instance_lock(other, err, sizeof(err));
		ck_assert_msg(fd3 >= 0, "other registry after the refused adopt: %s", err);
		ck_assert_int_eq(kg_instance_lock_adopt(fd3, "postgresql://db/ktlsgate"), -1);
		snprintf(otherlock, sizeof(otherlock), "%s.lock", other);
		unlink(otherlock);
	}
	close(fd2);
	ck_assert_int_eq(kg_instance_lock("postgresql://db/ktlsgate", err, sizeof(err)), -2);
}
END_TEST

Suite *kg_suite_registry_file(void)
{
	Suite *s = suite_create("registry_file");
	TCase *tc = tcase_create("file");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_created_private);
	tcase_add_test(tc, test_busy_reported);
	tcase_add_test(tc, test_instance_lock);
	suite_add_tcase(s, tc);
	return s;
}
