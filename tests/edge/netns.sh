# shellcheck shell=bash
# SPDX-License-Identifier: BSD-2-Clause
# netns.sh - sourced by the tests/edge scripts: the "device" and "gate" namespaces.
#
# edge_netns_enter NAME SCRIPT ARGS...: on the first call (outside), as root: create
# namespaces kgdev-XXXXXXXX and kggate-XXXXXXXX (random suffix) joined by a veth pair
# (veth-d: 10.77.0.2..9/24, fd77::2..9/64; veth-g: 10.77.0.1, fd77::1), mount a private
# bpffs for the pinned maps, run SCRIPT again inside the gate namespace with
# KG_EDGE_INNER=1 DEV_NS GATE_NS KG_EDGE_BPFFS BUILD exported, delete everything on
# EXIT (always), and exit with the inner status. Inside (KG_EDGE_INNER=1) it returns.
# Needs HERE (the script's dir), BUILD and FLOOD set by the caller.

edge_netns_enter() {
	local name=$1 script=$2 suf i f
	shift 2
	[ -n "${KG_EDGE_INNER:-}" ] && return 0
	if [ "$(id -u)" != 0 ]; then
		echo "SKIP $name: needs root (netns, XDP)"
		exit 77
	fi
	for f in "$BUILD/ktlsgated" "$BUILD/ktlsgate" "$FLOOD"; do
		[ -x "$f" ] || { echo "FAIL $name: $f not built"; exit 1; }
	done
	suf=$(head -c4 /dev/urandom | od -An -tx1 | tr -d ' \n')
	export DEV_NS="kgdev-$suf" GATE_NS="kggate-$suf"
	KG_EDGE_BPFFS=$(mktemp -d "/tmp/kg-edge-bpffs.XXXXXX")
	edge_netns_cleanup() {
		ip netns del "$DEV_NS" 2>/dev/null
		ip netns del "$GATE_NS" 2>/dev/null
		umount "$KG_EDGE_BPFFS" 2>/dev/null
		rmdir "$KG_EDGE_BPFFS" 2>/dev/null
	}
	trap edge_netns_cleanup EXIT
	trap 'exit 130' INT TERM
	ip netns add "$DEV_NS" && ip netns add "$GATE_NS" || exit 1
	ip link add veth-g netns "$GATE_NS" type veth peer name veth-d netns "$DEV_NS" || exit 1
	ip -n "$GATE_NS" link set lo up
	ip -n "$DEV_NS" link set lo up
	ip -n "$GATE_NS" addr add 10.77.0.1/24 dev veth-g
	ip -n "$GATE_NS" addr add fd77::1/64 dev veth-g nodad
	for i in 2 3 4 5 6 7 8 9; do
		ip -n "$DEV_NS" addr add 10.77.0.$i/24 dev veth-d
		ip -n "$DEV_NS" addr add fd77::$i/64 dev veth-d nodad
	done
	ip -n "$GATE_NS" link set veth-g up
	ip -n "$DEV_NS" link set veth-d up
	mount -t bpf bpf "$KG_EDGE_BPFFS" || { echo "FAIL $name: cannot mount bpffs"; exit 1; }
	export KG_EDGE_BPFFS KG_EDGE_INNER=1 BUILD
	ip netns exec "$GATE_NS" bash "$script" "$@"
	exit $?
}

# edge_gw_conf NAME: inside the gate namespace, after lib.sh: kg_init NAME and a
# gateway config listening on $PORT over IPv4 and IPv6 (veth-g's addresses), with
# BK_PORT, GW_PORT, GW_MPORT, GW_CONF and GW_LOG set, ready for the caller's [edge].
edge_gw_conf() {
	kg_init "$1"
	BK_PORT=$(free_port)
	GW_PORT=$PORT
	GW_MPORT=$(free_port)
	local gw="$WORK/gw"
	write_gw_conf "$gw" "$PORT" "$GW_MPORT" "$BK_PORT" "$(free_port)"
	GW_CONF="$gw/ktlsgate.conf"
	GW_LOG="$gw/gw.log"
	: >"$GW_LOG"
	sed -i "s/^listen = .*/listen = 0.0.0.0:$PORT, [::]:$PORT/" "$GW_CONF"
}
