#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# test-pg-cache.sh - the hot-path view of a shared PostgreSQL registry and the
# database-down rule (issue 16): one throwaway cluster (tests/lib/pg.sh), two ktlsgated
# sharing it, one mosquitto. Appliance 1 is fail-closed (the default) and reaches the
# database over TCP only (so a pg_hba line can keep it alone out); appliance 2 is
# `registry_down = fail-open` on the unix socket.
#   - warm handshakes are served with no database round trip: the cache-hit counter
#     rises by 2 per handshake (thumbprint, then device row) and the server's statement log (log_statement = all, switched on for
#     that window) shows no SELECT, while a cold device's first connect shows one;
#   - a change made by SQL drops the device from the view (disabled, enabled again, a
#     device added after its "no such device" was cached);
#   - the database stopped: fail-closed refuses a device it served a moment ago
#     (CONNACK 3.1.1 code 3, 5.0 0x88, audit registry_unavailable, counted), fail-open
#     admits a device it admitted recently (audited as such, counted) and refuses one
#     it never saw; live sessions on both keep running;
#   - the database back, appliance 1 still refused by pg_hba while a device holding a
#     session on it, and one it only has cached, are disabled by SQL: once let in,
#     appliance 1 cuts that session, refuses both, and serves the others again, without
#     a restart.
# make check-pg-cache (mk/pgwatch.mk) runs it.
# shellcheck disable=SC2046,SC2034
set -u
. "$(dirname "$0")/lib.sh"
. "$KG_TOP/tests/lib/pg.sh"
. "$KG_TOP/tests/lib/pg-appliances.sh"

# tok DEVICE: DEVICE's CONNECT with its access token on appliance 2's one-way TLS listener
# (--username=TOKEN: a base64url token may begin with '-', which argparse would take
# for an option when given as a separate word).
tok() {
	kgc connect --port "$TLS_PORT" --ca "$PKI/root/cert.pem" --id "$1" --username="${TOKENS[$1]}"
}

# hold DEVICE SECONDS: a session of DEVICE on the current appliance, in the background;
# prints the file its client writes ("connack 0x00", later "eof after" or "still open").
hold() {
	local f i
	f=$(mktemp "$WORK/hold.XXXXXX")
	kgc connect $(dev_args "$1") --hold "$2" >"$f" 2>&1 &
	for ((i = 0; i < 100; i++)); do
		grep -q '^connack' "$f" && break
		sleep 0.05
	done
	echo "$f"
}

setup() {
	local d out
	pga_cluster pg-cache || return 1
	# appliance 1 over TCP (its only way in: hba_tcp keeps it out), 2 over the socket
	pga_conf 1 "$KG_PG_TCP_URI" || return 1
	pga_conf 2 "$KG_PG_URI" $'registry_down = fail-open\nregistry_down_seen = 600' || return 1
	# appliance 2 also takes access tokens (one-way TLS): the CONNECT check's reads
	add_typed_listeners "$WORK/a2/ktlsgate.conf"
	use 2
	kg registry migrate >/dev/null 2>&1 || true
	if ! out=$(kg device list 2>&1); then
		echo "FAIL setup: ktlsgate device list against $KG_PG_URI: $out"
		return 1
	fi
	pki_setup "$WORK/pki" || return 1
	cp -r "$WORK/a2/server" "$WORK/a1/" || return 1
	for d in warm1 cold1 flip-a gone-a live-a live-b seen-b never-b late-a; do
		device_cert "$d" "$PKI/factory" || return 1
		[ "$d" = late-a ] && continue   # added later, by SQL
		kg device add "$d" >/dev/null || { echo "device add $d failed" >&2; return 1; }
	done
	for d in tok-seen tok-never; do
		kg device add "$d" --auth token >"$WORK/tok.out" 2>/dev/null || { echo "device add $d failed" >&2; return 1; }
		TOKENS[$d]=$(sed -n 's/^token: //p' "$WORK/tok.out")
		[ -n "${TOKENS[$d]}" ] || { echo "device add $d printed no token" >&2; return 1; }
	done
	start_broker "$BK_PORT" || return 1
	start_broker "$BK2_PORT" || return 1
	pga_start 1 2 || return 1
	use 1
	out=$("$GATED" -t -c "$GW_CONF" 2>&1 | grep 'shared registry')
	[ "$out" = "ktlsgated: shared registry: cache of 200000 entries; database down: fail-closed (every new connection refused)" ] ||
		{ echo "FAIL setup: ktlsgated -t on appliance 1 said: '$out'" >&2; return 1; }
	use 2
	out=$("$GATED" -t -c "$GW_CONF" 2>&1 | grep 'shared registry')
	[ "$out" = "ktlsgated: shared registry: cache of 200000 entries; database down: fail-open (devices admitted here in the last 600s are admitted from the cache, others refused)" ] ||
		{ echo "FAIL setup: ktlsgated -t on appliance 2 said: '$out'" >&2; return 1; }
}

# SELECTs the server executed (statement log) after line MARK of its log.
selects_after() {
	tail -n +"$(($1 + 1))" "$PGBASE/pg/server.log" | grep -c 'execute [^:]*: *SELECT' || true
}

# N warm handshakes of one device on appliance 1: cache hits rise by 2N, misses do not
# move, and PostgreSQL executes no SELECT meanwhile. A cold device's first connect in
# the same log window shows the probe sees the store's reads at all.
t_warm_handshakes_no_round_trip() {
	local got i mark h0 h1 m0 m1 cold n=10
	use 1
	got=$(kgc connect $(dev_args warm1) | head -1)
	[ "$got" = "connack 0x00" ] || { note "first connect of warm1: '$got'"; return 1; }
	if ! kg_pg_sql "ALTER SYSTEM SET log_statement = 'all'" >/dev/null ||
		! kg_pg_sql "SELECT pg_reload_conf()" >/dev/null; then
		note "cannot turn the statement log on"
		return 1
	fi
	sleep 0.5
	mark=$(wc -l <"$PGBASE/pg/server.log")
	got=$(kgc connect $(dev_args cold1) | head -1)
	[ "$got" = "connack 0x00" ] || { note "first connect of cold1: '$got'"; return 1; }
	sleep 0.3
	cold=$(selects_after "$mark")
	[ "$cold" -ge 1 ] || { note "a cold device's connect showed no SELECT in the server log (probe broken?)"; return 1; }
	h0=$(metric_value ktlsgate_registry_cache_hits_total)
	m0=$(metric_value ktlsgate_registry_cache_misses_total)
	mark=$(wc -l <"$PGBASE/pg/server.log")
	for ((i = 0; i < n; i++)); do
		got=$(kgc connect $(dev_args warm1) | head -1)
		[ "$got" = "connack 0x00" ] || { note "warm connect $i: '$got'"; return 1; }
	done
	sleep 0.3
	h1=$(metric_value ktlsgate_registry_cache_hits_total)
	m1=$(metric_value ktlsgate_registry_cache_misses_total)
	got=$(selects_after "$mark")
	kg_pg_sql "ALTER SYSTEM RESET log_statement" >/dev/null
	kg_pg_sql "SELECT pg_reload_conf()" >/dev/null
	echo "    cold connect: $cold SELECT(s); $n warm connects: hits $h0 -> $h1, misses $m0 -> $m1, $got SELECT(s)"
	# a handshake reads two things: the device pinning this leaf, if any (verify.c),
	# then the device's row (the policy): both answered by the cache
	[ $((h1 - h0)) = $((2 * n)) ] || { note "cache hits rose by $((h1 - h0)), want $((2 * n))"; return 1; }
	[ "$m1" = "$m0" ] || { note "cache misses moved $m0 -> $m1 on warm connects"; return 1; }
	[ "$got" = 0 ] || { note "the database executed $got SELECT(s) for warm handshakes"; return 1; }
	[ "$(metric_value ktlsgate_registry_cache_entries)" -ge 2 ] || { note "cache_entries below 2"; return 1; }
}

# connect_until DEVICE WANT: the current appliance answers DEVICE's CONNECT with WANT
# within 5 s (a change reaches it through the feed, not at once).
connect_until() {
	local i got
	for ((i = 0; i < 25; i++)); do
		got=$(kgc connect $(dev_args "$1") | head -1)
		[ "$got" = "$2" ] && return 0
		sleep 0.2
	done
	note "$1: '$got', want '$2' within 5 s"
	return 1
}

# A change made elsewhere (SQL) drops the device from appliance 1's view: a cached
# enabled row, then disabled, is refused; enabled again, admitted; an unseen device
# (cached "no such device") is admitted once it is added. No live session of these
# devices is on appliance 1, so nothing but the view's invalidation can tell it.
t_change_drops_cached_entry() {
	local got
	use 1
	got=$(kgc connect $(dev_args flip-a) | head -1)
	[ "$got" = "connack 0x00" ] || { note "flip-a: '$got'"; return 1; }
	got=$(kgc connect $(dev_args late-a) | head -1)
	[ "$got" = "connack 0x05" ] || { note "late-a before it exists: '$got'"; return 1; }
	kg_pg_sql "UPDATE ktlsgate.devices SET status = 'disabled' WHERE id = 'flip-a'" >/dev/null ||
		{ note "SQL update failed"; return 1; }
	connect_until flip-a "connack 0x05" || return 1
	kg_pg_sql "UPDATE ktlsgate.devices SET status = 'enabled' WHERE id = 'flip-a'" >/dev/null ||
		{ note "SQL update failed"; return 1; }
	connect_until flip-a "connack 0x00" || return 1
	kg_pg_sql "INSERT INTO ktlsgate.devices (id, status, attestation, backend, created_at, updated_at)
		VALUES ('late-a', 'enabled', 'ca', '', 0, 0)" >/dev/null || { note "SQL insert failed"; return 1; }
	connect_until late-a "connack 0x00" || return 1
	got=$(kgc connect $(dev_args gone-a) | head -1)   # cached for the outage below
	[ "$got" = "connack 0x00" ] || { note "gone-a: '$got'"; return 1; }
}

# Live sessions on both appliances, and seen-b admitted by appliance 2, then the
# database stopped: both say down (metric), fail-closed appliance 1 refuses a device
# it served a moment ago with "server unavailable" in both MQTT versions.
t_down_fail_closed_refuses() {
	local got mark r0
	use 1
	LIVE_A=$(hold live-a 60)
	[ "$(head -1 "$LIVE_A")" = "connack 0x00" ] || { note "no session for live-a: $(cat "$LIVE_A")"; return 1; }
	use 2
	LIVE_B=$(hold live-b 60)
	[ "$(head -1 "$LIVE_B")" = "connack 0x00" ] || { note "no session for live-b: $(cat "$LIVE_B")"; return 1; }
	got=$(kgc connect $(dev_args seen-b) | head -1)
	[ "$got" = "connack 0x00" ] || { note "seen-b before the outage: '$got'"; return 1; }
	got=$(tok tok-seen | head -1)
	[ "$got" = "connack 0x00" ] || { note "tok-seen before the outage: '$got'"; return 1; }
	kg_pg_stop "$PGBASE/pg" || { note "kg_pg_stop failed"; return 1; }
	use 1
	wait_metric ktlsgate_registry_up 0 10 || { note "appliance 1 never said down"; return 1; }
	grep -q 'registry unavailable (change watcher disconnected): new connections are refused (fail-closed)' "$GW_LOG" ||
		{ note "no down line in appliance 1's log"; return 1; }
	r0=$(metric_value ktlsgate_registry_down_refusals_total)
	mark=$(log_mark)
	got=$(kgc connect $(dev_args warm1) | head -1)
	[ "$got" = "connack 0x03" ] || { note "warm1 (3.1.1) while down under fail-closed: '$got'"; return 1; }
	got=$(kgc connect $(dev_args warm1) --level 5 | head -1)
	[ "$got" = "connack 0x88" ] || { note "warm1 (5.0) while down under fail-closed: '$got'"; return 1; }
	audit_has "$mark" registry_unavailable warm1 deny || { note "no registry_unavailable audit: $AUDIT_OUT"; return 1; }
	[ "$(metric_value ktlsgate_registry_down_refusals_total)" -ge $((r0 + 2)) ] ||
		{ note "down_refusals_total did not count both"; return 1; }
}

# Fail-open appliance 2: seen-b (admitted a moment ago) comes in from the cache,
# audited as such; never-b (never admitted here) is refused like fail-closed. The same
# for two devices with access tokens (tok-seen admitted before the outage).
t_down_fail_open_admits_recent_only() {
	local got mark
	use 2
	wait_metric ktlsgate_registry_up 0 10 || { note "appliance 2 never said down"; return 1; }
	grep -q 'new connections follow fail-open' "$GW_LOG" || { note "no fail-open down line in appliance 2's log"; return 1; }
	mark=$(log_mark)
	got=$(kgc connect $(dev_args seen-b) | head -1)
	[ "$got" = "connack 0x00" ] || { note "seen-b under fail-open: '$got'"; return 1; }
	audit_has "$mark" ok seen-b allow || { note "no allow audit for seen-b: $AUDIT_OUT"; return 1; }
	case "$AUDIT_OUT" in
	*"registry down (registry_down = fail-open)"*) ;;
	*) note "the allow does not say fail-open: $AUDIT_OUT"; return 1 ;;
	esac
	[ "$(metric_value ktlsgate_registry_failopen_admissions_total)" -ge 1 ] || { note "failopen_admissions_total is 0"; return 1; }
	mark=$(log_mark)
	got=$(kgc connect $(dev_args never-b) | head -1)
	[ "$got" = "connack 0x03" ] || { note "never-b under fail-open: '$got'"; return 1; }
	audit_has "$mark" registry_unavailable never-b deny || { note "no registry_unavailable audit for never-b: $AUDIT_OUT"; return 1; }
	# the same for a device with an access token (the CONNECT check's reads)
	mark=$(log_mark)
	got=$(tok tok-seen | head -1)
	[ "$got" = "connack 0x00" ] || { note "tok-seen under fail-open: '$got'"; return 1; }
	audit_has "$mark" ok tok-seen allow || { note "no allow audit for tok-seen: $AUDIT_OUT"; return 1; }
	case "$AUDIT_OUT" in
	*"registry down (registry_down = fail-open)"*) ;;
	*) note "tok-seen's allow does not say fail-open: $AUDIT_OUT"; return 1 ;;
	esac
	got=$(tok tok-never | head -1)
	[ "$got" = "connack 0x03" ] || { note "tok-never under fail-open: '$got'"; return 1; }
	audit_has "$mark" registry_unavailable "" deny || { note "no registry_unavailable audit for tok-never: $AUDIT_OUT"; return 1; }
}

# Both live sessions outlived the outage so far.
t_live_sessions_keep_running() {
	[ "$(wc -l <"$LIVE_A")" = 1 ] || { note "live-a ended: $(cat "$LIVE_A")"; return 1; }
	[ "$(wc -l <"$LIVE_B")" = 1 ] || { note "live-b ended: $(cat "$LIVE_B")"; return 1; }
}

# The database back, appliance 1 kept out by pg_hba while live-a is disabled by SQL;
# let in, appliance 1 says up, cuts live-a's session, refuses its new CONNECT, and
# serves warm1 again, without a restart. Appliance 2 came back first.
t_recovery_without_restart() {
	local got i t0 t1 mark
	hba_tcp reject
	kg_pg_restart "$PGBASE/pg" || { hba_tcp accept; note "kg_pg_restart failed"; return 1; }
	kg_pg_sql "UPDATE ktlsgate.devices SET status = 'disabled' WHERE id IN ('live-a', 'gone-a')" >/dev/null ||
		{ hba_tcp accept; note "SQL update failed"; return 1; }
	use 2
	wait_metric ktlsgate_registry_up 1 15 || { hba_tcp accept; note "appliance 2 not up again"; return 1; }
	got=$(kgc connect $(dev_args never-b) | head -1)
	[ "$got" = "connack 0x00" ] || { hba_tcp accept; note "never-b on appliance 2 after the return: '$got'"; return 1; }
	use 1
	sleep 1
	[ "$(metric_value ktlsgate_registry_up)" = 0 ] || { hba_tcp accept; note "appliance 1 up while refused"; return 1; }
	[ "$(wc -l <"$LIVE_A")" = 1 ] || { hba_tcp accept; note "live-a ended before appliance 1 could know: $(cat "$LIVE_A")"; return 1; }
	mark=$(log_mark)
	hba_tcp accept
	kg_pg_sql "SELECT pg_reload_conf()" >/dev/null || { note "pg_reload_conf failed"; return 1; }
	t0=$(date +%s%N)
	wait_metric ktlsgate_registry_up 1 15 || { note "appliance 1 not up again"; return 1; }
	for ((i = 0; i < 100; i++)); do
		grep -q '^eof after' "$LIVE_A" && break
		sleep 0.1
	done
	t1=$(date +%s%N)
	grep -q '^eof after' "$LIVE_A" || { note "live-a's session still open after appliance 1 came back: $(cat "$LIVE_A")"; return 1; }
	echo "    disabled while appliance 1 was out -> its session closed $(((t1 - t0) / 1000000)) ms after it was let in (backoff included)"
	grep -q 'registry up again: new connections are served' "$GW_LOG" || { note "no up line in appliance 1's log"; return 1; }
	audit_has "$mark" revoked live-a || { note "no 'revoked' audit for live-a: $AUDIT_OUT"; return 1; }
	got=$(kgc connect $(dev_args live-a) | head -1)
	[ "$got" = "connack 0x05" ] || { note "disabled live-a's new CONNECT: '$got'"; return 1; }
	# cached before the outage, no session here: only the catch-up's drop can tell
	got=$(kgc connect $(dev_args gone-a) | head -1)
	[ "$got" = "connack 0x05" ] || { note "gone-a, disabled while appliance 1 was out: '$got'"; return 1; }
	got=$(kgc connect $(dev_args warm1) | head -1)
	[ "$got" = "connack 0x00" ] || { note "warm1 after the return: '$got'"; return 1; }
	kill -0 "${GW_PIDS[1]}" 2>/dev/null || { note "appliance 1 died"; return 1; }
	[ "$(wc -l <"$LIVE_B")" = 1 ] || { note "live-b ended: $(cat "$LIVE_B")"; return 1; }
}

ALL_TESTS=(t_warm_handshakes_no_round_trip t_change_drops_cached_entry t_down_fail_closed_refuses
	t_down_fail_open_admits_recent_only t_live_sessions_keep_running t_recovery_without_restart)

GW_PIDS=()
declare -A TOKENS=()
LIVE_A=/dev/null LIVE_B=/dev/null
setup || { echo "FAIL setup"; echo "test-pg-cache: 0 passed, 1 failed"; exit 1; }
run_tests | tee "$PGBASE/results"
pass=$(grep -c '^PASS ' "$PGBASE/results")
fail=$(grep -c '^FAIL ' "$PGBASE/results")
echo "test-pg-cache: $pass passed, $fail failed"
[ "$fail" -eq 0 ] && [ "$pass" -gt 0 ]
