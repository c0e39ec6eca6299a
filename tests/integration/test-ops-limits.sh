#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# test-ops-limits.sh - issue 10 section 4, against a real ktlsgated and mosquitto:
#   - the audit flood guard: ~2000 handshakes without a certificate from one source
#     give a bounded number of audit lines plus audit_suppressed summaries whose counts
#     add up, while the metrics count every one; decisions about identified devices
#     are never held back;
#   - idle relayed sessions: closed after 1.5 x the MQTT keep-alive (or idle_timeout
#     when the keep-alive is 0) with an idle_timeout audit line, not while the device
#     publishes; TCP keepalive on both of the gate's sockets. Run once per host relay:
#     `relay = userspace` (the record relay) and `relay = openssl`;
#   - the metrics endpoint: 200 idle and 20 half-sent connections cannot keep a scrape
#     out, and the endpoint closes them after metrics_timeout.
# Prints PASS/FAIL per test; exits non-zero if any failed.
# dev_args prints options meant to split into words; lib.sh reads ALL_TESTS and KG_FAILED.
# shellcheck disable=SC2046,SC2034
set -u
. "$(dirname "$0")/lib.sh"

OPS="$KG_TOP/tests/lib/opsprobe.py"
AUDIT_LINES=5          # per (reason, source) per window in the test config
AUDIT_INTERVAL_MS=3000
WORKERS=2
IDLE_TIMEOUT=3         # s, for keep-alive 0
METRICS_TIMEOUT=2      # s

ops() {
	timeout 120 $PY "$OPS" "$@"
}

# gw_conf DIR RELAY: a gateway config with this test's limits.
gw_conf() {
	local dir=$1 relay=$2
	write_gw_conf "$dir" "$GW_PORT" "$GW_MPORT" "$BK_PORT" "$BK2_PORT" "relay = $relay"
	sed -i "/^\[limits\]/a audit_lines = $AUDIT_LINES\naudit_lines_total = 0\naudit_interval_ms = $AUDIT_INTERVAL_MS\nidle_timeout = $IDLE_TIMEOUT\ntcp_keepalive_idle = 30\ntcp_keepalive_interval = 5\ntcp_keepalive_count = 3\nmetrics_max_connections = 256\nmetrics_max_per_ip = 8\nmetrics_timeout = $METRICS_TIMEOUT" \
		"$dir/ktlsgate.conf"
	GW_CONF="$dir/ktlsgate.conf"
}

setup() {
	kg_init ops-limits
	unset KG_RELAY   # each test pins its relay itself
	BK_PORT=$(free_port)
	BK2_PORT=$(free_port)
	GW_PORT=$(free_port)
	GW_MPORT=$(free_port)
	gw_conf "$WORK/gw" userspace
	pki_setup "$WORK/pki" || return 1
	local d
	for d in authed idle1 idle2 idle3 idle4 idle5 ka1; do
		device_cert "$d" "$PKI/factory" || return 1
		kg device add "$d" >/dev/null || { echo "device add $d failed" >&2; return 1; }
	done
	start_broker "$BK_PORT" || return 1
}

# start_mode RELAY: a fresh gateway with that relay (its own log).
start_mode() {
	stop_gateway
	gw_conf "$WORK/gw" "$1"
	GW_LOG="$WORK/gw/gw-$1.log"
	: >"$GW_LOG"
	start_gateway || return 1
}

# sum_metric NAME [LABEL...]: value, "" if the scrape failed.
sum_metric() {
	local v
	v=$(metric_value "$@") || return 1
	echo "$v"
}

# --- A: the audit flood guard ------------------------------------------------------

t_audit_flood() {
	start_mode userspace || { note "gateway did not start"; return 1; }
	local n=2000 res secs deny0 close0 deny1 close1 lines summed supp bound nreasons
	deny0=$(metric_value ktlsgate_decisions_total 'decision="deny"')
	close0=$(metric_value ktlsgate_closes_total)
	[ -n "$deny0" ] && [ -n "$close0" ] || { note "no metrics before the flood"; return 1; }
	res=$(ops flood --port "$GW_PORT" --ca "$PKI/root/cert.pem" --n $n --parallel 16 --source 127.0.0.3)
	echo "    $res"
	case $res in "flood done=$n "*) ;; *) note "flood incomplete: $res"; return 1 ;; esac
	secs=$(printf '%s\n' "$res" | sed -n 's/.*seconds=\([0-9]*\).*/\1/p')
	[ -n "$secs" ] || { note "no flood duration in: $res"; return 1; }
	# every refusal was counted, held back or not
	local i
	for ((i = 0; i < 50; i++)); do
		deny1=$(metric_value ktlsgate_decisions_total 'decision="deny"')
		[ "$((deny1 - deny0))" -ge $n ] && break
		sleep 0.1
	done
	close1=$(metric_value ktlsgate_closes_total)
	[ "$((deny1 - deny0))" -eq $n ] || { note "decisions_total deny grew by $((deny1 - deny0)), want $n"; return 1; }
	[ "$((close1 - close0))" -eq $n ] || { note "closes_total grew by $((close1 - close0)), want $n"; return 1; }
	supp=$(metric_value ktlsgate_audit_suppressed_total)
	# summaries: windows end within AUDIT_INTERVAL_MS, the scan reports them (polled
	# until lines and summaries account for every refusal, at most that long + 2 s)
	for ((i = 0; i < (AUDIT_INTERVAL_MS / 1000 + 2) * 10; i++)); do
		lines=$(grep -c '"peer":"127.0.0.3:' "$GW_LOG")
		summed=$(grep '"event":"audit_suppressed"' "$GW_LOG" | grep '"peer":"127.0.0.3"' |
			sed -n 's/.*"count":\([0-9]*\).*/\1/p' | awk '{ s += $1 } END { print s + 0 }')
		[ "$((lines + summed))" -ge $n ] && break
		sleep 0.1
	done
	nreasons=$(grep '"peer":"127.0.0.3' "$GW_LOG" | sed -n 's/.*"reason":"\([a-z_]*\)".*/\1/p' | sort -u | wc -l)
	echo "    audit lines=$lines suppressed(summaries)=$summed suppressed(metric)=$supp reasons=$nreasons in ${secs}s"
	[ "$nreasons" -ge 1 ] || { note "no audit line for the flood at all"; return 1; }
	# bounded: AUDIT_LINES per window, per worker, per reason
	bound=$((AUDIT_LINES * WORKERS * nreasons * (secs * 1000 / AUDIT_INTERVAL_MS + 2)))
	[ "$lines" -le "$bound" ] || { note "$lines audit lines for $n refusals (bound $bound)"; return 1; }
	[ "$((lines + summed))" -eq $n ] || { note "lines $lines + summarised $summed != $n"; return 1; }
	[ "$supp" -eq "$summed" ] || { note "metric says $supp held back, summaries $summed"; return 1; }
	# decisions about an identified device are never held back, even from that source
	local mark ok=0 allow
	mark=$(log_mark)
	for ((i = 0; i < AUDIT_LINES * 3; i++)); do
		r=$(kgc connect $(dev_args authed) --source 127.0.0.3 | head -1)
		[ "$r" = "connack 0x00" ] && ok=$((ok + 1))
	done
	[ $ok -eq $((AUDIT_LINES * 3)) ] || { note "only $ok of $((AUDIT_LINES * 3)) good connects"; return 1; }
	allow=$(tail -n +"$((mark + 1))" "$GW_LOG" | grep '"device":"authed"' | grep -c '"decision":"allow"')
	[ "$allow" -eq $((AUDIT_LINES * 3)) ] || { note "$allow allow lines for $((AUDIT_LINES * 3)) sessions"; return 1; }
}

# Summaries still pending at exit are written: stop the daemon mid-window.
t_audit_flush_at_exit() {
	start_mode userspace || { note "gateway did not start"; return 1; }
	local n=300 res lines summed
	res=$(ops flood --port "$GW_PORT" --ca "$PKI/root/cert.pem" --n $n --parallel 8 --source 127.0.0.4)
	case $res in "flood done=$n "*) ;; *) note "flood incomplete: $res"; return 1 ;; esac
	stop_gateway
	lines=$(grep -c '"peer":"127.0.0.4:' "$GW_LOG")
	summed=$(grep '"event":"audit_suppressed"' "$GW_LOG" | grep '"peer":"127.0.0.4"' |
		sed -n 's/.*"count":\([0-9]*\).*/\1/p' | awk '{ s += $1 } END { print s + 0 }')
	echo "    audit lines=$lines summarised=$summed"
	[ "$lines" -gt 0 ] && [ "$lines" -lt $n ] || { note "$lines audit lines for $n refusals"; return 1; }
	[ "$((lines + summed))" -eq $n ] || { note "lines $lines + summarised $summed != $n at exit"; return 1; }
}

# --- B: idle relayed sessions ------------------------------------------------------

# idle_case DEVICE KEEPALIVE EVERY DURATION: the probe's line.
idle_case() {
	ops idle $(dev_args "$1") --keepalive "$2" --every "$3" --duration "$4" | tail -1
}

# closed_between LINE LO HI: "closed after X s" with LO <= X <= HI.
closed_between() {
	local x
	x=$(printf '%s\n' "$1" | sed -n 's/^closed after \([0-9.]*\)s.*/\1/p')
	[ -n "$x" ] || return 1
	awk -v x="$x" -v lo="$2" -v hi="$3" 'BEGIN { exit !(x >= lo && x <= hi) }'
}

idle_keepalive() {
	local relay=$1 dev=$2 mark res before after
	start_mode "$relay" || { note "gateway did not start"; return 1; }
	before=$(metric_value ktlsgate_closes_total 'reason="idle_timeout"')
	mark=$(log_mark)
	# keep-alive 2: closed 1.5 x 2 = 3 s after the last packet (the CONNECT)
	res=$(idle_case "$dev" 2 0 12)
	echo "    keep-alive 2, silent: $res"
	closed_between "$res" 2.5 6 || { note "keep-alive 2, silent: $res (want closed after ~3 s)"; return 1; }
	audit_has "$mark" idle_timeout "$dev" || { note "no idle_timeout audit line: $AUDIT_OUT"; return 1; }
	after=$(metric_value ktlsgate_closes_total 'reason="idle_timeout"')
	[ "$((after - before))" -eq 1 ] || { note "closes_total{idle_timeout} grew by $((after - before))"; return 1; }
	[ "$(metric_value ktlsgate_sessions_started_total "mode=\"$3\"")" -ge 1 ] ||
		{ note "the session did not run in mode $3"; return 1; }
}

idle_active() {
	local relay=$1 dev=$2 res
	start_mode "$relay" || { note "gateway did not start"; return 1; }
	# publishing every second keeps a keep-alive 2 session open well past 3 s (6 s:
	# twice the limit a silent one gets)
	res=$(idle_case "$dev" 2 1 6)
	echo "    keep-alive 2, publishing: $res"
	case $res in "open after "*) ;; *) note "publishing device was closed: $res"; return 1 ;; esac
}

idle_configured() {
	local relay=$1 dev=$2 mark res
	start_mode "$relay" || { note "gateway did not start"; return 1; }
	mark=$(log_mark)
	res=$(idle_case "$dev" 0 0 12)
	echo "    keep-alive 0, silent (idle_timeout = $IDLE_TIMEOUT): $res"
	closed_between "$res" 2.5 6 || { note "keep-alive 0: $res (want closed after ~$IDLE_TIMEOUT s)"; return 1; }
	audit_has "$mark" idle_timeout "$dev" || { note "no idle_timeout audit line: $AUDIT_OUT"; return 1; }
}

# The documented rule for broker->device traffic: with a keep-alive it does not keep a
# silent device alive (MQTT 3.1.1 3.1.2.10 counts the client's packets); with
# keep-alive 0 and idle_timeout it does (a pure subscriber is not idle).
idle_receiving() {
	local relay=$1 pid res
	start_mode "$relay" || { note "gateway did not start"; return 1; }
	( for i in $(seq 1 30); do
		timeout 5 mosquitto_pub -h 127.0.0.1 -p "$BK_PORT" -t itest/rx -m "x$i" 2>/dev/null
		sleep 0.4
	done ) &
	pid=$!
	res=$(ops idle $(dev_args idle3) --keepalive 2 --subscribe itest/rx --duration 7 | tail -1)
	echo "    keep-alive 2, subscribed, receiving only: $res"
	closed_between "$res" 2.5 6 || { kill $pid 2>/dev/null; wait $pid 2>/dev/null
		note "keep-alive 2, receiving only: $res (want closed after ~3 s)"; return 1; }
	res=$(ops idle $(dev_args idle4) --keepalive 0 --subscribe itest/rx --duration 5 | tail -1)
	echo "    keep-alive 0, subscribed, receiving only: $res"
	kill $pid 2>/dev/null
	wait $pid 2>/dev/null
	case $res in "open after "*) ;; *) note "keep-alive 0, receiving only, was closed: $res"; return 1 ;; esac
	case $res in *" received=0") note "nothing was received: $res"; return 1 ;; esac
}

# TCP keepalive timers on both of the gate's sockets of a live session.
tcp_keepalive() {
	local relay=$1 pid devside beside
	start_mode "$relay" || { note "gateway did not start"; return 1; }
	ops idle $(dev_args ka1) --keepalive 60 --every 0 --duration 4 >/dev/null &
	pid=$!
	sleep 2
	devside=$(ss -Htnoe state established "( sport = :$GW_PORT )" 2>/dev/null)
	beside=$(ss -Htnoep state established "( dport = :$BK_PORT )" 2>/dev/null | grep "pid=$GW_PID,")
	wait $pid
	echo "    device side: $(printf '%s' "$devside" | grep -o 'timer:([^)]*)' | head -1)"
	echo "    broker side: $(printf '%s' "$beside" | grep -o 'timer:([^)]*)' | head -1)"
	[ -n "$devside" ] || { note "no device-side socket of the gate found"; return 1; }
	[ -n "$beside" ] || { note "no broker-side socket of the gate found"; return 1; }
	printf '%s' "$devside" | grep -q 'timer:(keepalive,' || { note "device socket has no keepalive timer: $devside"; return 1; }
	printf '%s' "$beside" | grep -q 'timer:(keepalive,' || { note "broker socket has no keepalive timer: $beside"; return 1; }
}

t_idle_keepalive_record() { idle_keepalive userspace idle1 userspace; }
t_idle_keepalive_openssl() { idle_keepalive openssl idle2 userspace_ssl; }
t_idle_active_record() { idle_active userspace idle3; }
t_idle_active_openssl() { idle_active openssl idle3; }
t_idle_configured_record() { idle_configured userspace idle4; }
t_idle_configured_openssl() { idle_configured openssl idle5; }
t_idle_receiving_record() { idle_receiving userspace; }
t_tcp_keepalive_record() { tcp_keepalive userspace; }
t_tcp_keepalive_openssl() { tcp_keepalive openssl; }

# --- C: the metrics endpoint -------------------------------------------------------

# 200 idle + 20 half-sent connections from one address: a scraper elsewhere gets
# through within 2 s, and the endpoint closes them all after metrics_timeout.
t_metrics_one_source_flood() {
	start_mode userspace || { note "gateway did not start"; return 1; }
	local res
	res=$(ops metrics --port "$GW_MPORT" --idle 200 --half 20 --sources 127.0.0.5 \
		--scraper 127.0.0.9 --scrape-timeout 2 --wait-closed $((METRICS_TIMEOUT + 4)))
	printf '%s\n' "$res" | sed 's/^/    /'
	printf '%s\n' "$res" | grep -q '^scrape ok ' || { note "$(printf '%s' "$res" | head -1)"; return 1; }
	printf '%s\n' "$res" | grep -qx 'after wait open=0' || { note "idle connections still open: $res"; return 1; }
}

# The same spread over 50 addresses (4 each, under the per-address cap): the endpoint
# holds all 220 and still serves the scraper; they are closed after the timeout.
t_metrics_many_sources() {
	start_mode userspace || { note "gateway did not start"; return 1; }
	local res srcs i open
	srcs=$(for ((i = 10; i < 60; i++)); do printf '127.0.1.%d,' $i; done)
	res=$(ops metrics --port "$GW_MPORT" --idle 200 --half 20 --sources "${srcs%,}" \
		--scraper 127.0.0.9 --scrape-timeout 2 --wait-closed $((METRICS_TIMEOUT + 4)))
	printf '%s\n' "$res" | sed 's/^/    /'
	printf '%s\n' "$res" | grep -q '^scrape ok ' || { note "$(printf '%s' "$res" | head -1)"; return 1; }
	open=$(printf '%s\n' "$res" | sed -n 's/^scrape ok .* open=\([0-9]*\)$/\1/p')
	[ "$open" = 220 ] || { note "the endpoint held $open of 220 (want all: under both caps)"; return 1; }
	printf '%s\n' "$res" | grep -qx 'after wait open=0' || { note "idle connections still open: $res"; return 1; }
}

# --- configuration ---------------------------------------------------------------

# -t reports the limits, and a bad value is refused with the line and the range.
t_config_report() {
	local res d="$WORK/cfgcheck"
	mkdir -p "$d"
	res=$(timeout 10 "$GATED" -t -c "$GW_CONF" 2>&1)
	printf '%s\n' "$res" | grep -qxF "ktlsgated: idle sessions: 1.5 x MQTT keep-alive, else ${IDLE_TIMEOUT}s (0: never); TCP keepalive 30s/5s x3 (0: off)" ||
		{ note "-t does not report the idle limits: $res"; return 1; }
	printf '%s\n' "$res" | grep -qxF "ktlsgated: audit of unauthenticated refusals: $AUDIT_LINES line(s) per reason and source, 0 per worker, per ${AUDIT_INTERVAL_MS}ms (0: no limit); metrics: 256 connection(s), 8 per address, ${METRICS_TIMEOUT}s timeout" ||
		{ note "-t does not report the audit/metrics limits: $res"; return 1; }
	sed 's/^metrics_max_per_ip = 8$/metrics_max_per_ip = 257/' "$GW_CONF" >"$d/bad.conf"
	grep -q '^metrics_max_per_ip = 257$' "$d/bad.conf" || { note "could not make the bad config"; return 1; }
	if res=$(timeout 10 "$GATED" -t -c "$d/bad.conf" 2>&1); then
		note "-t accepted metrics_max_per_ip above metrics_max_connections"
		return 1
	fi
	printf '%s\n' "$res" | grep -q "bad.conf:[0-9]*: metrics_max_per_ip (257) exceeds metrics_max_connections (256)" ||
		{ note "unclear error: $res"; return 1; }
}

ALL_TESTS=(t_config_report t_audit_flood t_audit_flush_at_exit
	t_idle_keepalive_record t_idle_active_record t_idle_configured_record t_idle_receiving_record
	t_tcp_keepalive_record
	t_idle_keepalive_openssl t_idle_active_openssl t_idle_configured_openssl t_tcp_keepalive_openssl
	t_metrics_one_source_flood t_metrics_many_sources)

after_each() {
	[ -z "${GW_PID:-}" ] || kill -0 "$GW_PID" 2>/dev/null || { note "ktlsgated died"; return 1; }
}

if ! setup; then
	echo "FAIL setup"
	exit 1
fi
run_tests
