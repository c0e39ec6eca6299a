#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# test-restart-tools.sh - the probes behind `make bench-restart` (issue 14) see what
# they claim to see: tests/edge/restart_client.py qos1-check names a lost and a
# duplicated message in a crafted run and passes an exact one; then
# tests/bench/restart.sh with the "steady" and "plain" variants, once: its self-check
# fails unless the steady run saw 0 failed connects, the live session kept and QoS 1
# exactly once, and the plain restart (SIGTERM + start) saw failed connects, the live
# session lost and the publisher's connection dropped. With a ktlsgated that has
# --takeover, also the issue's target: a takeover under the loop fails no attempt, keeps
# the live session and delivers every QoS 1 message exactly once.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(cd "$HERE/../.." && pwd)
if [ "$(id -u)" != 0 ]; then
	echo "SKIP test-restart-tools: needs root (netns)"
	exit 77
fi
T=$(mktemp -d /tmp/kg-restart-tools.XXXXXX)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL test-restart-tools: $*"; exit 1; }

# 1..5 acked, 3 resent with DUP after a drop; the subscriber got 3 twice and never 4
printf '{"sent": 5, "acked": [1,2,3,4,5], "resent": [3], "unacked": [], "drops": 1, "outages_s": [0.5]}' >"$T/pub.json"
printf '1\n2\n3\n3\n5\n' >"$T/sub.txt"
out=$(/usr/bin/python3 "$HERE/restart_client.py" qos1-check "$T/pub.json" "$T/sub.txt") &&
	fail "qos1-check passed a run with a loss and a duplicate: $out"
for want in '"missing": 1' '"duplicated": 1' '"dup_resent": 1' '"exactly_once": false'; do
	[[ $out == *"$want"* ]] || fail "qos1-check: no $want in $out"
done
printf '1\n2\n3\n4\n5\n' >"$T/sub.txt"
out=$(/usr/bin/python3 "$HERE/restart_client.py" qos1-check "$T/pub.json" "$T/sub.txt") ||
	fail "qos1-check failed an exact run: $out"
echo "    qos1-check: a loss and a duplicate named, an exact run passed"

# With a ktlsgated that has --takeover, the issue's target too: the takeover variant
# must see 0 failed attempts, the live session kept and QoS 1 exactly once.
BUILD=${BUILD:-build}
[[ $BUILD = /* ]] || BUILD="$TOP/$BUILD"
variants="steady plain"
if "$BUILD/ktlsgated" --help 2>&1 | grep -q -- --takeover; then
	variants+=" takeover"
	what="tools and the --takeover target"
else
	what="tools; --takeover NOT TESTED: not in this build"
fi
# generous deadlines: the steady run must not count a slow attempt on a loaded machine
# as a failure (a stopped gateway still refuses or resets at once)
BENCH_VARIANTS="$variants" BENCH_ASSERT_TAKEOVER=1 BUILD="$BUILD" BENCH_REPEAT=1 BENCH_WINDOW=6 RESTART_AT=2 BENCH_OUT="$T" \
	BENCH_TIMEOUT=10 BENCH_LIVE_TIMEOUT=5 \
	timeout 200 bash "$TOP/tests/bench/restart.sh" >"$T/bench.log" 2>&1
rc=$?
grep '^|' "$T/bench.log" | sed 's/^/    /'
[ $rc = 0 ] || { tail -20 "$T/bench.log"; fail "bench-restart $variants: exit $rc"; }
echo "PASS test-restart-tools ($what)"
