#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# demo.sh - `make demo`: ktlsgate in front of mosquitto with a small simulated fleet.
#
# Builds a demo PKI in build/demo (root CA -> "factory" intermediate -> device and server
# certificates), registers the root with proof of possession, enrols devices, starts
# mosquitto on loopback (1883 if free) as the backend and ktlsgated on 127.0.0.1:8883
# (a free port if 8883 is taken), subscribes on the broker, then lets the fleet connect:
# good devices publish (the subscriber must receive each message), a disabled device
# gets CONNACK "not authorised", an expired certificate and a device of an unknown CA
# are refused with a TLS alert, and a device disabled while connected is cut off.
# One line per device, then the ktlsgate_ metrics. Stops everything it started.
# Exit status 0 only if every device behaved as expected.
# dev_args prints options meant to split into words; lib.sh reads ALL_TESTS and KG_FAILED.
# shellcheck disable=SC2046,SC2034
set -u
TOP=$(cd "$(dirname "$0")/.." && pwd)
. "$TOP/tests/integration/lib.sh"

DEMO="$TOP/build/demo"
rm -rf "$DEMO"
mkdir -p "$DEMO"
WORK="$DEMO"
KG_KEEP=1 # keep build/demo for a look afterwards; stop_all only stops processes
trap stop_all EXIT
trap 'exit 130' INT TERM
ulimit -n 4096 2>/dev/null || true

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
[ -t 1 ] || say() { printf '==> %s\n' "$*"; }

for bin in "$GATED" "$KGCLI"; do
	[ -x "$bin" ] || { echo "demo: $bin is missing; run make all" >&2; exit 1; }
done

GW_PORT=8883
port_free 8883 || { GW_PORT=$(free_port); echo "demo: 8883 is busy, ktlsgated uses $GW_PORT"; }
BK_PORT=1883
port_free 1883 || { BK_PORT=$(free_port); echo "demo: 1883 is busy, mosquitto uses $BK_PORT"; }
GW_MPORT=$(free_port)
DOWN_PORT=$(free_port)

say "PKI: root CA -> intermediate 'factory' -> devices, server certificate"
write_gw_conf "$DEMO/gw" "$GW_PORT" "$GW_MPORT" "$BK_PORT" "$DOWN_PORT"
GW_CONF="$DEMO/gw/ktlsgate.conf"
GW_LOG="$DEMO/gw/ktlsgated.log"
: >"$GW_LOG"
PKI="$DEMO/pki"
mkdir -p "$PKI/dev"
pki root --cn "Demo Root CA" --out "$PKI/root" || exit 1
pki intermediate --cn "factory" --ca "$PKI/root" --out "$PKI/factory" || exit 1
pki server --cn localhost --ca "$PKI/factory" --out "$DEMO/gw/server" || exit 1
GOOD="sensor-1 sensor-2 sensor-3"
for d in $GOOD sensor-disabled sensor-cut; do
	device_cert "$d" "$PKI/factory" || exit 1
done
device_cert sensor-expired "$PKI/factory" --not-before $(($(date +%s) - 40 * 86400)) --days 30 || exit 1
pki root --cn "Somebody Else's CA" --out "$PKI/rogue-ca" || exit 1
device_cert rogue "$PKI/rogue-ca" || exit 1

say "registry: register the root CA, prove possession of its key"
out=$(kg ca add "$PKI/root/cert.pem" --name demo-root) || { echo "ca add failed: $out"; exit 1; }
code=$(printf '%s\n' "$out" | sed -n 's/^challenge: *//p' | head -1)
echo "    ktlsgate ca add root.pem --name demo-root   -> challenge: $code"
pki verification-cert --ca "$PKI/root" --challenge "$code" --out "$PKI/root/verify.pem" || exit 1
kg ca verify demo-root "$PKI/root/verify.pem" >/dev/null || { echo "ca verify failed"; exit 1; }
echo "    ktlsgate ca verify demo-root verify.pem    -> verified"

say "registry: enrol devices"
for d in $GOOD sensor-disabled sensor-cut sensor-expired rogue; do
	kg device add "$d" >/dev/null || { echo "device add $d failed"; exit 1; }
done
kg device set sensor-disabled --status disabled >/dev/null || exit 1
echo "    enrolled: $GOOD sensor-disabled (then disabled) sensor-cut sensor-expired rogue"

say "backend: mosquitto on 127.0.0.1:$BK_PORT; gate: ktlsgated on 127.0.0.1:$GW_PORT"
start_broker "$BK_PORT" || exit 1
start_gateway || exit 1
SUBF="$DEMO/subscriber.out"
timeout 60 mosquitto_sub -h 127.0.0.1 -p "$BK_PORT" -t 'fleet/#' -v >"$SUBF" 2>/dev/null &
KG_PIDS+=("$!")
sleep 0.3

say "fleet"
failures=0
report() { # device expected result ok|bad
	local mark="ok "
	[ "$4" = ok ] || { mark="BAD"; failures=$((failures + 1)); }
	printf '  [%s] %-16s %-34s %s\n' "$mark" "$1" "$2" "$3"
}

n=0
for d in $GOOD; do
	n=$((n + 1))
	v=mqttv311
	[ $n = 2 ] && v=mqttv5
	msg="temperature=$((20 + n)).5"
	if timeout 10 mosquitto_pub -h 127.0.0.1 -p "$GW_PORT" --cafile "$PKI/root/cert.pem" \
		--cert "$PKI/dev/$d/chain.pem" --key "$PKI/dev/$d/key.pem" -i "$d" -V "$v" -q 1 \
		-t "fleet/$d/telemetry" -m "$msg" 2>"$DEMO/pub-$d.err" &&
		sub_wait "$SUBF" "fleet/$d/telemetry $msg" 5; then
		report "$d" "publishes ($v)" "subscriber got \"$msg\"" ok
	else
		report "$d" "publishes ($v)" "FAILED: $(tr '\n' ' ' <"$DEMO/pub-$d.err")" bad
	fi
done

got=$(kgc connect $(dev_args sensor-disabled) --topic fleet/sensor-disabled/telemetry | head -1)
if [ "$got" = "connack 0x05" ]; then
	report sensor-disabled "refused (device disabled)" "CONNACK 5: not authorised" ok
else
	report sensor-disabled "refused (device disabled)" "unexpected: $got" bad
fi

got=$(kgc connect $(dev_args sensor-expired) --peek 500 | head -1)
case $got in
tls_error:*) report sensor-expired "refused (certificate expired)" "TLS alert: ${got#*] }" ok ;;
*) report sensor-expired "refused (certificate expired)" "unexpected: $got" bad ;;
esac

got=$(kgc connect $(dev_args rogue) --peek 500 | head -1)
case $got in
tls_error:*) report rogue "refused (unknown CA)" "TLS alert: ${got#*] }" ok ;;
*) report rogue "refused (unknown CA)" "unexpected: $got" bad ;;
esac

res=$(kgc cutoff $(dev_args sensor-cut) --cmd "timeout 10 $KGCLI -c $GW_CONF device set sensor-cut --status disabled" | tail -1)
eof=$(printf '%s' "$res" | $PY -c 'import json,sys; print(json.load(sys.stdin)["eof_ms"])' 2>/dev/null)
if [ -n "$eof" ] && [ "$eof" != None ]; then
	report sensor-cut "cut off when disabled live" "session closed ${eof} ms after 'device set --status disabled'" ok
else
	report sensor-cut "cut off when disabled live" "unexpected: $res" bad
fi

say "audit (ktlsgated stderr, one JSON line per decision)"
grep '"decision"' "$GW_LOG" | grep -v '"ok"' | tail -5 | sed 's/^/    /'

say "metrics (http://127.0.0.1:$GW_MPORT/metrics)"
metrics | grep '^ktlsgate_' | grep -v '_bucket' | sed 's/^/    /'

echo
if [ $failures -eq 0 ]; then
	say "demo: every device behaved as expected (files in build/demo)"
	exit 0
fi
say "demo: $failures device(s) did not behave as expected; see $GW_LOG"
exit 1
