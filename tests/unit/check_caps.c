/* SPDX-License-Identifier: BSD-2-Clause */
/* check_caps.c - units of the capability drop's pure parts (ops/caps.h): reading a
 * status file's Cap* lines, naming a mask, and the sets a thread ends with. The drop
 * itself runs in real processes: tests/integration/test-caps.sh. */
#include <check.h>
#include <stdint.h>
#include <string.h>

#include "ops/caps.h"
#include "testlib.h"

/* /proc/PID/status of root in a container: CAP_SYS_RESOURCE (24) missing. */
static const char root_status[] =
	"Name:\tktlsgated\nUmask:\t0022\nState:\tS (sleeping)\n"
	"CapInh:\t0000000000000000\nCapPrm:\t000001fffeffffff\nCapEff:\t000001fffeffffff\n"
	"CapBnd:\t000001fffeffffff\nCapAmb:\t0000000000000000\nNoNewPrivs:\t0\n";

START_TEST(parses_status_lines)
{
	struct kg_caps c;

	ck_assert_int_eq(kg_caps_parse_status(root_status, &c), 0);
	ck_assert_uint_eq(c.inh, 0);
	ck_assert_uint_eq(c.prm, UINT64_C(0x000001fffeffffff));
	ck_assert_uint_eq(c.eff, UINT64_C(0x000001fffeffffff));
	ck_assert_uint_eq(c.bnd, UINT64_C(0x000001fffeffffff));
	ck_assert_uint_eq(c.amb, 0);
	/* a unit's process: ambient CAP_BPF CAP_NET_ADMIN, the last line without '\n' */
	ck_assert_int_eq(kg_caps_parse_status("CapInh:\t0000008000001000\nCapPrm:\t0000008000001000\n"
					      "CapEff:\t0000008000001000\nCapBnd:\t0000008000001000\n"
					      "CapAmb:\t0000008000001000", &c), 0);
	ck_assert_uint_eq(c.amb, KG_CAP(KG_CAP_BPF) | KG_CAP(KG_CAP_NET_ADMIN));
	/* one line missing, a key only as a suffix of another, garbage: refused */
	ck_assert_int_eq(kg_caps_parse_status("CapInh:\t0\nCapPrm:\t0\nCapEff:\t0\nCapBnd:\t0\n", &c), -1);
	ck_assert_int_eq(kg_caps_parse_status("CapInh:\t0\nCapPrm:\t0\nCapEff:\t0\nCapBnd:\t0\n"
					      "XCapAmb:\t0\n", &c), -1);
	ck_assert_int_eq(kg_caps_parse_status("CapInh:\t0\nCapPrm:\tzz\nCapEff:\t0\nCapBnd:\t0\n"
					      "CapAmb:\t0\n", &c), -1);
}
END_TEST

START_TEST(names_masks)
{
	char buf[64];

	ck_assert_uint_eq(kg_caps_names(0, buf, sizeof(buf)), 4);
	ck_assert_str_eq(buf, "none");
	kg_caps_names(KG_CAP(KG_CAP_BPF) | KG_CAP(KG_CAP_NET_ADMIN), buf, sizeof(buf));
	ck_assert_str_eq(buf, "cap_net_admin cap_bpf");
	kg_caps_names(KG_CAP(KG_CAP_NET_BIND_SERVICE) | KG_CAP(50), buf, sizeof(buf));
	ck_assert_str_eq(buf, "cap_net_bind_service cap_50");
	/* truncated, NUL-terminated, the full length returned */
	ck_assert_uint_eq(kg_caps_names(KG_CAP(KG_CAP_BPF) | KG_CAP(KG_CAP_PERFMON), buf, 8),
			  strlen("cap_perfmon cap_bpf"));
	ck_assert_str_eq(buf, "cap_per");
}
END_TEST

START_TEST(target_keeps_only_what_is_asked)
{
	const uint64_t edge = KG_CAP(KG_CAP_BPF) | KG_CAP(KG_CAP_NET_ADMIN);
	struct kg_caps root = { .prm = UINT64_C(0x1fffeffffff), .eff = UINT64_C(0x1fffeffffff),
				.bnd = UINT64_C(0x1fffeffffff) };
	struct kg_caps unit = { .prm = edge | KG_CAP(KG_CAP_PERFMON),
				.eff = edge | KG_CAP(KG_CAP_PERFMON),
				.inh = edge | KG_CAP(KG_CAP_PERFMON),
				.amb = edge | KG_CAP(KG_CAP_PERFMON),
				.bnd = edge | KG_CAP(KG_CAP_PERFMON) };
	struct kg_caps t;

	/* root (CAP_SETPCAP): the bounding set shrinks too */
	kg_caps_target(&root, edge, &t);
	ck_assert_uint_eq(t.prm, edge);
	ck_assert_uint_eq(t.eff, edge);
	ck_assert_uint_eq(t.bnd, edge);
	ck_assert_uint_eq(t.inh, 0);
	ck_assert_uint_eq(t.amb, 0);
	kg_caps_target(&root, 0, &t);
	ck_assert_uint_eq(t.prm | t.eff | t.bnd | t.inh | t.amb, 0);
	/* the unit's user: no CAP_SETPCAP, the bounding set is the unit's and stays */
	kg_caps_target(&unit, edge, &t);
	ck_assert_uint_eq(t.prm, edge);
	ck_assert_uint_eq(t.eff, edge);
	ck_assert_uint_eq(t.bnd, unit.bnd);
	/* the kept ones stay ambient (and inheritable), for the successor `ktlsgate
	 * upgrade` execs; the dropped CAP_PERFMON leaves both */
	ck_assert_uint_eq(t.amb, edge);
	ck_assert_uint_eq(t.inh, edge);
	kg_caps_target(&unit, 0, &t);
	ck_assert_uint_eq(t.prm | t.eff | t.inh | t.amb, 0);
	/* keep never adds what is not held */
	unit.prm = unit.eff = KG_CAP(KG_CAP_BPF);
	kg_caps_target(&unit, edge, &t);
	ck_assert_uint_eq(t.prm, KG_CAP(KG_CAP_BPF));
}
END_TEST

Suite *kg_suite_caps(void)
{
	Suite *s = suite_create("caps");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, parses_status_lines);
	tcase_add_test(tc, names_masks);
	tcase_add_test(tc, target_keeps_only_what_is_asked);
	suite_add_tcase(s, tc);
	return s;
}
