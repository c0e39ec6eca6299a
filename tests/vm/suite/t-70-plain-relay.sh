#!/bin/sh
# Plain sessions (a `plain` listener) on Debian's own kernels: which relay the daemon
# picks, and that it is exact. The sockmap verdict needs bpf_cast_to_kern_ctx() (Linux
# 6.2+) to trim retransmitted overlaps (bpf/sockmap.bpf.c trim_overlap()): on bookworm's
# 6.1 the daemon must not load it, must say why, and must relay with splice; on
# trixie's 6.12 it relays with sockmap. Either way every byte arrives (kg-mqttcheck
# --plain, random splits, both directions; many client ids for one token device, so
# client_id_check = off).
# kgvm-timeout: 240
. "$KGVM_LIB"
. "$KGVM_SUITE/lib.sh"
command -v kg-mqttcheck >/dev/null || fail "kg-mqttcheck is not in the guest (make build/kg-mqttcheck)"
TOKEN=$(cat "$GW/plaintok.token")
[ -n "$TOKEN" ] || fail "no token from host-prep"
PPORT=1885
start_broker
GW_CID_CHECK=off start_gw auto "[listener closed-net]" "type = plain" "allow_plain = yes" "listen = 127.0.0.1:$PPORT"
wait_port $PPORT 10 || fail "the plain listener did not open: $(tail -3 /tmp/gw/gw.log)"
rel=$(uname -r)
maj=${rel%%.*}
rest=${rel#*.}
min=${rest%%.*}
if [ "$maj" -gt 6 ] || { [ "$maj" -eq 6 ] && [ "$min" -ge 2 ]; }; then
	want=sockmap other=splice
else
	want=splice other=sockmap
	grep -q 'lacks bpf_cast_to_kern_ctx' /tmp/gw/gw.log ||
		fail "kernel $rel: the log does not say why sockmap is off: $(grep -i sockmap /tmp/gw/gw.log | tail -2)"
fi
w0=$(started "$want") o0=$(started "$other")
kg-mqttcheck --plain --gw 127.0.0.1:$PPORT --broker 127.0.0.1:1883 --username "$TOKEN" \
	--client-id "plain-%u" --topic "plain/vm" --pipeline --dir both --n 8 --min 1 --max 65536 \
	--conns 8 --parallel 4 --seed 11 --timeout 60 >/tmp/plain.json 2>/tmp/plain.err ||
	fail "kg-mqttcheck: $(grep -m3 -E '^(FAIL|  conn)|^kg-mqttcheck' /tmp/plain.err | tr '\n' ' ' | cut -c1-300)"
note "kernel $rel: $(grep -m1 '^kg-mqttcheck: [0-9]' /tmp/plain.err | sed 's/^kg-mqttcheck: //')"
grep -q '"ok":8,' /tmp/plain.json || fail "not all 8 sessions were exact: $(cat /tmp/plain.json | cut -c1-300)"
w1=$(started "$want") o1=$(started "$other")
[ $((w1 - w0)) -eq 8 ] || fail "kernel $rel: $want sessions +$((w1 - w0)), want 8 ($other +$((o1 - o0)))"
[ $((o1 - o0)) -eq 0 ] || fail "kernel $rel: $other sessions +$((o1 - o0)), want 0"
note "kernel $rel: 8 plain sessions relayed by $want"
ok
