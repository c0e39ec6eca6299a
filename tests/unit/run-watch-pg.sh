#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# run-watch-pg.sh CHECK_UNIT... - the change watcher's suite (check_watch_pg.c) against
# a throwaway PostgreSQL cluster (tests/lib/pg.sh), once per check_unit binary given
# (make check-watch-pg: the plain build and the ASan + UBSan one). The cluster is
# always stopped and removed. A cluster that cannot start is a FAIL, and so is a run in
# which the suite did not run a single test (KG_TEST_PG registers it).
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=../lib/pg.sh
. "$root/tests/lib/pg.sh"

pass=0
fail=0
ok() { echo "PASS $1"; pass=$((pass + 1)); }
ko() { echo "FAIL $1: $2"; fail=$((fail + 1)); }

if [ $# -eq 0 ]; then
	echo "usage: $0 CHECK_UNIT..." >&2
	exit 2
fi
# Under /tmp, not a 0700 mktemp dir: the postgres user must reach the cluster's files.
base=$(mktemp -d /tmp/kg-watchpg.XXXXXX) || exit 1
chmod 0755 "$base"
cleanup() {
	kg_pg_stop "$base/pg"
	rm -rf "$base"
}
trap cleanup EXIT

if ! kg_pg_start "$base/pg"; then
	ko cluster "tests/lib/pg.sh could not start PostgreSQL (see above)"
	echo "check-watch-pg: $pass passed, $fail failed"
	exit 1
fi
ok cluster
# The store's suites' convention: KG_TEST_PG the URI, KG_TEST_PG_DIR the directory.
export KG_TEST_PG="$KG_PG_URI" KG_TEST_PG_DIR="$base/pg"

for bin in "$@"; do
	name=watch_pg-$(basename "$(dirname "$bin")")
	log="$base/$name.log"
	t0=$(date +%s)
	(cd "$root/tests/unit" && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
		CK_RUN_SUITE=watch_pg CK_FORK=yes "$bin") >"$log" 2>&1
	rc=$?
	line=$(grep -E '^[0-9]+%: Checks: ' "$log" | tail -n1)
	checks=$(sed -nE 's/.*Checks: ([0-9]+).*/\1/p' <<<"$line")
	if [ "$rc" -eq 0 ] && [ -n "$checks" ] && [ "$checks" -gt 0 ] &&
		grep -qE 'Failures: 0, Errors: 0' <<<"$line"; then
		ok "$name ($line, $(($(date +%s) - t0))s)"
	else
		cat "$log"
		ko "$name" "exit $rc, ${line:-no Check summary}"
	fi
done
echo "check-watch-pg: $pass passed, $fail failed"
[ "$fail" -eq 0 ] && [ "$pass" -gt 1 ]
