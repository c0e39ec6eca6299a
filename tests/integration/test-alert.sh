#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# test-alert.sh - a refused handshake delivers its alert: 20 tries each, TLS 1.3 and
# 1.2, with no client certificate and with a chain from an unknown CA; every try must
# read the alert (certificate_required / handshake_failure / unknown_ca), none a reset.
# The probe (tests/lib/alertprobe.py) sends an MQTT CONNECT as soon as its side of the
# handshake is done, as devices do: that unread input is what turned the close into a
# RST. Its own PKI, broker and daemon.
# lib.sh reads ALL_TESTS and KG_FAILED.
# shellcheck disable=SC2034
set -u
. "$(dirname "$0")/lib.sh"

PROBE="$KG_TOP/tests/lib/alertprobe.py"

setup() {
	kg_init alert
	BK_PORT=$(free_port)
	GW_PORT=$(free_port)
	GW_MPORT=$(free_port)
	write_gw_conf "$WORK/gw" "$GW_PORT" "$GW_MPORT" "$BK_PORT" "$(free_port)"
	GW_CONF="$WORK/gw/ktlsgate.conf"
	GW_LOG="$WORK/gw/gw.log"
	: >"$GW_LOG"
	pki_setup "$WORK/pki" || return 1
	device_cert alert-good "$PKI/factory" || return 1
	# a root the gate has never seen, and a device under it
	pki root --cn "stranger root" --out "$PKI/stranger" || return 1
	device_cert alert-stranger "$PKI/stranger" || return 1
	start_broker "$BK_PORT" || return 1
	start_gateway || return 1
}

# probe_all TLS WANT [probe options]: 20 tries; all must be alerts matching WANT.
probe_all() {
	local tls=$1 want=$2 res ok
	shift 2
	res=$(timeout 120 $PY "$PROBE" --port "$GW_PORT" --ca "$PKI/root/cert.pem" --tls "$tls" \
		--n 20 "$@")
	echo "    TLS $tls: $res"
	[ -n "$res" ] || { note "TLS $tls: the probe printed nothing"; return 1; }
	ok=$(printf '%s' "$res" | $PY -c 'import json,sys
d=json.load(sys.stdin); want=sys.argv[1]
r=d["results"]
print("yes" if d["n"]==20 and list(r)==["alert:"+want+"+fin"] and r["alert:"+want+"+fin"]==20 else "no")' "$want")
	[ "$ok" = yes ] || { note "TLS $tls: want 20 x alert:$want+fin, got $res"; return 1; }
}

t_alert_no_cert() {
	probe_all 1.3 tlsv13_alert_certificate_required || return 1
	probe_all 1.2 sslv3_alert_handshake_failure || return 1
}

t_alert_unknown_ca() {
	local d="$PKI/dev/alert-stranger"
	probe_all 1.3 tlsv1_alert_unknown_ca --cert "$d/chain.pem" --key "$d/key.pem" || return 1
	probe_all 1.2 tlsv1_alert_unknown_ca --cert "$d/chain.pem" --key "$d/key.pem" || return 1
}

# the control: a good device still connects (the probe is not just refusing everything)
t_alert_control_good() {
	local d="$PKI/dev/alert-good" res
	res=$(timeout 30 $PY "$PROBE" --port "$GW_PORT" --ca "$PKI/root/cert.pem" --tls 1.3 \
		--n 1 --cert "$d/chain.pem" --key "$d/key.pem")
	echo "    $res"
	[ "$res" = '{"n": 1, "results": {"connected": 1}}' ] || { note "good device: $res"; return 1; }
}

ALL_TESTS=(t_alert_control_good t_alert_no_cert t_alert_unknown_ca)

if ! setup; then
	echo "FAIL setup: alert test PKI / broker / gateway (log: ${GW_LOG:-none})"
	[ -n "${GW_LOG:-}" ] && tail -20 "$GW_LOG"
	KG_FAILED=1
	exit 1
fi
run_tests
