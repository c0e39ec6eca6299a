#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# test-resume.sh - TLS 1.3 session resumption (issue 13, tls/tickets.h): a resumed session
# is admitted and relays; the registry and policy run again on every resumption (a device
# disabled, suspended or re-pinned after it got its ticket is refused at the CONNECT with
# an audit line that says "tls":"resumed"); a trust change (CA removed, reload) makes the
# ticket fail over to a full handshake, which verifies the chain again (so does a leaf
# that expired since); TLS 1.2 and
# `[tls] resumption = off` never resume; the metrics count full vs resumed; `session
# list` says full or resumed; `[tls] resumption_psk_ke` (off: a device offering only
# psk_ke gets a full handshake; allow: it resumes without ECDHE, audited "kex":"psk_ke";
# prefer: refused before OpenSSL 3.2), with GnuTLS's client (gnutls-cli), which can
# offer psk_ke alone as constrained devices' stacks do. Real
# mosquitto, a real ktlsgated, Python's ssl client offering its session's ticket
# (kgclient.py resume). Prints PASS/FAIL/SKIP per test; exits non-zero if any failed.
# KG_SESSION_CACHE=N runs it all with [tls] session_cache = N (test-resume-cache.sh: the
# sessions in memory, the ticket only their id); t_session_store checks where the
# sessions are (none in the cache with tickets; with the cache, its size, the oldest
# evicted first and no longer resumed, the metrics).
#
# Not here: a ticket presented with another certificate. In TLS 1.3 a resuming client
# sends no certificate (the server does not ask for one), so the certificate the
# session carries is the one inside the ticket, encrypted and MAC'd under our key; no
# client can pair a ticket with another certificate. The check that would refuse it
# (kg_ticket_check: leaf SHA-256) is covered by tests/unit/check_tickets.c.
# shellcheck disable=SC2046,SC2034
set -u
. "$(dirname "$0")/lib.sh"

setup() {
	kg_init resume
	BK_PORT=$(free_port)
	BK2_PORT=$(free_port)
	GW_PORT=$(free_port)
	GW_MPORT=$(free_port)
	local gw="$WORK/gw" d
	write_gw_conf "$gw" "$GW_PORT" "$GW_MPORT" "$BK_PORT" "$BK2_PORT"
	GW_CONF="$gw/ktlsgate.conf"
	GW_LOG="$gw/gw.log"
	: >"$GW_LOG"
	pki_setup "$WORK/pki" || return 1
	for d in rs-ok rs-dis rs-dis5 rs-susp rs-reload rs-tls12 rs-off rs-keys rs-list rs-reuse \
		rs-c1 rs-c2 rs-c3 rs-pk rs-pk2; do
		device_cert "$d" "$PKI/factory" || return 1
		kg device add "$d" >/dev/null || { echo "device add $d failed" >&2; return 1; }
	done
	# a second chain whose CA is removed mid-test
	pki root --cn "second root" --out "$PKI/root2" || return 1
	pki intermediate --cn "line2" --ca "$PKI/root2" --out "$PKI/line2" || return 1
	register_ca root2 "$PKI/root2" || return 1
	register_ca line2 "$PKI/line2" || return 1
	device_cert rs-ca "$PKI/line2" || return 1
	kg device add rs-ca >/dev/null || return 1
	# a thumbprint-pinned device, and the certificate it is re-pinned to
	pki self-signed --cn rs-pin --out "$PKI/dev/rs-pin" || return 1
	pki self-signed --cn rs-pin --out "$PKI/dev/rs-pin-new" || return 1
	kg device add rs-pin --thumbprint "$(fingerprint "$PKI/dev/rs-pin/cert.pem")" >/dev/null || return 1
	# KG_SESSION_CACHE=N (test-resume-cache.sh): every test again with the sessions kept
	# in memory ([tls] session_cache, tls/session_cache.h) instead of tickets
	[ -n "${KG_SESSION_CACHE:-}" ] && tls_key session_cache "$KG_SESSION_CACHE"
	start_broker "$BK_PORT" || return 1
	start_gateway || return 1
}

# tls_key KEY VALUE: KEY = VALUE into the config's [tls] section (made when missing: a
# section may appear only once).
tls_key() {
	if grep -q '^\[tls\]$' "$GW_CONF"; then
		sed -i "/^\[tls\]\$/a $1 = $2" "$GW_CONF"
	else
		printf '\n[tls]\n%s = %s\n' "$1" "$2" >>"$GW_CONF"
	fi
}

# resume DEVICE [kgclient resume options]: the client's lines, one per line.
resume() {
	local d=$1
	shift
	kgc resume $(dev_args "$d") "$@"
}

# has OUT LINE: OUT has exactly LINE.
has() {
	printf '%s\n' "$1" | grep -qxF -- "$2"
}

# gnutls_resume DEVICE PRIORITY: GnuTLS's client connects with DEVICE's certificate,
# takes the session ticket, connects again offering it (--resume) and sends an MQTT
# 3.1.1 CONNECT as DEVICE on that second connection. Prints gnutls-cli's lines, then a
# line "bytes HEX" with every byte it printed (the CONNACK is among them).
# PRIORITY "psk_ke": psk_key_exchange_modes = psk_ke alone (the PSK key exchange
# without its (EC)DHE forms: gnutls-cli then also needs an external PSK, a dummy one
# the server does not know and skips); "default": GnuTLS's NORMAL, which offers
# psk_dhe_ke and psk_ke.
gnutls_resume() {
	local d=$1 pr=NORMAL:-VERS-ALL:+VERS-TLS1.3 psk=() n=${#1} raw="$WORK/gnutls-$1.out"
	[ "$2" = psk_ke ] && pr="$pr:+PSK:-ECDHE-PSK:-DHE-PSK" &&
		psk=(--pskusername none --pskkey 000102030405060708090a0b0c0d0e0f)
	# CONNECT: protocol MQTT level 4, clean session, keep-alive 60 s, client id DEVICE
	{ printf "\x10\\x$(printf %02x $((12 + n)))\x00\x04MQTT\x04\x02\x00\x3c\x00\\x$(printf %02x "$n")%s" "$d"
		sleep 1; } | timeout 20 gnutls-cli --resume --priority "$pr" "${psk[@]}" \
		--x509cafile "$PKI/root/cert.pem" --x509certfile "$PKI/dev/$d/chain.pem" \
		--x509keyfile "$PKI/dev/$d/key.pem" -p "$GW_PORT" localhost >"$raw" 2>&1
	grep -aE '^(- |\*\*\*)' "$raw"
	echo "bytes $(od -An -tx1 -v "$raw" | tr -d ' \n')"
}

# decision_line MARK DEVICE: the decision audit line about DEVICE after MARK.
decision_line() {
	tail -n +"$(($1 + 1))" "$GW_LOG" | grep '"event":"decision"' | grep "\"device\":\"$2\"" | tail -1
}

# [tls] resumption_psk_ke. off (the default): every resumption runs its own ECDHE, so a
# device offering only psk_ke gets a full handshake (its certificate verified again);
# allow: that device resumes without ECDHE, and the audit line and a counter say so,
# while a device that offers psk_dhe_ke still gets it; prefer needs OpenSSL 3.2.
t_psk_ke() {
	local out line mark pk0 pk1 conf_on t
	pk0=$(metric_value ktlsgate_resumptions_psk_ke_total '')
	mark=$(log_mark)
	out=$(gnutls_resume rs-pk psk_ke)
	echo "$out" | grep -v '^bytes ' | sed 's/^/    /'
	printf '%s\n' "$out" | grep -q '^bytes .*20020000' || { note "off, psk_ke only: no CONNACK 0"; return 1; }
	printf '%s\n' "$out" | grep -q 'This is a resumed session' && { note "off: resumed a psk_ke-only offer"; return 1; }
	line=$(decision_line "$mark" rs-pk)
	printf '%s\n' "$line" | grep -q '"decision":"allow"' || { note "off: no allow line: $line"; return 1; }
	printf '%s\n' "$line" | grep -q '"tls":"resumed"' && { note "off: audited resumed: $line"; return 1; }
	mark=$(log_mark)
	out=$(gnutls_resume rs-pk2 default)
	echo "$out" | grep -v '^bytes ' | sed 's/^/    /'
	printf '%s\n' "$out" | grep -q 'This is a resumed session' || { note "off, GnuTLS's default offer: not resumed"; return 1; }
	line=$(decision_line "$mark" rs-pk2)
	printf '%s\n' "$line" | grep -q '"tls":"resumed"' || { note "off, default offer: not audited resumed: $line"; return 1; }
	printf '%s\n' "$line" | grep -q '"kex"' && { note "off, default offer: audited without ECDHE: $line"; return 1; }

	conf_on=$(cat "$GW_CONF")
	tls_key resumption_psk_ke allow
	t=$(timeout 20 "$GATED" -t -c "$GW_CONF" 2>&1)
	printf '%s\n' "$t" | grep -q "^ktlsgated: resumption_psk_ke = allow (resumptions without ECDHE for devices that offer only psk_ke" ||
		{ note "-t does not say resumption_psk_ke = allow: $t"; printf '%s\n' "$conf_on" >"$GW_CONF"; return 1; }
	timeout 10 "$KGCLI" -c "$GW_CONF" reload >/dev/null ||
		{ note "reload failed"; printf '%s\n' "$conf_on" >"$GW_CONF"; return 1; }
	mark=$(log_mark)
	out=$(gnutls_resume rs-pk psk_ke)
	echo "$out" | grep -v '^bytes ' | sed 's/^/    /'
	pk1=$(metric_value ktlsgate_resumptions_psk_ke_total '')
	line=$(decision_line "$mark" rs-pk)
	mark=$(log_mark)
	local out2 line2
	out2=$(gnutls_resume rs-pk2 default)
	line2=$(decision_line "$mark" rs-pk2)
	printf '%s\n' "$conf_on" >"$GW_CONF"
	timeout 10 "$KGCLI" -c "$GW_CONF" reload >/dev/null || { note "reload back failed"; return 1; }
	printf '%s\n' "$out" | grep -q 'This is a resumed session' || { note "allow, psk_ke only: not resumed"; return 1; }
	printf '%s\n' "$out" | grep -q '^bytes .*20020000' || { note "allow, psk_ke only: no CONNACK 0"; return 1; }
	printf '%s\n' "$line" | grep -q '"tls":"resumed"' || { note "allow: not audited resumed: $line"; return 1; }
	printf '%s\n' "$line" | grep -q '"kex":"psk_ke"' || { note "allow: not audited psk_ke: $line"; return 1; }
	printf '%s\n' "$line" | grep -q '"decision":"allow"' || { note "allow: not admitted: $line"; return 1; }
	[ $((pk1 - pk0)) = 1 ] || { note "resumptions_psk_ke_total +$((pk1 - pk0)), want +1"; return 1; }
	# allow changes nothing for a device that offers psk_dhe_ke: it keeps its ECDHE
	echo "$out2" | grep -v '^bytes ' | sed 's/^/    /'
	printf '%s\n' "$out2" | grep -q 'This is a resumed session' || { note "allow, default offer: not resumed"; return 1; }
	printf '%s\n' "$line2" | grep -q '"tls":"resumed"' || { note "allow, default offer: not audited resumed: $line2"; return 1; }
	printf '%s\n' "$line2" | grep -q '"kex"' && { note "allow, default offer: resumed without ECDHE: $line2"; return 1; }

	# prefer: OpenSSL chooses psk_ke over a key share only from 3.2 on
	tls_key resumption_psk_ke prefer
	t=$(timeout 20 "$GATED" -t -c "$GW_CONF" 2>&1)
	printf '%s\n' "$conf_on" >"$GW_CONF"
	case $(openssl version | awk '{ print $2 }') in
	3.[01].*)
		printf '%s\n' "$t" | grep -q "'resumption_psk_ke': 'prefer' needs OpenSSL 3.2 or later" ||
			{ note "OpenSSL < 3.2: prefer not refused as it should: $t"; return 1; } ;;
	*)
		printf '%s\n' "$t" | grep -q "^ktlsgated: resumption_psk_ke = prefer" ||
			{ note "prefer not accepted: $t"; return 1; } ;;
	esac
}

t_resumed_relays() {
	local f out full0 res0 full1 res1 mark rec0 rec1
	# The data path after the handoff takes the session's exported keys (kTLS where the
	# kernel has it, else the user-space record relay): both come from the keylog
	# secrets, which a resumed handshake gives as a full one does.
	rec0=$(metric_value ktlsgate_sessions_started_total 'mode="userspace"')
	rec0=$((rec0 + $(metric_value ktlsgate_sessions_started_total 'mode="ktls_splice"')))
	rec0=$((rec0 + $(metric_value ktlsgate_sessions_started_total 'mode="ktls_tx"')))
	full0=$(metric_value ktlsgate_handshakes_completed_total 'kind="full"')
	res0=$(metric_value ktlsgate_handshakes_completed_total 'kind="resumed"')
	mark=$(log_mark)
	f=$(sub_start 'itest/resume' 3 15)
	out=$(resume rs-ok --times 3 --topic itest/resume --msg m)
	echo "$out" | sed 's/^/    /'
	has "$out" "conn 0 new TLSv1.3" || { note "first connection not a full TLS 1.3 handshake"; return 1; }
	has "$out" "conn 1 reused TLSv1.3" || { note "second connection not resumed"; return 1; }
	has "$out" "conn 2 reused TLSv1.3" || { note "third connection (the same ticket) not resumed"; return 1; }
	[ "$(printf '%s\n' "$out" | grep -c 'connack 0x00$')" = 3 ] || { note "not three CONNACK 0"; return 1; }
	[ "$(printf '%s\n' "$out" | grep -cx 'puback 0x00')" = 3 ] || { note "not three PUBACKs"; return 1; }
	# the broker got what the resumed sessions published: the relay runs on their keys
	sub_wait "$f" "itest/resume m-1" 10 || { note "broker missed m-1: $(cat "$f")"; return 1; }
	sub_wait "$f" "itest/resume m-2" 10 || { note "broker missed m-2: $(cat "$f")"; return 1; }
	audit_has "$mark" ok rs-ok allow || { note "no allow audit line"; return 1; }
	[ "$(tail -n +"$((mark + 1))" "$GW_LOG" | grep '"event":"decision"' | grep '"device":"rs-ok"' |
		grep -c '"tls":"resumed"')" = 2 ] || { note "not two audit lines with tls=resumed"; return 1; }
	full1=$(metric_value ktlsgate_handshakes_completed_total 'kind="full"')
	res1=$(metric_value ktlsgate_handshakes_completed_total 'kind="resumed"')
	if [ $((full1 - full0)) != 1 ] || [ $((res1 - res0)) != 2 ]; then
		note "metrics: full +$((full1 - full0)) resumed +$((res1 - res0)), want +1 +2"
		return 1
	fi
	rec1=$(metric_value ktlsgate_sessions_started_total 'mode="userspace"')
	rec1=$((rec1 + $(metric_value ktlsgate_sessions_started_total 'mode="ktls_splice"')))
	rec1=$((rec1 + $(metric_value ktlsgate_sessions_started_total 'mode="ktls_tx"')))
	[ $((rec1 - rec0)) = 3 ] || { note "$((rec1 - rec0)) of 3 sessions on an exported-key data path"; return 1; }
}

# refused_on_resume DEVICE LEVEL CONNACK REASON CMD: the ticket was got while allowed;
# after CMD the resumed connection is refused with CONNACK and REASON, audited resumed.
refused_on_resume() {
	local d=$1 level=$2 want=$3 reason=$4 cmd=$5 out mark pol0 pol1
	pol0=$(metric_value ktlsgate_resumption_refusals_total 'reason="policy"')
	mark=$(log_mark)
	out=$(resume "$d" --level "$level" --between "$cmd")
	echo "$out" | sed 's/^/    /'
	has "$out" "conn 0 connack 0x00" || { note "$d: not admitted before"; return 1; }
	has "$out" "conn 1 reused TLSv1.3" || { note "$d: second connection not resumed"; return 1; }
	has "$out" "conn 1 connack $want" || { note "$d: want CONNACK $want"; return 1; }
	audit_has "$mark" "$reason" "$d" deny || { note "$d: no deny audit line for $reason"; return 1; }
	printf '%s\n' "$AUDIT_OUT" | grep -q '"tls": *"resumed"' || { note "$d: audit line does not say resumed: $AUDIT_OUT"; return 1; }
	pol1=$(metric_value ktlsgate_resumption_refusals_total 'reason="policy"')
	[ "$pol1" -gt "$pol0" ] || { note "resumption_refusals_total{reason=policy} did not grow"; return 1; }
}

# ticket LINES N: the ticket the client held after connection N.
ticket_of() {
	printf '%s\n' "$1" | sed -n "s/^conn $2 ticket //p"
}

# [tls] ticket_reuse = on (the default): a resumption with a young ticket sends no new
# one, the device resumes again with the ticket it got at its full handshake (and the
# metric counts it); = off: a new ticket after every resumption. (Renewal past half the
# lifetime: tests/unit/check_tickets.c, the lifetime being at least 60 s.)
t_ticket_reuse() {
	local out t0 t1 t2 re0 re1 conf_on
	re0=$(metric_value ktlsgate_ticket_reuses_total '')
	out=$(resume rs-reuse --times 3)
	echo "$out" | sed 's/^/    /'
	has "$out" "conn 2 reused TLSv1.3" || { note "third connection not resumed"; return 1; }
	t0=$(ticket_of "$out" 0) t1=$(ticket_of "$out" 1) t2=$(ticket_of "$out" 2)
	[ -n "$t0" ] && [ "$t0" = "$t1" ] && [ "$t1" = "$t2" ] ||
		{ note "reuse on: tickets $t0 $t1 $t2, want one ticket throughout"; return 1; }
	re1=$(metric_value ktlsgate_ticket_reuses_total '')
	[ $((re1 - re0)) = 2 ] || { note "ticket_reuses_total +$((re1 - re0)), want +2"; return 1; }
	conf_on=$(cat "$GW_CONF")
	tls_key ticket_reuse off
	timeout 20 "$GATED" -t -c "$GW_CONF" 2>&1 | grep -q "ticket_reuse off)$" ||
		{ note "-t does not say ticket_reuse off"; printf '%s\n' "$conf_on" >"$GW_CONF"; return 1; }
	timeout 10 "$KGCLI" -c "$GW_CONF" reload >/dev/null ||
		{ note "reload failed"; printf '%s\n' "$conf_on" >"$GW_CONF"; return 1; }
	out=$(resume rs-reuse --times 3)
	printf '%s\n' "$conf_on" >"$GW_CONF"
	timeout 10 "$KGCLI" -c "$GW_CONF" reload >/dev/null || { note "reload back failed"; return 1; }
	echo "$out" | sed 's/^/    /'
	has "$out" "conn 2 reused TLSv1.3" || { note "reuse off: third connection not resumed"; return 1; }
	t0=$(ticket_of "$out" 0) t1=$(ticket_of "$out" 1) t2=$(ticket_of "$out" 2)
	[ -n "$t0" ] && [ "$t0" != "$t1" ] && [ "$t1" != "$t2" ] && [ "$t0" != "$t2" ] ||
		{ note "reuse off: tickets $t0 $t1 $t2, want a new one each time"; return 1; }
	[ "$(metric_value ktlsgate_ticket_reuses_total '')" = "$re1" ] ||
		{ note "reuse off: ticket_reuses_total grew"; return 1; }
}

t_disabled_after_ticket() {
	refused_on_resume rs-dis 4 0x05 disabled "timeout 10 $KGCLI -c $GW_CONF device set rs-dis --status disabled" || return 1
	refused_on_resume rs-dis5 5 0x87 disabled "timeout 10 $KGCLI -c $GW_CONF device set rs-dis5 --status disabled"
}

t_suspended_after_ticket() {
	refused_on_resume rs-susp 4 0x05 suspended "timeout 10 $KGCLI -c $GW_CONF device set rs-susp --status suspended"
}

t_pin_changed_after_ticket() {
	refused_on_resume rs-pin 4 0x05 thumbprint_mismatch \
		"timeout 10 $KGCLI -c $GW_CONF device set rs-pin --thumbprint $(fingerprint "$PKI/dev/rs-pin-new/cert.pem")"
}

# The CA is removed: the trust is rebuilt, the ticket belongs to the old generation, so a
# full handshake runs and refuses the chain (unknown CA).
t_ca_removed_full_handshake() {
	local out tc0 tc1 mark
	tc0=$(metric_value ktlsgate_resumption_refusals_total 'reason="trust_changed"')
	mark=$(log_mark)
	# both: the chain the device sends (leaf, line2) still reaches root2 without line2
	out=$(resume rs-ca --between "timeout 10 $KGCLI -c $GW_CONF ca remove line2 && timeout 10 $KGCLI -c $GW_CONF ca remove root2")
	echo "$out" | sed 's/^/    /'
	has "$out" "conn 0 connack 0x00" || { note "not admitted before"; return 1; }
	printf '%s\n' "$out" | grep -q "^conn 1 reused" && { note "resumed after the CA was removed"; return 1; }
	printf '%s\n' "$out" | grep -q "^conn 1 connack 0x00" && { note "admitted after the CA was removed"; return 1; }
	audit_has "$mark" unknown_ca rs-ca deny || { note "no unknown_ca refusal (full handshake)"; return 1; }
	tc1=$(metric_value ktlsgate_resumption_refusals_total 'reason="trust_changed"')
	[ "$tc1" -gt "$tc0" ] || { note "resumption_refusals_total{reason=trust_changed} did not grow"; return 1; }
}

# A reload makes a new trust generation: a full handshake, the device admitted again,
# and the new ticket resumes.
t_reload_full_handshake() {
	local out
	out=$(resume rs-reload --times 3 --between "timeout 10 $KGCLI -c $GW_CONF reload >/dev/null")
	echo "$out" | sed 's/^/    /'
	# conn 1 follows a reload: full; conn 2 follows a second reload: full again
	has "$out" "conn 1 new TLSv1.3" || { note "resumed across a reload"; return 1; }
	has "$out" "conn 1 connack 0x00" || { note "not admitted after the reload"; return 1; }
	has "$out" "conn 2 new TLSv1.3" || { note "resumed across the second reload"; return 1; }
	out=$(resume rs-reload --times 2)
	has "$out" "conn 1 reused TLSv1.3" || { note "no resumption without a reload: $out"; return 1; }
}

# A leaf that expires after its ticket was made: not resumed (leaf_expired); the full
# handshake that follows refuses it (cert_expired). The certificate is made here,
# valid for 8 s, so the first connection has time to get its ticket (it checks that it
# was admitted while valid) and the wait for the expiry stays short.
t_leaf_expired_full_handshake() {
	local out le0 le1 mark cert="$PKI/dev/rs-exp/cert.pem"
	device_cert rs-exp "$PKI/factory" --days 1 --not-before $(($(date +%s) - 86400 + 8)) || { note "pki"; return 1; }
	kg device add rs-exp >/dev/null 2>&1 || true
	le0=$(metric_value ktlsgate_resumption_refusals_total 'reason="leaf_expired"')
	mark=$(log_mark)
	out=$(resume rs-exp --timeout 10 --between \
		"while openssl x509 -checkend 0 -noout -in $cert >/dev/null; do sleep 0.2; done; sleep 1.1")
	echo "$out" | sed 's/^/    /'
	has "$out" "conn 0 connack 0x00" || { note "not admitted while valid"; return 1; }
	printf '%s\n' "$out" | grep -q "^conn 1 reused" && { note "an expired leaf resumed"; return 1; }
	printf '%s\n' "$out" | grep -q "^conn 1 connack 0x00" && { note "an expired leaf admitted"; return 1; }
	audit_has "$mark" cert_expired rs-exp deny || { note "no cert_expired refusal (full handshake)"; return 1; }
	le1=$(metric_value ktlsgate_resumption_refusals_total 'reason="leaf_expired"')
	[ "$le1" -gt "$le0" ] || { note "resumption_refusals_total{reason=leaf_expired} did not grow"; return 1; }
}

t_tls12_never_resumes() {
	local out
	out=$(resume rs-tls12 --tls12 --times 2)
	echo "$out" | sed 's/^/    /'
	has "$out" "conn 0 new TLSv1.2" || { note "first connection not TLS 1.2"; return 1; }
	has "$out" "conn 1 new TLSv1.2" || { note "TLS 1.2 resumed"; return 1; }
	has "$out" "conn 1 connack 0x00" || { note "TLS 1.2 second connection not admitted"; return 1; }
}

# `session list` says how each live session's handshake went: full, then resumed (JSON
# field `tls` and the table's TLS column), read while each connection is up.
t_session_list_tls() {
	local out i tls
	out=$(resume rs-list --times 2 --during \
		"$KGCLI -c $GW_CONF session list --json >$WORK/sl.\$KGC_CONN.json && $KGCLI -c $GW_CONF session list >$WORK/sl.\$KGC_CONN.txt")
	echo "$out" | sed 's/^/    /'
	has "$out" "conn 1 reused TLSv1.3" || { note "second connection not resumed"; return 1; }
	for i in 0 1; do
		has "$out" "conn $i during rc=0" || { note "session list failed during connection $i"; return 1; }
		tls=$($PY -c 'import json,sys
s = [x for x in json.load(open(sys.argv[1])) if x["device"] == "rs-list"]
print(" ".join(x["tls"] for x in s))' "$WORK/sl.$i.json") || { note "session list --json: $(cat "$WORK/sl.$i.json")"; return 1; }
		case $i:$tls in
		0:full | 1:resumed) ;;
		*) note "connection $i: session list says tls '$tls'"; return 1 ;;
		esac
		grep -q '^ID .* MODE  *TLS  *BACKEND ' "$WORK/sl.$i.txt" || { note "no TLS column: $(head -1 "$WORK/sl.$i.txt")"; return 1; }
		grep -Eq " rs-list .* $tls +local " "$WORK/sl.$i.txt" || { note "table row of rs-list does not say $tls: $(cat "$WORK/sl.$i.txt")"; return 1; }
	done
}

# Two ticket keys, old tickets still decrypting: every worker shares the store, so a
# ticket made by one worker resumes on another (two workers, several connections).
t_tickets_shared_by_workers() {
	local out n
	out=$(resume rs-keys --times 8)
	n=$(printf '%s\n' "$out" | grep -c '^conn [1-7] reused TLSv1.3$')
	[ "$n" = 7 ] || { note "$n of 7 reconnections resumed: $out"; return 1; }
	[ "$(metric_value ktlsgate_ticket_key_rotations_total)" -ge 1 ] || { note "no ticket key made"; return 1; }
}

# Where the sessions are. Tickets (the default): the cache holds none. With
# [tls] session_cache (KG_SESSION_CACHE): the sessions resumed above are in it, and a
# cache made smaller by a reload drops the oldest first: rs-c1's session, made before
# rs-c2's and rs-c3's, is evicted by a cache of 2 and no longer resumes; rs-c3's does.
t_session_store() {
	local n e0 e1 out conf
	n=$(metric_value ktlsgate_session_cache_sessions)
	if [ -z "${KG_SESSION_CACHE:-}" ]; then
		[ "$n" = 0 ] || { note "tickets: $n sessions in the cache, want 0"; return 1; }
		echo "    tickets: the session cache holds $n"
		return 0
	fi
	[ "$n" -ge 1 ] 2>/dev/null || { note "session_cache: the cache holds '$n' sessions after the tests above"; return 1; }
	timeout 20 "$GATED" -t -c "$GW_CONF" 2>&1 | grep -q "^ktlsgated: session_cache = $KG_SESSION_CACHE " ||
		{ note "-t does not say session_cache = $KG_SESSION_CACHE"; return 1; }
	conf=$(cat "$GW_CONF")
	sed -i "s/^session_cache = .*/session_cache = 2/" "$GW_CONF"
	timeout 10 "$KGCLI" -c "$GW_CONF" reload >/dev/null || { note "reload failed"; printf '%s\n' "$conf" >"$GW_CONF"; return 1; }
	e0=$(metric_value ktlsgate_session_cache_evictions_total)
	# rs-c1 connects; rs-c2 and rs-c3 connect in between (two newer sessions)
	out=$(resume rs-c1 --times 2 --between "$PY $KGC connect $(dev_args rs-c2) >/dev/null; $PY $KGC connect $(dev_args rs-c3) >/dev/null")
	echo "$out" | sed 's/^/    /'
	n=$(metric_value ktlsgate_session_cache_sessions)
	e1=$(metric_value ktlsgate_session_cache_evictions_total)
	echo "    cache of 2: $n sessions, evictions $e0 -> $e1"
	has "$out" "conn 0 connack 0x00" && has "$out" "conn 1 connack 0x00" || { note "rs-c1 not admitted: $out"; printf '%s\n' "$conf" >"$GW_CONF"; return 1; }
	has "$out" "conn 1 new TLSv1.3" || { note "rs-c1's evicted session resumed"; printf '%s\n' "$conf" >"$GW_CONF"; return 1; }
	[ "$n" = 2 ] || { note "a cache of 2 holds $n"; printf '%s\n' "$conf" >"$GW_CONF"; return 1; }
	[ "$e1" -ge $((e0 + 2)) ] || { note "evictions $e0 -> $e1, want at least 2 more"; printf '%s\n' "$conf" >"$GW_CONF"; return 1; }
	out=$(resume rs-c3 --times 2)
	printf '%s\n' "$conf" >"$GW_CONF"
	timeout 10 "$KGCLI" -c "$GW_CONF" reload >/dev/null || { note "reload back failed"; return 1; }
	has "$out" "conn 1 reused TLSv1.3" || { note "rs-c3's session did not resume: $out"; return 1; }
}

# Last: restarts the gateway with [tls] resumption = off.
t_resumption_off() {
	local out res0 res1 t
	tls_key resumption off
	t=$(timeout 20 "$GATED" -t -c "$GW_CONF" 2>&1)
	printf '%s\n' "$t" | grep -qx "ktlsgated: resumption = off" || { note "-t does not say resumption = off: $t"; return 1; }
	stop_gateway
	start_gateway || { note "gateway did not restart"; return 1; }
	res0=$(metric_value ktlsgate_handshakes_completed_total 'kind="resumed"')
	out=$(resume rs-off --times 3)
	echo "$out" | sed 's/^/    /'
	printf '%s\n' "$out" | grep -q "reused" && { note "resumed with resumption = off"; return 1; }
	[ "$(printf '%s\n' "$out" | grep -c 'connack 0x00')" = 3 ] || { note "not three admissions"; return 1; }
	res1=$(metric_value ktlsgate_handshakes_completed_total 'kind="resumed"')
	[ "$res1" = "$res0" ] || { note "resumed handshakes counted with resumption = off"; return 1; }
}

after_each() {
	kill -0 "$GW_PID" 2>/dev/null && return 0
	note "ktlsgated died during this test; last log line: $(tail -1 "$GW_LOG" | cut -c1-160)"
	forget_pid "$GW_PID"
	start_gateway >/dev/null 2>&1 || echo "    could not restart ktlsgated"
	return 1
}

ALL_TESTS=(t_resumed_relays t_disabled_after_ticket t_suspended_after_ticket
	t_pin_changed_after_ticket t_ca_removed_full_handshake t_reload_full_handshake
	t_leaf_expired_full_handshake
	t_tls12_never_resumes t_session_list_tls t_tickets_shared_by_workers t_ticket_reuse
	t_session_store t_psk_ke t_resumption_off)

if ! setup; then
	echo "FAIL setup: could not build the PKI / brokers / gateway (log: ${GW_LOG:-none})"
	[ -n "${GW_LOG:-}" ] && tail -20 "$GW_LOG"
	KG_FAILED=1
	exit 1
fi
run_tests
