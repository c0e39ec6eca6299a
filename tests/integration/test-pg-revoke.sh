#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# test-pg-revoke.sh - revocations through a shared PostgreSQL registry reach every
# appliance (issue 16): one throwaway cluster (tests/lib/pg.sh), three ktlsgated on
# their own ports, control sockets, state dirs and metrics ports, all with
# `registry = postgresql://...`, one mosquitto. A device connected through appliance 3
# is disabled with appliance 1's CLI, then one by plain SQL; the cluster is killed and
# restarted refusing appliance 2 (its only way in is TCP, refused by a pg_hba line) and
# a revocation made by SQL in that window takes effect once it is let back in; a CA
# disabled by appliance 1's CLI cuts a session under it on appliance 3. Each cut
# is timed (printed above its PASS line). make check-pg-revoke (mk/pgwatch.mk) runs it.
# Until the PostgreSQL store is built (kg_registry_open refuses postgresql://) it prints
# "NOT RUN: PostgreSQL store not built" and exits non-zero.
# shellcheck disable=SC2046,SC2034
set -u
. "$(dirname "$0")/lib.sh"
. "$KG_TOP/tests/lib/pg.sh"
. "$KG_TOP/tests/lib/pg-appliances.sh"

json_field() {
	printf '%s' "$1" | $PY -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$2" 2>/dev/null
}

lt_1000() {
	$PY -c 'import sys; sys.exit(0 if float(sys.argv[1]) < 1000 else 1)' "$1"
}

setup() {
	local i d out
	pga_cluster pg-revoke || return 1
	# One database, two ways in: appliance 2 over TCP, the others (and psql) over the
	# unix socket, so the outage test can keep appliance 2 alone out.
	pga_conf 1 "$KG_PG_URI" && pga_conf 2 "$KG_PG_TCP_URI" && pga_conf 3 "$KG_PG_URI" || return 1
	use 1
	# The store creates (or migrates) its schema on first use.
	kg registry migrate >/dev/null 2>&1 || true
	if ! out=$(kg device list 2>&1); then
		echo "FAIL setup: ktlsgate device list against $KG_PG_URI: $out"
		return 1
	fi
	pki_setup "$WORK/pki" || return 1
	cp -r "$WORK/a1/server" "$WORK/a2/" && cp -r "$WORK/a1/server" "$WORK/a3/" || return 1
	for d in cli-cut sql-cut outage-cut stays ca-cut; do
		device_cert "$d" "$PKI/factory" || return 1
		kg device add "$d" >/dev/null || { echo "device add $d failed" >&2; return 1; }
	done
	start_broker "$BK_PORT" || return 1
	start_broker "$BK2_PORT" || return 1
	pga_start 1 2 3 || return 1
}

# The CLI of appliance 1 disables a device whose session is on appliance 3: that
# session ends within 1 s (audited `revoked`), another device's session on 3 stays.
t_cli_on_one_cuts_session_on_three() {
	local ms res mark keep got i
	use 3
	keep=$(mktemp "$WORK/hold.XXXXXX")
	kgc connect $(dev_args stays) --hold 6 >"$keep" 2>&1 &
	mark=$(log_mark)
	res=$(kgc cutoff $(dev_args cli-cut) \
		--cmd "timeout 10 $KGCLI -c $WORK/a1/ktlsgate.conf device set cli-cut --status disabled >/dev/null" | tail -1)
	ms=$(json_field "$res" eof_ms)
	echo "    appliance 1 CLI -> session on appliance 3 closed in ${ms} ms ($res)"
	[ "$(json_field "$res" cli_rc)" = 0 ] || { note "device set on appliance 1 failed ($res)"; return 1; }
	if [ -z "$ms" ] || [ "$ms" = None ]; then note "cli-cut not closed within 5 s"; return 1; fi
	lt_1000 "$ms" || { note "closed after $ms ms (limit 1000 ms)"; return 1; }
	# a live session cut by revalidation is audited `revoked` (test-gateway.sh's t_disable_cutoff)
	audit_has "$mark" revoked cli-cut || { note "no 'revoked' audit on appliance 3: $AUDIT_OUT"; return 1; }
	for ((i = 0; i < 100; i++)); do
		[ "$(wc -l <"$keep")" -ge 2 ] && break
		sleep 0.1
	done
	got=$(sed -n 2p "$keep")
	[ "$got" = "still open after 6.0s" ] || { note "the other device's session was cut: '$got'"; return 1; }
	[ "$(metric_value ktlsgate_registry_watch_changes_total 'kind="device"')" -ge 1 ] ||
		{ note "changes_total{kind=device} did not count it"; return 1; }
}

# A revocation by plain SQL (an operator's own tooling) reaches appliance 3 as well.
t_sql_cuts_session() {
	local ms res
	use 3
	res=$(kgc cutoff $(dev_args sql-cut) \
		--cmd "psql -X -q -v ON_ERROR_STOP=1 '$KG_PG_URI' -c \"UPDATE ktlsgate.devices SET status = 'disabled' WHERE id = 'sql-cut'\" >/dev/null" | tail -1)
	ms=$(json_field "$res" eof_ms)
	echo "    SQL UPDATE -> session on appliance 3 closed in ${ms} ms ($res)"
	[ "$(json_field "$res" cli_rc)" = 0 ] || { note "the SQL UPDATE failed ($res)"; return 1; }
	if [ -z "$ms" ] || [ "$ms" = None ]; then note "sql-cut not closed within 5 s"; return 1; fi
	lt_1000 "$ms" || { note "closed after $ms ms (limit 1000 ms)"; return 1; }
}

# The cluster killed: the session on appliance 2 keeps running; the cluster comes back
# refusing appliance 2 (TCP) for a while, a revocation is made by SQL in that window,
# and the session still closes once appliance 2's watcher gets back in (catch-up from
# its last version, not a notification).
t_revocation_while_reconnecting() {
	local f i t0 t1 got before after
	use 2
	f=$(mktemp "$WORK/hold.XXXXXX")
	kgc connect $(dev_args outage-cut) --hold 40 >"$f" 2>&1 &
	for ((i = 0; i < 100; i++)); do
		grep -q '^connack' "$f" && break
		sleep 0.05
	done
	[ "$(head -1 "$f")" = "connack 0x00" ] || { note "no session: $(cat "$f")"; return 1; }
	before=$(metric_value ktlsgate_registry_watch_reconnects_total)
	kg_pg_kill "$PGBASE/pg" || { note "kg_pg_kill failed"; return 1; }
	wait_metric ktlsgate_registry_watch_connected 0 10 || { note "appliance 2 never saw the loss"; return 1; }
	hba_tcp reject
	kg_pg_restart "$PGBASE/pg" || { hba_tcp accept; note "kg_pg_restart failed"; return 1; }
	kg_pg_sql "UPDATE ktlsgate.devices SET status = 'disabled' WHERE id = 'outage-cut'" >/dev/null ||
		{ hba_tcp accept; note "SQL update failed"; return 1; }
	sleep 1   # a retry or two of appliance 2 meets the refusal
	got=$(metric_value ktlsgate_registry_watch_connected)
	[ "$got" = 0 ] || { hba_tcp accept; note "appliance 2 connected while refused ($got)"; return 1; }
	[ "$(wc -l <"$f")" -lt 2 ] || { hba_tcp accept; note "the session ended before appliance 2 could know: $(sed -n 2p "$f")"; return 1; }
	hba_tcp accept
	kg_pg_sql "SELECT pg_reload_conf()" >/dev/null || { note "pg_reload_conf failed"; return 1; }
	t0=$(date +%s%N)
	for ((i = 0; i < 150; i++)); do
		grep -q '^eof after' "$f" && break
		sleep 0.1
	done
	t1=$(date +%s%N)
	grep -q '^eof after' "$f" || { note "session still open 15 s after appliance 2 may connect: $(cat "$f")"; return 1; }
	echo "    revoked while appliance 2 was out -> closed $(((t1 - t0) / 1000000)) ms after it was let back in (its backoff, at most 5 s, included)"
	after=$(metric_value ktlsgate_registry_watch_reconnects_total)
	[ "$after" -gt "$before" ] || { note "reconnects_total did not grow ($before -> $after)"; return 1; }
}

# A CA disabled with appliance 1's CLI: appliance 3 refreshes its trust and cuts the
# session under it (`ca_disabled`) within 1 s. Last but one: every device here is
# under that CA.
t_ca_on_one_cuts_session_on_three() {
	local ms res mark
	use 3
	mark=$(log_mark)
	res=$(kgc cutoff $(dev_args ca-cut) \
		--cmd "timeout 10 $KGCLI -c $WORK/a1/ktlsgate.conf ca set factory --status disabled >/dev/null" | tail -1)
	ms=$(json_field "$res" eof_ms)
	echo "    appliance 1 'ca set --status disabled' -> session on appliance 3 closed in ${ms} ms ($res)"
	[ "$(json_field "$res" cli_rc)" = 0 ] || { note "ca set on appliance 1 failed ($res)"; return 1; }
	if [ -z "$ms" ] || [ "$ms" = None ]; then note "ca-cut not closed within 5 s"; return 1; fi
	lt_1000 "$ms" || { note "closed after $ms ms (limit 1000 ms)"; return 1; }
	audit_has "$mark" ca_disabled ca-cut || { note "no 'ca_disabled' audit on appliance 3: $AUDIT_OUT"; return 1; }
	[ "$(metric_value ktlsgate_registry_watch_changes_total 'kind="ca"')" -ge 1 ] ||
		{ note "changes_total{kind=ca} did not count it"; return 1; }
}

# After all of it, every appliance is still serving and connected to the feed.
t_all_connected() {
	local i
	for i in 1 2 3; do
		use "$i"
		kill -0 "${GW_PIDS[i]}" 2>/dev/null || { note "appliance $i died"; return 1; }
		wait_metric ktlsgate_registry_watch_connected 1 10 || { note "appliance $i not connected"; return 1; }
	done
}

ALL_TESTS=(t_cli_on_one_cuts_session_on_three t_sql_cuts_session t_revocation_while_reconnecting
	t_ca_on_one_cuts_session_on_three t_all_connected)

GW_PIDS=()
setup || { echo "FAIL setup"; echo "test-pg-revoke: 0 passed, 1 failed"; exit 1; }
run_tests | tee "$PGBASE/results"
pass=$(grep -c '^PASS ' "$PGBASE/results")
fail=$(grep -c '^FAIL ' "$PGBASE/results")
echo "test-pg-revoke: $pass passed, $fail failed"
[ "$fail" -eq 0 ] && [ "$pass" -gt 0 ]
