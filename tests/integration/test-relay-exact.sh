#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# test-relay-exact.sh - MQTT through ktlsgated is byte-exact in both directions and the
# switch from the handshake to the relay loses and reorders nothing. Drives
# build/kg-mqttcheck (tests/lib/kg_mqttcheck.c, docs/testing-tools.md) against the real
# daemon and mosquitto: QoS 1 payloads of random sizes 1 B..256 KiB, each checked byte
# for byte at the other end, for TLS 1.2 and 1.3 and each cipher, in the default data
# path pinned (relay = userspace: the record relay, whatever the host kernel has) and with
# relay = openssl ("userspace_ssl"); ~2000 connections that pipeline CONNECT and
# publishes behind the handshake with random record and segment boundaries; close
# and KeyUpdate handling. Its own PKI, broker and daemon.
# Two daemon defects this suite found are now regression tests (docs/testing-tools.md).
# KG_EXACT_CONNS sets the stress size (default 2000).
# lib.sh reads ALL_TESTS and KG_FAILED.
# shellcheck disable=SC2034
set -u
. "$(dirname "$0")/lib.sh"

MQC=${KG_MQTTCHECK:-$KG_TOP/build/kg-mqttcheck}
CONNS=${KG_EXACT_CONNS:-2000}
SUITES13="TLS_AES_128_GCM_SHA256 TLS_AES_256_GCM_SHA384 TLS_CHACHA20_POLY1305_SHA256"
# either key type of the server certificate: ECDSA or RSA
CIPHERS12="AES128-GCM-SHA256 AES256-GCM-SHA384 CHACHA20-POLY1305"

setup() {
	kg_init relay-exact
	unset KG_RELAY   # this file pins each relay itself
	[ -x "$MQC" ] || { echo "$MQC missing (make $MQC)" >&2; return 1; }
	BK_PORT=$(free_port)
	GW_PORT=$(free_port)
	GW_MPORT=$(free_port)
	# the switch stress opens hundreds of sessions at once from 127.0.0.1: one source
	KG_GW_LIMITS=$KG_GW_NO_SOURCE_LIMITS write_gw_conf "$WORK/gw" "$GW_PORT" "$GW_MPORT" "$BK_PORT" "$(free_port)"
	GW_CONF="$WORK/gw/ktlsgate.conf"
	GW_LOG="$WORK/gw/gw.log"
	: >"$GW_LOG"
	# Thousands of connections share one device certificate, each with its own MQTT
	# client id (the broker would take over a session whose id is reused): the client
	# id is not checked against the certificate here. --cert-dir covers per-device
	# identities (t_cert_dir).
	sed -i 's/^client_id_check = exact$/client_id_check = off/' "$GW_CONF"
	# Each relay is pinned, never left to `auto`: which data path ran must not depend
	# on whether the host kernel has kTLS (the guest suite covers the kernel paths).
	sed -i 's/^\[daemon\]$/[daemon]\nrelay = userspace/' "$GW_CONF"
	cp "$GW_CONF" "$WORK/gw/record.conf"
	sed 's/^relay = userspace$/relay = openssl/' "$WORK/gw/record.conf" >"$WORK/gw/openssl.conf"
	pki_setup "$WORK/pki" || return 1
	device_cert mc "$PKI/factory" || return 1
	kg device add mc >/dev/null || return 1
	local i
	for i in 0 1 2 3; do
		device_cert "exd-$i" "$PKI/factory" || return 1
		kg device add "exd-$i" >/dev/null || return 1
	done
	start_broker "$BK_PORT" || return 1
	start_gateway || return 1
	RELAY=record
}

# set_relay record|openssl: the config for sessions started from now on (SIGHUP).
set_relay() {
	[ "$RELAY" = "$1" ] && return 0
	cp "$WORK/gw/$1.conf" "$GW_CONF"
	kill -HUP "$GW_PID"
	sleep 0.5
	RELAY=$1
}

# mode_for RELAY: the data path the daemon reports for sessions in that config.
mode_for() {
	case $1 in
	record) echo userspace ;;
	openssl) echo userspace_ssl ;;
	esac
}

started() {
	metric_value ktlsgate_sessions_started_total "mode=\"$1\""
}

# mqc NAME ARGS...: run kg-mqttcheck with the device identity "mc"; JSON in
# $WORK/NAME.json, stderr in $WORK/NAME.err; its exit status; prints its summary line.
mqc() {
	local name=$1 rc
	shift
	timeout 300 "$MQC" --gw "127.0.0.1:$GW_PORT" --broker "127.0.0.1:$BK_PORT" \
		--ca "$PKI/root/cert.pem" --cert "$PKI/dev/mc/chain.pem" --key "$PKI/dev/mc/key.pem" \
		--client-id "$name-%u" --topic "exact/$name" "$@" >"$WORK/$name.json" 2>"$WORK/$name.err"
	rc=$?
	echo "    $name: $(grep -m1 '^kg-mqttcheck: [0-9]' "$WORK/$name.err" | sed 's/^kg-mqttcheck: //')"
	return $rc
}

# jq_ NAME PYEXPR: evaluate PYEXPR over the JSON of run NAME (as d).
jq_() {
	$PY -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$WORK/$1.json" "$2" 2>/dev/null
}

# why_failed NAME: the first failure lines of a run, for the FAIL reason.
why_failed() {
	grep -m3 -E '^(FAIL|  conn)' "$WORK/$1.err" | tr '\n' ' ' | cut -c1-400
}

# known_issue DESCRIPTION: a fixed daemon defect came back: a failure.
known_issue() {
	note "regression: $*"
	return 1
}

# exact_matrix RELAY: both directions, 1 B..256 KiB, each version and cipher.
exact_matrix() {
	local relay=$1 mode v cs name s0 s1 seed=1 bad=0 tls
	set_relay "$relay"
	mode=$(mode_for "$relay")
	for v in 1.3 1.2; do
		for cs in $([ $v = 1.3 ] && echo "$SUITES13" || echo "$CIPHERS12"); do
			name="m-$relay-$v-$cs"
			s0=$(started "$mode")
			if [ $v = 1.3 ]; then
				set -- --ciphersuites "$cs"
			else
				set -- --cipher "ECDHE-ECDSA-$cs:ECDHE-RSA-$cs"
			fi
			if ! mqc "$name" --tls $v "$@" --dir both --n 16 --min 1 --max 262144 --seed $seed --window 4; then
				note "$v $cs: $(why_failed "$name")"
				bad=1
				continue
			fi
			seed=$((seed + 1))
			s1=$(started "$mode")
			tls=$(jq_ "$name" '" ".join(d["tls"])')
			case $tls in
			*"$cs"*) ;;
			*) note "$v $cs: negotiated '$tls'"; bad=1 ;;
			esac
			[ "$(jq_ "$name" 'd["messages"]["up"] == 16 and d["messages"]["down"] == 16')" = True ] ||
				{ note "$v $cs: not 16 messages each way: $(cat "$WORK/$name.json")"; bad=1; }
			[ "$((s1 - s0))" -eq 1 ] || { note "$v $cs: sessions in mode $mode +$((s1 - s0)), want 1"; bad=1; }
		done
	done
	[ $bad = 0 ] || WHY="see above"
	return $bad
}

t_exact_record() { exact_matrix record; }
t_exact_openssl() { exact_matrix openssl; }

# The switch stress: CONNECT, SUBSCRIBE and publishes pipelined behind the handshake,
# plaintext cut at random points into SSL_writes, ciphertext sent in random segments
# with pauses; both directions; every message checked.
stress() {
	local relay=$1 n=$2 v=$3 name="s-$1-$3" mode s0 s1 t0 ok
	set_relay "$relay"
	mode=$(mode_for "$relay")
	s0=$(started "$mode")
	t0=$(date +%s.%N)
	mqc "$name" --tls "$v" --pipeline --dir both --n 4 --min 1 --max 4096 --conns "$n" --parallel 64 \
		--seed 7 --timeout 60 ||
		{ note "$(why_failed "$name")"; return 1; }
	echo "    $n connections in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s"
	s1=$(started "$mode")
	ok=$(jq_ "$name" "d['ok'] == $n and d['messages']['up'] == 4 * $n and d['messages']['down'] == 4 * $n")
	[ "$ok" = True ] || { note "counts: $(cat "$WORK/$name.json")"; return 1; }
	[ "$((s1 - s0))" -eq "$n" ] || { note "sessions in mode $mode +$((s1 - s0)), want $n"; return 1; }
}

t_switch_stress_record() { stress record "$CONNS" 1.3 && stress record $((CONNS / 2)) 1.2; }
t_switch_stress_openssl() { stress openssl $((CONNS / 4)) 1.3 && stress openssl $((CONNS / 4)) 1.2; }

# The checker itself: a damaged and a missing message must fail the run, named.
t_checker_detects() {
	set_relay record
	mqc inj-c --inject corrupt --n 6 --max 5000 --timeout 10 && { note "a corrupted message passed"; return 1; }
	[ "$(jq_ inj-c 'd["failures"]["corrupt"]')" = 1 ] || { note "corrupt not reported: $(why_failed inj-c)"; return 1; }
	grep -q 'up msg 3: .*first differing byte at offset' "$WORK/inj-c.err" || { note "no offset: $(why_failed inj-c)"; return 1; }
	mqc inj-d --inject drop --n 6 --max 5000 --timeout 10 && { note "a dropped message passed"; return 1; }
	[ "$(jq_ inj-d 'd["failures"]["lost"]')" = 1 ] || { note "loss not reported: $(why_failed inj-d)"; return 1; }
}

# Per-device identities (--cert-dir): four devices, four connections at once.
t_cert_dir() {
	set_relay record
	timeout 120 "$MQC" --gw "127.0.0.1:$GW_PORT" --broker "127.0.0.1:$BK_PORT" \
		--ca "$PKI/root/cert.pem" --cert-dir "$PKI/dev" --client-id "exd-%u" \
		--conns 4 --parallel 4 --n 8 --max 65536 >"$WORK/certdir.json" 2>"$WORK/certdir.err" ||
		{ note "$(why_failed certdir)"; return 1; }
}

# close_notify after the last PUBACK: everything delivered, the gate closes in order.
# relay = openssl answers with close_notify; the record relay must too (RFC 8446 6.1).
# A FIN without close_notify: everything delivered, the gate closes.
t_close() {
	local relay bad=0
	for relay in openssl record; do
		set_relay "$relay"
		mqc "c-notify-$relay" --close notify --dir both --n 8 --max 65536 --conns 20 --parallel 10 --close-reply any ||
			{ note "$relay close_notify: $(why_failed "c-notify-$relay")"; bad=1; }
		mqc "c-eof-$relay" --close eof --dir both --n 8 --max 65536 --conns 20 --parallel 10 ||
			{ note "$relay FIN: $(why_failed "c-eof-$relay")"; bad=1; }
	done
	[ "$(jq_ c-notify-openssl 'd["close"]["close_notify"]')" = 20 ] ||
		{ note "relay = openssl did not answer close_notify with close_notify: $(jq_ c-notify-openssl 'd["close"]')"; bad=1; }
	[ $bad = 0 ] || WHY="see above"
	return $bad
}

# Known issue 1: the record relay answers the device's close_notify with a bare FIN.
t_close_notify_reply_record() {
	set_relay record
	mqc cr --close notify --close-reply notify --n 4 --max 4096 --conns 10 --parallel 5 && return 0
	[ "$(jq_ cr 'd["close"]["eof"]')" = 10 ] || { note "$(why_failed cr)"; return 1; }
	known_issue "relay = userspace (record relay): the gate answers close_notify with a FIN, no close_notify (relay_record.c queues one only when the broker closed first)"
}

# Known issue 2: close_notify right behind the last PUBLISH (no wait for PUBACKs): the
# gate must deliver everything before the close. It close()s the broker socket with
# the broker's PUBACKs unread, the kernel sends RST, and mosquitto drops PUBLISHes
# it has not processed yet.
t_close_early() {
	local relay lost="" bad=0
	for relay in record openssl; do
		set_relay "$relay"
		if ! mqc "ce-$relay" --close notify-early --dir up --n 4 --max 4096 --conns 40 --parallel 10 --timeout 3; then
			grep -q '^FAIL .* timeout: .*up sent 4 acked [0-9] received [0-3]' "$WORK/ce-$relay.err" ||
				{ note "$relay: $(why_failed "ce-$relay")"; bad=1; }
			lost="$lost $relay: $(jq_ "ce-$relay" '40 - d["ok"]')/40 sessions lost messages;"
		fi
	done
	[ $bad = 0 ] || return 1
	[ -z "$lost" ] && return 0
	known_issue "close_notify right after the last PUBLISH:$lost the gate close()s the broker socket with unread data (RST)"
}

# TLS 1.3 KeyUpdate halfway: the record relay cannot follow it (fatal alert 10,
# unexpected_message); the OpenSSL relay follows it, and answers a requested one.
t_keyupdate() {
	local ku bad=0
	set_relay record
	for ku in not-requested requested; do
		mqc "ku-auto-$ku" --tls 1.3 --keyupdate "$ku" --expect alert:10 --n 8 --max 65536 --conns 4 --parallel 4 --timeout 10 ||
			{ note "record relay, $ku: $(why_failed "ku-auto-$ku")"; bad=1; }
	done
	set_relay openssl
	for ku in not-requested requested; do
		mqc "ku-ssl-$ku" --tls 1.3 --keyupdate "$ku" --expect continue --n 8 --max 65536 --conns 4 --parallel 4 --timeout 10 ||
			{ note "openssl relay, $ku: $(why_failed "ku-ssl-$ku")"; bad=1; }
	done
	[ "$(jq_ ku-ssl-requested 'd["keyupdate"]["peer_updates"] >= 4')" = True ] ||
		{ note "openssl relay did not answer a requested KeyUpdate with its own"; bad=1; }
	[ $bad = 0 ] || WHY="see above"
	return $bad
}

after_each() {
	set_relay record
	kill -0 "$GW_PID" 2>/dev/null && return 0
	note "ktlsgated died during this test; last log line: $(tail -1 "$GW_LOG" | cut -c1-160)"
	forget_pid "$GW_PID"
	start_gateway >/dev/null 2>&1 || echo "    could not restart ktlsgated"
	RELAY=record
	return 1
}

ALL_TESTS=(t_checker_detects t_exact_record t_exact_openssl t_switch_stress_record t_switch_stress_openssl
	t_cert_dir t_close t_keyupdate t_close_notify_reply_record t_close_early)

if ! setup; then
	echo "FAIL setup: relay-exact PKI / broker / gateway (log: ${GW_LOG:-none})"
	[ -n "${GW_LOG:-}" ] && tail -20 "$GW_LOG"
	KG_FAILED=1
	exit 1
fi
run_tests
