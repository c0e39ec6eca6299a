#!/bin/sh
# kgvm-timeout: 90
# The real mosquitto runs in the guest on loopback, and mosquitto_pub/mosquitto_sub
# round-trip messages through it: a text message, then a 100 KiB binary payload at QoS 1,
# byte-exact.
. "$KGVM_LIB"

PORT=1883
cat >mosq.conf <<CONF
listener $PORT 127.0.0.1
allow_anonymous true
persistence false
log_dest stderr
CONF
mosquitto -c mosq.conf 2>mosq.log &
mpid=$!
wait_port $PORT 20 || { cat mosq.log; fail "mosquitto did not listen on $PORT"; }
note "$(mosquitto -h 2>&1 | head -1)"

# sub_then_pub TOPIC OUT PUB-ARGS...: a subscriber for one message, then the publish.
sub_then_pub() {
	topic=$1 out=$2
	shift 2
	mosquitto_sub -h 127.0.0.1 -p $PORT -t "$topic" -q 1 -C 1 -W 30 -N >"$out" 2>sub.err &
	sub=$!
	# The subscriber is ready once the broker has its connection (2 TCP sockets then).
	i=0
	while [ $i -lt 100 ] && ! grep -q 'New client connected' mosq.log; do
		sleep 0.1
		i=$((i + 1))
	done
	sleep 0.3
	mosquitto_pub -h 127.0.0.1 -p $PORT -t "$topic" -q 1 "$@" || fail "mosquitto_pub failed"
	wait $sub || { cat sub.err mosq.log; fail "mosquitto_sub got nothing on $topic"; }
	: >mosq.log.seen
}

sub_then_pub kgvm/hello got.txt -m "hello from $(uname -r)"
expect_eq "$(cat got.txt)" "hello from $(uname -r)" "text message"
rand_file payload.bin 102400
sub_then_pub kgvm/blob got.bin -f payload.bin
cmp -s payload.bin got.bin || fail "binary payload: $(stat -c %s got.bin) bytes back, not byte-exact"
note "text and 100 KiB binary payload round-tripped byte-exact"
kill $mpid
wait $mpid
ok
