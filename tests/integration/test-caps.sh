#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# test-caps.sh - ktlsgated keeps only the capabilities it uses once it is up (issue 12,
# daemon/ops/caps.h, docs/packaging.md "Capabilities and drop-ins"). Every thread's
# /proc/PID/task/TID/status is read after the daemon listens (it drops before the
# workers start, so a listening port means the drop is done):
#   t_root_no_edge   as root, no [edge] interfaces: every set empty in every thread,
#                    bounding set too; devices still connect, /metrics still answers
#   t_nobody         as nobody with no capabilities: a no-op ("none held"), serves
#   t_edge_netns     as root with [edge] on, in a network namespace of its own: CAP_BPF
#                    and CAP_NET_ADMIN stay (permitted, effective, bounding), all else
#                    goes, ambient is empty; a veth made after the drop gets the gate
#                    (the link thread attaches it with what was kept)
# Running the packaged unit under systemd as PID 1 (ambient capabilities from the
# drop-ins) is the packaged qemu boot's, a later slice of issue 12.
# Prints PASS/FAIL/SKIP per test; exits non-zero if any failed.
# shellcheck disable=SC2046,SC2034
set -u
. "$(dirname "$0")/lib.sh"

CAP_NET_ADMIN=$((1 << 12))
CAP_BPF=$((1 << 39))
CAP_SETPCAP=$((1 << 8))

# bnd_after KEEP: the bounding set a daemon started from this shell ends with: KEEP when
# it may shrink it (CAP_SETPCAP, as root normally has), else this shell's own.
bnd_after() {
	local eff bnd
	eff=$((16#$(awk '/^CapEff:/ { print $2 }' /proc/$$/status)))
	bnd=$((16#$(awk '/^CapBnd:/ { print $2 }' /proc/$$/status)))
	if ((eff & CAP_SETPCAP)); then echo "$1"; else echo "$bnd"; fi
}

# caps_of PID: one line per thread, "TID inh prm eff bnd amb" as decimal numbers.
caps_of() {
	local st
	for st in /proc/"$1"/task/*/status; do
		awk -v f="$st" '
			/^Cap(Inh|Prm|Eff|Bnd|Amb):/ { v[$1] = $2 }
			END { t = f; sub("/status", "", t); sub(".*/", "", t)
			      printf "%s %s %s %s %s %s\n", t, v["CapInh:"], v["CapPrm:"], v["CapEff:"], v["CapBnd:"], v["CapAmb:"] }' "$st"
	done | while read -r tid i p e b a; do
		[ -n "$a" ] || continue
		echo "$tid $((16#$i)) $((16#$p)) $((16#$e)) $((16#$b)) $((16#$a))"
	done
}

# expect_caps PID PRM BND: every thread has permitted = effective = PRM, bounding = BND,
# no inheritable, no ambient; at least two threads seen (workers, writer).
expect_caps() {
	local out n=0 tid i p e b a bad=0
	out=$(caps_of "$1")
	while read -r tid i p e b a; do
		[ -n "$tid" ] || continue
		n=$((n + 1))
		if [ "$i" != 0 ] || [ "$p" != "$2" ] || [ "$e" != "$2" ] || [ "$b" != "$3" ] || [ "$a" != 0 ]; then
			note "thread $tid: inh $i prm $p eff $e bnd $b amb $a; want prm=eff=$2 bnd $3"
			bad=1
		fi
	done <<<"$out"
	echo "    $n thread(s) checked"
	[ "$n" -ge 2 ] || { note "only $n thread(s) read from /proc/$1/task"; return 1; }
	return $bad
}

setup() {
	kg_init caps
	chmod 755 "$WORK"
	BK_PORT=$(free_port)
	GW_PORT=$(free_port)
	GW_MPORT=$(free_port)
	GW_DIR="$WORK/gw"
	write_gw_conf "$GW_DIR" "$GW_PORT" "$GW_MPORT" "$BK_PORT" "$(free_port)"
	GW_CONF="$GW_DIR/ktlsgate.conf"
	GW_LOG="$GW_DIR/gw.log"
	: >"$GW_LOG"
	pki_setup "$WORK/pki" || return 1
	device_cert dev1 "$PKI/factory" || return 1
	kg device add dev1 >/dev/null || return 1
	start_broker "$BK_PORT" || return 1
}

t_root_no_edge() {
	local got
	[ "$(id -u)" = 0 ] || { skip "needs root"; return; }
	: >"$GW_LOG"
	start_gateway || { note "did not start"; return 1; }
	grep -q 'capabilities: kept none; dropped cap_chown ' "$GW_LOG" ||
		{ note "no drop line: $(grep capabilities "$GW_LOG")"; stop_gateway; return 1; }
	expect_caps "$GW_PID" 0 "$(bnd_after 0)" || { stop_gateway; return 1; }
	got=$(kgc connect $(dev_args dev1) --topic caps/t --msg x | head -2 | tr '\n' ' ')
	[ "$got" = "connack 0x00 puback 0x00 " ] || { note "device: '$got'"; stop_gateway; return 1; }
	got=$(metric_value ktlsgate_accepted_total)
	[ -n "$got" ] && [ "$got" -ge 1 ] || { note "metrics: accepted '$got'"; stop_gateway; return 1; }
	# a reload (re-reads certificates and the registry) still works without them
	kill -HUP "$GW_PID"
	sleep 1
	grep -q 'reloaded .*(generation 2' "$GW_LOG" || { note "reload: $(tail -3 "$GW_LOG")"; stop_gateway; return 1; }
	got=$(kgc connect $(dev_args dev1) --topic caps/t --msg y | sed -n 1p)
	[ "$got" = "connack 0x00" ] || { note "after reload: '$got'"; stop_gateway; return 1; }
	stop_gateway
}

t_nobody() {
	local got i
	[ "$(id -u)" = 0 ] || { skip "needs root to become nobody"; return; }
	command -v setpriv >/dev/null || { skip "setpriv missing"; return; }
	# nobody needs to reach the binary and write its directory
	cp "$GATED" "$WORK/ktlsgated.copy"
	chmod 755 "$WORK/ktlsgated.copy"
	chown -R nobody "$GW_DIR"
	: >"$GW_LOG"
	setpriv --reuid=nobody --regid=nogroup --clear-groups --inh-caps=-all \
		"$WORK/ktlsgated.copy" -c "$GW_CONF" >>"$GW_LOG" 2>&1 &
	GW_PID=$!
	KG_PIDS+=("$GW_PID")
	wait_port "$GW_PORT" 10 "$GW_PID" || { note "did not start: $(tail -5 "$GW_LOG")"; stop_gateway; chown -R root "$GW_DIR"; return 1; }
	grep -q 'capabilities: none held' "$GW_LOG" || { note "no 'none held' line"; stop_gateway; chown -R root "$GW_DIR"; return 1; }
	got=$(awk '/^CapPrm:/ { print $2 }' "/proc/$GW_PID/status")
	[ "$got" = 0000000000000000 ] || { note "CapPrm $got"; stop_gateway; chown -R root "$GW_DIR"; return 1; }
	got=$(kgc connect $(dev_args dev1) --topic caps/t --msg z | sed -n 1p)
	stop_gateway
	chown -R root "$GW_DIR"
	[ "$got" = "connack 0x00" ] || { note "device as nobody: '$got'"; return 1; }
}

# [edge] on, in a namespace of our own with its own bpffs mount: only lo and the veth
# pairs made here exist in it, so nothing is shared with tests/edge (names, maps,
# interfaces). No lock is taken here (make check may already hold the edge lock around
# this file): run it alone as `flock -o /tmp/kg-edge.lock bash tests/integration/test-caps.sh`
# when the edge tests' timing matters.
t_edge_netns() {
	local ns="kgcaps-$$" bpffs i line got rc=1 dir="$WORK/edge"
	[ "$(id -u)" = 0 ] || { skip "needs root (netns, XDP)"; return; }
	command -v ip >/dev/null || { skip "iproute2 missing"; return; }
	bpffs=$(mktemp -d /tmp/kg-caps-bpffs.XXXXXX)
	ip netns add "$ns" || { note "ip netns add"; return 1; }
	ip -n "$ns" link set lo up
	ip -n "$ns" link add veth-g type veth peer name veth-p
	ip -n "$ns" link set veth-g up
	ip -n "$ns" link set veth-p up
	mount -t bpf bpf "$bpffs" || { note "cannot mount bpffs"; ip netns del "$ns"; return 1; }
	mkdir -p "$dir"
	cp -a "$GW_DIR/." "$dir/"
	rm -f "$dir/ctl.sock" "$dir/gw.log"
	cat >>"$dir/ktlsgate.conf" <<EOF

[edge]
interfaces = veth-g, late-g
pin_dir = $bpffs/ktlsgate
EOF
	ip netns exec "$ns" "$GATED" -c "$dir/ktlsgate.conf" >"$dir/gw.log" 2>&1 &
	GW_PID=$!
	KG_PIDS+=("$GW_PID")
	for ((i = 0; i < 100; i++)); do
		grep -q 'listening on' "$dir/gw.log" && break
		kill -0 "$GW_PID" 2>/dev/null || break
		sleep 0.1
	done
	if ! grep -q 'listening on' "$dir/gw.log"; then
		note "did not start: $(tail -5 "$dir/gw.log")"
	elif ! grep -q 'XDP gate attached to veth-g' "$dir/gw.log"; then
		note "gate not attached: $(grep edge "$dir/gw.log" | head -3)"
	elif ! grep -q 'capabilities: kept cap_net_admin cap_bpf (the XDP gate' "$dir/gw.log"; then
		note "no kept line: $(grep capabilities "$dir/gw.log")"
	elif expect_caps "$GW_PID" $((CAP_BPF | CAP_NET_ADMIN)) "$(bnd_after $((CAP_BPF | CAP_NET_ADMIN)))"; then
		# a link made after the drop: the link thread attaches the gate with what stayed
		ip -n "$ns" link add late-g type veth peer name late-p
		ip -n "$ns" link set late-g up
		ip -n "$ns" link set late-p up
		for ((i = 0; i < 100; i++)); do
			line=$(grep -m1 'XDP gate attached to late-g' "$dir/gw.log") && break
			sleep 0.1
		done
		got=$(ip -n "$ns" -d link show late-g | grep -o 'prog/xdp id [0-9]*')
		if [ -z "$line" ]; then
			note "late-g not attached: $(grep -i 'late-g\|edge:' "$dir/gw.log" | tail -3)"
		elif [ -z "$got" ]; then
			note "ip link shows no XDP program on late-g"
		else
			echo "    $line; $got"
			rc=0
		fi
	fi
	stop_gateway
	ip netns del "$ns"
	umount "$bpffs"
	rmdir "$bpffs"
	return $rc
}

ALL_TESTS=(t_root_no_edge t_nobody t_edge_netns)
setup || { echo "FAIL setup"; exit 1; }
run_tests
