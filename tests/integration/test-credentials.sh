#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# test-credentials.sh - device credentials beside X.509 (issue 15) through the real
# `ktlsgate` CLI and a real registry, checked by independent tools: a SAS key made by
# `device add --auth sas` signs a token with `openssl dgst -mac HMAC` that the pure
# parser + HMAC path (kg-regtool sas-verify, the CONNECT check's core) accepts from the
# stored keys; a token's sha256sum is the stored hash (sqlite3); a password's stored
# scrypt string is recomputed by python3's hashlib.scrypt. Rotation changes only the
# slot asked for; show/list/credentials never print a secret or a hash; removing a
# device removes its credential rows; bad arguments give one-line errors and exit 1/2.
# t_engine_*: the same CLI-made secrets through the daemon's CONNECT check itself
# (daemon/auth/, driven by kg-regtool auth-check: the fast step, the scrypt job through a
# real pool thread and its eventfd, the limiter), exact reason and CONNACK codes.
# No daemon runs: the CLI says "daemon not running" and stores anyway, as for X.509.
# Prints "PASS name" / "FAIL name: why" per test and ends with "N passed, M failed".
# BIN / REGTOOL override the binaries; KG_ONLY="t_a t_b" runs only those tests.
set -u

cd "$(dirname "$0")/../.." || exit 3
BIN=$(realpath "${BIN:-build/ktlsgate}")
REGTOOL=$(realpath "${REGTOOL:-build/kg-regtool}")
PY=/usr/bin/python3
HUB=myhub.azure-devices.net
T=$(mktemp -d "${TMPDIR:-/tmp}/kg-cred-test.XXXXXX")
trap 'rm -rf "$T"' EXIT

# --- helpers ---------------------------------------------------------------------------

# why MSG: the reason this test fails (the FAIL line prints it); returns 1.
why() {
	printf '%s\n' "$*" >"$T/why"
	return 1
}

# run ARGS...: the CLI against the test's registry, no config; stdout $T/out, stderr
# $T/err, exit code RC. Stdin is the caller's (for --password-stdin).
run() {
	"$BIN" -c "$T/no-such.conf" -r "$REG" "$@" >"$T/out" 2>"$T/err"
	RC=$?
}

expect_rc() {
	[ "$RC" -eq "$1" ] || why "'$CMD': exit $RC, wanted $1 (out: $(head -c 300 "$T/out"); err: $(head -c 300 "$T/err"))"
}

# runx WANT_RC ARGS...: run and check the exit code.
runx() {
	local want=$1
	shift
	CMD="$*"
	run "$@"
	expect_rc "$want"
}

# The error contract: exactly one line "ktlsgate: ..." matching the regex.
expect_err_line() {
	[ "$(wc -l <"$T/err")" -eq 1 ] && grep -qE '^ktlsgate: ' "$T/err" && grep -qE -- "$1" "$T/err" ||
		why "'$CMD': stderr is not one line /$1/: $(cat "$T/err")"
}

# field LABEL: the value of "LABEL: VALUE" in the last stdout.
field() {
	sed -n "s/^$1: //p" "$T/out"
}

sql() {
	sqlite3 "$REG" "$1"
}

new_registry() {
	mkdir -p "$T/$1"
	REG="$T/$1/registry.db"
}

# sas_token ID KEY_B64 [TTL]: an Azure SAS token for device ID signed with the key, made
# the documented way (URL-encoded resource URI, "\n", expiry) with openssl's HMAC.
sas_token() {
	local id=$1 key=$2 ttl=${3:-3600} sr se hexkey sig
	sr=$($PY -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$HUB/devices/$id")
	se=$(($(date +%s) + ttl))
	hexkey=$(printf '%s' "$key" | base64 -d | od -An -tx1 -v | tr -d ' \n')
	[ ${#hexkey} -eq 64 ] || return 1
	sig=$(printf '%s\n%s' "$sr" "$se" | openssl dgst -sha256 -mac HMAC -macopt "hexkey:$hexkey" -binary | base64 -w0)
	sig=$($PY -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$sig")
	printf 'SharedAccessSignature sr=%s&sig=%s&se=%s' "$sr" "$sig" "$se"
}

# scrypt_ok PASSWORD PHC: python3's hashlib.scrypt over PASSWORD with the PHC string's
# parameters and salt gives its hash.
scrypt_ok() {
	$PY - "$1" "$2" <<'EOF'
import base64, hashlib, re, sys
pw, phc = sys.argv[1].encode(), sys.argv[2]
m = re.fullmatch(r"\$scrypt\$ln=(\d+),r=(\d+),p=(\d+)\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)", phc)
if not m:
    sys.exit("not a PHC scrypt string: " + phc)
ln, r, p = int(m[1]), int(m[2]), int(m[3])
unb64 = lambda s: base64.b64decode(s + "=" * (-len(s) % 4))
salt, want = unb64(m[4]), unb64(m[5])
if (ln, r, p, len(salt), len(want)) != (15, 8, 1, 16, 32):
    sys.exit("not the documented defaults: %s" % phc)
got = hashlib.scrypt(pw, salt=salt, n=1 << ln, r=r, p=p, maxmem=64 << 20, dklen=len(want))
sys.exit(0 if got == want else "scrypt mismatch")
EOF
}

# --- tests -----------------------------------------------------------------------------

t_sas_add_and_verify() {
	local k1 k2 tok
	new_registry sas
	runx 0 device add s1 --auth sas || return 1
	grep -qx 'device s1 added (attestation sas)' "$T/out" || why "no added line: $(cat "$T/out")" || return 1
	grep -q 'shown once' "$T/err" || why "no shown-once note: $(cat "$T/err")" || return 1
	k1=$(field primary-key)
	k2=$(field secondary-key)
	[ -n "$k1" ] && [ -n "$k2" ] || why "no keys printed: $(cat "$T/out")" || return 1
	[ "$(printf '%s' "$k1" | base64 -d | wc -c)" -eq 32 ] || why "primary key is not 32 bytes: $k1" || return 1
	[ "$k1" != "$k2" ] || why "primary and secondary keys are equal" || return 1
	[ "$(sql "SELECT attestation FROM devices WHERE id = 's1'")" = sas ] || why "attestation not sas" || return 1
	[ "$(sql "SELECT secret FROM credentials WHERE device_id = 's1' AND slot = 'primary'")" = "$k1" ] ||
		why "stored primary key differs from the printed one" || return 1
	# a token signed with each printed key verifies against the stored keys
	tok=$(sas_token s1 "$k1") || why "could not sign with the primary key" || return 1
	[ "$("$REGTOOL" sas-verify "$REG" s1 "$HUB" "$tok")" = "ok primary" ] ||
		why "primary-key token: $("$REGTOOL" sas-verify "$REG" s1 "$HUB" "$tok")" || return 1
	tok=$(sas_token s1 "$k2") || return 1
	[ "$("$REGTOOL" sas-verify "$REG" s1 "$HUB" "$tok")" = "ok secondary" ] ||
		why "secondary-key token: $("$REGTOOL" sas-verify "$REG" s1 "$HUB" "$tok")" || return 1
	# and the verify path refuses what it must: another key, another device, expired
	tok=$(sas_token s1 "$(head -c 32 /dev/urandom | base64 -w0)") || return 1
	"$REGTOOL" sas-verify "$REG" s1 "$HUB" "$tok" | grep -q '^refused: no key' ||
		why "a token from a foreign key was not refused" || return 1
	runx 0 device add s2 --auth sas || return 1
	tok=$(sas_token s1 "$k1") || return 1
	"$REGTOOL" sas-verify "$REG" s2 "$HUB" "$tok" | grep -q '^refused: ' ||
		why "s1's token was accepted for s2" || return 1
	tok=$(sas_token s1 "$k1" -10) || return 1
	"$REGTOOL" sas-verify "$REG" s1 "$HUB" "$tok" | grep -q '^refused: .*expired' ||
		why "an expired token was not refused: $("$REGTOOL" sas-verify "$REG" s1 "$HUB" "$tok")" || return 1
}

t_token_add() {
	local tok stored
	new_registry token
	runx 0 device add t1 --auth token || return 1
	tok=$(field token)
	[[ $tok =~ ^[A-Za-z0-9_-]{43}$ ]] || why "token is not 43 base64url chars: '$tok'" || return 1
	stored=$(sql "SELECT secret FROM credentials WHERE device_id = 't1' AND kind = 'token' AND slot = 'primary'")
	[ -n "$stored" ] || why "no stored token row" || return 1
	[ "$(printf '%s' "$tok" | sha256sum | cut -d' ' -f1)" = "$stored" ] ||
		why "sha256 of the printed token ($tok) is not the stored $stored" || return 1
	[ "$(sql "SELECT count(*) FROM credentials WHERE device_id = 't1'")" = 1 ] || why "more than one row" || return 1
}

t_basic_add() {
	local pw phc
	new_registry basic
	runx 0 device add b1 --auth basic --username meter-7 || return 1
	[ "$(field username)" = meter-7 ] || why "username line: $(cat "$T/out")" || return 1
	pw=$(field password)
	[ ${#pw} -ge 24 ] || why "generated password too short: '$pw'" || return 1
	phc=$(sql "SELECT secret FROM credentials WHERE device_id = 'b1' AND kind = 'basic'")
	[ "$(sql "SELECT username FROM credentials WHERE device_id = 'b1'")" = meter-7 ] || why "stored username" || return 1
	scrypt_ok "$pw" "$phc" 2>"$T/py" || why "generated password: $(cat "$T/py")" || return 1
	if scrypt_ok "${pw}x" "$phc" 2>/dev/null; then
		why "a wrong password matched the hash"
		return 1
	fi
	# --password-stdin, and the user name defaults to the id
	printf 'correct horse battery\n' | run device add b2 --auth basic --password-stdin
	CMD="device add b2 --password-stdin"
	expect_rc 0 || return 1
	[ "$(field username)" = b2 ] || why "default username is not the id: $(cat "$T/out")" || return 1
	[ "$(field password)" = "correct horse battery" ] || why "password from stdin not echoed once" || return 1
	scrypt_ok "correct horse battery" "$(sql "SELECT secret FROM credentials WHERE device_id = 'b2'")" 2>"$T/py" ||
		why "stdin password: $(cat "$T/py")" || return 1
	# a user name another device has: refused, and no half-added device stays behind
	runx 2 device add b3 --auth basic --username meter-7 || return 1
	grep -q 'user name meter-7 belongs to another device' "$T/err" || why "unclear refusal: $(cat "$T/err")" || return 1
	[ "$(sql "SELECT count(*) FROM devices WHERE id = 'b3'")" = 0 ] || why "b3 was left in the registry" || return 1
}

t_json_add() {
	new_registry json
	runx 0 device add j1 --auth sas --json || return 1
	$PY - "$T/out" <<'EOF' || why "sas --json: $(cat "$T/out")" || return 1
import base64, json, sys
o = json.load(open(sys.argv[1]))
assert o["id"] == "j1" and o["attestation"] == "sas", o
s = o["secrets"]
assert [e["slot"] for e in s] == ["primary", "secondary"], s
assert all(len(base64.b64decode(e["key"])) == 32 for e in s), s
EOF
	[ "$(sql "SELECT secret FROM credentials WHERE device_id = 'j1' AND slot = 'secondary'")" = \
		"$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["secrets"][1]["key"])' "$T/out")" ] ||
		why "JSON secondary key is not the stored one" || return 1
	runx 0 device add j2 --auth basic --json || return 1
	$PY -c 'import json,sys; o=json.load(open(sys.argv[1])); e=o["secrets"][0]; assert e["username"]=="j2" and len(e["password"])>=24, o' "$T/out" ||
		why "basic --json: $(cat "$T/out")" || return 1
}

t_x509_kinds() {
	new_registry x509
	runx 0 device add c1 --auth x509 || return 1
	[ "$(sql "SELECT attestation FROM devices WHERE id = 'c1'")" = ca ] || why "--auth x509 did not store ca" || return 1
	runx 0 device add p1 --auth thumbprint --thumbprint "$(printf 'ab%.0s' {1..32})" || return 1
	[ "$(sql "SELECT attestation FROM devices WHERE id = 'p1'")" = thumbprint ] || why "--auth thumbprint" || return 1
	runx 0 device add c2 || return 1
	[ "$(sql "SELECT attestation FROM devices WHERE id = 'c2'")" = ca ] || why "default is no longer ca" || return 1
	[ "$(sql "SELECT count(*) FROM credentials")" = 0 ] || why "x509 devices got credential rows" || return 1
	runx 0 device credentials c1 || return 1
	grep -qx 'device c1: attestation ca, 0 credential(s)' "$T/out" || why "credentials of c1: $(cat "$T/out")" || return 1
}

t_rotate() {
	local p0 s0 s1 p1 tok0 tok1 pw0 pw1
	new_registry rotate
	runx 0 device add r1 --auth sas || return 1
	p0=$(field primary-key)
	s0=$(field secondary-key)
	# sas: the secondary by default; the primary keeps working
	runx 0 device credentials r1 --rotate || return 1
	grep -qx 'device r1: new sas key in slot secondary' "$T/out" || why "rotate line: $(cat "$T/out")" || return 1
	s1=$(field secondary-key)
	[ -n "$s1" ] && [ "$s1" != "$s0" ] || why "no new secondary key: $(cat "$T/out")" || return 1
	[ "$(sql "SELECT secret FROM credentials WHERE device_id = 'r1' AND slot = 'primary'")" = "$p0" ] ||
		why "rotating the secondary changed the primary" || return 1
	[ "$(sql "SELECT secret FROM credentials WHERE device_id = 'r1' AND slot = 'secondary'")" = "$s1" ] ||
		why "stored secondary is not the printed one" || return 1
	[ "$("$REGTOOL" sas-verify "$REG" r1 "$HUB" "$(sas_token r1 "$p0")")" = "ok primary" ] || why "primary stopped working" || return 1
	[ "$("$REGTOOL" sas-verify "$REG" r1 "$HUB" "$(sas_token r1 "$s1")")" = "ok secondary" ] || why "new secondary refused" || return 1
	"$REGTOOL" sas-verify "$REG" r1 "$HUB" "$(sas_token r1 "$s0")" | grep -q '^refused' || why "old secondary still verifies" || return 1
	# then the primary, asked for; the secondary stays
	runx 0 device credentials r1 --rotate --slot primary || return 1
	p1=$(field primary-key)
	[ -n "$p1" ] && [ "$p1" != "$p0" ] || why "no new primary: $(cat "$T/out")" || return 1
	[ "$(sql "SELECT secret FROM credentials WHERE device_id = 'r1' AND slot = 'secondary'")" = "$s1" ] ||
		why "rotating the primary changed the secondary" || return 1
	# --json: the new key once, as an object naming the slot
	runx 0 device credentials r1 --rotate --json || return 1
	[ "$($PY -c 'import json,sys; o=json.load(open(sys.argv[1])); print(o["id"], o["kind"], o["slot"], o["username"])' "$T/out")" = \
		"r1 sas secondary None" ] || why "rotate --json: $(cat "$T/out")" || return 1
	[ "$(sql "SELECT secret FROM credentials WHERE device_id = 'r1' AND slot = 'secondary'")" = \
		"$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["key"])' "$T/out")" ] ||
		why "rotate --json key is not the stored one" || return 1
	# token: replaced in the primary slot
	runx 0 device add r2 --auth token || return 1
	tok0=$(field token)
	runx 0 device credentials r2 --rotate || return 1
	tok1=$(field token)
	[ -n "$tok1" ] && [ "$tok1" != "$tok0" ] || why "token not replaced" || return 1
	[ "$(sql "SELECT secret FROM credentials WHERE device_id = 'r2'")" = "$(printf '%s' "$tok1" | sha256sum | cut -d' ' -f1)" ] ||
		why "stored hash is not the new token's" || return 1
	[ "$(sql "SELECT count(*) FROM credentials WHERE device_id = 'r2'")" = 1 ] || why "token rotation left two rows" || return 1
	# basic: the user name stays, the password changes; --password-stdin works here too
	runx 0 device add r3 --auth basic --username gw-3 || return 1
	pw0=$(field password)
	printf 'n3w-pa55word\n' | run device credentials r3 --rotate --password-stdin
	CMD="rotate r3"
	expect_rc 0 || return 1
	[ "$(field username)" = gw-3 ] || why "rotation lost the user name: $(cat "$T/out")" || return 1
	pw1=$(sql "SELECT secret FROM credentials WHERE device_id = 'r3' AND slot = 'primary'")
	scrypt_ok 'n3w-pa55word' "$pw1" 2>"$T/py" || why "new password: $(cat "$T/py")" || return 1
	if scrypt_ok "$pw0" "$pw1" 2>/dev/null; then
		why "old password still matches"
		return 1
	fi
	# a secondary basic slot for an overlap keeps the same user name
	runx 0 device credentials r3 --rotate --slot secondary || return 1
	[ "$(sql "SELECT count(*) FROM credentials WHERE device_id = 'r3' AND username = 'gw-3'")" = 2 ] ||
		why "secondary basic slot has another user name" || return 1
	return 0
}

t_no_secrets_printed() {
	local secrets=() s f pw tok
	new_registry quiet
	runx 0 device add q1 --auth sas || return 1
	secrets+=("$(field primary-key)" "$(field secondary-key)")
	runx 0 device add q2 --auth token || return 1
	tok=$(field token)
	secrets+=("$tok" "$(printf '%s' "$tok" | sha256sum | cut -d' ' -f1)")
	runx 0 device add q3 --auth basic || return 1
	pw=$(field password)
	secrets+=("$pw" "$(sql "SELECT secret FROM credentials WHERE device_id = 'q3'")")
	: >"$T/all"
	for args in "device show q1" "device show q1 --json" "device show q2" "device show q3 --json" \
		"device list" "device list --json" "device credentials q1" "device credentials q1 --json" \
		"device credentials q2 --json" "device credentials q3" "device expiring --days 9999 --json"; do
		# shellcheck disable=SC2086
		runx 0 $args || return 1
		cat "$T/out" "$T/err" >>"$T/all"
	done
	for s in "${secrets[@]}"; do
		[ ${#s} -ge 24 ] || why "a secret probe is empty or short: '$s'" || return 1
		! grep -qF -- "$s" "$T/all" || why "a secret was printed: $s" || return 1
	done
	runx 0 device show q1 || return 1
	grep -q '^credentials: sas/primary .*, sas/secondary ' "$T/out" ||
		why "device show lacks the credentials line: $(cat "$T/out")" || return 1
	runx 0 device list --json || return 1
	$PY -c 'import json,sys; d={o["id"]:o for o in json.load(open(sys.argv[1]))}
assert [(c["kind"],c["slot"]) for c in d["q1"]["credentials"]]==[("sas","primary"),("sas","secondary")], d["q1"]
assert d["q3"]["credentials"][0]["username"]=="q3" and d["q3"]["credentials"][0]["created_at"]>0, d["q3"]
assert set(d["q2"]["credentials"][0])=={"kind","slot","username","created_at"}, d["q2"]' "$T/out" ||
		why "list --json credentials: $(head -c 600 "$T/out")" || return 1
}

t_remove_deletes_credentials() {
	new_registry remove
	runx 0 device add d1 --auth sas || return 1
	runx 0 device add d2 --auth token || return 1
	[ "$(sql "SELECT count(*) FROM credentials WHERE device_id = 'd1'")" = 2 ] || why "d1 rows before" || return 1
	runx 0 device remove d1 || return 1
	[ "$(sql "SELECT count(*) FROM credentials WHERE device_id = 'd1'")" = 0 ] || why "d1's rows survived its removal" || return 1
	[ "$(sql "SELECT count(*) FROM credentials WHERE device_id = 'd2'")" = 1 ] || why "d2's row went too" || return 1
}

t_bad_arguments() {
	new_registry bad
	runx 0 device add ok1 --auth sas || return 1
	runx 0 device add x1 || return 1
	runx 1 device add n1 --auth foo && expect_err_line "bad --auth 'foo' \(x509\|thumbprint\|sas\|token\|basic\)" || return 1
	runx 1 device add n1 --auth ca && expect_err_line "bad --auth 'ca'" || return 1
	runx 1 device add n1 --auth sas --username u && expect_err_line "--username goes with --auth basic" || return 1
	runx 1 device add n1 --auth token --password-stdin && expect_err_line "--password-stdin goes with --auth basic" || return 1
	runx 1 device add n1 --auth sas --thumbprint "$(printf 'ab%.0s' {1..32})" && expect_err_line "that is --auth thumbprint, not sas" || return 1
	runx 1 device add n1 --auth thumbprint && expect_err_line "--auth thumbprint needs --thumbprint or --cert" || return 1
	runx 1 device add n1 --json && expect_err_line "--json prints new secrets" || return 1
	runx 1 device add n1 --auth basic --username 'two words' && expect_err_line "--username: printable ASCII without spaces" || return 1
	printf 'short\n' | run device add n1 --auth basic --password-stdin
	CMD="short password"
	expect_rc 1 && expect_err_line "the password must be 8\.\.1024 bytes on one line" || return 1
	[ "$(sql "SELECT count(*) FROM devices WHERE id = 'n1'")" = 0 ] || why "a refused add wrote n1" || return 1
	runx 1 device credentials ok1 --slot primary && expect_err_line "--slot and --password-stdin go with --rotate" || return 1
	runx 1 device credentials ok1 --rotate --slot third && expect_err_line "bad slot 'third' \(primary\|secondary\)" || return 1
	runx 1 device credentials ok1 --rotate --password-stdin </dev/null && expect_err_line "--password-stdin is for basic devices" || return 1
	runx 2 device credentials x1 --rotate && expect_err_line "attestation ca has no secret to rotate" || return 1
	runx 2 device credentials nobody && expect_err_line "device nobody: no such device" || return 1
	runx 1 device credentials && expect_err_line "expected one device ID" || return 1
	runx 0 device add --help || return 1
	grep -q -- '--auth x509|thumbprint|sas|token|basic' "$T/out" || why "device --help lacks --auth" || return 1
	grep -q -- 'device credentials ID --rotate \[--slot primary|secondary\]' "$T/out" || why "device --help lacks credentials" || return 1
}

# --- device import with secrets (auth, username, secret, secondary_secret columns) ------

# imp FILE ARGS...: `device import FILE ARGS...` into the test's registry.
imp() {
	local f=$1
	shift
	CMD="device import $f $*"
	run device import "$f" "$@"
}

# jfield ID KEY: KEY of the JSON line of device ID in the last stdout ("" if absent).
jfield() {
	$PY -c 'import json,sys
for l in open(sys.argv[1]):
    o = json.loads(l)
    if o["id"] == sys.argv[2]:
        print(o.get(sys.argv[3], ""))' "$T/out" "$1" "$2"
}

# stored ID KIND SLOT [COLUMN]: a credential row's secret (or COLUMN).
stored() {
	sql "SELECT ${4:-secret} FROM credentials WHERE device_id = '$1' AND kind = '$2' AND slot = '$3'"
}

# sas_ok ID KEY SLOT: a token signed with KEY verifies for ID against the stored keys,
# with the key in SLOT.
sas_ok() {
	local tok got
	tok=$(sas_token "$1" "$2") || why "could not sign for $1 with '$2'" || return 1
	got=$("$REGTOOL" sas-verify "$REG" "$1" "$HUB" "$tok")
	[ "$got" = "ok $3" ] || why "$1: a token signed with its $3 key: '$got'" || return 1
}

t_import_secrets() {
	local k2 k3a k3b out fmt f i k
	k2=$(head -c 32 /dev/urandom | base64 -w0)
	k3a=$(head -c 32 /dev/urandom | base64 -w0)
	k3b=$(head -c 64 /dev/urandom | base64 -w0)
	for fmt in csv jsonl; do
		new_registry "imp-$fmt"
		f="$T/imp-$fmt/fleet.$fmt"
		if [ "$fmt" = csv ]; then
			{
				echo 'id,auth,username,secret,secondary_secret,status'
				echo 's1,sas,,,,'
				echo "s2,sas,,$k2,,"
				echo "s3,sas,,$k3a,$k3b,disabled"
				echo 't1,token,,,,'
				echo 't2,token,,"given-token,with=comma",,'
				echo 'b1,basic,meter-1,,,'
				echo 'b2,basic,,correct horse battery,,'
				echo 'x1,,,,,'
			} >"$f"
		else
			{
				echo '{"id": "s1", "auth": "sas"}'
				echo "{\"id\": \"s2\", \"auth\": \"sas\", \"secret\": \"$k2\", \"secondary_secret\": null}"
				echo "{\"id\": \"s3\", \"auth\": \"sas\", \"secret\": \"$k3a\", \"secondary_secret\": \"$k3b\", \"status\": \"disabled\"}"
				echo '{"id": "t1", "auth": "token", "secret": ""}'
				echo '{"id": "t2", "auth": "token", "secret": "given-token,with=comma"}'
				echo '{"id": "b1", "auth": "basic", "username": "meter-1"}'
				echo '{"id": "b2", "auth": "basic", "secret": "correct horse battery"}'
				echo '{"id": "x1"}'
			} >"$f"
		fi
		imp "$f" --json --kdf-threads 2
		expect_rc 0 || return 1
		# stdout: one JSON line per device with a generated secret, nothing else
		[ "$(wc -l <"$T/out")" -eq 3 ] || why "$fmt: want 3 JSON lines: $(cat "$T/out")" || return 1
		$PY -c 'import base64, json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert [r["id"] for r in rows] == ["s1", "t1", "b1"], rows
assert set(rows[0]) == {"id", "auth", "primary", "secondary"} and rows[0]["auth"] == "sas", rows[0]
assert len(base64.b64decode(rows[0]["primary"], validate=True)) == 32, rows[0]
assert set(rows[1]) == {"id", "auth", "primary"} and rows[1]["auth"] == "token", rows[1]
assert set(rows[2]) == {"id", "auth", "username", "primary"} and rows[2]["username"] == "meter-1", rows[2]' \
			"$T/out" || why "$fmt: JSON lines: $(cat "$T/out")" || return 1
		grep -qx 'imported 8 devices (daemon not running)' "$T/err" || why "$fmt: summary: $(cat "$T/err")" || return 1
		grep -q 'shown once' "$T/err" || why "$fmt: no shown-once note: $(cat "$T/err")" || return 1
		# given secrets are never printed
		for i in "$k2" "$k3a" "$k3b" given-token 'correct horse'; do
			! grep -qF -- "$i" "$T/out" "$T/err" || why "$fmt: a given secret was printed: $i" || return 1
		done
		# sas: generated keys and given keys all verify, each from its slot
		sas_ok s1 "$(jfield s1 primary)" primary || return 1
		sas_ok s1 "$(jfield s1 secondary)" secondary || return 1
		[ "$(stored s2 sas primary)" = "$k2" ] || why "$fmt: s2's given key is not stored as given" || return 1
		sas_ok s2 "$k2" primary || return 1
		[ "$(sql "SELECT count(*) FROM credentials WHERE device_id = 's2'")" = 1 ] ||
			why "$fmt: s2 (one given key) has a secondary row" || return 1
		sas_ok s3 "$k3a" primary || return 1
		[ "$(stored s3 sas secondary)" = "$k3b" ] || why "$fmt: s3's secondary key" || return 1
		[ "$(sql "SELECT status || ' ' || attestation FROM devices WHERE id = 's3'")" = "disabled sas" ] ||
			why "$fmt: s3 row" || return 1
		# token: the stored form is sha256 of what the device sends
		[ "$(printf '%s' "$(jfield t1 primary)" | sha256sum | cut -d' ' -f1)" = "$(stored t1 token primary)" ] ||
			why "$fmt: t1: sha256 of the printed token is not the stored hash" || return 1
		[ "$(printf '%s' 'given-token,with=comma' | sha256sum | cut -d' ' -f1)" = "$(stored t2 token primary)" ] ||
			why "$fmt: t2: sha256 of the given token is not the stored hash" || return 1
		# basic: python's scrypt recomputes the stored hash from the password
		[ "$(stored b1 basic primary username)" = meter-1 ] || why "$fmt: b1 username" || return 1
		scrypt_ok "$(jfield b1 primary)" "$(stored b1 basic primary)" 2>"$T/py" ||
			why "$fmt: b1's printed password: $(cat "$T/py")" || return 1
		[ "$(stored b2 basic primary username)" = b2 ] || why "$fmt: b2's user name is not its id" || return 1
		scrypt_ok 'correct horse battery' "$(stored b2 basic primary)" 2>"$T/py" ||
			why "$fmt: b2's given password: $(cat "$T/py")" || return 1
		[ "$(sql "SELECT attestation FROM devices WHERE id = 'x1'") $(sql "SELECT count(*) FROM credentials WHERE device_id = 'x1'")" = "ca 0" ] ||
			why "$fmt: x1 is not a plain x509 device" || return 1
		[ "$(sql "SELECT count(*) FROM credentials")" = 9 ] ||
			why "$fmt: $(sql "SELECT count(*) FROM credentials") credential rows, want 9" || return 1
		# shown once: no later command prints a secret
		i="$(jfield s1 primary) $(jfield t1 primary) $(jfield b1 primary)"
		for f in "device list --json" "device show s1" "device credentials s1 --json" \
			"device credentials t1 --json" "device credentials b1 --json"; do
			# shellcheck disable=SC2086
			runx 0 $f || return 1
			for k in $i; do
				! grep -qF -- "$k" "$T/out" || why "$fmt: '$f' printed a secret" || return 1
			done
		done
	done
	# Without --json: a table, then the summary line, on stdout.
	new_registry imp-table
	printf 'id,auth\nt9,token\nx9,\n' >"$T/imp-table/f.csv"
	imp "$T/imp-table/f.csv"
	expect_rc 0 || return 1
	out=$(awk '$1 == "t9" && $2 == "token" && $3 == "-" && $5 == "-" { print $4 }' "$T/out")
	[ "$(head -1 "$T/out" | tr -s ' ')" = "ID AUTH USERNAME PRIMARY SECONDARY" ] || why "table header: $(cat "$T/out")" || return 1
	[ -n "$out" ] && [ "$(printf '%s' "$out" | sha256sum | cut -d' ' -f1)" = "$(stored t9 token primary)" ] ||
		why "table: printed token does not hash to the stored one: $(cat "$T/out")" || return 1
	[ "$(tail -1 "$T/out")" = "imported 2 devices (daemon not running)" ] || why "table summary: $(cat "$T/out")" || return 1
}

t_import_secrets_out() {
	local f="$T/imp-out/f.csv" sf="$T/imp-out/secrets.jsonl" pw
	new_registry imp-out
	printf 'id,auth,username\nb1,basic,u-1\nb2,basic,\n' >"$f"
	CMD="import --secrets-out"
	(umask 022 && "$BIN" -c "$T/no-such.conf" -r "$REG" device import "$f" --json --secrets-out "$sf" >"$T/out" 2>"$T/err")
	RC=$?
	expect_rc 0 || return 1
	[ "$(stat -c %a "$sf")" = 600 ] || why "secrets file mode $(stat -c %a "$sf")" || return 1
	[ "$(cat "$T/out")" = "imported 2 devices (daemon not running)" ] || why "stdout holds more than the summary: $(cat "$T/out")" || return 1
	grep -q "new secrets are in .*secrets.jsonl" "$T/err" || why "no note of the file: $(cat "$T/err")" || return 1
	cp "$sf" "$T/out"   # jfield reads $T/out
	pw=$(jfield b1 primary)
	[ "$(jfield b1 username)" = u-1 ] && [ -n "$pw" ] || why "secrets file: $(cat "$sf")" || return 1
	scrypt_ok "$pw" "$(stored b1 basic primary)" 2>"$T/py" || why "password from the file: $(cat "$T/py")" || return 1
	[ "$(wc -l <"$sf")" -eq 2 ] || why "secrets file lines: $(cat "$sf")" || return 1
	# An existing file is refused, untouched, and nothing is imported.
	cp "$sf" "$T/imp-out/before"
	printf 'id,auth\nb3,basic\n' >"$f"
	imp "$f" --secrets-out "$sf"
	expect_rc 2 && expect_err_line "secrets-out .*secrets.jsonl: File exists .*nothing imported" || return 1
	cmp -s "$sf" "$T/imp-out/before" || why "the existing secrets file was changed" || return 1
	[ "$(sql "SELECT count(*) FROM devices WHERE id = 'b3'")" = 0 ] || why "b3 was imported" || return 1
	# A dangling symlink is not followed.
	ln -s "$T/imp-out/target" "$T/imp-out/link"
	imp "$f" --secrets-out "$T/imp-out/link"
	expect_rc 2 || return 1
	[ ! -e "$T/imp-out/target" ] || why "the link was followed" || return 1
	# An id the registry has is refused before any hashing, and before the file is made.
	printf 'id,auth\nb4,basic\nb1,basic\n' >"$f"
	imp "$f" --secrets-out "$T/imp-out/s2"
	expect_rc 2 && expect_err_line "f\.csv:3: device b1: already exists.*nothing imported" || return 1
	[ ! -e "$T/imp-out/s2" ] || why "a secrets file of a refused import stayed: $(cat "$T/imp-out/s2")" || return 1
	# The transaction refuses (a thumbprint another device pins, seen only there): the
	# secrets file, already written, goes again; nothing imported.
	runx 0 device add pin1 --thumbprint "$(printf 'cd%.0s' {1..32})" || return 1
	printf 'id,auth,thumbprint\nb4,basic,\nth2,,%s\n' "$(printf 'cd%.0s' {1..32})" >"$f"
	imp "$f" --secrets-out "$T/imp-out/s2"
	expect_rc 2 && expect_err_line "f\.csv:3: device th2: already exists.*thumbprint is taken.*nothing imported" || return 1
	[ ! -e "$T/imp-out/s2" ] || why "a secrets file of a refused import stayed: $(cat "$T/imp-out/s2")" || return 1
	[ "$(sql "SELECT count(*) FROM devices WHERE id = 'b4'")" = 0 ] || why "b4 was imported" || return 1
	imp "$f" --kdf-threads 0
	expect_rc 1 && expect_err_line "kdf-threads wants 1\.\.64" || return 1
}

# Generated tokens never begin with '-' (one in 64 base64url strings would): a secret
# pasted after --password into an argparse client (kgclient.py, paho's examples) is
# taken for an option there. 3000 generated tokens miss a leading '-' by chance with
# probability (63/64)^3000, about 3e-21.
t_generated_not_option() {
	local f="$T/gen/f.csv" n=3000 i bad
	new_registry gen
	{
		echo 'id,auth'
		for ((i = 0; i < n; i++)); do echo "g$i,token"; done
	} >"$f"
	imp "$f" --json
	expect_rc 0 || return 1
	[ "$(wc -l <"$T/out")" -eq $n ] || why "want $n JSON lines, got $(wc -l <"$T/out")" || return 1
	bad=$($PY -c 'import json, sys
toks = [json.loads(l)["primary"] for l in open(sys.argv[1])]
assert len(set(toks)) == len(toks), "a token repeats"
print(sum(t.startswith("-") for t in toks))' "$T/out") || why "import output: $(head -3 "$T/out")" || return 1
	echo "    $n generated tokens, $bad begin with '-'"
	[ "$bad" = 0 ] || why "$bad of $n generated tokens begin with '-'" || return 1
}

t_import_secrets_bad_lines() {
	local d="$T/imp-bad" good=0 case line re text n
	new_registry imp-bad
	runx 0 device add keep1 --auth basic --username taken-1 || return 1
	# LINE#REGEX#a bad CSV line 3 (between two good lines; 4: after a good line 3) of
	# id,auth,username,secret,secondary_secret
	for case in \
		"3#bad auth 'kerberos' \(x509\|thumbprint\|sas\|token\|basic\)#m1,kerberos,,," \
		"3#username goes with auth basic#m1,sas,u9,," \
		"3#secret: not a SAS key#m1,sas,,bm90IGJhc2U2NA!!," \
		"3#secret: not a SAS key#m1,sas,,c2hvcnQ=," \
		"3#secret: not an access token#m1,token,,short," \
		"3#secondary_secret goes with auth sas#m1,token,,longenough1,longenough2" \
		"3#secret goes with auth sas\|token\|basic, not x509#m1,x509,,whatever1," \
		"3#secret: a password must be 8\.\.1024 bytes#m1,basic,,short," \
		"3#username: printable ASCII without spaces#m1,basic,two words,," \
		"4#username 'u-1' is also on line 2#m1,basic,u-2,," \
		"3#device m1: user name taken-1 belongs to another device#m1,basic,taken-1,,"; do
		IFS='#' read -r line re text <<<"$case"
		if [ "$line" = 4 ]; then   # a user name used twice in the file
			printf 'id,auth,username,secret,secondary_secret\nfirst,basic,u-1,,\n%s\nlast,basic,u-1,,\n' "$text" >"$d/in.csv"
		else
			printf 'id,auth,username,secret,secondary_secret\nfirst,sas,,,\n%s\nlast,token,,,\n' "$text" >"$d/in.csv"
		fi
		imp "$d/in.csv"
		expect_rc 2 || return 1
		expect_err_line "^ktlsgate: device import: .*in\.csv:$line: $re.*; nothing imported\$" || return 1
		[ ! -s "$T/out" ] || why "stdout on a refused import ($text): $(cat "$T/out")" || return 1
		n=$(sql "SELECT count(*) FROM devices")/$(sql "SELECT count(*) FROM credentials")
		[ "$n" = 1/1 ] || why "a refused import ($text) wrote: devices/credentials $n" || return 1
		good=$((good + 1))
	done
	[ "$good" = 11 ] || why "ran $good cases" || return 1
	# JSON lines: the same rules, the same line numbers.
	printf '{"id": "j1", "auth": "token"}\n{"id": "j2", "auth": "sas", "username": "u"}\n' >"$d/in.jsonl"
	imp "$d/in.jsonl"
	expect_rc 2 && expect_err_line "in\.jsonl:2: username goes with auth basic; nothing imported" || return 1
	# The same given token twice: the store's unique hash, on the second device's line.
	printf 'id,auth,secret\nk1,token,same-token-1\nk2,token,same-token-1\n' >"$d/in.csv"
	imp "$d/in.csv"
	expect_rc 2 && expect_err_line "in\.csv:3: device k2: that token is already stored; nothing imported" || return 1
	[ "$(sql "SELECT count(*) FROM devices")" = 1 ] || why "the token clash wrote devices" || return 1
}

# engine USER PASSWORD CLIENTID [KEY=VALUE...]: the CONNECT check's verdict line(s).
engine() {
	local user=$1 pw=$2 cid=$3
	shift 3
	"$REGTOOL" auth-check "$REG" "$cid" "$user" "$pw" "$@" 2>&1
}

# expect_engine WANT USER PASSWORD CLIENTID [KEY=VALUE...]: the last line is exactly WANT.
expect_engine() {
	local want=$1 got
	shift
	got=$(engine "$@" | tail -n 1)
	[ "$got" = "$want" ] || why "auth-check ${1:0:40}...: '$got', wanted '$want'"
}

t_engine_sas() {
	local k1 k2 user="$HUB/e1/?api-version=2021-04-12"
	new_registry engine-sas
	runx 0 device add e1 --auth sas || return 1
	k1=$(field primary-key)
	k2=$(field secondary-key)
	runx 0 device add e2 --auth sas || return 1
	expect_engine "ok sas e1" "$user" "$(sas_token e1 "$k1")" e1 || return 1
	expect_engine "ok sas e1" "$user" "$(sas_token e1 "$k2")" e1 || return 1
	expect_engine "refused sas credential_expired 0x04 0x86" "$user" "$(sas_token e1 "$k1" -10)" e1 || return 1
	expect_engine "refused sas bad_credentials 0x04 0x86" "$user" "$(sas_token e1 "$k1" 7200)" e1 sas_max_ttl=3600 || return 1
	expect_engine "ok sas e1" "$user" "$(sas_token e1 "$k1" 600)" e1 sas_max_ttl=3600 || return 1
	expect_engine "refused sas bad_credentials 0x04 0x86" "$user" "$(sas_token e1 "$k1")" e1 sas_hub=otherhub.example || return 1
	# e2's user name and id with e1's key: no key of e2 signed it
	expect_engine "refused sas bad_credentials 0x04 0x86" "$HUB/e2/?api-version=2021-04-12" "$(sas_token e2 "$k1")" e2 || return 1
	expect_engine "refused sas client_id_mismatch 0x02 0x85" "$user" "$(sas_token e1 "$k1")" e2 || return 1
	expect_engine "refused sas unknown_device 0x05 0x87" "$HUB/e9/?api-version=2021-04-12" "$(sas_token e9 "$k1")" e9 || return 1
	expect_engine "refused unknown x509_required 0x05 0x87" "$user" "$(sas_token e1 "$k1")" e1 x509_only=yes || return 1
}

t_engine_token() {
	local tok
	new_registry engine-token
	runx 0 device add t1 --auth token || return 1
	tok=$(field token)
	expect_engine "ok token t1" "$tok" - anything || return 1
	expect_engine "refused token bad_credentials 0x04 0x86" "${tok}x" - anything || return 1
	# brute force against the source: failure_burst misses, then even the right token
	# is refused unchecked (one process: one limiter)
	local b="refused token bad_credentials 0x04 0x86" want got
	want=$(printf '%s\n%s\n%s\n%s' "$b" "$b" "$b" "refused token auth_rate_limited 0x05 0x87")
	got=$(engine "guess-0000-token" - x repeat=4 failure_burst=3)
	[ "$got" = "$want" ] || why "source limiter: $got" || return 1
}

t_engine_basic() {
	local pw
	new_registry engine-basic
	runx 0 device add b1 --auth basic --username meter-7 || return 1
	pw=$(field password)
	runx 0 device add s1 --auth sas || return 1
	# the CLI's default cost (ln=15, r=8) through a pool thread
	expect_engine "ok basic b1" meter-7 "$pw" c1 || return 1
	expect_engine "refused basic bad_credentials 0x04 0x86" meter-7 "${pw}x" c1 || return 1
	expect_engine "refused basic bad_credentials 0x04 0x86" meter-8 "$pw" c1 || return 1
	# a SAS token for a basic device (signed with any 32-byte key): the wrong kind,
	# refused before any key is looked at
	expect_engine "refused sas attestation_mismatch 0x05 0x87" "$HUB/b1/?api-version=2021-04-12" \
		"$(sas_token b1 "$(head -c 32 /dev/zero | base64 -w0)")" b1 || return 1
	# rotation: the new password works at once, the old one no more
	runx 0 device credentials b1 --rotate || return 1
	expect_engine "ok basic b1" meter-7 "$(field password)" c1 || return 1
	expect_engine "refused basic bad_credentials 0x04 0x86" meter-7 "$pw" c1 || return 1
	# brute force against the device: burst wrong passwords, then the right one is
	# refused without a scrypt
	[ "$(engine meter-7 wrong-password-1 c1 repeat=3 failure_burst=2 | tail -n 1)" = \
		"refused basic auth_rate_limited 0x05 0x87" ] || why "device limiter: $(engine meter-7 wrong-password-1 c1 repeat=3 failure_burst=2)" || return 1
}

ALL_TESTS=(t_engine_sas t_engine_token t_engine_basic t_sas_add_and_verify t_token_add
	t_basic_add t_json_add t_x509_kinds t_rotate t_no_secrets_printed
	t_remove_deletes_credentials t_bad_arguments t_import_secrets t_import_secrets_out
	t_import_secrets_bad_lines t_generated_not_option)

main() {
	local t rc passed=0 failed=0 list=("${ALL_TESTS[@]}") tool
	[ -n "${KG_ONLY:-}" ] && read -r -a list <<<"$KG_ONLY"
	for tool in "$BIN" "$REGTOOL" /usr/bin/sqlite3 /usr/bin/openssl "$PY"; do
		if [ ! -x "$tool" ]; then
			echo "FAIL setup: $tool missing (make all build/kg-regtool; apt-get install sqlite3 openssl python3)"
			echo "0 passed, 1 failed"
			exit 1
		fi
	done
	for t in "${list[@]}"; do
		rm -f "$T/why"
		(
			set -u
			"$t"
		)
		rc=$?
		if [ "$rc" -eq 0 ] && [ ! -s "$T/why" ]; then
			echo "PASS $t"
			passed=$((passed + 1))
		else
			echo "FAIL $t: $(cat "$T/why" 2>/dev/null || echo "exited $rc")"
			failed=$((failed + 1))
		fi
	done
	echo "$passed passed, $failed failed"
	[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
}

main
