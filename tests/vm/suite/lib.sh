# SPDX-License-Identifier: BSD-2-Clause
# lib.sh - shared by the ktlsgated guest tests (busybox sh; sourced after guest-lib.sh).
# The gateway's data (PKI, registry, config) comes from host-prep.sh in $KGVM_DATA.
GW=$KGVM_DATA/gw
PKI=$KGVM_DATA/pki
CA=$PKI/root/cert.pem
GWPORT=8883
MPORT=9100

# start_gw RELAY [extra config lines]: ktlsgated with relay = RELAY; GW_PID.
start_gw() {
	_relay=$1
	shift
	mkdir -p /tmp/gw
	cp -a "$GW"/. /tmp/gw/
	sed -i "s/^relay = .*/relay = $_relay/; s/^log_level = .*/log_level = ${GW_LOG_LEVEL:-debug}/; s/^client_id_check = .*/client_id_check = ${GW_CID_CHECK:-exact}/" /tmp/gw/ktlsgate.conf
	for l in "$@"; do echo "$l" >>/tmp/gw/ktlsgate.conf; done
	ktlsgated -c /tmp/gw/ktlsgate.conf >/tmp/gw/gw.log 2>&1 &
	GW_PID=$!
	wait_port $GWPORT 30 || fail "ktlsgated did not start: $(tail -5 /tmp/gw/gw.log)"
	wait_port $MPORT 10 || fail "metrics did not start"
}

stop_gw() {
	kill "$GW_PID" 2>/dev/null
	wait "$GW_PID" 2>/dev/null
}

kgcli() {
	ktlsgate -c /tmp/gw/ktlsgate.conf "$@"
}

# metric NAME_WITH_LABELS: its value (0 if absent).
metric() {
	wget -q -O - "http://127.0.0.1:$MPORT/metrics" 2>/dev/null |
		awk -v m="$1" '$1 == m { print $2; f = 1 } END { if (!f) print 0 }'
}

# probe ID ACTION [ARG]: kg-tlsprobe as device ID.
probe() {
	_id=$1
	shift
	kg-tlsprobe $GWPORT "$CA" "$PKI/dev/$_id/chain.pem" "$PKI/dev/$_id/key.pem" "$_id" "$@"
}

# the suites as OpenSSL names them: "VERSION CIPHERS"
SUITES13="TLS_AES_128_GCM_SHA256 TLS_AES_256_GCM_SHA384 TLS_CHACHA20_POLY1305_SHA256"
SUITES12="ECDHE-ECDSA-AES128-GCM-SHA256 ECDHE-ECDSA-AES256-GCM-SHA384 ECDHE-ECDSA-CHACHA20-POLY1305"

# mqc NAME ARGS...: kg-mqttcheck as device dev4 (many client ids: needs GW_CID_CHECK=off);
# JSON in /tmp/NAME.json, stderr in /tmp/NAME.err; prints its summary line.
mqc() {
	_n=$1
	shift
	kg-mqttcheck --gw 127.0.0.1:$GWPORT --broker 127.0.0.1:1883 --ca "$CA" \
		--cert "$PKI/dev/dev4/chain.pem" --key "$PKI/dev/dev4/key.pem" \
		--client-id "$_n-%u" --topic "exact/$_n" "$@" >/tmp/$_n.json 2>/tmp/$_n.err
	_rc=$?
	note "$_n: $(grep -m1 '^kg-mqttcheck: [0-9]' /tmp/$_n.err | sed 's/^kg-mqttcheck: //')"
	[ $_rc = 0 ] || note "$_n: $(grep -m3 -E '^(FAIL|  conn)' /tmp/$_n.err | tr '\n' ' ' | cut -c1-300)"
	return $_rc
}

# started MODE: sessions the daemon handed to that data path so far.
started() {
	metric "ktlsgate_sessions_started_total{mode=\"$1\"}"
}
