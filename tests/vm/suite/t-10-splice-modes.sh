#!/bin/sh
# Each TLS version and cipher gets ktls_splice with relay = auto: the kernel holds both
# directions (/proc/net/tls_stat and the session list say so), MQTT works through it
# (PINGREQ/PINGRESP), and close_notify is answered in order. The receive key is
# installed by OpenSSL for TLS 1.2, and for TLS 1.3 by the daemon under OpenSSL < 3.2
# (by OpenSSL itself from 3.2 on): ktlsgate_ktls_rx_installed_total{by} says which.
# kgvm-timeout: 300
. "$KGVM_LIB"
. "$KGVM_SUITE/lib.sh"
start_broker
start_gw auto
# the libssl the guest's binaries use is the host's: its version picks the TLS 1.3 path
ossl=$(openssl version | awk '{ print $2 }')
case $ossl in 3.[01].*) by13=daemon ;; 3.*) by13=openssl ;; *) fail "openssl version '$ossl'" ;; esac
note "OpenSSL $ossl: TLS 1.3 receive key installed by the $by13"
for v in 1.3 1.2; do
	if [ $v = 1.3 ]; then by=$by13; else by=openssl; fi
	if [ $v = 1.3 ]; then list=$SUITES13; else list=$SUITES12; fi
	for cs in $list; do
		tx0=$(tls_stat TlsTxSw) rx0=$(tls_stat TlsRxSw)
		sp0=$(metric 'ktlsgate_sessions_started_total{mode="ktls_splice"}')
		rb0=$(metric "ktlsgate_ktls_rx_installed_total{by=\"$by\"}")
		out=$(KG_PROBE_TLS=$v KG_PROBE_CIPHERS=$cs probe dev1 ping 2>&1)
		echo "$out" | grep -q '^pingresp' || fail "$v $cs: ping: $out"
		out2=$(KG_PROBE_TLS=$v KG_PROBE_CIPHERS=$cs probe dev1 close 2>&1)
		echo "$out2" | grep -q '^close: close_notify' || fail "$v $cs: close: $out2"
		tx1=$(tls_stat TlsTxSw) rx1=$(tls_stat TlsRxSw)
		sp1=$(metric 'ktlsgate_sessions_started_total{mode="ktls_splice"}')
		rb1=$(metric "ktlsgate_ktls_rx_installed_total{by=\"$by\"}")
		[ $((rb1 - rb0)) -eq 2 ] || fail "$v $cs: ktls_rx_installed_total{by=$by} +$((rb1 - rb0)), want 2"
		note "$v $cs: $(echo "$out" | sed -n 's/^tls: //p'); TlsTxSw +$((tx1 - tx0)) TlsRxSw +$((rx1 - rx0)); ktls_splice +$((sp1 - sp0))"
		[ $((sp1 - sp0)) -eq 2 ] || fail "$v $cs: ktls_splice sessions +$((sp1 - sp0)), want 2 (log: $(grep -i 'ktls\|relaying' /tmp/gw/gw.log | tail -3))"
		[ $((tx1 - tx0)) -eq 2 ] || fail "$v $cs: TlsTxSw +$((tx1 - tx0)), want 2"
		[ $((rx1 - rx0)) -eq 2 ] || fail "$v $cs: TlsRxSw +$((rx1 - rx0)), want 2"
	done
done
note "fallbacks: $(wget -q -O - http://127.0.0.1:$MPORT/metrics | grep '^ktlsgate_ktls_fallbacks_total' | tr '\n' ' ')"
ok
