#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# test-chain-cache.sh - the intermediates cache (issue 13, "cheaper full handshakes"):
# a device that sends an intermediate is verified in full once, then under the cached
# intermediate (ktlsgate_chain_cache_{hits,misses}_total say which); the cache never
# outlives its trust: a CRL reload that revokes the intermediate, or the CA removed,
# refuses the device at once. Real ktlsgated, real mosquitto, real TLS clients.
# Prints PASS/FAIL/SKIP per test; exits non-zero if any failed.
# shellcheck disable=SC2046
set -u
. "$(dirname "$0")/lib.sh"

# PKI: root (registered, proven; [crl] root = root-crl.pem, empty at first)
#        -> line (NOT registered: only the root vouches for it) -> devices cc-a, cc-b
#        -> server certificate
setup() {
	local gw d
	kg_init chaincache
	BK_PORT=$(free_port)
	BK2_PORT=$(free_port)
	GW_PORT=$(free_port)
	GW_MPORT=$(free_port)
	gw="$WORK/gw"
	write_gw_conf "$gw" "$GW_PORT" "$GW_MPORT" "$BK_PORT" "$BK2_PORT"
	GW_CONF="$gw/ktlsgate.conf"
	GW_LOG="$gw/gw.log"
	: >"$GW_LOG"
	PKI="$WORK/pki"
	mkdir -p "$PKI/dev"
	pki root --cn "chain cache root" --out "$PKI/root" || return 1
	pki intermediate --cn "line" --ca "$PKI/root" --out "$PKI/line" || return 1
	pki server --cn localhost --ca "$PKI/root" --out "$gw/server" || return 1
	register_ca root "$PKI/root" || return 1
	for d in cc-a cc-b; do
		device_cert "$d" "$PKI/line" || return 1
		kg device add "$d" >/dev/null || { echo "device add $d failed" >&2; return 1; }
	done
	pki crl --ca "$PKI/root" --out "$gw/root-crl.pem" || return 1
	printf '\n[crl]\nroot = root-crl.pem\n' >>"$GW_CONF"
	start_broker "$BK_PORT" || return 1
	start_gateway || return 1
}

hits() { metric_value ktlsgate_chain_cache_hits_total; }
misses() { metric_value ktlsgate_chain_cache_misses_total; }

# connect_ok DEVICE: CONNECT through the gateway, CONNACK 0 wanted.
connect_ok() {
	local got
	got=$(kgc connect $(dev_args "$1") | head -1)
	[ "$got" = "connack 0x00" ] || { note "$1: '$got' (wanted connack 0x00)"; return 1; }
}

# refused DEVICE: the handshake must fail.
refused() {
	local got
	got=$(kgc connect $(dev_args "$1") --peek 500 | head -1)
	case $got in tls_error:*) ;; *) note "$1 was not refused: '$got'"; return 1 ;; esac
}

# reload: apply the config and CRL files now (`ktlsgate reload` waits for the result).
reload() {
	kg reload >/dev/null || { note "reload failed: $(tail -3 "$GW_LOG")"; return 1; }
}

# The first handshake of a device verifies the whole chain (a miss), the second, and
# another device under the same intermediate, are verified under the cached one.
t_second_handshake_hits() {
	local h0 m0 h1 m1
	reload || return 1       # a new trust: an empty cache, whatever ran before
	h0=$(hits)
	m0=$(misses)
	connect_ok cc-a || return 1
	h1=$(hits)
	m1=$(misses)
	[ "$((m1 - m0))" = 1 ] && [ "$((h1 - h0))" = 0 ] ||
		{ note "first handshake: hits +$((h1 - h0)), misses +$((m1 - m0)) (wanted +0, +1)"; return 1; }
	connect_ok cc-a || return 1
	connect_ok cc-b || return 1
	h1=$(hits)
	m1=$(misses)
	[ "$((h1 - h0))" = 2 ] && [ "$((m1 - m0))" = 1 ] ||
		{ note "two more handshakes: hits +$((h1 - h0)), misses +$((m1 - m0)) (wanted +2, +1)"; return 1; }
	echo "    hits +$((h1 - h0)), misses +$((m1 - m0))"
}

# The root's CRL, reloaded, revokes the cached intermediate: both devices refused at
# once (cert_revoked), not kept alive by the cache; a clean CRL brings them back, the
# first handshake a miss again (the new trust started empty).
t_crl_reload_revokes_cached() {
	local gw mark m0 m1
	gw=$(dirname "$GW_CONF")
	connect_ok cc-a || return 1
	connect_ok cc-b || return 1
	[ "$(hits)" -ge 1 ] || { note "no cache hit before the revocation"; return 1; }
	pki crl --ca "$PKI/root" --out "$gw/root-crl.pem" "$PKI/line/cert.pem" || { note "pki crl failed"; return 1; }
	mark=$(log_mark)
	reload || return 1
	refused cc-a || return 1
	refused cc-b || return 1
	audit_has "$mark" cert_revoked cc-b || { note "no cert_revoked audit for cc-b: $AUDIT_OUT"; return 1; }
	pki crl --ca "$PKI/root" --out "$gw/root-crl.pem" || { note "pki crl failed"; return 1; }
	reload || return 1
	m0=$(misses)
	connect_ok cc-a || return 1
	m1=$(misses)
	[ "$((m1 - m0))" = 1 ] || { note "after the reload: misses +$((m1 - m0)) (wanted +1)"; return 1; }
}

# The root removed from the registry (ca-changed rebuilds the trust) while its [crl]
# line is still configured: the rebuild skips that CRL with a warning (a CRL for a CA
# that is not registered once failed the rebuild, the daemon kept the old trust and the
# removed root's devices stayed admitted). A live session under the cached intermediate
# is cut, a new one refused; `ktlsgated -t` says the [crl] line is skipped; registered
# again, the root's devices are back and its CRL applies again.
t_ca_removed_drops_cached() {
	local i res eof rc mark
	reload || return 1
	connect_ok cc-a || return 1
	connect_ok cc-a || return 1
	[ "$(hits)" -ge 1 ] || { note "no cache hit before the removal"; return 1; }
	grep -qx 'root = root-crl.pem' "$GW_CONF" || { note "the [crl] line is not configured"; return 1; }
	mark=$(log_mark)
	res=$(kgc cutoff $(dev_args cc-a) --cmd "timeout 20 $KGCLI -c $GW_CONF ca remove root >/dev/null" | tail -1)
	rc=$(printf '%s' "$res" | $PY -c 'import json,sys; print(json.load(sys.stdin)["cli_rc"])' 2>/dev/null)
	eof=$(printf '%s' "$res" | $PY -c 'import json,sys; print(json.load(sys.stdin)["eof_ms"])' 2>/dev/null)
	[ "$rc" = 0 ] || { note "ca remove root: '$res'"; return 1; }
	[[ "$eof" =~ ^[0-9]+(\.[0-9]+)?$ ]] ||
		{ note "cc-a's live session not cut 5 s after its root was removed ($res); log: $(tail -n +"$((mark + 1))" "$GW_LOG" | grep -v '"event"' | tail -2 | cut -c1-200)"; return 1; }
	echo "    live session cut ${eof} ms after starting 'ca remove root'"
	refused cc-b || return 1
	# a reload (config re-read, the same [crl] line) succeeds too, the root still out
	reload || return 1
	refused cc-a || return 1
	tail -n +"$((mark + 1))" "$GW_LOG" | grep -q 'crl root (.*) skipped: CA root is not registered' ||
		{ note "no warning for the skipped [crl] line in the log"; return 1; }
	! tail -n +"$((mark + 1))" "$GW_LOG" | grep -q 'trust refresh failed' ||
		{ note "the trust refresh failed: $(grep 'trust refresh failed' "$GW_LOG" | tail -1)"; return 1; }
	res=$("$GATED" -t -c "$GW_CONF" 2>&1) || { note "ktlsgated -t failed: $res"; return 1; }
	[[ "$res" == *"WARNING: crl root ("*") skipped: CA root is not registered"* ]] ||
		{ note "ktlsgated -t does not say the [crl] line is skipped: $res"; return 1; }
	register_ca root "$PKI/root" || { note "registering the root again failed"; return 1; }
	for ((i = 0; i < 50; i++)); do
		if [ "$(kgc connect $(dev_args cc-b) | head -1)" = "connack 0x00" ]; then
			res=$("$GATED" -t -c "$GW_CONF" 2>&1)
			[[ "$res" != *"skipped"* && "$res" == *"crl root ("*"): valid"* ]] ||
				{ note "root registered again, but -t says: $res"; return 1; }
			return 0
		fi
		sleep 0.1
	done
	note "cc-b not admitted again 5 s after its root came back"
	return 1
}

after_each() {
	kill -0 "$GW_PID" 2>/dev/null && return 0
	note "ktlsgated died during this test; last log line: $(tail -1 "$GW_LOG" | cut -c1-160)"
	forget_pid "$GW_PID"
	start_gateway >/dev/null 2>&1 || echo "    could not restart ktlsgated"
	return 1
}

ALL_TESTS=(t_second_handshake_hits t_crl_reload_revokes_cached t_ca_removed_drops_cached)

if ! setup; then
	echo "FAIL setup: could not build the PKI / brokers / gateway (log: ${GW_LOG:-none})"
	[ -n "${GW_LOG:-}" ] && tail -20 "$GW_LOG"
	KG_FAILED=1
	exit 1
fi
run_tests
