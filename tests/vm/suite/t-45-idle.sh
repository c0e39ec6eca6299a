#!/bin/sh
# Idle offloaded sessions (issue 10): a device whose CONNECT says keep-alive 2 and
# then stays silent is closed by the gateway after 1.5 x 2 = 3 s, in ktls_splice and
# in ktls_tx, audited and counted as idle_timeout, and one that pings every second is
# not; both of the gate's sockets carry a TCP keepalive timer. The kernel paths move bytes without the user-space relays, so
# this is the check that the RELAYING step (st_relaying() in conn.c) sees their traffic and the scan their idleness.
# kgvm-timeout: 180
. "$KGVM_LIB"
. "$KGVM_SUITE/lib.sh"
start_broker
for relay in auto ktls_tx; do
	mode=ktls_splice
	[ $relay = ktls_tx ] && mode=ktls_tx
	start_gw $relay
	s0=$(started $mode)
	i0=$(metric 'ktlsgate_closes_total{reason="idle_timeout"}')
	out=$(KG_PROBE_KEEPALIVE=2 probe dev1 hold "sleep 1; cat /proc/net/tcp >/tmp/tcp.txt" 2>&1)
	note "$relay: $(echo "$out" | tr '\n' ' ')"
	s1=$(started $mode)
	i1=$(metric 'ktlsgate_closes_total{reason="idle_timeout"}')
	[ $((s1 - s0)) -eq 1 ] || fail "$relay: $mode sessions +$((s1 - s0)), want 1"
	ms=$(echo "$out" | sed -n 's/^cut: eof after \([0-9]*\).*/\1/p')
	[ -n "$ms" ] || fail "$relay: the silent session was not closed: $out"
	[ "$ms" -ge 2500 ] && [ "$ms" -le 4900 ] || fail "$relay: closed after $ms ms, want about 3000"
	[ $((i1 - i0)) -eq 1 ] || fail "$relay: closes_total{idle_timeout} +$((i1 - i0)), want 1"
	grep -q '"reason":"idle_timeout"' /tmp/gw/gw.log || fail "$relay: no idle_timeout audit line"
	# /proc/net/tcp column 6 is tr:when; tr 2 = keepalive timer. The gate's device
	# socket (local :8883 = 22B3) and its broker socket (remote :1883 = 075B).
	dev=$(awk '$2 ~ /:22B3$/ && $4 == "01" { print $6 }' /tmp/tcp.txt | cut -d: -f1)
	be=$(awk '$3 ~ /:075B$/ && $4 == "01" { print $6 }' /tmp/tcp.txt | cut -d: -f1 | sort -u)
	note "$relay: timers: device side '$dev', broker side '$be'"
	echo "$dev" | grep -qx 02 || fail "$relay: device socket has no keepalive timer ($dev)"
	echo "$be" | grep -qx 02 || fail "$relay: broker socket has no keepalive timer ($be)"
	# a device that pings every second (keep-alive 2) is not idle: 5 s and still open
	out=$(KG_PROBE_KEEPALIVE=2 probe dev2 pings 5 2>&1)
	note "$relay: $(echo "$out" | tr '\n' ' ')"
	echo "$out" | grep -qx 'pings: 5 of 5 answered' || fail "$relay: a talking session was cut: $out"
	i2=$(metric 'ktlsgate_closes_total{reason="idle_timeout"}')
	[ "$i2" -eq "$i1" ] || fail "$relay: idle_timeout closes went from $i1 to $i2 while pinging"
	stop_gw
done
ok "ktls_splice and ktls_tx: closed after about 3 s idle, not while pinging; keepalive on both sockets"
