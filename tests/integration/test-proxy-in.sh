#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# test-proxy-in.sh - a `proxy` listener behind a real TLS front (issue 15): Debian's
# HAProxy 2.6 terminates the devices' TLS (verify optional against the test root) and
# opens each connection to the gate with a PROXY v2 header (send-proxy-v2-ssl-cn: the
# client's address, an SSL TLV with the verify result and the certificate's CN), from
# 127.0.0.2, the one address in the listener's proxy_sources.
#   an X.509 device through the front is allowed as itself: its messages reach the
#   broker, the audit line shows the device's own address (the client's port, not the
#   front's), auth "ca" and the listener; a disabled device is refused (CONNACK 5) and
#   its address is not fed to the XDP gate; a client without a certificate comes in
#   without an identity (the CONNECT decides); a connection from outside proxy_sources
#   is closed (proxy_untrusted), a v1 text header or garbage from inside is closed
#   (bad_proxy_header); proxy_require_crc refuses HAProxy's header without its
#   crc32c option and takes it with.
# Prints "PASS name" / "FAIL name: why" per test and a count; KG_ONLY="t_a" runs some.
# dev_args prints options meant to split into words; lib.sh reads ALL_TESTS and KG_FAILED.
# shellcheck disable=SC2046,SC2034
set -u
. "$(dirname "$0")/lib.sh"

DEV=pin-dev
OFF=pin-off

setup() {
	command -v haproxy >/dev/null || { echo "haproxy is not installed (make deps)"; return 1; }
	kg_init proxyin
	BK_PORT=$(free_port)
	GW_PORT=$(free_port)
	GW_MPORT=$(free_port)
	PX_PORT=$(free_port)       # the gate's proxy listener
	PXC_PORT=$(free_port)      # the gate's proxy listener that requires a CRC32C
	FRONT_PORT=$(free_port)    # HAProxy: devices connect here
	FRONT_CRC_PORT=$(free_port)
	FRONT_NOCRC_PORT=$(free_port)
	local gw="$WORK/gw"
	write_gw_conf "$gw" "$GW_PORT" "$GW_MPORT" "$BK_PORT" "$(free_port)"
	GW_CONF="$gw/ktlsgate.conf"
	GW_LOG="$gw/gw.log"
	: >"$GW_LOG"
	cat >>"$GW_CONF" <<EOF2

[listener front]
type = proxy
listen = 127.0.0.1:$PX_PORT
proxy_sources = 127.0.0.2
proxy_ca = factory

[listener front-crc]
type = proxy
listen = 127.0.0.1:$PXC_PORT
proxy_sources = 127.0.0.2/32
proxy_require_crc = yes
proxy_ca = factory
EOF2
	pki_setup "$WORK/pki" || return 1
	device_cert "$DEV" "$PKI/factory" || return 1
	device_cert "$OFF" "$PKI/factory" || return 1
	kg device add "$DEV" >/dev/null || return 1
	kg device add "$OFF" --status disabled >/dev/null || return 1
	# a pinned device: its certificate's SHA-256 is all that proves it
	pki self-signed --cn pin-thumb --out "$PKI/dev/pin-thumb" || return 1
	THUMB=$(fingerprint "$PKI/dev/pin-thumb/cert.pem")
	kg device add pin-thumb --thumbprint "$THUMB" >/dev/null || return 1
	# a device without a certificate: an access token in its CONNECT, through the front
	TOKEN=$(kg device add pin-tok --auth token 2>/dev/null | sed -n 's/^token: //p')
	[ -n "$TOKEN" ] || { echo "device add --auth token printed no token" >&2; return 1; }
	start_broker "$BK_PORT" || return 1
	start_gateway || return 1
	start_front || return 1
}

start_front() {
	local conf="$WORK/haproxy.cfg"
	cat "$WORK/gw/server/chain.pem" "$WORK/gw/server/key.pem" >"$WORK/front.pem"
	cat >"$conf" <<EOF2
global
	log stderr format raw local0 warning
defaults
	mode tcp
	log global
	timeout connect 2s
	timeout client 30s
	timeout server 30s
frontend devices
	bind 127.0.0.1:$FRONT_PORT ssl crt $WORK/front.pem ca-file $PKI/root/cert.pem verify optional
	default_backend gate
frontend devices-crc
	bind 127.0.0.1:$FRONT_CRC_PORT ssl crt $WORK/front.pem ca-file $PKI/root/cert.pem verify optional
	default_backend gate-crc
frontend devices-nocrc
	bind 127.0.0.1:$FRONT_NOCRC_PORT ssl crt $WORK/front.pem ca-file $PKI/root/cert.pem verify optional
	default_backend gate-nocrc
backend gate
	server gw 127.0.0.1:$PX_PORT source 127.0.0.2 send-proxy-v2-ssl-cn
backend gate-crc
	server gw 127.0.0.1:$PXC_PORT source 127.0.0.2 send-proxy-v2 proxy-v2-options ssl,cert-cn,crc32c
backend gate-nocrc
	server gw 127.0.0.1:$PXC_PORT source 127.0.0.2 send-proxy-v2-ssl-cn
EOF2
	haproxy -c -q -f "$conf" || { echo "haproxy rejects its config" >&2; return 1; }
	haproxy -db -f "$conf" >"$WORK/haproxy.log" 2>&1 &
	KG_PIDS+=("$!")
	wait_port "$FRONT_PORT" 10 "$!" || { echo "haproxy did not start: $(cat "$WORK/haproxy.log")" >&2; return 1; }
}

after_each() {
	kill -0 "$GW_PID" 2>/dev/null && return 0
	WHY="gateway died: $(tail -5 "$GW_LOG")"
	start_gateway
	return 1
}

# via_front PORT ID [ARGS]: a device through HAProxy, from 127.0.0.1:<kernel port>.
via_front() {
	local port=$1 id=$2
	shift 2
	kgc connect --port "$port" --ca "$PKI/root/cert.pem" --cert "$PKI/dev/$id/chain.pem" \
		--key "$PKI/dev/$id/key.pem" --id "$id" "$@"
}

t_device_through_front() {
	local m out line sub
	m=$(log_mark)
	sub=$(sub_start "pin/x" 1 8)
	out=$(via_front "$FRONT_PORT" "$DEV" --topic pin/x --msg via-front)
	[ "$out" = $'connack 0x00\npuback 0x00' ] || { note "device through HAProxy: $out"; return 1; }
	sub_wait "$sub" "pin/x via-front" || { note "message did not reach the broker"; return 1; }
	audit_has "$m" ok "$DEV" allow || { note "no allow line"; return 1; }
	line=$(last_audit "$m")
	printf '%s' "$line" | grep -q '"auth":"ca"' && printf '%s' "$line" | grep -q '"listener":"front"' &&
		printf '%s' "$line" | grep -q '"ca":"factory"' ||
		{ note "audit line: $line"; return 1; }
	# the device's own address: HAProxy connects to the gate from 127.0.0.2
	printf '%s' "$line" | grep -q '"peer":"127.0.0.1:' || { note "peer is not the device's: $line"; return 1; }
}

t_disabled_through_front() {
	local m out line before after
	before=$(kg block list 2>/dev/null | grep -c "127.0.0.1" || true)
	m=$(log_mark)
	out=$(via_front "$FRONT_PORT" "$OFF")
	[ "$out" = "connack 0x05" ] || { note "disabled device through HAProxy: $out"; return 1; }
	audit_has "$m" disabled "$OFF" deny || { note "no disabled line"; return 1; }
	line=$(last_audit "$m")
	printf '%s' "$line" | grep -q '"peer":"127.0.0.1:' || { note "peer: $line"; return 1; }
}

t_no_cert_through_front() {
	local m out
	m=$(log_mark)
	out=$(kgc connect --port "$FRONT_PORT" --ca "$PKI/root/cert.pem" --id "$DEV")
	[ "$out" = "connack 0x04" ] || { note "no certificate, no credentials through HAProxy: $out"; return 1; }
	last_audit "$m" | grep -q '"listener":"front"' || { note "audit: $(last_audit "$m")"; return 1; }
	# no certificate: nobody was identified; the CONNECT's (absent) credentials decided
	last_audit "$m" | grep -q '"reason":"bad_credentials"' && ! last_audit "$m" | grep -q '"device"' ||
		{ note "audit: $(last_audit "$m")"; return 1; }
}

# No certificate at the front: the CONNECT's credentials decide, as on a plain
# listener (good token allowed and relayed by sockmap, a wrong one CONNACK 4), and the
# audit line carries the device's own address from the header.
t_credentials_through_front() {
	local m out
	m=$(log_mark)
	out=$(kgc connect --port "$FRONT_PORT" --ca "$PKI/root/cert.pem" --id pin-tok --username="$TOKEN" \
		--topic pin/tok --msg via-front)
	[ "$out" = $'connack 0x00\npuback 0x00' ] || { note "token through HAProxy: $out"; return 1; }
	audit_has "$m" ok pin-tok allow || { note "no allow line"; return 1; }
	last_audit "$m" | grep -q '"auth":"token"' && last_audit "$m" | grep -q '"peer":"127.0.0.1:' ||
		{ note "audit: $(last_audit "$m")"; return 1; }
	m=$(log_mark)
	out=$(kgc connect --port "$FRONT_PORT" --ca "$PKI/root/cert.pem" --id pin-tok --username "not-a-token-of-ours")
	[ "$out" = "connack 0x04" ] || { note "wrong token through HAProxy: $out"; return 1; }
	audit_has "$m" bad_credentials "" deny || { note "no bad_credentials line"; return 1; }
}

t_untrusted_source() {
	local m out
	m=$(log_mark)
	out=$(kgc connect --plain --port "$PX_PORT" --id "$DEV")
	case "$out" in closed*|connect_error*) ;; *) note "direct connection from 127.0.0.1: $out"; return 1 ;; esac
	audit_has "$m" proxy_untrusted || { note "no proxy_untrusted line"; return 1; }
}

# raw_from_front HEXBYTES: send bytes to the proxy listener from the trusted address.
raw_from_front() {
	$PY - "$PX_PORT" "$1" <<'PY'
import socket, sys
s = socket.socket()
s.bind(("127.0.0.2", 0))
s.settimeout(5)
s.connect(("127.0.0.1", int(sys.argv[1])))
s.sendall(bytes.fromhex(sys.argv[2]))
try:
    print("closed" if s.recv(100) == b"" else "answered")
except OSError as e:
    print("closed: %s" % e)
PY
}

# front_says CN SHA256HEX|-: a front that verified a certificate with this CN (and
# hash: ktlsgate's 0xE0 TLV; "-": none, as HAProxy sends), then the device's CONNECT
# (client id CN); prints the CONNACK's return code, or "closed".
front_says() {
	$PY - "$PX_PORT" "$1" "$2" <<'PY'
import socket, struct, sys
port, cn, sha = int(sys.argv[1]), sys.argv[2].encode(), sys.argv[3]
sub = bytes([0x22]) + struct.pack("!H", len(cn)) + cn
ssl = bytes([0x07]) + struct.pack("!I", 0) + sub          # SSL | CERT_CONN | CERT_SESS, verified
tlvs = bytes([0x20]) + struct.pack("!H", len(ssl)) + ssl
if sha != "-":
    h = bytes.fromhex(sha)
    tlvs += bytes([0xE0]) + struct.pack("!H", len(h)) + h
addrs = socket.inet_aton("192.0.2.77") + socket.inet_aton("127.0.0.1") + struct.pack("!HH", 40123, port)
body = addrs + tlvs
hdr = b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) + struct.pack("!H", len(body)) + body
cid = cn
vh = b"\x00\x04MQTT\x04\x02\x00\x3c"
pl = struct.pack("!H", len(cid)) + cid
connect = bytes([0x10, len(vh) + len(pl)]) + vh + pl
s = socket.socket()
s.bind(("127.0.0.2", 0))
s.settimeout(5)
s.connect(("127.0.0.1", port))
s.sendall(hdr + connect)
try:
    r = s.recv(4)
    print("closed" if len(r) < 4 else "connack 0x%02x" % r[3])
except OSError:
    print("closed")
PY
}

# A pinned device through a front: the hash proves it (and the device's address from
# the header is the audit's peer); without the hash (HAProxy's case) or with another
# certificate's hash it is refused attestation_mismatch.
t_pinned_through_front() {
	local m out
	m=$(log_mark)
	out=$(front_says pin-thumb "$THUMB")
	[ "$out" = "connack 0x00" ] || { note "pinned device with its hash: $out"; return 1; }
	audit_has "$m" ok pin-thumb allow || { note "no allow line"; return 1; }
	last_audit "$m" | grep -q '"peer":"192.0.2.77:40123"' && last_audit "$m" | grep -q '"auth":"thumbprint"' ||
		{ note "audit: $(last_audit "$m")"; return 1; }
	m=$(log_mark)
	out=$(front_says pin-thumb -)
	[ "$out" = "connack 0x05" ] || { note "pinned device without a hash: $out"; return 1; }
	audit_has "$m" attestation_mismatch pin-thumb deny || { note "no attestation_mismatch line"; return 1; }
	m=$(log_mark)
	out=$(front_says pin-thumb "$(printf '%064d' 0)")
	[ "$out" = "connack 0x05" ] || { note "pinned device with another hash: $out"; return 1; }
	audit_has "$m" attestation_mismatch pin-thumb deny || { note "no attestation_mismatch line (wrong hash)"; return 1; }
	# a CA device vouched for by the front needs no hash; its address is the header's
	m=$(log_mark)
	out=$(front_says "$DEV" -)
	[ "$out" = "connack 0x00" ] || { note "CA device from a hand-made header: $out"; return 1; }
}

t_bad_header() {
	local m out
	m=$(log_mark)
	# a v1 text header: "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"
	out=$(raw_from_front "$(printf 'PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n' | od -An -tx1 -v | tr -d ' \n')")
	[ "${out%%:*}" = closed ] || { note "v1 header: $out"; return 1; }
	audit_has "$m" bad_proxy_header || { note "no bad_proxy_header line"; return 1; }
	m=$(log_mark)
	# the v2 signature, then a length running past what comes: cut, then garbage
	out=$(raw_from_front "0d0a0d0a000d0a515549540a2111ffff0102")
	audit_has "$m" bad_proxy_header || audit_has "$m" timeout ||
		{ note "truncated header: $out, no audit line"; return 1; }
}

t_require_crc() {
	local m out
	m=$(log_mark)
	out=$(via_front "$FRONT_NOCRC_PORT" "$DEV")
	case "$out" in closed*) ;; *) note "header without CRC32C under proxy_require_crc: $out"; return 1 ;; esac
	audit_has "$m" bad_proxy_header || { note "no bad_proxy_header line"; return 1; }
	last_audit "$m" | grep -q 'proxy_require_crc' || { note "detail: $(last_audit "$m")"; return 1; }
	out=$(via_front "$FRONT_CRC_PORT" "$DEV")
	[ "$out" = "connack 0x00" ] || { note "header with CRC32C: $out"; return 1; }
}

ALL_TESTS=(t_device_through_front t_disabled_through_front t_no_cert_through_front
	t_pinned_through_front t_credentials_through_front t_untrusted_source t_bad_header
	t_require_crc)

setup || { echo "FAIL setup"; exit 1; }
run_tests
