#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# run.sh - `make check-tpm`: every tests/tpm/test-*.sh under a time limit; ends with one
# line "N passed, M failed". Needs swtpm, tpm2-tools and the tpm2 OpenSSL provider: a
# missing one is a FAIL (never a silent pass). GATED/KGCLI name the binaries under test.
set -u
cd "$(dirname "$0")/../.." || exit 3
missing=""
for c in swtpm tpm2_getcap mosquitto mosquitto_pub openssl python3; do
	command -v "$c" >/dev/null || missing="$missing $c"
done
[ -e "$(openssl version -m | sed 's/.*"\(.*\)"/\1/')/tpm2.so" ] || missing="$missing tpm2-openssl"
if [ -n "$missing" ]; then
	echo "FAIL prerequisites: missing$missing (scripts/deps.sh installs them)"
	echo "0 passed, 1 failed"
	exit 1
fi
export KG_WORK_BASE=${KG_WORK_BASE:-$PWD/build/itest-tpm}
mkdir -p "$KG_WORK_BASE"
passed=0
failed=0
for f in tests/tpm/test-*.sh; do
	name=$(basename "$f" .sh)
	log="$KG_WORK_BASE/$name.log"
	echo "=== $name"
	timeout -k 10 "${KG_FILE_TIMEOUT:-600}" bash "$f" </dev/null >"$log" 2>&1
	rc=$?
	cat "$log"
	p=$(grep -c '^PASS ' "$log")
	n=$(grep -c '^FAIL ' "$log")
	if [ "$rc" -ne 0 ] && [ "$n" -eq 0 ]; then
		echo "FAIL $name: exit $rc without a FAIL line"
		n=1
	fi
	passed=$((passed + p))
	failed=$((failed + n))
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
