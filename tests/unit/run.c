/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * run.c - runs every Check suite in CK_FORK mode, so a crash fails one test, not the
 * run. CK_RUN_SUITE / CK_RUN_CASE select suites and cases (Check's own variables).
 */
#include <check.h>
#include <stdlib.h>

#include "testlib.h"

/* Issue 15's pure parsers (check_proxy.c, check_credential.c). */
Suite *kg_suite_proxy(void);
Suite *kg_suite_credential(void);
Suite *kg_suite_auth(void);  /* check_auth.c: the CONNECT credential engine */
/* Issue 15's plain sessions' ladder (check_relay_plain.c). */
Suite *kg_suite_relay_plain(void);
/* Issue 16's change watcher (check_watch_pg.c): it needs a real PostgreSQL cluster, so
 * it is registered only when KG_TEST_PG names one (make check-watch-pg starts it and
 * requires that the suite ran: a run without the variable does not look like a pass). */
Suite *kg_suite_watch_pg(void);
/* Issue 13's certified-leaf mode (check_leaf.c). */
Suite *kg_suite_leaf(void);
Suite *kg_suite_handover(void);  /* check_handover.c: the handover channel's frames */

int main(void)
{
	static Suite *(*const suites[])(void) = {
		kg_suite_mqtt,   kg_suite_config, kg_suite_registry, kg_suite_policy,
		kg_suite_verify, kg_suite_pki,    kg_suite_metrics,  kg_suite_audit,
		kg_suite_record, kg_suite_tpm,    kg_suite_edge,   kg_suite_registry_file,
		kg_suite_srclimit, kg_suite_revoke, kg_suite_caps,
		kg_suite_proxy,    kg_suite_credential, kg_suite_auth,
		kg_suite_relay_plain, kg_suite_regcache, kg_suite_tickets,
		kg_suite_leaf,     kg_suite_workers, kg_suite_handover,
	};
	SRunner *sr = srunner_create(NULL);
	int failed;

	for (size_t i = 0; i < sizeof(suites) / sizeof(suites[0]); i++)
		srunner_add_suite(sr, suites[i]());
	if (getenv("KG_TEST_PG") != NULL && getenv("KG_TEST_PG")[0] != '\0')
		srunner_add_suite(sr, kg_suite_watch_pg());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
