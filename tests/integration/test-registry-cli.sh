#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# test-registry-cli.sh - the registry as a whole through the real `ktlsgate` and
# `ktlsgated` (issue 16): `registry =` / -r taking a PostgreSQL URI beside a file path
# (other schemes refused naming key and line, passwords never printed), `registry
# migrate` (schema FROM -> TO, then current), and `registry copy` from SQLite to SQLite:
# every CA, device and credential field, store-set times and a pending CA's challenge
# included (kg_registry_import), checked with `ca list`, `device list` and `device show`
# of both sides and with sqlite3 on both files (every column identical); a
# non-empty, missing, garbage or foreign destination or
# source refused with nothing written; 100 devices with sas, token and basic credentials
# that still authenticate on the copy through the daemon's CONNECT check (kg-regtool
# auth-check) while a wrong secret does not.
# The same against a real PostgreSQL (tests/lib/pg.sh) once the store is built: probed
# with `ktlsgate -r URI registry migrate`; when it fails, "NOT RUN pg: store not built"
# counts as not passed.
# Prints "PASS name" / "FAIL name: why" per test and ends with "N passed, M failed".
# BIN / GATED / REGTOOL override the binaries; KG_ONLY="t_a t_b" runs only those tests.
set -u

cd "$(dirname "$0")/../.." || exit 3
BIN=$(realpath "${BIN:-build/ktlsgate}")
GATED=$(realpath "${GATED:-build/ktlsgated}")
REGTOOL=$(realpath "${REGTOOL:-build/kg-regtool}")
PY=/usr/bin/python3
HUB=myhub.azure-devices.net
# shellcheck source=tests/lib/pg.sh
. tests/lib/pg.sh
mkdir -p build/itest
T=$(mktemp -d "$PWD/build/itest/registry-cli.XXXXXX")
# the PostgreSQL cluster runs as `postgres`, which must reach $T/pg
chmod 0755 "$T"
PG_UP=0
cleanup() {
	[ "$PG_UP" = 1 ] && kg_pg_stop "$T/pg"
	[ -n "${KG_KEEP:-}" ] || rm -rf "$T"
}
trap cleanup EXIT

# --- helpers ---------------------------------------------------------------------------

why() {
	printf '%s\n' "$*" >"$T/why"
	return 1
}

# kgr REGISTRY ARGS...: the CLI on REGISTRY, no config; stdout $T/out, stderr $T/err, RC.
kgr() {
	local reg=$1
	shift
	CMD="-r $reg $*"
	timeout 120 "$BIN" -c "$T/no-such.conf" -r "$reg" "$@" >"$T/out" 2>"$T/err"
	RC=$?
}

# kgx ARGS...: the CLI without -r (registry copy takes its locations as arguments).
kgx() {
	CMD="$*"
	timeout 300 "$BIN" -c "$T/no-such.conf" "$@" >"$T/out" 2>"$T/err"
	RC=$?
}

expect_rc() {
	[ "$RC" -eq "$1" ] || why "'$CMD': exit $RC, wanted $1 (out: $(head -c 300 "$T/out"); err: $(head -c 300 "$T/err"))"
}

# The error contract: exactly one line "ktlsgate: ..." matching the regex.
expect_err_line() {
	[ "$(wc -l <"$T/err")" -eq 1 ] && grep -qE '^ktlsgate: ' "$T/err" && grep -qE -- "$1" "$T/err" ||
		why "'$CMD': stderr is not one line /$1/: $(cat "$T/err")"
}

expect_out() {
	[ "$(cat "$T/out")" = "$1" ] || why "'$CMD': stdout '$(head -c 300 "$T/out")', wanted '$1'"
}

sql() {
	sqlite3 -batch -noheader "$1" "$2"
}

# Every column of every row a copy must carry, as sqlite3 prints them: the times the
# store set when the rows were made (added_at, created_at, updated_at) and a pending
# CA's challenge included. pg_dump_rows prints the same of the PostgreSQL registry
# byte for byte (psql -A -t: '|' between columns; quote_nullable is SQLite's quote).
DUMP_CAS="name, pem, sha256, subject, verified, challenge, backend, auto_enroll, added_at,
	not_after, status, quote(username_check)"
DUMP_DEVS="id, status, attestation, quote(thumb_primary), quote(thumb_secondary), backend,
	quote(ca_name), created_at, updated_at, last_seen, cert_not_after"
DUMP_CREDS="device_id, kind, slot, quote(username), secret, created_at"
dump() {
	sql "$1" "SELECT $DUMP_CAS FROM cas ORDER BY name;
		SELECT $DUMP_DEVS FROM devices ORDER BY id;
		SELECT $DUMP_CREDS FROM credentials ORDER BY device_id, kind, slot;"
}

pg_dump_rows() {
	local c='COLLATE "C"' cas=${DUMP_CAS//quote(/quote_nullable(}
	cas=${cas/verified,/verified::int,}
	kg_pg_sql "SELECT ${cas/auto_enroll,/auto_enroll::int,} FROM ktlsgate.cas ORDER BY name $c" &&
	kg_pg_sql "SELECT ${DUMP_DEVS//quote(/quote_nullable(} FROM ktlsgate.devices ORDER BY id $c" &&
	kg_pg_sql "SELECT ${DUMP_CREDS//quote(/quote_nullable(} FROM ktlsgate.credentials
		ORDER BY device_id $c, kind $c, slot $c"
}

# same_pg_dump FILE: the PostgreSQL registry holds exactly FILE's rows.
same_pg_dump() {
	local a b
	a=$(dump "$1") && b=$(pg_dump_rows) || why "sqlite3 or psql could not read" || return 1
	[ -n "$a" ] || why "no rows in $1" || return 1
	[ "$a" = "$b" ] || why "rows differ between $1 and PostgreSQL: $(diff <(printf '%s\n' "$a") <(printf '%s\n' "$b") | head -c 600)"
}

# same_dump A B: both files hold the same rows (and A holds some: an sqlite3 failure
# printing nothing for both must not pass).
same_dump() {
	local a b
	a=$(dump "$1") && b=$(dump "$2") || why "sqlite3 could not read $1 or $2" || return 1
	[ -n "$a" ] || why "no rows in $1" || return 1
	[ "$a" = "$b" ] || why "rows differ between $1 and $2: $(diff <(printf '%s\n' "$a") <(printf '%s\n' "$b") | head -c 600)"
}

# views REGISTRY FILE: what the CLI shows of it (ca list, device list, device show of
# each device, created / updated / credential times included).
views() {
	local reg=$1 out=$2 id
	{
		timeout 60 "$BIN" -c "$T/no-such.conf" -r "$reg" ca list
		timeout 60 "$BIN" -c "$T/no-such.conf" -r "$reg" device list
		for id in $(timeout 60 "$BIN" -c "$T/no-such.conf" -r "$reg" device list | awk 'NR > 1 { print $1 }'); do
			timeout 60 "$BIN" -c "$T/no-such.conf" -r "$reg" device show "$id" |
				cat
		done
	} >"$out" 2>&1
}

# same_views A B: the CLI shows the same registry content for both.
same_views() {
	views "$1" "$T/va"
	views "$2" "$T/vb"
	[ -s "$T/va" ] || why "no view of $1" || return 1
	diff -u "$T/va" "$T/vb" >"$T/vdiff" || why "CLI views differ: $(head -c 600 "$T/vdiff")"
}

# A SAS token for device $1 with the base64 key $2 (as test-credentials.sh builds it).
sas_token() {
	local id=$1 key=$2 sr se hexkey sig
	sr=$($PY -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$HUB/devices/$id")
	se=$(($(date +%s) + 3600))
	hexkey=$(printf '%s' "$key" | base64 -d | od -An -tx1 -v | tr -d ' \n')
	sig=$(printf '%s\n%s' "$sr" "$se" | openssl dgst -sha256 -mac HMAC -macopt "hexkey:$hexkey" -binary | base64 -w0)
	sig=$($PY -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$sig")
	printf 'SharedAccessSignature sr=%s&sig=%s&se=%s' "$sr" "$sig" "$se"
}

# A source registry with one of everything the copy must carry: a proven CA with a
# backend, auto-enrolment and its own username_check; a pending one; a disabled proven
# one; devices of every attestation, status, backend, a bound CA, last-seen and
# not-after times (set with sqlite3: only the daemon's enrolment and touch write them).
make_source() {
	local db=$1 code
	mkdir -p "$T/pki"
	[ -d "$T/pki/r1" ] || {
		"$BIN" pki root --cn "copy root 1" --out "$T/pki/r1" >/dev/null &&
		"$BIN" pki root --cn "copy root 2" --out "$T/pki/r2" >/dev/null &&
		"$BIN" pki root --cn "copy root 3" --out "$T/pki/r3" >/dev/null
	} || why "pki" || return 1
	kgr "$db" ca add "$T/pki/r1/cert.pem" --name ca1 --backend b1 --auto-enroll --username-check rewrite
	expect_rc 0 || return 1
	code=$(sed -n 's/^challenge: *//p' "$T/out")
	"$BIN" pki verification-cert --ca "$T/pki/r1" --challenge "$code" --out "$T/pki/v1.pem" >/dev/null || why "verification cert" || return 1
	kgr "$db" ca verify ca1 "$T/pki/v1.pem"
	expect_rc 0 || return 1
	kgr "$db" ca add "$T/pki/r2/cert.pem" --name pending
	expect_rc 0 || return 1
	kgr "$db" ca add "$T/pki/r3/cert.pem" --name off
	code=$(sed -n 's/^challenge: *//p' "$T/out")
	"$BIN" pki verification-cert --ca "$T/pki/r3" --challenge "$code" --out "$T/pki/v3.pem" >/dev/null || why "verification cert" || return 1
	kgr "$db" ca verify off "$T/pki/v3.pem"
	expect_rc 0 || return 1
	kgr "$db" ca set off --status disabled --username-check strict
	expect_rc 0 || return 1
	kgr "$db" device add x1 --backend b2
	expect_rc 0 || return 1
	kgr "$db" device add p1 --thumbprint "$(printf 'ab%.0s' {1..32})" --secondary "$(printf 'cd%.0s' {1..32})" --status suspended
	expect_rc 0 || return 1
	kgr "$db" device add s1 --auth sas
	expect_rc 0 || return 1
	kgr "$db" device add t1 --auth token --status quarantined
	expect_rc 0 || return 1
	kgr "$db" device add b1 --auth basic --username meter-1
	expect_rc 0 || return 1
	kgr "$db" device add z1 --status decommissioned
	expect_rc 0 || return 1
	sql "$db" "UPDATE devices SET ca_name = 'ca1', last_seen = 1790000000, cert_not_after = 1890000000 WHERE id = 'x1';
		UPDATE devices SET last_seen = 1790000001 WHERE id = 's1'" || why "sqlite3 update" || return 1
	# the times the store set, moved into the past: a copy that set them anew (the time
	# of the copy) differs from the source in every one of them
	sql "$db" "UPDATE cas SET added_at = 1700000000 + 11 * rowid;
		UPDATE devices SET created_at = 1700001000 + rowid, updated_at = 1700002000 + rowid;
		UPDATE credentials SET created_at = 1700003000 + rowid" || why "sqlite3 times" || return 1
}

# --- tests -----------------------------------------------------------------------------

# ktlsgated -t and the CLI: a URI is taken as a URI, another scheme refused with the
# key and line, and no password anywhere in what they print.
t_config_location() {
	local conf=$T/loc.conf
	printf '[daemon]\ncert = c.pem\nkey = k.pem\nregistry = %s\ncontrol_socket = %s\n' \
		"mysql://kg:hunter2@db/x" "$T/ctl.sock" >"$conf"
	timeout 30 "$GATED" -t -c "$conf" >"$T/out" 2>"$T/err"
	RC=$? CMD="ktlsgated -t (mysql://)"
	expect_rc 1 || return 1
	grep -qxF "ktlsgated: $conf:4: 'registry': 'mysql://kg:***@db/x' is neither a file path nor a PostgreSQL URI (postgresql://... or postgres://...)" "$T/err" ||
		why "mysql:// refusal: $(cat "$T/err")" || return 1
	sed -i 's|^registry = .*|registry = postgresq://kg@db/x|' "$conf"
	timeout 30 "$GATED" -t -c "$conf" >"$T/out" 2>"$T/err"
	RC=$? CMD="ktlsgated -t (postgresq://)"
	expect_rc 1 || return 1
	grep -qF "$conf:4: 'registry': 'postgresq://kg@db/x' is neither" "$T/err" || why "typo refusal: $(cat "$T/err")" || return 1
	# A URI is not a file: -t connects (here: nothing listens on port 1) and says so
	# without the password; nothing named like the URI appears beside the config.
	sed -i 's|^registry = .*|registry = postgresql://kg:hunter2@127.0.0.1:1/x|' "$conf"
	timeout 60 "$GATED" -t -c "$conf" >"$T/out" 2>"$T/err"
	RC=$?
	grep -q 'hunter2' "$T/out" "$T/err" && { why "-t printed the password: $(cat "$T/out" "$T/err")"; return 1; }
	grep -qF 'registry postgresql://kg:***@127.0.0.1:1/x' "$T/out" "$T/err" ||
		why "-t does not name the registry redacted: $(cat "$T/out" "$T/err")" || return 1
	[ -z "$(find "$T" -maxdepth 1 -name 'postgresql*')" ] || why "a file named like the URI was created" || return 1
	# A start on it: no lock file beside anything (a URI has none), the store's refusal
	# said once without the password, and the daemon gone.
	timeout 60 "$GATED" -c "$conf" >"$T/out" 2>"$T/err"
	RC=$? CMD="ktlsgated (unreachable URI)"
	[ "$RC" -ne 0 ] && [ "$RC" -ne 124 ] || why "the start on an unreachable URI: exit $RC" || return 1
	grep -q 'hunter2' "$T/out" "$T/err" && { why "the start printed the password: $(cat "$T/err")"; return 1; }
	grep -qF 'registry postgresql://kg:***@127.0.0.1:1/x' "$T/err" || why "start: $(cat "$T/err")" || return 1
	[ -z "$(find "$T" -maxdepth 1 -name '*.lock' -o -maxdepth 1 -name 'postgresql*')" ] ||
		why "the start made a file: $(ls "$T")" || return 1
	# The CLI: -r with another scheme is a usage error; a URI's password never shows.
	kgr "mysql://root:hunter2@h/db" device list
	expect_rc 1 && expect_err_line "^ktlsgate: -r: 'mysql://root:\*\*\*@h/db' is neither a file path" || return 1
	kgr "postgresql://kg:hunter2@127.0.0.1:1/x" device list
	expect_rc 3 || return 1
	grep -q hunter2 "$T/err" && { why "the CLI printed the password: $(cat "$T/err")"; return 1; }
	grep -qF 'registry postgresql://kg:***@127.0.0.1:1/x' "$T/err" || why "CLI error: $(cat "$T/err")" || return 1
	# sqlite:PATH is the SQLite store, as in registry copy
	kgr "sqlite:$T/loc.db" device add a1
	expect_rc 0 || return 1
	[ "$(sql "$T/loc.db" "SELECT id FROM devices")" = a1 ] || why "sqlite:PATH did not write $T/loc.db" || return 1
}

t_migrate() {
	local db=$T/mig.db sum
	kgr "$db" registry migrate
	expect_rc 0 && expect_out "registry $db: schema 0 -> 6" || return 1
	[ "$(sql "$db" "PRAGMA user_version")" = 6 ] || why "not at schema 6" || return 1
	kgr "$db" registry migrate
	expect_rc 0 && expect_out "registry $db: schema 6, current" || return 1
	# an older build's file (schema 3, made by the store's own steps), with a row
	"$REGTOOL" create "$T/old.db" 3 || why "kg-regtool create" || return 1
	sql "$T/old.db" "INSERT INTO devices (id, status, attestation, backend, created_at, updated_at)
		VALUES ('o1', 'enabled', 'thumbprint', '', 1, 1)" || why "insert" || return 1
	kgr "$T/old.db" registry migrate
	expect_rc 0 && expect_out "registry $T/old.db: schema 3 -> 6" || return 1
	kgr "$T/old.db" device show o1
	expect_rc 0 || return 1
	# from the config file too
	printf '[daemon]\ncert = c.pem\nkey = k.pem\nregistry = cfg.db\n' >"$T/mig.conf"
	timeout 30 "$BIN" -c "$T/mig.conf" registry migrate >"$T/out" 2>"$T/err"
	RC=$? CMD="-c mig.conf registry migrate"
	expect_rc 0 && expect_out "registry $T/cfg.db: schema 0 -> 6" || return 1
	# garbage is refused and left as it was
	head -c 8192 /dev/urandom >"$T/junk.db"
	sum=$(sha256sum <"$T/junk.db")
	kgr "$T/junk.db" registry migrate
	expect_rc 3 && expect_err_line "not a registry database" || return 1
	[ "$(sha256sum <"$T/junk.db")" = "$sum" ] || why "migrate changed a garbage file" || return 1
	kgr "$db" registry migrate extra
	expect_rc 1 && expect_err_line "registry migrate: unexpected argument 'extra'" || return 1
	kgr "$db" registry frobnicate
	expect_rc 1 || return 1
}

t_copy_fields() {
	local src=$T/src.db dst=$T/dst.db
	make_source "$src" || return 1
	kgx registry copy --from "sqlite:$src" --to "$dst"
	expect_rc 0 && expect_out "copied 3 CAs, 6 devices, 4 credentials" || return 1
	[ ! -s "$T/err" ] || why "copy said something: $(cat "$T/err")" || return 1
	same_dump "$src" "$dst" || return 1
	# the probes compared values: the times are the source's (not the copy's now)
	[ "$(sql "$dst" "SELECT added_at FROM cas WHERE name = 'pending'")" = \
		"$(sql "$src" "SELECT 1700000000 + 11 * rowid FROM cas WHERE name = 'pending'")" ] ||
		why "added_at not kept" || return 1
	[ "$(sql "$dst" "SELECT count(*) FROM credentials")" = 4 ] || why "credential count" || return 1
	same_views "$src" "$dst" || return 1
	# the copy is a working registry: a row changes there, not in the source
	kgr "$dst" device set s1 --status disabled
	expect_rc 0 || return 1
	[ "$(sql "$src" "SELECT status FROM devices WHERE id = 's1'")" = enabled ] || why "source changed" || return 1
	# the pending CA is proven on the copy with a verification certificate made for the
	# SOURCE's challenge: the challenge moved with it
	local code
	code=$(sql "$src" "SELECT challenge FROM cas WHERE name = 'pending'")
	[ "${#code}" -eq 32 ] || why "no pending challenge in the source: '$code'" || return 1
	"$BIN" pki verification-cert --ca "$T/pki/r2" --challenge "$code" --out "$T/pki/v2.pem" >/dev/null || why "verification cert" || return 1
	kgr "$dst" ca verify pending "$T/pki/v2.pem"
	expect_rc 0 || return 1
	# an empty source gives an empty copy
	kgr "$T/empty.db" registry migrate
	kgx registry copy --from "$T/empty.db" --to "$T/empty2.db"
	expect_rc 0 && expect_out "copied 0 CAs, 0 devices, 0 credentials" || return 1
}

t_copy_refused() {
	local src=$T/rsrc.db dst=$T/rdst.db before
	make_source "$src" || return 1
	kgr "$dst" device add d-only
	expect_rc 0 || return 1
	before=$(dump "$dst")
	kgx registry copy --from "$src" --to "$dst"
	expect_rc 1 && expect_err_line "^ktlsgate: registry copy: destination $dst is not empty \(0 CAs, 1 devices\); nothing copied$" || return 1
	[ "$(dump "$dst")" = "$before" ] || why "a refused copy wrote to the destination" || return 1
	# an older schema's file is not an empty registry, and is not migrated by the refusal
	"$REGTOOL" create "$T/old3.db" 3 || why "kg-regtool create" || return 1
	kgx registry copy --from "$src" --to "$T/old3.db"
	expect_rc 1 && expect_err_line "has schema 3, older than this build \(6\)" || return 1
	[ "$(sql "$T/old3.db" "PRAGMA user_version")" = 3 ] || why "the refusal migrated the file" || return 1
	# a row the destination refuses midway (a thumbprint two devices pin: the SQLite
	# store checks that in code, so plain SQL could write it): the one transaction
	# is rolled back, the 3 CAs and the devices before x1 included
	sql "$src" ".backup '$T/dup.db'" || why "sqlite3 backup" || return 1
	sql "$T/dup.db" "UPDATE devices SET thumb_primary = (SELECT thumb_primary FROM devices WHERE id = 'p1')
		WHERE id = 'x1'" || why "sqlite3 update" || return 1
	kgx registry copy --from "$T/dup.db" --to "$T/dupdst.db"
	expect_rc 3 && expect_err_line "^ktlsgate: registry copy: device x1 refused by the destination: a thumbprint of device x1 is another device's; nothing copied$" || return 1
	[ "$(sql "$T/dupdst.db" "SELECT (SELECT count(*) FROM cas) || ' ' || (SELECT count(*) FROM devices) || ' ' ||
		(SELECT count(*) FROM credentials)")" = "0 0 0" ] || why "a refused copy left rows behind" || return 1
	# sources that are not there or not registries: nothing created at the destination
	kgx registry copy --from "$T/nope.db" --to "$T/new1.db"
	expect_rc 3 && expect_err_line "^ktlsgate: registry $T/nope.db: No such file or directory$" || return 1
	[ ! -e "$T/nope.db" ] && [ ! -e "$T/new1.db" ] || why "a file was created" || return 1
	head -c 8192 /dev/urandom >"$T/garbage.db"
	kgx registry copy --from "$T/garbage.db" --to "$T/new1.db"
	expect_rc 3 && expect_err_line "garbage\.db: not a registry database" || return 1
	[ ! -e "$T/new1.db" ] || why "destination created for a garbage source" || return 1
	sqlite3 "$T/foreign.db" "CREATE TABLE t (x); INSERT INTO t VALUES (1)" || why "sqlite3" || return 1
	kgx registry copy --from "$T/foreign.db" --to "$T/new1.db"
	expect_rc 3 && expect_err_line "foreign SQLite database" || return 1
	kgx registry copy --from "$src" --to "$T/garbage.db"
	expect_rc 3 && expect_err_line "not a registry database" || return 1
	# usage
	kgx registry copy --from "$src"
	expect_rc 1 && expect_err_line "registry copy: needs --from LOCATION and --to LOCATION" || return 1
	kgx registry copy --from "$src" --to "sqlite:$src"
	expect_rc 1 && expect_err_line "registry copy: --from and --to are the same registry" || return 1
	kgx registry copy --from "$src" --to "mysql://u:hunter2@h/d"
	expect_rc 1 && expect_err_line "registry copy: --to: 'mysql://u:\*\*\*@h/d' is neither" || return 1
	kgx registry copy --from "$src" --to "$T/x.db" extra
	expect_rc 1 && expect_err_line "unexpected argument 'extra'" || return 1
}

# 100 devices, a third each sas, token and basic, with both slots for some, imported
# with secrets we know; after the copy every one authenticates on the copy through the
# daemon's CONNECT check, byte-identical credentials, and a wrong secret is refused.
t_copy_100() {
	local src=$T/big.db dst=$T/big2.db i id key
	printf 'id,auth,username,secret,secondary_secret\n' >"$T/big.csv"
	: >"$T/big.secrets"
	for ((i = 0; i < 100; i++)); do
		id=$(printf 'dev-%03d' "$i")
		case $((i % 3)) in
		0)
			key=$(head -c 32 /dev/urandom | base64 -w0)
			if ((i % 2)); then
				printf '%s,sas,,%s,%s\n' "$id" "$key" "$(head -c 32 /dev/urandom | base64 -w0)"
			else
				printf '%s,sas,,%s,\n' "$id" "$key"
			fi >>"$T/big.csv"
			;;
		1)
			key="tok-$id-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
			printf '%s,token,,%s,\n' "$id" "$key" >>"$T/big.csv"
			;;
		2)
			key="pw-$id-$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')"
			printf '%s,basic,user-%s,%s,\n' "$id" "$id" "$key" >>"$T/big.csv"
			;;
		esac
		printf '%s %s\n' "$id" "$key" >>"$T/big.secrets"
	done
	kgr "$src" device import "$T/big.csv" --kdf-threads 2
	expect_rc 0 || return 1
	[ "$(sql "$src" "SELECT count(*) FROM devices")" = 100 ] || why "import: $(cat "$T/err")" || return 1
	kgx registry copy --from "$src" --to "sqlite:$dst"
	expect_rc 0 && expect_out "copied 0 CAs, 100 devices, 117 credentials" || return 1
	same_dump "$src" "$dst" || return 1
	check_auth "$dst" || return 1
}

# check_auth REGISTRY: every device of $T/big.secrets authenticates on REGISTRY (the
# daemon's CONNECT check); a wrong secret of each kind is refused.
check_auth() {
	local reg=$1 id key got want i=0
	while read -r id key; do
		case $((i % 3)) in
		0) got=$("$REGTOOL" auth-check "$reg" "$id" "$HUB/$id/?api-version=2021-04-12" "$(sas_token "$id" "$key")" 2>&1 | tail -n 1)
		   want="ok sas $id" ;;
		1) got=$("$REGTOOL" auth-check "$reg" anything "$key" - 2>&1 | tail -n 1)
		   want="ok token $id" ;;
		2) got=$("$REGTOOL" auth-check "$reg" c1 "user-$id" "$key" 2>&1 | tail -n 1)
		   want="ok basic $id" ;;
		esac
		[ "$got" = "$want" ] || why "$id on $reg: '$got', wanted '$want'" || return 1
		i=$((i + 1))
	done <"$T/big.secrets"
	[ "$i" -eq 100 ] || why "checked $i devices, not 100" || return 1
	got=$("$REGTOOL" auth-check "$reg" anything "tok-wrong" - 2>&1 | tail -n 1)
	[ "$got" = "refused token bad_credentials 0x04 0x86" ] || why "a wrong token: '$got'" || return 1
	got=$("$REGTOOL" auth-check "$reg" c1 user-dev-002 "wrong-password" 2>&1 | tail -n 1)
	[ "$got" = "refused basic bad_credentials 0x04 0x86" ] || why "a wrong password: '$got'" || return 1
}

# --- PostgreSQL ------------------------------------------------------------------------

PG_STATE=""   # "" not tried, "up", or why not

pg_up() {
	[ -n "$PG_STATE" ] || {
		if ! kg_pg_start "$T/pg" 2>"$T/pg.err"; then
			PG_STATE="server did not start: $(tail -n 3 "$T/pg.err" | tr '\n' ' ')"
		else
			PG_UP=1
			if timeout 60 "$BIN" -c "$T/no-such.conf" -r "$KG_PG_URI" registry migrate >"$T/out" 2>"$T/err"; then
				PG_STATE=up
			else
				PG_STATE="store not built ($(head -c 200 "$T/err"))"
			fi
		fi
	}
	[ "$PG_STATE" = up ]
}

# A clean schema for each PG test: the store recreates it on the next read-write open.
pg_reset() {
	kg_pg_sql "DROP SCHEMA IF EXISTS ktlsgate CASCADE" >/dev/null 2>&1
}

t_pg_migrate() {
	pg_reset
	# -t before any schema: a note, not an error (the start creates it); nothing created
	printf '[daemon]\ncert = c.pem\nkey = k.pem\nregistry = %s\ncontrol_socket = %s\n' "$KG_PG_URI" "$T/ctl.sock" >"$T/pg.conf"
	timeout 60 "$GATED" -t -c "$T/pg.conf" >"$T/out" 2>"$T/err"
	RC=$? CMD="ktlsgated -t (pg, no schema)"
	expect_rc 0 || return 1
	grep -qxF "ktlsgated: note: registry $KG_PG_URI is empty: it is initialised at start" "$T/out" ||
		why "-t without a schema: $(cat "$T/out")" || return 1
	[ "$(grep -o "registry postgresql" "$T/out" | wc -l)" -eq 1 ] || why "-t names the registry twice: $(cat "$T/out")" || return 1
	[ -z "$(kg_pg_sql "SELECT 1 FROM pg_namespace WHERE nspname = 'ktlsgate'")" ] || why "-t created the schema" || return 1
	kgr "$KG_PG_URI" registry migrate
	expect_rc 0 || return 1
	expect_out "registry $KG_PG_URI: schema 0 -> 6" || return 1
	kgr "$KG_PG_URI" registry migrate
	expect_rc 0 && expect_out "registry $KG_PG_URI: schema 6, current" || return 1
	# ktlsgated -t on the URI: connects, reports the schema
	timeout 60 "$GATED" -t -c "$T/pg.conf" >"$T/out" 2>"$T/err"
	RC=$? CMD="ktlsgated -t (pg)"
	expect_rc 0 || return 1
	grep -qxF "ktlsgated: registry $KG_PG_URI: schema 6" "$T/out" || why "-t: $(cat "$T/out")" || return 1
	# an older schema (faked: 6 is the first this store knows): -t gives the numbers of
	# the migration a start would make, read without writing
	kg_pg_sql "UPDATE ktlsgate.meta SET value = '5' WHERE name = 'schema_version'" || why "meta update" || return 1
	timeout 60 "$GATED" -t -c "$T/pg.conf" >"$T/out" 2>"$T/err"
	RC=$? CMD="ktlsgated -t (pg, older schema)"
	expect_rc 0 || return 1
	grep -qxF "ktlsgated: note: registry $KG_PG_URI has schema version 5; this build migrates it to 6 at start (CAs not checked)" "$T/out" ||
		why "-t on an older schema: $(cat "$T/out")" || return 1
	[ "$(kg_pg_sql "SELECT value FROM ktlsgate.meta WHERE name = 'schema_version'")" = 5 ] || why "-t wrote the version" || return 1
	kg_pg_sql "UPDATE ktlsgate.meta SET value = '6' WHERE name = 'schema_version'" || why "meta update" || return 1
	# a schema newer than this build: -t refuses (exit 1), the CLI too (exit 3)
	kg_pg_sql "UPDATE ktlsgate.meta SET value = '99' WHERE name = 'schema_version'" || why "meta update" || return 1
	timeout 60 "$GATED" -t -c "$T/pg.conf" >"$T/out" 2>"$T/err"
	RC=$? CMD="ktlsgated -t (pg, newer schema)"
	expect_rc 1 || return 1
	grep -q "newer than this build" "$T/err" || why "-t on a newer schema: $(cat "$T/err")" || return 1
	kgr "$KG_PG_URI" registry migrate
	expect_rc 3 && expect_err_line "newer than this build" || return 1
	kg_pg_sql "UPDATE ktlsgate.meta SET value = '6' WHERE name = 'schema_version'" || why "meta update" || return 1
	# a password in the URI (trust auth ignores it) is never printed
	kgr "postgresql://ktlsgate_test:hunter2@127.0.0.1:$KG_PG_PORT/ktlsgate" registry migrate
	expect_rc 0 && expect_out "registry postgresql://ktlsgate_test:***@127.0.0.1:$KG_PG_PORT/ktlsgate: schema 6, current" || return 1
	kgr "postgresql://ktlsgate_test:hunter2@127.0.0.1:$KG_PG_PORT/nosuchdb" registry migrate
	expect_rc 3 || return 1
	grep -q hunter2 "$T/err" && { why "the password was printed: $(cat "$T/err")"; return 1; }
	return 0
}

# SQLite -> PostgreSQL -> SQLite: the second file holds the first one's rows, the CLI
# shows the same on all three, and every device authenticates against PostgreSQL.
t_pg_copy() {
	local src=$T/pgsrc.db back=$T/pgback.db
	pg_reset
	make_source "$src" || return 1
	kgx registry copy --from "sqlite:$src" --to "$KG_PG_URI"
	expect_rc 0 && expect_out "copied 3 CAs, 6 devices, 4 credentials" || return 1
	[ ! -s "$T/err" ] || why "copy said something: $(cat "$T/err")" || return 1
	same_pg_dump "$src" || return 1        # every column, as psql reads it
	same_views "$src" "$KG_PG_URI" || return 1
	kgx registry copy --from "$KG_PG_URI" --to "$back"
	expect_rc 0 && expect_out "copied 3 CAs, 6 devices, 4 credentials" || return 1
	same_dump "$src" "$back" || return 1   # SQLite -> PostgreSQL -> SQLite
	# a row PostgreSQL refuses midway: one transaction rolled back, the schema stays empty
	pg_reset
	sql "$src" ".backup '$T/pgdup.db'" || why "sqlite3 backup" || return 1
	sql "$T/pgdup.db" "UPDATE devices SET thumb_primary = (SELECT thumb_primary FROM devices WHERE id = 'p1')
		WHERE id = 'x1'" || why "sqlite3 update" || return 1
	kgx registry copy --from "$T/pgdup.db" --to "$KG_PG_URI"
	expect_rc 3 && expect_err_line "^ktlsgate: registry copy: device x1 refused by the destination: a thumbprint of device x1 is another device's; nothing copied$" || return 1
	[ "$(kg_pg_sql "SELECT (SELECT count(*) FROM ktlsgate.cas) || ' ' || (SELECT count(*) FROM ktlsgate.devices)
		|| ' ' || (SELECT count(*) FROM ktlsgate.credentials)")" = "0 0 0" ] || why "a refused copy left rows in PG" || return 1
	kgx registry copy --from "sqlite:$src" --to "$KG_PG_URI"
	expect_rc 0 && expect_out "copied 3 CAs, 6 devices, 4 credentials" || return 1
	# non-empty PostgreSQL destination: refused, nothing written
	kgx registry copy --from "$src" --to "$KG_PG_URI"
	expect_rc 1 && expect_err_line "is not empty \(3 CAs, 6 devices\); nothing copied" || return 1
	[ "$(kg_pg_sql "SELECT count(*) FROM ktlsgate.devices")" = 6 ] || why "refused copy changed PG" || return 1
}

t_pg_copy_100() {
	[ -s "$T/big.secrets" ] && [ -f "$T/big.db" ] || why "needs t_copy_100's source" || return 1
	pg_reset
	kgx registry copy --from "$T/big.db" --to "$KG_PG_URI"
	expect_rc 0 && expect_out "copied 0 CAs, 100 devices, 117 credentials" || return 1
	check_auth "$KG_PG_URI" || return 1
	kgx registry copy --from "$KG_PG_URI" --to "$T/big3.db"
	expect_rc 0 || return 1
	same_dump "$T/big.db" "$T/big3.db" || return 1   # the credential bytes, through PostgreSQL
}

# Two daemons on one PostgreSQL registry (the point of it: no lock file keeps the second
# out), each with its own port and control socket; a password in the URI (the test
# cluster trusts any) shows as *** in `status` and in nothing either daemon prints.
t_pg_daemons() {
	local i port pids=() uri="postgresql://ktlsgate_test:hunter2@127.0.0.1:$KG_PG_PORT/ktlsgate" ok=0
	pg_reset
	"$BIN" pki root --cn "gw root" --out "$T/gwroot" >/dev/null &&
		"$BIN" pki server --cn localhost --ca "$T/gwroot" --out "$T/gw/server" >/dev/null || why "pki" || return 1
	kgr "$uri" registry migrate
	expect_rc 0 || return 1
	for i in 1 2; do
		port=$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
		printf '[daemon]\nlisten = 127.0.0.1:%s\nworkers = 1\ncert = server/chain.pem\nkey = server/key.pem\nregistry = %s\ncontrol_socket = ctl%s.sock\nmetrics_listen = off\n' \
			"$port" "$uri" "$i" >"$T/gw/gw$i.conf"
		"$GATED" -c "$T/gw/gw$i.conf" >"$T/gw/gw$i.log" 2>&1 &
		pids+=($!)
		for ((k = 0; k < 200; k++)); do
			[ -n "$(ss -Hltn "sport = :$port" 2>/dev/null)" ] && break
			kill -0 "${pids[-1]}" 2>/dev/null || break
			sleep 0.05
		done
		[ -n "$(ss -Hltn "sport = :$port" 2>/dev/null)" ] || { why "daemon $i did not listen: $(tail -n 3 "$T/gw/gw$i.log")"; break; }
		timeout 20 "$BIN" -c "$T/gw/gw$i.conf" status --json >"$T/out" 2>"$T/err"
		RC=$? CMD="status (daemon $i)"
		expect_rc 0 || break
		[ "$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["registry"])' "$T/out")" = \
			"postgresql://ktlsgate_test:***@127.0.0.1:$KG_PG_PORT/ktlsgate" ] || { why "status registry: $(cat "$T/out")"; break; }
		ok=$((ok + 1))
	done
	for i in "${pids[@]}"; do kill "$i" 2>/dev/null; done
	for i in "${pids[@]}"; do timeout 10 tail --pid="$i" -f /dev/null || kill -9 "$i" 2>/dev/null; done
	[ "$ok" -eq 2 ] || return 1
	! grep -q hunter2 "$T/gw/gw1.log" "$T/gw/gw2.log" || why "a daemon printed the password" || return 1
	[ -z "$(find "$T/gw" -name '*.lock' -o -name 'postgresql*')" ] || why "a daemon made a lock or URI-named file: $(ls "$T/gw")" || return 1
}

# --- run -------------------------------------------------------------------------------

ALL_TESTS=(t_config_location t_migrate t_copy_fields t_copy_refused t_copy_100)
PG_TESTS=(t_pg_migrate t_pg_copy t_pg_copy_100 t_pg_daemons)
list=("${ALL_TESTS[@]}" "${PG_TESTS[@]}")
[ -n "${KG_ONLY:-}" ] && read -r -a list <<<"$KG_ONLY"
passed=0
failed=0
notrun=0
for t in "${list[@]}"; do
	: >"$T/why"
	if [[ " ${PG_TESTS[*]} " == *" $t "* ]] && ! pg_up; then
		notrun=$((notrun + 1))
		continue
	fi
	t0=$SECONDS
	if "$t"; then
		echo "PASS $t ($((SECONDS - t0))s)"
		passed=$((passed + 1))
	else
		echo "FAIL $t: $(cat "$T/why")"
		failed=$((failed + 1))
	fi
done
if [ "$notrun" -gt 0 ]; then
	# one line for the PostgreSQL variant: it counts as not passed
	case $PG_STATE in
	"store not built"*) echo "NOT RUN pg: store not built ($notrun tests; ${PG_STATE#store not built })" ;;
	*) echo "NOT RUN pg: $PG_STATE ($notrun tests)" ;;
	esac
fi
echo "$passed passed, $((failed + notrun)) failed"
[ "$failed" -eq 0 ] && [ "$notrun" -eq 0 ] && [ "$passed" -gt 0 ]
