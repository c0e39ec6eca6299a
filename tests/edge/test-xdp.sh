#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# test-xdp.sh - the XDP gate end to end on the host kernel, as root.
#
# Two network namespaces joined by a veth pair: "device" (10.77.0.2..9, fd77::2..9)
# and "gate" (10.77.0.1, fd77::1), each name with a random suffix and always deleted
# by the EXIT trap. The gate namespace runs mosquitto + ktlsgated (lib.sh, generated
# PKI and config) with [edge] interfaces = the veth and a second link created later;
# the device namespace sends real TCP connects, mTLS MQTT connects and raw SYNs
# (build/kg-synflood). The maps are pinned in a private bpffs mounted for the run.
#
# Run: tests/edge/run.sh (make check-edge). This file re-runs itself inside the gate
# namespace (KG_EDGE_INNER=1) so lib.sh's helpers work unchanged there.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(cd "$HERE/../.." && pwd)
BUILD=${BUILD:-build}
[[ $BUILD = /* ]] || BUILD="$TOP/$BUILD"
FLOOD="$BUILD/kg-synflood"

# shellcheck source=netns.sh
. "$HERE/netns.sh"
edge_netns_enter test-xdp "$0" "$@"

# --- inner: inside the gate namespace ------------------------------------------------
# shellcheck disable=SC2034 # read by lib.sh
GATED="$BUILD/ktlsgated"
# shellcheck disable=SC2034
KGCLI="$BUILD/ktlsgate"
. "$TOP/tests/integration/lib.sh"

GATE4=10.77.0.1
GATE6=fd77::1
PORT=8883
# Per-source SYN pacing for the whole run: 20/s, burst 20. Tests other than the storm
# make a handful of connects per source, well inside it.
SYN_RATE=20
SYN_BURST=20

dev() { ip netns exec "$DEV_NS" "$@"; }
# tcp SRC DST PORT N TIMEOUT_MS: N sequential plain TCP connects from SRC; prints the
# tool's one line ("established E timeout T refused R other O ...").
tcp() { dev timeout 60 "$FLOOD" connect -s "$1" -d "$2" -p "$3" -n "$4" -t "$5"; }
field() { awk -v k="$1" '{ for (i = 1; i < NF; i++) if ($i == k) print $(i + 1) }'; }
stat_of() { kg block stats | awk -v k="$1" '$1 == k { print $2 }'; }

setup() {
	edge_gw_conf edge
	cat >>"$GW_CONF" <<EOF

[edge]
interfaces = veth-g, late-g
allow = 10.77.0.7/32, fd77::7
syn_rate = $SYN_RATE
syn_burst = $SYN_BURST
pin_dir = $KG_EDGE_BPFFS/ktlsgate
EOF
	pki_setup "$WORK/pki" || return 1
	device_cert edgedev "$PKI/factory" || return 1
	device_cert strangerdev "$PKI/factory" || return 1   # never added: unknown_device
	kg device add edgedev >/dev/null || return 1
	# a pin left by an older build with another layout: replaced at start (t_attached)
	mkdir -p "$KG_EDGE_BPFFS/ktlsgate"
	bpftool map create "$KG_EDGE_BPFFS/ktlsgate/kg_stats" type array key 4 value 4 entries 1 \
		name kg_stats || return 1
	start_broker "$BK_PORT" || return 1
	start_gateway || return 1
}

accepted() { metric_value ktlsgate_accepted_total; }

t_attached() {
	local line mode
	line=$(grep -m1 'XDP gate attached to veth-g' "$GW_LOG") || { note "no attach line in the log"; return 1; }
	mode=$(sed -n 's/.* in \([a-z]*\) mode.*/\1/p' <<<"$line")
	echo "    veth-g: $mode mode ($line)"
	ip -d link show veth-g | grep -q 'prog/xdp' || { note "ip link shows no XDP program on veth-g"; return 1; }
	kg block stats >/dev/null || { note "pinned stats map not reachable"; return 1; }
	grep -q 'pinned map .*/kg_stats has an older layout: replaced' "$GW_LOG" ||
		{ note "the stale kg_stats pin was not reported as replaced"; return 1; }
}

t_allowed_source_connects() {
	local out
	out=$(dev timeout 30 $PY "$KGC" connect $(dev_args edgedev) --host $GATE4 | head -1)
	echo "    edgedev from 10.77.0.2: $out"
	[ "$out" = "connack 0x00" ] || { note "mTLS connect not accepted: $out"; return 1; }
	out=$(dev timeout 30 $PY "$KGC" connect $(dev_args edgedev) --host $GATE6 | head -1)
	echo "    edgedev over IPv6: $out"
	[ "$out" = "connack 0x00" ] || { note "IPv6 mTLS connect not accepted: $out"; return 1; }
}

t_denied_source_dropped() {
	local a0 d0 out a1 d1
	kg block add 10.77.0.3 >/dev/null && kg block add fd77::3 >/dev/null || { note "block add failed"; return 1; }
	a0=$(accepted)
	d0=$(stat_of dropped_deny)
	out=$(tcp 10.77.0.3 $GATE4 $PORT 3 1500)
	echo "    blocked 10.77.0.3: $out"
	[ "$(field established <<<"$out")" = 0 ] && [ "$(field timeout <<<"$out")" = 3 ] ||
		{ note "blocked IPv4 source got through: $out"; return 1; }
	out=$(tcp fd77::3 $GATE6 $PORT 2 1500)
	echo "    blocked fd77::3: $out"
	[ "$(field established <<<"$out")" = 0 ] || { note "blocked IPv6 source got through: $out"; return 1; }
	a1=$(accepted)
	d1=$(stat_of dropped_deny)
	echo "    dropped_deny $d0 -> $d1, daemon accepted $a0 -> $a1"
	[ "$a1" = "$a0" ] || { note "the daemon accepted a connection from a blocked source"; return 1; }
	[ "$d1" -ge $((d0 + 5)) ] || { note "dropped_deny moved by less than the 5 SYNs sent"; return 1; }
	# a different source is unaffected; so is another port for the blocked one (port 9
	# has no listener: an RST (refused) means the SYN passed XDP)
	out=$(tcp 10.77.0.2 $GATE4 $PORT 1 1500)
	[ "$(field established <<<"$out")" = 1 ] || { note "unblocked source failed: $out"; return 1; }
	out=$(tcp 10.77.0.3 $GATE4 9 1 1500)
	echo "    blocked 10.77.0.3 to port 9: $out"
	[ "$(field refused <<<"$out")" = 1 ] || { note "other port not passed for a blocked source: $out"; return 1; }
}

# The daemon feeds the gate: a source whose device fails policy fail_threshold times
# (5) within the window is denied at XDP: its next SYN never reaches accept().
t_refusals_feed_gate() {
	local i out a0 a1
	dev ip addr add 10.77.0.9/24 dev veth-d 2>/dev/null || true
	for i in 1 2 3 4 5; do
		out=$(dev timeout 30 $PY "$KGC" connect $(dev_args strangerdev) --host $GATE4 --source 10.77.0.9 | head -1)
		[ "$out" = "connack 0x05" ] || { note "attempt $i: not refused by policy: $out"; return 1; }
	done
	for i in $(seq 50); do
		kg block list | grep -q '10.77.0.9' && break
		sleep 0.05
	done
	out=$(kg block list)
	echo "    after 5 refusals: $(grep '10.77.0.9' <<<"$out")"
	grep -q '10.77.0.9' <<<"$out" || { note "10.77.0.9 not denied after 5 refusals: $out"; return 1; }
	a0=$(accepted)
	out=$(tcp 10.77.0.9 $GATE4 $PORT 2 1500)
	a1=$(accepted)
	[ "$(field timeout <<<"$out")" = 2 ] && [ "$a1" = "$a0" ] ||
		{ note "denied source still reached the daemon: $out (accepted $a0 -> $a1)"; return 1; }
	# scans that hang up mid-handshake do not count (t_rate_storm's other source)
	kg block remove 10.77.0.9 >/dev/null
}

t_allow_list_wins() {
	local out
	kg block add 10.77.0.7 >/dev/null || return 1
	out=$(tcp 10.77.0.7 $GATE4 $PORT 2 1500)
	echo "    allow-listed + blocked 10.77.0.7: $out"
	[ "$(field established <<<"$out")" = 2 ] || { note "allow-listed source dropped: $out"; return 1; }
	kg block remove 10.77.0.7 >/dev/null
}

t_block_cli() {
	local out rc
	kg block add 10.77.0.8 --for 600 >/dev/null || { note "add --for"; return 1; }
	out=$(kg block list)
	grep -Eq '^10\.77\.0\.8 +manual +0 +(600|599)s' <<<"$out" || { note "list: $out"; return 1; }
	out=$(kg block list --json)
	$PY -c 'import json,sys; l=json.loads(sys.argv[1]); e=[x for x in l if x["address"]=="10.77.0.8"][0]; assert e["reason"]=="manual" and 595<=e["expires_in_s"]<=600, e; assert any(x["address"]=="fd77::3" and x["expires_in_s"] is None for x in l)' "$out" ||
		{ note "list --json: $out"; return 1; }
	kg block remove 10.77.0.8 >/dev/null || { note "remove"; return 1; }
	kg block list | grep -q '^10\.77\.0\.8 ' && { note "still listed after remove"; return 1; }
	kg block remove 10.77.0.8 >/dev/null 2>&1
	rc=$?
	[ $rc = 2 ] || { note "remove of an absent entry: exit $rc, want 2"; return 1; }
	kg block add not-an-address >/dev/null 2>&1
	rc=$?
	[ $rc = 1 ] || { note "bad address: exit $rc, want 1"; return 1; }
}

t_expiry() {
	local out
	kg block add 10.77.0.4 --for 2 >/dev/null || return 1
	out=$(tcp 10.77.0.4 $GATE4 $PORT 1 1000)
	[ "$(field timeout <<<"$out")" = 1 ] || { note "not dropped while blocked: $out"; return 1; }
	sleep 2.2
	kg block list | grep -q '^10\.77\.0\.4 ' && { note "expired entry still listed"; return 1; }
	out=$(tcp 10.77.0.4 $GATE4 $PORT 1 1500)
	echo "    after expiry: $out"
	[ "$(field established <<<"$out")" = 1 ] || { note "still dropped after expiry: $out"; return 1; }
}

# 5 000 connects at once from 10.77.0.5 while 10.77.0.6 connects one at a time.
t_rate_storm() {
	local r0 a0 storm_out normal_out r1 a1 est
	r0=$(stat_of dropped_rate)
	a0=$(accepted)
	dev timeout 60 "$FLOOD" connect -s 10.77.0.5 -d $GATE4 -p $PORT -n 5000 -P 5000 -t 2500 \
		>"$WORK/storm.out" 2>&1 &
	local storm=$!
	sleep 0.3
	normal_out=$(tcp 10.77.0.6 $GATE4 $PORT 20 1000)
	wait $storm
	storm_out=$(cat "$WORK/storm.out")
	r1=$(stat_of dropped_rate)
	a1=$(accepted)
	echo "    storm from 10.77.0.5 (5000 connects, 2.5 s each): $storm_out"
	echo "    meanwhile 10.77.0.6 (20 sequential): $normal_out"
	echo "    dropped_rate $r0 -> $r1, daemon accepted $a0 -> $a1"
	est=$(field established <<<"$storm_out")
	[ "$(field established <<<"$normal_out")" = 20 ] || { note "the other source was slowed: $normal_out"; return 1; }
	# burst + rate x (2.5 s + SYN retransmit slack) is < 100; without pacing all 5000 get in
	[ -n "$est" ] && [ "$est" -ge $SYN_BURST ] && [ "$est" -le 150 ] || { note "storm not paced: $storm_out"; return 1; }
	[ "$r1" -ge $((r0 + 4000)) ] || { note "dropped_rate moved by less than 4000"; return 1; }
}

# The per-source limits feed the gate as well: a source holding more connections
# before their handshake than source_max_handshakes (2 here, by a reload) is closed at
# accept (source_limit); fail_threshold (5) such refusals deny it at XDP.
t_source_limit_feeds_gate() {
	local out i
	dev ip addr add 10.77.0.10/24 dev veth-d 2>/dev/null || true
	cp "$GW_CONF" "$WORK/gw/pre-srclimit.conf"
	sed -i 's/^\[limits\]$/[limits]\nsource_max_handshakes = 2/' "$GW_CONF"
	kill -HUP "$GW_PID"
	sleep 0.5
	# 20 connections that each hold a handshake slot (a TLS record never completed)
	dev timeout 30 $PY "$TOP/tests/lib/flood.py" flood --host $GATE4 --port $PORT \
		--source 10.77.0.10 --conns 20 --seconds 3 >"$WORK/srcflood.out" 2>&1
	cp "$WORK/gw/pre-srclimit.conf" "$GW_CONF"
	kill -HUP "$GW_PID"
	for i in $(seq 50); do
		kg block list | grep -q '^10\.77\.0\.10 ' && break
		sleep 0.05
	done
	out=$(kg block list)
	echo "    flooder: $(tail -1 "$WORK/srcflood.out"); deny entry: $(grep '^10\.77\.0\.10 ' <<<"$out")"
	grep -Eq '^10\.77\.0\.10 +source_limit ' <<<"$out" ||
		{ note "10.77.0.10 not denied for source_limit: $out"; return 1; }
	[ "$(metric_value ktlsgate_source_limited_total 'limit="handshakes"')" -ge 5 ] ||
		{ note "ktlsgate_source_limited_total{limit=\"handshakes\"} < 5"; return 1; }
	kg block remove 10.77.0.10 >/dev/null
}

t_link_added_later() {
	local out line
	ip link add late-g type veth peer name late-d netns "$DEV_NS" || return 1
	ip addr add 10.78.0.1/24 dev late-g
	ip -n "$DEV_NS" addr add 10.78.0.2/24 dev late-d
	ip -n "$DEV_NS" addr add 10.78.0.3/24 dev late-d
	ip link set late-g up
	ip -n "$DEV_NS" link set late-d up
	for _ in $(seq 50); do
		line=$(grep -m1 'XDP gate attached to late-g' "$GW_LOG") && break
		sleep 0.1
	done
	[ -n "$line" ] || { note "late-g was not attached"; return 1; }
	echo "    ${line#*edge: }"
	ip -d link show late-g | grep -q 'prog/xdp' || { note "no XDP program on late-g"; return 1; }
	kg block add 10.78.0.3 >/dev/null
	out=$(tcp 10.78.0.3 10.78.0.1 $PORT 1 1000)
	[ "$(field timeout <<<"$out")" = 1 ] || { note "blocked source passed on late-g: $out"; return 1; }
	out=$(tcp 10.78.0.2 10.78.0.1 $PORT 1 1500)
	[ "$(field established <<<"$out")" = 1 ] || { note "late-g broke normal traffic: $out"; return 1; }
	# gone and back with a new ifindex: attached again
	ip link del late-g
	ip link add late-g type veth peer name late-d2 netns "$DEV_NS" || return 1
	for _ in $(seq 50); do
		[ "$(grep -c 'XDP gate attached to late-g' "$GW_LOG")" -ge 2 ] && break
		sleep 0.1
	done
	[ "$(grep -c 'XDP gate attached to late-g' "$GW_LOG")" -ge 2 ] || { note "re-created late-g not attached"; return 1; }
	ip link del late-g
}

t_detach_on_exit() {
	stop_gateway
	ip -d link show veth-g | grep -q 'prog/xdp' && { note "XDP program left on veth-g after exit"; return 1; }
	grep -q 'XDP gate detached from veth-g' "$GW_LOG" || { note "no detach line"; return 1; }
	# the pins stay: the CLI still works and the deny list survives a restart
	kg block list | grep -q '^10\.77\.0\.3 ' || { note "deny list not kept in the pins"; return 1; }
}

# Restart in generic (SKB) mode: the deny entries kept in the pins still drop.
t_generic_mode_after_restart() {
	local out line
	printf 'xdp_mode = generic\n' >>"$GW_CONF"
	start_gateway || { note "restart failed"; return 1; }
	line=$(grep 'XDP gate attached to veth-g' "$GW_LOG" | tail -1)
	echo "    ${line#*edge: }"
	grep -q 'generic mode' <<<"$line" || { note "not generic: $line"; return 1; }
	ip -d link show veth-g | grep -q 'xdpgeneric' || { note "ip link shows no xdpgeneric on veth-g"; return 1; }
	out=$(tcp 10.77.0.3 $GATE4 $PORT 1 1000)
	[ "$(field timeout <<<"$out")" = 1 ] || { note "denied source passed after restart: $out"; return 1; }
	out=$(tcp 10.77.0.2 $GATE4 $PORT 1 1500)
	[ "$(field established <<<"$out")" = 1 ] || { note "normal source failed in generic mode: $out"; return 1; }
	stop_gateway
}

# Without CAP_BPF / CAP_NET_ADMIN / CAP_SYS_ADMIN the daemon runs, says why, serves.
t_without_cap_bpf() {
	local wrap="$WORK/gated-nocap" out gated_saved=$GATED
	sed -i '/^xdp_mode = /d' "$GW_CONF"
	printf '#!/bin/sh\nexec setpriv --inh-caps=-all --bounding-set=-bpf,-net_admin,-sys_admin,-perfmon "%s" "$@"\n' \
		"$GATED" >"$wrap"
	chmod +x "$wrap"
	GATED=$wrap
	start_gateway
	local rc=$?
	GATED=$gated_saved
	[ $rc = 0 ] || { note "daemon did not start without CAP_BPF"; return 1; }
	grep 'running without the XDP gate' "$GW_LOG" | tail -1 | sed 's/^/    /'
	grep -q 'running without the XDP gate: cannot load BPF' "$GW_LOG" || { note "no 'running without' line"; return 1; }
	ip -d link show veth-g | grep -q 'prog/xdp' && { note "a program is attached anyway"; return 1; }
	out=$(dev timeout 30 $PY "$KGC" connect $(dev_args edgedev) --host $GATE4 | head -1)
	[ "$out" = "connack 0x00" ] || { note "connect without the gate failed: $out"; return 1; }
	stop_gateway
}

# The gate's counters on /metrics, end to end: they must agree with the pinned maps the
# CLI reads, and show the deny entries and the refusal feed the tests above caused.
t_xdp_metrics() {
	local d_before d_metric d_after v
	[ "$(metric_value ktlsgate_xdp_gate_active)" = 1 ] || { note "ktlsgate_xdp_gate_active is not 1"; return 1; }
	d_before=$(stat_of dropped_deny)
	d_metric=$(metric_value ktlsgate_xdp_packets_total 'verdict="dropped_deny"')
	d_after=$(stat_of dropped_deny)
	echo "    dropped_deny: block stats $d_before..$d_after, /metrics $d_metric"
	[[ "$d_metric" =~ ^[0-9]+$ ]] && [[ "$d_before" =~ ^[0-9]+$ ]] ||
		{ note "no value: metric '$d_metric', stats '$d_before'"; return 1; }
	[ "$d_metric" -ge 5 ] && [ "$d_metric" -ge "$d_before" ] && [ "$d_metric" -le "$d_after" ] ||
		{ note "metric and pinned map disagree"; return 1; }
	v=$(metric_value ktlsgate_xdp_deny_entries)
	[[ "$v" =~ ^[0-9]+$ ]] && [ "$v" -ge 1 ] || { note "ktlsgate_xdp_deny_entries '$v' (10.77.0.3 is blocked)"; return 1; }
	v=$(metric_value ktlsgate_xdp_deny_added_total 'reason="policy"')
	[[ "$v" =~ ^[0-9]+$ ]] && [ "$v" -ge 1 ] || { note "deny_added{policy} '$v' after t_refusals_feed_gate"; return 1; }
	v=$(metric_value ktlsgate_xdp_attached 'interface="veth-g"')
	[ "$v" = 1 ] || { note "ktlsgate_xdp_attached{veth-g} '$v'"; return 1; }
}

# steer_spread MODE: restart with [edge] steer = MODE and 2 workers, hold 16 sessions
# from the device namespace, set SPREAD="w0 w1" (sessions per worker from `session
# list`). Not run in a $(...) subshell: the restarted daemon's pid must reach GW_PID.
steer_spread() {
	local i pids=() out
	stop_gateway
	sed -i '/^steer = /d' "$GW_CONF"
	sed -i "s/^\[edge\]$/[edge]\nsteer = $1/" "$GW_CONF"
	SPREAD=""
	start_gateway || return 1
	for i in $(seq 16); do
		dev timeout 40 $PY "$KGC" connect $(dev_args "steer-$i") --host $GATE4 --hold 30 \
			>"$WORK/steer-$i.out" 2>&1 &
		pids+=($!)
		sleep 0.05
	done
	# python and a full handshake each, on a loaded machine: allow them 30 s to be up
	for i in $(seq 150); do
		[ "$(kg session list --json | $PY -c 'import json,sys; print(len(json.load(sys.stdin)))' 2>/dev/null)" = 16 ] && break
		sleep 0.2
	done
	SPREAD=$(kg session list --json | $PY -c 'import json,sys
rows=json.load(sys.stdin); w=[0,0]
for r in rows: w[r["worker"]] += 1
print(w[0], w[1])')
	[ "$SPREAD" = "0 0" ] && echo "    a client said: $(head -2 "$WORK/steer-1.out")"
	kill "${pids[@]}" 2>/dev/null
	wait "${pids[@]}" 2>/dev/null
	return 0
}

# Daemon-level worker steering (SK_REUSEPORT program) end to end: the program is
# attached, devices connect through it, and both workers get sessions.
t_steer_daemon() {
	local mode out w0 w1 i
	# one device per session: the broker would take over a session whose client id is reused
	for i in $(seq 16); do
		[ -f "$PKI/dev/steer-$i/chain.pem" ] && continue
		device_cert "steer-$i" "$PKI/factory" && kg device add "steer-$i" >/dev/null ||
			{ note "device steer-$i"; return 1; }
	done
	for mode in hash least_loaded; do
		steer_spread $mode || { note "$mode: the daemon did not start"; return 1; }
		out=$SPREAD
		read -r w0 w1 <<<"$out"
		echo "    steer = $mode: sessions per worker $w0 / $w1"
		grep -q 'new connections steered to workers by' "$GW_LOG" || { note "$mode: steering not attached: $(grep 'steer' "$GW_LOG" | tail -1)"; return 1; }
		bpftool prog show 2>/dev/null | grep -q 'sk_reuseport' || { note "$mode: no sk_reuseport program loaded"; return 1; }
		[[ "$w0" =~ ^[0-9]+$ ]] && [[ "$w1" =~ ^[0-9]+$ ]] || { note "$mode: no session list: '$out'"; return 1; }
		[ $((w0 + w1)) = 16 ] || { note "$mode: $((w0 + w1)) of 16 sessions up"; return 1; }
		[ "$w0" -ge 1 ] && [ "$w1" -ge 1 ] || { note "$mode: one worker got every session ($w0 / $w1)"; return 1; }
	done
	sed -i '/^steer = /d' "$GW_CONF"
}

ALL_TESTS=(t_attached t_allowed_source_connects t_denied_source_dropped t_refusals_feed_gate t_allow_list_wins
	t_block_cli t_expiry t_rate_storm t_source_limit_feeds_gate t_xdp_metrics t_link_added_later t_steer_daemon t_detach_on_exit
	t_generic_mode_after_restart t_without_cap_bpf)

setup || { echo "FAIL test-xdp: setup"; tail -20 "${GW_LOG:-/dev/null}"; KG_FAILED=1; exit 1; }
run_tests
