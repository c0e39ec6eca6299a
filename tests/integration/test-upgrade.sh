#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# test-upgrade.sh - a new build meets the registry an earlier build left (issue 12,
# "upgrading migrates the registry forward"). The unit runs `ktlsgated -t` before every
# start (ExecStartPre), so on the first start after an upgrade -t sees the old schema:
# it must report the migration the start will make and pass, writing nothing; the start
# then migrates, and devices connect. A registry from a NEWER build is still refused.
# The old registry is made by the store's own migration steps (kg-regtool create), so
# it is the file that schema version's build wrote.
# Prints PASS/FAIL per test; exits non-zero if any failed.
# shellcheck disable=SC2046,SC2034
set -u
. "$(dirname "$0")/lib.sh"

REGTOOL=${REGTOOL:-$KG_TOP/build/kg-regtool}

setup() {
	kg_init upgrade
	[ -x "$REGTOOL" ] || { echo "$REGTOOL missing: make build/kg-regtool" >&2; return 1; }
	BK_PORT=$(free_port)
	GW_PORT=$(free_port)
	GW_MPORT=$(free_port)
	local gw="$WORK/gw"
	write_gw_conf "$gw" "$GW_PORT" "$GW_MPORT" "$BK_PORT" "$(free_port)"
	GW_CONF="$gw/ktlsgate.conf"
	GW_LOG="$gw/gw.log"
	REG="$gw/registry.db"
	: >"$GW_LOG"
	PKI="$WORK/pki"
	mkdir -p "$PKI/dev"
	pki root --cn "ktlsgate test root" --out "$PKI/root" || return 1
	pki intermediate --cn "factory" --ca "$PKI/root" --out "$PKI/factory" || return 1
	pki server --cn localhost --ca "$PKI/factory" --out "$gw/server" || return 1
	device_cert up-dev "$PKI/factory" || return 1
	"$REGTOOL" create "$REG" 1 || return 1
	start_broker "$BK_PORT" || return 1
}

schema() { "$REGTOOL" version "$1"; }

t_test_reports_migration() {
	local out rc
	out=$("$GATED" -t -c "$GW_CONF" 2>&1)
	rc=$?
	[ $rc -eq 0 ] || { note "-t on a schema-1 registry exited $rc: $out"; return 1; }
	printf '%s\n' "$out" | grep -Eq "registry .*registry.db has schema version 1; this build migrates it to [0-9]+ at start" ||
		{ note "no migration note in: $out"; return 1; }
	[ "$(schema "$REG")" = 1 ] || { note "-t wrote the registry: now schema $(schema "$REG")"; return 1; }
}

t_start_migrates() {
	local latest got
	latest=$("$GATED" -t -c "$GW_CONF" 2>&1 | sed -n 's/.*migrates it to \([0-9]*\) at start.*/\1/p')
	[ -n "$latest" ] && [ "$latest" -gt 1 ] || { note "could not read the target version"; return 1; }
	start_gateway || { note "the new build did not start on the old registry"; return 1; }
	[ "$(schema "$REG")" = "$latest" ] || { note "after start: schema $(schema "$REG"), want $latest"; return 1; }
	register_ca root "$PKI/root" || { note "ca add/verify on the migrated registry failed"; return 1; }
	register_ca factory "$PKI/factory" || { note "ca add/verify failed"; return 1; }
	kg device add up-dev >/dev/null || { note "device add failed"; return 1; }
	got=$(kgc connect $(dev_args up-dev) | head -1)
	[ "$got" = "connack 0x00" ] || { note "device on the migrated registry: '$got'"; return 1; }
	got=$("$GATED" -t -c "$GW_CONF" 2>&1)
	printf '%s\n' "$got" | grep -q "ok (2 CA(s) trusted" || { note "-t after the migration: $got"; return 1; }
}

t_newer_schema_refused() {
	local copy="$WORK/newer.db" conf="$WORK/newer.conf" out rc
	cp "$REG" "$copy" || return 1
	$PY -c 'import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute("PRAGMA user_version = 99"); c.commit()' "$copy" ||
		{ note "could not stamp the copy"; return 1; }
	sed "s|^registry = .*|registry = $copy|" "$GW_CONF" >"$conf"
	# relative paths (cert, key) resolve against the config's directory
	cp "$conf" "$(dirname "$GW_CONF")/newer.conf"
	out=$("$GATED" -t -c "$(dirname "$GW_CONF")/newer.conf" 2>&1)
	rc=$?
	[ $rc -ne 0 ] || { note "-t accepted a registry from a newer build: $out"; return 1; }
	printf '%s\n' "$out" | grep -q "schema version 99 is newer than this build" ||
		{ note "unclear refusal: $out"; return 1; }
}

# Schema 6 (issue 15: sas/token/basic kinds, the credentials table) rebuilds the devices
# table: a schema-5 registry, as the previous build left it, is reported by -t as a
# 5 -> 6 migration without a write, then migrates on the first read-write open (here the
# CLI's) with every device row kept, and takes a credential device at once.
t_v5_migrates_keeping_devices() {
	local reg5="$WORK/v5/registry.db" conf="$(dirname "$GW_CONF")/v5.conf" out rc latest
	mkdir -p "$WORK/v5"
	"$REGTOOL" create "$reg5" 5 || { note "kg-regtool create 5 failed"; return 1; }
	latest=$("$GATED" -t -c "$GW_CONF" 2>&1 | sed -n 's/.*migrates it to \([0-9]*\) at start.*/\1/p')
	[ -n "$latest" ] || latest=$(schema "$REG")
	[ "$latest" -ge 6 ] || { note "this build's schema is $latest, want >= 6"; return 1; }
	$PY -c 'import sqlite3,sys; c=sqlite3.connect(sys.argv[1])
c.execute("INSERT INTO devices (id, status, attestation, thumb_primary, backend, created_at, updated_at, last_seen)"
          " VALUES (?, ?, ?, ?, ?, ?, ?, ?)", ("v5-pin", "suspended", "thumbprint", "ab" * 32, "", 5, 6, 7))
c.execute("INSERT INTO devices (id, status, attestation, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
          ("v5-ca", "enabled", "ca", 8, 9))
c.commit()' "$reg5" || { note "could not fill the v5 registry"; return 1; }
	sed "s|^registry = .*|registry = $reg5|" "$GW_CONF" >"$conf"
	out=$("$GATED" -t -c "$conf" 2>&1)
	rc=$?
	[ $rc -eq 0 ] || { note "-t on a schema-5 registry exited $rc: $out"; return 1; }
	printf '%s\n' "$out" | grep -Eq "registry .*v5/registry.db has schema version 5; this build migrates it to $latest at start" ||
		{ note "no 5 -> $latest note in: $out"; return 1; }
	[ "$(schema "$reg5")" = 5 ] || { note "-t wrote the registry: now schema $(schema "$reg5")"; return 1; }
	"$KGCLI" -c "$conf" device add v6-sas --auth sas >/dev/null 2>&1 ||
		{ note "device add --auth sas on the v5 registry failed"; return 1; }
	[ "$(schema "$reg5")" = "$latest" ] || { note "after the CLI's open: schema $(schema "$reg5")"; return 1; }
	out=$($PY -c 'import sqlite3,sys; c=sqlite3.connect(sys.argv[1])
print(";".join("|".join(map(str, r)) for r in c.execute(
    "SELECT id, status, attestation, thumb_primary, created_at, updated_at, last_seen FROM devices ORDER BY id")))
print(c.execute("SELECT count(*) FROM credentials WHERE device_id = ?", ("v6-sas",)).fetchone()[0])' "$reg5")
	[ "$out" = "v5-ca|enabled|ca|None|8|9|0;v5-pin|suspended|thumbprint|$(printf 'ab%.0s' {1..32})|5|6|7;v6-sas|enabled|sas|None|$(
		"$KGCLI" -c "$conf" device show v6-sas --json | $PY -c 'import json,sys; o=json.load(sys.stdin); print(o["created_at"], o["updated_at"], 0, sep="|")')
2" ] || { note "rows after the migration: $out"; return 1; }
}

ALL_TESTS=(t_test_reports_migration t_start_migrates t_v5_migrates_keeping_devices t_newer_schema_refused)

if ! setup; then
	echo "FAIL setup: could not build the PKI / broker (log: ${GW_LOG:-none})"
	KG_FAILED=1
	exit 1
fi
run_tests
