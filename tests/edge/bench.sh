#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# bench.sh - make bench-edge: what a denied source costs, with and without the gate.
#
# Same namespaces as test-xdp.sh (netns.sh). The gate namespace runs mosquitto and
# ktlsgated with the XDP gate on veth-g (SYN pacing off, so only the deny map drops).
#  1. SYN flood: kg-synflood sends raw SYNs from 10.77.0.3 to port 8883 for
#     BENCH_SECONDS in each setup; BENCH_ROUNDS rounds with the setups interleaved
#     (the machine is shared: medians over rounds):
#       baseline    gate link down: the sender's own cost (veth drops at xmit)
#       none        no rule: the gate's kernel answers each SYN (SYN-ACK / cookies)
#       nft-input   nftables drop rule in an inet filter input chain
#       nft-ingr    nftables drop rule in a netdev ingress chain (its earliest hook)
#       xdp         `ktlsgate block add 10.77.0.3`: dropped by the gate, native mode
#       xdp-generic the same after a restart with xdp_mode = generic
#     Columns: pps of the single-threaded sender; us/pkt = 1/pps (the veth receive
#     path runs on the sender's CPU, so this is sender + receiver); rx_us/pkt = that
#     minus the baseline, i.e. what the gate side spends per packet; machine CPU s per
#     million packets (/proc/stat busy, all cores, includes other load on the box);
#     the daemon's CPU during the row.
#  2. A refused device's reconnect loop (BENCH_ATTEMPTS mTLS connects of a device
#     not in the registry, tests/edge/reconnect_loop.py): daemon CPU per attempt
#     (all threads, schedstat ns) without the gate (full handshake + CONNACK refusal)
#     and with its source blocked at XDP, minus the daemon's idle CPU.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(cd "$HERE/../.." && pwd)
BUILD=${BUILD:-build}
[[ $BUILD = /* ]] || BUILD="$TOP/$BUILD"
FLOOD="$BUILD/kg-synflood"
. "$HERE/netns.sh"
edge_netns_enter bench-edge "$0" "$@"

# shellcheck disable=SC2034 # read by lib.sh
GATED="$BUILD/ktlsgated"
# shellcheck disable=SC2034
KGCLI="$BUILD/ktlsgate"
. "$TOP/tests/integration/lib.sh"
SECS=${BENCH_SECONDS:-3}
ROUNDS=${BENCH_ROUNDS:-3}
ATTEMPTS=${BENCH_ATTEMPTS:-200}
PORT=8883
HZ=$(getconf CLK_TCK)

dev() { ip netns exec "$DEV_NS" "$@"; }
busy_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }
# task_ns PID: CPU time of all the process's threads, ns (schedstat: exact, not ticks)
task_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ s += $1 } END { printf "%d", s }'; }
stat_of() { kg block stats | awk -v k="$1" '$1 == k { print $2 }'; }

setup() {
	kg_init edge-bench
	BK_PORT=$(free_port)
	GW_PORT=$PORT
	GW_MPORT=$(free_port)
	KG_GW_LIMITS=$KG_GW_NO_SOURCE_LIMITS write_gw_conf "$WORK/gw" "$PORT" "$GW_MPORT" "$BK_PORT" "$(free_port)"
	GW_CONF="$WORK/gw/ktlsgate.conf"
	GW_LOG="$WORK/gw/gw.log"
	: >"$GW_LOG"
	sed -i "s/^listen = .*/listen = 0.0.0.0:$PORT/" "$GW_CONF"
	# fail_threshold: the refused device's reconnect loop "no gate" measures what the
	# daemon spends on it while it is NOT denied; with the default (5 refusals) the
	# refusal feed would deny it after five attempts and the row would measure timeouts.
	printf '\n[edge]\ninterfaces = veth-g\nsyn_rate = 0\nfail_threshold = 1000000\nxdp_mode = auto\npin_dir = %s/ktlsgate\n' \
		"$KG_EDGE_BPFFS" >>"$GW_CONF"
	pki_setup "$WORK/pki" || return 1
	device_cert stranger "$PKI/factory" || return 1   # valid chain, not in the registry
	start_broker "$BK_PORT" || return 1
	start_gateway || return 1
}

# flood NAME: one SYN flood run; appends "pps cpu_per_Mpkt daemon_ms" to RES[NAME].
flood() {
	local name=$1 b0 b1 g0 g1 out sent pps
	b0=$(busy_ticks)
	g0=$(task_ns "$GW_PID")
	out=$(dev "$FLOOD" syn -s 10.77.0.3 -d 10.77.0.1 -p $PORT -n 1 -S "$SECS")
	b1=$(busy_ticks)
	g1=$(task_ns "$GW_PID")
	sent=$(awk '{ print $2 }' <<<"$out")
	pps=$(sed -n 's/.*(\([0-9]*\) pps).*/\1/p' <<<"$out")
	RES[$name]+="$pps $(awk -v t=$((b1 - b0)) -v hz="$HZ" -v n="$sent" 'BEGIN { printf "%.3f", t / hz / (n / 1e6) }') $(((g1 - g0) / 1000000));"
}

nft_clear() { nft delete table inet kgbench 2>/dev/null; nft delete table netdev kgbench 2>/dev/null; true; }

# col NAME K: median of field K over the rounds of NAME.
col() {
	tr ';' '\n' <<<"${RES[$1]}" | awk -v k="$2" 'NF { print $k }' | sort -g |
		awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# gw_mode auto|native|generic: restart the daemon with that [edge] xdp_mode.
gw_mode() {
	stop_gateway
	sed -i "s/^xdp_mode = .*/xdp_mode = $1/" "$GW_CONF"
	start_gateway || return 1
	tail -5 "$GW_LOG" | grep -q "attached to veth-g" || { echo "bench-edge: not attached after restart" >&2; return 1; }
}

declare -A RES
run_flood() {
	local r d0 d1 name base_us us
	echo "- stamp: ktlsgate $(git -C "$TOP" describe --always --dirty 2>/dev/null || echo '?'), $(date -u '+%Y-%m-%d %H:%M UTC'), kernel $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "SYN flood from 10.77.0.3 to :$PORT: $ROUNDS rounds x $SECS s per setup, setups interleaved;"
	echo "medians. $(nproc) CPUs; XDP $(sed -n 's/.*attached to veth-g.* in \([a-z]*\) mode.*/\1/p' "$GW_LOG" | head -1) mode on veth."
	for ((r = 1; r <= ROUNDS; r++)); do
		ip link set veth-g down
		flood baseline
		ip link set veth-g up
		sleep 0.5
		flood none
		nft add table inet kgbench && nft add chain inet kgbench input '{ type filter hook input priority 0; }' &&
			nft add rule inet kgbench input ip saddr 10.77.0.3 tcp dport $PORT drop || return 1
		flood nft-input
		nft_clear
		nft add table netdev kgbench &&
			nft add chain netdev kgbench ingress "{ type filter hook ingress device veth-g priority 0; }" &&
			nft add rule netdev kgbench ingress ip saddr 10.77.0.3 tcp dport $PORT drop || return 1
		flood nft-ingr
		nft_clear
		kg block add 10.77.0.3 >/dev/null || return 1
		d0=$(stat_of dropped_deny)
		flood xdp
		d1=$(stat_of dropped_deny)
		XDP_DROPS=$((${XDP_DROPS:-0} + d1 - d0))
		# the same in generic (SKB) mode: restart with xdp_mode = generic; the deny
		# entry stays in the pinned map across the restart
		gw_mode generic || return 1
		flood xdp-generic
		gw_mode auto || return 1
		kg block remove 10.77.0.3 >/dev/null
	done
	# One single-threaded sender; the receive path runs on its CPU (veth), so 1/pps is
	# the per-packet time of sender + receiver; minus the baseline row = receiver.
	base_us=$(awk -v p="$(col baseline 1)" 'BEGIN { print 1e6 / p }')
	printf '%-11s %9s %12s %14s %16s %10s\n' setup pps us/pkt rx_us/pkt machine_cpu_s/Mpkt daemon_ms
	for name in baseline none nft-input nft-ingr xdp xdp-generic; do
		us=$(awk -v p="$(col $name 1)" 'BEGIN { print 1e6 / p }')
		printf '%-11s %9.0f %12.3f %14.3f %16.3f %10s\n' $name "$(col $name 1)" "$us" \
			"$(awk -v u="$us" -v b="$base_us" 'BEGIN { print u - b }')" "$(col $name 2)" "$(col $name 3)"
	done
	echo "packets dropped by the XDP gate in the xdp rows (counter): $XDP_DROPS"
}

# reconnect LABEL TIMEOUT_S: ATTEMPTS mTLS connects of "stranger" from 10.77.0.2; daemon CPU.
reconnect() {
	local label=$1 tmo=$2 g0 g1 a0 a1 t0 t1 out
	g0=$(task_ns "$GW_PID")
	a0=$(metric_value ktlsgate_accepted_total)
	t0=$(date +%s.%N)
	out=$(dev timeout 300 $PY "$HERE/reconnect_loop.py" "$ATTEMPTS" $(dev_args stranger) \
		--host 10.77.0.1 --timeout "$tmo" 2>&1 | tail -1)
	t1=$(date +%s.%N)
	g1=$(task_ns "$GW_PID")
	a1=$(metric_value ktlsgate_accepted_total)
	awk -v l="$label" -v n="$ATTEMPTS" -v a=$((a1 - a0)) -v t=$((g1 - g0)) \
		-v w="$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" -v idle="$IDLE_RATE" -v c="$out" \
		'BEGIN { cpu = t / 1e9; net = cpu - idle * w
			per = net > 0 ? sprintf("%.3f ms/attempt", net / n * 1000) : "0 (within the idle noise)"
			printf "%-14s attempts %d  accepted %d  daemon CPU %.3f s in %.1f s, minus idle %.3f s = %s  (client saw: %s)\n",
				l, n, a, cpu, w, idle * w, per, c }'
}

# The daemon's CPU when nothing arrives (timers, metrics thread): subtracted above.
idle_rate() {
	local g0 g1
	g0=$(task_ns "$GW_PID")
	sleep 10
	g1=$(task_ns "$GW_PID")
	IDLE_RATE=$(awk -v t=$((g1 - g0)) 'BEGIN { print t / 1e9 / 10 }')
	echo "daemon idle: $IDLE_RATE CPU s per s"
}

run_reconnect() {
	echo
	echo "Refused device (valid chain, not in the registry) reconnecting $ATTEMPTS times from 10.77.0.2"
	idle_rate
	reconnect "no gate:" 2
	kg block add 10.77.0.2 >/dev/null || return 1
	# each attempt now waits for its connect timeout: keep it short
	reconnect "blocked (XDP):" 0.2
	kg block remove 10.77.0.2 >/dev/null
}

trap 'nft_clear; stop_all' EXIT
setup || { echo "bench-edge: setup failed"; tail -20 "${GW_LOG:-/dev/null}"; exit 1; }
run_flood || exit 1
run_reconnect || exit 1
