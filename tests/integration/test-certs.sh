#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# test-certs.sh - the TLS layer's security level and RFC 5280 profile hold for device
# chains, and an expired CRL has a rule (issue 10, sections 2 and 6).
#
# Certificates come from gen-bad-certs.sh (openssl CLI: weak keys, MD5/SHA-1 signatures,
# broken profiles, malformed extensions). For each refusal a real client, openssl
# s_client at SECLEVEL=0 (it would not even use a weak key otherwise), must read a TLS
# alert; the audit line must carry the reason (and OpenSSL's words in its detail); and
# `ktlsgate verify` must say the same thing offline. Good 2048-bit RSA and P-256 devices
# still get CONNACK 0. Variants of the daemon run one at a time (security_level = 3,
# crl_grace) against the same registry.
# dev_args prints options meant to split into words; lib.sh reads ALL_TESTS and KG_FAILED.
# shellcheck disable=SC2046,SC2034
set -u
. "$(dirname "$0")/lib.sh"

# --- setup ----------------------------------------------------------------------------

# crl_at CA_DIR OUT LAST NEXT [REVOKED_CERT...]: a CRL from the openssl CLI with the
# given lastUpdate/nextUpdate (YYYYMMDDHHMMSSZ), listing the certificates given.
crl_at() {
	local ca=$1 out=$2 last=$3 next=$4 d c
	shift 4
	d=$(mktemp -d "$WORK/ca.XXXXXX")
	: >"$d/index.txt"
	echo 01 >"$d/crlnumber"
	printf '[ca]\ndefault_ca = c\n[c]\ndatabase = %s/index.txt\ncrlnumber = %s/crlnumber\ndefault_md = sha256\n' \
		"$d" "$d" >"$d/ca.cnf"
	for c in "$@"; do
		openssl ca -config "$d/ca.cnf" -cert "$ca/cert.pem" -keyfile "$ca/key.pem" \
			-revoke "$c" >/dev/null 2>&1 || return 1
	done
	openssl ca -config "$d/ca.cnf" -cert "$ca/cert.pem" -keyfile "$ca/key.pem" -gencrl \
		-crl_lastupdate "$last" -crl_nextupdate "$next" -out "$out" >/dev/null 2>&1
}

# utc OFFSET_SECONDS: YYYYMMDDHHMMSSZ, now + offset
utc() {
	date -u -d "@$(($(date +%s) + $1))" +%Y%m%d%H%M%SZ
}

# conf_variant NAME TLS_LINES...: $GW_DIR/NAME.conf = the base config + a [tls] section
conf_variant() {
	local name=$1
	shift
	{ cat "$GW_DIR/base.conf"; printf '\n[tls]\n'; printf '%s\n' "$@"; } >"$GW_DIR/$name.conf"
}

# use_conf NAME: restart the daemon on $GW_DIR/NAME.conf (one daemon at a time: they
# share the registry, control socket and ports)
use_conf() {
	stop_gateway
	GW_CONF="$GW_DIR/$1.conf"
	start_gateway
}

setup() {
	kg_init certs
	BK_PORT=$(free_port)
	GW_PORT=$(free_port)
	GW_MPORT=$(free_port)
	GW_DIR="$WORK/gw"
	write_gw_conf "$GW_DIR" "$GW_PORT" "$GW_MPORT" "$BK_PORT" "$(free_port)"
	GW_CONF="$GW_DIR/ktlsgate.conf"
	GW_LOG="$GW_DIR/gw.log"
	: >"$GW_LOG"
	pki_setup "$WORK/pki" || return 1
	KGCLI=$KGCLI bash "$KG_TOP/tests/integration/gen-bad-certs.sh" "$PKI" >/dev/null ||
		{ echo "gen-bad-certs.sh failed" >&2; return 1; }
	register_ca rsaroot "$PKI/rsaroot" || return 1
	register_ca rootnobc "$PKI/ca/rootnobc" || return 1
	# a CA whose CRL expired an hour ago, listing crl-rev
	pki root --cn "crl root" --out "$PKI/crlroot" || return 1
	register_ca crlroot "$PKI/crlroot" || return 1
	device_cert crl-dev "$PKI/crlroot" || return 1
	device_cert crl-rev "$PKI/crlroot" || return 1
	: >"$PKI/dev/crl-dev/tail.pem"
	: >"$PKI/dev/crl-rev/tail.pem"
	crl_at "$PKI/crlroot" "$GW_DIR/crl-expired.pem" "$(utc -172800)" "$(utc -3600)" \
		"$PKI/dev/crl-rev/cert.pem" || { echo "openssl ca -gencrl failed" >&2; return 1; }

	local d
	for d in rsa512 rsa1024 p192 rsa2048 p256 leafmd5 leafsha1 rsagood intmd5 intsha1 intweak \
		under-nobc under-noskid under-rootnobc certsign noakid badakid malformed crl-dev crl-rev; do
		kg device add "$d" >/dev/null || { echo "device add $d failed" >&2; return 1; }
	done
	for d in ss-rsa1024 ss-rsa2048; do
		kg device add "$d" --thumbprint "$(fingerprint "$PKI/dev/$d/cert.pem")" >/dev/null ||
			{ echo "device add $d failed" >&2; return 1; }
	done
	printf '\n[crl]\ncrlroot = crl-expired.pem\n' >>"$GW_CONF"
	cp "$GW_CONF" "$GW_DIR/base.conf"
	start_broker "$BK_PORT" || return 1
	start_gateway || return 1
}

# --- probes ---------------------------------------------------------------------------

# s_client DEV [openssl options]: a TLS client with DEV's key and the chain it sends,
# allowed to use weak keys (SECLEVEL=0); prints what openssl said.
s_client() {
	local dev=$1 chain=()
	shift
	[ -s "$PKI/dev/$dev/tail.pem" ] && chain=(-cert_chain "$PKI/dev/$dev/tail.pem")
	(sleep 2) | timeout 15 openssl s_client -connect "127.0.0.1:$GW_PORT" -CAfile "$PKI/root/cert.pem" \
		-cert "$PKI/dev/$dev/cert.pem" -key "$PKI/dev/$dev/key.pem" "${chain[@]}" \
		-cipher 'DEFAULT:@SECLEVEL=0' "$@" 2>&1
}

# refused DEV REASON DETAIL ALERT [openssl options]: the client reads the TLS alert
# ALERT ("bad certificate"...), the audit says deny/REASON for DEV with DETAIL in its
# detail, and `ktlsgate verify` says "refused: REASON (...DETAIL...)".
refused() {
	local dev=$1 reason=$2 detail=$3 want_alert=$4 mark got alert
	shift 4
	mark=$(log_mark)
	got=$(s_client "$dev" "$@")
	alert=$(printf '%s\n' "$got" | grep -o 'alert [a-z ]*:.*SSL alert number [0-9]*' | head -1)
	if [ -z "$alert" ]; then
		note "$dev: no TLS alert read by s_client: $(printf '%s' "$got" | grep -i 'error\|alert\|verify' | head -3 | tr '\n' ' ')"
		return 1
	fi
	echo "    $dev: s_client read: ${alert%%:*} (${alert##*:})"
	[ "${alert%%:*}" = "alert $want_alert" ] ||
		{ note "$dev: s_client read '${alert%%:*}', want 'alert $want_alert'"; return 1; }
	audit_has "$mark" "$reason" "$dev" deny || { note "$dev: no deny/$reason audit: $AUDIT_OUT"; return 1; }
	case $AUDIT_OUT in
	*"\"detail\": \"$detail"*) ;;
	*) note "$dev: audit detail is not '$detail': $AUDIT_OUT"; return 1 ;;
	esac
	got=$(kg verify "$PKI/dev/$dev/chain.pem")
	case $got in
	"refused: $reason ("*"$detail"*) ;;
	*) note "$dev: ktlsgate verify said '$got', want refused: $reason ($detail)"; return 1 ;;
	esac
}

# accepted DEV: CONNACK 0 through the gate (python ssl client, default security level)
accepted() {
	local got
	got=$(kgc connect --port "$GW_PORT" --ca "$PKI/root/cert.pem" --cert "$PKI/dev/$1/chain.pem" \
		--key "$PKI/dev/$1/key.pem" --id "$1" | head -1)
	[ "$got" = "connack 0x00" ] || { note "$1: want connack 0x00, got '$got'"; return 1; }
}

# --- tests ----------------------------------------------------------------------------

t_weak_keys() {
	local bad=0
	# RSA-512 cannot sign a TLS 1.3 CertificateVerify (RSA-PSS-SHA256 needs 528 bits)
	refused rsa512 weak_key "EE certificate key too weak" "bad certificate" -tls1_2 || bad=1
	refused rsa1024 weak_key "EE certificate key too weak" "bad certificate" || bad=1
	refused rsa1024 weak_key "EE certificate key too weak" "bad certificate" -tls1_2 || bad=1
	# TLS 1.3 has no signature algorithm for P-192: a client would send no certificate
	refused p192 weak_key "EE certificate key too weak" "bad certificate" -tls1_2 || bad=1
	refused intweak weak_key "CA certificate key too weak" "bad certificate" || bad=1
	# a thumbprint pin proves which certificate, not that its key is strong
	refused ss-rsa1024 weak_key "EE certificate key too weak" "bad certificate" || bad=1
	return $bad
}

t_weak_signatures() {
	local bad=0 d
	for d in leafmd5 leafsha1 intmd5 intsha1; do
		refused "$d" weak_signature "CA signature digest algorithm too weak" "bad certificate" || bad=1
	done
	refused leafsha1 weak_signature "CA signature digest algorithm too weak" "bad certificate" -tls1_2 || bad=1
	return $bad
}

t_strict_profile() {
	local bad=0
	refused under-nobc bad_chain "invalid CA certificate" "unknown ca" || bad=1        # intermediate, no basicConstraints
	refused under-rootnobc bad_chain "invalid CA certificate" "unknown ca" || bad=1    # registered root, no basicConstraints
	refused certsign bad_chain "Key usage keyCertSign invalid for non-CA cert" "certificate unknown" || bad=1
	refused noakid bad_chain "Missing Authority Key Identifier" "certificate unknown" || bad=1
	refused under-noskid bad_chain "Missing Subject Key Identifier" "certificate unknown" || bad=1
	refused badakid bad_chain "authority and subject key identifier mismatch" "certificate unknown" || bad=1
	refused malformed bad_chain "invalid or inconsistent certificate extension" "certificate unknown" || bad=1
	return $bad
}

t_good_devices() {
	local bad=0 d got
	for d in p256 rsa2048 rsagood ss-rsa2048; do
		accepted "$d" || bad=1
		got=$(kg verify "$PKI/dev/$d/chain.pem")
		case $got in "accepted: device=$d "*) ;; *) note "$d: verify said '$got'"; bad=1 ;; esac
	done
	return $bad
}

t_security_level_3() {
	local bad=0 got
	conf_variant level3 "security_level = 3"
	use_conf level3 || { note "daemon did not start with security_level = 3"; return 1; }
	# 2048-bit RSA is 112 bits: below level 3's 128
	refused rsa2048 weak_key "EE certificate key too weak" "bad certificate" || bad=1
	accepted p256 || bad=1
	got=$(timeout 20 "$GATED" -t -c "$GW_CONF" 2>&1)
	case $got in *"security level 3"*) ;; *) note "-t does not report level 3: $got"; bad=1 ;; esac
	use_conf base || { note "base daemon did not restart"; return 1; }
	accepted rsa2048 || bad=1
	return $bad
}

t_security_level_floor() {
	local got rc
	conf_variant level0 "security_level = 0"
	got=$(timeout 20 "$GATED" -t -c "$GW_DIR/level0.conf" 2>&1)
	rc=$?
	[ $rc -ne 0 ] || { note "-t accepted security_level = 0: $got"; return 1; }
	case $got in
	*"level0.conf:"*"security_level 0 is below OpenSSL's default level"*) ;;
	*) note "-t said: $got"; return 1 ;;
	esac
}

t_crl_expired() {
	local got rc mark next want bad=0
	# -t: exit 0 (an expired CRL is no configuration error, and ExecStartPre must not keep
	# the daemon from starting), but it says so
	got=$(timeout 20 "$GATED" -t -c "$GW_CONF" 2>&1)
	rc=$?
	[ $rc -eq 0 ] || { note "-t failed ($rc): $got"; bad=1; }
	case $got in
	*"WARNING: crl crlroot ("*"EXPIRED at"*"REFUSED (crl_expired)"*"WARNING: 1 expired CRL(s)"*) ;;
	*) note "-t does not report the expired CRL: $got"; bad=1 ;;
	esac
	# refused, with the CA named, and the metric
	refused crl-dev crl_expired "CRL has expired" "certificate expired" || bad=1
	case $AUDIT_OUT in *'"ca": "crlroot"'*) ;; *) note "audit does not name crlroot: $AUDIT_OUT"; bad=1 ;; esac
	next=$(date -u -d "$(openssl crl -in "$GW_DIR/crl-expired.pem" -noout -nextupdate | sed 's/^nextUpdate=//')" +%s)
	[ -n "$next" ] || { note "cannot read nextUpdate with openssl crl"; return 1; }
	got=$(metrics | grep '^ktlsgate_crl_')
	want="ktlsgate_crl_next_update_timestamp_seconds{ca=\"crlroot\"} $next"
	printf '%s\n' "$got" | grep -qxF "$want" || { note "metrics lack '$want': $got"; bad=1; }
	printf '%s\n' "$got" | grep -qxF 'ktlsgate_crl_expired{ca="crlroot"} 1' ||
		{ note "metrics lack ktlsgate_crl_expired{ca=\"crlroot\"} 1: $got"; bad=1; }
	grep -q "crl crlroot (.*) EXPIRED at" "$GW_LOG" || { note "no start-up warning in the log"; bad=1; }
	return $bad
}

t_crl_grace() {
	local got mark bad=0 n
	conf_variant grace "crl_grace = 7200"
	got=$(timeout 20 "$GATED" -t -c "$GW_DIR/grace.conf" 2>&1)
	case $got in
	*"WARNING: crl crlroot ("*"within crl_grace until"*) ;;
	*) note "-t does not report the grace: $got"; bad=1 ;;
	esac
	use_conf grace || { note "daemon did not start with crl_grace"; return 1; }
	mark=$(log_mark)
	accepted crl-dev || bad=1
	accepted crl-dev || bad=1
	# loud, but once per CA per minute
	n=$(tail -n +"$((mark + 1))" "$GW_LOG" | grep -c 'CRL of CA crlroot expired [0-9]*s ago: its devices are accepted within crl_grace')
	[ "$n" = 1 ] || { note "want 1 grace warning for 2 connects, got $n"; bad=1; }
	# the CRL is still honoured: a revoked device stays out
	refused crl-rev cert_revoked "certificate revoked" "certificate revoked" || bad=1
	got=$(metrics | grep -xF 'ktlsgate_crl_grace_seconds 7200')
	[ -n "$got" ] || { note "no ktlsgate_crl_grace_seconds 7200"; bad=1; }
	got=$(GW_CONF="$GW_DIR/grace.conf" kg verify "$PKI/dev/crl-dev/chain.pem")
	case $got in
	"warning: the CRL of CA crlroot expired"*"accepted: device=crl-dev "*) ;;
	*) note "verify within grace said: $got"; bad=1 ;;
	esac
	use_conf base || { note "base daemon did not restart"; return 1; }
	return $bad
}

ALL_TESTS=(t_weak_keys t_weak_signatures t_strict_profile t_good_devices t_security_level_3
	t_security_level_floor t_crl_expired t_crl_grace)

if ! setup; then
	echo "FAIL setup: could not build the PKI / broker / gateway (log: ${GW_LOG:-none})"
	[ -n "${GW_LOG:-}" ] && tail -20 "$GW_LOG"
	KG_FAILED=1
	exit 1
fi
run_tests
