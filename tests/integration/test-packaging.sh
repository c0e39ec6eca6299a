#!/usr/bin/env bash
# test-packaging.sh - the hardened systemd unit: systemd accepts it, and its exposure
# score (systemd-analyze security) stays low. Prints PASS/FAIL per test and a summary.
set -uo pipefail
KG_TOP=$(cd "$(dirname "$0")/../.." && pwd)
UNIT=$KG_TOP/packaging/systemd/ktlsgated.service
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
passed=0 failed=0

# The unit names /usr/sbin/ktlsgated; verify checks that the binary exists, so point
# it at the build.
sed "s|/usr/sbin/ktlsgated|$KG_TOP/build/ktlsgated|g" "$UNIT" >"$T/ktlsgated.service"

t_unit_verifies() {
	systemd-analyze verify "$T/ktlsgated.service" >"$T/verify.out" 2>&1 ||
		{ cat "$T/verify.out"; return 1; }
	# verify exits 0 on some warnings: fail on any line about our unit
	! grep -q "ktlsgated.service" "$T/verify.out" || { cat "$T/verify.out"; return 1; }
}

t_unit_exposure() {
	local score
	systemd-analyze security --offline=yes "$T/ktlsgated.service" >"$T/sec.out" 2>&1 ||
		{ tail -5 "$T/sec.out"; return 1; }
	score=$(sed -n 's/.*Overall exposure level for ktlsgated.service: \([0-9.]*\).*/\1/p' "$T/sec.out")
	echo "    exposure level: ${score:-?}"
	[ -n "$score" ] && awk -v s="$score" 'BEGIN { exit !(s <= 2.0) }'
}

for t in t_unit_verifies t_unit_exposure; do
	if ! command -v systemd-analyze >/dev/null; then
		echo "SKIP $t: systemd-analyze not installed"
		continue
	fi
	if "$t"; then echo "PASS $t"; passed=$((passed + 1)); else echo "FAIL $t"; failed=$((failed + 1)); fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
