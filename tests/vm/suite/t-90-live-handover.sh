#!/bin/sh
# Offloaded sessions survive a restart (issue 14): `ktlsgated --takeover` takes the
# running daemon's ktls_splice sessions, whose TLS state (keys, record numbers) is the
# kernel's, as two sockets and a record each (core/conn_xfer.c). Devices that ping
# through the gate once a second (TLS 1.3 and TLS 1.2) see every PINGREQ answered across
# two takeovers in a row; the old processes exit at once (nothing left to drain, drain_timeout is 300 s);
# the new one counts the adopted sessions, lists them under its pid, and a revocation
# made there cuts one of them. The host's test-live-handover.sh checks the plain data
# path the same way; this is the kTLS one.
# kgvm-timeout: 240
. "$KGVM_LIB"
. "$KGVM_SUITE/lib.sh"
start_broker
start_gw auto

# takeover: a new ktlsgated --takeover; waits until it accepts and the old one is gone.
takeover() {
	_old=$GW_PID
	ktlsgated --takeover -c /tmp/gw/ktlsgate.conf >>/tmp/gw/gw.log 2>&1 &
	GW_PID=$!
	_i=0
	until grep -q "\"event\":\"handover\",\"role\":\"new\",\"result\":\"ok\",\"pid\":$GW_PID," /tmp/gw/gw.log; do
		_i=$((_i + 1))
		[ $_i -lt 300 ] || fail "pid $GW_PID did not accept: $(tail -5 /tmp/gw/gw.log)"
		sleep 0.1
	done
	_i=0
	while kill -0 "$_old" 2>/dev/null; do
		_i=$((_i + 1))
		[ $_i -lt 200 ] || fail "the old pid $_old kept running: $(grep handover /tmp/gw/gw.log | tail -3)"
		sleep 0.1
	done
	wait "$_old" 2>/dev/null
}

# Devices pinging once a second for 40 s (TLS 1.3; TLS 1.2, whose receive key OpenSSL
# installed), and one holding a session to be revoked.
probe dev1 pings 40 >/tmp/ping.out 2>&1 &
ping_pid=$!
KG_PROBE_TLS=1.2 probe dev2 pings 40 >/tmp/ping12.out 2>&1 &
ping12_pid=$!
probe cut1 pings 60 >/tmp/cut.out 2>&1 &
cut_pid=$!
i=0
until [ "$(metric 'ktlsgate_sessions{mode="ktls_splice"}')" -ge 3 ]; do
	i=$((i + 1))
	[ $i -lt 300 ] || fail "the three sessions did not reach ktls_splice: $(cat /tmp/ping.out /tmp/ping12.out /tmp/cut.out)"
	sleep 0.1
done
t0=$(date +%s)
takeover
note "first takeover done after $(($(date +%s) - t0)) s"
a1=$(metric 'ktlsgate_sessions_handed_over_total{direction="adopted",mode="ktls_splice"}')
[ "$a1" -eq 3 ] || fail "the new process adopted $a1 ktls_splice sessions, want 3"
[ "$(metric 'ktlsgate_sessions{mode="ktls_splice"}')" -eq 3 ] || fail "the new process relays $(metric 'ktlsgate_sessions{mode="ktls_splice"}') ktls_splice sessions"
kgcli session list >/tmp/list.txt
note "session list: $(grep -c . /tmp/list.txt) line(s)"
grep dev1 /tmp/list.txt | grep -q ktls_splice || fail "dev1 not listed in ktls_splice by the new process: $(cat /tmp/list.txt)"
grep -q "passed 3 live session" /tmp/gw/gw.log || fail "no 'passed 3' line from the old process"
sleep 3
t0=$(date +%s)
takeover
note "second takeover done after $(($(date +%s) - t0)) s"
sleep 2
# revocable where it lives now
kgcli device set cut1 --status disabled >/dev/null || fail "device set cut1 disabled"
wait "$cut_pid"
note "cut1: $(tr '\n' ' ' </tmp/cut.out)"
grep -q '^pings: 60 of 60' /tmp/cut.out && fail "the revoked session went on"
grep -q '"event":"close".*"device":"cut1".*"reason":"revoked"' /tmp/gw/gw.log || fail "no revoked close line for cut1"
kgcli device set cut1 --status enabled >/dev/null
wait "$ping_pid"
note "dev1: $(tr '\n' ' ' </tmp/ping.out)"
grep -qx 'pings: 40 of 40 answered' /tmp/ping.out || fail "pings lost across the takeovers: $(cat /tmp/ping.out)"
wait "$ping12_pid"
note "dev2 (TLS 1.2): $(tr '\n' ' ' </tmp/ping12.out)"
grep -qx 'pings: 40 of 40 answered' /tmp/ping12.out || fail "TLS 1.2 pings lost across the takeovers: $(cat /tmp/ping12.out)"
tls_stat_has TlsDecryptError && [ "$(tls_stat TlsDecryptError)" -ne 0 ] && fail "TlsDecryptError $(tls_stat TlsDecryptError)"
stop_gw
ok "3 ktls_splice sessions (TLS 1.3 and 1.2) moved twice; 40 of 40 pings answered on each; the adopted cut1 revoked"
