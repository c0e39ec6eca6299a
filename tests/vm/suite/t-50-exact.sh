#!/bin/sh
# Byte-exact MQTT through kernel TLS: QoS 1 publishes of random sizes (1 B..256 KiB) in
# both directions, checked at the other end byte for byte and in order
# (kg-mqttcheck), for TLS 1.3 and 1.2 with each cipher in ktls_splice, and for the TLS
# 1.3 suites in ktls_tx; each run's sessions counted in the right mode.
# kgvm-timeout: 900
. "$KGVM_LIB"
. "$KGVM_SUITE/lib.sh"
command -v kg-mqttcheck >/dev/null || fail "kg-mqttcheck not in the guest"
start_broker
GW_CID_CHECK=off GW_LOG_LEVEL=info start_gw auto
N=${KGVM_EXACT_N:-8}
seed=1
for v in 1.3 1.2; do
	if [ $v = 1.3 ]; then list=$SUITES13; else list=$SUITES12; fi
	for cs in $list; do
		if [ $v = 1.3 ]; then opt="--ciphersuites $cs"; else opt="--cipher $cs"; fi
		s0=$(started ktls_splice)
		mqc "x$seed" --tls $v $opt --dir both --n $N --min 1 --max 262144 --seed $seed --window 4 ||
			fail "ktls_splice $v $cs not exact"
		s1=$(started ktls_splice)
		[ $((s1 - s0)) -eq 1 ] || fail "$v $cs: ktls_splice sessions +$((s1 - s0)), want 1"
		seed=$((seed + 1))
	done
done
stop_gw
GW_CID_CHECK=off GW_LOG_LEVEL=info start_gw ktls_tx
for cs in $SUITES13; do
	s0=$(started ktls_tx)
	mqc "y$seed" --tls 1.3 --ciphersuites $cs --dir both --n $N --min 1 --max 262144 --seed $seed --window 4 ||
		fail "ktls_tx $cs not exact"
	s1=$(started ktls_tx)
	[ $((s1 - s0)) -eq 1 ] || fail "ktls_tx $cs: sessions +$((s1 - s0)), want 1"
	seed=$((seed + 1))
done
ok
