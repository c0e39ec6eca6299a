#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# test-revoke.sh - revocation and configuration reach live sessions (issue 10, part 6):
# a new CRL cuts the session of the certificate it lists, a CA disabled or revoked cuts
# every session under it (and under the registered CAs it issued), a thumbprint pin
# changed or removed cuts its device's session, `device set
# --backend` / `ca set --backend` and a reload that moves a backend's address close the
# sessions relayed to the old broker with backend_moved, and backend names are checked
# by the CLI and by a reload. Real mosquitto brokers, a real ktlsgated, real TLS clients.
# Prints PASS/FAIL/SKIP per test; exits non-zero if any failed.
# shellcheck disable=SC2046,SC2034
set -u
. "$(dirname "$0")/lib.sh"

# PKI:  root (registered) -> factory (registered, [crl] factory = crl.pem)
#       root2 (registered) -> line2 (registered)          CA status tests
#       root3 (registered) -> line3 (registered)          revoked root
setup() {
	kg_init revoke
	BK_PORT=$(free_port)
	BK2_PORT=$(free_port)
	BK3_PORT=$(free_port)
	GW_PORT=$(free_port)
	GW_MPORT=$(free_port)
	local gw="$WORK/gw" d
	write_gw_conf "$gw" "$GW_PORT" "$GW_MPORT" "$BK_PORT" "$BK2_PORT"
	GW_CONF="$gw/ktlsgate.conf"
	GW_LOG="$gw/gw.log"
	: >"$GW_LOG"
	pki_setup "$WORK/pki" || return 1
	for d in crlcut crlkeep bm-dev bm-keep ra-other ra-local val1; do
		device_cert "$d" "$PKI/factory" || return 1
	done
	pki root --cn "second root" --out "$PKI/root2" || return 1
	pki intermediate --cn "line2" --ca "$PKI/root2" --out "$PKI/line2" || return 1
	register_ca root2 "$PKI/root2" || return 1
	register_ca line2 "$PKI/line2" || return 1
	pki root --cn "third root" --out "$PKI/root3" || return 1
	pki intermediate --cn "line3" --ca "$PKI/root3" --out "$PKI/line3" || return 1
	register_ca root3 "$PKI/root3" || return 1
	register_ca line3 "$PKI/line3" || return 1
	for d in l2-a l2-b l2-c; do device_cert "$d" "$PKI/line2" || return 1; done
	for d in l3-a l3-b; do device_cert "$d" "$PKI/line3" || return 1; done
	# an empty CRL to start with: the revocation test publishes a new one
	pki crl --ca "$PKI/factory" --out "$gw/crl.pem" || return 1
	printf '\n[crl]\nfactory = crl.pem\n' >>"$GW_CONF"
	for d in crlcut crlkeep bm-dev bm-keep ra-local val1 l2-a l2-b l2-c l3-a l3-b; do
		kg device add "$d" >/dev/null || { echo "device add $d failed" >&2; return 1; }
	done
	kg device add ra-other --backend other >/dev/null || return 1
	# thumbprint-pinned devices: pin-chg is re-pinned, pin-rot comes with the leaf its
	# secondary pins (a rotation) and the secondary is dropped
	local n
	for n in pin-chg pin-chg-new pin-rot pin-rot-new; do
		pki self-signed --cn "${n%-new}" --out "$PKI/dev/$n" || return 1
	done
	kg device add pin-chg --thumbprint "$(fingerprint "$PKI/dev/pin-chg/cert.pem")" >/dev/null || return 1
	kg device add pin-rot --thumbprint "$(fingerprint "$PKI/dev/pin-rot-new/cert.pem")" \
		--secondary "$(fingerprint "$PKI/dev/pin-rot/cert.pem")" >/dev/null || return 1
	start_broker "$BK_PORT" || return 1
	start_broker "$BK2_PORT" || return 1
	start_broker "$BK3_PORT" || return 1
	start_gateway || return 1
}

json_field() {
	printf '%s' "$1" | $PY -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$2" 2>/dev/null
}

# hold DEVICE SECONDS: a relayed session in the background; its output file in HOLD_OUT.
# Waits until the CONNACK is in (the session is relayed) before returning.
hold() {
	local f i
	f=$(mktemp "$WORK/hold.XXXXXX")
	kgc connect $(dev_args "$1") --hold "$2" >"$f" 2>&1 &
	for ((i = 0; i < 100; i++)); do
		grep -q '^connack' "$f" && break
		sleep 0.05
	done
	HOLD_OUT=$f
	[ "$(head -1 "$f")" = "connack 0x00" ] || { note "$1: no session: $(cat "$f")"; return 1; }
}

# held_result FILE: wait for the held session's second line ("eof after ..." or "still
# open after ...").
held_result() {
	local i
	for ((i = 0; i < 200; i++)); do
		[ "$(wc -l <"$1")" -ge 2 ] && break
		sleep 0.05
	done
	sed -n 2p "$1"
}

# cut_ms DEVICE CMD: connect DEVICE, run CMD, print the ms from starting CMD to EOF
# ("" if the session was not closed within 5 s). Prints the figure for the log.
cut_ms() {
	local res eof
	res=$(kgc cutoff $(dev_args "$1") --cmd "$2" | tail -1)
	eof=$(json_field "$res" eof_ms)
	echo "    $1: EOF ${eof} ms after starting '$2' ($res)" >&2
	[ -n "$eof" ] && [ "$eof" != None ] && echo "$eof"
}

lt_1000() {
	$PY -c 'import sys; sys.exit(0 if float(sys.argv[1]) < 1000 else 1)' "$1"
}

# A CRL published for the factory CA (new file + reload) cuts the listed device's live
# session with cert_revoked; another device of the same CA stays connected.
t_crl_cuts_session() {
	local gw mark ms got keep
	gw=$(dirname "$GW_CONF")
	hold crlkeep 8 || return 1
	keep=$HOLD_OUT
	pki crl --ca "$PKI/factory" --out "$gw/crl.new.pem" "$PKI/dev/crlcut/cert.pem" || { note "pki crl failed"; return 1; }
	mark=$(log_mark)
	ms=$(cut_ms crlcut "mv $gw/crl.new.pem $gw/crl.pem && kill -HUP $GW_PID")
	[ -n "$ms" ] || { note "crlcut not closed within 5 s of publishing the CRL"; return 1; }
	echo "    CRL published -> revoked session closed in $ms ms"
	lt_1000 "$ms" || { note "closed after $ms ms (limit 1000 ms)"; return 1; }
	audit_has "$mark" cert_revoked crlcut || { note "no cert_revoked audit for crlcut: $AUDIT_OUT"; return 1; }
	got=$(held_result "$keep")
	[ "$got" = "still open after 8.0s" ] || { note "crlkeep was cut too: '$got'"; return 1; }
	# and the handshake refuses it from now on
	got=$(kgc connect $(dev_args crlcut) --peek 500 | head -1)
	case $got in tls_error:*) ;; *) note "crlcut reconnected: '$got'"; return 1 ;; esac
}

# ca set line2 --status disabled: every live session under line2 ends within 1 s with
# ca_disabled, the factory device stays, `ca list` shows it, reconnects get CONNACK 5;
# enabled again, they are back.
t_ca_disable() {
	local mark ms got f1 f2 keep st
	hold l2-b 8 || return 1
	f1=$HOLD_OUT
	hold l2-c 8 || return 1
	f2=$HOLD_OUT
	hold crlkeep 8 || return 1
	keep=$HOLD_OUT
	mark=$(log_mark)
	ms=$(cut_ms l2-a "timeout 10 $KGCLI -c $GW_CONF ca set line2 --status disabled")
	[ -n "$ms" ] || { note "l2-a not closed within 5 s of ca set --status disabled"; return 1; }
	echo "    ca set --status disabled -> session closed in $ms ms"
	lt_1000 "$ms" || { note "closed after $ms ms (limit 1000 ms)"; return 1; }
	for f in "$f1" "$f2"; do
		got=$(held_result "$f")
		case $got in "eof after "*) ;; *) note "a line2 session stayed: '$got'"; return 1 ;; esac
	done
	audit_has "$mark" ca_disabled l2-b || { note "no ca_disabled audit for l2-b: $AUDIT_OUT"; return 1; }
	got=$(held_result "$keep")
	[ "$got" = "still open after 8.0s" ] || { note "factory device was cut: '$got'"; return 1; }
	st=$(kg ca list --json | $PY -c 'import json,sys; print([c["status"] for c in json.load(sys.stdin) if c["name"]=="line2"][0])')
	[ "$st" = disabled ] || { note "ca list --json: line2 status '$st'"; return 1; }
	kg ca list | grep -Eq '^line2 +yes +disabled ' || { note "ca list: $(kg ca list | grep line2)"; return 1; }
	mark=$(log_mark)
	got=$(kgc connect $(dev_args l2-a) --level 4 | head -1)
	[ "$got" = "connack 0x05" ] || { note "reconnect under a disabled CA: '$got'"; return 1; }
	got=$(kgc connect $(dev_args l2-a) --level 5 | head -1)
	[ "$got" = "connack 0x87" ] || { note "v5 reconnect under a disabled CA: '$got'"; return 1; }
	audit_has "$mark" ca_disabled l2-a deny || { note "no deny/ca_disabled audit: $AUDIT_OUT"; return 1; }
	kg ca set line2 --status enabled >/dev/null || { note "ca set --status enabled failed"; return 1; }
	got=$(kgc connect $(dev_args l2-a) | head -1)
	[ "$got" = "connack 0x00" ] || { note "after enabling line2 again: '$got'"; return 1; }
}

# Revoking a root reaches the devices of a registered intermediate under it (their
# nearest proven CA is line3); revoked is final.
t_ca_root_revoked() {
	local mark ms got
	hold l3-b 8 || return 1
	mark=$(log_mark)
	ms=$(cut_ms l3-a "timeout 10 $KGCLI -c $GW_CONF ca set root3 --status revoked")
	[ -n "$ms" ] || { note "l3-a not closed within 5 s of revoking root3"; return 1; }
	lt_1000 "$ms" || { note "closed after $ms ms (limit 1000 ms)"; return 1; }
	got=$(held_result "$HOLD_OUT")
	case $got in "eof after "*) ;; *) note "l3-b stayed: '$got'"; return 1 ;; esac
	audit_has "$mark" ca_disabled l3-a || { note "no ca_disabled audit: $AUDIT_OUT"; return 1; }
	got=$(kgc connect $(dev_args l3-a) --level 5 | head -1)
	[ "$got" = "connack 0x8a" ] || { note "v5 reconnect under a revoked root: '$got' (want banned 0x8a)"; return 1; }
	# `ktlsgate verify` runs the same decision, with the status folded down the chain
	got=$(kg verify "$PKI/dev/l3-a/chain.pem")
	[ "$got" = "refused: ca_disabled (CA line3 (or a registered CA above it) is revoked)" ] ||
		{ note "verify: '$got'"; return 1; }
	timeout 20 "$KGCLI" -c "$GW_CONF" ca set root3 --status enabled >"$WORK/out" 2>"$WORK/err"
	got=$?
	[ "$got" = 2 ] || { note "re-enabling a revoked CA exited $got"; return 1; }
	grep -q 'revoked is final' "$WORK/err" || { note "message: $(cat "$WORK/err")"; return 1; }
}

# device set --backend: the live session is closed with backend_moved, and the device
# reconnects to the new broker (a subscriber there sees its publish).
t_device_backend_moved() {
	local mark ms got f keep
	hold bm-keep 6 || return 1
	keep=$HOLD_OUT
	mark=$(log_mark)
	ms=$(cut_ms bm-dev "timeout 10 $KGCLI -c $GW_CONF device set bm-dev --backend other")
	[ -n "$ms" ] || { note "bm-dev not closed within 5 s of device set --backend"; return 1; }
	lt_1000 "$ms" || { note "closed after $ms ms (limit 1000 ms)"; return 1; }
	audit_has "$mark" backend_moved bm-dev || { note "no backend_moved audit: $AUDIT_OUT"; return 1; }
	f=$(mktemp "$WORK/sub.XXXXXX")
	timeout 8 mosquitto_sub -h 127.0.0.1 -p "$BK2_PORT" -t itest/moved -v -C 1 -W 6 >"$f" 2>/dev/null &
	sleep 0.3
	got=$(kgc connect $(dev_args bm-dev) --topic itest/moved --msg there | head -2 | tr '\n' ' ')
	[ "$got" = "connack 0x00 puback 0x00 " ] || { note "reconnect: '$got'"; return 1; }
	sub_wait "$f" "itest/moved there" || { note "new broker did not get the publish: $(cat "$f")"; return 1; }
	got=$(held_result "$keep")
	[ "$got" = "still open after 6.0s" ] || { note "bm-keep was cut: '$got'"; return 1; }
}

# ca set --backend: sessions under that CA without a backend of their own move.
t_ca_backend_moved() {
	local mark ms
	mark=$(log_mark)
	ms=$(cut_ms l2-b "timeout 10 $KGCLI -c $GW_CONF ca set line2 --backend other")
	[ -n "$ms" ] || { note "l2-b not closed within 5 s of ca set --backend"; return 1; }
	lt_1000 "$ms" || { note "closed after $ms ms (limit 1000 ms)"; return 1; }
	audit_has "$mark" backend_moved l2-b || { note "no backend_moved audit: $AUDIT_OUT"; return 1; }
	kg ca set line2 --backend "" >/dev/null || { note "ca set --backend '' failed"; return 1; }
}

# A reload that gives backend "other" a new address closes the sessions relayed to it
# (backend_moved, no duplicate session left on the old broker); "local" ones stay.
t_reload_backend_address() {
	local mark ms got keep
	hold ra-local 6 || return 1
	keep=$HOLD_OUT
	cp "$GW_CONF" "$GW_CONF.before"
	sed "s/^address = 127.0.0.1:$BK2_PORT\$/address = 127.0.0.1:$BK3_PORT/" "$GW_CONF.before" >"$GW_CONF.new"
	grep -q "127.0.0.1:$BK3_PORT" "$GW_CONF.new" || { note "could not rewrite the config"; return 1; }
	mark=$(log_mark)
	ms=$(cut_ms ra-other "cp $GW_CONF.new $GW_CONF && kill -HUP $GW_PID")
	[ -n "$ms" ] || { note "ra-other not closed within 5 s of the reload"; cp "$GW_CONF.before" "$GW_CONF"; return 1; }
	lt_1000 "$ms" || { note "closed after $ms ms (limit 1000 ms)"; return 1; }
	audit_has "$mark" backend_moved ra-other || { note "no backend_moved audit: $AUDIT_OUT"; return 1; }
	got=$(held_result "$keep")
	[ "$got" = "still open after 6.0s" ] || { note "ra-local was cut: '$got'"; return 1; }
	cp "$GW_CONF.before" "$GW_CONF"
	kill -HUP "$GW_PID"
	sleep 0.3
}

# The CLI refuses a backend that is not in the config file: exit 2, naming the ones
# that are; a typo no longer means CONNACK 3 forever.
t_backend_names_checked() {
	local bad=0 args
	while read -r args; do
		# shellcheck disable=SC2086
		timeout 20 "$KGCLI" -c "$GW_CONF" $args >"$WORK/out" 2>"$WORK/err"
		rc=$?
		if [ $rc != 2 ]; then
			note "'$args' exited $rc: $(cat "$WORK/err")"
			bad=1
		elif ! grep -q "backend 'ghost' is not configured in $GW_CONF (configured: local, other)" "$WORK/err"; then
			note "'$args': message: $(cat "$WORK/err")"
			bad=1
		fi
	done <<EOF
device add typo1 --backend ghost
device set val1 --backend ghost
ca add $PKI/root2/cert.pem --name dup --backend ghost
ca set line2 --backend ghost
EOF
	kg device show typo1 >/dev/null 2>&1 && { note "typo1 was added"; bad=1; }
	[ "$(kg device show val1 --json | $PY -c 'import json,sys; print(json.load(sys.stdin)["backend"])')" = None ] ||
		{ note "val1's backend changed"; bad=1; }
	# a configured one is fine
	kg device set val1 --backend other >/dev/null || { note "device set --backend other failed"; bad=1; }
	return $bad
}

# A reload that removes a backend still named in the registry is refused (the running
# configuration stays, sessions on it too), and `ktlsgated -t` says the same.
t_reload_removed_backend() {
	local mark got keep
	hold ra-other 6 || return 1
	keep=$HOLD_OUT
	cp "$GW_CONF" "$GW_CONF.before"
	$PY - "$GW_CONF.before" "$GW_CONF.new" <<'EOF'
import sys
out, skip = [], False
for line in open(sys.argv[1]):
    if line.startswith("[backend other]"):
        skip = True
        continue
    if skip and line.startswith("["):
        skip = False
    if not skip:
        out.append(line)
open(sys.argv[2], "w").write("".join(out))
EOF
	grep -q 'backend other' "$GW_CONF.new" && { note "could not rewrite the config"; return 1; }
	timeout 20 "$GATED" -t -c "$GW_CONF.new" >"$WORK/out" 2>"$WORK/err"
	got=$?
	[ "$got" != 0 ] || { note "ktlsgated -t accepted a config without backend other"; return 1; }
	grep -q 'backend "other" is named by [0-9]* device(s) and [0-9]* CA(s) in the registry but is not configured (configured: local)' "$WORK/err" ||
		{ note "-t message: $(cat "$WORK/err" "$WORK/out")"; return 1; }
	mark=$(log_mark)
	cp "$GW_CONF.new" "$GW_CONF"
	kill -HUP "$GW_PID"
	for ((i = 0; i < 40; i++)); do
		tail -n +"$((mark + 1))" "$GW_LOG" | grep -q 'reload failed' && break
		sleep 0.05
	done
	got=$(tail -n +"$((mark + 1))" "$GW_LOG" | grep 'reload failed' | head -1)
	cp "$GW_CONF.before" "$GW_CONF"
	case $got in
	*'backend "other" is named by'*) ;;
	*) note "reload not refused with a clear error: '$got'"; return 1 ;;
	esac
	got=$(held_result "$keep")
	[ "$got" = "still open after 6.0s" ] || { note "ra-other's session ended: '$got'"; return 1; }
	got=$(kgc connect $(dev_args ra-other) | head -1)
	[ "$got" = "connack 0x00" ] || { note "ra-other after the refused reload: '$got'"; return 1; }
}

# A live session of a pinned device whose pin changes is cut like a disabled one (the
# revalidation runs the policy's pin check on the fresh row); the full handshake had
# checked the pin, nothing else would again while the session lives.
t_pin_changed_cuts_session() {
	local mark ms got
	mark=$(log_mark)
	ms=$(cut_ms pin-chg "timeout 10 $KGCLI -c $GW_CONF device set pin-chg --thumbprint $(fingerprint "$PKI/dev/pin-chg-new/cert.pem")")
	[ -n "$ms" ] || { note "pin-chg not closed within 5 s of re-pinning it"; return 1; }
	echo "    device set --thumbprint -> session closed in $ms ms"
	lt_1000 "$ms" || { note "closed after $ms ms (limit 1000 ms)"; return 1; }
	audit_has "$mark" revoked pin-chg || { note "no revoked audit for pin-chg: $AUDIT_OUT"; return 1; }
	mark=$(log_mark)
	got=$(kgc connect $(dev_args pin-chg) --peek 500 | head -1)
	case $got in connack\ 0x00) note "pin-chg reconnected with its old leaf"; return 1 ;; esac
}

# A rotation ends (`--secondary none`) while the device still runs on its old leaf: the
# session pinned by the removed secondary is cut. A change that keeps its pin does not.
t_pin_removed_cuts_session() {
	local mark ms got keep
	hold pin-rot 4 || return 1
	keep=$HOLD_OUT
	kg device set pin-rot --status enabled >/dev/null || { note "device set --status enabled failed"; return 1; }
	got=$(held_result "$keep")
	[ "$got" = "still open after 4.0s" ] || { note "a change keeping the pin cut the session: '$got'"; return 1; }
	mark=$(log_mark)
	ms=$(cut_ms pin-rot "timeout 10 $KGCLI -c $GW_CONF device set pin-rot --secondary none")
	[ -n "$ms" ] || { note "pin-rot not closed within 5 s of dropping its secondary"; return 1; }
	echo "    device set --secondary none -> session closed in $ms ms"
	lt_1000 "$ms" || { note "closed after $ms ms (limit 1000 ms)"; return 1; }
	audit_has "$mark" revoked pin-rot || { note "no revoked audit for pin-rot: $AUDIT_OUT"; return 1; }
}

after_each() {
	kill -0 "$GW_PID" 2>/dev/null && return 0
	note "ktlsgated died during this test; last log line: $(tail -1 "$GW_LOG" | cut -c1-160)"
	forget_pid "$GW_PID"
	start_gateway >/dev/null 2>&1 || echo "    could not restart ktlsgated"
	return 1
}

ALL_TESTS=(t_crl_cuts_session t_ca_disable t_ca_root_revoked t_device_backend_moved
	t_ca_backend_moved t_reload_backend_address t_backend_names_checked t_reload_removed_backend
	t_pin_changed_cuts_session t_pin_removed_cuts_session)

if ! setup; then
	echo "FAIL setup: could not build the PKI / brokers / gateway (log: ${GW_LOG:-none})"
	[ -n "${GW_LOG:-}" ] && tail -20 "$GW_LOG"
	KG_FAILED=1
	exit 1
fi
run_tests
