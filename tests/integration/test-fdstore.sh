#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# test-fdstore.sh - the device listeners survive a restart in systemd's file descriptor
# store (issue 14; core/fdstore.h; docs/systemd.md "Restart"). tests/lib/fdstore_peer.py
# plays systemd's part of sd_notify(3) and sd_listen_fds(3) on this host (systemd is
# not PID 1 here; the boot test's "restart" check runs the real one):
#   t_restart_queues     the first daemon stores one socket per worker and address; while
#                        no daemon runs, 20 connections complete in their queues (refused
#                        without the store); the second daemon takes the sockets and
#                        serves every one of them: TLS, CONNECT, CONNACK 0; the /metrics
#                        socket is stored too, and a scrape sent in the gap is answered
#   t_stray_closed       a socket on another address passed as kg-listen is closed with a
#                        log line, and the store holds only the workers' sockets again
#   t_no_store           a daemon started without LISTEN_FDS binds as always (the
#                        unit without FileDescriptorStoreMax=, a start by hand)
#   t_sessions_kept      20 live plain sessions (subscribed) when the daemon stops: it
#                        stores their 40 sockets and a memfd of their records; the next
#                        daemon adopts all 20, drops the store's copies, and each session
#                        then publishes QoS 1 and gets its PUBACK and its own message back
#                        through it (tests/lib/live_sessions.py)
#   t_in_flight_kept     5 connections accepted but still before their CONNECT when the
#                        daemon stops: it stops accepting and waits for them, they send
#                        CONNECT 1 s into the stop, become sessions, are stored, and the
#                        next daemon adopts and relays all 5 (without the wait they were
#                        reset at the stop)
# Each test prints PASS/FAIL; lib.sh runs ALL_TESTS (KG_ONLY picks some).
set -u
. "$(dirname "$0")/lib.sh"

setup() {
	kg_init fdstore
	travel_gw_conf   # plain sessions copied in user space: they can travel
	pki_setup "$WORK/pki" || return 1
	token_device tokdev "$WORK/tokdev.token" || return 1
	device_cert fs-1 "$PKI/factory" || return 1
	kg device add fs-1 >/dev/null || return 1
	start_broker "$BK_PORT" || return 1
}

# peer OUT [ARGS...]: one stop-and-start through fdstore_peer.py; its lines in OUT.
peer() {
	local out=$1
	shift
	timeout 120 $PY "$KG_TOP/tests/lib/fdstore_peer.py" --gated "$GATED" --conf "$GW_CONF" \
		--log "$GW_LOG" --dir "$WORK" --port "$GW_PORT" --ca "$PKI/root/cert.pem" \
		--cert "$PKI/dev/fs-1/chain.pem" --key "$PKI/dev/fs-1/key.pem" --id fs-1 "$@" >"$out" 2>&1
	local rc=$?
	sed 's/^/    /' "$out"
	[ $rc = 0 ] || { note "fdstore_peer.py exited $rc"; return 1; }
}

val() { sed -n "s/^$1 //p" "$2" | head -1; }

t_restart_queues() {
	local o="$WORK/restart.out" workers
	: >"$GW_LOG"
	peer "$o" --gap 20 --metrics-port "$GW_MPORT" || return 1
	workers=$(sed -n 's/^workers = //p' "$GW_CONF" | head -1)
	[ "$(val stored1 "$o")" = "$((${workers:-2} * 2))" ] || { note "the first daemon stored $(val stored1 "$o") sockets, want $((${workers:-2} * 2)) (one per worker and listen address)"; return 1; }
	[ "$(val exit1 "$o")" = 0 ] || { note "the first daemon exited $(val exit1 "$o")"; return 1; }
	[ "$(val gap_failed "$o")" = 0 ] && [ "$(val gap_ok "$o")" = 20 ] ||
		{ note "connections while no daemon ran: $(val gap_ok "$o") ok, $(val gap_failed "$o") failed"; return 1; }
	[ "$(val served "$o")" = 20 ] || { note "the second daemon served $(val served "$o") of the 20 queued connections"; return 1; }
	grep -q "systemd kept $((${workers:-2} * 2)) device listener(s) and the /metrics listener across the restart" "$GW_LOG" ||
		{ note "no log line of the kept sockets: $(grep -i 'systemd\|fdstore' "$GW_LOG" | tail -3)"; return 1; }
	[ "$(val stored2 "$o")" = "$((${workers:-2} * 2))" ] || { note "the second daemon left $(val stored2 "$o") sockets in the store"; return 1; }
	[ "$(val exit2 "$o")" = 0 ] || { note "the second daemon exited $(val exit2 "$o")"; return 1; }
	# /metrics: stored too; a scrape sent while no daemon ran is answered by the next
	[ "$(val stored1_metrics "$o")" = 1 ] && [ "$(val stored2_metrics "$o")" = 1 ] ||
		{ note "metrics socket stored $(val stored1_metrics "$o") then $(val stored2_metrics "$o") times, want 1 and 1"; return 1; }
	case $(val scrape_status "$o") in HTTP/1.?_200_*) ;; *) note "the scrape sent in the gap got '$(val scrape_status "$o")'"; return 1 ;; esac
}

t_stray_closed() {
	local o="$WORK/stray.out" sp
	: >"$GW_LOG"
	peer "$o" --gap 3 --stray || return 1
	sp=$(val stray_port "$o")
	[ "$(val served "$o")" = 3 ] || { note "served $(val served "$o") of 3"; return 1; }
	grep -q "systemd passed descriptor [0-9]* (kg-listen): on no listen address of this configuration: closed" "$GW_LOG" ||
		{ note "no log line of the stray socket closed: $(grep -i 'systemd' "$GW_LOG" | tail -3)"; return 1; }
	# nobody listens there any more: the daemon closed the only reference
	[ -z "$(ss -Hltn "sport = :$sp" 2>/dev/null)" ] || { note "port $sp still listens"; return 1; }
	[ "$(val stored2 "$o")" = 4 ] || { note "the store holds $(val stored2 "$o") sockets, want the workers' 4 (2 addresses)"; return 1; }
}

t_no_store() {
	: >"$GW_LOG"
	start_gateway || { note "the daemon did not start"; return 1; }
	grep -q "systemd kept" "$GW_LOG" && { note "a start without LISTEN_FDS logged kept sockets"; stop_gateway; return 1; }
	kgc connect $(dev_args fs-1) | head -1 | grep -q '^connack 0x00' ||
		{ note "a device could not connect"; stop_gateway; return 1; }
	stop_gateway
}

t_sessions_kept() {
	local o="$WORK/sessions.out" lo="$WORK/live.out"
	: >"$GW_LOG"
	rm -f "$WORK/live.ready" "$WORK/live.go" "$lo"
	# before the stop: 20 subscribed sessions (the script waits for GO in the background)
	peer "$o" --gap 0 --before "setsid $PY $KG_TOP/tests/lib/live_sessions.py 127.0.0.1 $PLAIN_PORT \
		$(cat "$WORK/tokdev.token") 20 kept $WORK/live.ready $WORK/live.go 90 >$lo 2>&1 </dev/null & \
		for i in \$(seq 400); do [ -e $WORK/live.ready ] && exit 0; sleep 0.05; done; exit 1" \
		--after "touch $WORK/live.go; for i in \$(seq 600); do [ -s $lo ] && exit 0; sleep 0.05; done; exit 1" || return 1
	echo "    sessions: $(cat "$lo")"
	[ "$(val before_rc "$o")" = 0 ] || { note "the sessions did not come up: $(cat "$lo")"; return 1; }
	[ "$(val stored1_sessions "$o")" = 40 ] && [ "$(val stored1_records "$o")" = 1 ] ||
		{ note "the stopping daemon stored $(val stored1_sessions "$o") session sockets and $(val stored1_records "$o") records, want 40 and 1"; return 1; }
	grep -q "stored 20 live session(s) in systemd's fd store" "$GW_LOG" || { note "no 'stored 20' line"; return 1; }
	grep -q "adopted 20 live session(s) kept across the restart (0 refused, 0 closed" "$GW_LOG" ||
		{ note "no 'adopted 20' line: $(grep -i 'session' "$GW_LOG" | tail -3)"; return 1; }
	[ "$(val stored2_sessions "$o")" = 0 ] || { note "the store still holds $(val stored2_sessions "$o") session descriptors after the adoption"; return 1; }
	[ "$(val after_rc "$o")" = 0 ] || { note "the sessions did not finish"; return 1; }
	grep -q '^{"ok": 20, "failed": {}}$' "$lo" || { note "not every session relayed after the restart: $(cat "$lo")"; return 1; }
}

t_in_flight_kept() {
	local o="$WORK/inflight.out" lo="$WORK/inflight-live.out"
	: >"$GW_LOG"
	rm -f "$WORK/if.ready" "$WORK/if.go" "$lo"
	# before the stop: 5 TCP connections, accepted (0.3 s), their CONNECT 1 s after READY
	peer "$o" --gap 0 --before "LIVE_CONNECT_AFTER=1 setsid $PY $KG_TOP/tests/lib/live_sessions.py 127.0.0.1 \
		$PLAIN_PORT $(cat "$WORK/tokdev.token") 5 inflight $WORK/if.ready $WORK/if.go 90 >$lo 2>&1 </dev/null & \
		for i in \$(seq 400); do [ -e $WORK/if.ready ] && sleep 0.3 && exit 0; sleep 0.05; done; exit 1" \
		--after "touch $WORK/if.go; for i in \$(seq 600); do [ -s $lo ] && exit 0; sleep 0.05; done; exit 1" || return 1
	echo "    sessions: $(cat "$lo")"
	[ "$(val before_rc "$o")" = 0 ] || { note "the connections did not come up: $(cat "$lo")"; return 1; }
	grep -q "stopping: waiting up to 3000 ms for 5 connection(s) on their way in" "$GW_LOG" ||
		{ note "no wait for the 5 connections at the stop: $(grep -i 'stopping\|stored' "$GW_LOG" | tail -3)"; return 1; }
	grep -q "still on their way in" "$GW_LOG" && { note "some connections were cut at the stop"; return 1; }
	grep -q "stored 5 live session(s) in systemd's fd store" "$GW_LOG" || { note "no 'stored 5' line"; return 1; }
	grep -q "adopted 5 live session(s) kept across the restart (0 refused, 0 closed" "$GW_LOG" ||
		{ note "no 'adopted 5' line: $(grep -i 'session' "$GW_LOG" | tail -3)"; return 1; }
	[ "$(val after_rc "$o")" = 0 ] || { note "the sessions did not finish"; return 1; }
	grep -q '^{"ok": 5, "failed": {}}$' "$lo" || { note "not every connection became a session relayed after the restart: $(cat "$lo")"; return 1; }
}

ALL_TESTS=(t_restart_queues t_stray_closed t_no_store t_sessions_kept t_in_flight_kept)

if ! setup; then
	echo "FAIL setup"
	exit 1
fi
run_tests
