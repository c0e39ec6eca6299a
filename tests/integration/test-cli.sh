#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# test-cli.sh - the `ktlsgate` admin CLI on its own (no ktlsgated): test PKI, CA
# registration with proof of possession, device CRUD, offline `verify`, usage errors,
# exit codes and one-line errors, a corrupt registry left untouched, and the control
# protocol side against a tiny fake daemon (python3 on a unix socket).
# Prints "PASS name" / "FAIL name: why" per test and ends with "N passed, M failed".
# BIN=path/to/ktlsgate overrides the binary; KG_ONLY="t_a t_b" runs only those tests.
set -euo pipefail

cd "$(dirname "$0")/../.."
BIN=${BIN:-build/ktlsgate}
BIN=$(realpath "$BIN")
PY=/usr/bin/python3
T=$(mktemp -d "${TMPDIR:-/tmp}/kg-cli-test.XXXXXX")
FAKE_PID=""

cleanup() {
	if [ -n "$FAKE_PID" ]; then
		kill "$FAKE_PID" 2>/dev/null || true
		wait "$FAKE_PID" 2>/dev/null || true
	fi
	rm -rf "$T"
}
trap cleanup EXIT

# --- helpers -------------------------------------------------------------------------

fail() {
	echo "  assertion failed: $*"
	return 1
}

# run ARGS...: the CLI with stdout in $T/out, stderr in $T/err, exit code in RC.
run() {
	set +e
	"$BIN" "$@" >"$T/out" 2>"$T/err"
	RC=$?
	set -e
}

# runr ARGS...: same against the test's registry, with no config file.
runr() {
	run -c "$T/no-such.conf" -r "$REG" "$@"
}

expect_rc() {
	[ "$RC" -eq "$1" ] || fail "exit $RC, wanted $1 (stdout: $(head -c 300 "$T/out"); stderr: $(head -c 300 "$T/err"))"
}

# Stdout matches the extended regex.
expect_out() {
	grep -qE -- "$1" "$T/out" || fail "stdout lacks /$1/: $(head -c 500 "$T/out")"
}

expect_no_out() {
	! grep -qE -- "$1" "$T/out" || fail "stdout has /$1/: $(head -c 500 "$T/out")"
}

# The error contract: exactly one line, "ktlsgate: ...", matching the regex if given.
expect_err_line() {
	[ "$(wc -l <"$T/err")" -eq 1 ] || fail "stderr is not one line: $(cat "$T/err")"
	grep -qE '^ktlsgate: ' "$T/err" || fail "stderr lacks the ktlsgate: prefix: $(cat "$T/err")"
	[ -z "${1:-}" ] || grep -qE -- "$1" "$T/err" || fail "stderr lacks /$1/: $(cat "$T/err")"
}

expect_no_err() {
	[ ! -s "$T/err" ] || fail "unexpected stderr: $(cat "$T/err")"
}

# pki KIND CN DIR [more args]: make a certificate quietly.
pki() {
	local kind=$1 cn=$2 dir=$3
	shift 3
	"$BIN" pki "$kind" --cn "$cn" --out "$T/pki/$dir" "$@" >/dev/null
}

# new_registry NAME: sets REG to a fresh registry path for this test.
new_registry() {
	mkdir -p "$T/$1"
	REG="$T/$1/registry.db"
}

# add_verified_ca: register the test root in $REG and prove possession.
add_verified_ca() {
	local ch
	runr ca add "$T/pki/root/cert.pem"
	expect_rc 0
	ch=$(awk '/^challenge:/{print $2}' "$T/out")
	"$BIN" pki verification-cert --ca "$T/pki/root" --challenge "$ch" --out "$T/vc.pem" >/dev/null
	runr ca verify Test-Root "$T/vc.pem"
	expect_rc 0
}

thumb_of() {
	openssl x509 -in "$1" -outform DER | sha256sum | cut -d' ' -f1
}

# --- fixtures: one PKI for every test ---------------------------------------------------

setup_pki() {
	local now
	now=$(date +%s)
	mkdir -p "$T/pki"
	pki root "Test Root" root
	pki intermediate factory int --ca "$T/pki/root"
	pki device dev1 dev1 --ca "$T/pki/int"
	pki device dev2 dev2 --ca "$T/pki/int"
	pki device expired expired --ca "$T/pki/int" --not-before $((now - 10 * 86400)) --days 1
	pki device future future --ca "$T/pki/int" --not-before $((now + 10 * 86400))
	pki device soon soon --ca "$T/pki/int" --days 10
	pki device srvonly srvonly --ca "$T/pki/int" --eku server
	pki self-signed thumb1 thumb1
	pki self-signed thumb2 thumb2
	pki root "Other Root" root2
	pki device stranger stranger --ca "$T/pki/root2"
	pki intermediate notca notca --ca "$T/pki/root" --not-ca
	pki device undernotca undernotca --ca "$T/pki/notca"
}

# --- tests ------------------------------------------------------------------------------

t_help() {
	run --help
	expect_rc 0
	expect_out '^usage: ktlsgate '
	expect_out '^ktlsgate device expiring --days N'
	expect_no_err
	for noun in pki ca device session; do
		run "$noun" --help
		expect_rc 0
		expect_out "^ktlsgate $noun "
	done
	run verify --help
	expect_rc 0
	expect_out '^ktlsgate verify CERT'
	run device add --help
	expect_rc 0
	expect_out '^ktlsgate device add ID'
	# Every noun is in the global help, block and reload included (issue 10 §8).
	run --help
	expect_out '^ktlsgate block add ADDR'
	expect_out '^ktlsgate block (remove|list|stats)'
	expect_out '^ktlsgate reload$'
	expect_out '^ktlsgate device import FILE'
	expect_out '^ktlsgate tpm info'
	expect_out '^ktlsgate reasons'
	run block --help
	expect_rc 0
	expect_out '^ktlsgate block add ADDR'
	expect_no_err
	run reload --help
	expect_rc 0
	expect_out '^ktlsgate reload$'
	run device import --help
	expect_rc 0
	expect_out '^ktlsgate device import FILE'
	run --version
	expect_rc 0
	expect_out '^ktlsgate [0-9]+\.[0-9]+'
}

t_usage_errors() {
	new_registry usage
	local -a cases=(
		""
		"bogus"
		"ca"
		"ca frobnicate"
		"--no-such-option device list"
		"device list --no-such-option"
		"device list --status sleeping"
		"device add"
		"device add a/b/c"
		"device add ../x"
		"device add d1 --thumbprint 1234"
		"device add d1 --thumbprint zz$(printf '0%.0s' {1..62})"
		"device add d1 --secondary $(printf 'a%.0s' {1..64})"
		"device set d1"
		"device expiring"
		"device expiring --days -1"
		"pki root --out $T/usage/x"
		"pki root --cn x"
		"pki device --cn x --out $T/usage/x"
		"pki root --cn x --out $T/usage/x --days 0"
		"pki root --cn x --out $T/usage/x --days ten"
		"pki root --cn x --out $T/usage/x --eku both"
		"pki root --cn x --out $T/usage/x --not-ca"
		"pki crl --out $T/usage/crl.pem"
		"ca add"
		"ca add f1 f2"
		"ca set Test-Root"
		"ca set Test-Root --auto-enroll maybe"
		"ca set Test-Root --username-check loose"
		"ca set Test-Root --username-check"
		"ca add $T/pki/root/cert.pem --username-check Strict"
		"ca add $T/pki/root/cert.pem --name bad/name"
		"verify"
		"verify x.pem --at yesterday"
		"session kill"
		"session kill a/b/c"
		"device import"
		"device import f1 f2"
		"device import f1 --format xml"
		"reload now"
	)
	local c
	for c in "${cases[@]}"; do
		# shellcheck disable=SC2086
		runr $c
		[ "$RC" -eq 1 ] || fail "'$c': exit $RC, wanted 1 ($(cat "$T/err"))"
		expect_err_line
		[ ! -s "$T/out" ] || fail "'$c' wrote to stdout: $(cat "$T/out")"
	done
	# Usage errors never create the registry.
	[ ! -e "$REG" ] || fail "a usage error created the registry"
	run
	expect_rc 1
	expect_err_line 'missing command'
}

t_pki_chain() {
	run pki device --cn chk --out "$T/pki/chk" --ca "$T/pki/int"
	expect_rc 0
	[ "$(cat "$T/out")" = "wrote $T/pki/chk/cert.pem $T/pki/chk/key.pem $T/pki/chk/chain.pem" ] ||
		fail "output: $(cat "$T/out")"
	openssl verify -CAfile "$T/pki/root/cert.pem" -untrusted "$T/pki/int/cert.pem" \
		"$T/pki/dev1/cert.pem" >/dev/null || fail "openssl verify dev1"
	openssl verify -CAfile "$T/pki/root/cert.pem" -untrusted "$T/pki/int/cert.pem" \
		"$T/pki/chk/cert.pem" >/dev/null || fail "openssl verify chk"
	[ "$(grep -c 'BEGIN CERTIFICATE' "$T/pki/dev1/chain.pem")" -eq 2 ] || fail "chain.pem: not leaf+intermediate"
	[ "$(stat -c %a "$T/pki/dev1/key.pem")" = 600 ] || fail "key.pem mode $(stat -c %a "$T/pki/dev1/key.pem")"
	openssl x509 -in "$T/pki/dev1/cert.pem" -noout -subject | grep -q 'CN *= *dev1' || fail "dev1 subject"
	openssl x509 -in "$T/pki/dev1/cert.pem" -noout -ext extendedKeyUsage | grep -q 'Client Authentication' ||
		fail "device EKU is not clientAuth"
	run pki root --cn rsa --out "$T/pki/rsa" --rsa
	expect_rc 0
	openssl x509 -in "$T/pki/rsa/cert.pem" -noout -text | grep -q 'rsaEncryption' || fail "--rsa key is not RSA"
	run pki server --cn localhost --out "$T/pki/srv" --ca "$T/pki/int" --san DNS:gw.example,IP:127.0.0.1
	expect_rc 0
	openssl x509 -in "$T/pki/srv/cert.pem" -noout -ext subjectAltName | grep -q 'gw.example' || fail "server SAN"
	# An issuer directory that does not exist is a runtime error, one line.
	run pki device --cn x --out "$T/pki/x" --ca "$T/no-such-dir"
	expect_rc 3
	expect_err_line
}

t_pki_verification_cert_and_crl() {
	run pki verification-cert --ca "$T/pki/root" --challenge abc123 --out "$T/vc-test.pem"
	expect_rc 0
	expect_out "^wrote $T/vc-test.pem\$"
	openssl x509 -in "$T/vc-test.pem" -noout -subject | grep -q 'CN *= *abc123' || fail "verification cert CN"
	openssl verify -CAfile "$T/pki/root/cert.pem" "$T/vc-test.pem" >/dev/null 2>&1 ||
		openssl verify -partial_chain -CAfile "$T/pki/root/cert.pem" "$T/vc-test.pem" >/dev/null ||
		fail "verification cert not signed by the root"
	run pki crl --ca "$T/pki/int" --out "$T/int.crl" "$T/pki/dev2/cert.pem"
	expect_rc 0
	expect_out "^wrote $T/int.crl\$"
	local serial
	serial=$(openssl x509 -in "$T/pki/dev2/cert.pem" -noout -serial | cut -d= -f2)
	openssl crl -in "$T/int.crl" -noout -text | tr -d ' ' | grep -qi "SerialNumber:$serial" ||
		fail "CRL does not list dev2's serial $serial"
	openssl crl -in "$T/int.crl" -noout -verify -CAfile "$T/pki/int/cert.pem" 2>&1 | grep -q 'verify OK' ||
		fail "CRL not signed by the intermediate"
}

t_ca_add_refusals() {
	new_registry carefuse
	runr ca add "$T/pki/root/key.pem"
	expect_rc 2
	expect_err_line 'private key'
	[ ! -s "$T/out" ] || fail "stdout on refusal"
	runr ca add "$T/pki/dev1/cert.pem"
	expect_rc 2
	expect_err_line 'not a CA'
	# A file holding both a certificate and a key is refused too.
	cat "$T/pki/root/cert.pem" "$T/pki/root/key.pem" >"$T/carefuse/both.pem"
	runr ca add "$T/carefuse/both.pem"
	expect_rc 2
	expect_err_line
	runr ca add "$T/carefuse/missing.pem"
	expect_rc 3
	expect_err_line 'missing.pem'
	# CA:FALSE "intermediate" is not a CA.
	runr ca add "$T/pki/notca/cert.pem"
	expect_rc 2
	expect_err_line
	if [ -e "$REG" ]; then
		runr ca list --json
		expect_rc 0
		[ "$($PY -c 'import json,sys; print(len(json.load(open(sys.argv[1]))))' "$T/out")" = 0 ] ||
			fail "a refused CA was stored"
	fi
}

t_ca_challenge() {
	new_registry cachal
	runr ca add "$T/pki/root/cert.pem"
	expect_rc 0
	[ "$(wc -l <"$T/out")" -eq 2 ] || fail "ca add printed $(wc -l <"$T/out") lines"
	[ "$(sed -n 1p "$T/out")" = "ca Test-Root added (unverified)" ] || fail "line 1: $(sed -n 1p "$T/out")"
	expect_out '^challenge: [0-9a-f]{32}$'
	[ -n "$(awk '/^challenge:/{print $2}' "$T/out")" ] || fail "awk cannot extract the challenge"
	# The same certificate or name again is refused.
	runr ca add "$T/pki/root/cert.pem"
	expect_rc 2
	expect_err_line
	runr ca add "$T/pki/int/cert.pem" --name Test-Root
	expect_rc 2
	expect_err_line
	runr ca add "$T/pki/int/cert.pem" --name factory-ca --backend b1 --auto-enroll --username-check rewrite
	expect_rc 0
	expect_out '^ca factory-ca added \(unverified\)$'
	runr ca list
	expect_rc 0
	expect_out '^NAME +VERIFIED +STATUS +BACKEND +AUTO-ENROLL +USERNAME-CHECK +NOT-AFTER +SHA256 +SUBJECT$'
	expect_out '^Test-Root +no +enabled +- +off +default '
	expect_out '^factory-ca +no +enabled +b1 +on +rewrite '
	runr ca list --json
	expect_rc 0
	$PY - "$T/out" <<'EOF' || fail "ca list --json content"
import json, sys
cas = {c["name"]: c for c in json.load(open(sys.argv[1]))}
assert set(cas) == {"Test-Root", "factory-ca"}, cas
r = cas["Test-Root"]
assert r["verified"] is False and r["backend"] is None and r["auto_enroll"] is False
assert r["status"] == "enabled", r["status"]
assert r["subject"] == "CN=Test Root", r["subject"]
assert len(r["sha256"]) == 64 and r["not_after"] > 0 and len(r["challenge"]) == 32
assert cas["factory-ca"]["auto_enroll"] is True and cas["factory-ca"]["backend"] == "b1"
assert "username_check" in r and r["username_check"] is None, r
assert cas["factory-ca"]["username_check"] == "rewrite", cas["factory-ca"]
EOF
}

t_ca_verify() {
	new_registry caver
	local ch
	runr ca add "$T/pki/root/cert.pem"
	ch=$(awk '/^challenge:/{print $2}' "$T/out")
	"$BIN" pki verification-cert --ca "$T/pki/root" --challenge wrongchallenge --out "$T/caver/wrong.pem" >/dev/null
	runr ca verify Test-Root "$T/caver/wrong.pem"
	expect_rc 2
	expect_err_line 'verification failed'
	# Right challenge, wrong key (another CA signed it).
	"$BIN" pki verification-cert --ca "$T/pki/root2" --challenge "$ch" --out "$T/caver/otherkey.pem" >/dev/null
	runr ca verify Test-Root "$T/caver/otherkey.pem"
	expect_rc 2
	expect_err_line 'verification failed'
	runr ca list --json
	grep -q '"verified": false' "$T/out" || fail "CA verified after a failed proof"
	"$BIN" pki verification-cert --ca "$T/pki/root" --challenge "$ch" --out "$T/caver/good.pem" >/dev/null
	runr ca verify Test-Root "$T/caver/good.pem"
	expect_rc 0
	[ "$(cat "$T/out")" = "ca Test-Root verified" ] || fail "output: $(cat "$T/out")"
	runr ca list
	expect_out '^Test-Root +yes'
	runr ca verify No-Such-CA "$T/caver/good.pem"
	expect_rc 2
	expect_err_line 'No-Such-CA'
}

t_ca_set_remove() {
	new_registry caset
	add_verified_ca
	runr ca set Test-Root --backend b2 --auto-enroll on
	expect_rc 0
	expect_out '^ca Test-Root: backend b2, auto-enroll on \(daemon not running\)$'
	runr ca list --json
	$PY -c 'import json,sys; c=json.load(open(sys.argv[1]))[0]; assert c["backend"]=="b2" and c["auto_enroll"] and c["verified"]' \
		"$T/out" || fail "ca set not stored"
	runr ca set Nope --auto-enroll off
	expect_rc 2
	expect_err_line
	# CA status: disabled and back; revoked is final
	runr ca set Test-Root --status disabled
	expect_rc 0
	expect_out '^ca Test-Root: status disabled \(daemon not running\)$'
	runr ca list
	expect_out '^Test-Root +yes +disabled +b2 +on'
	runr ca set Test-Root --status enabled
	expect_rc 0
	# the CA's own MQTT user-name rule, and back to the config's
	runr ca set Test-Root --username-check pass
	expect_rc 0
	expect_out '^ca Test-Root: username-check pass \(daemon not running\)$'
	runr ca list
	expect_out '^Test-Root +yes +enabled +b2 +on +pass '
	runr ca set Test-Root --username-check strict --backend b2
	expect_rc 0
	expect_out '^ca Test-Root: backend b2, username-check strict \(daemon not running\)$'
	runr ca list --json
	$PY -c 'import json,sys; c=json.load(open(sys.argv[1]))[0]; assert c["username_check"]=="strict", c' \
		"$T/out" || fail "ca set --username-check strict not stored"
	runr ca set Test-Root --username-check loose
	expect_rc 1
	expect_err_line "--username-check wants strict.rewrite.pass.default, not 'loose'"
	runr ca set Test-Root --username-check default
	expect_rc 0
	expect_out '^ca Test-Root: username-check default \(daemon not running\)$'
	runr ca list --json
	$PY -c 'import json,sys; c=json.load(open(sys.argv[1]))[0]; assert c["username_check"] is None, c' \
		"$T/out" || fail "ca set --username-check default not stored"
	runr ca set Test-Root --status inactive
	expect_rc 1
	expect_err_line 'enabled\|disabled\|revoked'
	runr ca set Test-Root --status revoked
	expect_rc 0
	runr ca list --json
	$PY -c 'import json,sys; c=json.load(open(sys.argv[1]))[0]; assert c["status"]=="revoked", c' \
		"$T/out" || fail "ca set --status revoked not stored"
	runr ca set Test-Root --status enabled
	expect_rc 2
	expect_err_line 'revoked is final'
	runr ca remove Test-Root
	expect_rc 0
	expect_out '^ca Test-Root removed \(daemon not running\)$'
	runr ca remove Test-Root
	expect_rc 2
	expect_err_line 'no such CA'
}

t_device_crud() {
	new_registry dev
	local th upper colons
	th=$(thumb_of "$T/pki/thumb1/cert.pem")
	upper=$(echo "$th" | tr a-f A-F)
	colons=$(echo "$upper" | sed 's/../&:/g; s/:$//')
	runr device add dev1
	expect_rc 0
	expect_out '^device dev1 added \(attestation ca\)$'
	runr device add dev1
	expect_rc 2
	expect_err_line 'already exists'
	runr device add thumb1 --thumbprint "$colons" --backend b1
	expect_rc 0
	expect_out '^device thumb1 added \(attestation thumbprint\)$'
	runr device add dev2 --status suspended --backend b2
	expect_rc 0
	runr device add gw/module1
	expect_rc 0
	runr device show thumb1
	expect_rc 0
	expect_out "^thumbprint: $th\$"
	expect_out '^attestation: thumbprint$'
	expect_out '^backend: b1$'
	runr device show thumb1 --json
	expect_rc 0
	$PY -m json.tool "$T/out" >/dev/null || fail "device show --json is not JSON"
	$PY -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["thumbprint"]==sys.argv[2] and d["secondary"] is None and d["status"]=="enabled", d' \
		"$T/out" "$th" || fail "device show --json content"
	runr device set dev1 --status disabled
	expect_rc 0
	[ "$(cat "$T/out")" = "device dev1: status disabled (daemon not running)" ] || fail "set output: $(cat "$T/out")"
	runr device set thumb1 --secondary "$(thumb_of "$T/pki/thumb2/cert.pem")"
	expect_rc 0
	runr device show thumb1
	expect_out "^secondary: $(thumb_of "$T/pki/thumb2/cert.pem")\$"
	runr device set thumb1 --secondary none
	expect_rc 0
	runr device show thumb1
	expect_out '^secondary: -$'
	runr device set nobody --status enabled
	expect_rc 2
	expect_err_line 'no such device'
	runr device list
	expect_rc 0
	expect_out '^ID +STATUS +ATTESTATION +BACKEND +LAST-SEEN$'
	expect_out '^dev1 +disabled +ca +- +never$'
	expect_out '^dev2 +suspended +ca +b2 +never$'
	expect_out '^thumb1 +enabled +thumbprint +b1 +never$'
	runr device list --status disabled
	expect_rc 0
	expect_out '^dev1 '
	expect_no_out '^(dev2|thumb1|gw/module1) '
	runr device list --json
	expect_rc 0
	$PY -m json.tool "$T/out" >/dev/null || fail "device list --json is not JSON"
	[ "$($PY -c 'import json,sys; print(" ".join(d["id"] for d in json.load(open(sys.argv[1]))))' "$T/out")" = \
		"dev1 dev2 gw/module1 thumb1" ] || fail "device list --json ids: $(cat "$T/out")"
	runr device list --status enabled --json
	[ "$($PY -c 'import json,sys; print(len(json.load(open(sys.argv[1]))))' "$T/out")" = 2 ] || fail "enabled filter"
	runr device list --status quarantined --json
	expect_rc 0
	[ "$($PY -c 'import json,sys; print(json.load(open(sys.argv[1])))' "$T/out")" = "[]" ] || fail "empty list is not []"
	runr device remove dev2
	expect_rc 0
	expect_out '^device dev2 removed \(daemon not running\)$'
	runr device show dev2
	expect_rc 2
	expect_err_line 'no such device'
	runr device remove dev2
	expect_rc 2
	expect_err_line
}

t_device_cert_and_expiring() {
	new_registry exp
	runr device add soon --cert "$T/pki/soon/cert.pem"
	expect_rc 0
	expect_out 'attestation thumbprint'
	runr device show soon
	expect_out "^thumbprint: $(thumb_of "$T/pki/soon/cert.pem")\$"
	# The certificate must name the device.
	runr device add other --cert "$T/pki/soon/cert.pem"
	expect_rc 2
	expect_err_line 'CN'
	runr device add dev1
	expect_rc 0
	runr device expiring --days 30
	expect_rc 0
	expect_out '^soon +enabled +[0-9T:-]+Z +(9|10)$'
	expect_no_out '^dev1 '
	runr device expiring --days 5 --json
	expect_rc 0
	[ "$($PY -c 'import json,sys; print(len(json.load(open(sys.argv[1]))))' "$T/out")" = 0 ] || fail "expiring --days 5"
	runr device expiring --days 30 --json
	[ "$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))[0]["id"])' "$T/out")" = soon ] || fail "expiring json"
}

t_unknown_device_show() {
	new_registry unk
	runr device add dev1
	runr device show nobody
	expect_rc 2
	expect_err_line 'nobody'
	[ ! -s "$T/out" ] || fail "stdout on not found"
}

t_missing_registry() {
	new_registry missing
	runr device list
	expect_rc 3
	expect_err_line 'registry'
	runr ca list
	expect_rc 3
	expect_err_line
	runr device set dev1 --status disabled
	expect_rc 3
	expect_err_line
	[ ! -e "$REG" ] || fail "a read or an update created the registry"
	# Without -r the config must be there.
	run -c "$T/no-such.conf" device list
	expect_rc 3
	expect_err_line 'no-such.conf'
}

t_corrupt_registry() {
	new_registry corrupt
	head -c 4096 /dev/urandom >"$REG"
	cp "$REG" "$T/corrupt/orig"
	local -a cmds=(
		"device list"
		"device show dev1"
		"device add dev1"
		"device set dev1 --status disabled"
		"device remove dev1"
		"ca list"
		"ca add $T/pki/root/cert.pem"
		"verify $T/pki/dev1/chain.pem"
	)
	local c
	for c in "${cmds[@]}"; do
		# shellcheck disable=SC2086
		runr $c
		[ "$RC" -eq 3 ] || fail "'$c' on junk: exit $RC, wanted 3"
		expect_err_line
		cmp -s "$REG" "$T/corrupt/orig" || fail "'$c' modified the corrupt registry"
	done
	# A foreign SQLite database is not a registry either.
	rm -f "$REG"
	$PY -c 'import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute("create table t(x)"); c.commit()' "$REG"
	cp "$REG" "$T/corrupt/orig"
	runr device add dev1
	expect_rc 3
	expect_err_line
	cmp -s "$REG" "$T/corrupt/orig" || fail "device add modified a foreign database"
}

t_verify_accept() {
	new_registry vok
	add_verified_ca
	runr device add dev1
	runr verify "$T/pki/dev1/chain.pem"
	expect_rc 0
	expect_out '^accepted: device=dev1 method=ca ca=Test-Root backend=- '
	# Leaf alone plus --chain: same answer.
	runr verify "$T/pki/dev1/cert.pem" --chain "$T/pki/int/cert.pem"
	expect_rc 0
	expect_out '^accepted: device=dev1 method=ca ca=Test-Root'
	# Leaf alone, no intermediate: the chain cannot be built.
	runr verify "$T/pki/dev1/cert.pem"
	expect_rc 2
	expect_out '^refused: '
	# --ca: only that file is trusted, no registry needed.
	run -c "$T/no-such.conf" -r "$T/vok/none.db" verify "$T/pki/dev1/chain.pem" --ca "$T/pki/root/cert.pem"
	expect_rc 0
	expect_out '^accepted: device=dev1 method=ca ca=cli-ca-1 backend=-$'
	run -c "$T/no-such.conf" -r "$T/vok/none.db" verify "$T/pki/dev1/chain.pem" --ca "$T/pki/root2/cert.pem"
	expect_rc 2
	expect_out '^refused: unknown_ca '
	[ ! -e "$T/vok/none.db" ] || fail "verify --ca created a registry"
}

t_verify_refusals() {
	new_registry vref
	add_verified_ca
	local d
	for d in dev1 expired future srvonly stranger undernotca; do
		"$BIN" -c "$T/no-such.conf" -r "$REG" device add "$d" >/dev/null
	done
	local -a cases=(
		"stranger/chain.pem|unknown_ca"
		"expired/chain.pem|cert_expired"
		"future/chain.pem|cert_not_yet_valid"
		"srvonly/chain.pem|bad_eku"
		"dev2/chain.pem|unknown_device"
		"undernotca/chain.pem|bad_chain"
	)
	local c
	for c in "${cases[@]}"; do
		runr verify "$T/pki/${c%%|*}"
		[ "$RC" -eq 2 ] || fail "${c%%|*}: exit $RC, wanted 2 ($(cat "$T/out" "$T/err"))"
		grep -qE "^refused: ${c##*|} \(.+\)$" "$T/out" || fail "${c%%|*}: $(cat "$T/out"), wanted ${c##*|}"
	done
	# --at after notAfter: expired.
	runr verify "$T/pki/dev1/chain.pem" --at $(($(date +%s) + 400 * 86400))
	expect_rc 2
	expect_out '^refused: cert_expired '
	runr verify "$T/pki/dev1/chain.pem" --at $(($(date +%s) + 86400))
	expect_rc 0
	# Device status and attestation come from the registry.
	runr device set dev1 --status quarantined
	runr verify "$T/pki/dev1/chain.pem"
	expect_rc 2
	expect_out '^refused: quarantined \(device dev1 status quarantined\)$'
	runr device remove dev1
	runr device add dev1 --thumbprint "$(thumb_of "$T/pki/thumb1/cert.pem")"
	runr verify "$T/pki/dev1/chain.pem"
	expect_rc 2
	expect_out '^refused: attestation_mismatch '
	# Unproven CA: registered, never verified.
	new_registry vunproven
	runr ca add "$T/pki/root/cert.pem"
	runr device add dev1
	runr verify "$T/pki/dev1/chain.pem"
	expect_rc 2
	expect_out '^refused: unproven_ca '
}

t_verify_thumbprint() {
	new_registry vthumb
	runr device add thumb1 --thumbprint "$(thumb_of "$T/pki/thumb1/cert.pem")"
	runr verify "$T/pki/thumb1/cert.pem"
	expect_rc 0
	expect_out '^accepted: device=thumb1 method=thumbprint ca=- backend=- '
	# Rotation: the secondary pin admits the new certificate... of the same CN only.
	runr verify "$T/pki/thumb2/cert.pem"
	expect_rc 2
	expect_out '^refused: thumbprint_mismatch '
	# A device pinned to another certificate.
	runr device add thumb2 --thumbprint "$(thumb_of "$T/pki/thumb1/cert.pem" | tr 0-9a-f 1-9a-f0)"
	runr verify "$T/pki/thumb2/cert.pem"
	expect_rc 2
	expect_out '^refused: thumbprint_mismatch '
	runr device set thumb2 --secondary "$(thumb_of "$T/pki/thumb2/cert.pem")"
	runr verify "$T/pki/thumb2/cert.pem"
	expect_rc 0
	expect_out '^accepted: device=thumb2 method=thumbprint'
	runr device set thumb2 --status disabled
	runr verify "$T/pki/thumb2/cert.pem"
	expect_rc 2
	expect_out '^refused: disabled '
}

# With a config: backends are checked and configured CRLs apply.
t_verify_with_config() {
	new_registry vconf
	local conf="$T/vconf/ktlsgate.conf"
	"$BIN" pki server --cn localhost --out "$T/vconf/server" --ca "$T/pki/int" >/dev/null
	"$BIN" pki crl --ca "$T/pki/int" --out "$T/vconf/int.crl" "$T/pki/dev2/cert.pem" >/dev/null
	cat >"$conf" <<EOF
[daemon]
cert = server/chain.pem
key = server/key.pem
registry = registry.db
control_socket = ctl.sock
default_backend = local

[backend local]
address = 127.0.0.1:1883

[crl]
factory = int.crl
EOF
	local ch
	run -c "$conf" ca add "$T/pki/root/cert.pem"
	expect_rc 0
	ch=$(awk '/^challenge:/{print $2}' "$T/out")
	"$BIN" pki verification-cert --ca "$T/pki/root" --challenge "$ch" --out "$T/vconf/vc.pem" >/dev/null
	run -c "$conf" ca verify Test-Root "$T/vconf/vc.pem"
	expect_rc 0
	run -c "$conf" ca add "$T/pki/int/cert.pem" --name factory
	ch=$(awk '/^challenge:/{print $2}' "$T/out")
	"$BIN" pki verification-cert --ca "$T/pki/int" --challenge "$ch" --out "$T/vconf/vc2.pem" >/dev/null
	run -c "$conf" ca verify factory "$T/vconf/vc2.pem"
	expect_rc 0
	run -c "$conf" device add dev1
	run -c "$conf" device add dev2
	run -c "$conf" verify "$T/pki/dev1/chain.pem"
	expect_rc 0
	expect_out '^accepted: device=dev1 method=ca ca=(factory|Test-Root) backend=local$'
	run -c "$conf" verify "$T/pki/dev2/chain.pem"
	expect_rc 2
	expect_out '^refused: cert_revoked '
	# A backend the config does not have is refused, naming the ones it has...
	run -c "$conf" device set dev1 --backend elsewhere
	expect_rc 2
	expect_err_line "backend 'elsewhere' is not configured in $conf \(configured: local\)"
	# ...but a registry edited without the config can still name one: verify says so.
	run -c "$T/no-such.conf" -r "$T/vconf/registry.db" device set dev1 --backend elsewhere
	expect_rc 0
	expect_out '^device dev1: backend elsewhere \(daemon not running\)$'
	run -c "$conf" verify "$T/pki/dev1/chain.pem"
	expect_rc 2
	expect_out '^refused: no_backend \(backend elsewhere is not configured\)$'
	# Auto-enroll: an unknown device under an auto-enroll CA would be created.
	run -c "$conf" ca set factory --auto-enroll on
	run -c "$conf" device remove dev1
	run -c "$conf" verify "$T/pki/dev1/chain.pem"
	expect_rc 0
	expect_out '^accepted: device=dev1 .*backend=local \(would be enrolled\)$'
	# A config that does not parse is an error even with -r.
	echo "[nonsense" >"$T/vconf/bad.conf"
	run -c "$T/vconf/bad.conf" -r "$T/vconf/registry.db" device list
	expect_rc 3
	expect_err_line
}

# A fake daemon: answers the control protocol (control.h) with canned replies.
start_fake_daemon() {
	local sock=$1
	$PY - "$sock" <<'EOF' &
import json, os, socket, sys
path = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(path)
s.listen(8)
while True:
    c, _ = s.accept()
    f = c.makefile("rwb")
    line = f.readline().decode().rstrip("\n")
    verb, _, arg = line.partition(" ")
    out = []
    if verb == "device-changed":
        out = ["OK closed=2"]
    elif verb == "ca-changed":
        out = ["ERR trust rebuild failed: test"] if arg == "Broken" else ["OK closed=0"]
    elif verb == "kill":
        out = ["OK closed=1" if arg == "dev1" else "OK closed=0"]
    elif verb == "sessions":
        now = int(__import__("time").time())
        out = [json.dumps({"id": 7, "device": "dev1", "peer": "127.0.0.1:5000", "state": "relaying",
                           "mode": "ktls", "tls": "resumed", "backend": "local", "ca": "factory", "method": "ca",
                           "since": now - 30, "bytes_up": 100, "bytes_down": 23, "worker": 0}),
               json.dumps({"id": 8, "device": "", "peer": "127.0.0.1:5001", "state": "tls_handshake",
                           "mode": "", "backend": "", "ca": "", "method": "", "since": now,
                           "bytes_up": 0, "bytes_down": 0, "worker": 1}),
               "OK"]
    elif verb == "status":
        out = [json.dumps({"version": "0.1.0", "pid": 42, "connections": 2, "registry": "/x/r.db"})]
        # one line per worker after the status object (control.h)
        out += [json.dumps({"worker": i, "accepted": 10 + i, "handshakes_ok": 7, "handshakes_failed": 2,
                            "handshakes_timeout": 1, "connections": 1, "sessions": 1 - i,
                            "bytes_up": 100 * (i + 1), "bytes_down": 23, "cpu_s": 0.25}) for i in (0, 1)]
        out += ["OK"]
    else:
        out = ["ERR unknown request"]
    f.write(("\n".join(out) + "\n").encode())
    f.flush()
    c.close()
EOF
	FAKE_PID=$!
	local i
	for i in $(seq 50); do
		[ -S "$sock" ] && return 0
		sleep 0.1
	done
	fail "fake daemon did not start"
}

t_daemon_control() {
	new_registry ctl
	local conf="$T/ctl/ktlsgate.conf" sock="$T/ctl/ctl.sock"
	"$BIN" pki server --cn localhost --out "$T/ctl/server" --ca "$T/pki/int" >/dev/null
	printf '[daemon]\ncert = server/chain.pem\nkey = server/key.pem\nregistry = registry.db\ncontrol_socket = ctl.sock\n' >"$conf"
	# Not running first.
	run -c "$conf" status
	expect_rc 3
	expect_err_line "^ktlsgate: daemon not running \(control socket .*ctl.sock\)$"
	run -c "$conf" session list
	expect_rc 3
	expect_err_line 'daemon not running'
	start_fake_daemon "$sock"
	run -c "$conf" device add dev1
	expect_rc 0
	run -c "$conf" device set dev1 --status disabled
	expect_rc 0
	[ "$(cat "$T/out")" = "device dev1: status disabled (closed 2 live sessions)" ] || fail "set: $(cat "$T/out")"
	run -c "$conf" device remove dev1
	expect_out '^device dev1 removed \(closed 2 live sessions\)$'
	# The registry changed but the daemon refused to apply it: exit 3, one line.
	run -c "$conf" ca add "$T/pki/root/cert.pem" --name Broken
	expect_rc 3
	expect_err_line 'did not apply'
	expect_out '^ca Broken added \(unverified\)$'
	run -c "$conf" session kill dev1
	expect_rc 0
	expect_out '^device dev1: closed 1 live sessions$'
	run -c "$conf" session kill dev9
	expect_rc 2
	expect_err_line '^ktlsgate: no live session for dev9$'
	run -c "$conf" session list
	expect_rc 0
	expect_out '^ID +DEVICE +PEER +STATE +MODE +TLS +BACKEND +AGE +BYTES +WORKER +PID$'
	# PID: which process holds it (a handover lists the old one's too); "-" if unsaid
	expect_out '^7 +dev1 +127\.0\.0\.1:5000 +relaying +ktls +resumed +local +3[0-9]s +123 +0 +-$'
	expect_out '^8 +- +127\.0\.0\.1:5001 +tls_handshake +- +- +- .* 1 +-$'
	run -c "$conf" session list --json
	expect_rc 0
	[ "$($PY -c 'import json,sys; print([s["id"] for s in json.load(open(sys.argv[1]))])' "$T/out")" = "[7, 8]" ] ||
		fail "session list --json: $(cat "$T/out")"
	run -c "$conf" status
	expect_rc 0
	expect_out '^version: 0\.1\.0$'
	expect_out '^connections: 2$'
	# the per-worker lines: a table (failed = failed + timed out), not a key
	expect_out '^WORKER +ACCEPTED +HS_OK +HS_FAILED +CONNS +SESSIONS +BYTES_UP +BYTES_DOWN +CPU_S$'
	expect_out '^0 +10 +7 +3 +1 +1 +100 +23 +0\.25$'
	expect_out '^1 +11 +7 +3 +1 +0 +200 +23 +0\.25$'
	grep -q '^per_worker' "$T/out" && fail "status printed per_worker as a key: $(cat "$T/out")"
	run -c "$conf" status --json
	expect_rc 0
	$PY -c 'import json,sys; s = json.load(open(sys.argv[1])); assert s["pid"] == 42
assert [w["accepted"] for w in s["per_worker"]] == [10, 11], s' "$T/out" || fail "status --json: $(cat "$T/out")"
	# -r without a config file: the control socket falls back to the default path.
	run -c "$T/no-such.conf" -r "$REG" device add dev5
	expect_rc 0
}

# --- device import -----------------------------------------------------------------------

# runr_in FILE ARGS...: runr with stdin from FILE.
runr_in() {
	local in=$1
	shift
	set +e
	"$BIN" -c "$T/no-such.conf" -r "$REG" "$@" <"$in" >"$T/out" 2>"$T/err"
	RC=$?
	set -e
}

# ids: the registry's device ids, space separated, in order.
ids() {
	"$BIN" -c "$T/no-such.conf" -r "$REG" device list --json |
		$PY -c 'import json,sys; print(" ".join(d["id"] for d in json.load(sys.stdin)))'
}

t_import_csv() {
	new_registry impcsv
	local th th2
	th=$(thumb_of "$T/pki/thumb1/cert.pem")
	th2=$(thumb_of "$T/pki/thumb2/cert.pem")
	# Columns in any order, quoting, CRLF, a blank line, empty = not given.
	printf 'status,id,backend,thumbprint,secondary\r\n' >"$T/impcsv/in.csv"
	printf 'enabled,c1,,,\r\n' >>"$T/impcsv/in.csv"
	printf 'disabled,c2,b2,,\r\n\r\n' >>"$T/impcsv/in.csv"
	printf ',"t,1",b1,%s,%s\n' "$(echo "$th" | tr a-f A-F)" "$th2" >>"$T/impcsv/in.csv"
	printf 'quarantined,gw/mod,,,\n' >>"$T/impcsv/in.csv"
	runr device import "$T/impcsv/in.csv"
	expect_rc 0
	[ "$(cat "$T/out")" = "imported 4 devices (daemon not running)" ] || fail "output: $(cat "$T/out")"
	expect_no_err
	[ "$(ids)" = "c1 c2 gw/mod t,1" ] || fail "ids: $(ids)"
	runr device show --json 't,1'
	$PY -c 'import json,sys; d=json.load(open(sys.argv[1])); assert (d["status"], d["attestation"], d["thumbprint"], d["secondary"], d["backend"]) == ("enabled", "thumbprint", sys.argv[2], sys.argv[3], "b1"), d' \
		"$T/out" "$th" "$th2" || fail "t,1: $(cat "$T/out")"
	runr device show --json c2
	$PY -c 'import json,sys; d=json.load(open(sys.argv[1])); assert (d["status"], d["attestation"], d["backend"]) == ("disabled", "ca", "b2"), d' "$T/out" ||
		fail "c2: $(cat "$T/out")"
	runr device show --json gw/mod
	expect_out '"status": "quarantined"'
}

t_import_jsonl() {
	new_registry impjson
	local th
	th=$(thumb_of "$T/pki/thumb1/cert.pem")
	{
		printf '{"id": "j1"}\n'
		printf '{"id": "j2", "status": "suspended", "backend": "b9", "secondary": null}\n'
		printf '\n'
		printf '  {"id": "j3", "thumbprint": "%s"}  \n' "$th"
	} >"$T/impjson/in.jsonl"
	runr device import "$T/impjson/in.jsonl"
	expect_rc 0
	[ "$(cat "$T/out")" = "imported 3 devices (daemon not running)" ] || fail "output: $(cat "$T/out")"
	[ "$(ids)" = "j1 j2 j3" ] || fail "ids: $(ids)"
	runr device show --json j2
	$PY -c 'import json,sys; d=json.load(open(sys.argv[1])); assert (d["status"], d["backend"]) == ("suspended", "b9"), d' "$T/out" ||
		fail "j2: $(cat "$T/out")"
	runr device show --json j3
	expect_out "\"thumbprint\": \"$th\""
	# --format forces the reader: the same file read as CSV has no id column.
	new_registry impjson2
	runr device import --format csv "$T/impjson/in.jsonl"
	expect_rc 2
	expect_err_line 'in\.jsonl:1: .*nothing imported$'
	[ ! -e "$REG" ] || fail "a refused import created the registry"
}

t_import_bad_line() {
	new_registry impbad
	runr device add keep1
	expect_rc 0
	local bad good=0
	# A bad line in the middle: nothing written, the line and the problem named.
	for bad in 'x|3|bad status .sleeping.|mid1,sleeping,' \
		'x|3|bad device id .\.\./x.|../x,enabled,' \
		'x|3|thumbprint wants 64 hex digits|mid1,enabled,1234' \
		'x|3|4 columns, the header has 3|a,b,c,d' \
		'x|3|unterminated quote|"mid1,enabled,'; do
		IFS='|' read -r _ line why text <<<"$bad"
		printf 'id,status,thumbprint\nfirst,enabled,\n%s\nlast,enabled,\n' "$text" >"$T/impbad/in.csv"
		runr device import "$T/impbad/in.csv"
		expect_rc 2
		expect_err_line "^ktlsgate: device import: .*in\.csv:$line: $why.*nothing imported\$"
		[ ! -s "$T/out" ] || fail "stdout on a refused import: $(cat "$T/out")"
		[ "$(ids)" = "keep1" ] || fail "a refused import wrote: $(ids)"
		good=$((good + 1))
	done
	[ "$good" = 5 ] || fail "ran $good cases"
	printf '{"id": "j1"}\n{"id": "j2", "colour": "red"}\n' >"$T/impbad/in.jsonl"
	runr device import "$T/impbad/in.jsonl"
	expect_rc 2
	expect_err_line "in\.jsonl:2: unknown key 'colour'"
	printf '{"id": "j1"}\n{"id": "j2"\n' >"$T/impbad/in.jsonl"
	runr device import "$T/impbad/in.jsonl"
	expect_rc 2
	expect_err_line 'in\.jsonl:2: not JSON'
	printf '{"id": "j1"}\n{"id": 7}\n' >"$T/impbad/in.jsonl"
	runr device import "$T/impbad/in.jsonl"
	expect_rc 2
	expect_err_line "in\.jsonl:2: 'id' is not a string"
	[ "$(ids)" = "keep1" ] || fail "a refused JSONL import wrote: $(ids)"
	runr device import "$T/impbad/no-such.csv"
	expect_rc 3
	expect_err_line 'no-such\.csv: No such file'
}

t_import_duplicate() {
	new_registry impdup
	runr device add d2
	expect_rc 0
	# Already in the registry (line 3), then twice in the file (line 4): refused by the
	# store inside the transaction, so the rows before it are rolled back too.
	printf 'id\nd1\nd2\nd3\n' >"$T/impdup/a.csv"
	runr device import "$T/impdup/a.csv"
	expect_rc 2
	expect_err_line '^ktlsgate: device import: .*a\.csv:3: device d2: already exists.*nothing imported$'
	[ "$(ids)" = "d2" ] || fail "rolled back? $(ids)"
	printf 'id\nd1\nd3\nd1\n' >"$T/impdup/b.csv"
	runr device import "$T/impdup/b.csv"
	expect_rc 2
	expect_err_line 'b\.csv:4: device d1: already exists'
	[ "$(ids)" = "d2" ] || fail "rolled back? $(ids)"
	# A thumbprint pinned twice in one file.
	local th
	th=$(thumb_of "$T/pki/thumb1/cert.pem")
	printf 'id,thumbprint\np1,%s\np2,%s\n' "$th" "$th" >"$T/impdup/c.csv"
	runr device import "$T/impdup/c.csv"
	expect_rc 2
	expect_err_line 'c\.csv:3: device p2: .*thumbprint is taken'
	[ "$(ids)" = "d2" ] || fail "rolled back? $(ids)"
}

t_import_cert() {
	new_registry impcert
	mkdir -p "$T/impcert/certs"
	cp "$T/pki/thumb1/cert.pem" "$T/impcert/certs/thumb1.pem"
	cp "$T/pki/soon/cert.pem" "$T/impcert/certs/soon.pem"
	# cert = `device add --cert`: relative to the file's directory, CN must be the id.
	printf 'id,cert,secondary\nthumb1,certs/thumb1.pem,\nsoon,%s,%s\n' \
		"$T/impcert/certs/soon.pem" "$(thumb_of "$T/pki/thumb2/cert.pem")" >"$T/impcert/in.csv"
	(cd / && "$BIN" -c "$T/no-such.conf" -r "$REG" device import "$T/impcert/in.csv") >"$T/out" 2>"$T/err" && RC=0 || RC=$?
	expect_rc 0
	expect_no_err
	runr device show --json thumb1
	$PY -c 'import json,sys; d=json.load(open(sys.argv[1])); assert (d["attestation"], d["thumbprint"]) == ("thumbprint", sys.argv[2]) and d["cert_not_after"] > 0, d' \
		"$T/out" "$(thumb_of "$T/pki/thumb1/cert.pem")" || fail "thumb1: $(cat "$T/out")"
	runr device show --json soon
	$PY -c 'import json,sys; d=json.load(open(sys.argv[1])); assert (d["thumbprint"], d["secondary"]) == (sys.argv[2], sys.argv[3]), d' \
		"$T/out" "$(thumb_of "$T/pki/soon/cert.pem")" "$(thumb_of "$T/pki/thumb2/cert.pem")" || fail "soon: $(cat "$T/out")"
	# The CN is not the id; a thumbprint and a cert; a missing file: line named, nothing written.
	new_registry impcert2
	printf '{"id": "ok1"}\n{"id": "dev9", "cert": "%s"}\n' "$T/pki/dev1/cert.pem" >"$T/impcert2/a.jsonl"
	runr device import "$T/impcert2/a.jsonl"
	expect_rc 2
	expect_err_line 'a\.jsonl:2: cert .*certificate CN is not the device id'
	printf 'id,cert,thumbprint\ndev1,%s,%s\n' "$T/pki/dev1/cert.pem" "$(thumb_of "$T/pki/dev1/cert.pem")" >"$T/impcert2/b.csv"
	runr device import "$T/impcert2/b.csv"
	expect_rc 2
	expect_err_line 'b\.csv:2: give thumbprint or cert, not both'
	printf 'id,cert\ndev1,nope.pem\n' >"$T/impcert2/c.csv"
	runr device import "$T/impcert2/c.csv"
	expect_rc 2
	expect_err_line 'c\.csv:2: cert nope\.pem: '
	[ ! -e "$REG" ] || fail "a refused import created the registry"
}

t_import_stdin() {
	new_registry impstdin
	printf 'id,status\ns1,enabled\ns2,disabled\n' >"$T/impstdin/in.csv"
	runr_in "$T/impstdin/in.csv" device import -
	expect_rc 0
	[ "$(cat "$T/out")" = "imported 2 devices (daemon not running)" ] || fail "output: $(cat "$T/out")"
	printf '{"id": "s3"}\n' >"$T/impstdin/in.jsonl"
	runr_in "$T/impstdin/in.jsonl" device import - --format jsonl
	expect_rc 0
	[ "$(ids)" = "s1 s2 s3" ] || fail "ids: $(ids)"
	# A bad line on stdin is named "-:LINE".
	printf 'id\ns4\n../x\n' >"$T/impstdin/bad.csv"
	runr_in "$T/impstdin/bad.csv" device import -
	expect_rc 2
	expect_err_line '^ktlsgate: device import: -:3: bad device id'
	[ "$(ids)" = "s1 s2 s3" ] || fail "ids: $(ids)"
	# Empty input: nothing to import, nothing to tell the daemon.
	new_registry impempty
	runr_in /dev/null device import - --format jsonl
	expect_rc 0
	[ "$(cat "$T/out")" = "imported 0 devices (nothing to notify)" ] || fail "empty: $(cat "$T/out")"
}

ALL_TESTS=(
	t_help
	t_usage_errors
	t_pki_chain
	t_pki_verification_cert_and_crl
	t_ca_add_refusals
	t_ca_challenge
	t_ca_verify
	t_ca_set_remove
	t_device_crud
	t_device_cert_and_expiring
	t_unknown_device_show
	t_missing_registry
	t_corrupt_registry
	t_verify_accept
	t_verify_refusals
	t_verify_thumbprint
	t_verify_with_config
	t_daemon_control
	t_import_csv
	t_import_jsonl
	t_import_bad_line
	t_import_duplicate
	t_import_cert
	t_import_stdin
)

main() {
	local t rc passed=0 failed=0 list=("${ALL_TESTS[@]}")
	[ -n "${KG_ONLY:-}" ] && read -r -a list <<<"$KG_ONLY"
	set +e
	(
		set -e
		setup_pki
	)
	rc=$?
	set -e
	if [ "$rc" -ne 0 ]; then
		echo "FAIL setup_pki"
		echo "0 passed, 1 failed"
		exit 1
	fi
	for t in "${list[@]}"; do
		# A subshell per test: set -e aborts the test at its first failed assertion,
		# not the file, and a test's variables and fake daemon die with it.
		set +e
		(
			set -e
			trap '[ -z "$FAKE_PID" ] || kill "$FAKE_PID" 2>/dev/null || true' EXIT
			"$t"
		)
		rc=$?
		set -e
		if [ "$rc" -eq 0 ]; then
			echo "PASS $t"
			passed=$((passed + 1))
		else
			echo "FAIL $t"
			failed=$((failed + 1))
		fi
	done
	echo "$passed passed, $failed failed"
	[ "$failed" -eq 0 ]
}

main
