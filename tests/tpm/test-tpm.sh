#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# test-tpm.sh - the server key in a (software) TPM, end to end: `ktlsgate tpm` keygen /
# csr / info against swtpm; ktlsgated terminating TLS 1.3 and 1.2 mTLS with the key at a
# persistent handle and as a TSS2 key file, devices getting CONNACK 0 from the real
# broker behind it; the TPM commands it sends (through tpmproxy.py) are TPM2_Sign only;
# TPM absent at start (error, or the file fallback); transient objects flushed on exit
# and cleaned up after a kill -9; ktlsgate_tpm_errors_total counts a TPM gone mid-run
# (sign) and the fallback (connect), and stays 0 on good signatures; a resumed TLS 1.3
# handshake sends the TPM nothing; the session-ticket keys sealed to the TPM survive a
# restart (a corrupted, foreign-TPM or trust-changed file: fresh keys; a file key or
# resumption = off: no file).
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
		n=$(sample_value "ktlsgate_tpm_errors_total{kind=\"$op\"}")
		[ "$n" = 0 ] || { note "ktlsgate_tpm_errors_total{kind=$op} = $n after good handshakes"; return 1; }
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
# counted as ktlsgate_tpm_errors_total{kind="sign"}, exactly once per handshake.
t_sign_error_counted() {
	local got n fails0 fails
	stop_gateway
	conf_set key "handle:$HANDLE"
	conf_set cert server/tpm-chain.pem
	tpm_section "tcti = $PROXY_TCTI"
	start_gateway || { note "gateway did not start: $(tail -3 "$GW_LOG")"; return 1; }
	got=$(connack dev1)
	[ "$got" = "connack 0x00" ] || { note "before: $got"; return 1; }
	n=$(sample_value 'ktlsgate_tpm_errors_total{kind="sign"}')
	[ "$n" = 0 ] || { note "sign errors $n before the TPM went away"; return 1; }
	fails0=$(sample_value 'ktlsgate_handshakes_total{result="failed"}')
	kill "$PROXY_PID"
	timeout 5 tail --pid="$PROXY_PID" -f /dev/null
	forget_pid "$PROXY_PID"
	got=$(connack dev1 | head -1)
	case $got in "connack 0x00") note "a handshake without the TPM succeeded"; return 1 ;; esac
	for _ in $(seq 1 30); do
		n=$(sample_value 'ktlsgate_tpm_errors_total{kind="sign"}')
		[ "$n" != 0 ] && break
		sleep 0.1
	done
	fails=$(sample_value 'ktlsgate_handshakes_total{result="failed"}')
	echo "    device after the TPM went away: $got; sign errors $n; failed handshakes $fails0 -> $fails"
	[ "$n" = 1 ] || { note "ktlsgate_tpm_errors_total{kind=\"sign\"} = $n after one handshake, want 1"; return 1; }
	[ "$fails" = $((fails0 + 1)) ] || { note "failed handshakes $fails0 -> $fails, want one more"; return 1; }
	stop_gateway
	start_tpmproxy || { note "proxy did not restart"; return 1; }
	tpm_section "tcti = $PROXY_TCTI"
}

# A reload builds a new TLS context on the same signer (one TPM connection for the
# process's life): handshakes go on; a reload that moves the TPM (tcti) is refused and
# the running configuration kept.
t_reload_keeps_signer() {
	local got
	[ -n "${GW_PID:-}" ] || { note "no gateway (t_tls_handle failed)"; return 1; }
	got=$(kg reload 2>&1) || { note "reload: $got"; return 1; }
	got=$(connack dev1)
	[ "$got" = "connack 0x00" ] || { note "after a reload: $got"; return 1; }
	tpm_section "tcti = swtpm:host=127.0.0.1,port=$(free_port)"
	got=$(kg reload 2>&1) && { note "a reload to another TPM succeeded: $got"; tpm_section "tcti = $PROXY_TCTI"; return 1; }
	tpm_section "tcti = $PROXY_TCTI"
	grep -q "restart needed" <<<"$got" || { note "reload to another TPM: $got"; return 1; }
	got=$(connack dev2)
	[ "$got" = "connack 0x00" ] || { note "after a refused reload: $got"; return 1; }
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

# RSA-2048 in the daemon: the TPM does the raw RSA operation, OpenSSL pads (PSS for
# TLS 1.3 and a TLS 1.2 client offering it, PKCS#1 v1.5 for one that offers only that).
t_rsa_tls() {
	local got want v
	stop_gateway
	conf_set key "handle:$RSA_HANDLE"
	conf_set cert server/rsa-chain.pem
	tpm_section "tcti = $PROXY_TCTI"
	# -t signs once outside a handshake (the synchronous path), PSS and PKCS#1 v1.5
	got=$(timeout 20 "$GATED" -t -c "$GW_CONF" 2>&1) || { note "ktlsgated -t (RSA): $got"; return 1; }
	grep -q "TPM key handle:$RSA_HANDLE: test signature made and verified" <<<"$got" || { note "ktlsgated -t (RSA): $got"; return 1; }
	start_gateway || { note "gateway (RSA TPM key) did not start: $(tail -3 "$GW_LOG")"; return 1; }
	got=$(connack dev1)
	[ "$got" = "connack 0x00" ] || { note "RSA key, TLS 1.3 device: $got"; return 1; }
	want=$(openssl req -in "$GW_DIR/server/rsa.csr" -noout -pubkey)
	for v in "-tls1_3" "-tls1_2" "-tls1_2 -sigalgs RSA+SHA256" "-tls1_2 -sigalgs rsa_pss_rsae_sha256" "-tls1_3 -sigalgs rsa_pss_rsae_sha384"; do
		# shellcheck disable=SC2086
		got=$(served_pubkey $v)
		[ -n "$got" ] && [ "$got" = "$want" ] || { note "$v: no handshake with the RSA TPM key"; return 1; }
	done
	timeout 10 mosquitto_pub -h 127.0.0.1 -p "$GW_PORT" --cafile "$PKI/root/cert.pem" \
		--cert "$PKI/dev/dev2/chain.pem" --key "$PKI/dev/dev2/key.pem" -i dev2 \
		--tls-version tlsv1.2 -q 1 -t tpm/t -m hi -d 2>&1 | grep -q "received CONNACK (0)" ||
		{ note "RSA key: TLS 1.2 mosquitto_pub did not get CONNACK 0"; return 1; }
	got=$(sample_value 'ktlsgate_tpm_errors_total{kind="sign"}')
	[ "$got" = 0 ] || { note "sign errors $got with the RSA key"; return 1; }
	stop_gateway
}

# The same with an RSA-2048 server key in a plain PEM file (no TPM, no ASYNC job): the
# baseline the TPM RSA key is compared with.
t_rsa_file_key() {
	local got want v
	stop_gateway
	openssl req -new -newkey rsa:2048 -nodes -keyout "$GW_DIR/server/rsafile-key.pem" \
		-subj /CN=localhost -out "$WORK/rsafile.csr" 2>/dev/null || { note "openssl req failed"; return 1; }
	issue_server_cert "$WORK/rsafile.csr" rsafile || { note "issuing the RSA file cert failed"; return 1; }
	conf_set key server/rsafile-key.pem
	conf_set cert server/rsafile-chain.pem
	start_gateway || { note "gateway (RSA file key) did not start: $(tail -3 "$GW_LOG")"; return 1; }
	got=$(connack dev1)
	[ "$got" = "connack 0x00" ] || { note "RSA file key, TLS 1.3 device: $got"; return 1; }
	want=$(openssl pkey -in "$GW_DIR/server/rsafile-key.pem" -pubout)
	for v in "-tls1_3" "-tls1_2 -sigalgs RSA+SHA256" "-tls1_2 -sigalgs rsa_pss_rsae_sha256"; do
		# shellcheck disable=SC2086
		got=$(served_pubkey $v)
		[ -n "$got" ] && [ "$got" = "$want" ] || { note "$v: no handshake with the RSA file key"; return 1; }
	done
	[ "$(sample_value 'ktlsgate_server_key_source{source="file"}')" = 1 ] || { note "key source is not file"; return 1; }
	[ "$(sample_value ktlsgate_tpm_up)" = absent ] || { note "ktlsgate_tpm_up exported without a TPM key"; return 1; }
	stop_gateway
}

# A sign-only RSA key (what `tpm keygen --rsa` made before: scheme fixed, no decrypt)
# cannot do PSS: the start fails and says which command makes a usable one.
t_rsa_sign_only_refused() {
	local out rc d="$WORK/oldrsa" h=0x81000103
	stop_gateway
	mkdir -p "$d"
	{ timeout 20 tpm2_flushcontext -T "$SWTPM_TCTI" -t &&
		timeout 20 tpm2_createprimary -T "$SWTPM_TCTI" -C o -c "$d/p.ctx" &&
		timeout 20 tpm2_flushcontext -T "$SWTPM_TCTI" -t &&
		timeout 20 tpm2_create -T "$SWTPM_TCTI" -C "$d/p.ctx" -G rsa2048:rsassa-sha256:null \
			-a 'sign|fixedtpm|fixedparent|sensitivedataorigin|userwithauth' -u "$d/k.pub" -r "$d/k.priv" &&
		timeout 20 tpm2_flushcontext -T "$SWTPM_TCTI" -t &&
		timeout 20 tpm2_load -T "$SWTPM_TCTI" -C "$d/p.ctx" -u "$d/k.pub" -r "$d/k.priv" -c "$d/k.ctx" &&
		timeout 20 tpm2_flushcontext -T "$SWTPM_TCTI" -t &&
		timeout 20 tpm2_evictcontrol -T "$SWTPM_TCTI" -C o -c "$d/k.ctx" "$h" &&
		timeout 20 tpm2_flushcontext -T "$SWTPM_TCTI" -t; } >"$d/log" 2>&1 ||
		{ note "making a sign-only RSA key with tpm2-tools failed: $(tail -3 "$d/log")"; return 1; }
	conf_set key "handle:$h"
	conf_set cert server/rsa-chain.pem
	out=$(timeout 10 "$GATED" -c "$GW_CONF" 2>&1)
	rc=$?
	[ $rc -ne 0 ] && [ $rc -ne 124 ] || { note "sign-only RSA TPM key: exit $rc"; return 1; }
	printf '%s\n' "$out" | grep -q "sign-only.*ktlsgate tpm keygen --rsa" || { note "sign-only RSA TPM key: $out"; return 1; }
}

# daemon_extra LINES...: these lines (and no earlier extras) right after [daemon].
daemon_extra() {
	local l
	sed -i '/; t-extra$/d' "$GW_CONF"
	for l in "$@"; do
		sed -i "/^\[daemon\]/a $l ; t-extra" "$GW_CONF"
	done
}

# livecheck CMD NEWDEV: device dev1 holds a session, CMD runs, NEWDEV starts a full
# handshake and dev1 pings meanwhile (tests/tpm/livecheck.py); sets PING_MS, HS, HS_MS.
livecheck() {
	local out
	out=$(timeout 90 $PY "$KG_TPM_DIR/livecheck.py" --port "$GW_PORT" --ca "$PKI/root/cert.pem" \
		--live-cert "$PKI/dev/dev1/chain.pem" --live-key "$PKI/dev/dev1/key.pem" --live-id dev1 \
		--new-cert "$PKI/dev/$2/chain.pem" --new-key "$PKI/dev/$2/key.pem" --cmd "$1")
	echo "    $out"
	PING_MS=$(sed -n 's/.*ping_ms=\(-\?[0-9]*\).*/\1/p' <<<"$out")
	HS=$(sed -n 's/.* hs=\([^ ]*\).*/\1/p' <<<"$out")
	HS_MS=$(sed -n 's/.*hs_ms=\(-\?[0-9]*\).*/\1/p' <<<"$out")
	[ -n "$PING_MS" ] && [ -n "$HS_MS" ]
}

# wait_connack ID SECONDS: until the device gets CONNACK 0 (a new full handshake).
wait_connack() {
	local i
	for ((i = 0; i < $2 * 4; i++)); do
		[ "$(connack "$1" 2>/dev/null | head -1)" = "connack 0x00" ] && return 0
		sleep 0.25
	done
	return 1
}

# A stopped TPM (SIGSTOP) never blocks the worker: with one worker, a live session's
# PINGREQ is answered while a new handshake waits for its signature; that handshake
# fails with internal_error after sign_timeout_ms (audit tpm_unavailable), before the
# handshake's own deadline; while the
# TPM call is stuck the next one fails at once; SIGCONT: handshakes succeed again.
t_stopped_tpm_never_blocks() {
	local mark t0 t1 got rc=0
	stop_gateway
	conf_set key "handle:$HANDLE"
	conf_set cert server/tpm-chain.pem
	conf_set workers 1
	daemon_extra "relay = userspace"
	# well below the handshake's own deadline, even on a loaded machine
	conf_set handshake_timeout_ms 5000
	tpm_section "tcti = $PROXY_TCTI" "sign_timeout_ms = 1000" "sign_queue = 16"
	got=$(timeout 20 "$GATED" -t -c "$GW_CONF" 2>&1) || { note "ktlsgated -t: $got"; return 1; }
	grep -q "TPM signer: queue of 16 signature(s), 1000ms deadline" <<<"$got" || { note "ktlsgated -t: $got"; return 1; }
	grep -q "TPM key handle:$HANDLE: test signature made and verified" <<<"$got" || { note "ktlsgated -t: $got"; return 1; }
	start_gateway || { note "gateway did not start: $(tail -3 "$GW_LOG")"; return 1; }
	[ "$(connack dev2)" = "connack 0x00" ] || { note "before: no CONNACK 0"; return 1; }
	mark=$(log_mark)
	livecheck "kill -STOP $SWTPM_PID" dev2 || rc=1
	if [ $rc = 0 ]; then
		t0=$(date +%s%N)
		got=$(connack dev3 | head -1)
		t1=$(date +%s%N)
		echo "    while stalled: $got in $(((t1 - t0) / 1000000)) ms"
	fi
	kill -CONT "$SWTPM_PID"
	[ $rc = 0 ] || { note "livecheck did not run"; return 1; }
	[ "$PING_MS" -ge 0 ] && [ "$PING_MS" -lt 1000 ] || { note "PINGREQ answered in $PING_MS ms while a handshake waited for the TPM"; return 1; }
	case $HS in tls_error:*INTERNAL_ERROR*) ;; *) note "the waiting handshake: $HS"; return 1 ;; esac
	[ "$HS_MS" -ge 900 ] && [ "$HS_MS" -lt 4500 ] || { note "the waiting handshake ended after $HS_MS ms (sign_timeout_ms 1000, handshake_timeout_ms 5000)"; return 1; }
	case $got in *INTERNAL_ERROR*) ;; *) note "a handshake while the TPM call is stuck: $got"; return 1 ;; esac
	[ $(((t1 - t0) / 1000000)) -lt 2000 ] || { note "the stalled signer did not fail fast"; return 1; }
	audit_has "$mark" tpm_unavailable || { note "no tpm_unavailable audit"; return 1; }
	got=$(sample_value 'ktlsgate_tpm_errors_total{kind="timeout"}')
	[ "$got" != absent ] && [ "$got" -ge 1 ] || { note "ktlsgate_tpm_errors_total{kind=timeout} = $got"; return 1; }
	wait_connack dev3 15 || { note "no CONNACK 0 after SIGCONT"; return 1; }
	got=$(sample_value ktlsgate_tpm_up)
	[ "$got" = 1 ] || { note "ktlsgate_tpm_up = $got after SIGCONT"; return 1; }
}

# A TPM that takes the connection and never answers (swtpm SIGSTOPped) at start: the
# daemon does not hang; it gives up after KG_TPM_START_TIMEOUT_S (10 s) with one line
# that says so, and exits non-zero (systemd then restarts it: a stalled TPM is not a
# config error to wait out silently).
t_stopped_tpm_at_start() {
	local out rc=0 t0 t1
	stop_gateway
	conf_set key "handle:$HANDLE"
	conf_set cert server/tpm-chain.pem
	tpm_section "tcti = $PROXY_TCTI"
	kill -STOP "$SWTPM_PID"
	t0=$(date +%s)
	out=$(timeout 40 "$GATED" -c "$GW_CONF" 2>&1) || rc=$?
	t1=$(date +%s)
	kill -CONT "$SWTPM_PID"
	echo "    exit $rc after $((t1 - t0)) s: $(printf '%s\n' "$out" | grep -m1 'did not answer')"
	[ "$rc" != 0 ] && [ "$rc" != 124 ] || { note "start with a stopped TPM: exit $rc (124: hung)"; return 1; }
	[ $((t1 - t0)) -ge 9 ] && [ $((t1 - t0)) -le 25 ] || { note "gave up after $((t1 - t0)) s, want about 10"; return 1; }
	grep -q "the TPM did not answer within 10 s" <<<"$out" || { note "no clear line: $(tail -3 <<<"$out")"; return 1; }
	# the TPM answers again: a start works
	start_gateway || { note "gateway did not start after SIGCONT: $(tail -3 "$GW_LOG")"; return 1; }
	[ "$(connack dev2)" = "connack 0x00" ] || { note "after SIGCONT: no CONNACK 0"; return 1; }
}

# swtpm killed mid-run and started again: the live session stays, a new full
# handshake fails with an alert (audit tpm_unavailable, ktlsgate_tpm_up 0), and once
# swtpm is back the signer reconnects and handshakes succeed, without a restart.
t_tpm_killed_and_back() {
	local mark got old
	[ -n "${GW_PID:-}" ] || { note "no gateway (t_stopped_tpm_never_blocks failed)"; return 1; }
	mark=$(log_mark)
	old=$SWTPM_PID
	livecheck "kill -9 $old" dev2 || { note "livecheck did not run"; return 1; }
	timeout 5 tail --pid="$old" -f /dev/null
	forget_pid "$old"
	[ "$PING_MS" -ge 0 ] && [ "$PING_MS" -lt 1000 ] || { note "PINGREQ answered in $PING_MS ms with the TPM gone"; return 1; }
	case $HS in tls_error:*INTERNAL_ERROR*) ;; *) note "a handshake with the TPM gone: $HS"; return 1 ;; esac
	audit_has "$mark" tpm_unavailable || { note "no tpm_unavailable audit"; return 1; }
	got=$(sample_value ktlsgate_tpm_up)
	[ "$got" = 0 ] || { note "ktlsgate_tpm_up = $got with the TPM gone"; return 1; }
	got=$(connack dev3 | head -1)
	case $got in *INTERNAL_ERROR*) ;; *) note "a second handshake with the TPM gone: $got"; return 1 ;; esac
	restart_swtpm || { note "swtpm did not restart"; return 1; }
	wait_connack dev3 20 || { note "no CONNACK 0 after swtpm came back"; return 1; }
	got=$(sample_value ktlsgate_tpm_up)
	[ "$got" = 1 ] || { note "ktlsgate_tpm_up = $got after swtpm came back"; return 1; }
	grep -q "TPM signer: up again" "$GW_LOG" || { note "no 'up again' log line"; return 1; }
	kill -0 "$GW_PID" || { note "the gateway died"; return 1; }
	stop_gateway
	conf_set workers 2
	conf_set handshake_timeout_ms 2000
	daemon_extra
}

# A device that hangs up while its handshake waits for the TPM (a slow TPM: 1 s per
# TPM2_Sign through the proxy): the paused job is ended before its SSL is freed (no
# crash, no leak under ASan), it is no TPM timeout, and the next handshake succeeds.
t_close_while_waiting() {
	local mark got first
	stop_gateway
	kill "$PROXY_PID"
	timeout 5 tail --pid="$PROXY_PID" -f /dev/null
	forget_pid "$PROXY_PID"
	start_tpmproxy --sign-delay-ms 1000 || { note "slow proxy did not start"; return 1; }
	conf_set key "handle:$HANDLE"
	conf_set cert server/tpm-chain.pem
	# the next handshake may queue behind the abandoned signature: 2 s of TPM
	conf_set handshake_timeout_ms 8000
	tpm_section "tcti = $PROXY_TCTI" "sign_timeout_ms = 3000"
	conf_set log_level debug
	first=$(log_mark)
	start_gateway || { note "gateway did not start: $(tail -3 "$GW_LOG")"; return 1; }
	conf_set log_level info
	mark=$(log_mark)
	# the ClientHello goes out, the client is killed while the gate waits for the TPM
	timeout 20 $PY - "$GW_PORT" "$PKI/root/cert.pem" "$PKI/dev/dev1/chain.pem" "$PKI/dev/dev1/key.pem" <<'EOF'
import socket, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[2])
ctx.check_hostname = False
ctx.load_cert_chain(sys.argv[3], sys.argv[4])
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.settimeout(0.3)
try:
    ctx.wrap_socket(s, server_hostname="localhost")
except (socket.timeout, OSError):
    pass
s.close()
EOF
	audit_has "$mark" peer_closed || { note "no peer_closed audit for the client that left"; return 1; }
	tail -n +"$((mark + 1))" "$GW_LOG" | grep -q "closed while its handshake waits for the TPM" ||
		{ note "the client did not leave while the gate waited for the TPM"; return 1; }
	got=$(connack dev2)
	[ "$got" = "connack 0x00" ] || { note "after a client left mid-wait: $got"; return 1; }
	kill -0 "$GW_PID" || { note "the gateway died"; return 1; }
	for got in timeout sign queue_full; do
		[ "$(sample_value "ktlsgate_tpm_errors_total{kind=\"$got\"}")" = 0 ] || { note "ktlsgate_tpm_errors_total{kind=$got} after a client left"; return 1; }
	done
	got=$(sample_value ktlsgate_tpm_sign_seconds_count)
	[ "$got" != absent ] && [ "$got" -ge 2 ] || { note "ktlsgate_tpm_sign_seconds_count = $got"; return 1; }
	got=$(sample_value 'ktlsgate_tpm_sign_seconds_bucket{le="0.5"}')
	[ "$got" = 0 ] || { note "a 1 s signature counted under 0.5 s ($got)"; return 1; }
	stop_gateway
	# under the ASan build (GATED=build/asan/ktlsgated): a paused job left behind leaks
	# its fibre, which LeakSanitizer reports at exit
	! tail -n +"$((first + 1))" "$GW_LOG" | grep -q "Sanitizer" ||
		{ note "sanitizer report: $(tail -n +"$((first + 1))" "$GW_LOG" | grep -m1 SUMMARY)"; return 1; }
}

# More handshakes waiting for a slow TPM (1 s per TPM2_Sign, t_close_while_waiting's
# proxy) than [tpm] sign_queue: the extra ones fail at once (queue_full,
# tpm_unavailable), the others succeed. Puts the plain proxy back.
t_queue_full() {
	local mark i n ok=0 full pids=()
	stop_gateway
	# one signing (1 s), one queued (done at 2 s), within both deadlines
	conf_set handshake_timeout_ms 8000
	tpm_section "tcti = $PROXY_TCTI" "sign_queue = 1" "sign_timeout_ms = 3000"
	start_gateway || { note "gateway did not start: $(tail -3 "$GW_LOG")"; return 1; }
	mark=$(log_mark)
	# one signing, one queued, the rest refused: 5 devices at once
	for i in 1 2 3 1 2; do
		connack "dev$i" >"$WORK/q.$i.$RANDOM" 2>&1 &
		pids+=($!)
	done
	wait "${pids[@]}"   # (a bare wait would wait for the gateway too)
	ok=$(cat "$WORK"/q.* | grep -c "^connack 0x00")
	n=$(cat "$WORK"/q.* | grep -c "INTERNAL_ERROR")
	rm -f "$WORK"/q.*
	full=$(sample_value 'ktlsgate_tpm_errors_total{kind="queue_full"}')
	echo "    5 handshakes at once, sign_queue 1: $ok CONNACK 0, $n internal_error, queue_full $full"
	[ "$ok" -ge 1 ] || { note "no handshake got through"; return 1; }
	[ "$full" != absent ] && [ "$full" -ge 1 ] && [ "$n" -ge "$full" ] || { note "queue_full $full, refused $n"; return 1; }
	audit_has "$mark" tpm_unavailable || { note "no tpm_unavailable audit"; return 1; }
	stop_gateway
	conf_set handshake_timeout_ms 2000
	kill "$PROXY_PID"
	timeout 5 tail --pid="$PROXY_PID" -f /dev/null
	forget_pid "$PROXY_PID"
	start_tpmproxy || { note "proxy did not restart"; return 1; }
	tpm_section "tcti = $PROXY_TCTI"
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
	got=$(sample_value 'ktlsgate_tpm_errors_total{kind="connect"}')
	[ "$got" = 1 ] || { note "ktlsgate_tpm_errors_total{kind=\"connect\"} = $got with the fallback, want 1"; return 1; }
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

ALL_TESTS=(t_cli_keygen_info t_cli_csr t_tls_handle t_only_signatures_in_tpm t_resumed_no_signature t_reload_keeps_signer
	t_tss2_file_and_exit_flush t_kill9_cleanup t_rsa_tls t_rsa_file_key t_rsa_sign_only_refused
	t_stopped_tpm_at_start t_stopped_tpm_never_blocks t_tpm_killed_and_back t_close_while_waiting t_queue_full
	t_tpm_absent t_sign_error_counted)

# --- certified-leaf mode (issue 13) --------------------------------------------------
# [tpm] mode = certified-leaf: the TPM key's certificate (CA:TRUE, pathlen 0) issues a
# short-lived leaf for a P-256 key made in memory; handshakes are signed with that key,
# the TPM signs once per leaf. The chain served is leaf -> TPM cert -> factory.

# issue_tpm_ca_cert CSR NAME: the factory CA issues the TPM key's certificate as a CA
# that may issue leaves only (pathlen:0) -> $GW_DIR/server/NAME-chain.pem
issue_tpm_ca_cert() {
	local csr=$1 name=$2 ext="$WORK/tpm-ca-ext.cnf"
	printf '%s\n' 'basicConstraints=critical,CA:TRUE,pathlen:0' \
		'keyUsage=critical,digitalSignature,keyCertSign' 'extendedKeyUsage=serverAuth' \
		'subjectAltName=DNS:localhost,IP:127.0.0.1' 'subjectKeyIdentifier=hash' \
		'authorityKeyIdentifier=keyid:always' >"$ext"
	openssl x509 -req -in "$csr" -CA "$PKI/factory/cert.pem" -CAkey "$PKI/factory/key.pem" \
		-CAcreateserial -days 30 -sha256 -extfile "$ext" -out "$GW_DIR/server/$name-cert.pem" 2>/dev/null || return 1
	cat "$GW_DIR/server/$name-cert.pem" "$PKI/factory/cert.pem" >"$GW_DIR/server/$name-chain.pem"
}

# served_chain DIR [s_client options]: the certificates the gate sends, one file each
# (DIR/0.pem is the leaf); prints how many.
served_chain() {
	local dir=$1
	shift
	rm -rf "$dir"
	mkdir -p "$dir"
	timeout 10 openssl s_client -connect "127.0.0.1:$GW_PORT" -showcerts -CAfile "$PKI/root/cert.pem" \
		-cert "$PKI/dev/dev1/chain.pem" -key "$PKI/dev/dev1/key.pem" "$@" </dev/null 2>/dev/null |
		awk -v d="$dir" '/-----BEGIN CERTIFICATE-----/ { f = d "/" n++ ".pem" } f { print > f } /-----END CERTIFICATE-----/ { f = "" } END { print n + 0 }'
}

# served_serial [s_client options]: the serial of the certificate the gate presents.
served_serial() {
	timeout 10 openssl s_client -connect "127.0.0.1:$GW_PORT" -CAfile "$PKI/root/cert.pem" \
		-cert "$PKI/dev/dev1/chain.pem" -key "$PKI/dev/dev1/key.pem" "$@" </dev/null 2>/dev/null |
		openssl x509 -noout -serial 2>/dev/null | sed 's/^serial=//'
}

# leaf_conf LIFETIME CHAIN: certified-leaf mode with the ECDSA key at $HANDLE and the
# given [daemon] cert. leaf_gateway LIFETIME CHAIN: restart the gate so.
leaf_conf() {
	conf_set key "handle:$HANDLE"
	conf_set cert "$2"
	tpm_section "tcti = $PROXY_TCTI" "mode = certified-leaf" "leaf_lifetime = $1"
}

leaf_gateway() {
	stop_gateway
	leaf_conf "$@"
	start_gateway
}

# The TPM certificate of t_cli_csr is CA:FALSE: certified-leaf refuses to start (and
# -t refuses the config), in one line saying what the certificate needs.
t_leaf_issuer_not_ca_refused() {
	local out rc
	stop_gateway
	conf_set key "handle:$HANDLE"
	conf_set cert server/tpm-chain.pem
	tpm_section "tcti = $PROXY_TCTI" "mode = certified-leaf"
	out=$(timeout 20 "$GATED" -c "$GW_CONF" 2>&1)
	rc=$?
	[ $rc -ne 0 ] && [ $rc -ne 124 ] || { note "started with a CA:FALSE TPM certificate: exit $rc"; return 1; }
	[ "$(printf '%s\n' "$out" | wc -l)" = 1 ] || { note "want one line, got: $out"; return 1; }
	printf '%s\n' "$out" | grep -q "cannot issue the leaf: it needs basicConstraints CA:TRUE (pathlen:0) and keyUsage keyCertSign" ||
		{ note "unclear refusal: $out"; return 1; }
	out=$(timeout 20 "$GATED" -t -c "$GW_CONF" 2>&1)
	rc=$?
	[ $rc -eq 1 ] && printf '%s\n' "$out" | grep -q "cannot issue the leaf" || { note "-t: exit $rc: $out"; return 1; }
	tpm_section "tcti = $PROXY_TCTI"
}

# TLS 1.3 and 1.2 through a certified leaf: CONNACK 0; the served chain is leaf ->
# TPM cert -> factory and verifies against the root for localhost; the leaf's key is
# not the TPM key; its issuer is the TPM certificate; metrics show it.
t_leaf_tls() {
	local n got want tpmpub leafpub v na
	issue_tpm_ca_cert "$GW_DIR/server/tpm.csr" tpmca || { note "issuing the TPM CA certificate failed"; return 1; }
	# -t makes one leaf as the start would, and says so (the TPM serves one
	# connection at a time: before the daemon starts)
	stop_gateway
	leaf_conf 24h server/tpmca-chain.pem
	got=$(timeout 30 "$GATED" -t -c "$GW_CONF" 2>&1) || { note "-t failed: $got"; return 1; }
	printf '%s\n' "$got" | grep -q "mode = certified-leaf: the TPM key issues P-256 leaves valid 86400s, renewed every 43200s" ||
		{ note "-t does not describe the mode: $got"; return 1; }
	start_gateway || { note "gateway did not start: $(tail -3 "$GW_LOG")"; return 1; }
	got=$(connack dev1)
	[ "$got" = "connack 0x00" ] || { note "TLS 1.3 device: $got"; return 1; }
	timeout 10 mosquitto_pub -h 127.0.0.1 -p "$GW_PORT" --cafile "$PKI/root/cert.pem" \
		--cert "$PKI/dev/dev2/chain.pem" --key "$PKI/dev/dev2/key.pem" -i dev2 \
		--tls-version tlsv1.2 -q 1 -t tpm/t -m hi -d 2>&1 | grep -q "received CONNACK (0)" ||
		{ note "TLS 1.2 mosquitto_pub did not get CONNACK 0"; return 1; }
	tpmpub=$(openssl req -in "$GW_DIR/server/tpm.csr" -noout -pubkey)
	for v in -tls1_3 -tls1_2; do
		n=$(served_chain "$WORK/chain$v" "$v")
		[ "$n" = 3 ] || { note "$v: $n certificates served, want 3 (leaf, TPM cert, factory)"; return 1; }
		cmp -s "$WORK/chain$v/1.pem" <(openssl x509 -in "$GW_DIR/server/tpmca-cert.pem") ||
			{ note "$v: the second certificate is not the TPM key's"; return 1; }
		leafpub=$(openssl x509 -in "$WORK/chain$v/0.pem" -noout -pubkey)
		[ -n "$leafpub" ] && [ "$leafpub" != "$tpmpub" ] || { note "$v: the leaf carries the TPM key"; return 1; }
		openssl x509 -in "$WORK/chain$v/0.pem" -noout -text | grep -q "ASN1 OID: prime256v1" || { note "$v: leaf key is not P-256"; return 1; }
		[ "$(openssl x509 -in "$WORK/chain$v/0.pem" -noout -issuer)" = "issuer=$(openssl x509 -in "$GW_DIR/server/tpmca-cert.pem" -noout -subject | sed 's/^subject=//')" ] ||
			{ note "$v: leaf issuer is not the TPM certificate's subject"; return 1; }
		got=$(openssl verify -CAfile "$PKI/root/cert.pem" -untrusted <(cat "$WORK/chain$v/1.pem" "$WORK/chain$v/2.pem") \
			-purpose sslserver -verify_hostname localhost "$WORK/chain$v/0.pem" 2>&1)
		[ "$got" = "$WORK/chain$v/0.pem: OK" ] || { note "$v: served chain does not verify: $got"; return 1; }
	done
	for want in tpm_leaf:1 tpm:0 file:0 tpm_fallback:0; do
		got=$(sample_value "ktlsgate_server_key_source{source=\"${want%%:*}\"}")
		[ "$got" = "${want#*:}" ] || { note "ktlsgate_server_key_source{source=${want%%:*}} = $got, want ${want#*:}"; return 1; }
	done
	na=$(date -u -d "$(openssl x509 -noout -enddate -in "$WORK/chain-tls1_3/0.pem" | sed 's/^notAfter=//')" +%s)
	got=$(sample_value ktlsgate_tpm_leaf_not_after_timestamp_seconds)
	[ "$got" = "$na" ] || { note "leaf notAfter gauge $got, served leaf's $na"; return 1; }
	# the server certificate an operator renews is the TPM key's (the leaf renews itself)
	want=$(date -u -d "$(openssl x509 -noout -enddate -in "$GW_DIR/server/tpmca-cert.pem" | sed 's/^notAfter=//')" +%s)
	got=$(sample_value ktlsgate_server_cert_not_after_timestamp_seconds)
	[ "$got" = "$want" ] || { note "server cert notAfter $got, the TPM certificate's is $want"; return 1; }
	# 24 h from the start, give or take the start's few seconds
	[ $((na - $(date +%s))) -gt 86300 ] && [ $((na - $(date +%s))) -le 86400 ] || { note "leaf lifetime: notAfter $na"; return 1; }
	got=$(sample_value ktlsgate_tpm_leaf_rotations_total)
	[ "$got" = 1 ] || { note "rotations $got after the start, want 1"; return 1; }
	got=$(sample_value ktlsgate_tpm_leaf_rotation_failures_total)
	[ "$got" = 0 ] || { note "rotation failures $got"; return 1; }
	# the leaf key's home: OpenSSL's secure heap (1 MiB, main.c), left out of core dumps
	# (VmFlags dd); locked (lo) where RLIMIT_MEMLOCK allows, which is reported only
	got=$(awk '/^[0-9a-f]+-[0-9a-f]+ / { anon = NF == 5 } /^Size:/ { sz = $2 }
		/^VmFlags:/ && anon && sz == 1024 && / dd/ { print (/ lo/ ? "locked" : "not locked") }' "/proc/$GW_PID/smaps")
	echo "    secure heap: ${got:-absent}"
	[ -n "$got" ] || { note "no 1 MiB MADV_DONTDUMP arena (secure heap) in the daemon"; return 1; }
}

# The TPM signs nothing during certified-leaf handshakes (TLS 1.3 and 1.2, X25519 and
# P-256): no TPM2_Sign, no TPM command at all.
t_leaf_no_tpm_per_handshake() {
	local mark n i v groups cmds
	[ -n "${GW_PID:-}" ] || { note "no gateway (t_leaf_tls failed)"; return 1; }
	for groups in X25519:P-256 P-256; do
		for v in -tls1_3 -tls1_2; do
			mark=$(tpm_mark)
			n=4
			for ((i = 0; i < n; i++)); do
				[ -n "$(served_pubkey "$v" -groups "$groups")" ] || { note "$v $groups: handshake failed"; return 1; }
			done
			[ "$(connack dev3)" = "connack 0x00" ] || { note "device after $v $groups: no CONNACK 0"; return 1; }
			sleep 0.2
			cmds=$(tpm_cmds_since "$mark" | sort | uniq -c | tr '\n' ' ')
			echo "    $v $groups: $((n + 1)) handshakes -> TPM commands: ${cmds:-none}"
			[ -z "$cmds" ] || { note "$v $groups: TPM commands during leaf handshakes: $cmds"; return 1; }
		done
	done
}

# A reload keeps a leaf that still fits (same serial, no TPM signature); -t says the mode.
t_leaf_reload_keeps() {
	local s1 s2 mark out
	[ -n "${GW_PID:-}" ] || { note "no gateway (t_leaf_tls failed)"; return 1; }
	s1=$(served_serial -tls1_3)
	[ -n "$s1" ] || { note "no serial served"; return 1; }
	mark=$(tpm_mark)
	kill -HUP "$GW_PID"
	for _ in $(seq 1 100); do
		[ "$(sample_value 'ktlsgate_reloads_total{result="ok"}')" = 1 ] && break
		sleep 0.1
	done
	[ "$(sample_value 'ktlsgate_reloads_total{result="ok"}')" = 1 ] || { note "reload not seen in metrics"; return 1; }
	s2=$(served_serial -tls1_3)
	[ "$s1" = "$s2" ] || { note "reload replaced a fresh leaf: $s1 -> $s2"; return 1; }
	[ -z "$(tpm_cmds_since "$mark" | grep -x "$TPM2_CC_SIGN")" ] || { note "reload signed with the TPM"; return 1; }
	grep -q "certified-leaf: keeping the leaf in force (serial $s1" "$GW_LOG" || { note "no 'keeping' log line"; return 1; }
}

# Rotation at half a 20 s lifetime (the shortest allowed) while sessions live: a session opened before it
# keeps relaying after it, new handshakes see a new leaf (new serial, new key), the TPM
# signed exactly once for it, and the rotation counter went up.
t_leaf_rotation_live_sessions() {
	local s1 s2 k1 k2 mark fifo sub signs i got pubpid
	leaf_gateway 20 server/tpmca-chain.pem || { note "gateway did not start: $(tail -3 "$GW_LOG")"; return 1; }
	s1=$(served_serial -tls1_3)
	k1=$(served_pubkey -tls1_3)
	[ -n "$s1" ] && [ -n "$k1" ] || { note "no leaf served"; return 1; }
	sub=$(sub_start leaf/live 2 90)
	fifo="$WORK/live.fifo"
	rm -f "$fifo"
	mkfifo "$fifo"
	exec 7<>"$fifo"
	mosquitto_pub -h 127.0.0.1 -p "$GW_PORT" --cafile "$PKI/root/cert.pem" \
		--cert "$PKI/dev/dev2/chain.pem" --key "$PKI/dev/dev2/key.pem" -i dev2 \
		-t leaf/live -q 1 -l <&7 >"$WORK/live.out" 2>&1 &
	pubpid=$!
	KG_PIDS+=("$pubpid")
	echo before >&7
	sub_wait "$sub" "leaf/live before" 10 || { exec 7>&-; note "live session did not relay before the rotation"; return 1; }
	mark=$(tpm_mark)
	# the rotation is due 10 s after the start
	for ((i = 0; i < 600; i++)); do
		[ "$(sample_value ktlsgate_tpm_leaf_rotations_total)" = 2 ] && break
		sleep 0.1
	done
	got=$(sample_value ktlsgate_tpm_leaf_rotations_total)
	[ "$got" = 2 ] || { exec 7>&-; note "no rotation within 60 s: rotations $got, failures $(sample_value ktlsgate_tpm_leaf_rotation_failures_total)"; return 1; }
	signs=$(tpm_cmds_since "$mark" | grep -cx "$TPM2_CC_SIGN")
	s2=$(served_serial -tls1_3)
	k2=$(served_pubkey -tls1_2)
	echo after >&7
	sub_wait "$sub" "leaf/live after" 10 || { exec 7>&-; note "the session opened before the rotation stopped relaying"; return 1; }
	kill -0 "$pubpid" 2>/dev/null || { exec 7>&-; note "the live session was closed: $(cat "$WORK/live.out")"; return 1; }
	exec 7>&-
	echo "    leaf $s1 -> $s2; TPM2_Sign during the rotation: $signs"
	[ -n "$s2" ] && [ "$s2" != "$s1" ] || { note "new handshakes still see serial $s1"; return 1; }
	[ -n "$k2" ] && [ "$k2" != "$k1" ] || { note "new handshakes still see the old leaf key"; return 1; }
	[ "$signs" = 1 ] || { note "$signs TPM2_Sign for one rotation, want 1"; return 1; }
	[ "$(connack dev3)" = "connack 0x00" ] || { note "device after the rotation: no CONNACK 0"; return 1; }
	# its stdin is the FIFO opened read-write here: it never sees EOF, so stop it
	kill "$pubpid" 2>/dev/null
	timeout 5 tail --pid="$pubpid" -f /dev/null 2>/dev/null || kill -9 "$pubpid" 2>/dev/null
	forget_pid "$pubpid"
	stop_gateway
	tpm_section "tcti = $PROXY_TCTI"
}

ALL_TESTS+=(t_leaf_issuer_not_ca_refused t_leaf_tls t_leaf_no_tpm_per_handshake
	t_leaf_reload_keeps t_leaf_rotation_live_sessions)

# The TPM goes away in certified-leaf mode (20 s leaf): the rotation at 10 s fails and is
# counted and logged, devices still connect with the current leaf (the TPM is not needed
# for handshakes); retries every 5 s (a quarter of the lifetime); once the leaf expires
# the daemon says so loudly at each retry and devices refuse it. Then the TPM comes
# back: the next retry makes a new leaf and devices connect again, with no restart.
t_leaf_tpm_down() {
	local got i mark
	leaf_gateway 20 server/tpmca-chain.pem || { note "gateway did not start: $(tail -3 "$GW_LOG")"; return 1; }
	mark=$(log_mark)
	[ "$(connack dev1)" = "connack 0x00" ] || { note "before: no CONNACK 0"; return 1; }
	kill "$PROXY_PID"
	timeout 5 tail --pid="$PROXY_PID" -f /dev/null
	forget_pid "$PROXY_PID"
	for ((i = 0; i < 450; i++)); do
		[ "$(sample_value ktlsgate_tpm_leaf_rotation_failures_total)" != 0 ] && break
		sleep 0.1
	done
	got=$(sample_value ktlsgate_tpm_leaf_rotation_failures_total)
	[ "$got" != 0 ] || { note "no rotation failure counted within 45 s"; return 1; }
	tail -n +"$((mark + 1))" "$GW_LOG" | grep -q "certified-leaf: rotation failed (.*): the current leaf serves until [0-9]*; retrying in 5s" ||
		{ note "no rotation-failure line: $(tail -3 "$GW_LOG")"; return 1; }
	got=$(connack dev1)
	[ "$got" = "connack 0x00" ] || { note "TPM down, leaf still valid: $got"; return 1; }
	[ "$(sample_value ktlsgate_tpm_leaf_rotations_total)" = 1 ] || { note "a rotation was counted without a TPM"; return 1; }
	# the leaf expires 20 s after the start: a retry after that says EXPIRED
	for ((i = 0; i < 600; i++)); do
		tail -n +"$((mark + 1))" "$GW_LOG" | grep -q "certified-leaf: ERROR: the leaf in force EXPIRED at" && break
		sleep 0.1
	done
	tail -n +"$((mark + 1))" "$GW_LOG" | grep -q "certified-leaf: ERROR: the leaf in force EXPIRED at [0-9]* and no new one can be made" ||
		{ note "no EXPIRED line within 60 s: $(tail -3 "$GW_LOG")"; return 1; }
	got=$(connack dev1 2>&1 | head -1)
	case $got in "connack 0x00") note "a device accepted the expired leaf"; return 1 ;; esac
	echo "    after expiry: $got; rotation failures $(sample_value ktlsgate_tpm_leaf_rotation_failures_total)"
	# The TPM comes back (the proxy again on the same port): the next retry (5 s
	# after the last) makes a new leaf, without a restart, and devices connect again.
	$PY "$KG_TPM_DIR/tpmproxy.py" --listen "$PROXY_PORT" --upstream "$SWTPM_PORT" \
		--ctrl-upstream "$SWTPM_CTRL" --log "$TPMLOG" >>"$WORK/tpmproxy.log" 2>&1 &
	PROXY_PID=$!
	KG_PIDS+=("$PROXY_PID")
	wait_port "$PROXY_PORT" 10 "$PROXY_PID" || { note "proxy did not restart"; return 1; }
	for ((i = 0; i < 250; i++)); do
		[ "$(sample_value ktlsgate_tpm_leaf_rotations_total)" = 2 ] && break
		sleep 0.1
	done
	[ "$(sample_value ktlsgate_tpm_leaf_rotations_total)" = 2 ] ||
		{ note "no new leaf within 25 s of the TPM's return: $(tail -3 "$GW_LOG")"; return 1; }
	got=$(connack dev1)
	[ "$got" = "connack 0x00" ] || { note "after the TPM returned: $got"; return 1; }
	[ "$(sample_value ktlsgate_tpm_up)" = 1 ] || { note "tpm_up not 1 after the TPM returned"; return 1; }
	echo "    TPM back: a new leaf, devices admitted, no restart (pid $GW_PID)"
}

ALL_TESTS+=(t_leaf_tpm_down)

# A reload switches modes: direct -> certified-leaf serves a leaf at once and rotates it
# (the timer exists in every mode); certified-leaf -> direct serves the TPM key again.
t_leaf_mode_by_reload() {
	local tpmpub got i n
	stop_gateway
	conf_set key "handle:$HANDLE"
	conf_set cert server/tpmca-chain.pem
	tpm_section "tcti = $PROXY_TCTI"
	start_gateway || { note "gateway did not start: $(tail -3 "$GW_LOG")"; return 1; }
	tpmpub=$(openssl req -in "$GW_DIR/server/tpm.csr" -noout -pubkey)
	[ "$(served_pubkey -tls1_3)" = "$tpmpub" ] || { note "direct mode does not serve the TPM key"; return 1; }
	leaf_conf 20 server/tpmca-chain.pem
	kill -HUP "$GW_PID"
	for ((i = 0; i < 100; i++)); do
		[ "$(sample_value 'ktlsgate_server_key_source{source="tpm_leaf"}')" = 1 ] && break
		sleep 0.1
	done
	got=$(served_pubkey -tls1_3)
	[ -n "$got" ] && [ "$got" != "$tpmpub" ] || { note "after the reload into certified-leaf: not a leaf key"; return 1; }
	[ "$(sample_value ktlsgate_tpm_leaf_rotations_total)" = 1 ] || { note "no leaf counted after the reload"; return 1; }
	for ((i = 0; i < 450; i++)); do
		[ "$(sample_value ktlsgate_tpm_leaf_rotations_total)" = 2 ] && break
		sleep 0.1
	done
	n=$(sample_value ktlsgate_tpm_leaf_rotations_total)
	[ "$n" = 2 ] || { note "no rotation 45 s after a reload into certified-leaf (rotations $n)"; return 1; }
	tpm_section "tcti = $PROXY_TCTI"
	kill -HUP "$GW_PID"
	for ((i = 0; i < 100; i++)); do
		[ "$(sample_value 'ktlsgate_server_key_source{source="tpm"}')" = 1 ] && break
		sleep 0.1
	done
	[ "$(served_pubkey -tls1_3)" = "$tpmpub" ] || { note "back in direct mode: not the TPM key"; return 1; }
	[ "$(sample_value ktlsgate_tpm_leaf_rotations_total)" = absent ] || { note "leaf series still exported in direct mode"; return 1; }
	stop_gateway
}

ALL_TESTS+=(t_leaf_mode_by_reload)

# An RSA-2048 TPM key as the leaf's issuer: the leaf stays P-256, signed
# sha256WithRSAEncryption by the TPM (through the signer's raw RSA), and the chain
# verifies.
t_leaf_rsa_issuer() {
	local out rc n
	issue_tpm_ca_cert "$GW_DIR/server/rsa.csr" rsaca || { note "issuing the RSA TPM CA certificate failed"; return 1; }
	stop_gateway
	conf_set key "handle:$RSA_HANDLE"
	conf_set cert server/rsaca-chain.pem
	tpm_section "tcti = $PROXY_TCTI" "mode = certified-leaf"
	out=$(timeout 30 "$GATED" -t -c "$GW_CONF" 2>&1)
	rc=$?
	[ $rc -eq 0 ] || { note "-t with an RSA TPM key: exit $rc: $out"; return 1; }
	start_gateway || { note "gateway did not start: $(tail -3 "$GW_LOG")"; return 1; }
	[ "$(connack dev1)" = "connack 0x00" ] || { note "TLS 1.3 through an RSA-issued leaf: no CONNACK 0"; return 1; }
	n=$(served_chain "$WORK/chain-rsa" -tls1_2)
	[ "$n" = 3 ] || { note "$n certificates served, want 3"; return 1; }
	openssl x509 -in "$WORK/chain-rsa/0.pem" -noout -text | grep -q "Signature Algorithm: sha256WithRSAEncryption" ||
		{ note "the leaf is not signed sha256WithRSAEncryption"; return 1; }
	openssl x509 -in "$WORK/chain-rsa/0.pem" -noout -text | grep -q "ASN1 OID: prime256v1" || { note "leaf key is not P-256"; return 1; }
	out=$(openssl verify -CAfile "$PKI/root/cert.pem" -untrusted <(cat "$WORK/chain-rsa/1.pem" "$WORK/chain-rsa/2.pem") \
		-purpose sslserver -verify_hostname localhost "$WORK/chain-rsa/0.pem" 2>&1)
	[ "$out" = "$WORK/chain-rsa/0.pem: OK" ] || { note "served chain does not verify: $out"; return 1; }
	stop_gateway
	tpm_section "tcti = $PROXY_TCTI"
}

ALL_TESTS+=(t_leaf_rsa_issuer)

# --- session-ticket keys sealed to the TPM (issue 13) ------------------------------

TKF_DEFAULT=""   # the sealed ticket-key file's default path (beside registry.db)

# tls_ticket_file [PATH]: set (or with no argument drop) [tls] ticket_key_file, in a
# [tls] section kept just before [tpm].
tls_ticket_file() {
	sed -i '/^\[tls\]$/,/^ticket_key_file = /d' "$GW_CONF"
	[ $# -eq 0 ] || sed -i "s|^\[tpm\]$|[tls]\nticket_key_file = $1\n[tpm]|" "$GW_CONF"
}

# The gate on the persistent TPM key through the proxy, default ticket file.
gw_tpm_key() {
	stop_gateway
	conf_set key "handle:$HANDLE"
	conf_set cert server/tpm-chain.pem
	tpm_section "tcti = $PROXY_TCTI"
	tls_ticket_file
	TKF_DEFAULT="$GW_DIR/ticket-keys.sealed"
}

# wait_file PATH: up to 20 s for PATH to exist.
wait_file() {
	local i
	for ((i = 0; i < 200; i++)); do
		[ -e "$1" ] && return 0
		sleep 0.1
	done
	return 1
}

# sealed_file_shape PATH: "ok SEALED CT" if PATH is a version-1 sealed ticket-key file
# (ticket_store.h) whose ciphertext is the trust (40 bytes) and a whole key set
# (6 + 96 n bytes), lengths
# adding up to the size, and in which the plain export's "KGTK" magic does not appear.
sealed_file_shape() {
	python3 - "$1" <<'PY'
import sys
b = open(sys.argv[1], "rb").read()
if b[:4] != b"KGTS" or b[4] != 1 or b[5] != 0:
    print("bad header %r" % b[:6]); sys.exit()
sl = b[6] << 8 | b[7]
off = 8 + sl + 12
cl = b[off] << 8 | b[off + 1]
if len(b) != off + 2 + cl + 16 or (cl - 46) % 96 or not 1 <= (cl - 46) // 96 <= 3:
    print("bad lengths sealed %d ct %d size %d" % (sl, cl, len(b))); sys.exit()
if b"KGTK" in b:
    print("plain export magic in the file"); sys.exit()
print("ok %d %d" % (sl, cl))
PY
}

# resume_across_restart FUNC: device dev1 connects, the gate restarts (FUNC runs while
# it is stopped), dev1 reconnects offering its ticket; the client's lines in
# $WORK/resume.out, the TPM log mark taken after the restart in RESTART_MARK.
resume_across_restart() {
	local kpid
	rm -f "$WORK/restart-req" "$WORK/restart-done"
	# the client holds its ticket while the gate restarts between its two connections
	kgc resume $(dev_args dev1) --times 2 --timeout 15 \
		--between "touch $WORK/restart-req; for i in \$(seq 1 500); do [ -e $WORK/restart-done ] && exit 0; sleep 0.1; done; exit 1" \
		>"$WORK/resume.out" 2>&1 &
	kpid=$!
	wait_file "$WORK/restart-req" || { note "client never asked for the restart: $(cat "$WORK/resume.out")"; kill "$kpid"; return 1; }
	stop_gateway
	"$1"
	start_gateway || { note "gateway did not restart: $(tail -3 "$GW_LOG")"; touch "$WORK/restart-done"; wait "$kpid"; return 1; }
	RESTART_MARK=$(tpm_mark)
	touch "$WORK/restart-done"
	wait "$kpid"
}

# A device's ticket survives a restart of the gate (TPM key): the keys come back from
# the sealed file and the device resumes, sending the TPM no TPM2_Sign.
t_tickets_survive_restart() {
	local out shape mark signs
	gw_tpm_key
	rm -f "$TKF_DEFAULT" "$WORK/restart-req" "$WORK/restart-done"
	: >"$GW_LOG"
	start_gateway || { note "gateway did not start: $(tail -3 "$GW_LOG")"; return 1; }
	wait_file "$TKF_DEFAULT" || { note "no sealed file $TKF_DEFAULT after start"; return 1; }
	grep -q "session ticket keys: no sealed file" "$GW_LOG" || { note "start log: $(grep 'ticket keys' "$GW_LOG")"; return 1; }
	[ "$(stat -c %a "$TKF_DEFAULT")" = 600 ] || { note "file mode $(stat -c %a "$TKF_DEFAULT")"; return 1; }
	shape=$(sealed_file_shape "$TKF_DEFAULT")
	echo "    sealed file: $shape (sealed object bytes, ciphertext bytes)"
	[ "${shape%% *}" = ok ] || { note "sealed file: $shape"; return 1; }
	resume_across_restart : || return 1
	out=$(cat "$WORK/resume.out")
	mark=$RESTART_MARK
	sleep 0.2
	signs=$(tpm_cmds_since "$mark" | grep -cx "$TPM2_CC_SIGN")
	echo "    after the restart: $(grep '^conn 1' <<<"$out" | tr '\n' ' ')-> $signs TPM2_Sign"
	grep -q "session ticket keys: restored from the sealed file" "$GW_LOG" || { note "restart log: $(grep 'ticket keys' "$GW_LOG")"; return 1; }
	grep -qx "conn 1 reused TLSv1.3" <<<"$out" || { note "not resumed across the restart: $out"; return 1; }
	[ "$(grep -c 'connack 0x00$' <<<"$out")" = 2 ] || { note "not 2 admissions: $out"; return 1; }
	[ "$signs" = 0 ] || { note "$signs TPM2_Sign for a resumed handshake"; return 1; }
}

# A corrupted or truncated file: a warning, fresh keys, the gate serves, and the file
# is written again, whole.
t_tickets_corrupt_file() {
	local got shape bad
	[ -n "$TKF_DEFAULT" ] && [ -s "$TKF_DEFAULT" ] || { note "no sealed file (t_tickets_survive_restart failed)"; return 1; }
	for bad in truncated garbage flipped; do
		stop_gateway
		case $bad in
		truncated) head -c 40 "$TKF_DEFAULT" >"$WORK/tkf" ;;
		garbage) head -c 300 /dev/urandom >"$WORK/tkf" ;;
		flipped) python3 -c 'import sys; b=bytearray(open(sys.argv[1],"rb").read()); b[-20]^=1; open(sys.argv[2],"wb").write(b)' "$TKF_DEFAULT" "$WORK/tkf" ;;
		esac
		cp "$WORK/tkf" "$TKF_DEFAULT"
		: >"$GW_LOG"
		start_gateway || { note "$bad file: gateway did not start: $(tail -3 "$GW_LOG")"; return 1; }
		grep -q "session ticket keys: cannot restore from" "$GW_LOG" || { note "$bad file, no warning: $(grep 'ticket keys' "$GW_LOG")"; return 1; }
		got=$(connack dev1)
		[ "$got" = "connack 0x00" ] || { note "$bad file: $got"; return 1; }
		cmp -s "$WORK/tkf" "$TKF_DEFAULT" && { note "$bad file not rewritten"; return 1; }
		shape=$(sealed_file_shape "$TKF_DEFAULT")
		[ "${shape%% *}" = ok ] || { note "$bad file, rewritten: $shape"; return 1; }
		echo "    $bad file: $(grep -o 'cannot restore from [^;]*' "$GW_LOG" | head -1 | sed "s|$WORK/||g")"
	done
}

# The file copied next to another TPM (a swtpm with its own state: another owner seed)
# cannot be unsealed there: a warning, fresh keys, the gate serves.
t_tickets_other_tpm() {
	local port2 pid2 tcti2 got
	[ -n "$TKF_DEFAULT" ] && [ -s "$TKF_DEFAULT" ] || { note "no sealed file (t_tickets_survive_restart failed)"; return 1; }
	stop_gateway
	cp "$TKF_DEFAULT" "$WORK/copied.sealed"
	port2=$(port_pair) || { note "no ports"; return 1; }
	mkdir -p "$WORK/swtpm2/state"
	swtpm socket --tpm2 --tpmstate dir="$WORK/swtpm2/state" \
		--server type=tcp,port="$port2",bindaddr=127.0.0.1 \
		--ctrl type=tcp,port="$((port2 + 1))",bindaddr=127.0.0.1 \
		--flags not-need-init,startup-clear >"$WORK/swtpm2/out.log" 2>&1 &
	pid2=$!
	KG_PIDS+=("$pid2")
	tcti2="swtpm:host=127.0.0.1,port=$port2"
	wait_port "$port2" 10 "$pid2" || { note "second swtpm did not start"; return 1; }
	# wait_port connected once: swtpm serves one client at a time, give it a moment
	sleep 0.3
	kg tpm keygen --handle "$HANDLE" --tcti "$tcti2" >/dev/null || { note "keygen on the second TPM"; return 1; }
	kg tpm csr --key "handle:$HANDLE" --cn localhost --out "$GW_DIR/server/other.csr" --tcti "$tcti2" >/dev/null || { note "csr on the second TPM"; return 1; }
	issue_server_cert "$GW_DIR/server/other.csr" other || { note "issuing the second TPM's cert"; return 1; }
	conf_set cert server/other-chain.pem
	tpm_section "tcti = $tcti2"
	tls_ticket_file "$WORK/copied.sealed"
	: >"$GW_LOG"
	start_gateway || { note "gateway on the second TPM did not start: $(tail -3 "$GW_LOG")"; return 1; }
	grep -q "session ticket keys: cannot restore from $WORK/copied.sealed" "$GW_LOG" || { note "no warning: $(grep 'ticket keys' "$GW_LOG")"; return 1; }
	echo "    $(grep -o 'cannot restore from [^;]*' "$GW_LOG" | head -1 | sed "s|$WORK/||g")"
	got=$(sample_value 'ktlsgate_tpm_errors_total{kind="seal"}')
	[ "$got" = 1 ] || { note "the refused unseal: ktlsgate_tpm_errors_total{kind=seal} = $got, want 1"; return 1; }
	got=$(sample_value 'ktlsgate_tpm_errors_total{kind="sign"}')
	[ "$got" = 0 ] || { note "the refused unseal counted as a signature error ($got)"; return 1; }
	got=$(connack dev1)
	[ "$got" = "connack 0x00" ] || { note "on the second TPM: $got"; return 1; }
	stop_gateway
	kill "$pid2"; timeout 5 tail --pid="$pid2" -f /dev/null; forget_pid "$pid2"
	gw_tpm_key
}

# A file server key: the ticket keys stay in memory, no file is written (a plain file
# is what a stolen image would give away); resumption = off writes nothing either.
t_tickets_file_key_no_file() {
	local got
	stop_gateway
	conf_set key server/key.pem
	conf_set cert server/chain.pem
	tls_ticket_file "$WORK/filekey.sealed"
	rm -f "$WORK/filekey.sealed"
	: >"$GW_LOG"
	start_gateway || { note "gateway (file key) did not start: $(tail -3 "$GW_LOG")"; return 1; }
	got=$(kgc resume $(dev_args dev1) --times 2)
	grep -qx "conn 1 reused TLSv1.3" <<<"$got" || { note "file key: no resumption: $got"; return 1; }
	grep -q "session ticket keys: in memory only" "$GW_LOG" || { note "file key log: $(grep 'ticket keys' "$GW_LOG")"; return 1; }
	[ ! -e "$WORK/filekey.sealed" ] || { note "a file key wrote $WORK/filekey.sealed"; return 1; }
	# TPM key, resumption = off: nothing written
	stop_gateway
	conf_set key "handle:$HANDLE"
	conf_set cert server/tpm-chain.pem
	sed -i "s|^ticket_key_file = .*|&\nresumption = off|" "$GW_CONF"
	start_gateway || { note "gateway (resumption off) did not start: $(tail -3 "$GW_LOG")"; return 1; }
	got=$(connack dev1)
	[ "$got" = "connack 0x00" ] || { note "resumption off: $got"; return 1; }
	sleep 1.5   # a main-loop pass that would write
	[ ! -e "$WORK/filekey.sealed" ] || { note "resumption = off wrote the file"; return 1; }
	stop_gateway
	sed -i '/^resumption = off$/d' "$GW_CONF"
	gw_tpm_key
}
ALL_TESTS+=(t_tickets_survive_restart t_tickets_corrupt_file t_tickets_other_tpm t_tickets_file_key_no_file)

# The trust changed while the gate was down (here [tls] crl_grace): the saved tickets
# do not resume (a full handshake verifies the chain again), the device is admitted.
crl_grace_changed() {
	sed -i "s|^ticket_key_file = .*|&\ncrl_grace = 1234|" "$GW_CONF"
}
t_tickets_trust_changed() {
	local out
	gw_tpm_key
	tls_ticket_file "$TKF_DEFAULT"
	: >"$GW_LOG"
	start_gateway || { note "gateway did not start: $(tail -3 "$GW_LOG")"; return 1; }
	resume_across_restart crl_grace_changed || return 1
	out=$(cat "$WORK/resume.out")
	sed -i '/^crl_grace = 1234$/d' "$GW_CONF"
	echo "    after a restart with another crl_grace: $(grep '^conn 1' <<<"$out" | tr '\n' ' ')"
	grep -q "session ticket keys: the trust changed since they were saved" "$GW_LOG" || { note "log: $(grep 'ticket keys' "$GW_LOG")"; return 1; }
	grep -qx "conn 1 new TLSv1.3" <<<"$out" || { note "resumed across a trust change: $out"; return 1; }
	[ "$(grep -c 'connack 0x00$' <<<"$out")" = 2 ] || { note "not 2 admissions: $out"; return 1; }
}
ALL_TESTS+=(t_tickets_trust_changed)

# The file follows the keys while the gate runs: a reload (a new trust generation) and a
# key rotation (ticket_lifetime 20 s, the shortest allowed: the rotation timer rings at
# 20 s) each rewrite it
# at once; a ticket issued before the rotation resumes after a restart (its key,
# retired, still decrypts and is in the file).
t_tickets_file_follows_rotation() {
	local h0 h1 h2 r0 i kpid out t0
	gw_tpm_key
	tls_ticket_file "$TKF_DEFAULT"
	sed -i "s|^ticket_key_file = .*|&\nticket_lifetime = 20s|" "$GW_CONF"
	rm -f "$TKF_DEFAULT" "$WORK/restart-req" "$WORK/restart-done"
	: >"$GW_LOG"
	t0=$(date +%s)
	start_gateway || { note "gateway did not start: $(tail -3 "$GW_LOG")"; return 1; }
	wait_file "$TKF_DEFAULT" || { note "no sealed file"; return 1; }
	h0=$(sha256sum <"$TKF_DEFAULT")
	r0=$(sample_value ktlsgate_ticket_key_rotations_total)
	kill -HUP "$GW_PID"
	for ((i = 0; i < 50; i++)); do
		h1=$(sha256sum <"$TKF_DEFAULT")
		[ "$h1" != "$h0" ] && break
		sleep 0.1
	done
	[ "$h1" != "$h0" ] || { note "the file was not rewritten within 5 s of a reload"; return 1; }
	# a ticket issued shortly before the rotation (so it is still valid after it)
	while [ $(($(date +%s) - t0)) -lt 15 ]; do sleep 0.5; done
	kgc resume $(dev_args dev1) --times 2 --timeout 15 \
		--between "touch $WORK/restart-req; for i in \$(seq 1 900); do [ -e $WORK/restart-done ] && exit 0; sleep 0.1; done; exit 1" \
		>"$WORK/resume.out" 2>&1 &
	kpid=$!
	wait_file "$WORK/restart-req" || { note "client never asked for the restart: $(cat "$WORK/resume.out")"; kill "$kpid"; return 1; }
	for ((i = 0; i < 300; i++)); do
		[ "$(sample_value ktlsgate_ticket_key_rotations_total)" -gt "$r0" ] && break
		sleep 0.1
	done
	[ "$(sample_value ktlsgate_ticket_key_rotations_total)" -gt "$r0" ] ||
		{ note "no key rotation $(($(date +%s) - t0)) s after the start (lifetime 20 s)"; touch "$WORK/restart-done"; wait "$kpid"; return 1; }
	for ((i = 0; i < 30; i++)); do
		h2=$(sha256sum <"$TKF_DEFAULT")
		[ "$h2" != "$h1" ] && break
		sleep 0.1
	done
	[ "$h2" != "$h1" ] || { note "the file was not rewritten within 3 s of the rotation"; touch "$WORK/restart-done"; wait "$kpid"; return 1; }
	echo "    rotated $(($(date +%s) - t0)) s after the start; the file rewritten at the reload and at the rotation"
	stop_gateway
	start_gateway || { note "gateway did not restart: $(tail -3 "$GW_LOG")"; touch "$WORK/restart-done"; wait "$kpid"; return 1; }
	touch "$WORK/restart-done"
	wait "$kpid"
	out=$(cat "$WORK/resume.out")
	echo "    after the restart: $(grep '^conn 1' <<<"$out" | tr '\n' ' ')"
	grep -qx "conn 1 reused TLSv1.3" <<<"$out" || { note "a ticket of the retired key did not resume after the restart: $out"; return 1; }
	sed -i '/^ticket_lifetime = 20s$/d' "$GW_CONF"
}
ALL_TESTS+=(t_tickets_file_follows_rotation)

if ! setup; then
	echo "FAIL setup"
	KG_FAILED=1
	exit 1
fi
run_tests
