#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# test-handover.sh - `ktlsgated --takeover` (issue 14, core/handover.h): the listening
# sockets, /metrics, the instance lock, the control socket and the XDP gate's link move
# to a new process over SCM_RIGHTS while a device fleet reconnects 200 times a second,
# in the namespaces of netns.sh (devices 10.77.0.2..9 on veth-d, the gate 10.77.0.1 on
# veth-g with the XDP gate attached, net.ipv4.tcp_migrate_req=1).
#
# Every connection is real: TCP, a full mutual TLS handshake (no tickets), MQTT CONNECT
# through ktlsgated to mosquitto, CONNACK 0 (tests/edge/handover_loop.py). Checked:
# zero refused, reset or failed connections across the takeover; a session opened before
# it keeps relaying in the old process, which exits (0) when it ends; a revocation made
# during the drain reaches the old process and cuts its session; a second --takeover
# during a drain is refused; the new process killed before it accepts leaves the old one
# serving (no failure either); the old process SIGKILLed right after passing the
# sockets leaves the new one serving; the XDP gate's link (same link id: never
# detached) and its deny entries survive; a session outliving [daemon] drain_timeout is
# cut; a new process that may not load BPF (no CAP_PERFMON, as under the unit) keeps
# the running gate program and its maps, with its own config's ports written in;
# --takeover with nothing running starts normally, and a plain start beside a running
# daemon is still refused.
#
# Run: tests/edge/run.sh (make check-edge), as root. KG_ONLY="t_a t_b" runs a subset
# (t_setup first).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(cd "$HERE/../.." && pwd)
BUILD=${BUILD:-build}
[[ $BUILD = /* ]] || BUILD="$TOP/$BUILD"
FLOOD="$BUILD/kg-synflood"

# shellcheck source=netns.sh
. "$HERE/netns.sh"
edge_netns_enter test-handover "$0" "$@"

# --- inner: inside the gate namespace ------------------------------------------------
# shellcheck disable=SC2034 # read by lib.sh
GATED=${GATED:-$BUILD/ktlsgated}   # the ASan daemon: GATED=build/asan/ktlsgated
# shellcheck disable=SC2034
KGCLI="$BUILD/ktlsgate"
# The loop's clients all come from one address: no per-source limits.
# shellcheck disable=SC2034
KG_GW_LIMITS=$'source_max_handshakes = 0\nsource_rate = 0'
. "$TOP/tests/integration/lib.sh"

GATE4=10.77.0.1
PORT=8883
RATE=200
# The loop asks for RATE connections a second; a loaded 2-core machine gives fewer (the
# loop prints what it got). What must hold is zero failures, over at least this many.
LOOP_MIN=50

dev() { ip netns exec "$DEV_NS" "$@"; }
tcp() { dev timeout 60 "$FLOOD" connect -s "$1" -d "$2" -p "$3" -n "$4" -t "$5"; }
field() { awk -v k="$1" '{ for (i = 1; i < NF; i++) if ($i == k) print $(i + 1) }'; }

# wait_log PATTERN SECS [FROM_LINE]: until the gateway log has a line matching PATTERN
# (grep -E) after line FROM_LINE.
# takeover [ENV=VALUE...]: start `ktlsgated --takeover` (NEW_PID), its log in GW_LOG.
takeover() {
	env "$@" "$GATED" --takeover -c "$GW_CONF" >>"$GW_LOG" 2>&1 &
	NEW_PID=$!
	KG_PIDS+=("$NEW_PID")
}

# accepted_by PID SECS FROM: the audit line of a new process that accepts.
accepted_by() {
	wait_log "\"event\":\"handover\",\"role\":\"new\",\"result\":\"ok\",\"pid\":$1," "$2" "$3"
}

# loop_start / loop_stop: the fleet's reconnect loop from 10.77.0.2 (LOOP_OUT: its
# JSON); loop_check MIN: every attempt succeeded, at least MIN of them.
loop_start() {
	LOOP_STOP="$WORK/loop.stop.$RANDOM"
	LOOP_OUT="$WORK/loop.$RANDOM.json"
	rm -f "$LOOP_STOP"
	dev timeout 120 "$PY" "$HERE/handover_loop.py" $GATE4 "$GW_PORT" "$PKI/root/cert.pem" \
		"$PKI/dev/loopdev/chain.pem" "$PKI/dev/loopdev/key.pem" loopdev "$RATE" "$LOOP_STOP" \
		10.77.0.2 >"$LOOP_OUT" 2>&1 &
	LOOP_PID=$!
	# python and its ssl module take a while to start on a loaded machine
	local i
	for ((i = 0; i < 400; i++)); do
		[ -e "$LOOP_STOP.started" ] && return 0
		sleep 0.05
	done
	echo "    the loop did not start in 20 s: $(cat "$LOOP_OUT")"
	return 1
}
loop_stop() {
	touch "$LOOP_STOP"
	wait "$LOOP_PID"
	echo "    loop: $(cat "$LOOP_OUT")"
}
loop_check() {
	"$PY" - "$LOOP_OUT" "$1" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
c = r["counts"]
bad = {k: v for k, v in c.items() if k != "ok"}
if bad or c.get("ok", 0) < int(sys.argv[2]):
    print("failed: %s (want 0 failures, >= %s ok)" % (json.dumps(r), sys.argv[2]))
    sys.exit(1)
EOF
}

# The id of the bpf_link that holds the XDP program on veth-g ("" without one): the
# program's id from ip(8), the link that runs it from bpftool (links are global: other
# namespaces' are listed too).
xdp_prog_id() {
	ip -j -d link show veth-g | "$PY" -c 'import json,sys
x=json.load(sys.stdin)[0].get("xdp",{})
print(x.get("prog",{}).get("id","") if "prog" in x else x.get("attached",[{}])[0].get("prog",{}).get("id",""))' 2>/dev/null
}
xdp_link_id() {
	local prog
	prog=$(xdp_prog_id)
	[ -n "$prog" ] || return 0
	bpftool -j link show | "$PY" -c 'import json,sys
for l in json.load(sys.stdin):
    if str(l.get("prog_id")) == sys.argv[1]: print(l["id"]); break' "$prog"
}

# status_field KEY [SUBKEY]: from `ktlsgate status --json`.
status_field() {
	kg status --json | "$PY" -c 'import json,sys
o=json.load(sys.stdin)
for k in sys.argv[1:]: o=o.get(k, {}) if isinstance(o, dict) else {}
print(o)' "$@" 2>/dev/null
}
status_pid() { status_field pid; }

t_setup() {
	edge_gw_conf handover
	cat >>"$GW_CONF" <<EOF

[edge]
interfaces = veth-g
pin_dir = $KG_EDGE_BPFFS/ktlsgate
; 9100 (nothing listens): t_keep_program_without_perfmon ungates it
ports = $PORT, 9100
; the fleet's loop comes from one address
syn_rate = 5000
syn_burst = 5000
EOF
	sed -i 's/^\[daemon\]$/[daemon]\ndrain_timeout = 30s/' "$GW_CONF"
	sysctl -qw net.ipv4.tcp_migrate_req=1 || { note "no tcp_migrate_req"; return 1; }
	pki_setup "$WORK/pki" || return 1
	for d in loopdev live revdev; do
		device_cert $d "$PKI/factory" || return 1
		kg device add $d >/dev/null || return 1
	done
	start_broker "$BK_PORT" || return 1
	start_gateway || return 1
	ip -d link show veth-g | grep -q 'prog/xdp' || { note "no XDP program on veth-g"; return 1; }
	kg block add 10.77.0.5 >/dev/null || { note "block add 10.77.0.5"; return 1; }
	local out
	out=$(tcp 10.77.0.5 $GATE4 $PORT 1 1000)
	[ "$(field timeout <<<"$out")" = 1 ] || { note "10.77.0.5 not dropped before the handover: $out"; return 1; }
}

# The fleet reconnects across a takeover; a session opened before it relays on in the
# old process, which exits 0 once that session ends.
t_takeover_under_load() {
	local mark link0 link1 old=$GW_PID f="$WORK/live.out" i rows
	link0=$(xdp_link_id)
	loop_start || return 1
	: >"$f"
	# published once, then held 12 s (the takeover happens meanwhile), then published again
	dev timeout 60 "$PY" "$KGC" connect --host $GATE4 --port "$GW_PORT" --ca "$PKI/root/cert.pem" \
		--cert "$PKI/dev/live/chain.pem" --key "$PKI/dev/live/key.pem" --id live \
		--topic live/t --then "sleep 12" >"$f" 2>&1 &
	local live=$!
	for ((i = 0; i < 100; i++)); do grep -q 'puback' "$f" && break; sleep 0.05; done
	grep -qx 'puback 0x00' "$f" || { note "live session: $(cat "$f")"; return 1; }
	sleep 1
	mark=$(log_mark)
	takeover
	accepted_by "$NEW_PID" 20 "$mark" || { note "the new process did not accept: $(tail -5 "$GW_LOG")"; return 1; }
	GW_PID=$NEW_PID
	kill -0 "$old" 2>/dev/null || { note "the old process exited with a session live"; return 1; }
	[ "$(status_pid)" = "$NEW_PID" ] || { note "control socket not answered by the new process"; return 1; }
	# session list in the new process shows the old one's session, with its pid
	rows=$(kg session list --json)
	"$PY" -c 'import json,sys
rows=json.loads(sys.argv[1]); old=int(sys.argv[2])
sys.exit(0 if any(r.get("device")=="live" and r.get("pid")==old for r in rows) else 1)' "$rows" "$old" ||
		{ note "session list (new) lacks live@$old: $rows"; return 1; }
	[ "$(status_field handover state)" = peer_draining ] && [ "$(status_field handover peer_pid)" = "$old" ] ||
		{ note "status: $(kg status | grep handover)"; return 1; }
	[ "$(metric_value ktlsgate_handover_total 'role="new"' 'result="ok"')" = 1 ] ||
		{ note "ktlsgate_handover_total{role=new,result=ok} != 1"; return 1; }
	# the old process reports its counts over the channel (at once, then every second)
	# (the live one, and maybe a loop connection caught relaying)
	for ((i = 0; i < 60; i++)); do
		[ "$(metric_value ktlsgate_draining_sessions)" -ge 1 ] && break
		sleep 0.05
	done
	[ "$(metric_value ktlsgate_draining_sessions)" -ge 1 ] || { note "ktlsgate_draining_sessions is 0"; return 1; }
	sleep 2
	loop_stop
	loop_check "$LOOP_MIN" || { note "$(loop_check "$LOOP_MIN")"; return 1; }
	wait "$live"
	sed 's/^/    live: /' "$f"
	[ "$(grep -c 'puback 0x00' "$f")" = 2 ] || { note "the live session did not relay after the takeover"; return 1; }
	gone "$old" 10 || { note "the old process did not exit after its last session"; return 1; }
	[ "$RC" = 0 ] || { note "the old process exited $RC"; return 1; }
	wait_log '"event":"handover","role":"old","result":"drained"' 5 "$mark" ||
		{ note "no old-side audit line"; return 1; }
	tail -n +"$((mark + 1))" "$GW_LOG" | grep '"event":"handover"' | sed 's/^/    /'
	link1=$(xdp_link_id)
	echo "    XDP link id $link0 -> $link1"
	[ -n "$link0" ] && [ "$link0" = "$link1" ] || { note "the XDP link changed: $link0 -> $link1"; return 1; }
	[ -S "$(dirname "$GW_CONF")/ctl.sock" ] || { note "the control socket path is gone"; return 1; }
	[ "$(status_pid)" = "$NEW_PID" ] || { note "status after the drain"; return 1; }
}

# The deny entry added before the takeover still drops, and the new process sees it.
t_xdp_deny_kept() {
	local out
	out=$(tcp 10.77.0.5 $GATE4 $PORT 2 1000)
	echo "    10.77.0.5 after the takeover: $out"
	[ "$(field timeout <<<"$out")" = 2 ] || { note "10.77.0.5 no longer dropped: $out"; return 1; }
	kg block list | grep -q '^10\.77\.0\.5 ' || { note "block list: $(kg block list)"; return 1; }
	out=$(tcp 10.77.0.3 $GATE4 $PORT 1 2000)
	[ "$(field established <<<"$out")" = 1 ] || { note "an unblocked source failed: $out"; return 1; }
}

# A revocation during the drain is forwarded and cuts the old process's session; a
# second --takeover meanwhile is refused.
t_revoke_during_drain() {
	local mark old=$GW_PID f="$WORK/rev.out" i out rc
	: >"$f"
	dev timeout 60 "$PY" "$KGC" connect --host $GATE4 --port "$GW_PORT" --ca "$PKI/root/cert.pem" \
		--cert "$PKI/dev/revdev/chain.pem" --key "$PKI/dev/revdev/key.pem" --id revdev \
		--hold 25 >"$f" 2>&1 &
	local held=$!
	for ((i = 0; i < 100; i++)); do grep -q 'connack' "$f" && break; sleep 0.05; done
	grep -qx 'connack 0x00' "$f" || { note "revdev: $(cat "$f")"; return 1; }
	mark=$(log_mark)
	takeover
	accepted_by "$NEW_PID" 20 "$mark" || { note "the new process did not accept"; return 1; }
	GW_PID=$NEW_PID
	# a second takeover while pid $old drains: refused, nothing changes
	out=$(timeout 20 "$GATED" --takeover -c "$GW_CONF" 2>&1)
	rc=$?
	echo "    second --takeover: exit $rc: $out"
	[ "$rc" = 1 ] && grep -q "still draining" <<<"$out" || { note "second takeover: exit $rc: $out"; return 1; }
	kill -0 "$old" || { note "old process gone before the revocation"; return 1; }
	kg device set revdev --status disabled >/dev/null || { note "device set --status disabled failed"; return 1; }
	for ((i = 0; i < 100; i++)); do grep -q 'eof after' "$f" && break; sleep 0.05; done
	wait "$held"
	echo "    revdev: $(tr '\n' ' ' <"$f")"
	grep -q 'eof after' "$f" || { note "the old process's session was not cut"; return 1; }
	wait_log 'handover: forwarded device-changed revdev: 1 session\(s\) closed here' 5 "$mark" ||
		{ note "no 'forwarded' line from the old process"; return 1; }
	gone "$old" 10 || { note "the old process did not exit after the revocation"; return 1; }
	[ "$RC" = 0 ] || { note "old exited $RC"; return 1; }
	kg device set revdev --status enabled >/dev/null
}

# A session that outlives [daemon] drain_timeout is closed and the old process exits
# (the drain's limit is the old process's own configuration: a reload sets it here).
t_drain_timeout() {
	local mark old=$GW_PID f="$WORK/long.out" i t0
	sed -i 's/^drain_timeout = .*/drain_timeout = 2s/' "$GW_CONF"
	kg reload >/dev/null || { note "reload failed"; return 1; }
	: >"$f"
	dev timeout 60 "$PY" "$KGC" connect --host $GATE4 --port "$GW_PORT" --ca "$PKI/root/cert.pem" \
		--cert "$PKI/dev/live/chain.pem" --key "$PKI/dev/live/key.pem" --id live \
		--hold 30 >"$f" 2>&1 &
	local held=$!
	for ((i = 0; i < 100; i++)); do grep -q 'connack' "$f" && break; sleep 0.05; done
	grep -qx 'connack 0x00' "$f" || { note "live: $(cat "$f")"; return 1; }
	mark=$(log_mark)
	t0=$SECONDS
	takeover
	accepted_by "$NEW_PID" 20 "$mark" || { note "the new process did not accept"; return 1; }
	GW_PID=$NEW_PID
	gone "$old" 15 || { note "the old process outlived its drain_timeout"; return 1; }
	echo "    old process exited $RC after $((SECONDS - t0)) s"
	[ "$RC" = 0 ] || { note "old exited $RC"; return 1; }
	wait "$held"
	grep -q 'eof after' "$f" || { note "the session was not closed: $(cat "$f")"; return 1; }
	wait_log '"role":"old","result":"timeout",.*"connections_cut":1' 2 "$mark" ||
		{ note "no timeout audit line: $(grep '"role":"old"' "$GW_LOG" | tail -1)"; return 1; }
	sed -i 's/^drain_timeout = .*/drain_timeout = 30s/' "$GW_CONF"
	kg reload >/dev/null
}

# The new process dies before "accepting": the old one never stopped.
t_new_killed_before_accepting() {
	local mark old=$GW_PID
	loop_start || return 1
	sleep 1
	mark=$(log_mark)
	takeover KTLSGATED_TEST_HANDOVER_PAUSE_MS=4000
	wait_log 'KTLSGATED_TEST_HANDOVER_PAUSE_MS: pausing' 10 "$mark" || { note "no pause line"; return 1; }
	kill -9 "$NEW_PID"
	gone "$NEW_PID" 5
	wait_log 'handover: pid [0-9]+ went away before accepting: still serving' 5 "$mark" ||
		{ note "the old process did not notice"; return 1; }
	sleep 2
	loop_stop
	loop_check "$LOOP_MIN" || { note "$(loop_check "$LOOP_MIN")"; return 1; }
	[ "$(status_pid)" = "$old" ] || { note "status not from the old process"; return 1; }
	wait_log '"role":"old","result":"aborted"' 2 "$mark" || { note "no aborted audit line"; return 1; }
}

# The old process SIGKILLed right after it passed the sockets: the new one serves
# (connections that queued meanwhile included).
t_old_killed_after_passing() {
	local mark old=$GW_PID out
	mark=$(log_mark)
	takeover KTLSGATED_TEST_HANDOVER_PAUSE_MS=1500
	wait_log 'KTLSGATED_TEST_HANDOVER_PAUSE_MS: pausing' 10 "$mark" || { note "no pause line"; return 1; }
	kill -9 "$old"
	gone "$old" 5
	GW_PID=$NEW_PID
	# queued in the passed listener while nobody accepted; served once the new one runs
	out=$(dev timeout 30 "$PY" "$KGC" connect --host $GATE4 --port "$GW_PORT" --ca "$PKI/root/cert.pem" \
		--cert "$PKI/dev/live/chain.pem" --key "$PKI/dev/live/key.pem" --id live --timeout 10 2>&1)
	echo "    connect while the new process starts: $out"
	[ "$out" = "connack 0x00" ] || { note "not served: $out"; return 1; }
	wait_log 'handover: the old ktlsgated \(pid [0-9]+\) is gone: serving alone' 10 "$mark" ||
		{ note "no 'serving alone' line"; return 1; }
	[ "$(status_pid)" = "$NEW_PID" ] || { note "status not from the new process"; return 1; }
	loop_start || return 1
	sleep 1
	loop_stop
	loop_check 10 || { note "$(loop_check 10)"; return 1; }
}

# A successor that may not load BPF (no CAP_PERFMON or CAP_SYS_ADMIN, as the one
# `ktlsgate upgrade` starts under the unit) keeps the running program and its maps
# (edge.h kg_edge_start_with()): the same program on veth-g throughout, the deny entry
# made before still drops, and a block added through the new process drops too.
t_keep_program_without_perfmon() {
	local mark old=$GW_PID prog0 prog1 out
	prog0=$(xdp_prog_id)
	[ -n "$prog0" ] || { note "no XDP program on veth-g"; return 1; }
	# 9100 is gated: the denied source's SYN is dropped (timeout, not refused)
	out=$(tcp 10.77.0.5 $GATE4 9100 1 1000)
	[ "$(field timeout <<<"$out")" = 1 ] || { note "9100 not gated before: $out"; return 1; }
	# the new process's config gates $PORT only: it must ungate 9100 in the kept map
	sed -i "s/^ports = $PORT, 9100$/ports = $PORT/" "$GW_CONF"
	loop_start || return 1
	sleep 1
	mark=$(log_mark)
	setpriv --inh-caps=-all --ambient-caps=-all --bounding-set=-perfmon,-sys_admin \
		"$GATED" --takeover -c "$GW_CONF" >>"$GW_LOG" 2>&1 &
	NEW_PID=$!
	KG_PIDS+=("$NEW_PID")
	accepted_by "$NEW_PID" 20 "$mark" || { note "the new process did not accept: $(tail -5 "$GW_LOG")"; return 1; }
	GW_PID=$NEW_PID
	# its bounding set: it never had CAP_PERFMON (else the test proves nothing)
	out=$(capsh --decode="$(awk '/^CapBnd/ { print $2 }' /proc/"$NEW_PID"/status)")
	[ -n "$out" ] && ! grep -q 'perfmon\|sys_admin' <<<"$out" ||
		{ note "the new process may have CAP_PERFMON or CAP_SYS_ADMIN: $out"; return 1; }
	wait_log "keeping the gate's program the previous process ran" 1 "$mark" ||
		{ note "no 'keeping the gate's program' line: $(tail -n +"$((mark + 1))" "$GW_LOG" | grep edge: | tail -3)"; return 1; }
	sleep 2
	loop_stop
	loop_check "$LOOP_MIN" || { note "$(loop_check "$LOOP_MIN")"; return 1; }
	gone "$old" 10 || { note "the old process did not exit"; return 1; }
	prog1=$(xdp_prog_id)
	echo "    XDP program id $prog0 -> $prog1 (pid $old -> $NEW_PID)"
	[ "$prog1" = "$prog0" ] || { note "the XDP program changed: $prog0 -> $prog1"; return 1; }
	[ "$(metric_value ktlsgate_xdp_attached 'interface="veth-g"' 'mode="adopted"')" = 1 ] ||
		{ note "ktlsgate_xdp_attached{veth-g,adopted} != 1"; return 1; }
	out=$(tcp 10.77.0.5 $GATE4 $PORT 1 1000)
	[ "$(field timeout <<<"$out")" = 1 ] || { note "10.77.0.5 no longer dropped: $out"; return 1; }
	kg block add 10.77.0.6 >/dev/null || { note "block add 10.77.0.6 through pid $NEW_PID"; return 1; }
	out=$(tcp 10.77.0.6 $GATE4 $PORT 1 1000)
	echo "    10.77.0.6 blocked through pid $NEW_PID: $out"
	[ "$(field timeout <<<"$out")" = 1 ] || { note "10.77.0.6 not dropped: $out"; return 1; }
	out=$(tcp 10.77.0.5 $GATE4 9100 1 2000)
	echo "    10.77.0.5 to the ungated port 9100: $out"
	[ "$(field refused <<<"$out")" = 1 ] || { note "9100 still gated in the kept map: $out"; return 1; }
	kg block remove 10.77.0.6 >/dev/null || { note "block remove 10.77.0.6"; return 1; }
	out=$(tcp 10.77.0.6 $GATE4 $PORT 1 2000)
	[ "$(field established <<<"$out")" = 1 ] || { note "10.77.0.6 still dropped after remove: $out"; return 1; }
}

# A plain start beside a running daemon is refused as before; --takeover with nothing
# running is a plain start.
t_plain_start_and_nothing_running() {
	local out rc mark
	out=$(timeout 20 "$GATED" -c "$GW_CONF" 2>&1)
	rc=$?
	[ "$rc" = 1 ] && grep -q "another ktlsgated (pid $GW_PID) is running" <<<"$out" ||
		{ note "plain start beside a daemon: exit $rc: $out"; return 1; }
	stop_gateway
	mark=$(log_mark)
	takeover
	wait_log 'no ktlsgated answers on .*: starting normally' 10 "$mark" || { note "no 'starting normally'"; return 1; }
	GW_PID=$NEW_PID
	wait_port "$GW_PORT" 10 "$GW_PID" || { note "not listening"; return 1; }
	out=$(dev timeout 30 "$PY" "$KGC" connect --host $GATE4 --port "$GW_PORT" --ca "$PKI/root/cert.pem" \
		--cert "$PKI/dev/live/chain.pem" --key "$PKI/dev/live/key.pem" --id live 2>&1)
	[ "$out" = "connack 0x00" ] || { note "not served: $out"; return 1; }
}

ALL_TESTS=(t_setup t_takeover_under_load t_xdp_deny_kept t_revoke_during_drain t_drain_timeout
	t_new_killed_before_accepting t_old_killed_after_passing t_keep_program_without_perfmon
	t_plain_start_and_nothing_running)

# run_tests in this shell (GW_PID and KG_PIDS must stay ours for the EXIT trap); its
# lines are counted from tee's copy, which is whole once the end mark is in it ($! is
# not tee here: the daemons the tests start are background jobs of this shell).
# (WORK is made by t_setup, inside the redirection: the copy goes to /tmp.)
RESULTS=$(mktemp /tmp/kg-handover-results.XXXXXX)
{
	run_tests
	echo "rc $?"
} > >(tee "$RESULTS")
for ((i = 0; i < 200; i++)); do grep -q '^rc [0-9]*$' "$RESULTS" && break; sleep 0.05; done
rc=$(sed -n 's/^rc \([0-9]*\)$/\1/p' "$RESULTS")
passed=$(grep -c '^PASS ' "$RESULTS")
failed=$(grep -c '^FAIL ' "$RESULTS")
rm -f "$RESULTS"
echo "test-handover: $passed passed, $failed failed"
[ "${rc:-1}" = 0 ] && [ "$passed" -ge 1 ] && [ "$failed" = 0 ]
