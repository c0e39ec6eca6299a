#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# run.sh - `make check-integration`: run every tests/integration/test-*.sh, each in its
# own bash under a time limit, show its output, count its PASS/FAIL lines, and end with
# exactly one line "N passed, M failed". A file that dies or times out without saying
# FAIL counts as one failure; each "NOT RUN ..." line (a part that cannot run here)
# counts as one too. Exit status: 0 only if nothing failed.
# KG_ONLY="t_a t_b" runs only those tests of each file; KG_KEEP=1 keeps work dirs.
set -u
cd "$(dirname "$0")/../.." || exit 3
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
mkdir -p build/itest

for bin in build/ktlsgated build/ktlsgate; do
	if [ ! -x "$bin" ]; then
		echo "FAIL build: $bin missing (run make all)"
		echo "0 passed, 1 failed"
		exit 1
	fi
done

passed=0
failed=0
for f in tests/integration/test-*.sh; do
	name=$(basename "$f" .sh)
	log="build/itest/$name.log"
	echo "=== $name"
	# made here, before the test's shell opens it: tail -f gives up at once on a file
	# that does not exist yet (a fresh clone under load lost some files' output so)
	: >"$log"
	timeout -k 10 "${KG_FILE_TIMEOUT:-900}" bash "$f" </dev/null >"$log" 2>&1 &
	pid=$!
	# show the output as it comes, but never a second summary line
	tail -n +1 --pid=$pid -f "$log" 2>/dev/null | sed -E 's/^([0-9]+ passed, [0-9]+ failed.*)$/  ('"$name"': \1)/'
	wait $pid
	rc=$?
	p=$(grep -c '^PASS ' "$log")
	m=$(grep -c '^FAIL ' "$log")
	# a part that could not run here ("NOT RUN what: why") is not a pass either
	m=$((m + $(grep -c '^NOT RUN ' "$log")))
	if [ "$rc" -ne 0 ] && [ "$m" -eq 0 ]; then
		if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
			echo "FAIL $name: timed out after ${KG_FILE_TIMEOUT:-900} s"
		else
			echo "FAIL $name: exited $rc without a FAIL line"
		fi
		m=1
	fi
	passed=$((passed + p))
	failed=$((failed + m))
done

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
