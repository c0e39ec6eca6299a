#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# test-tpm.sh - the server key in a (software) TPM, end to end: `ktlsgate tpm` keygen /
# csr / info against swtpm; ktlsgated terminating TLS 1.3 and 1.2 mTLS with the key at a
# persistent handle and as a TSS2 key file, devices getting CONNACK 0 from the real
# broker behind it; the TPM commands it sends (through tpmproxy.py) are TPM2_Sign only;
# TPM absent at start (error, or the file fallback); transient objects flushed on exit
# and cleaned up after a kill -9; ktlsgate_tpm_errors_total counts a TPM gone mid-run
# (sign) and the fallback (connect), and stays 0 on good signatures; a resumed TLS 1.3
# handshake sends the TPM nothing.
# dev_args prints options meant to split into words; lib.sh reads ALL_TESTS and KG_FAILED.
# shellcheck disable=SC2046,SC2034
set -u
. "$(dirname "$0")/../integration/lib.sh"
. "$(dirname "$0")/lib.sh"

TPM2_CC_SIGN=15d
HANDLE=0x81000101
RSA_HANDLE=0x81000102

# conf_set KEY VALUE: replace "KEY = ..." in [daemon] of $GW_CONF.
conf_set() {
	sed -i "s|^$1 = .*|$1 = $2|" "$GW_CONF"
}

# tpm_section LINES...: replace the [tpm] section (kept last in the file).
tpm_section() {
	sed -i '/^\[tpm\]/,$d' "$GW_CONF"
	printf '[tpm]\n' >>"$GW_CONF"
	printf '%s\n' "$@" >>"$GW_CONF"
}

# issue_server_cert CSR NAME: the factory CA signs the CSR -> $GW_DIR/server/NAME-chain.pem
issue_server_cert() {
	local csr=$1 name=$2 ext="$WORK/server-ext.cnf"
	printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$ext"
	openssl x509 -req -in "$csr" -CA "$PKI/factory/cert.pem" -CAkey "$PKI/factory/key.pem" \
		-CAcreateserial -days 30 -sha256 -extfile "$ext" -out "$GW_DIR/server/$name-cert.pem" 2>/dev/null || return 1
	cat "$GW_DIR/server/$name-cert.pem" "$PKI/factory/cert.pem" >"$GW_DIR/server/$name-chain.pem"
}

setup() {
	kg_init tpm
	start_swtpm || return 1
	start_tpmproxy || return 1
	BK_PORT=$(free_port)
	GW_PORT=$(free_port)
	GW_MPORT=$(free_port)
	GW_DIR="$WORK/gw"
	write_gw_conf "$GW_DIR" "$GW_PORT" "$GW_MPORT" "$BK_PORT" "$(free_port)"
	GW_CONF="$GW_DIR/ktlsgate.conf"
	GW_LOG="$GW_DIR/gw.log"
	: >"$GW_LOG"
	tpm_section "tcti = $PROXY_TCTI"
	pki_setup "$WORK/pki" || return 1
	for d in dev1 dev2 dev3; do
		device_cert "$d" "$PKI/factory" || return 1
		kg device add "$d" >/dev/null || return 1
	done
	start_broker "$BK_PORT" || return 1
}

# connack ID: one kgclient connect through the gate (TLS 1.3: Python's default).
connack() {
	kgc connect $(dev_args "$1")
}

# served_pubkey [openssl s_client options]: the public key of the certificate the gate
# presents (PEM), with device dev1's certificate.
served_pubkey() {
	timeout 10 openssl s_client -connect "127.0.0.1:$GW_PORT" -CAfile "$PKI/root/cert.pem" \
		-cert "$PKI/dev/dev1/chain.pem" -key "$PKI/dev/dev1/key.pem" "$@" </dev/null 2>/dev/null |
		openssl x509 -noout -pubkey 2>/dev/null
}

# --- tests ------------------------------------------------------------------------

t_cli_keygen_info() {
	local out rc
	out=$(kg tpm keygen --handle "$HANDLE") || { note "keygen --handle failed: $out"; return 1; }
	[ "$out" = "created ECDSA P-256 key at handle:$HANDLE" ] || { note "keygen said: $out"; return 1; }
	out=$(kg tpm keygen --rsa --handle "$RSA_HANDLE") || { note "keygen --rsa failed: $out"; return 1; }
	kg tpm keygen --handle "$HANDLE" >/dev/null 2>"$WORK/err"
	rc=$?
	[ $rc -eq 2 ] && grep -q "already in use" "$WORK/err" || { note "second keygen at $HANDLE: exit $rc, $(cat "$WORK/err")"; return 1; }
	kg tpm keygen --handle 0x80000001 >/dev/null 2>&1
	rc=$?
	[ $rc -eq 1 ] || { note "keygen at a transient handle: exit $rc, want 1"; return 1; }
	kg tpm keygen --out "$GW_DIR/server/tpm.tss.pem" >/dev/null || { note "keygen --out failed"; return 1; }
	head -1 "$GW_DIR/server/tpm.tss.pem" | grep -qx -- "-----BEGIN TSS2 PRIVATE KEY-----" || { note "--out is not a TSS2 key"; return 1; }
	[ "$(stat -c %a "$GW_DIR/server/tpm.tss.pem")" = 600 ] || { note "key file mode $(stat -c %a "$GW_DIR/server/tpm.tss.pem")"; return 1; }
	kg tpm keygen --out "$GW_DIR/server/tpm.tss.pem" >/dev/null 2>&1
	rc=$?
	[ $rc -eq 2 ] || { note "keygen over an existing file: exit $rc, want 2"; return 1; }
	out=$(kg tpm info) || { note "tpm info failed"; return 1; }
	printf '%s\n' "$out" | grep -q "^persistent handles: .*$HANDLE.*$RSA_HANDLE" || { note "info: $out"; return 1; }
	printf '%s\n' "$out" | grep -q "^transient objects loaded: 0$" || { note "keygen left transients: $out"; return 1; }
	printf '%s\n' "$out" | grep -q "^manufacturer: IBM" || { note "info: $out"; return 1; }
}

t_cli_csr() {
	local f
	kg tpm csr --key "handle:$HANDLE" --cn localhost --out "$GW_DIR/server/tpm.csr" >/dev/null || { note "csr (handle) failed"; return 1; }
	openssl req -in "$GW_DIR/server/tpm.csr" -noout -verify 2>&1 | grep -q "verify OK" || { note "CSR signature does not verify"; return 1; }
	openssl req -in "$GW_DIR/server/tpm.csr" -noout -subject | grep -q "CN = localhost" || { note "CSR subject"; return 1; }
	kg tpm csr --key "$GW_DIR/server/tpm.tss.pem" --cn 127.0.0.1 >"$GW_DIR/server/tss.csr" || { note "csr (TSS2 file) failed"; return 1; }
	openssl req -in "$GW_DIR/server/tss.csr" -noout -verify 2>&1 | grep -q "verify OK" || { note "TSS2 CSR does not verify"; return 1; }
	kg tpm csr --key "handle:$RSA_HANDLE" --cn localhost --out "$GW_DIR/server/rsa.csr" >/dev/null || { note "csr (RSA) failed"; return 1; }
	openssl req -in "$GW_DIR/server/rsa.csr" -noout -verify 2>&1 | grep -q "verify OK" || { note "RSA CSR does not verify"; return 1; }
	kg tpm csr --key "$PKI/dev/dev1/key.pem" --cn x >/dev/null 2>&1
	[ $? -eq 2 ] || { note "csr with a plain PEM key: want exit 2"; return 1; }
	for f in tpm tss rsa; do
		issue_server_cert "$GW_DIR/server/$f.csr" "$f" || { note "issuing $f cert failed"; return 1; }
	done
	[ "$(tpm_transients)" = 0 ] || { note "csr left transient objects"; return 1; }
}

# start the gate with the persistent ECDSA key, TLS 1.3 and 1.2
t_tls_handle() {
	local got want v
	stop_gateway
	conf_set key "handle:$HANDLE"
	conf_set cert server/tpm-chain.pem
	start_gateway || { note "gateway did not start: $(tail -3 "$GW_LOG")"; return 1; }
	got=$(connack dev1)
	[ "$got" = "connack 0x00" ] || { note "TLS 1.3 device: $got"; return 1; }
	want=$(openssl req -in "$GW_DIR/server/tpm.csr" -noout -pubkey)
	for v in -tls1_3 -tls1_2; do
		got=$(served_pubkey "$v")
		[ -n "$got" ] && [ "$got" = "$want" ] || { note "$v: the gate does not serve the TPM key's certificate"; return 1; }
	done
	timeout 10 mosquitto_pub -h 127.0.0.1 -p "$GW_PORT" --cafile "$PKI/root/cert.pem" \
		--cert "$PKI/dev/dev2/chain.pem" --key "$PKI/dev/dev2/key.pem" -i dev2 \
		--tls-version tlsv1.2 -q 1 -t tpm/t -m hi -d 2>&1 | grep -q "received CONNACK (0)" ||
		{ note "TLS 1.2 mosquitto_pub did not get CONNACK 0"; return 1; }
	timeout 10 mosquitto_pub -h 127.0.0.1 -p "$GW_PORT" --cafile "$PKI/root/cert.pem" \
		--cert "$PKI/dev/dev3/chain.pem" --key "$PKI/dev/dev3/key.pem" -i dev3 \
		--tls-version tlsv1.3 -q 1 -t tpm/t -m hi -d 2>&1 | grep -q "received CONNACK (0)" ||
		{ note "TLS 1.3 mosquitto_pub did not get CONNACK 0"; return 1; }
}

# What the gate sends the TPM during handshakes: one TPM2_Sign each, nothing else
# (digests, ciphers, KDFs, randomness, ephemeral ECDHE keys stay in the default provider).
t_only_signatures_in_tpm() {
	local mark n i other signs groups op
	[ -n "${GW_PID:-}" ] || { note "no gateway (t_tls_handle failed)"; return 1; }
	# (TLS 1.2 needs the certificate's curve in the client's groups: P-256 in both)
	for groups in X25519:P-256 P-256; do
		for v in -tls1_3 -tls1_2; do
			mark=$(tpm_mark)
			n=4
			for ((i = 0; i < n; i++)); do
				[ -n "$(served_pubkey "$v" -groups "$groups")" ] || { note "$v $groups: handshake failed"; return 1; }
			done
			sleep 0.2
			signs=$(tpm_cmds_since "$mark" | grep -cx "$TPM2_CC_SIGN")
			other=$(tpm_cmds_since "$mark" | grep -vx "$TPM2_CC_SIGN" | sort | uniq -c | tr '\n' ' ')
			echo "    $v $groups: $n handshakes -> $signs TPM2_Sign, other: ${other:-none}"
			[ "$signs" = "$n" ] || { note "$v $groups: $signs TPM2_Sign for $n handshakes"; return 1; }
			[ -z "$other" ] || { note "$v $groups: other TPM commands: $other"; return 1; }
		done
	done
	# the key in force is the TPM's
	for op in tpm:1 file:0 tpm_fallback:0; do
		n=$(sample_value "ktlsgate_server_key_source{source=\"${op%%:*}\"}")
		[ "$n" = "${op#*:}" ] || { note "ktlsgate_server_key_source{source=${op%%:*}} = $n, want ${op#*:}"; return 1; }
	done
	# every signature succeeded: none counted as a TPM error (docs/monitoring.md)
	for op in connect load sign; do
		n=$(sample_value "ktlsgate_tpm_errors_total{op=\"$op\"}")
		[ "$n" = 0 ] || { note "ktlsgate_tpm_errors_total{op=$op} = $n after good handshakes"; return 1; }
	done
}

# TLS 1.3 resumption (issue 13, [tls] resumption on by default): a device that
# reconnects with its session ticket costs the TPM nothing; only its first, full,
# handshake is signed.
t_resumed_no_signature() {
	local mark out signs other
	[ -n "${GW_PID:-}" ] || { note "no gateway (t_tls_handle failed)"; return 1; }
	mark=$(tpm_mark)
	out=$(kgc resume $(dev_args dev1) --times 5)
	sleep 0.2
	signs=$(tpm_cmds_since "$mark" | grep -cx "$TPM2_CC_SIGN")
	other=$(tpm_cmds_since "$mark" | grep -vx "$TPM2_CC_SIGN" | sort | uniq -c | tr '\n' ' ')
	echo "    1 full + 4 resumed connections -> $signs TPM2_Sign, other: ${other:-none}"
	[ "$(printf '%s\n' "$out" | grep -c '^conn [1-4] reused TLSv1.3$')" = 4 ] ||
		{ note "not 4 resumptions: $out"; return 1; }
	[ "$(printf '%s\n' "$out" | grep -c 'connack 0x00$')" = 5 ] || { note "not 5 admissions: $out"; return 1; }
	[ "$signs" = 1 ] || { note "$signs TPM2_Sign for 1 full handshake and 4 resumptions"; return 1; }
	[ -z "$other" ] || { note "other TPM commands: $other"; return 1; }
}

# sample_value NAME{LABELS}: that exact series from a live scrape, or "absent".
sample_value() {
	metrics | awk -v s="$1" '$1 == s { v = $2; f = 1 } END { print f ? v : "absent" }'
}

# A TPM that stops answering mid-run: the handshake that needed it fails and is
# counted as ktlsgate_tpm_errors_total{op="sign"}, exactly once per handshake.
t_sign_error_counted() {
	local got n fails0 fails
	stop_gateway
	conf_set key "handle:$HANDLE"
	conf_set cert server/tpm-chain.pem
	tpm_section "tcti = $PROXY_TCTI"
	start_gateway || { note "gateway did not start: $(tail -3 "$GW_LOG")"; return 1; }
	got=$(connack dev1)
	[ "$got" = "connack 0x00" ] || { note "before: $got"; return 1; }
	n=$(sample_value 'ktlsgate_tpm_errors_total{op="sign"}')
	[ "$n" = 0 ] || { note "sign errors $n before the TPM went away"; return 1; }
	fails0=$(sample_value 'ktlsgate_handshakes_total{result="failed"}')
	kill "$PROXY_PID"
	timeout 5 tail --pid="$PROXY_PID" -f /dev/null
	forget_pid "$PROXY_PID"
	got=$(connack dev1 | head -1)
	case $got in "connack 0x00") note "a handshake without the TPM succeeded"; return 1 ;; esac
	for _ in $(seq 1 30); do
		n=$(sample_value 'ktlsgate_tpm_errors_total{op="sign"}')
		[ "$n" != 0 ] && break
		sleep 0.1
	done
	fails=$(sample_value 'ktlsgate_handshakes_total{result="failed"}')
	echo "    device after the TPM went away: $got; sign errors $n; failed handshakes $fails0 -> $fails"
	[ "$n" = 1 ] || { note "ktlsgate_tpm_errors_total{op=\"sign\"} = $n after one handshake, want 1"; return 1; }
	[ "$fails" = $((fails0 + 1)) ] || { note "failed handshakes $fails0 -> $fails, want one more"; return 1; }
	stop_gateway
	start_tpmproxy || { note "proxy did not restart"; return 1; }
	tpm_section "tcti = $PROXY_TCTI"
}

# Stop: the handle key leaves no transient; then the same with a TSS2 key file, whose
# key the provider loads as a transient object that must be flushed on exit.
t_tss2_file_and_exit_flush() {
	local got
	stop_gateway
	[ "$(tpm_transients)" = 0 ] || { note "transients after stopping (handle key): $(tpm_transients)"; return 1; }
	conf_set key server/tpm.tss.pem
	conf_set cert server/tss-chain.pem
	start_gateway || { note "gateway (TSS2 key) did not start: $(tail -3 "$GW_LOG")"; return 1; }
	got=$(connack dev1)
	[ "$got" = "connack 0x00" ] || { note "TSS2 key, TLS 1.3: $got"; return 1; }
	got=$(served_pubkey -tls1_2)
	[ "$got" = "$(openssl req -in "$GW_DIR/server/tss.csr" -noout -pubkey)" ] || { note "TSS2 key, TLS 1.2 served the wrong key"; return 1; }
	stop_gateway
	got=$(tpm_transients)
	[ "$got" = 0 ] || { note "$got transient object(s) left after a clean stop"; return 1; }
}

t_kill9_cleanup() {
	local got mark
	stop_gateway
	start_gateway || { note "gateway did not start"; return 1; }
	kill -9 "$GW_PID"
	timeout 5 tail --pid="$GW_PID" -f /dev/null
	forget_pid "$GW_PID"
	GW_PID=""
	got=$(tpm_transients)
	# the loaded key is left behind: this is what the next start must clean up
	[ "$got" -ge 1 ] || { note "expected a leftover transient after kill -9, got $got"; return 1; }
	mark=$(log_mark)
	start_gateway || { note "gateway did not start after kill -9: $(tail -3 "$GW_LOG")"; return 1; }
	tail -n +"$((mark + 1))" "$GW_LOG" | grep -q "flushed $got transient" || { note "no flush line in the log"; return 1; }
	got=$(connack dev2)
	[ "$got" = "connack 0x00" ] || { note "after kill -9 and restart: $got"; return 1; }
	stop_gateway
	[ "$(tpm_transients)" = 0 ] || { note "transients after the clean stop"; return 1; }
}

# RSA-2048 keys: keygen and CSR work (t_cli_*); the daemon does not serve them yet
# (its signing wrapper is ECDSA-only) and must say so in one line.
t_rsa_key_refused() {
	local out rc
	stop_gateway
	conf_set key "handle:$RSA_HANDLE"
	conf_set cert server/rsa-chain.pem
	out=$(timeout 10 "$GATED" -c "$GW_CONF" 2>&1)
	rc=$?
	[ $rc -ne 0 ] && [ $rc -ne 124 ] || { note "RSA TPM key: exit $rc"; return 1; }
	printf '%s\n' "$out" | grep -q "only ECDSA TPM keys" || { note "RSA TPM key: $out"; return 1; }
}

t_tpm_absent() {
	local dead out rc mark got want
	stop_gateway
	dead=$(free_port)
	conf_set key "handle:$HANDLE"
	conf_set cert server/tpm-chain.pem
	tpm_section "tcti = swtpm:host=127.0.0.1,port=$dead"
	out=$(timeout 10 "$GATED" -c "$GW_CONF" 2>&1)
	rc=$?
	[ $rc -ne 0 ] && [ $rc -ne 124 ] || { note "ktlsgated without its TPM: exit $rc"; return 1; }
	[ "$(printf '%s\n' "$out" | wc -l)" = 1 ] || { note "want one line, got: $out"; return 1; }
	printf '%s\n' "$out" | grep -q "TPM at 'swtpm:host=127.0.0.1,port=$dead': cannot connect" || { note "unclear error: $out"; return 1; }
	# the fallback: the plain file key and its own certificate, said loudly
	tpm_section "tcti = swtpm:host=127.0.0.1,port=$dead" "key_fallback = server/key.pem" \
		"cert_fallback = server/chain.pem"
	mark=$(log_mark)
	start_gateway || { note "gateway with fallback did not start: $(tail -3 "$GW_LOG")"; return 1; }
	tail -n +"$((mark + 1))" "$GW_LOG" | grep -q "TPM UNAVAILABLE.*FALLBACK to the file .*server/key.pem" || { note "no loud fallback line"; return 1; }
	got=$(connack dev3)
	[ "$got" = "connack 0x00" ] || { note "fallback key: $got"; return 1; }
	# the fallback is visible: one TPM connect error, and the certificate in use is the
	# fallback's (cert_fallback), not [daemon] cert
	got=$(sample_value 'ktlsgate_tpm_errors_total{op="connect"}')
	[ "$got" = 1 ] || { note "ktlsgate_tpm_errors_total{op=\"connect\"} = $got with the fallback, want 1"; return 1; }
	# and said by a gauge that stays as long as the fallback serves (alert KtlsgateTPMFallbackKey)
	for want in tpm_fallback:1 tpm:0 file:0; do
		got=$(sample_value "ktlsgate_server_key_source{source=\"${want%%:*}\"}")
		[ "$got" = "${want#*:}" ] || { note "ktlsgate_server_key_source{source=${want%%:*}} = $got with the fallback, want ${want#*:}"; return 1; }
	done
	got=$(sample_value ktlsgate_server_cert_not_after_timestamp_seconds)
	want=$(date -u -d "$(openssl x509 -noout -enddate -in "$GW_DIR/server/chain.pem" | sed 's/^notAfter=//')" +%s)
	[ "$got" = "$want" ] || { note "server cert notAfter $got, the fallback's is $want"; return 1; }
	stop_gateway
	tpm_section "tcti = $PROXY_TCTI"
}

ALL_TESTS=(t_cli_keygen_info t_cli_csr t_tls_handle t_only_signatures_in_tpm t_resumed_no_signature
	t_tss2_file_and_exit_flush t_kill9_cleanup t_rsa_key_refused t_tpm_absent
	t_sign_error_counted)

if ! setup; then
	echo "FAIL setup"
	KG_FAILED=1
	exit 1
fi
run_tests
