/* SPDX-License-Identifier: BSD-2-Clause */
/* check_edge.c - units of the [edge] config section. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ktlsgate/config.h"
#include "testlib.h"

static const char *const base =
	"[daemon]\ncert = /c\nkey = /k\nregistry = /r\n";

START_TEST(unknown_key_names_file_and_line)
{
	struct kg_config *cfg = calloc(1, sizeof(*cfg));
	char text[512], err[KG_ERRBUF];

	ck_assert_ptr_nonnull(cfg);
	snprintf(text, sizeof(text), "%s[edge]\nbogus = 1\n", base);
	ck_assert_int_eq(kg_config_parse_string(text, "t.conf", cfg, err, sizeof(err)), -1);
	ck_assert_str_eq(err, "t.conf:6: unknown key 'bogus' in [edge]");
	free(cfg);
}
END_TEST

Suite *kg_suite_edge(void)
{
	Suite *s = suite_create("edge");
	TCase *tc = tcase_create("conf");

	tcase_add_test(tc, unknown_key_names_file_and_line);
	suite_add_tcase(s, tc);
	return s;
}
