#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# test-block-daemon.sh - `ktlsgate block` when the maps are not pinned: the daemon
# serves it over the control socket (control.h, block-*), as root, on the host kernel.
#
# The packaged unit runs ktlsgated as user ktlsgate with CAP_BPF, CAP_NET_ADMIN and
# CAP_PERFMON only, and Debian mounts /sys/fs/bpf root 0700: the gate loads and
# attaches but cannot pin its maps. Here: the namespaces of netns.sh (device 10.77.0.2..9
# and fd77::2..9, gate 10.77.0.1 / fd77::1 on veth-g), the daemon run by setpriv as an
# unused uid with exactly those three capabilities (ambient) and [edge] pin_dir inside a
# root-only directory of the run's private bpffs. The CLI runs as root and finds no pins,
# so every block command goes through the daemon; the checks compare the packets the
# device namespace sends (real TCP connects, build/kg-synflood) with what the CLI says.
# Then: pins an earlier run left there are not taken for the gate's, the line the CLI
# prints when neither way works (no daemon; a daemon without a gate), and the pinned
# path with no daemon at all (a root daemon pins, then stops).
#
# Run: tests/edge/run.sh (make check-edge), under flock /tmp/kg-edge.lock by hand.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(cd "$HERE/../.." && pwd)
BUILD=${BUILD:-build}
[[ $BUILD = /* ]] || BUILD="$TOP/$BUILD"
FLOOD="$BUILD/kg-synflood"

# shellcheck source=netns.sh
. "$HERE/netns.sh"
edge_netns_enter test-block-daemon "$0" "$@"

# --- inner: inside the gate namespace ------------------------------------------------
# shellcheck disable=SC2034 # read by lib.sh
GATED="$BUILD/ktlsgated"
# shellcheck disable=SC2034
KGCLI="$BUILD/ktlsgate"
. "$TOP/tests/integration/lib.sh"

GATE4=10.77.0.1
GATE6=fd77::1
PORT=8883
# No passwd entry: nothing on the host is changed for the run.
RUN_UID=61234
# CapEff the daemon keeps once up with the gate loaded (caps.h): CAP_BPF (39) and
# CAP_NET_ADMIN (12).
CAPS_KEPT=0000008000001000
ROOT_ONLY="$KG_EDGE_BPFFS/root-only"
PIN="$ROOT_ONLY/ktlsgate"

dev() { ip netns exec "$DEV_NS" "$@"; }
# tcp SRC DST PORT N TIMEOUT_MS: N sequential TCP connects from SRC; the tool's line
# ("established E timeout T refused R other O ...").
tcp() { dev timeout 60 "$FLOOD" connect -s "$1" -d "$2" -p "$3" -n "$4" -t "$5"; }
field() { awk -v k="$1" '{ for (i = 1; i < NF; i++) if ($i == k) print $(i + 1) }'; }
stat_of() { kg block stats | awk -v k="$1" '$1 == k { print $2 }'; }
num() { [[ "${1:-}" =~ ^[0-9]+$ ]]; }

# The daemon as the unit runs it: another uid, only the edge drop-in's capabilities.
write_unpriv_wrapper() {
	printf '#!/bin/sh\nexec setpriv --reuid=%s --regid=%s --clear-groups --inh-caps=-all,+bpf,+net_admin,+perfmon --ambient-caps=+bpf,+net_admin,+perfmon --bounding-set=-all,+bpf,+net_admin,+perfmon "%s" "$@"\n' \
		"$RUN_UID" "$RUN_UID" "$BUILD/ktlsgated" >"$WORK/gated-unpriv"
	chmod 755 "$WORK/gated-unpriv"
}

setup() {
	edge_gw_conf block-daemon
	cat >>"$GW_CONF" <<EOF

[edge]
interfaces = veth-g
allow = 10.77.0.7/32
pin_dir = $PIN
EOF
	pki_setup "$WORK/pki" || return 1
	device_cert edgedev "$PKI/factory" || return 1
	kg device add edgedev >/dev/null || return 1
	# /sys/fs/bpf as Debian mounts it: root's, 0700. The daemon's user cannot pin there.
	mkdir -m 0700 "$ROOT_ONLY" || return 1
	write_unpriv_wrapper
	# The daemon's user reads its config, PKI and registry and makes its control
	# socket; every directory above WORK must let it pass.
	chown -R "$RUN_UID:$RUN_UID" "$WORK" || return 1
	local d=$WORK
	while d=$(dirname "$d") && [ "$d" != / ]; do
		case $(stat -c %A "$d") in
		*[xt]) ;;
		*) echo "    $d is not searchable by others: the daemon's user cannot reach $WORK"; return 1 ;;
		esac
	done
	start_broker "$BK_PORT" || return 1
	GATED="$WORK/gated-unpriv" start_gateway || return 1
}

accepted() { metric_value ktlsgate_accepted_total; }

t_gate_up_unpinned_as_user() {
	local uid eff
	ip -d link show veth-g | grep -q 'prog/xdp' || { note "no XDP program on veth-g"; return 1; }
	grep -q "edge: maps not pinned ($PIN: Permission denied)" "$GW_LOG" ||
		{ note "no 'maps not pinned' line: $(grep 'edge:' "$GW_LOG" | head -3)"; return 1; }
	uid=$(awk '/^Uid:/ { print $2 }' "/proc/$GW_PID/status")
	eff=$(awk '/^CapEff:/ { print $2 }' "/proc/$GW_PID/status")
	echo "    daemon pid $GW_PID: uid $uid, CapEff $eff"
	[ "$uid" = "$RUN_UID" ] || { note "daemon uid '$uid', want $RUN_UID"; return 1; }
	[ "$eff" = "$CAPS_KEPT" ] || { note "daemon CapEff '$eff', want $CAPS_KEPT (bpf, net_admin)"; return 1; }
	[ ! -e "$PIN/kg_deny" ] || { note "$PIN/kg_deny exists: the test needs the maps unpinned"; return 1; }
}

# Exit code, stdout and stderr of one CLI call: RC OUT ERR.
run_kg() {
	OUT=$(kg "$@" 2>"$WORK/kg.err")
	RC=$?
	ERR=$(cat "$WORK/kg.err")
}

t_add_drops_via_daemon() {
	local a0 d0 a1 d1 out
	d0=$(stat_of dropped_deny)
	a0=$(accepted)
	num "$d0" || { note "block stats through the daemon gave no dropped_deny: '$d0'"; return 1; }
	run_kg block add 10.77.0.3
	echo "    block add 10.77.0.3: exit $RC, '$OUT' $ERR"
	[ "$RC" = 0 ] && [ "$OUT" = "blocked 10.77.0.3 until removed" ] ||
		{ note "block add: exit $RC, out '$OUT', err '$ERR'"; return 1; }
	grep -q 'edge: 10.77.0.3 denied at XDP until removed (ktlsgate block add)' "$GW_LOG" ||
		{ note "the daemon did not log the deny: not served by it?"; return 1; }
	run_kg block add fd77::3 --for 600
	[ "$RC" = 0 ] && [ "$OUT" = "blocked fd77::3 for 600s" ] || { note "add fd77::3: $RC '$OUT' '$ERR'"; return 1; }
	out=$(tcp 10.77.0.3 $GATE4 $PORT 3 1500)
	echo "    blocked 10.77.0.3: $out"
	[ "$(field established <<<"$out")" = 0 ] && [ "$(field timeout <<<"$out")" = 3 ] ||
		{ note "blocked IPv4 source got through: $out"; return 1; }
	out=$(tcp fd77::3 $GATE6 $PORT 2 1500)
	echo "    blocked fd77::3: $out"
	[ "$(field established <<<"$out")" = 0 ] && [ "$(field timeout <<<"$out")" = 2 ] ||
		{ note "blocked IPv6 source got through: $out"; return 1; }
	d1=$(stat_of dropped_deny)
	a1=$(accepted)
	echo "    dropped_deny $d0 -> $d1, daemon accepted $a0 -> $a1"
	num "$d1" && num "$a0" && num "$a1" || { note "no value: dropped_deny '$d1', accepted '$a0' '$a1'"; return 1; }
	[ "$a1" = "$a0" ] || { note "the daemon accepted a connection from a blocked source"; return 1; }
	# 5 connects, each at least its SYN
	[ "$d1" -ge $((d0 + 5)) ] || { note "dropped_deny moved by less than the 5 SYNs sent"; return 1; }
	out=$(tcp 10.77.0.2 $GATE4 $PORT 1 1500)
	[ "$(field established <<<"$out")" = 1 ] || { note "an unblocked source failed: $out"; return 1; }
}

t_list_and_stats_via_daemon() {
	local out m0 m1 p d r
	run_kg block add 10.77.0.8 --for 600
	[ "$RC" = 0 ] || { note "add --for: $RC '$ERR'"; return 1; }
	run_kg block list
	printf '%s\n' "$OUT" | sed 's/^/    /'
	[ "$RC" = 0 ] || { note "list: exit $RC '$ERR'"; return 1; }
	[ "$(head -1 <<<"$OUT" | tr -s ' ')" = "ADDRESS REASON STRIKES EXPIRES_IN" ] || { note "list header: $OUT"; return 1; }
	[ "$(grep -c . <<<"$OUT")" = 4 ] || { note "list: want the header and 3 entries"; return 1; }
	grep -Eq '^10\.77\.0\.3 +manual +0 +never$' <<<"$OUT" || { note "list: 10.77.0.3 row"; return 1; }
	grep -Eq '^10\.77\.0\.8 +manual +0 +(59[0-9]|600)s$' <<<"$OUT" || { note "list: 10.77.0.8 row"; return 1; }
	grep -Eq '^fd77::3 +manual +0 +(5[0-9][0-9]|600)s$' <<<"$OUT" || { note "list: fd77::3 row"; return 1; }
	run_kg block list --json
	[ "$RC" = 0 ] || { note "list --json: exit $RC '$ERR'"; return 1; }
	$PY -c 'import json,sys
l = {x["address"]: x for x in json.loads(sys.argv[1])}
assert sorted(l) == ["10.77.0.3", "10.77.0.8", "fd77::3"], l
assert l["10.77.0.3"] == {"address": "10.77.0.3", "reason": "manual", "strikes": 0, "expires_in_s": None}, l
assert l["10.77.0.8"]["reason"] == "manual" and 590 <= l["10.77.0.8"]["expires_in_s"] <= 600, l
assert list(l["10.77.0.8"]) == ["address", "reason", "strikes", "expires_in_s"], l' "$OUT" ||
		{ note "list --json: $OUT"; return 1; }
	# stats: the daemon's counters, between two /metrics scrapes of the same maps
	m0=$(metric_value ktlsgate_xdp_packets_total 'verdict="passed"')
	run_kg block stats
	m1=$(metric_value ktlsgate_xdp_packets_total 'verdict="passed"')
	printf '%s\n' "$OUT" | sed 's/^/    /'
	[ "$RC" = 0 ] || { note "stats: exit $RC '$ERR'"; return 1; }
	[ "$(awk '{ print $1 }' <<<"$OUT" | tr '\n' ' ')" = "passed dropped_deny dropped_rate " ] ||
		{ note "stats: names"; return 1; }
	p=$(awk '$1 == "passed" { print $2 }' <<<"$OUT")
	d=$(awk '$1 == "dropped_deny" { print $2 }' <<<"$OUT")
	r=$(awk '$1 == "dropped_rate" { print $2 }' <<<"$OUT")
	num "$p" && num "$d" && num "$r" && num "$m0" && num "$m1" || { note "stats: no values"; return 1; }
	[ "$p" -ge "$m0" ] && [ "$p" -le "$m1" ] && [ "$p" -ge 1 ] ||
		{ note "stats passed $p outside the /metrics scrapes $m0..$m1"; return 1; }
	[ "$d" -ge 5 ] || { note "stats dropped_deny $d after t_add_drops_via_daemon's 5 SYNs"; return 1; }
	run_kg block stats --json
	[ "$RC" = 0 ] || { note "stats --json: exit $RC"; return 1; }
	out=$($PY -c 'import json,sys; j=json.loads(sys.argv[1]); print(list(j) == ["passed","dropped_deny","dropped_rate"], j["dropped_deny"] >= int(sys.argv[2]))' "$OUT" "$d")
	[ "$out" = "True True" ] || { note "stats --json: $OUT"; return 1; }
}

t_allow_listed_note() {
	run_kg block add 10.77.0.7 --for 60
	[ "$RC" = 0 ] && [ "$OUT" = "blocked 10.77.0.7 for 60s
note: 10.77.0.7 is in the [edge] allow list: the gate never drops it" ] ||
		{ note "add of an allow-listed source: $RC '$OUT' '$ERR'"; return 1; }
	run_kg block remove 10.77.0.7
	[ "$RC" = 0 ] || { note "remove 10.77.0.7: $RC '$ERR'"; return 1; }
}

t_remove_via_daemon() {
	local out
	run_kg block remove 10.77.0.3
	[ "$RC" = 0 ] && [ "$OUT" = "unblocked 10.77.0.3" ] || { note "remove: $RC '$OUT' '$ERR'"; return 1; }
	out=$(tcp 10.77.0.3 $GATE4 $PORT 2 1500)
	echo "    after remove, 10.77.0.3: $out"
	[ "$(field established <<<"$out")" = 2 ] || { note "still dropped after remove: $out"; return 1; }
	run_kg block remove fd77::3
	[ "$RC" = 0 ] || { note "remove fd77::3: $RC '$ERR'"; return 1; }
	out=$(tcp fd77::3 $GATE6 $PORT 1 1500)
	[ "$(field established <<<"$out")" = 1 ] || { note "fd77::3 still dropped after remove: $out"; return 1; }
	run_kg block remove 10.77.0.3
	[ "$RC" = 2 ] && [ "$ERR" = "ktlsgate: block remove: 10.77.0.3 is not blocked" ] ||
		{ note "remove of an absent entry: exit $RC '$ERR', want 2"; return 1; }
	kg block list | grep -q '^10\.77\.0\.3 ' && { note "10.77.0.3 still listed"; return 1; }
	run_kg block add 10.77.0.300
	[ "$RC" = 1 ] || { note "bad address: exit $RC, want 1"; return 1; }
	return 0
}

# An operator without root or CAP_BPF who may use the control socket (here the
# daemon's own uid, which owns it) gets the same answers through the daemon.
t_cli_without_privileges() {
	local out rc
	out=$(timeout 20 setpriv --reuid=$RUN_UID --regid=$RUN_UID --clear-groups --inh-caps=-all \
		"$KGCLI" -c "$GW_CONF" block add 10.77.0.6 --for 60 2>&1)
	rc=$?
	echo "    as uid $RUN_UID: $out"
	[ $rc = 0 ] && [ "$out" = "blocked 10.77.0.6 for 60s" ] || { note "add as uid $RUN_UID: exit $rc '$out'"; return 1; }
	out=$(timeout 20 setpriv --reuid=$RUN_UID --regid=$RUN_UID --clear-groups --inh-caps=-all \
		"$KGCLI" -c "$GW_CONF" block list 2>&1)
	grep -Eq '^10\.77\.0\.6 +manual +0 +(5[0-9]|60)s$' <<<"$out" || { note "list as uid $RUN_UID: $out"; return 1; }
	out=$(tcp 10.77.0.6 $GATE4 $PORT 1 1500)
	[ "$(field timeout <<<"$out")" = 1 ] || { note "10.77.0.6 not dropped: $out"; return 1; }
	run_kg block remove 10.77.0.6
	[ "$RC" = 0 ] || { note "remove 10.77.0.6: $RC '$ERR'"; return 1; }
}

# Pins left by an earlier run (root, say) where this daemon could not pin: the CLI can
# open them, but they are not the gate's. It must notice (block-maps) and go through the
# daemon, or the block would land in a map no program reads.
t_stale_pins_ignored() {
	local out dump
	mkdir -p "$PIN" &&
		bpftool map create "$PIN/kg_deny" type hash key 16 value 24 entries 64 name kg_deny &&
		bpftool map create "$PIN/kg_stats" type percpu_array key 4 value 8 entries 3 name kg_stats ||
		{ note "cannot make the stale pins"; return 1; }
	run_kg block add 10.77.0.4 --for 120
	echo "    $ERR"
	[ "$RC" = 0 ] && [ "$OUT" = "blocked 10.77.0.4 for 120s" ] || { note "add with stale pins: $RC '$OUT' '$ERR'"; return 1; }
	grep -q "^ktlsgate: note: $PIN/kg_deny: not the running gate's map (id [0-9]*, the gate's is [0-9]*): left by an earlier run\$" <<<"$ERR" ||
		{ note "no note about the stale pin: '$ERR'"; return 1; }
	out=$(tcp 10.77.0.4 $GATE4 $PORT 1 1500)
	echo "    10.77.0.4 blocked past the stale pins: $out"
	[ "$(field timeout <<<"$out")" = 1 ] || { note "not dropped: the block went to the stale map? $out"; return 1; }
	dump=$(bpftool -j map dump pinned "$PIN/kg_deny")
	[ "$dump" = "[]" ] || { note "the stale map was written: $dump"; return 1; }
	run_kg block stats
	[ "$RC" = 0 ] && [ "$(awk '$1 == "dropped_deny" { print $2 }' <<<"$OUT")" -ge 1 ] ||
		{ note "stats read the stale map: '$OUT'"; return 1; }
	run_kg block remove 10.77.0.4
	[ "$RC" = 0 ] && [ "$OUT" = "unblocked 10.77.0.4" ] || { note "remove: $RC '$OUT' '$ERR'"; return 1; }
	rm -f "$PIN/kg_deny" "$PIN/kg_stats" && rmdir "$PIN"
}

# No pins and no daemon: one line with both reasons, exit 3.
t_neither_reachable() {
	local want
	stop_gateway
	run_kg block list
	want="ktlsgate: block list: cannot reach the XDP gate: pinned map $PIN/kg_deny: No such file or directory; daemon: not running (control socket $WORK/gw/ctl.sock)"
	echo "    $ERR"
	[ "$RC" = 3 ] && [ -z "$OUT" ] && [ "$ERR" = "$want" ] ||
		{ note "no pins, no daemon: exit $RC, out '$OUT', err '$ERR'"; return 1; }
	# a daemon without the gate says why it has none
	cp "$GW_CONF" "$WORK/gw/edge.conf.saved"
	sed -i 's/^\[edge\]$/[edge]\nxdp = off/' "$GW_CONF"
	GATED="$WORK/gated-unpriv" start_gateway || { note "daemon with xdp = off did not start"; return 1; }
	run_kg block add 10.77.0.4
	echo "    $ERR"
	want="ktlsgate: block add: cannot reach the XDP gate: pinned map $PIN/kg_deny: No such file or directory; daemon: the XDP gate is not active: [edge] xdp = off"
	[ "$RC" = 3 ] && [ -z "$OUT" ] && [ "$ERR" = "$want" ] ||
		{ note "daemon without a gate: exit $RC, out '$OUT', err '$ERR'"; return 1; }
	stop_gateway
	cp "$WORK/gw/edge.conf.saved" "$GW_CONF"
}

# The pinned path needs no daemon (as before): a root daemon pins in a directory it may
# create, stops; the CLI still adds, lists and removes, and the kernel keeps the maps.
t_pins_without_daemon() {
	local pins="$KG_EDGE_BPFFS/open/ktlsgate" out
	sed -i "s|^pin_dir = .*|pin_dir = $pins|" "$GW_CONF"
	start_gateway || { note "root daemon did not start"; return 1; }
	grep -q "maps pinned in $pins" "$GW_LOG" || { note "root daemon did not pin: $(grep 'edge:' "$GW_LOG" | tail -2)"; return 1; }
	# the gate's own pins, daemon running: the pins are used (the daemon logs nothing)
	run_kg block add 10.77.0.5 --for 300
	[ "$RC" = 0 ] && [ "$OUT" = "blocked 10.77.0.5 for 300s" ] && [ -z "$ERR" ] ||
		{ note "add on the gate's pins: $RC '$OUT' '$ERR'"; return 1; }
	grep -q '10.77.0.5 denied at XDP' "$GW_LOG" && { note "served by the daemon, not the pins"; return 1; }
	out=$(tcp 10.77.0.5 $GATE4 $PORT 1 1500)
	[ "$(field timeout <<<"$out")" = 1 ] || { note "not dropped after add on the pins: $out"; return 1; }
	stop_gateway
	[ -e "$pins/kg_deny" ] || { note "no pin left at $pins/kg_deny"; return 1; }
	out=$(kg block list)
	grep -Eq '^10\.77\.0\.5 +manual +0 +(2[5-9][0-9]|300)s$' <<<"$out" || { note "list on pins: $out"; return 1; }
	run_kg block stats
	[ "$RC" = 0 ] && [ "$(grep -c . <<<"$OUT")" = 3 ] || { note "stats on pins: $RC '$OUT' '$ERR'"; return 1; }
	run_kg block remove 10.77.0.5
	[ "$RC" = 0 ] && [ "$OUT" = "unblocked 10.77.0.5" ] || { note "remove on pins: $RC '$OUT' '$ERR'"; return 1; }
	run_kg block remove 10.77.0.5
	[ "$RC" = 2 ] || { note "remove of an absent entry on pins: exit $RC, want 2"; return 1; }
}

ALL_TESTS=(t_gate_up_unpinned_as_user t_add_drops_via_daemon t_list_and_stats_via_daemon
	t_allow_listed_note t_remove_via_daemon t_cli_without_privileges t_stale_pins_ignored
	t_neither_reachable
	t_pins_without_daemon)

setup || { echo "FAIL test-block-daemon: setup"; tail -20 "${GW_LOG:-/dev/null}"; KG_FAILED=1; exit 1; }
# run_tests in this shell (it starts and stops the daemon: GW_PID must stay ours); its
# lines are counted from a copy.
run_tests > >(tee "$WORK/results")
rc=$?
wait $!
passed=$(grep -c '^PASS ' "$WORK/results")
failed=$(grep -c '^FAIL ' "$WORK/results")
echo "test-block-daemon: $passed passed, $failed failed, $(grep -c '^SKIP ' "$WORK/results") not run"
[ $rc = 0 ] && [ "$passed" -ge 1 ] && [ "$failed" = 0 ]
