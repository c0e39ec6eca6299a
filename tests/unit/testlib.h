/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * testlib.h - shared helpers for the Check suites and the list of suites.
 * Each tests/unit/check_<module>.c exports one kg_suite_<module>().
 */
#ifndef KTLSGATE_TESTLIB_H
#define KTLSGATE_TESTLIB_H

#include <check.h>
#include <stddef.h>

Suite *kg_suite_mqtt(void);
Suite *kg_suite_config(void);
Suite *kg_suite_registry(void);
Suite *kg_suite_policy(void);
Suite *kg_suite_verify(void);
Suite *kg_suite_pki(void);
Suite *kg_suite_metrics(void);
Suite *kg_suite_audit(void);
Suite *kg_suite_record(void);
Suite *kg_suite_tpm(void);    /* check_tpm.c */
Suite *kg_suite_edge(void);   /* check_edge.c */
Suite *kg_suite_registry_file(void);   /* check_registry_file.c */
Suite *kg_suite_srclimit(void); /* check_srclimit.c */
Suite *kg_suite_revoke(void); /* check_revoke.c */
Suite *kg_suite_caps(void);   /* check_caps.c */
Suite *kg_suite_regcache(void); /* check_regcache.c */
Suite *kg_suite_tickets(void); /* check_tickets.c */
Suite *kg_suite_workers(void); /* check_workers.c: issue 14's per-worker figures */

/* Make a fresh temporary directory (mkdtemp under $TMPDIR or /tmp); path in out.
 * Aborts the test on failure. */
void kg_test_tmpdir(char *out, size_t cap);
/* rm -rf a directory made by kg_test_tmpdir. */
void kg_test_rmdir(const char *path);
/* Write a file; aborts the test on failure. */
void kg_test_write_file(const char *path, const char *data, size_t len);

#endif
