#!/bin/sh
# Control records on a ktls_splice session: a KeyUpdate (requested or not) cannot be
# followed by these kernels: the device gets a fatal alert, the session closes, the
# close is audited and counted, and the daemon does not spin. A plain FIN without
# close_notify ends the session too.
# kgvm-timeout: 300
. "$KGVM_LIB"
. "$KGVM_SUITE/lib.sh"
start_broker
start_gw auto
for kind in keyupdate requested; do
	for cs in $SUITES13; do
		r0=$(metric 'ktlsgate_ktls_control_records_total{kind="keyupdate_refused"}')
		out=$(KG_PROBE_CIPHERS=$cs probe ku1 $kind 2>&1)
		echo "$out" | grep -q '^after keyupdate: alert' || fail "$kind $cs: $out"
		r1=$(metric 'ktlsgate_ktls_control_records_total{kind="keyupdate_refused"}')
		[ $((r1 - r0)) -eq 1 ] || fail "$kind $cs: keyupdate_refused +$((r1 - r0)), want 1"
	done
done
n=$(grep -c '"reason":"tls_key_update"' /tmp/gw/gw.log)
[ "$n" -eq 6 ] || fail "audit lines with reason tls_key_update: $n, want 6"
# no spin: the daemon is idle after all that (CPU ticks over one second; a spinning
# worker costs ~100, the 20 ms deadline ticks of two workers a few under TCG)
t0=$(awk '{ print $14 + $15 }' /proc/$GW_PID/stat)
sleep 1
t1=$(awk '{ print $14 + $15 }' /proc/$GW_PID/stat)
[ $((t1 - t0)) -le 30 ] || fail "daemon busy while idle: $((t1 - t0)) ticks in 1 s"
[ "$(metric 'ktlsgate_sessions{mode="ktls_splice"}')" = 0 ] || fail "sessions left open"
[ "$(metric ktlsgate_splice_pipes)" = 0 ] || fail "pipes still held: $(metric ktlsgate_splice_pipes)"
ok
