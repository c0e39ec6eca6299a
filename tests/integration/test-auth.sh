#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# test-auth.sh - devices without certificates (issue 15, docs/credentials.md "The
# CONNECT check"), end to end through ktlsgated and a real mosquitto, with credentials
# made by the real CLI (`device add --auth sas|token|basic`) and signed by independent
# tools (openssl dgst -mac HMAC for SAS tokens):
#   on a one-way `tls` listener and on a `plain` one, each kind's good credential is
#   allowed (a real client, mosquitto_pub, publishes through; kgclient sees CONNACK 0),
#   the audit line says auth sas/token/basic and the listener, the broker sees the device
#   id as user name and no password (a recording tap); a SAS token signed with the
#   secondary key works too; each bad one gets the right CONNACK (3.1.1 code 4, 5.0
#   0x86: bad user name or password; an expired SAS token the same with its own reason;
#   a client id that is not the device: 2) and its audit reason; a disabled device is
#   refused (5 / 0x87) by the same policy as X.509 devices, and a live session of a
#   credential device is cut when it is disabled; `x509_only` (the listener's, then
#   [auth]'s through a reload) refuses every kind; brute force against one device is
#   cut off after failure_burst attempts (auth_rate_limited, even for the right
#   password) and counted in ktlsgate_auth_attempts_total.
# Prints "PASS name" / "FAIL name: why" per test and a count; KG_ONLY="t_a" runs some.
# lib.sh reads ALL_TESTS and KG_FAILED.
# shellcheck disable=SC2034
set -u
. "$(dirname "$0")/lib.sh"

HUB=myhub.azure-devices.net
PW="correct horse battery"

setup() {
	kg_init auth
	unset KG_RELAY   # relay = auto: plain sessions must take the sockmap path here
	BK_PORT=$(free_port)
	TAP_PORT=$(free_port)
	GW_PORT=$(free_port)
	GW_MPORT=$(free_port)
	local gw="$WORK/gw"
	# backend "local" is a recording tap in front of mosquitto
	write_gw_conf "$gw" "$GW_PORT" "$GW_MPORT" "$TAP_PORT" "$(free_port)"
	GW_CONF="$gw/ktlsgate.conf"
	GW_LOG="$gw/gw.log"
	: >"$GW_LOG"
	add_typed_listeners "$GW_CONF"
	cat >>"$GW_CONF" <<EOF2

[auth]
sas_hub = $HUB
failure_burst = 3
failure_refill_ms = 600000
EOF2
	cp "$GW_CONF" "$gw/base.conf"
	pki_setup "$WORK/pki" || return 1
	add_creds || return 1
	start_broker "$BK_PORT" || return 1
	mkdir -p "$WORK/tap"
	$PY "$KGC" tap --port "$TAP_PORT" --to "$BK_PORT" --dir "$WORK/tap" >"$WORK/tap.log" 2>&1 &
	KG_PIDS+=("$!")
	wait_port "$TAP_PORT" 10 "$!" || { echo "tap did not start: $(cat "$WORK/tap.log")" >&2; return 1; }
	start_gateway || return 1
}

# field LABEL FILE: "LABEL: VALUE" of a `device add` output.
field() {
	sed -n "s/^$1: //p" "$2"
}

add_creds() {
	local o="$WORK/add.out" d
	kg device add sasdev --auth sas >"$o" 2>/dev/null || return 1
	SAS_K1=$(field primary-key "$o")
	SAS_K2=$(field secondary-key "$o")
	kg device add tokdev --auth token >"$o" 2>/dev/null || return 1
	TOKEN=$(field token "$o")
	printf '%s\n' "$PW" | kg device add basdev --auth basic --username meter-1 --password-stdin >/dev/null 2>&1 || return 1
	printf '%s\n' "$PW" | kg device add brute --auth basic --username meter-2 --password-stdin >/dev/null 2>&1 || return 1
	# one device per bad SAS case: each takes two failures, under failure_burst = 3
	for d in sx-key sx-exp sx-cid; do
		kg device add "$d" --auth sas >"$o" 2>/dev/null || return 1
		eval "K_${d//-/_}=\$(field primary-key \"\$o\")"
	done
	kg device add sasoff --auth sas >"$o" 2>/dev/null || return 1
	OFF_K1=$(field primary-key "$o")
	kg device set sasoff --status disabled >/dev/null || return 1
	[ -n "$SAS_K1" ] && [ -n "$SAS_K2" ] && [ -n "$TOKEN" ] && [ -n "$OFF_K1" ] ||
		{ echo "device add printed no secrets" >&2; return 1; }
}

after_each() {
	kill -0 "$GW_PID" 2>/dev/null && return 0
	WHY="gateway died: $(tail -5 "$GW_LOG")"
	start_gateway
	return 1
}

# sas_token ID KEY_B64 [TTL]: Azure's documented signature, made with openssl.
sas_token() {
	local id=$1 key=$2 ttl=${3:-3600} sr se hexkey sig
	sr=$($PY -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$HUB/devices/$id")
	se=$(($(date +%s) + ttl))
	hexkey=$(printf '%s' "$key" | base64 -d | od -An -tx1 -v | tr -d ' \n')
	sig=$(printf '%s\n%s' "$sr" "$se" | openssl dgst -sha256 -mac HMAC -macopt "hexkey:$hexkey" -binary | base64 -w0)
	sig=$($PY -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$sig")
	printf 'SharedAccessSignature sr=%s&sig=%s&se=%s' "$sr" "$se" "$se" | sed "s/&sig=$se/\&sig=$sig/"
}

sas_user() {
	printf '%s/%s/?api-version=2021-04-12' "$HUB" "$1"
}

# cc WHERE ARGS...: kgclient connect on the tls (WHERE=tls) or plain listener.
cc() {
	local where=$1
	shift
	case $where in
	tls) kgc connect --port "$TLS_PORT" --ca "$PKI/root/cert.pem" "$@" ;;
	x509) kgc connect --port "$X509_PORT" --ca "$PKI/root/cert.pem" --peek 300 "$@" ;;
	plain) kgc connect --plain --port "$PLAIN_PORT" "$@" ;;
	esac
}

# mpub WHERE ID USER [PASSWORD]: the real client publishes one QoS 1 message "m-ID".
mpub() {
	local where=$1 id=$2 user=$3 args=(-q 1 -i "$2" -u "$3" -t "auth/$2" -m "m-$2")
	[ $# -ge 4 ] && args+=(-P "$4")
	case $where in
	tls) args+=(-h 127.0.0.1 -p "$TLS_PORT" --cafile "$PKI/root/cert.pem" --insecure) ;;
	plain) args+=(-h 127.0.0.1 -p "$PLAIN_PORT") ;;
	esac
	timeout 10 mosquitto_pub "${args[@]}" 2>&1
}

# broker_saw ID: user name and password of the newest CONNECT with client id ID that
# reached the broker (the tap's files, newest first).
broker_saw() {
	local f
	for f in $(ls -t "$WORK/tap"/*.up 2>/dev/null); do
		kgc tapcheck --tap "$f" | $PY -c '
import json, sys
r = json.load(sys.stdin)
if r.get("client_id") != sys.argv[1]:
    sys.exit(1)
print("username=%s password=%s" % (r.get("username"), r.get("password")))' "$1" && return 0
	done
	echo "no CONNECT of $1 at the broker"
}

# allowed WHERE ID USER PASSWORD KIND: mosquitto_pub gets through, the message reaches the
# broker, the audit line names kind and listener, and the broker saw the device id as
# user name and no password.
allowed() {
	local where=$1 id=$2 user=$3 pass=$4 kind=$5 m sub out line lname sm0 sm1
	m=$(log_mark)
	sm0=$(metric_value ktlsgate_sessions_started_total 'mode="sockmap"')
	sub=$(sub_start "auth/$id" 1 8)
	if [ -n "$pass" ]; then out=$(mpub "$where" "$id" "$user" "$pass"); else out=$(mpub "$where" "$id" "$user"); fi
	[ $? -eq 0 ] || { note "$kind over $where: mosquitto_pub: $out"; return 1; }
	sub_wait "$sub" "auth/$id m-$id" || { note "$kind over $where: message did not reach the broker"; return 1; }
	audit_has "$m" ok "$id" allow || { note "$kind over $where: no allow line"; return 1; }
	line=$(last_audit "$m")
	lname=one-way
	[ "$where" = plain ] && lname=closed-net
	printf '%s' "$line" | grep -q "\"auth\":\"$kind\"" && printf '%s' "$line" | grep -q "\"listener\":\"$lname\"" ||
		{ note "$kind over $where: audit line $line"; return 1; }
	# the tap recorded the CONNECT as the broker got it: user name = id, no password
	out=$(broker_saw "$id")
	[ "$out" = "username=$id password=None" ] || { note "$kind over $where: broker saw $out"; return 1; }
	# a plain session is relayed in the kernel (the host has sockmap); TLS ones never are
	sm1=$(metric_value ktlsgate_sessions_started_total 'mode="sockmap"')
	if [ "$where" = plain ]; then
		[ "$(metric_value ktlsgate_sockmap_drops_total)" = 0 ] ||
			{ note "$kind over plain: the kernel relay dropped packets"; return 1; }
		[ "$sm1" -gt "$sm0" ] 2>/dev/null || {
			note "$kind over plain: not a sockmap session ($sm0 -> $sm1; $(metrics | grep '^ktlsgate_sessions_started_total' | tr '\n' ' '); $(grep -i 'sockmap\|splice' "$GW_LOG" | tail -3 | tr '\n' ' '))"
			return 1
		}
	else
		[ "$sm1" = "$sm0" ] || { note "$kind over tls: a sockmap session ($sm0 -> $sm1)"; return 1; }
	fi
}

t_sas_tls() { allowed tls sasdev "$(sas_user sasdev)" "$(sas_token sasdev "$SAS_K1")" sas; }
t_token_tls() { allowed tls tokdev "$TOKEN" "" token; }
t_basic_tls() { allowed tls basdev meter-1 "$PW" basic; }
t_sas_plain() { allowed plain sasdev "$(sas_user sasdev)" "$(sas_token sasdev "$SAS_K1")" sas; }
t_token_plain() { allowed plain tokdev "$TOKEN" "" token; }
t_basic_plain() { allowed plain basdev meter-1 "$PW" basic; }

t_sas_secondary() {
	local out
	out=$(cc tls --id sasdev --username "$(sas_user sasdev)" --password "$(sas_token sasdev "$SAS_K2")")
	[ "$out" = "connack 0x00" ] || { note "secondary-key token: $out"; return 1; }
}

# refused WHERE REASON WANT311 WANT5 ARGS...: both protocol levels get their code.
refused() {
	local where=$1 reason=$2 w3=$3 w5=$4 m out
	shift 4
	m=$(log_mark)
	out=$(cc "$where" "$@")
	[ "$out" = "connack $w3" ] || { note "$reason (3.1.1): $out, want $w3"; return 1; }
	out=$(cc "$where" --level 5 "$@")
	[ "$out" = "connack $w5" ] || { note "$reason (5.0): $out, want $w5"; return 1; }
	audit_has "$m" "$reason" "" deny || { note "no $reason line: $(last_audit "$m")"; return 1; }
}

t_sas_bad() {
	refused tls bad_credentials 0x04 0x86 --id sx-key --username "$(sas_user sx-key)" \
		--password "$(sas_token sx-key "$(head -c 32 /dev/urandom | base64 -w0)")" || return 1
	refused tls credential_expired 0x04 0x86 --id sx-exp --username "$(sas_user sx-exp)" \
		--password "$(sas_token sx-exp "$K_sx_exp" -10)" || return 1
	refused tls client_id_mismatch 0x02 0x85 --id someone-else --username "$(sas_user sx-cid)" \
		--password "$(sas_token sx-cid "$K_sx_cid")"
}

t_token_bad() {
	refused plain bad_credentials 0x04 0x86 --id tokdev --username "not-the-token-0123456789"
}

t_basic_bad() {
	refused tls bad_credentials 0x04 0x86 --id basdev --username meter-1 --password "wrong horse"
}

# paho-mqtt, a second real client library, with each kind's good and bad credential
# on the tls listener and a token on the plain one.
t_paho() {
	local out
	paho() { kgc paho "$@"; }
	out=$(paho --port "$TLS_PORT" --ca "$PKI/root/cert.pem" --id sasdev --username "$(sas_user sasdev)" \
		--password "$(sas_token sasdev "$SAS_K1")" --topic auth/paho --msg p1)
	[ "$out" = $'connack 0x00\npublished' ] || { note "paho sas: $out"; return 1; }
	out=$(paho --port "$TLS_PORT" --ca "$PKI/root/cert.pem" --id tokdev --username="$TOKEN")
	[ "$out" = "connack 0x00" ] || { note "paho token: $out"; return 1; }
	out=$(paho --port "$TLS_PORT" --ca "$PKI/root/cert.pem" --id basdev --username meter-1 --password="$PW")
	[ "$out" = "connack 0x00" ] || { note "paho basic: $out"; return 1; }
	out=$(paho --port "$TLS_PORT" --ca "$PKI/root/cert.pem" --id basdev --username meter-1 --password nope --level 5)
	[ "$out" = "connack 0x86" ] || { note "paho basic, bad password, MQTT 5: $out"; return 1; }
	out=$(paho --plain --port "$PLAIN_PORT" --id tokdev --username="$TOKEN")
	[ "$out" = "connack 0x00" ] || { note "paho token over plain: $out"; return 1; }
}

t_disabled() {
	refused tls disabled 0x05 0x87 --id sasoff --username "$(sas_user sasoff)" \
		--password "$(sas_token sasoff "$OFF_K1")"
}

# A live session of a credential device is cut when the device is disabled.
t_revoke_live() {
	local f i
	f=$(mktemp "$WORK/hold.XXXXXX")
	cc tls --id tokdev --username="$TOKEN" --hold 10 >"$f" 2>&1 &
	for ((i = 0; i < 100; i++)); do grep -q '^connack' "$f" && break; sleep 0.05; done
	[ "$(head -1 "$f")" = "connack 0x00" ] || { note "no session: $(cat "$f")"; return 1; }
	kg device set tokdev --status disabled >/dev/null || { note "device set failed"; return 1; }
	for ((i = 0; i < 60; i++)); do [ "$(wc -l <"$f")" -ge 2 ] && break; sleep 0.05; done
	kg device set tokdev --status enabled >/dev/null
	sed -n 2p "$f" | grep -q '^eof' || { note "session not cut: $(cat "$f")"; return 1; }
}

# A sockmap session (plain listener: the kernel relays it) is cut as fast as any when
# its device is disabled: EOF within 100 ms of the CLI's return (kgclient cutoff times
# both from just before starting the CLI; the CLI's own run is printed beside).
t_revoke_sockmap() {
	local res cli eof sm0 sm1
	sm0=$(metric_value ktlsgate_sessions_started_total 'mode="sockmap"')
	res=$(kgc cutoff --plain --port "$PLAIN_PORT" --id tokdev --username="$TOKEN" \
		--cmd "timeout 20 $KGCLI -c $GW_CONF device set tokdev --status disabled >/dev/null" | tail -1)
	kg device set tokdev --status enabled >/dev/null
	sm1=$(metric_value ktlsgate_sessions_started_total 'mode="sockmap"')
	echo "    $res"
	[ "$sm1" -gt "$sm0" ] 2>/dev/null || { note "not a sockmap session ($sm0 -> $sm1)"; return 1; }
	cli=$(printf '%s' "$res" | $PY -c 'import json,sys; print(json.load(sys.stdin)["cli_ms"])')
	eof=$(printf '%s' "$res" | $PY -c 'import json,sys; print(json.load(sys.stdin)["eof_ms"])')
	$PY -c 'import sys; c, e = float(sys.argv[1]), float(sys.argv[2]); sys.exit(0 if e - c < 100 else 1)' "$cli" "$eof" 2>/dev/null ||
		{ note "EOF at $eof ms, CLI done at $cli ms: not within 100 ms"; return 1; }
}

t_x509_only() {
	local out m k pout bad=""
	for k in sas token basic; do
		case $k in
		sas) out=$(cc x509 --id sasdev --username "$(sas_user sasdev)" --password "$(sas_token sasdev "$SAS_K1")") ;;
		token) out=$(cc x509 --id tokdev --username="$TOKEN") ;;
		basic) out=$(cc x509 --id basdev --username meter-1 --password="$PW") ;;
		esac
		case "$out" in tls_error*|closed*) ;; *) note "$k on the x509_only listener: $out"; return 1 ;; esac
	done
	# [auth] x509_only, by a reload: the one-way listener then asks for a certificate
	sed "s/^failure_burst = 3$/failure_burst = 3\nx509_only = yes/" "$WORK/gw/base.conf" >"$GW_CONF"
	m=$(log_mark)
	kill -HUP "$GW_PID"
	sleep 1
	out=$(cc tls --peek 300 --id tokdev --username="$TOKEN")
	# the plain listener has no certificate to ask for: every kind refused x509_required
	for k in sas token basic; do
		case $k in
		sas) pout=$(cc plain --id sasdev --username "$(sas_user sasdev)" --password "$(sas_token sasdev "$SAS_K1")") ;;
		token) pout=$(cc plain --id tokdev --username="$TOKEN") ;;
		basic) pout=$(cc plain --id basdev --username meter-1 --password="$PW") ;;
		esac
		[ "$pout" = "connack 0x05" ] || { bad="$k on plain under [auth] x509_only: $pout"; break; }
	done
	audit_has "$m" x509_required "" deny || bad="${bad:-no x509_required line}"
	cp "$WORK/gw/base.conf" "$GW_CONF"
	kill -HUP "$GW_PID"
	sleep 1
	case "$out" in tls_error*|closed*) ;; *) note "token on tls under [auth] x509_only: $out"; return 1 ;; esac
	[ -z "${bad:-}" ] || { note "$bad"; return 1; }
	out=$(cc tls --id tokdev --username="$TOKEN")
	[ "$out" = "connack 0x00" ] || { note "after the reload back: $out"; return 1; }
}

t_brute_force() {
	local out i before after
	before=$(metric_value ktlsgate_auth_attempts_total 'kind="basic"' 'result="rate_limited"')
	for i in 1 2 3; do
		out=$(cc tls --id brute --username meter-2 --password "guess-$i")
		[ "$out" = "connack 0x04" ] || { note "guess $i: $out"; return 1; }
	done
	m=$(log_mark)
	out=$(cc tls --id brute --username meter-2 --password="$PW")
	[ "$out" = "connack 0x05" ] || { note "right password after 3 failures: $out (want rate limited 0x05)"; return 1; }
	audit_has "$m" auth_rate_limited brute deny || { note "no auth_rate_limited line"; return 1; }
	after=$(metric_value ktlsgate_auth_attempts_total 'kind="basic"' 'result="rate_limited"')
	[ "$after" -gt "$before" ] 2>/dev/null || { note "rate_limited counter $before -> $after"; return 1; }
	# another device is not held back by brute's bucket
	out=$(cc tls --id basdev --username meter-1 --password="$PW")
	[ "$out" = "connack 0x00" ] || { note "basdev after brute's lockout: $out"; return 1; }
}

# Password checks run in the auth pool while the connection waits (worker.c
# auth_results): 10 devices send a CONNECT with a password at once, every other one
# resets its connection right after it (SO_LINGER 0: the worker sees the hangup while
# the check waits, closes, cancels the job), so the waiting list loses members in its
# middle while results arrive for the others. Those that wait get CONNACK 0; the daemon serves
# on (under ASan: no use of a closed connection).
t_hangup_while_checking() {
	local out i
	for ((i = 0; i < 10; i++)); do
		printf '%s\n' "$PW" | kg device add "hup$i" --auth basic --username "hup-$i" \
			--password-stdin >/dev/null 2>&1 || { note "device add hup$i"; return 1; }
	done
	out=$("$PY" - "$PLAIN_PORT" "$PW" <<'EOF'
import socket, struct, sys
port, pw = int(sys.argv[1]), sys.argv[2].encode()
def s(b): return struct.pack("!H", len(b)) + b
waiting = []
for i in range(10):
    body = (s(b"MQTT") + bytes([4, 0xC2]) + struct.pack("!H", 30) + s(b"hup%d" % i)
            + s(b"hup-%d" % i) + s(pw))
    c = socket.create_connection(("127.0.0.1", port))
    c.sendall(b"\x10" + bytes([len(body)]) + body)
    if i % 2:
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()
    else:
        waiting.append(c)
ok = 0
for c in waiting:
    c.settimeout(15)
    try:
        r = c.recv(4)
    except OSError:
        r = b""
    ok += r[:1] == b"\x20" and r[3:4] == b"\x00"
    c.close()
print("connack0 %d of %d" % (ok, len(waiting)))
EOF
)
	echo "    $out"
	[ "$out" = "connack0 5 of 5" ] || { note "the waiting devices: $out"; return 1; }
	kill -0 "$GW_PID" || { note "the daemon is gone"; return 1; }
	out=$(cc plain --id basdev --username meter-1 --password="$PW")
	[ "$out" = "connack 0x00" ] || { note "a device after the hang-ups: $out"; return 1; }
}

ALL_TESTS=(t_sas_tls t_token_tls t_basic_tls t_sas_secondary t_sas_bad t_token_bad t_basic_bad
	t_paho t_disabled t_revoke_live t_x509_only t_brute_force t_sas_plain t_token_plain t_basic_plain
	t_revoke_sockmap t_hangup_while_checking)

setup || { echo "FAIL setup"; exit 1; }
run_tests
