#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# test-proxy-out.sh - `[backend] proxy_protocol = v2` (issue 15, "PROXY protocol v2 out
# to the broker"), end to end: between the gate and mosquitto (which does not read
# PROXY headers) sits a small python3 proxy that reads a PROXY v2 header if one starts
# the stream, checks it with its own parser (not the daemon's: signature, version,
# command, family, addresses, the TLVs, the CRC32C over the whole header), records what
# it found as one JSON line, and forwards the rest to mosquitto.
#   t_header_sent     a device on backend "pp" (proxy_protocol = v2): MQTT works through
#                     it; the header says PROXY, TCP over IPv4, source = the device's
#                     address and port as the audit line has them, destination = the
#                     gate's listener, SSL TLV with client flags 7, verify 0 and CN = the
#                     device id, our 0xE0 TLV = the certificate's SHA-256 (openssl
#                     x509 -fingerprint), a CRC32C that verifies
#   t_off_by_default  a device on backend "nopp" (no proxy_protocol) through the same
#                     kind of proxy: no header, the CONNECT is the first byte
# dev_args prints options meant to split into words; lib.sh reads ALL_TESTS and KG_FAILED.
# shellcheck disable=SC2046,SC2034
set -u
. "$(dirname "$0")/lib.sh"

write_checker() {
	cat <<'PYEOF'
import json, socket, struct, sys, threading

SIG = b"\r\n\r\n\x00\r\nQUIT\n"

def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF

def recv_exact(s, n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            raise EOFError("short stream")
        b += c
    return b

def parse(hdr):
    out = {"cmd": hdr[12] & 0x0F, "version": hdr[12] >> 4, "fam": hdr[13]}
    body = hdr[16:]
    if out["fam"] == 0x11:
        src, dst, sp, dp = struct.unpack("!4s4sHH", body[:12])
        out.update(src=socket.inet_ntop(socket.AF_INET, src), dst=socket.inet_ntop(socket.AF_INET, dst), sport=sp, dport=dp)
        tlv = body[12:]
    elif out["fam"] == 0x21:
        src, dst, sp, dp = struct.unpack("!16s16sHH", body[:36])
        out.update(src=socket.inet_ntop(socket.AF_INET6, src), dst=socket.inet_ntop(socket.AF_INET6, dst), sport=sp, dport=dp)
        tlv = body[36:]
    else:
        raise ValueError("family %#x" % out["fam"])
    i = 0
    while i < len(tlv):
        t, l = tlv[i], struct.unpack("!H", tlv[i + 1:i + 3])[0]
        v = tlv[i + 3:i + 3 + l]
        if len(v) != l:
            raise ValueError("TLV %#x past the header" % t)
        if t == 0x03:  # PP2_TYPE_CRC32C: over the whole header, this field zeroed
            z = hdr[:16 + len(body) - len(tlv) + i + 3] + b"\0\0\0\0" + hdr[16 + len(body) - len(tlv) + i + 7:]
            out["crc_ok"] = struct.unpack("!I", v)[0] == crc32c(z)
        elif t == 0x20:
            out["ssl_client"], out["ssl_verify"] = v[0], struct.unpack("!I", v[1:5])[0]
            j = 5
            while j < len(v):
                st, sl = v[j], struct.unpack("!H", v[j + 1:j + 3])[0]
                if st == 0x22:
                    out["cn"] = v[j + 3:j + 3 + sl].decode()
                j += 3 + sl
        elif t == 0xE0:
            out["sha256"] = v.hex()
        i += 3 + l
    return out

def pipe(a, b):
    try:
        while True:
            d = a.recv(65536)
            if not d:
                break
            b.sendall(d)
    except OSError:
        pass
    try:
        b.shutdown(socket.SHUT_WR)
    except OSError:
        pass

def serve(c, to, rec):
    first = recv_exact(c, 16)
    if first[:12] == SIG:
        hdr = first + recv_exact(c, struct.unpack("!H", first[14:16])[0])
        try:
            info = parse(hdr)
        except Exception as e:
            info = {"error": str(e)}
        rest = b""
    else:
        info, rest = {"header": None, "first_byte": first[0]}, first
    with open(rec, "a") as f:
        f.write(json.dumps(info) + "\n")
    u = socket.create_connection(("127.0.0.1", to))
    if rest:
        u.sendall(rest)
    threading.Thread(target=pipe, args=(u, c), daemon=True).start()
    pipe(c, u)

port, to, rec = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", port))
ls.listen(16)
while True:
    c, _ = ls.accept()
    threading.Thread(target=serve, args=(c, to, rec), daemon=True).start()
PYEOF
}

setup() {
	kg_init proxy-out
	BK_PORT=$(free_port)
	PP_PORT=$(free_port)
	NOPP_PORT=$(free_port)
	GW_PORT=$(free_port)
	GW_MPORT=$(free_port)
	local gw="$WORK/gw"
	write_gw_conf "$gw" "$GW_PORT" "$GW_MPORT" "$BK_PORT" "$(free_port)"
	GW_CONF="$gw/ktlsgate.conf"
	GW_LOG="$gw/gw.log"
	: >"$GW_LOG"
	printf '\n[backend pp]\naddress = 127.0.0.1:%s\nproxy_protocol = v2\n\n[backend nopp]\naddress = 127.0.0.1:%s\nproxy_protocol = off\n' \
		"$PP_PORT" "$NOPP_PORT" >>"$GW_CONF"
	pki_setup "$WORK/pki" || return 1
	device_cert pp-dev "$PKI/factory" || return 1
	device_cert nopp-dev "$PKI/factory" || return 1
	kg device add pp-dev --backend pp >/dev/null || return 1
	kg device add nopp-dev --backend nopp >/dev/null || return 1
	write_checker >"$WORK/ppcheck.py"
	start_broker "$BK_PORT" || return 1
	local p
	for p in "$PP_PORT" "$NOPP_PORT"; do
		$PY "$WORK/ppcheck.py" "$p" "$BK_PORT" "$WORK/pp-$p.jsonl" >"$WORK/ppcheck-$p.log" 2>&1 &
		KG_PIDS+=("$!")
		wait_port "$p" 10 "$!" || { echo "checker on $p did not start: $(cat "$WORK/ppcheck-$p.log")" >&2; return 1; }
	done
	start_gateway || return 1
}

# jf JSON KEY: one field of a JSON line (python's spelling: None, True, 5, text)
jf() {
	$PY -c 'import json, sys; print(json.loads(sys.argv[1]).get(sys.argv[2]))' "$1" "$2"
}

t_header_sent() {
	local got rec want_sha peer bad=0 k v want
	got=$(kgc connect $(dev_args pp-dev) --topic itest/pp --msg hello | head -2 | tr '\n' ' ')
	[ "$got" = "connack 0x00 puback 0x00 " ] || { note "pp-dev through a proxy_protocol backend: '$got' ($(cat "$WORK/ppcheck-$PP_PORT.log"))"; return 1; }
	rec=$(head -1 "$WORK/pp-$PP_PORT.jsonl" 2>/dev/null)
	[ -n "$rec" ] || { note "the checker recorded nothing"; return 1; }
	echo "    header: $rec"
	want_sha=$(openssl x509 -in "$PKI/dev/pp-dev/cert.pem" -noout -fingerprint -sha256 | sed 's/.*=//; s/://g' | tr 'A-F' 'a-f')
	# the device's address as the gate saw it: the allow audit line's peer
	peer=$(grep '"device":"pp-dev"' "$GW_LOG" | grep -o '"peer":"[^"]*"' | head -1 | sed 's/"peer":"//; s/"$//')
	[ -n "$peer" ] || { note "no audit line with pp-dev's peer"; return 1; }
	for kv in "version 2" "cmd 1" "fam 17" "src ${peer%:*}" "sport ${peer##*:}" "dst 127.0.0.1" \
		"dport $GW_PORT" "ssl_client 7" "ssl_verify 0" "cn pp-dev" "sha256 $want_sha" "crc_ok True"; do
		k=${kv%% *} want=${kv#* }
		v=$(jf "$rec" "$k")
		[ "$v" = "$want" ] || { note "header $k = '$v', want '$want'"; bad=1; }
	done
	return $bad
}

t_off_by_default() {
	local got rec
	got=$(kgc connect $(dev_args nopp-dev) --topic itest/nopp --msg hello | head -2 | tr '\n' ' ')
	[ "$got" = "connack 0x00 puback 0x00 " ] || { note "nopp-dev: '$got'"; return 1; }
	rec=$(head -1 "$WORK/pp-$NOPP_PORT.jsonl" 2>/dev/null)
	echo "    $rec"
	# no header: the first byte is the CONNECT's fixed header (0x10)
	[ "$(jf "$rec" header)" = None ] && [ "$(jf "$rec" first_byte)" = 16 ] ||
		{ note "backend without proxy_protocol: '$rec'"; return 1; }
}

ALL_TESTS=(t_header_sent t_off_by_default)

if ! setup; then
	echo "FAIL setup"
	KG_FAILED=1
	exit 1
fi
run_tests
