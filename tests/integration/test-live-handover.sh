#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# test-live-handover.sh - live sessions move to the new process at a takeover (issue 14;
# core/conn_xfer.c, docs/architecture.md "Live sessions"). On this host (no kTLS) the
# sessions that can travel are plain ones: a `plain` listener with relay = userspace
# copies them in user space ("plain" data path), and all their state is two sockets and
# a record. The kTLS ones (ktls_splice) are checked in the guest (tests/vm/suite
# t-90-live-handover.sh).
#   t_sessions_adopted    20 subscribed sessions, a --takeover: the old process passes
#                         them all and exits at once (drain_timeout is 300 s), the new
#                         one lists them under its pid and counts them; then each
#                         session publishes QoS 1 and gets its PUBACK and its own message
#                         back through the new process: both directions relay
#   t_adopted_revocable   a session adopted by the new process is cut by a revocation
#                         made there (the old process is gone: nothing to forward to)
#   t_tls_stays           a TLS session (the record relay: its keys are ours, they do
#                         not travel) stays in the old process, which drains it, while the
#                         plain ones beside it move
#   t_upgrade_command     `ktlsgate upgrade` under a stand-in for systemd
#                         (tests/lib/notify_sink.py on NOTIFY_SOCKET, WATCHDOG_PID set as
#                         systemd sets it): the daemon starts its successor, which takes
#                         the 5 live sessions over; the old process, the main pid, says
#                         MAINPID=<successor> and exits; the successor pings the watchdog
#                         from its own pid; the sessions relay both ways
#   t_upgrade_failed      a successor that cannot start (its config names a missing
#                         certificate): `ktlsgate upgrade` exits 3 saying so, the daemon
#                         reaps it, logs it and serves on (a new session relays)
# Each test prints PASS/FAIL; lib.sh runs ALL_TESTS (KG_ONLY picks some).
set -u
. "$(dirname "$0")/lib.sh"

LIVE="$KG_TOP/tests/lib/live_sessions.py"

setup() {
	kg_init live-handover
	travel_gw_conf
	pki_setup "$WORK/pki" || return 1
	device_cert tlsdev "$PKI/factory" || return 1
	kg device add tlsdev >/dev/null || return 1
	token_device tokdev "$WORK/tokdev.token" || return 1
	token_device revdev "$WORK/revdev.token" || return 1
	start_broker "$BK_PORT" || return 1
	start_gateway || return 1
}

# live_start DEVICE N PREFIX: N subscribed sessions of DEVICE (LIVE_PID, LIVE_OUT,
# LIVE_GO); waits until all are up.
live_start() {
	LIVE_OUT="$WORK/$3.out"
	LIVE_GO="$WORK/$3.go"
	rm -f "$WORK/$3.ready" "$LIVE_GO"
	timeout 120 $PY "$LIVE" 127.0.0.1 "$PLAIN_PORT" "$(cat "$WORK/$1.token")" "$2" "$3" \
		"$WORK/$3.ready" "$LIVE_GO" 90 >"$LIVE_OUT" 2>&1 &
	LIVE_PID=$!
	local i
	for ((i = 0; i < 400; i++)); do
		[ -e "$WORK/$3.ready" ] && return 0
		kill -0 "$LIVE_PID" 2>/dev/null || break
		sleep 0.05
	done
	note "the sessions did not come up: $(cat "$LIVE_OUT")"
	return 1
}

# live_finish: GO, then the sessions' verdict (0: every one relayed both ways).
live_finish() {
	touch "$LIVE_GO"
	wait "$LIVE_PID"
	local rc=$?
	echo "    sessions: $(cat "$LIVE_OUT")"
	return $rc
}

# takeover: `ktlsgated --takeover` (NEW_PID) until it accepts; OLD_PID the one before.
takeover() {
	local mark
	mark=$(log_mark)
	OLD_PID=$GW_PID
	"$GATED" --takeover -c "$GW_CONF" >>"$GW_LOG" 2>&1 &
	NEW_PID=$!
	KG_PIDS+=("$NEW_PID")
	wait_log "\"event\":\"handover\",\"role\":\"new\",\"result\":\"ok\",\"pid\":$NEW_PID," 30 "$mark" ||
		{ note "the new process did not accept: $(tail -5 "$GW_LOG")"; return 1; }
	GW_PID=$NEW_PID
}

t_sessions_adopted() {
	local mark rows n t0
	live_start tokdev 20 moved || return 1
	[ "$(metric_value ktlsgate_sessions 'mode="plain"')" = 20 ] ||
		{ note "want 20 plain sessions before, have $(metric_value ktlsgate_sessions 'mode="plain"')"; return 1; }
	mark=$(log_mark)
	t0=$SECONDS
	takeover || return 1
	gone "$OLD_PID" 10 || { note "the old process kept running with nothing left to drain"; return 1; }
	echo "    old process exited $RC, $((SECONDS - t0)) s after the takeover began"
	[ "$RC" = 0 ] || { note "the old process exited $RC"; return 1; }
	wait_log '"role":"old","result":"drained",.*"connections_cut":0,"sessions_passed":20' 2 "$mark" ||
		{ note "old-side audit: $(grep '"role":"old"' "$GW_LOG" | tail -1)"; return 1; }
	wait_log "adopted 20 live session" 2 "$mark" || { note "no 'adopted 20' line"; return 1; }
	[ "$(metric_value ktlsgate_sessions_handed_over_total 'direction="adopted"' 'mode="plain"')" = 20 ] ||
		{ note "ktlsgate_sessions_handed_over_total{adopted,plain} != 20"; return 1; }
	[ "$(metric_value ktlsgate_sessions 'mode="plain"')" = 20 ] ||
		{ note "the new process relays $(metric_value ktlsgate_sessions 'mode="plain"') plain sessions"; return 1; }
	rows=$(kg session list --json)
	n=$($PY -c 'import json,sys
rows=json.loads(sys.argv[1]); pid=int(sys.argv[2])
print(sum(1 for r in rows if r.get("device")=="tokdev" and r.get("pid")==pid and r.get("mode")=="plain"))' "$rows" "$NEW_PID")
	[ "$n" = 20 ] || { note "session list shows $n tokdev sessions in pid $NEW_PID: $rows"; return 1; }
	live_finish || { note "not every session relayed after the takeover"; return 1; }
}

t_adopted_revocable() {
	local mark
	live_start revdev 1 rev || return 1
	takeover || return 1
	gone "$OLD_PID" 10 || { note "the old process did not exit"; return 1; }
	mark=$(log_mark)
	kg device set revdev --status disabled >/dev/null || { note "device set failed"; return 1; }
	wait_log '"event":"close".*"device":"revdev".*"reason":"revoked"' 5 "$mark" ||
		{ note "no close line for revdev: $(tail -3 "$GW_LOG")"; return 1; }
	if live_finish; then
		note "the revoked session still relayed"
		return 1
	fi
	grep -q '"eof": 1' "$LIVE_OUT" || { note "the session did not see the cut: $(cat "$LIVE_OUT")"; return 1; }
	kg device set revdev --status enabled >/dev/null
}

t_tls_stays() {
	local mark f="$WORK/tls.out" i
	: >"$f"
	timeout 60 $PY "$KGC" connect --port "$GW_PORT" --ca "$PKI/root/cert.pem" \
		--cert "$PKI/dev/tlsdev/chain.pem" --key "$PKI/dev/tlsdev/key.pem" --id tlsdev \
		--topic tls/t --then "sleep 4" >"$f" 2>&1 &
	local tls=$!
	for ((i = 0; i < 200; i++)); do grep -q 'puback' "$f" && break; sleep 0.05; done
	grep -qx 'puback 0x00' "$f" || { note "TLS session: $(cat "$f")"; return 1; }
	live_start tokdev 5 beside || return 1
	mark=$(log_mark)
	takeover || return 1
	wait_log "adopted 5 live session" 5 "$mark" || { note "the plain sessions did not move"; return 1; }
	kill -0 "$OLD_PID" 2>/dev/null || { note "the old process left with the TLS session live"; return 1; }
	wait "$tls"
	sed 's/^/    tls: /' "$f"
	[ "$(grep -c 'puback 0x00' "$f")" = 2 ] || { note "the TLS session did not relay on in the old process"; return 1; }
	gone "$OLD_PID" 10 || { note "the old process did not exit after the TLS session"; return 1; }
	wait_log '"role":"old","result":"drained",.*"sessions_passed":5' 2 "$mark" ||
		{ note "old-side audit: $(grep '"role":"old"' "$GW_LOG" | tail -1)"; return 1; }
	live_finish || { note "the adopted sessions did not relay"; return 1; }
}

t_upgrade_command() {
	local out mark newpid i n rows sink="$WORK/notify.sock" nlog="$WORK/notify.log"
	local wrap="$WORK/gated-systemd.sh" gated=$GATED
	stop_gateway
	: >"$nlog"
	$PY "$KG_TOP/tests/lib/notify_sink.py" "$sink" "$nlog" &
	KG_PIDS+=("$!")
	for ((i = 0; i < 100; i++)); do [ -S "$sink" ] && break; sleep 0.05; done
	# systemd's environment for its main process: WATCHDOG_PID is that process's pid
	printf '#!/bin/sh\nWATCHDOG_PID=$$ exec "%s" "$@"\n' "$GATED" >"$wrap"
	chmod +x "$wrap"
	GATED=$wrap NOTIFY_SOCKET=$sink WATCHDOG_USEC=2000000 start_gateway || { GATED=$gated; return 1; }
	GATED=$gated
	OLD_PID=$GW_PID
	live_start tokdev 5 upg || return 1
	mark=$(log_mark)
	out=$(kg upgrade --timeout 30 2>&1) || { note "ktlsgate upgrade failed: $out; $(tail -5 "$GW_LOG")"; return 1; }
	echo "    $out"
	newpid=$(sed -n "s/^upgraded: pid \([0-9]*\) accepts; pid $OLD_PID drains its sessions\$/\1/p" <<<"$out")
	[ -n "$newpid" ] || { note "unexpected output: $out"; return 1; }
	KG_PIDS+=("$newpid")
	GW_PID=$newpid
	wait_log "upgrade: started .*ktlsgated --takeover -c $GW_CONF as pid $newpid" 2 "$mark" ||
		{ note "no 'started' line: $(grep upgrade "$GW_LOG" | tail -2)"; return 1; }
	gone "$OLD_PID" 10 || { note "the old process did not exit once its sessions were passed"; return 1; }
	wait_log "adopted 5 live session" 5 "$mark" || { note "no 'adopted 5' line"; return 1; }
	# systemd's side: the old main pid names the successor; the successor pings for itself
	grep -q "^$OLD_PID MAINPID=$newpid\$" "$nlog" ||
		{ note "no MAINPID=$newpid from pid $OLD_PID: $(cut -c1-160 "$nlog" | tail -6)"; return 1; }
	for ((i = 0; i < 60; i++)); do grep -q "^$newpid .*WATCHDOG=1" "$nlog" && break; sleep 0.1; done
	grep -q "^$newpid .*WATCHDOG=1" "$nlog" ||
		{ note "the successor never pinged the watchdog: $(cut -c1-160 "$nlog" | tail -6)"; return 1; }
	rows=$(kg session list --json)
	n=$($PY -c 'import json,sys
rows=json.loads(sys.argv[1]); pid=int(sys.argv[2])
print(sum(1 for r in rows if r.get("device")=="tokdev" and r.get("pid")==pid))' "$rows" "$newpid")
	[ "$n" = 5 ] || { note "session list shows $n tokdev sessions in pid $newpid"; return 1; }
	live_finish || { note "not every session relayed after the upgrade"; return 1; }
}

t_upgrade_failed() {
	local out rc mark pid
	mark=$(log_mark)
	cp "$GW_CONF" "$WORK/conf.bak"
	sed -i 's|^cert = .*|cert = /nonexistent/ktlsgate-cert.pem|' "$GW_CONF"
	out=$(kg upgrade --timeout 30 2>&1)
	rc=$?
	cp "$WORK/conf.bak" "$GW_CONF"
	echo "    $out (exit $rc)"
	[ "$rc" = 3 ] || { note "ktlsgate upgrade exited $rc, want 3"; return 1; }
	grep -q "upgrade failed: the successor (pid [0-9]*) exited before it took over; pid $GW_PID serves on" <<<"$out" ||
		{ note "unexpected message"; return 1; }
	wait_log "upgrade: the successor \\(pid [0-9]+\\) exited with status 1; this process serves on" 5 "$mark" ||
		{ note "the daemon did not log the failed successor: $(tail -3 "$GW_LOG")"; return 1; }
	pid=$(kg status --json | $PY -c 'import json,sys; print(json.load(sys.stdin)["pid"])')
	[ "$pid" = "$GW_PID" ] || { note "pid $pid answers, want $GW_PID"; return 1; }
	live_start tokdev 1 after || return 1
	live_finish || { note "a new session did not relay"; return 1; }
}

ALL_TESTS=(t_sessions_adopted t_adopted_revocable t_tls_stays t_upgrade_command t_upgrade_failed)

if ! setup; then
	echo "FAIL setup (log: ${GW_LOG:-none})"
	[ -n "${GW_LOG:-}" ] && tail -20 "$GW_LOG"
	KG_FAILED=1
	exit 1
fi
run_tests
