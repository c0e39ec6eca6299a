#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# restart.sh - make bench-restart (issue 14): what devices see while the terminator in
# front of mosquitto restarts, ktlsgated against HAProxy 2.6 and nginx 1.22.
#
# The tests/edge namespaces (netns.sh): clients in the "device" namespace (10.77.0.2),
# the terminators and mosquitto in the "gate" one (10.77.0.1, mosquitto on its loopback).
# Every terminator does the same work: mutual TLS with the same server certificate and
# client CA (root + factory), then plain MQTT to the same mosquitto; the clients send the
# same bytes to each. Per run (BENCH_WINDOW s, the restart RESTART_AT s in):
#   - tests/edge/restart_client.py loop: BENCH_RATE attempts/s (TCP + mTLS + CONNECT,
#     CONNACK, DISCONNECT), each classed ok/refused/reset/timeout/other, plus one live
#     session opened before the restart and pinged every 0.2 s (did it survive?);
#   - restart_client.py qos1-pub: QoS 1 messages numbered 1.. at QOS_RATE/s through the
#     terminator, a mosquitto_sub on the broker itself collecting them, and qos1-check:
#     delivered exactly once or not.
# Variants (BENCH_VARIANTS): steady (no restart: the tools' zero), plain (ktlsgated
# SIGTERM, wait for exit, start), takeover (`ktlsgated --takeover` started beside the
# running one; "not available in this build" when --help does not list it), haproxy
# (master-worker -W, `expose-fd listeners` on the stats socket, reload = SIGUSR2 to the
# master), nginx (stream module, `nginx -s reload`); on request only, takeover-kill (the
# old process SIGKILLed KILL_AFTER s into a takeover). BENCH_REPEAT runs each, medians.
# net.ipv4.tcp_migrate_req = 1 in the gate namespace for every variant (the kernel's
# request migration between SO_REUSEPORT listeners; tests/edge/test-takeover.sh).
# Self-checks (exit 1): steady must show 0 failures, exactly once and the live session
# kept; plain must show failures and the live session lost (a probe that cannot see a
# failure proves nothing). Exit 3 when a variant asked for could not run.
# Knobs (defaults): BENCH_REPEAT (3), BENCH_RATE (200), BENCH_WINDOW (10 s), RESTART_AT
# (3 s), QOS_RATE (50), BENCH_TIMEOUT (3 s per attempt), BENCH_LIVE_TIMEOUT (2 s per
# PINGRESP), BENCH_VARIANTS (all five), BENCH_LOOP_DEVICES (16), BENCH_OUT ($BUILD/bench);
# BUILD may point at another tree's build (the stamp names that tree).
# Results: $BENCH_OUT/restart.md (the table of docs/benchmarks.md "Issue 14: restart"),
# one row per run in restart.tsv.
# The start_/restart_/stop_ functions are called by name ("start_$v").
# shellcheck disable=SC2317
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(cd "$HERE/../.." && pwd)
BUILD=${BUILD:-build}
[[ $BUILD = /* ]] || BUILD="$TOP/$BUILD"
FLOOD="$BUILD/kg-synflood"   # netns.sh checks it is built; not used here
. "$TOP/tests/edge/netns.sh"
edge_netns_enter bench-restart "$0" "$@"

# shellcheck disable=SC2034 # read by lib.sh
GATED="$BUILD/ktlsgated"
# shellcheck disable=SC2034
KGCLI="$BUILD/ktlsgate"
. "$TOP/tests/integration/lib.sh"

REPEAT=${BENCH_REPEAT:-3}
RATE=${BENCH_RATE:-200}
WINDOW=${BENCH_WINDOW:-10}
RESTART_AT=${RESTART_AT:-3}
QOS_RATE=${QOS_RATE:-50}
TIMEOUT=${BENCH_TIMEOUT:-3}            # an attempt's deadline (connect, handshake, CONNACK)
LIVE_TIMEOUT=${BENCH_LIVE_TIMEOUT:-2}  # the live session's deadline for each PINGRESP
VARIANTS=${BENCH_VARIANTS:-"steady plain takeover haproxy nginx"}
N_DEV=${BENCH_LOOP_DEVICES:-16}
OUT=${BENCH_OUT:-$BUILD/bench}
RC=$TOP/tests/edge/restart_client.py
PORT=8883
ADDR=10.77.0.1

dev() { ip netns exec "$DEV_NS" "$@"; }
say() { printf '[bench-restart %s] %s\n' "$(date +%T)" "$*" >&2; }
jget() { $PY -c 'import json,sys; v=json.loads(sys.argv[1]); [v := v.get(k) if isinstance(v, dict) else None for k in sys.argv[2].split(".")]; print("" if v is None else str(v).lower() if isinstance(v, bool) else v)' "$1" "$2"; }

setup() {
	KG_GW_LIMITS=$KG_GW_NO_SOURCE_LIMITS edge_gw_conf bench-restart
	sed -i "s/^listen = .*/listen = $ADDR:$PORT/" "$GW_CONF"
	# lib.sh's short test deadlines (a 1 s backend connect) would fail attempts on a loaded
	# machine that HAProxy (timeout connect 5s) and nginx (60 s) wait out: the daemon's
	# defaults for the handshake and CONNECT, HAProxy's 5 s for the backend connect
	sed -i -e 's/^handshake_timeout_ms = .*/handshake_timeout_ms = 10000/' \
		-e 's/^connect_timeout_ms = .*/connect_timeout_ms = 10000/' \
		-e 's/^backend_timeout_ms = .*/backend_timeout_ms = 5000/' "$GW_CONF"
	sysctl -qw net.ipv4.tcp_migrate_req=1
	pki_setup "$WORK/pki" || return 1
	IDS=""
	local i id
	for ((i = 0; i < N_DEV; i++)); do
		id=rs-$i
		IDS+="${IDS:+,}$id"
	done
	for id in ${IDS//,/ } rs-live rs-pub; do
		if ! device_cert "$id" "$PKI/factory" || ! kg device add "$id" >/dev/null; then
			echo "device $id failed" >&2
			return 1
		fi
	done
	cat "$PKI/root/cert.pem" "$PKI/factory/cert.pem" >"$WORK/clients-ca.pem"
	cat "$WORK/gw/server/chain.pem" "$WORK/gw/server/key.pem" >"$WORK/server-full.pem"
	start_broker "$BK_PORT" || return 1
	mkdir -p "$OUT"
	RAW="$OUT/restart.tsv"
	: >"$RAW"
}

# --- the terminators: start_V sets SRV_PID; restart_V restarts it --------------------

start_plain() { start_gateway; SRV_PID=$GW_PID; }
# What systemd does: SIGTERM, wait for the exit (SIGCHLD: `wait`, not lib.sh's
# stop_gateway, whose `tail --pid` polls once a second and would lengthen the gap), start.
restart_plain() {
	local w
	kill -TERM "$GW_PID"
	(sleep 15 && kill -KILL "$GW_PID" 2>/dev/null) &
	w=$!
	wait "$GW_PID" 2>/dev/null
	kill "$w" 2>/dev/null
	forget_pid "$GW_PID"
	start_gateway
	SRV_PID=$GW_PID
}
stop_plain() { stop_gateway; }
start_steady() { start_plain; }
restart_steady() { :; }
stop_steady() { stop_gateway; }

have_takeover() { "$GATED" --help 2>&1 | grep -q -- --takeover; }
start_takeover() { start_plain; }
restart_takeover() {
	OLD_PID=$GW_PID
	"$GATED" --takeover -c "$GW_CONF" 2>>"$GW_LOG" >>"$GW_LOG" &
	GW_PID=$!
	KG_PIDS+=("$GW_PID")
	SRV_PID=$GW_PID
}
stop_takeover() {
	# the old process exits once its last session ended (the live one ends with the run)
	local i
	OLD_EXIT=no
	for ((i = 0; i < 300; i++)); do
		kill -0 "$OLD_PID" 2>/dev/null || { OLD_EXIT=yes; break; }
		sleep 0.1
	done
	say "takeover: the old process exited by itself once its sessions ended: $OLD_EXIT"
	kill "$OLD_PID" 2>/dev/null
	forget_pid "$OLD_PID"
	stop_gateway
}

# takeover-kill (not in the default list): the old process is SIGKILLed
# KILL_AFTER s (0.1) after the new one was started, i.e. mid-handover: the new one must
# go on serving; what the old one held (handshakes in flight, the live session) is lost.
start_takeover-kill() { start_plain; }
restart_takeover-kill() {
	restart_takeover
	sleep "${KILL_AFTER:-0.1}"
	kill -KILL "$OLD_PID"
}
stop_takeover-kill() { stop_takeover; }

start_haproxy() {
	local d=$WORK/haproxy
	mkdir -p "$d"
	SRV_PORT=$(free_port)
	cat >"$d/haproxy.cfg" <<-EOF
	global
	    nbthread 2
	    maxconn 4000
	    pidfile $d/haproxy.pid
	    # the listeners go to the new worker over this socket on reload
	    stats socket $d/haproxy.sock mode 600 level admin expose-fd listeners
	defaults
	    mode tcp
	    timeout connect 5s
	    timeout client 300s
	    timeout server 300s
	frontend mqtts
	    bind $ADDR:$SRV_PORT ssl crt $WORK/server-full.pem ca-file $WORK/clients-ca.pem verify required ssl-min-ver TLSv1.2
	    default_backend mosquitto
	backend mosquitto
	    server mq 127.0.0.1:$BK_PORT
	EOF
	haproxy -W -S "$d/master.sock" -f "$d/haproxy.cfg" >>"$d/haproxy.log" 2>&1 &
	SRV_PID=$!
	KG_PIDS+=("$SRV_PID")
	wait_listen_on "$SRV_PORT" "$SRV_PID" || { tail "$d/haproxy.log" >&2; return 1; }
}
# SIGUSR2 to the master = the master CLI's "reload": re-exec, new worker, old worker
# finishes its connections (no hard-stop-after)
restart_haproxy() { kill -USR2 "$SRV_PID"; }
stop_haproxy() { kill "$SRV_PID"; timeout 10 tail --pid="$SRV_PID" -f /dev/null; forget_pid "$SRV_PID"; }

start_nginx() {
	local d=$WORK/nginx
	mkdir -p "$d"
	SRV_PORT=$(free_port)
	cat >"$d/nginx.conf" <<-EOF
	load_module /usr/lib/nginx/modules/ngx_stream_module.so;
	user root;
	worker_processes 2;
	pid $d/nginx.pid;
	error_log $d/error.log warn;
	events { worker_connections 4000; }
	stream {
	    server {
	        listen $ADDR:$SRV_PORT ssl;
	        ssl_certificate $WORK/gw/server/chain.pem;
	        ssl_certificate_key $WORK/gw/server/key.pem;
	        ssl_protocols TLSv1.2 TLSv1.3;
	        ssl_verify_client on;
	        ssl_client_certificate $WORK/clients-ca.pem;
	        ssl_verify_depth 3;
	        proxy_pass 127.0.0.1:$BK_PORT;
	        proxy_timeout 300s;
	    }
	}
	EOF
	NGINX=(nginx -p "$d/" -e "$d/error.log" -c "$d/nginx.conf")
	"${NGINX[@]}" -g 'daemon off;' >>"$d/nginx.log" 2>&1 &
	SRV_PID=$!
	KG_PIDS+=("$SRV_PID")
	wait_listen_on "$SRV_PORT" "$SRV_PID" || { tail "$d/error.log" >&2; return 1; }
}
restart_nginx() { "${NGINX[@]}" -s reload; }
stop_nginx() { kill "$SRV_PID"; timeout 10 tail --pid="$SRV_PID" -f /dev/null; forget_pid "$SRV_PID"; }

# tree_of PID: the pid and all its descendants (HAProxy, nginx: master + workers).
tree_of() {
	local c
	echo "$1"
	for c in $(pgrep -P "$1"); do
		tree_of "$c"
	done
}

# wait_listen_on PORT PID: until something listens on PORT (any address).
wait_listen_on() {
	local i
	for ((i = 0; i < 200; i++)); do
		[ -n "$(ss -Hltn "sport = :$1")" ] && return 0
		kill -0 "$2" 2>/dev/null || return 1
		sleep 0.05
	done
	return 1
}

# slow_after EVENTS T0: ok attempts started in the 2 s after T0 (the restart; in the
# steady variant the same moment, for the machine's own noise) that took over 0.5 s.
slow_after() {
	awk -v t0="$2" '$3 == "ok" && $1 >= t0 && $1 < t0 + 2 && $2 > 0.5 { n++ } END { print n + 0 }' "$1"
}

# run_one VARIANT REP: one run; appends a row to $RAW.
run_one() {
	local v=$1 rep=$2 port topic sub subpid lp qp loop pubj chk t0 t1 t_r t_s i before after p newp=0 oldalive=0
	"start_$v" || { say "$v: did not start"; return 1; }
	port=$PORT
	[[ $v == haproxy || $v == nginx ]] && port=$SRV_PORT
	topic="kgbench/restart/$v/$rep"
	sub=$WORK/sub-$v-$rep.txt
	mosquitto_sub -h 127.0.0.1 -p "$BK_PORT" -q 1 -i "rs-sub-$v-$rep" -t "$topic" >"$sub" 2>/dev/null &
	subpid=$!
	sleep 1   # subscribed before the first message
	pubj=$WORK/pub-$v-$rep.json
	dev timeout $((WINDOW + 60)) $PY "$RC" qos1-pub --host $ADDR --port "$port" --ca "$PKI/root/cert.pem" \
		--cert "$PKI/dev/rs-pub/chain.pem" --key "$PKI/dev/rs-pub/key.pem" --id rs-pub \
		--topic "$topic" --rate "$QOS_RATE" --duration "$WINDOW" --out "$pubj" \
		>"$WORK/pub-$v-$rep.out" 2>&1 &
	qp=$!
	dev timeout $((WINDOW + 60)) $PY "$RC" loop --host $ADDR --port "$port" --ca "$PKI/root/cert.pem" \
		--devices "$PKI/dev" --ids "$IDS" --live rs-live --rate "$RATE" --duration "$WINDOW" \
		--timeout "$TIMEOUT" --live-timeout "$LIVE_TIMEOUT" \
		--events "$WORK/events-$v-$rep.txt" >"$WORK/loop-$v-$rep.out" 2>"$WORK/loop-$v-$rep.err" &
	lp=$!
	# the restart: RESTART_AT s after the loop's first attempt
	for ((i = 0; i < 200; i++)); do
		grep -q '^start' "$WORK/loop-$v-$rep.err" 2>/dev/null && break
		sleep 0.05
	done
	sleep "$RESTART_AT"
	before=$(tree_of "$SRV_PID")
	t0=$(date +%s.%N)
	"restart_$v"
	t1=$(date +%s.%N)
	t_r=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
	# the restart is real only if new processes serve: count them (HAProxy and nginx
	# keep the master's pid; their new workers are new)
	for ((i = 0; i < 100 && newp == 0; i++)); do
		after=$(tree_of "$SRV_PID")
		for p in $after; do
			grep -qx "$p" <<<"$before" || newp=$((newp + 1))
		done
		[[ $v == steady ]] && break
		((newp > 0)) || sleep 0.05
	done
	# old processes still running 1 s before the window ends (the live session is still
	# open then): the ones draining old sessions (a master that re-executed itself under
	# the same pid is not one)
	t_s=$(sed -n 's/^start //p' "$WORK/loop-$v-$rep.err")
	sleep "$(awk -v s="$t_s" -v w="$WINDOW" -v n="$(date +%s.%N)" 'BEGIN { d = s + w - 1 - n; print (d > 0 ? d : 0) }')"
	if [[ $v != steady ]]; then
		for p in $before; do
			[[ $p != "$SRV_PID" ]] && kill -0 "$p" 2>/dev/null && oldalive=$((oldalive + 1))
		done
	fi
	wait "$lp"
	wait "$qp"
	sleep 1   # the last deliveries reach the subscriber
	kill "$subpid" 2>/dev/null
	wait "$subpid" 2>/dev/null
	loop=$(tail -1 "$WORK/loop-$v-$rep.out")
	"stop_$v"
	if [ -z "$loop" ] || [ -n "$(jget "$loop" error)" ] || [ ! -s "$pubj" ]; then
		say "$v #$rep: client failed: $loop $(tail -2 "$WORK/pub-$v-$rep.out" "$WORK/loop-$v-$rep.err")"
		return 1
	fi
	chk=$($PY "$RC" qos1-check "$pubj" "$sub")
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$v" "$rep" \
		"$(jget "$loop" offered)" "$(jget "$loop" ok)" "$(jget "$loop" refused)" "$(jget "$loop" reset)" \
		"$(jget "$loop" timeout)" "$(($(jget "$loop" failed) - $(jget "$loop" refused) - $(jget "$loop" reset) - $(jget "$loop" timeout)))" \
		"$(jget "$loop" live.survived)" "$(jget "$chk" exactly_once)" "$(jget "$chk" missing)" \
		"$(jget "$chk" duplicated)" "$(jget "$chk" drops)" "$(jget "$chk" outage_max_s)" "$t_r" \
		"$newp" "$oldalive" "$(jget "$loop" p99_ms)" "$(jget "$loop" max_ms)" \
		"$(slow_after "$WORK/events-$v-$rep.txt" "$t0")" >>"$RAW"
	if [[ $v != steady ]] && ((newp == 0)); then
		say "$v #$rep: no new process after the restart: not counted"
		return 1
	fi
	say "$v #$rep: restart ${t_r}s, $newp new process(es), $oldalive old one(s) alive at the end; loop $(jget "$loop" counts) offered $(jget "$loop" offered_rate)/s, live $(jget "$loop" live.survived) $(jget "$loop" live.error); qos1 $chk"
}

# med VARIANT COL: the median of column COL over the variant's runs.
med() {
	awk -F'\t' -v v="$1" -v c="$2" '$1 == v { print $c }' "$RAW" | sort -g |
		awk '{ a[NR] = $1 } END { if (!NR) print "-"; else print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
# failed VARIANT: the median of the failed attempts (attempts - ok) and the range, per run.
failed() {
	awk -F'\t' -v v="$1" '$1 == v { print $3 - $4 }' "$RAW" | sort -g |
		awk '{ a[NR] = $1 } END { if (!NR) print "-"; else printf "%s (%s-%s)", (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2, a[1], a[NR] }'
}
# yes_of VARIANT COL: "k/n" runs where COL is true.
yes_of() { awk -F'\t' -v v="$1" -v c="$2" '$1 == v { n++; if ($c == "true") k++ } END { printf "%d/%d", k, n }' "$RAW"; }

report() {
	local v name
	echo "- stamp: ktlsgate $(git -C "$TOP" describe --always --dirty 2>/dev/null || echo '?') (binaries: $BUILD, tree $(git -C "$(dirname "$BUILD")" describe --always --dirty 2>/dev/null || echo '?')), $(date -u '+%Y-%m-%d %H:%M UTC'), kernel $(uname -r), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "- $RATE connects/s for $WINDOW s, restart at ${RESTART_AT} s; QoS 1 at $QOS_RATE msg/s; medians of $REPEAT runs"
	echo "  (each column its own median; \"failed\" = attempts without a CONNACK 0, per run)"
	echo
	echo "| variant | attempts | failed (min-max) | refused | reset | timeout | other | CONNACK p99 / max ms | ok but > 0.5 s, 2 s after the restart | live session kept | QoS 1 exactly once | missing | duplicated | publisher drops | longest outage s | restart cmd s | old processes alive at the end |"
	echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
	for v in $VARIANTS; do
		case $v in
		steady) name="no restart (steady)" ;;
		plain) name="ktlsgated plain restart (SIGTERM + start)" ;;
		takeover) name="ktlsgated --takeover" ;;
		takeover-kill) name="ktlsgated --takeover, old one SIGKILLed ${KILL_AFTER:-0.1} s in" ;;
		haproxy) name="HAProxy $(haproxy -v | sed -n 's/^HAProxy version \([0-9.]*\).*/\1/p') reload (master-worker, expose-fd listeners)" ;;
		nginx) name="nginx $(nginx -v 2>&1 | sed 's/.*nginx\///') -s reload (stream, TLS)" ;;
		esac
		if [[ " $NOT_RUN " == *" $v "* ]]; then
			echo "| $name | not available in this build | | | | | | | | | | | | | | | |"
			continue
		fi
		echo "| $name | $(med "$v" 3) | $(failed "$v") | $(med "$v" 5) | $(med "$v" 6) | $(med "$v" 7) | $(med "$v" 8) | $(med "$v" 18) / $(med "$v" 19) | $(med "$v" 20) | $(yes_of "$v" 9) | $(yes_of "$v" 10) | $(med "$v" 11) | $(med "$v" 12) | $(med "$v" 13) | $(med "$v" 14) | $(med "$v" 15) | $(med "$v" 17) |"
	done
}

# self_check: the tools must see nothing when nothing happens, and see a plain restart.
self_check() {
	local bad=0 f
	if [[ " $VARIANTS " == *" steady "* ]]; then
		f=$(awk -F'\t' '$1 == "steady" && ($4 != $3 || $9 != "true" || $10 != "true")' "$RAW")
		[ -z "$f" ] || { say "SELF-CHECK FAILED: a steady run saw failures: $f"; bad=1; }
	fi
	if [[ " $VARIANTS " == *" plain "* ]]; then
		f=$(awk -F'\t' '$1 == "plain" && ($4 == $3 || $9 == "true" || $13 == 0)' "$RAW")
		[ -z "$f" ] || { say "SELF-CHECK FAILED: a plain restart went unseen: $f"; bad=1; }
	fi
	# BENCH_ASSERT_TAKEOVER=1 (test-restart-tools): the issue's target as a test
	if [ "${BENCH_ASSERT_TAKEOVER:-0}" = 1 ] && [[ " $VARIANTS " == *" takeover "* ]] && [[ " $NOT_RUN " != *" takeover "* ]]; then
		f=$(awk -F'\t' '$1 == "takeover" && ($4 != $3 || $9 != "true" || $10 != "true")' "$RAW")
		[ -z "$f" ] || { say "TAKEOVER TARGET MISSED: failed attempts, the live session lost or not exactly once: $f"; bad=1; }
		[ -n "$(awk -F'\t' '$1 == "takeover"' "$RAW")" ] || { say "TAKEOVER: no run recorded"; bad=1; }
	fi
	return $bad
}

setup || { say "setup failed"; exit 1; }
NOT_RUN=""
rc=0
for ((rep = 1; rep <= REPEAT; rep++)); do
	for v in $VARIANTS; do
		if [[ $v == takeover* ]] && ! have_takeover; then
			[[ " $NOT_RUN " == *" $v "* ]] || { NOT_RUN+=" $v"; say "$v: not available in this build (ktlsgated --help has no --takeover)"; }
			continue
		fi
		run_one "$v" "$rep" || { rc=1; "stop_$v" 2>/dev/null; }
	done
done
report | tee "$OUT/restart.md"
echo "command: make bench-restart (BENCH_REPEAT=$REPEAT BENCH_RATE=$RATE BENCH_WINDOW=$WINDOW RESTART_AT=$RESTART_AT QOS_RATE=$QOS_RATE BENCH_TIMEOUT=$TIMEOUT BENCH_LIVE_TIMEOUT=$LIVE_TIMEOUT)" | tee -a "$OUT/restart.md"
self_check || rc=1
[ $rc = 0 ] && [ -n "$NOT_RUN" ] && rc=3
exit $rc
