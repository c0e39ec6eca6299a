#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# test-walkthrough.sh - what a new user meets first, against real processes:
#   * README "Running it" run exactly as written (the first ```sh block after the
#     heading), as the unprivileged user nobody, in a scratch directory holding only
#     copies of the two programs and docs/examples, inside private network and PID
#     namespaces (its fixed ports 8883/9883/1883 cannot collide with anything, and
#     every process it starts, mosquitto -d included, dies with the namespace); then a
#     device gets CONNACK 0
#     through the gateway it started, and the README's second block (mosquitto_pub)
#     prints "received CONNACK (0)".
#   * `ktlsgated --help` / `-h` (every option listed), an unknown option refused.
#   * `ktlsgate reload` against a running ktlsgated: success; a config the daemon
#     refuses (exit 2 with the daemon's own reason, running config kept and still
#     serving); a config that does not parse (exit 2, FILE:LINE); no daemon (exit 3).
#   * `ktlsgate device import` with a running daemon: the daemon is notified and an
#     imported thumbprint device connects.
# Needs root for the namespaces and runuser (the walkthrough test is a SKIP otherwise).
set -u
. "$(dirname "$0")/lib.sh"
kg_init walkthrough

# --- README --------------------------------------------------------------------------

# readme_block N: the Nth ```sh block after "## Running it" in README.md.
readme_block() {
	awk -v want="$1" '
		/^## / { f = ($0 == "## Running it") }
		f && /^```sh$/ { n++; if (n == want) { b = 1; next } }
		b && /^```$/ { exit }
		b { print }' "$KG_TOP/README.md"
}

t_readme_walkthrough() {
	[ "$(id -u)" = 0 ] || { skip "needs root (unshare, runuser)"; return; }
	local d out
	readme_block 1 >"$WORK/walk.sh"
	readme_block 2 >"$WORK/connect.sh"
	[ -s "$WORK/walk.sh" ] || { note "no sh block under '## Running it' in README.md"; return 1; }
	grep -q 'ktlsgated -c ktlsgate.conf' "$WORK/walk.sh" || { note "block 1 does not start ktlsgated: $(cat "$WORK/walk.sh")"; return 1; }
	grep -q 'mosquitto_pub' "$WORK/connect.sh" || { note "block 2 has no mosquitto_pub"; return 1; }
	d=$(mktemp -d /tmp/kg-walk.XXXXXX)
	# The scratch directory: what the block uses of a clone after `make`, owned by
	# nobody. Copies, not links: nobody may not be able to enter the checkout (a clone
	# under /root), and the test must not depend on where the tree lives.
	mkdir -p "$d/build" "$d/docs/examples"
	cp "$GATED" "$KGCLI" "$d/build/"
	cp "$KG_TOP/docs/examples/"*.conf "$d/docs/examples/"
	cp "$WORK/walk.sh" "$WORK/connect.sh" "$KGC" "$d/"
	chown -R nobody: "$d"
	chmod 755 "$d"
	out=$(timeout 120 unshare --net --pid --fork --kill-child bash -c '
		d=$1 kgc=$2
		ip link set lo up || exit 90
		cd "$d" || exit 91
		runuser -u nobody -- bash -euo pipefail walk.sh >walk.log 2>&1 &
		walk=$!
		for i in $(seq 300); do
			ss -Hltn "sport = :8883" | grep -q . && break
			kill -0 $walk 2>/dev/null || { echo "walkthrough exited before ktlsgated listened"; exit 92; }
			sleep 0.1
		done
		echo "uid $(runuser -u nobody -- id -u)"
		runuser -u nobody -- timeout 20 /usr/bin/python3 "$kgc" connect --port 8883 \
			--ca pki/root/cert.pem --cert pki/sensor-1/chain.pem --key pki/sensor-1/key.pem \
			--id sensor-1 --topic sensors/1 --msg walk
		runuser -u nobody -- timeout 20 bash -e connect.sh 2>&1
		echo "connect.sh rc=$?"
		echo "owner $(stat -c %U registry.db) $(stat -c %U control.sock)"
		echo "still running $(kill -0 $walk 2>/dev/null && echo yes || echo no)"
	' _ "$d" "$d/kgclient.py" 2>&1)
	echo "$out" | sed 's/^/    /'
	sed 's/^/    walk.log: /' "$d/walk.log" 2>/dev/null | tail -20
	rm -rf "$d"
	echo "$out" | grep -qx "uid $(id -u nobody)" || { note "not run as nobody"; return 1; }
	echo "$out" | grep -qx 'connack 0x00' || { note "device did not get CONNACK 0 through the README's gateway"; return 1; }
	echo "$out" | grep -qx 'puback 0x00' || { note "no PUBACK 0 from the backend through the gateway"; return 1; }
	echo "$out" | grep -q 'received CONNACK (0)$' || { note "README block 2 (mosquitto_pub) got no CONNACK (0)"; return 1; }
	echo "$out" | grep -qx 'connect.sh rc=0' || { note "README block 2 failed"; return 1; }
	echo "$out" | grep -qx 'owner nobody nobody' || { note "registry/control socket not owned by nobody"; return 1; }
	echo "$out" | grep -qx 'still running yes' || { note "ktlsgated did not stay up"; return 1; }
}

# --- ktlsgated --help -----------------------------------------------------------------

t_gated_help() {
	local out rc opt
	for opt in --help -h; do
		out=$("$GATED" "$opt" 2>&1)
		rc=$?
		[ "$rc" = 0 ] || { note "ktlsgated $opt: exit $rc: $out"; return 1; }
		echo "$out" | grep -q '^usage: ktlsgated ' || { note "ktlsgated $opt: no usage line: $out"; return 1; }
		for want in '-c, --config FILE' '-t, --test' '-d, --debug' '-h, --help' '-V, --version' \
			'-T, --takeover'; do
			echo "$out" | grep -qF -- "$want" || { note "ktlsgated $opt lacks '$want'"; return 1; }
		done
	done
	out=$("$GATED" --version 2>&1) && echo "$out" | grep -qE '^ktlsgated [0-9]+\.[0-9]+' ||
		{ note "--version: $out"; return 1; }
	out=$("$GATED" --bogus 2>&1)
	rc=$?
	[ "$rc" = 1 ] || { note "--bogus: exit $rc, wanted 1"; return 1; }
	echo "$out" | grep -q '^usage: ktlsgated ' || { note "--bogus: no usage: $out"; return 1; }
}

# --- a real daemon for reload and import -------------------------------------------------

gw_up() {
	BK_PORT=$(free_port)
	GW_PORT=$(free_port)
	GW_MPORT=$(free_port)
	start_broker "$BK_PORT" || return 1
	write_gw_conf "$WORK/gw" "$GW_PORT" "$GW_MPORT" "$BK_PORT" "$BK_PORT"
	GW_CONF="$WORK/gw/ktlsgate.conf"
	pki_setup "$WORK/pki" || return 1
	device_cert dev1 "$PKI/factory"
	kg device add dev1 >/dev/null || return 1
	start_gateway
}

# connack ID: the CONNACK line a device gets.
connack() {
	kgc connect $(dev_args "$1")
}

# cli ARGS: the CLI against $GW_CONF; stdout/stderr/exit in OUT, ERR, RC.
cli() {
	OUT=$("$KGCLI" -c "$GW_CONF" "$@" 2>"$WORK/err")
	RC=$?
	ERR=$(cat "$WORK/err")
}

t_reload() {
	local before after
	[ "$(connack dev1)" = "connack 0x00" ] || { note "dev1 refused before the reload"; return 1; }
	before=$("$KGCLI" -c "$GW_CONF" status --json | $PY -c 'import json,sys; print(json.load(sys.stdin)["reloads"])')
	[ -n "$before" ] || { note "no reloads count in status"; return 1; }
	cli reload
	[ "$RC" = 0 ] || { note "reload: exit $RC: $ERR"; return 1; }
	[ "$OUT" = "reloaded" ] || { note "reload printed '$OUT'"; return 1; }
	[ -z "$ERR" ] || { note "reload wrote to stderr: $ERR"; return 1; }
	after=$("$KGCLI" -c "$GW_CONF" status --json | $PY -c 'import json,sys; print(json.load(sys.stdin)["reloads"])')
	[ "$after" = $((before + 1)) ] || { note "reloads $before -> '$after'"; return 1; }
	grep -q 'reloaded .*ktlsgate.conf' "$GW_LOG" || { note "no 'reloaded' line in the daemon log"; return 1; }
}

t_reload_refused() {
	local good="$WORK/gw/ktlsgate.conf.good"
	cp "$GW_CONF" "$good"
	# Parses, but the daemon cannot build it: the refusal is the daemon's.
	sed -i 's#^cert = .*#cert = server/missing.pem#' "$GW_CONF"
	cli reload
	cp "$good" "$GW_CONF"
	[ "$RC" = 2 ] || { note "refused reload: exit $RC, wanted 2 ($ERR)"; return 1; }
	[ "$(printf '%s\n' "$ERR" | wc -l)" = 1 ] || { note "stderr not one line: $ERR"; return 1; }
	echo "$ERR" | grep -qE '^ktlsgate: reload refused, running configuration kept: .*missing\.pem' ||
		{ note "stderr: $ERR"; return 1; }
	[ -z "$OUT" ] || { note "stdout on a refusal: $OUT"; return 1; }
	grep -q 'reload failed, running configuration kept: .*missing\.pem' "$GW_LOG" ||
		{ note "daemon log lacks the refusal"; return 1; }
	[ "$(connack dev1)" = "connack 0x00" ] || { note "dev1 refused after a refused reload"; return 1; }
	# Does not parse: refused with the loader's FILE:LINE, before reaching the daemon.
	printf 'workers = lots\n' >>"$GW_CONF"
	cli reload
	cp "$good" "$GW_CONF"
	[ "$RC" = 2 ] || { note "unparsable config: exit $RC, wanted 2 ($ERR)"; return 1; }
	echo "$ERR" | grep -qE '^ktlsgate: reload refused \(not sent to the daemon\): .*ktlsgate\.conf:[0-9]+: .*workers' ||
		{ note "stderr: $ERR"; return 1; }
	[ "$(connack dev1)" = "connack 0x00" ] || { note "dev1 refused after the second refusal"; return 1; }
}

t_import_notifies_daemon() {
	local thumb
	pki self-signed --cn imp-pin --out "$PKI/dev/imp-pin" || return 1
	thumb=$(fingerprint "$PKI/dev/imp-pin/cert.pem")
	device_cert imp-ca "$PKI/factory"
	[ "$(connack imp-pin)" = "connack 0x00" ] && { note "imp-pin admitted before import"; return 1; }
	printf '{"id": "imp-pin", "thumbprint": "%s"}\n{"id": "imp-ca", "status": "enabled"}\n' "$thumb" >"$WORK/imp.jsonl"
	cli device import "$WORK/imp.jsonl"
	[ "$RC" = 0 ] || { note "import: exit $RC: $ERR"; return 1; }
	[ "$OUT" = "imported 2 devices (daemon notified)" ] || { note "import printed '$OUT'"; return 1; }
	[ "$(connack imp-pin)" = "connack 0x00" ] || { note "imported thumbprint device refused"; return 1; }
	[ "$(connack imp-ca)" = "connack 0x00" ] || { note "imported CA device refused"; return 1; }
}

t_reload_no_daemon() {
	stop_gateway
	cli reload
	[ "$RC" = 3 ] || { note "no daemon: exit $RC, wanted 3"; return 1; }
	echo "$ERR" | grep -qE '^ktlsgate: daemon not running \(control socket .*ctl\.sock\)$' ||
		{ note "stderr: $ERR"; return 1; }
}

ALL_TESTS=(t_gated_help t_readme_walkthrough t_reload t_reload_refused t_import_notifies_daemon t_reload_no_daemon)

if ! gw_up; then
	echo "FAIL setup: gateway did not start"
	exit 1
fi
run_tests
