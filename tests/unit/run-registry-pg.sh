#!/bin/bash
# run-registry-pg.sh PLAIN_CHECK_UNIT ASAN_CHECK_UNIT - the registry suite's PostgreSQL
# cases against a throwaway cluster (mk/pg.mk, `make check-registry-pg`).
# Starts the cluster with tests/lib/pg.sh under /var/tmp (the postgres user must reach
# it; a mktemp dir under /tmp is 0700), runs case pg (the store-generic cases), case
# pg_store (the PostgreSQL store's own) and case pg_race (several processes at once:
# schema creation, enrolment) with each binary, and checks that each run reported
# exactly PG_GENERIC_CASES / PG_STORE_CASES / PG_RACE_CASES checks and no failure. Also checks
# that without KG_TEST_PG those cases are not registered at all. The cluster is stopped
# and removed on every exit (trap). A cluster that does not start is a FAIL.
set -u
plain=${1:?usage: run-registry-pg.sh PLAIN_CHECK_UNIT ASAN_CHECK_UNIT}
asan=${2:?usage: run-registry-pg.sh PLAIN_CHECK_UNIT ASAN_CHECK_UNIT}
generic=${PG_GENERIC_CASES:?}
store=${PG_STORE_CASES:?}
race=${PG_RACE_CASES:?}
here=$(cd "$(dirname "$0")" && pwd)
cd "$here" || exit 1   # the cases find ../lib/pg.sh from here, as check-unit runs them
# shellcheck source=../lib/pg.sh
. ../lib/pg.sh

pass=0
fail=0
ok() { echo "PASS $1"; pass=$((pass + 1)); }
bad() { echo "FAIL $1: $2"; fail=$((fail + 1)); }

work=$(mktemp -d /var/tmp/kg-regpg.XXXXXX) || exit 1
chmod 0755 "$work"
cleanup() {
	kg_pg_stop "$work/pg" || kg_pg_kill "$work/pg"
	rm -rf "$work"
}
trap cleanup EXIT

# run NAME BIN CASE WANT [ENV...]: Check's summary must say WANT checks, 0 failures.
run() {
	local name=$1 bin=$2 case=$3 want=$4 out summary rc
	shift 4
	out="$work/$name.log"
	env "$@" CK_RUN_SUITE=registry CK_RUN_CASE="$case" CK_FORK=yes \
		ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
		timeout 600 "$bin" >"$out" 2>&1
	rc=$?
	summary=$(grep -Eo 'Checks: [0-9]+, Failures: [0-9]+, Errors: [0-9]+' "$out" | tail -n1)
	if [ -z "$summary" ]; then
		bad "$name" "no Check summary (exit $rc); log:"
		tail -n 20 "$out"
	elif [ "$summary" != "Checks: $want, Failures: 0, Errors: 0" ]; then
		bad "$name" "$summary, want Checks: $want and no failure"
		grep -E ':[FE]:' "$out" | head -n 20
	else
		ok "$name ($summary)"
	fi
}

if [ ! -x "$plain" ] || [ ! -x "$asan" ]; then
	bad binaries "missing $plain or $asan"
	echo "registry-pg: $pass passed, $fail failed"
	exit 1
fi

# Without a database the PostgreSQL cases do not exist (never a silent pass).
run unregistered-without-KG_TEST_PG "$plain" pg 0 -u KG_TEST_PG
run unregistered-store-without-KG_TEST_PG "$plain" pg_store 0 -u KG_TEST_PG
run unregistered-race-without-KG_TEST_PG "$plain" pg_race 0 -u KG_TEST_PG

if ! kg_pg_start "$work/pg"; then
	bad pg-start "the PostgreSQL test cluster did not start (see above)"
	echo "registry-pg: $pass passed, $fail failed"
	exit 1
fi
ok "pg-start (cluster on $KG_PG_URI)"
for b in plain asan; do
	bin=$plain
	[ "$b" = asan ] && bin=$asan
	run "registry-pg-generic-$b" "$bin" pg "$generic" KG_TEST_PG="$KG_PG_URI" \
		KG_TEST_PG_DIR="$work/pg" KG_PG_PORT="$KG_PG_PORT"
	run "registry-pg-store-$b" "$bin" pg_store "$store" KG_TEST_PG="$KG_PG_URI" \
		KG_TEST_PG_DIR="$work/pg" KG_PG_PORT="$KG_PG_PORT"
	run "registry-pg-race-$b" "$bin" pg_race "$race" KG_TEST_PG="$KG_PG_URI"
done

echo "registry-pg: $pass passed, $fail failed"
[ "$fail" -eq 0 ] && [ "$pass" -gt 0 ]
