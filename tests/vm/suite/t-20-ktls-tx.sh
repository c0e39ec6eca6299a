#!/bin/sh
# relay = ktls_tx: for TLS 1.3 the kernel encrypts what the gateway sends and OpenSSL
# reads the device (TlsTxSw moves, TlsRxSw does not); a KeyUpdate that does not ask for
# ours is followed and the session goes on; one that asks for ours would need a second
# TX key, which the kernel refuses: a fatal alert and a clean close, counted. TLS 1.2
# (no KeyUpdate) is offloaded both ways by OpenSSL, so it still splices.
# kgvm-timeout: 300
. "$KGVM_LIB"
. "$KGVM_SUITE/lib.sh"
start_broker
start_gw ktls_tx
for cs in $SUITES13; do
	tx0=$(tls_stat TlsTxSw) rx0=$(tls_stat TlsRxSw)
	m0=$(metric 'ktlsgate_sessions_started_total{mode="ktls_tx"}')
	f0=$(metric 'ktlsgate_ktls_control_records_total{kind="keyupdate_followed"}')
	out=$(KG_PROBE_CIPHERS=$cs probe ku1 keyupdate 2>&1)
	echo "$out" | grep -q '^after keyupdate: pingresp' || fail "$cs: not-requested KeyUpdate not followed: $out"
	m1=$(metric 'ktlsgate_sessions_started_total{mode="ktls_tx"}')
	f1=$(metric 'ktlsgate_ktls_control_records_total{kind="keyupdate_followed"}')
	tx1=$(tls_stat TlsTxSw) rx1=$(tls_stat TlsRxSw)
	[ $((m1 - m0)) -eq 1 ] || fail "$cs: ktls_tx sessions +$((m1 - m0)), want 1"
	[ $((f1 - f0)) -eq 1 ] || fail "$cs: keyupdate_followed +$((f1 - f0)), want 1"
	[ $((tx1 - tx0)) -eq 1 ] || fail "$cs: TlsTxSw +$((tx1 - tx0)), want 1"
	[ $((rx1 - rx0)) -eq 0 ] || fail "$cs: TlsRxSw +$((rx1 - rx0)), want 0 (RX stays in OpenSSL)"

	r0=$(metric 'ktlsgate_ktls_control_records_total{kind="keyupdate_refused"}')
	out=$(KG_PROBE_CIPHERS=$cs probe ku2 requested 2>&1)
	echo "$out" | grep -q '^after keyupdate: alert' || fail "$cs: requested KeyUpdate: $out"
	r1=$(metric 'ktlsgate_ktls_control_records_total{kind="keyupdate_refused"}')
	[ $((r1 - r0)) -eq 1 ] || fail "$cs: keyupdate_refused +$((r1 - r0)), want 1"
	note "$cs: not requested -> followed, session went on; requested -> alert, closed"
done
# close_notify in ktls_tx: answered in order (ours goes out through kernel TLS)
out=$(probe dev3 close 2>&1)
echo "$out" | grep -q '^close: close_notify' || fail "ktls_tx close: $out"
grep -q '"reason":"tls_key_update"' /tmp/gw/gw.log || fail "no audit line with reason tls_key_update"
# TLS 1.2 under ktls_tx: both directions offloaded by OpenSSL -> spliced.
s0=$(metric 'ktlsgate_sessions_started_total{mode="ktls_splice"}')
out=$(KG_PROBE_TLS=1.2 probe dev2 ping 2>&1)
echo "$out" | grep -q '^pingresp' || fail "TLS 1.2 ping: $out"
s1=$(metric 'ktlsgate_sessions_started_total{mode="ktls_splice"}')
[ $((s1 - s0)) -eq 1 ] || fail "TLS 1.2 under ktls_tx: ktls_splice +$((s1 - s0)), want 1"
ok
