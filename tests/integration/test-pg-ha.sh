#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# test-pg-ha.sh - several appliances on one PostgreSQL registry (issue 16): concurrent
# auto-enrolment and a database restart under live sessions. One throwaway cluster
# (tests/lib/pg.sh), two ktlsgated with `registry = postgresql://...` (appliance 1 on
# the unix socket, appliance 2 over TCP), each relaying to its own mosquitto (the same
# device id on both appliances must not meet itself on one broker: mosquitto would
# take the older session over). Two auto-enrol CAs under the test root, enrol-a and
# enrol-b. The clients are tests/integration/pg-ha-client.py.
#   t_concurrent_enrolment    20 new devices, each connecting to both appliances at the
#                             same instant: one row each, both admitted, one `enrolled`
#                             and one `ok` between the two audit logs, no session cut
#   t_twin_leaf_same_ca       the same id, two different leaves of one auto-enrol CA,
#                             racing: one row (bound to the CA, no thumbprint), both in
#   t_clash_other_ca          the same id from enrol-a and enrol-b racing: the row stays
#                             bound to the winner's CA, the other session is cut within
#                             2 s and its enrolment audited `attestation_mismatch`
#   t_db_restart_live_sessions a live session on each appliance relays while the
#                             cluster is stopped and after it is back; both watchers
#                             reconnect (metrics) and one `device set --status disabled`
#                             cuts both sessions within 1 s
# make check-pg-ha (mk/pgwatch.mk) runs it. Until the PostgreSQL store is built it
# prints "NOT RUN: PostgreSQL store not built" and exits non-zero.
# shellcheck disable=SC2046,SC2034
set -u
. "$(dirname "$0")/lib.sh"
. "$KG_TOP/tests/lib/pg.sh"
. "$KG_TOP/tests/lib/pg-appliances.sh"
HA="$KG_TOP/tests/integration/pg-ha-client.py"
RACE_N=${KG_PG_HA_RACE_N:-20}

setup() {
	local i
	pga_cluster pg-ha || return 1
	pga_conf 1 "$KG_PG_URI" && pga_conf 2 "$KG_PG_TCP_URI" || return 1
	# appliance 2 relays to the second broker (see the header)
	sed -i 's|^default_backend = local$|default_backend = other|' "$WORK/a2/ktlsgate.conf"
	use 1
	kg registry migrate >/dev/null 2>&1 || true
	pki_setup "$WORK/pki" || return 1
	cp -r "$WORK/a1/server" "$WORK/a2/" || return 1
	pki intermediate --cn "enrol-a" --ca "$PKI/root" --out "$PKI/enrol-a" || return 1
	pki intermediate --cn "enrol-b" --ca "$PKI/root" --out "$PKI/enrol-b" || return 1
	register_ca enrol-a "$PKI/enrol-a" --auto-enroll || return 1
	register_ca enrol-b "$PKI/enrol-b" --auto-enroll || return 1
	for ((i = 1; i <= RACE_N; i++)); do
		device_cert "$(printf 'race-%02d' "$i")" "$PKI/enrol-a" || return 1
	done
	# twin: two leaves of enrol-a with one id; clash: the same id from enrol-a and enrol-b
	pki device --cn twin --ca "$PKI/enrol-a" --out "$PKI/dev/twin-1" || return 1
	pki device --cn twin --ca "$PKI/enrol-a" --out "$PKI/dev/twin-2" || return 1
	pki device --cn clash --ca "$PKI/enrol-a" --out "$PKI/dev/clash-a" || return 1
	pki device --cn clash --ca "$PKI/enrol-b" --out "$PKI/dev/clash-b" || return 1
	device_cert live "$PKI/factory" || return 1
	kg device add live >/dev/null || { echo "device add live failed" >&2; return 1; }
	start_broker "$BK_PORT" || return 1
	start_broker "$BK2_PORT" || return 1
	pga_start 1 2 || return 1
}

# audits ID: the decision lines both appliances wrote for device ID, one per line as
# "N REASON DECISION DETAIL" (N: the appliance), in log order per appliance.
audits() {
	local i
	for i in 1 2; do
		$PY - "$WORK/a$i/gw.log" "$1" "$i" <<'EOF'
import json, sys
path, dev, n = sys.argv[1:4]
for line in open(path, "rb"):
    line = line.strip()
    if not line.startswith(b"{"):
        continue
    try:
        o = json.loads(line)
    except ValueError:
        continue
    if o.get("event") == "decision" and o.get("device") == dev:
        print(n, o.get("reason"), o.get("decision"), o.get("detail", ""))
EOF
	done
}

# row ID: "status attestation ca_name thumb_primary" of the device's row, one line per row.
row() {
	kg_pg_sql "SELECT status, attestation, coalesce(ca_name, '-'), coalesce(thumb_primary, '-') FROM ktlsgate.devices WHERE id = '$1'" | tr '|' ' '
}

# json_get JSON EXPR: a Python expression on the object `o` (e.g. o['a'][0]).
json_get() {
	printf '%s' "$1" | $PY -c 'import json,sys; o=json.load(sys.stdin); print(eval(sys.argv[1]))' "$2" 2>/dev/null
}

# wait_audits ID COUNT: until both logs hold COUNT decision lines for ID (5 s).
wait_audits() {
	local i
	for ((i = 0; i < 50; i++)); do
		[ "$(audits "$1" | wc -l)" -ge "$2" ] && return 0
		sleep 0.1
	done
	return 1
}

# race_verdicts: what t_concurrent_enrolment checks per device, in one pass over the
# race client's lines (RACE), the rows (ROWS: "id|status|attestation|ca|thumb" lines)
# and both appliances' audit logs: "OK ID raced|serial" or "BAD ID why" per device.
race_verdicts() {
	RACE=$1 ROWS=$2 $PY - "$WORK/a1/gw.log" "$WORK/a2/gw.log" <<'EOF2'
import json, os, sys
rows = {}
for line in os.environ["ROWS"].splitlines():
    f = line.split("|")
    rows.setdefault(f[0], []).append(" ".join(f[1:]))
aud = {}
for n, path in enumerate(sys.argv[1:3], 1):
    for line in open(path, "rb"):
        line = line.strip()
        if not line.startswith(b"{"):
            continue
        try:
            o = json.loads(line)
        except ValueError:
            continue
        if o.get("event") == "decision":
            aud.setdefault(o.get("device"), []).append(
                (n, o.get("decision"), o.get("reason"), o.get("detail", "")))
for line in os.environ["RACE"].splitlines():
    if not line.startswith("{"):
        continue
    o = json.loads(line)
    i = o["id"]
    if o["a"] != ["connack 0x00", None] or o["b"] != ["connack 0x00", None]:
        print("BAD %s appliance 1 %s, appliance 2 %s (want both admitted, open 2 s on)" % (i, o["a"], o["b"]))
        continue
    if rows.get(i) != ["enabled ca enrol-a -"]:
        print("BAD %s rows %s (want one: 'enabled ca enrol-a -')" % (i, rows.get(i)))
        continue
    a = sorted(aud.get(i, []))
    kinds = sorted((d, r) for _, d, r, _ in a)
    if len(a) != 2 or a[0][0] == a[1][0] or kinds != [("allow", "enrolled"), ("allow", "ok")]:
        print("BAD %s audits %s (want one enrolled and one ok, one per appliance)" % (i, a))
        continue
    raced = any(r == "ok" and x == "enrolled by a concurrent connection" for _, _, r, x in a)
    print("OK %s %s" % (i, "raced" if raced else "serial"))
EOF2
}

# RACE_N new devices of enrol-a, each at both appliances at once.
t_concurrent_enrolment() {
	local i id args=() out v raced
	for ((i = 1; i <= RACE_N; i++)); do
		id=$(printf 'race-%02d' "$i")
		args+=(--pair "$id" "${PORTS[1]}" "$PKI/dev/$id" "${PORTS[2]}" "$PKI/dev/$id")
	done
	out=$(timeout 120 "$PY" "$HA" race --ca "$PKI/root/cert.pem" --hold 2 "${args[@]}") ||
		{ note "race client failed: $out"; return 1; }
	[ "$(printf '%s\n' "$out" | grep -c '^{')" = "$RACE_N" ] || { note "race client printed: $out"; return 1; }
	sleep 0.5   # the last pair's writer batch (200 ms) audits its enrolment
	v=$(race_verdicts "$out" "$(kg_pg_sql "SELECT id, status, attestation, coalesce(ca_name, '-'), coalesce(thumb_primary, '-') FROM ktlsgate.devices WHERE id LIKE 'race-%'")")
	raced=$(printf '%s\n' "$v" | grep -c '^OK .* raced$')
	echo "    $RACE_N devices: $(printf '%s\n' "$v" | grep -c '^OK ') as wanted, $raced of them real races (both appliances decided 'enroll')"
	if printf '%s\n' "$v" | grep -q '^BAD '; then
		note "$(printf '%s\n' "$v" | grep '^BAD ' | head -3 | tr '\n' ';')"
		return 1
	fi
	[ "$(printf '%s\n' "$v" | grep -c '^OK ')" = "$RACE_N" ] || { note "verdicts: $v"; return 1; }
	[ "$raced" -ge 1 ] || { note "no pair raced (every enrolment was seen before the other's decision)"; return 1; }
}

# race_pair ID DIR1 DIR2: one pair at once, appliance 1 with DIR1's leaf, 2 with DIR2's.
race_pair() {
	timeout 60 "$PY" "$HA" race --ca "$PKI/root/cert.pem" --hold 3 \
		--pair "$1" "${PORTS[1]}" "$2" "${PORTS[2]}" "$3" | grep '^{'
}

# Two leaves of one auto-enrol CA with the same id: under CA attestation the CA vouches
# for the id, not for one leaf, so both are the device; one row, nothing pinned.
t_twin_leaf_same_ca() {
	local out a b rows aud
	[ "$(fingerprint "$PKI/dev/twin-1/cert.pem")" != "$(fingerprint "$PKI/dev/twin-2/cert.pem")" ] ||
		{ note "the two twin leaves are one certificate"; return 1; }
	out=$(race_pair twin "$PKI/dev/twin-1" "$PKI/dev/twin-2")
	a=$(json_get "$out" "'%s|%s' % (o['a'][0], o['a'][1])")
	b=$(json_get "$out" "'%s|%s' % (o['b'][0], o['b'][1])")
	if [ "$a" != "connack 0x00|None" ] || [ "$b" != "connack 0x00|None" ]; then
		note "appliance 1 '$a', appliance 2 '$b' (want both admitted, still open)"
		return 1
	fi
	rows=$(row twin)
	[ "$rows" = "enabled ca enrol-a -" ] || { note "rows '$rows' (want 'enabled ca enrol-a -')"; return 1; }
	wait_audits twin 2
	aud=$(audits twin)
	if [ "$(printf '%s\n' "$aud" | grep -c ' enrolled allow')" != 1 ] ||
		[ "$(printf '%s\n' "$aud" | grep -c ' ok allow')" != 1 ] ||
		[ "$(printf '%s\n' "$aud" | wc -l)" != 2 ]; then
		note "audits '$(printf '%s' "$aud" | tr '\n' ';')' (want one enrolled, one ok)"
		return 1
	fi
}

# The same id from two auto-enrol CAs at once: the first commit binds the row to its
# CA (rule 4); the other connection was admitted on "no row yet" and must not keep a
# session the row now refuses, nor be audited as admitted.
t_clash_other_ca() {
	local out rows ca win lose win_res lose_res aud
	out=$(race_pair clash "$PKI/dev/clash-a" "$PKI/dev/clash-b")
	rows=$(row clash)
	ca=$(printf '%s' "$rows" | awk '{ print $3 }')
	case "$rows" in
	"enabled ca enrol-a -") win=a lose=b ;;
	"enabled ca enrol-b -") win=b lose=a ;;
	*) note "rows '$rows' (want one row bound to enrol-a or enrol-b)"; return 1 ;;
	esac
	win_res=$(json_get "$out" "'%s|%s' % (o['$win'][0], o['$win'][1])")
	lose_res=$(json_get "$out" "'%s|%s' % (o['$lose'][0], o['$lose'][1])")
	echo "    row bound to $ca; winner '$win_res', loser '$lose_res' (eof ms after its CONNACK)"
	[ "$win_res" = "connack 0x00|None" ] || { note "the winner's session: '$win_res' (want admitted, still open)"; return 1; }
	case "$lose_res" in
	"connack 0x00|"[0-9]*)
		[ "${lose_res#*|}" -lt 2000 ] || { note "the loser's session closed only after ${lose_res#*|} ms"; return 1; } ;;
	"connack 0x87|None" | "connack 0x05|None") ;;   # refused outright: the row was already there
	*) note "the loser's session: '$lose_res' (want cut within 2 s, or refused)"; return 1 ;;
	esac
	wait_audits clash 2
	aud=$(audits clash)
	printf '%s\n' "$aud" | grep -q ' enrolled allow' ||
		{ note "no 'enrolled' audit: '$(printf '%s' "$aud" | tr '\n' ';')'"; return 1; }
	if printf '%s\n' "$aud" | grep -q ' ok allow'; then
		note "the loser is audited as admitted: '$(printf '%s' "$aud" | tr '\n' ';')'"
		return 1
	fi
	printf '%s\n' "$aud" | grep -q ' attestation_mismatch deny' ||
		{ note "no 'attestation_mismatch' audit: '$(printf '%s' "$aud" | tr '\n' ';')'"; return 1; }
}

# echo_start N: a live echo session of device `live` through appliance N; its output
# file in ECHO_F. Waits for "ready".
echo_start() {
	local i
	use "$1"
	ECHO_F=$(mktemp "$WORK/echo$1.XXXXXX")
	timeout 120 "$PY" "$HA" echo --ca "$PKI/root/cert.pem" --port "${PORTS[$1]}" \
		--certdir "$PKI/dev/live" --id live --hold 100 >"$ECHO_F" 2>&1 &
	for ((i = 0; i < 100; i++)); do
		grep -q '^ready$' "$ECHO_F" && return 0
		grep -q '^eof\|^error\|^connack 0x[^0]' "$ECHO_F" && break
		sleep 0.1
	done
	note "appliance $1: no live session: $(tr '\n' ' ' <"$ECHO_F")"
	return 1
}

# relays BROKER_PORT FILE MSG: MSG published on the broker to live/in comes back on
# live/out through the session, and the session printed it.
relays() {
	local got out sub i
	# The subscriber may take a while to subscribe on a loaded machine: publish again
	# every 0.5 s until it has the echo (the session echoes every copy; one is enough).
	out=$(mktemp "$WORK/relay.XXXXXX")
	timeout 10 mosquitto_sub -h 127.0.0.1 -p "$1" -t live/out -C 1 -W 9 >"$out" 2>/dev/null &
	sub=$!
	for ((i = 0; i < 16; i++)); do
		sleep 0.5
		[ -s "$out" ] && break
		mosquitto_pub -h 127.0.0.1 -p "$1" -t live/in -q 1 -m "$3" 2>/dev/null
	done
	wait "$sub"
	got=$(cat "$out")
	rm -f "$out"
	[ "$got" = "$3" ] || { note "broker $1: '$3' came back as '$got'"; return 1; }
	grep -qx "echo $3" "$2" || { note "the session did not see '$3': $(tr '\n' ' ' <"$2")"; return 1; }
}

# Both appliances hold a session of `live`; the cluster is stopped and started again.
t_db_restart_live_sessions() {
	local f1 f2 i r1 r2 t0 e1 e2 c
	echo_start 1 || return 1
	f1=$ECHO_F
	echo_start 2 || return 1
	f2=$ECHO_F
	relays "$BK_PORT" "$f1" before-1 && relays "$BK2_PORT" "$f2" before-2 || return 1
	for i in 1 2; do
		use "$i"
		R0[i]=$(metric_value ktlsgate_registry_watch_reconnects_total)
	done
	kg_pg_stop "$PGBASE/pg" || { note "kg_pg_stop failed"; return 1; }
	for i in 1 2; do
		use "$i"
		wait_metric ktlsgate_registry_watch_connected 0 10 || { note "appliance $i never saw the database go"; return 1; }
	done
	# down: both sessions keep relaying, in both directions
	relays "$BK_PORT" "$f1" down-1 && relays "$BK2_PORT" "$f2" down-2 || return 1
	sleep 2   # a few of the watchers' retries meet the closed port
	relays "$BK_PORT" "$f1" down-late-1 && relays "$BK2_PORT" "$f2" down-late-2 || return 1
	kg_pg_restart "$PGBASE/pg" || { note "kg_pg_restart failed"; return 1; }
	for i in 1 2; do
		use "$i"
		wait_metric ktlsgate_registry_watch_connected 1 15 || { note "appliance $i: watcher not back within 15 s"; return 1; }
		r1=$(metric_value ktlsgate_registry_watch_reconnects_total)
		[ "$r1" -gt "${R0[i]}" ] || { note "appliance $i: reconnects_total ${R0[i]} -> $r1"; return 1; }
		kill -0 "${GW_PIDS[i]}" 2>/dev/null || { note "appliance $i died"; return 1; }
	done
	relays "$BK_PORT" "$f1" after-1 && relays "$BK2_PORT" "$f2" after-2 || return 1
	# still revocable: one CLI call, both sessions cut within 1 s
	t0=$($PY -c 'import time; print(int(time.time()*1000))')
	use 1
	kg device set live --status disabled >/dev/null || { note "device set live --status disabled failed"; return 1; }
	for ((i = 0; i < 50; i++)); do
		grep -q '^eof ' "$f1" && grep -q '^eof ' "$f2" && break
		sleep 0.1
	done
	e1=$(sed -n 's/^eof \([0-9]*\).*/\1/p' "$f1")
	e2=$(sed -n 's/^eof \([0-9]*\).*/\1/p' "$f2")
	[ -n "$e1" ] && [ -n "$e2" ] ||
		{ note "not both cut within 5 s: 1 '$(tr '\n' ' ' <"$f1")', 2 '$(tr '\n' ' ' <"$f2")'"; return 1; }
	echo "    device set --status disabled -> appliance 1 cut in $((e1 - t0)) ms, appliance 2 in $((e2 - t0)) ms"
	for c in $((e1 - t0)) $((e2 - t0)); do
		[ "$c" -lt 1000 ] || { note "a session was cut after $c ms (limit 1000 ms)"; return 1; }
	done
	for i in 1 2; do
		use "$i"
		audit_has 0 revoked live || { note "appliance $i: no 'revoked' audit for live: $AUDIT_OUT"; return 1; }
	done
}

ALL_TESTS=(t_concurrent_enrolment t_twin_leaf_same_ca t_clash_other_ca t_db_restart_live_sessions)

GW_PIDS=()
R0=()
T_START=$SECONDS
setup || { echo "FAIL setup"; echo "test-pg-ha: 0 passed, 1 failed"; exit 1; }
run_tests | tee "$PGBASE/results"
pass=$(grep -c '^PASS ' "$PGBASE/results")
fail=$(grep -c '^FAIL ' "$PGBASE/results")
echo "test-pg-ha: $pass passed, $fail failed ($((SECONDS - T_START)) s)"
[ "$fail" -eq 0 ] && [ "$pass" -gt 0 ]
