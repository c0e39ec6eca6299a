#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# test-listeners.sh - typed listeners (issue 15, docs/config.md "Listeners"), end to end
# with real clients and a real mosquitto behind the gate:
#   the default (mtls) listener refuses a device without a certificate with a TLS
#   alert (audit no_cert); a `tls` listener takes an X.509 device as the mtls one does
#   (the audit line names the listener and auth "ca") and asks a device without a
#   certificate for CONNECT credentials instead; `x509_only = yes` on a tls listener
#   puts the certificate requirement back; a `plain` listener needs allow_plain = yes
#   (ktlsgated -t fails without it, names the listener and warns with it); a reload
#   that changes the listeners keeps the running ones and says so; the per-listener
#   connection counters and ktlsgate_plain_listeners say what came in where.
# Prints "PASS name" / "FAIL name: why" per test and a count; KG_ONLY="t_a" runs some.
# dev_args prints options meant to split into words; lib.sh reads ALL_TESTS and KG_FAILED.
# shellcheck disable=SC2046,SC2034
set -u
. "$(dirname "$0")/lib.sh"

DEV=lst-dev

setup() {
	kg_init listeners
	BK_PORT=$(free_port)
	GW_PORT=$(free_port)
	GW_MPORT=$(free_port)
	local gw="$WORK/gw"
	write_gw_conf "$gw" "$GW_PORT" "$GW_MPORT" "$BK_PORT" "$(free_port)"
	GW_CONF="$gw/ktlsgate.conf"
	GW_LOG="$gw/gw.log"
	: >"$GW_LOG"
	add_typed_listeners "$GW_CONF"
	cp "$GW_CONF" "$gw/base.conf"
	pki_setup "$WORK/pki" || return 1
	device_cert "$DEV" "$PKI/factory" || return 1
	kg device add "$DEV" >/dev/null || return 1
	start_broker "$BK_PORT" || return 1
	start_gateway || return 1
}

after_each() {
	kill -0 "$GW_PID" 2>/dev/null && return 0
	WHY="gateway died: $(tail -5 "$GW_LOG")"
	start_gateway
	return 1
}

# nocert PORT [ARGS...]: a TLS client without a certificate; prints kgclient's lines.
nocert() {
	local port=$1
	shift
	kgc connect --port "$port" --ca "$PKI/root/cert.pem" --id "$DEV" --peek 300 "$@"
}

t_mtls_no_cert() {
	local m out
	m=$(log_mark)
	out=$(nocert "$GW_PORT")
	case "$out" in tls_error*|closed*) ;; *) note "mtls listener without a certificate: $out"; return 1 ;; esac
	audit_has "$m" no_cert || { note "no no_cert audit line"; return 1; }
	last_audit "$m" | grep -q '"listener"' && { note "the default listener is named: $(last_audit "$m")"; return 1; }
	return 0
}

t_tls_x509() {
	local m out line sub
	m=$(log_mark)
	sub=$(sub_start "lst/x509" 1 8)
	out=$(kgc connect $(dev_args "$DEV") --port "$TLS_PORT" --topic lst/x509 --msg via-tls)
	[ "$out" = $'connack 0x00\npuback 0x00' ] || { note "x509 device on the tls listener: $out"; return 1; }
	sub_wait "$sub" "lst/x509 via-tls" || { note "message did not reach the broker"; return 1; }
	audit_has "$m" ok "$DEV" allow || { note "no allow line"; return 1; }
	line=$(last_audit "$m")
	printf '%s' "$line" | grep -q '"auth":"ca"' && printf '%s' "$line" | grep -q '"listener":"one-way"' ||
		{ note "audit line lacks auth/listener: $line"; return 1; }
}

# Without a certificate on a tls listener the handshake completes and the CONNECT's
# credentials decide: none here, so CONNACK "bad user name or password" (3.1.1: 4,
# 5.0: 0x86), audit bad_credentials (test-auth.sh has the credentials themselves).
t_tls_no_cert_asks_connect() {
	local m out
	m=$(log_mark)
	out=$(nocert "$TLS_PORT")
	[ "$out" = "connack 0x04" ] || { note "no certificate, no credentials on tls listener: $out"; return 1; }
	out=$(nocert "$TLS_PORT" --level 5)
	[ "$out" = "connack 0x86" ] || { note "same over MQTT 5: $out"; return 1; }
	audit_has "$m" bad_credentials "" deny || { note "no bad_credentials line"; return 1; }
	last_audit "$m" | grep -q '"listener":"one-way"' || { note "listener not named: $(last_audit "$m")"; return 1; }
}

t_x509_only_listener() {
	local m out
	m=$(log_mark)
	out=$(nocert "$X509_PORT")
	case "$out" in tls_error*|closed*) ;; *) note "x509_only listener without a certificate: $out"; return 1 ;; esac
	audit_has "$m" no_cert || { note "no no_cert audit line"; return 1; }
	out=$(kgc connect $(dev_args "$DEV") --port "$X509_PORT")
	[ "$out" = "connack 0x00" ] || { note "x509 device on the x509_only listener: $out"; return 1; }
}

# A plain listener answers MQTT over TCP; nothing authenticates a device without
# credentials there either.
t_plain_no_credentials() {
	local out
	out=$(kgc connect --plain --port "$PLAIN_PORT" --id "$DEV")
	[ "$out" = "connack 0x04" ] || { note "plain listener, no credentials: $out"; return 1; }
	# TLS on a plain listener is garbage MQTT: closed, nothing forwarded
	out=$(nocert "$PLAIN_PORT")
	case "$out" in tls_error*|closed*|timeout*) ;; *) note "TLS to a plain listener: $out"; return 1 ;; esac
}

t_config_check() {
	local conf="$WORK/gw/plain-noallow.conf" out
	sed '/^allow_plain = yes$/d' "$WORK/gw/base.conf" >"$conf"
	out=$("$GATED" -t -c "$conf" 2>&1) && { note "-t accepted a plain listener without allow_plain"; return 1; }
	printf '%s' "$out" | grep -q "listener 'closed-net': type plain carries passwords and tokens in clear text" ||
		{ note "-t error: $out"; return 1; }
	out=$("$GATED" -t -c "$WORK/gw/base.conf" 2>&1) || { note "-t failed: $out"; return 1; }
	printf '%s\n' "$out" | grep -qx "ktlsgated: listener one-way: tls on 127.0.0.1:$TLS_PORT (certificate or CONNECT credentials)" &&
	printf '%s\n' "$out" | grep -qx "ktlsgated: listener certs-only: tls on 127.0.0.1:$X509_PORT (x509_only)" &&
	printf '%s\n' "$out" | grep -q "^ktlsgated: listener closed-net: plain on 127.0.0.1:$PLAIN_PORT: WARNING: no TLS" ||
		{ note "-t does not describe the listeners: $out"; return 1; }
	grep -q "listener closed-net: plain on 127.0.0.1:$PLAIN_PORT: WARNING" "$GW_LOG" ||
		{ note "no start-up warning for the plain listener"; return 1; }
}

t_metrics() {
	local v
	v=$(metric_value ktlsgate_plain_listeners)
	[ "$v" = 1 ] || { note "ktlsgate_plain_listeners = $v"; return 1; }
	v=$(metric_value ktlsgate_listener_connections_total 'listener="one-way"' 'type="tls"')
	[ "$v" -ge 3 ] 2>/dev/null || { note "one-way connections = $v (want >= 3 after the tests above)"; return 1; }
	v=$(metric_value ktlsgate_listener_connections_total 'listener="closed-net"' 'type="plain"')
	[ "$v" -ge 1 ] 2>/dev/null || { note "closed-net connections = $v"; return 1; }
}

# An idle gate sleeps: each worker thread (kg-workerN) wakes a few times a second for
# its deadline scan (at least every 500 ms), not every 20 ms. Counted from the kernel:
# voluntary context switches of each worker over 3 s, with nothing connected.
t_idle_wakeups() {
	local t tasks=() before=() after=() n rate bad=""
	mapfile -t tasks < <(grep -l '^kg-worker' /proc/"$GW_PID"/task/*/comm 2>/dev/null | xargs -r -n1 dirname)
	[ "${#tasks[@]}" -ge 1 ] || { note "no kg-worker threads in /proc/$GW_PID/task"; return 1; }
	for t in "${tasks[@]}"; do before+=("$(awk '/^voluntary_ctxt_switches/ {print $2}' "$t/status")"); done
	sleep 3
	for t in "${tasks[@]}"; do after+=("$(awk '/^voluntary_ctxt_switches/ {print $2}' "$t/status")"); done
	for ((n = 0; n < ${#tasks[@]}; n++)); do
		rate=$(( (after[n] - before[n]) / 3 ))
		echo "    $(cat "${tasks[n]}/comm"): $rate wake-ups/s idle"
		[ "$rate" -le 10 ] || bad="$bad $(cat "${tasks[n]}/comm")=$rate/s"
	done
	[ -z "$bad" ] || { note "idle workers wake too often:$bad (a 20 ms tick is 50/s)"; return 1; }
}

# A reload cannot re-type a listener it already accepts on: it says so and keeps it.
t_reload_keeps_listeners() {
	local out m
	m=$(log_mark)
	sed "s/^x509_only = yes$/x509_only = no/" "$WORK/gw/base.conf" >"$GW_CONF"
	kill -HUP "$GW_PID"
	for _ in $(seq 50); do
		tail -n +"$((m + 1))" "$GW_LOG" | grep -q "reload: listeners changed" && break
		sleep 0.1
	done
	cp "$WORK/gw/base.conf" "$GW_CONF"
	tail -n +"$((m + 1))" "$GW_LOG" | grep -q "reload: listeners changed: they take effect at restart" ||
		{ note "no warning about the listeners"; return 1; }
	out=$(nocert "$X509_PORT")
	case "$out" in tls_error*|closed*) ;; *) note "x509_only dropped by a reload: $out"; return 1 ;; esac
	kill -HUP "$GW_PID"
	sleep 0.5
}

ALL_TESTS=(t_mtls_no_cert t_tls_x509 t_tls_no_cert_asks_connect t_x509_only_listener
	t_plain_no_credentials t_config_check t_metrics t_idle_wakeups t_reload_keeps_listeners)

setup || { echo "FAIL setup"; exit 1; }
run_tests
