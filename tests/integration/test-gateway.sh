#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# test-gateway.sh - ktlsgated end to end: real mosquitto behind it, real TLS clients
# (mosquitto_pub, paho, a raw python client that builds CONNECT by hand and checks the
# exact CONNACK byte, openssl s_client), the CLI changing the registry under a running
# daemon. One PKI, broker and daemon are set up once and shared by the tests (each test
# uses its own devices); tests that need a daemon of their own start one.
# Prints PASS/FAIL/SKIP per test; exits non-zero if any failed.
# dev_args prints options meant to split into words; lib.sh reads ALL_TESTS and KG_FAILED.
# shellcheck disable=SC2046,SC2034
set -u
. "$(dirname "$0")/lib.sh"

# --- shared setup ---------------------------------------------------------------------

# device id -> what it is for. Devices under the factory intermediate unless noted.

setup() {
	kg_init gateway
	BK_PORT=$(free_port)
	BK2_PORT=$(free_port) # nothing listens here: backend "other" is down
	GW_PORT=$(free_port)
	GW_MPORT=$(free_port)
	local gw="$WORK/gw" now d
	write_gw_conf "$gw" "$GW_PORT" "$GW_MPORT" "$BK_PORT" "$BK2_PORT"
	GW_CONF="$gw/ktlsgate.conf"
	GW_LOG="$gw/gw.log"
	: >"$GW_LOG"
	pki_setup "$WORK/pki" || return 1
	now=$(date +%s)

	for d in ok disabled suspended quarantined decom unknown clientid bdown nobackend cut cut2 \
		hup kill pipe metr attest eku revoked shared keyupd relay1 relay2 relay3; do
		case $d in
		eku) device_cert "$d" "$PKI/factory" --eku server ;;
		*) device_cert "$d" "$PKI/factory" ;;
		esac || { echo "pki device $d failed" >&2; return 1; }
	done
	device_cert expired "$PKI/factory" --not-before $((now - 10 * 86400)) --days 1 || return 1
	device_cert future "$PKI/factory" --not-before $((now + 5 * 86400)) --days 30 || return 1

	# CAs beside the standard ones
	pki root --cn "unregistered root" --out "$PKI/otherroot" || return 1
	device_cert unknownca "$PKI/otherroot" || return 1
	pki root --cn "pending root" --out "$PKI/pendroot" || return 1
	add_pending_ca pending "$PKI/pendroot" || return 1
	device_cert unproven "$PKI/pendroot" || return 1
	pki intermediate --cn "not a CA" --ca "$PKI/root" --out "$PKI/badint" --not-ca || return 1
	device_cert badchain "$PKI/badint" || return 1
	pki root --cn "auto-enroll root" --out "$PKI/autoroot" || return 1
	register_ca auto "$PKI/autoroot" --auto-enroll || return 1
	device_cert autodev-1 "$PKI/autoroot" || return 1
	device_cert autodev-2 "$PKI/autoroot" || return 1

	# CN with a control byte (the CLI may refuse to make one): openssl, signed by factory
	mkdir -p "$PKI/dev/badid"
	(cd "$PKI/dev/badid" &&
		openssl ecparam -name prime256v1 -genkey -noout -out key.pem 2>/dev/null &&
		openssl req -new -key key.pem -subj "/CN=bad$(printf '\001')id" -out req.csr 2>/dev/null &&
		printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n' >ext.cnf &&
		openssl x509 -req -in req.csr -CA "$PKI/factory/cert.pem" -CAkey "$PKI/factory/key.pem" \
			-CAcreateserial -days 30 -extfile ext.cnf -out cert.pem 2>/dev/null &&
		cat cert.pem "$PKI/factory/cert.pem" >chain.pem) || return 1

	# thumbprint devices: self-signed; primary + secondary; an impostor with the same CN
	pki self-signed --cn thumbdev --out "$PKI/dev/thumbdev" || return 1
	pki self-signed --cn thumbdev --out "$PKI/dev/thumbdev2" || return 1
	pki self-signed --cn thumbdev --out "$PKI/dev/thumbfake" || return 1
	pki self-signed --cn attest --out "$PKI/dev/attest-ss" || return 1

	# revocation: a CRL from factory listing "revoked"
	pki crl --ca "$PKI/factory" --out "$gw/crl.pem" "$PKI/dev/revoked/cert.pem" || return 1
	printf '\n[crl]\nfactory = crl.pem\n' >>"$GW_CONF"

	# registry rows
	for d in ok disabled suspended quarantined decom clientid cut cut2 hup kill pipe metr \
		expired future eku revoked unknownca unproven badchain shared keyupd relay1 relay2 relay3; do
		kg device add "$d" >/dev/null || { echo "device add $d failed" >&2; return 1; }
	done
	kg device add bdown --backend other >/dev/null || return 1
	NOBACKEND_ADDED=0
	kg device add nobackend --backend ghost >/dev/null 2>&1 && NOBACKEND_ADDED=1
	kg device set disabled --status disabled >/dev/null || return 1
	kg device set suspended --status suspended >/dev/null || return 1
	kg device set quarantined --status quarantined >/dev/null || return 1
	kg device set decom --status decommissioned >/dev/null || return 1
	kg device add thumbdev --thumbprint "$(fingerprint "$PKI/dev/thumbdev/cert.pem")" \
		--secondary "$(fingerprint "$PKI/dev/thumbdev2/cert.pem")" >/dev/null || return 1
	kg device add attest --thumbprint "$(fingerprint "$PKI/dev/attest-ss/cert.pem")" >/dev/null || return 1

	start_broker "$BK_PORT" || return 1
	start_gateway || return 1
}

# connack_of DEVICE LEVEL [raw|paho] [client id]: the client's one-line result.
connack_of() {
	local dev=$1 level=$2 how=${3:-connect} cid=${4:-$1}
	kgc "$how" $(dev_args "$dev") --id "$cid" --level "$level" | head -1
}

# --- tests ------------------------------------------------------------------------

t_publish() {
	local f lvl
	f=$(sub_start 'itest/pub/#' 2 10)
	for lvl in mqttv311 mqttv5; do
		timeout 10 mosquitto_pub -h 127.0.0.1 -p "$GW_PORT" --cafile "$PKI/root/cert.pem" \
			--cert "$PKI/dev/ok/chain.pem" --key "$PKI/dev/ok/key.pem" -i ok -V "$lvl" -q 1 \
			-t "itest/pub/$lvl" -m "hello $lvl" || { note "mosquitto_pub -V $lvl failed"; return 1; }
	done
	sub_wait "$f" "itest/pub/mqttv311 hello mqttv311" || { note "subscriber missed 3.1.1 message: $(cat "$f")"; return 1; }
	sub_wait "$f" "itest/pub/mqttv5 hello mqttv5" || { note "subscriber missed v5 message: $(cat "$f")"; return 1; }
	audit_has 0 ok ok allow || { note "no allow/ok audit line for ok: $AUDIT_OUT"; return 1; }
}

# device expected-3.1.1 expected-5.0 audit-reason [client id]
DENY_TABLE="disabled 0x05 0x87 disabled
suspended 0x05 0x87 suspended
quarantined 0x05 0x8a quarantined
decom 0x05 0x8a decommissioned
unknown 0x05 0x87 unknown_device
clientid 0x02 0x85 client_id_mismatch not-my-id
bdown 0x03 0x88 backend_down
attest 0x05 0x87 attestation_mismatch"

t_deny_connack() {
	local dev c4 c5 reason cid how got mark bad=0 table=$DENY_TABLE
	if [ "$NOBACKEND_ADDED" = 1 ]; then
		table="$table
nobackend 0x03 0x88 no_backend"
	else
		echo "    (CLI refused a device with an unknown backend: no_backend case not reachable)"
	fi
	while read -r dev c4 c5 reason cid; do
		cid=${cid:-$dev}
		mark=$(log_mark)
		for how in connect paho; do
			got=$(connack_of "$dev" 4 "$how" "$cid")
			[ "$got" = "connack $c4" ] || { note "$dev v3.1.1 ($how): want connack $c4, got '$got'"; bad=1; }
			got=$(connack_of "$dev" 5 "$how" "$cid")
			[ "$got" = "connack $c5" ] || { note "$dev v5 ($how): want connack $c5, got '$got'"; bad=1; }
		done
		audit_has "$mark" "$reason" "" deny || { note "$dev: no deny/$reason audit: $AUDIT_OUT"; bad=1; }
	done <<<"$table"
	[ $bad = 0 ] || WHY="see above"
	return $bad
}

# device audit-reason
TLS_TABLE="expired cert_expired
future cert_not_yet_valid
unknownca unknown_ca
unproven unproven_ca
eku bad_eku
nocert no_cert
badchain bad_chain
revoked cert_revoked
badid bad_identity
thumbfake thumbprint_mismatch"

t_tls_failures() {
	local dev reason got mark bad=0 args
	while read -r dev reason; do
		mark=$(log_mark)
		if [ "$dev" = nocert ]; then
			args="--port $GW_PORT --ca $PKI/root/cert.pem --id nocert"
		else
			args="$(dev_args "$dev")"
		fi
		# shellcheck disable=SC2086
		got=$(kgc connect $args --peek 500 | head -1)
		case $got in
		tls_error:*alert*) ;;
		*) note "$dev: want a TLS alert, got '$got'"; bad=1 ;;
		esac
		audit_has "$mark" "$reason" "" deny || { note "$dev: no deny/$reason audit: $AUDIT_OUT"; bad=1; }
	done <<<"$TLS_TABLE"
	# a second opinion from openssl s_client on one of them
	got=$( (sleep 1) | timeout 10 openssl s_client -connect "127.0.0.1:$GW_PORT" \
		-CAfile "$PKI/root/cert.pem" -cert "$PKI/dev/expired/chain.pem" -key "$PKI/dev/expired/key.pem" 2>&1)
	printf '%s\n' "$got" | grep -qi 'alert' || { note "openssl s_client saw no alert for the expired cert"; bad=1; }
	[ $bad = 0 ] || WHY="see above"
	return $bad
}

t_thumbprint() {
	local f got mark
	f=$(sub_start 'itest/thumb' 2 10)
	got=$(kgc connect $(dev_args thumbdev) --topic itest/thumb --msg primary | head -2 | tr '\n' ' ')
	[ "$got" = "connack 0x00 puback 0x00 " ] || { note "primary thumbprint: '$got'"; return 1; }
	got=$(kgc connect $(dev_args thumbdev2) --id thumbdev --topic itest/thumb --msg secondary | head -2 | tr '\n' ' ')
	[ "$got" = "connack 0x00 puback 0x00 " ] || { note "secondary thumbprint: '$got'"; return 1; }
	sub_wait "$f" "itest/thumb primary" || { note "subscriber missed primary: $(cat "$f")"; return 1; }
	sub_wait "$f" "itest/thumb secondary" || { note "subscriber missed secondary"; return 1; }
	mark=$(log_mark)
	got=$(kgc connect $(dev_args thumbfake) --id thumbdev | head -1)
	case $got in tls_error:*) ;; *) note "impostor with the same CN: '$got'"; return 1 ;; esac
	audit_has "$mark" thumbprint_mismatch "" deny || { note "impostor: $AUDIT_OUT"; return 1; }
}

t_auto_enroll() {
	local got mark i
	kg device show autodev-1 --json >/dev/null 2>&1
	[ $? = 2 ] || { note "autodev-1 should not exist before it connects (want exit 2)"; return 1; }
	mark=$(log_mark)
	got=$(kgc connect $(dev_args autodev-1) --topic itest/auto --msg x | head -2 | tr '\n' ' ')
	[ "$got" = "connack 0x00 puback 0x00 " ] || { note "auto-enroll connect: '$got'"; return 1; }
	audit_has "$mark" enrolled autodev-1 allow || { note "no allow/enrolled audit: $AUDIT_OUT"; return 1; }
	for ((i = 0; i < 40; i++)); do
		got=$(kg device show autodev-1 --json 2>/dev/null) && break
		sleep 0.05
	done
	printf '%s' "$got" | $PY -c 'import json,sys; d=json.load(sys.stdin); sys.exit(0 if d.get("id")=="autodev-1" else 1)' ||
		{ note "device show after enrolment: '$got'"; return 1; }
	# and it connects again as a known device
	got=$(connack_of autodev-1 5)
	[ "$got" = "connack 0x00" ] || { note "second connect: '$got'"; return 1; }
	# it is bound to its CA: the CA cannot be removed under it (else the device would
	# be unbound, and any other proven CA could mint its id)
	printf '%s' "$(kg device show autodev-1 --json)" |
		$PY -c 'import json,sys; d=json.load(sys.stdin); sys.exit(0 if d.get("ca") else 1)' ||
		{ note "auto-enrolled device is not bound to its CA"; return 1; }
	local ca
	ca=$(kg device show autodev-1 --json | $PY -c 'import json,sys; print(json.load(sys.stdin)["ca"])')
	got=$(kg ca remove "$ca" 2>&1)
	[ $? = 2 ] && [[ "$got" == *"devices are enrolled under it"* ]] ||
		{ note "ca remove $ca with a bound device: '$got'"; return 1; }
}

# The daemon and CLI processes share the registry file. Other processes opening and
# closing it read-write must not cost the daemon its view: its enrolments must stay
# visible to the CLI and the CLI's revocations to the daemon. (A file-header check that
# opened and closed its own fd once dropped the daemon's SQLite locks; the next CLI to
# close then deleted the WAL under the daemon, whose writes went to a ghost file.)
t_registry_shared() {
	local got i
	for i in 1 2 3; do
		kg device add "scratch-$i" >/dev/null && kg device remove "scratch-$i" >/dev/null ||
			{ note "scratch device $i"; return 1; }
	done
	got=$(kgc connect $(dev_args autodev-2) --topic itest/auto2 --msg x | head -1)
	[ "$got" = "connack 0x00" ] || { note "auto-enroll connect: '$got'"; return 1; }
	for ((i = 0; i < 40; i++)); do
		kg device show autodev-2 >/dev/null 2>&1 && break
		sleep 0.05
	done
	kg device show autodev-2 >/dev/null 2>&1 ||
		{ note "the daemon's enrolment of autodev-2 is not visible to the CLI"; return 1; }
	got=$(cutoff shared)
	# every field must hold a value before it is compared: a client that never
	# connected prints nothing, and an empty field is not "None" either
	local rc eof
	rc=$(json_field "$got" cli_rc)
	eof=$(json_field "$got" eof_ms)
	[ "$rc" = 0 ] || { note "the probe did not connect, or the CLI failed: '$got'"; return 1; }
	[[ "$eof" =~ ^[0-9]+(\.[0-9]+)?$ ]] ||
		{ note "revocation did not reach the daemon: '$got'"; return 1; }
}

# A TLS 1.3 KeyUpdate after the handoff: the record relay cannot follow it without
# OpenSSL, so it must answer with a fatal alert and close, audited; never hang, never
# pass bytes it cannot authenticate.
t_keyupdate() {
	local out mark
	mark=$(log_mark)
	out=$(timeout 10 "${KG_TLSPROBE:-$KG_TOP/build/kg-tlsprobe}" "$GW_PORT" "$PKI/root/cert.pem" \
		"$PKI/dev/keyupd/chain.pem" "$PKI/dev/keyupd/key.pem" keyupd | grep -v '^tls:' | tr '\n' ' ')
	if [ "${KG_RELAY:-}" = openssl ]; then
		# The OpenSSL relay follows a KeyUpdate: the session goes on (a PINGREQ after
		# it is answered) and nothing is closed as tls_key_update.
		[ "$out" = "connack 0x00 after keyupdate: pingresp " ] || { note "probe (relay = openssl): '$out'"; return 1; }
		audit_has "$mark" tls_key_update keyupd &&
			{ note "relay = openssl closed a session over a KeyUpdate: $AUDIT_OUT"; return 1; }
		return 0
	fi
	# The record relay cannot follow it. alert 10: unexpected_message
	[ "$out" = "connack 0x00 after keyupdate: alert 10 " ] || { note "probe: '$out'"; return 1; }
	audit_has "$mark" tls_key_update keyupd ||
		{ note "no tls_key_update close audited: $AUDIT_OUT"; return 1; }
}

# mode_of DEVICE: the data path `session list` reports for the device's session.
mode_of() {
	kg session list --json | $PY -c 'import json,sys
text=sys.stdin.read()
try:
    rows=json.loads(text); rows=rows if isinstance(rows,list) else [rows]
except ValueError:
    rows=[json.loads(l) for l in text.splitlines() if l.strip().startswith("{")]
print(next((d["mode"] for d in rows if d.get("device")==sys.argv[1]), ""))' "$1"
}

# Both data paths carry a session end to end: the record relay by default
# ("userspace": OpenSSL freed after the handshake) and, after a reload with
# relay = openssl, the OpenSSL relay ("userspace_ssl"); sessions keep the path they
# started with across the reload.
# relay_mode_name RELAY: the mode `session list` reports for sessions under `relay =`.
relay_mode_name() {
	case $1 in
	userspace) echo userspace ;;
	openssl) echo userspace_ssl ;;
	ktls_tx) echo ktls_tx ;;
	auto | "") # kernel TLS where the kernel has it (tests/vm covers that), else the record relay
		if grep -qw tls /proc/sys/net/ipv4/tcp_available_ulp 2>/dev/null; then echo ktls_splice
		else echo userspace; fi ;;
	esac
}

# The suite runs with the relay pinned by KG_RELAY (make check runs it once per
# user-space relay): this test checks the pinned path is the one that ran, then that a
# reload to `auto` (or, unpinned, to openssl) applies to new sessions only, and that
# `auto` on a kernel without kTLS says why it fell back.
t_relay_modes() {
	local f g i mode got p1 p2 want other
	f="$WORK/relay1.out"; g="$WORK/relay2.out"
	: >"$f"; : >"$g"
	kgc connect $(dev_args relay1) --hold 6 >"$f" &
	p1=$!
	for ((i = 0; i < 100; i++)); do grep -q 'connack' "$f" && break; sleep 0.05; done
	grep -qx 'connack 0x00' "$f" || { note "relay1 not connected: $(cat "$f")"; return 1; }
	mode=$(mode_of relay1)
	want=$(relay_mode_name "${KG_RELAY:-auto}")
	[ "$mode" = "$want" ] || { note "mode under relay = ${KG_RELAY:-auto}: '$mode', want '$want'"; return 1; }
	other=auto
	[ -z "${KG_RELAY:-}" ] && other=openssl
	cp "$GW_CONF" "$GW_CONF.relay"
	sed -i '/^relay = /d; s/^\[daemon\]$/[daemon]\nrelay = '"$other"'/' "$GW_CONF"
	kill -HUP "$GW_PID"
	sleep 0.5
	cp "$GW_CONF.relay" "$GW_CONF"
	kgc connect $(dev_args relay2) --hold 4 >"$g" &
	p2=$!
	for ((i = 0; i < 100; i++)); do grep -q 'connack' "$g" && break; sleep 0.05; done
	grep -qx 'connack 0x00' "$g" || { note "relay2 not connected: $(cat "$g")"; kill -HUP "$GW_PID"; return 1; }
	mode=$(mode_of relay2)
	[ "$mode" = "$(relay_mode_name $other)" ] || { note "mode after relay = $other: '$mode'"; kill -HUP "$GW_PID"; return 1; }
	[ "$(mode_of relay1)" = "$want" ] || { note "relay1 changed path on reload"; kill -HUP "$GW_PID"; return 1; }
	if [ "$(relay_mode_name auto)" = userspace ] && { [ $other = auto ] || [ -z "${KG_RELAY:-}" ]; }; then
		[ "$(metric_value ktlsgate_ktls_fallbacks_total 'reason="kernel_no_tls"')" -ge 1 ] ||
			{ note "relay = auto without kTLS: no kernel_no_tls fallback counted"; kill -HUP "$GW_PID"; return 1; }
		grep -q 'kernel TLS unavailable' "$GW_LOG" || { note "relay = auto without kTLS: no log line saying why"; kill -HUP "$GW_PID"; return 1; }
	fi
	got=$(kgc connect $(dev_args relay3) --topic itest/relay --msg via-$other | head -2 | tr '\n' ' ')
	kill -HUP "$GW_PID"   # back to the pinned path
	[ "$got" = "connack 0x00 puback 0x00 " ] || { note "publish through relay = $other: '$got'"; return 1; }
	wait "$p1" "$p2"
}

# cutoff DEVICE: connect, run `device set DEVICE --status disabled`, print the JSON
# {cli_rc, cli_ms, eof_ms} measured from just before starting the CLI.
cutoff() {
	kgc cutoff $(dev_args "$1") --cmd "timeout 10 $KGCLI -c $GW_CONF device set $1 --status disabled" | tail -1
}

json_field() {
	printf '%s' "$1" | $PY -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$2" 2>/dev/null
}

t_disable_cutoff() {
	local res eof cli rc mark dev
	# one retry on a second device if the first took too long: the number includes
	# starting the CLI process, which a busy CI machine can delay on its own
	for dev in cut cut2; do
		mark=$(log_mark)
		res=$(cutoff "$dev")
		eof=$(json_field "$res" eof_ms)
		cli=$(json_field "$res" cli_ms)
		rc=$(json_field "$res" cli_rc)
		echo "    $dev: disable -> EOF ${eof} ms after starting the CLI (the CLI ran ${cli} ms, rc ${rc})"
		[ "$rc" = 0 ] || { note "device set exited $rc ($res)"; return 1; }
		[[ "$eof" =~ ^[0-9]+(\.[0-9]+)?$ ]] || { note "session not closed within 5 s ($res)"; return 1; }
		$PY -c 'import sys; sys.exit(0 if float(sys.argv[1]) < 100 else 1)' "$eof" && break
		[ $dev = cut2 ] && { note "cut off after ${eof} ms (limit 100 ms), twice"; return 1; }
	done
	audit_has "$mark" revoked "$dev" || { note "no 'revoked' audit for the cut session: $AUDIT_OUT"; return 1; }
	res=$(connack_of "$dev" 4)
	[ "$res" = "connack 0x05" ] || { note "reconnect after disable: '$res'"; return 1; }
}

t_sighup() {
	local f got mark n
	f=$(sub_start 'itest/hup' 2 15)
	got=$(kgc connect $(dev_args hup) --topic itest/hup --msg before --then "kill -HUP $GW_PID; sleep 1" | tr '\n' ' ')
	[ "$got" = "connack 0x00 puback 0x00 then rc=0 puback 0x00 " ] || { note "session across SIGHUP: '$got'"; return 1; }
	sub_wait "$f" "itest/hup before" && sub_wait "$f" "itest/hup before-after" ||
		{ note "subscriber: $(cat "$f")"; return 1; }
	# a broken config on SIGHUP changes nothing
	cp "$GW_CONF" "$GW_CONF.good"
	n=$(($(wc -l <"$GW_CONF") + 1))
	echo "this line is not ini" >>"$GW_CONF"
	mark=$(log_mark)
	kill -HUP "$GW_PID"
	sleep 1
	cp "$GW_CONF.good" "$GW_CONF"
	kill -0 "$GW_PID" 2>/dev/null || { note "daemon died on a bad reload"; return 1; }
	tail -n +"$((mark + 1))" "$GW_LOG" | grep -q "ktlsgate.conf:$n" ||
		{ note "no 'ktlsgate.conf:$n' in the log after the bad reload: $(tail -n +"$((mark + 1))" "$GW_LOG" | head -5)"; return 1; }
	got=$(connack_of ok 4)
	[ "$got" = "connack 0x00" ] || { note "after bad reload: '$got'"; return 1; }
	got=$(connack_of disabled 5)
	[ "$got" = "connack 0x87" ] || { note "policy after bad reload: '$got'"; return 1; }
}

t_pipeline() {
	local f got lvl
	f=$(sub_start 'itest/pipe/#' 2 10)
	for lvl in 4 5; do
		got=$(kgc connect $(dev_args pipe) --level $lvl --pipeline --topic "itest/pipe/$lvl" \
			--msg "pipelined behind CONNECT" | tr '\n' ' ')
		[ "$got" = "connack 0x00 puback 0x00 " ] || { note "level $lvl: '$got'"; return 1; }
	done
	sub_wait "$f" "itest/pipe/4 pipelined behind CONNECT" && sub_wait "$f" "itest/pipe/5 pipelined behind CONNECT" ||
		{ note "subscriber: $(cat "$f")"; return 1; }
}

# is_closed JSON MIN_MS MAX_MS: the probe saw the gate close within [MIN, MAX] ms.
is_closed() {
	$PY -c 'import json,sys
d=json.loads(sys.argv[1]); lo=float(sys.argv[2]); hi=float(sys.argv[3])
sys.exit(0 if d.get("closed") and lo <= d["ms"] <= hi else 1)' "$1" "$2" "$3" 2>/dev/null
}

t_bad_input() {
	local kind res mark bad=0 before after d
	# bad MQTT after a good handshake: closed at once, audited bad_mqtt
	for kind in garbage truncated oversized not_connect bad_varint; do
		mark=$(log_mark)
		res=$(kgc bad $(dev_args ok) --kind $kind --timeout 5 | tail -1)
		is_closed "$res" 0 1500 || { note "$kind: $res"; bad=1; }
		audit_has "$mark" bad_mqtt || { note "$kind: no bad_mqtt audit: $AUDIT_OUT"; bad=1; }
	done
	# an unsupported protocol level: CONNACK return code 1 (3.1.1 3.1.2.2), then close
	mark=$(log_mark)
	res=$(kgc bad $(dev_args ok) --kind bad_level --timeout 5 | tail -1)
	is_closed "$res" 0 1500 || { note "bad_level: $res"; bad=1; }
	[ "$(json_field "$res" reply)" = "20020001" ] || { note "bad_level: want CONNACK 20020001: $res"; bad=1; }
	audit_has "$mark" bad_mqtt || { note "bad_level: no bad_mqtt audit: $AUDIT_OUT"; bad=1; }
	# half a CONNECT, or nothing at all after the handshake: connect_timeout (2 s)
	for kind in partial silent; do
		mark=$(log_mark)
		res=$(kgc bad $(dev_args ok) --kind $kind --timeout 6 | tail -1)
		is_closed "$res" 1500 4500 || { note "$kind after handshake: want close after ~2000 ms: $res"; bad=1; }
		audit_has "$mark" timeout || { note "$kind: no timeout audit: $AUDIT_OUT"; bad=1; }
	done
	# TLS level: ClientHello cut then closed; ClientHello stalled; silent TCP peer
	res=$(kgc tcp --port "$GW_PORT" --kind cut_hello | tail -1)
	for kind in stall_hello silent; do
		res=$(kgc tcp --port "$GW_PORT" --kind $kind --timeout 6 | tail -1)
		is_closed "$res" 1500 4500 || { note "tcp $kind: want close after ~2000 ms: $res"; bad=1; }
	done
	# a 10 MB CONNECT: refused after its fixed header, memory does not grow by 10 MB
	before=$(rss_kb "$GW_PID")
	mark=$(log_mark)
	res=$(kgc bad $(dev_args ok) --kind huge --timeout 10 | tail -1)
	after=$(rss_kb "$GW_PID")
	echo "    10 MB CONNECT: $res; RSS ${before} -> ${after} kB"
	is_closed "$res" 0 3000 || { note "10 MB CONNECT not closed quickly: $res"; bad=1; }
	[ $((after - before)) -lt 10240 ] || { note "RSS grew by $((after - before)) kB"; bad=1; }
	audit_has "$mark" bad_mqtt || { note "10 MB CONNECT: no bad_mqtt audit: $AUDIT_OUT"; bad=1; }

	# broken config: -t exits 1 with FILE:LINE
	d="$WORK/broken"
	mkdir -p "$d"
	timeout 10 "$GATED" -t -c "$GW_CONF" >/dev/null 2>&1 || { note "-t on the good config failed"; bad=1; }
	sed '3i workers = banana' "$GW_CONF" >"$d/bad.conf"
	res=$(timeout 10 "$GATED" -t -c "$d/bad.conf" 2>&1 >/dev/null)
	kind=$?
	[ $kind = 1 ] || { note "-t on a broken config exited $kind (want 1)"; bad=1; }
	printf '%s' "$res" | grep -q "bad.conf:3" || { note "-t message lacks bad.conf:3: '$res'"; bad=1; }
	printf '[daemon]\nlisten = 127.0.0.1:1\nno_such_key = 1\n' >"$d/unknown.conf"
	res=$(timeout 10 "$GATED" -t -c "$d/unknown.conf" 2>&1 >/dev/null)
	kind=$?
	[ $kind = 1 ] && printf '%s' "$res" | grep -q "unknown.conf:3" ||
		{ note "unknown key: exit $kind, '$res' (want 1 and unknown.conf:3)"; bad=1; }

	# junk server certificate: refuses to start, says why
	mk_side_gw "$d/junkpem" || { note "side config setup failed"; bad=1; }
	echo "-----BEGIN CERTIFICATE-----
this is junk
-----END CERTIFICATE-----" >"$d/junkpem/server/chain.pem"
	res=$(timeout 10 "$GATED" -c "$d/junkpem/ktlsgate.conf" 2>&1)
	kind=$?
	if [ $kind = 0 ] || [ $kind = 124 ]; then
		note "daemon with a junk certificate file: exit $kind (want refusal)"
		bad=1
	fi
	printf '%s' "$res" | grep -qiE 'chain.pem|cert' || { note "junk cert: unclear message '$res'"; bad=1; }

	# corrupt registry: refuses to start, file unchanged
	mk_side_gw "$d/badreg" || bad=1
	head -c 8192 /dev/urandom >"$d/badreg/registry.db"
	before=$(sha256sum <"$d/badreg/registry.db")
	res=$(timeout 10 "$GATED" -c "$d/badreg/ktlsgate.conf" 2>&1)
	kind=$?
	after=$(sha256sum <"$d/badreg/registry.db")
	if [ $kind = 0 ] || [ $kind = 124 ]; then
		note "daemon with a corrupt registry: exit $kind (want refusal)"
		bad=1
	fi
	[ "$before" = "$after" ] || { note "corrupt registry file was modified"; bad=1; }
	echo "    corrupt registry: exit $kind: $(printf '%s' "$res" | tail -1)"

	# still alive and serving
	kill -0 "$GW_PID" 2>/dev/null || { note "daemon died"; return 1; }
	res=$(kgc connect $(dev_args ok) --topic itest/alive --msg alive | tr '\n' ' ')
	[ "$res" = "connack 0x00 puback 0x00 " ] || { note "after bad input: '$res'"; bad=1; }
	[ $bad = 0 ] || WHY="see above"
	return $bad
}

# mk_side_gw DIR: a copy of the gateway's config dir on other ports (not started).
mk_side_gw() {
	local dir=$1
	mkdir -p "$dir"
	write_gw_conf "$dir" "$(free_port)" "$(free_port)" "$BK_PORT" "$BK2_PORT"
	cp -r "$(dirname "$GW_CONF")/server" "$dir/server"
	cp "$(dirname "$GW_CONF")/registry.db" "$dir/registry.db"
}

t_backend_down() {
	local t0 t1 got ms
	t0=$(date +%s%N)
	got=$(connack_of bdown 5)
	t1=$(date +%s%N)
	ms=$(((t1 - t0) / 1000000))
	echo "    backend down: '$got' after ${ms} ms (incl. python start + handshake)"
	[ "$got" = "connack 0x88" ] || { note "want connack 0x88, got '$got'"; return 1; }
	[ $ms -lt 1800 ] || { note "took ${ms} ms (backend_timeout 1000 ms)"; return 1; }
	got=$(connack_of bdown 4)
	[ "$got" = "connack 0x03" ] || { note "3.1.1: want connack 0x03, got '$got'"; return 1; }
}

t_metrics() {
	local a0 a1 b0 b1 name bad=0 text
	a0=$(metric_value ktlsgate_decisions_total 'decision="allow"' 'reason="ok"')
	b0=$(metric_value ktlsgate_bytes_relayed_total 'direction="device_to_broker"')
	kgc connect $(dev_args metr) --topic itest/metrics --msg "some bytes to count" >/dev/null
	# one of each refusal the checks below look for, in case the daemon was restarted
	connack_of disabled 4 >/dev/null
	kgc connect $(dev_args expired) --peek 300 >/dev/null
	kgc bad $(dev_args ok) --kind garbage >/dev/null
	sleep 0.3
	a1=$(metric_value ktlsgate_decisions_total 'decision="allow"' 'reason="ok"')
	b1=$(metric_value ktlsgate_bytes_relayed_total 'direction="device_to_broker"')
	echo "    decisions allow/ok $a0 -> $a1; bytes device_to_broker $b0 -> $b1"
	$PY -c 'import sys; sys.exit(0 if float(sys.argv[2]) > float(sys.argv[1]) else 1)' "$a0" "$a1" ||
		{ note "allow/ok counter did not move"; bad=1; }
	$PY -c 'import sys; sys.exit(0 if float(sys.argv[2]) > float(sys.argv[1]) else 1)' "$b0" "$b1" ||
		{ note "bytes device_to_broker did not move"; bad=1; }
	text=$(metrics | grep -v '^#')
	printf '%s\n' "$text" | grep -q '^ktlsgate_connections{' || { note "metrics: no ktlsgate_connections gauge"; bad=1; }
	for name in 'ktlsgate_handshakes_total{result="ok"}' 'ktlsgate_handshakes_total{result="failed"}' \
		'reason="disabled"' 'reason="cert_expired"' 'reason="bad_mqtt"' \
		'ktlsgate_handshake_seconds_bucket' 'ktlsgate_handshake_seconds_count' \
		'direction="broker_to_device"'; do
		printf '%s\n' "$text" | grep -F "$name" | grep -qvE ' 0(\.0+)?$' ||
			{ note "metrics: no non-zero sample for $name"; bad=1; }
	done
	[ $bad = 0 ] || WHY="see above"
	return $bad
}

t_sessions() {
	local f id got i
	f="$WORK/hold.out"
	: >"$f"
	kgc connect $(dev_args kill) --hold 20 >"$f" &
	for ((i = 0; i < 100; i++)); do grep -q 'connack' "$f" && break; sleep 0.05; done
	grep -qx 'connack 0x00' "$f" || { note "kill: $(cat "$f")"; return 1; }
	got=$(kg session list --json) || { note "session list failed"; return 1; }
	# one JSON object per line (also accepted: one JSON array or object)
	id=$(printf '%s\n' "$got" | $PY -c 'import json,sys
text=sys.stdin.read()
try:
    rows=json.loads(text)
    rows=rows if isinstance(rows,list) else [rows]
except ValueError:
    rows=[json.loads(l) for l in text.splitlines() if l.strip().startswith("{")]
for d in rows:
    if d.get("device")=="kill" and all(k in d for k in ("id","peer","state","mode","backend")):
        print(d["id"]); break')
	printf '%s\n' "$got" | grep -q '^{.*"device" *: *"kill"' ||
		echo "    note: session list --json is not one object per line: $(printf '%s' "$got" | head -c 60 | tr '\n' ' ')..."
	[ -n "$id" ] || { note "session list shows no session of device kill (with id, peer, state, mode, backend): $got"; return 1; }
	local mark
	mark=$(log_mark)
	# `session kill` takes the device id (like every other CLI ID); it closes all its sessions
	kg session kill kill >/dev/null || { note "session kill kill failed"; return 1; }
	for ((i = 0; i < 40; i++)); do grep -q 'eof after' "$f" && break; sleep 0.05; done
	grep -q 'eof after' "$f" || { note "session not closed after kill: $(cat "$f")"; return 1; }
	audit_has "$mark" killed kill || { note "no 'killed' audit: $AUDIT_OUT"; return 1; }
	kg status >/dev/null || { note "status failed"; return 1; }
}

# after_each: the shared daemon must survive every test; if it did not, say so (the
# test fails) and start it again for the next one.
after_each() {
	kill -0 "$GW_PID" 2>/dev/null && return 0
	wait "$GW_PID" 2>/dev/null
	local rc=$?
	note "ktlsgated died during this test (exit status $rc); last log line: $(tail -1 "$GW_LOG" | cut -c1-160)"
	forget_pid "$GW_PID"
	start_gateway >/dev/null 2>&1 || echo "    could not restart ktlsgated"
	return 1
}

ALL_TESTS=(t_publish t_deny_connack t_tls_failures t_thumbprint t_auto_enroll
	t_registry_shared t_keyupdate t_relay_modes t_disable_cutoff t_sighup t_pipeline t_backend_down t_sessions t_bad_input t_metrics)

if ! setup; then
	echo "FAIL setup: could not build the shared PKI / broker / gateway (log: ${GW_LOG:-none})"
	[ -n "${GW_LOG:-}" ] && tail -20 "$GW_LOG"
	KG_FAILED=1
	exit 1
fi
run_tests
