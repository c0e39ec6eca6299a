/* SPDX-License-Identifier: BSD-2-Clause */
/* testlib.c - temp dirs and files for the Check suites. */
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testlib.h"

void kg_test_tmpdir(char *out, size_t cap)
{
	const char *base = getenv("TMPDIR");
	int n = snprintf(out, cap, "%s/kgtest.XXXXXX", base ? base : "/tmp");

	ck_assert_msg(n > 0 && (size_t)n < cap, "tmpdir path too long");
	ck_assert_msg(mkdtemp(out) != NULL, "mkdtemp failed");
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

void kg_test_rmdir(const char *path)
{
	(void)nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

void kg_test_write_file(const char *path, const char *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	ck_assert_msg(fd >= 0, "open %s", path);
	ck_assert_msg(write(fd, data, len) == (ssize_t)len, "write %s", path);
	close(fd);
}
