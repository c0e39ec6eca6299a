#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
#
# plain.sh - `make bench-plain` (issue 15): QoS 1 publishing through a `plain` ktlsgated
# listener with the sockmap relay (`relay = auto`), the same listener with the
# user-space relay (`relay = userspace`, mode "plain") and HAProxy 2.6 `mode tcp`, side
# by side in one run against one mosquitto, plus kg-bench straight to mosquitto for
# reference. Per run: msgs/s, PUBLISH->PUBACK p99, and the proxy's user and system CPU
# seconds (/proc/PID/stat of all its processes, before/after) per GB of payload moved.
# Each ktlsgated run must show ktlsgate_sessions_started_total{mode=...} rise by exactly
# the connections kg-bench opened (sockmap resp. plain), else it FAILs and its numbers
# are dropped; so is any kg-bench run with an error. Medians and the ratios the issue's
# targets name go to build/bench-plain/results.md. Only 127.0.0.1; every process started
# here is stopped on exit. PLAIN_BACKEND=sink puts build/kg-sink (an MQTT stand-in that
# acks and drops) behind every proxy instead of mosquitto: the relays' own ceiling.
# Knobs: tests/bench/README.md ("Plain sessions").
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# bench_paths, free_port, start_bg, stop_bg, wait_listen, proc_tree, json_get, calc
# shellcheck source=tests/bench/lib.sh
. "$HERE/lib.sh"
BACKEND=${PLAIN_BACKEND:-mosquitto}     # mosquitto | sink
bench_paths "bench-plain/$BACKEND"      # ROOT, BUILD, OUT, KG_BENCH, KTLSGATE, KTLSGATED
KG_SINK=${KG_SINK:-$BUILD/kg-sink}

if [[ ${BENCH_QUICK:-0} == 1 ]]; then
	: "${BENCH_REPEAT:=1}" "${PLAIN_MSGS_SMALL:=20000}" "${PLAIN_MSGS_LARGE:=3000}"
fi
REPEAT=${BENCH_REPEAT:-3}
SIZES=${PLAIN_SIZES:-"256 65536"}        # payload bytes, one series each
# Messages per run below 4 KiB and from 4 KiB (30000 x 64 KiB ~ 2 GB): a few seconds
# each; the sink acks ~10x faster than mosquitto at 256 B, so it gets more.
if [[ $BACKEND == sink ]]; then
	MSGS_SMALL=${PLAIN_MSGS_SMALL:-1000000}
	MSGS_LARGE=${PLAIN_MSGS_LARGE:-40000}
else
	MSGS_SMALL=${PLAIN_MSGS_SMALL:-100000}
	MSGS_LARGE=${PLAIN_MSGS_LARGE:-30000}
fi
CONNS=${PUB_CONNS:-20}
WINDOW=${PUB_WINDOW:-16}
THREADS=${BENCH_THREADS:-1}
PROXIES=${PLAIN_PROXIES:-"sockmap userspace haproxy direct"}
WORKERS=${PLAIN_WORKERS:-2}              # ktlsgated workers = HAProxy threads

RUN=$OUT/run
LOGS=$OUT/logs
RAW=$OUT/raw.tsv
RESULTS=$OUT/results.md
CLK_TCK=$(getconf CLK_TCK)

declare -a PIDS=()
USED_PORTS=" "
PASSED=0
FAILED=0
SRV_PID=""
SRV_PORT=""
MPORT=""
TOKEN=""

say() { printf '[bench-plain %s] %s\n' "$(date +%T)" "$*" >&2; }
pass() { PASSED=$((PASSED + 1)); echo "PASS $1"; }
fail() { FAILED=$((FAILED + 1)); echo "FAIL $1: $2"; }
# die [NAME] MESSAGE: a FAIL line (NAME "setup" when not given), then stop.
die() { if (($# >= 2)); then fail "$1" "$2"; else fail setup "$1"; fi; exit 1; }

cleanup() {
	local rc=$? pid
	for pid in "${PIDS[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in "${PIDS[@]}"; do
		for _ in $(seq 50); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	echo "bench-plain: $PASSED passed, $FAILED failed"
	if ((rc == 0 && (FAILED > 0 || PASSED == 0))); then
		rc=1
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# cpu_ut PIDS...: "utime stime" in clock ticks, summed (/proc/PID/stat counts all threads).
cpu_ut() {
	local p u=0 s=0 a b
	for p in "$@"; do
		read -r a b < <(awk '{ sub(/^.*\) /, ""); print $12, $13 }' "/proc/$p/stat" 2>/dev/null) || continue
		u=$((u + a))
		s=$((s + b))
	done
	echo "$u $s"
}

# (Sums are printed with %.0f: Debian's awk is mawk, whose %d stops at 2^31.)
# sched_ns PIDS...: on-CPU nanoseconds of every thread (/proc/PID/task/*/schedstat): the
# same CPU as utime + stime, without the 10 ms tick (no user/system split there).
sched_ns() {
	local p t=0 v
	for p in "$@"; do
		v=$(cat /proc/"$p"/task/*/schedstat 2>/dev/null | awk '{ s += $1 } END { printf "%.0f", s }')
		t=$((t + ${v:-0}))
	done
	echo "$t"
}

# host_busy: busy ticks of the whole machine (user nice system irq softirq steal),
# including softirq work (TCP, the sockmap verdict) charged to no process in particular.
host_busy() { awk '/^cpu / { printf "%.0f\n", $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat; }

# kworker_snap: "pid ticks" of every kworker thread. The sockmap relay's egress
# redirect is sent by the socket's backlog work item, i.e. in a kworker: CPU that is
# the relay's but no process of the proxy's.
kworker_snap() {
	grep -h '' /proc/[0-9]*/stat 2>/dev/null | awk '$2 ~ /^\(kworker/ { printf "%s %.0f\n", $1, $14 + $15 }'
}

# kworker_delta BEFORE AFTER: ticks kworkers used in between (new ones from 0; ones that
# exited in between are lost, which only makes this an underestimate).
kworker_delta() {
	awk 'NR == FNR { b[$1] = $2; next } { d += $2 - ($1 in b ? b[$1] : 0) } END { printf "%.0f\n", d }' "$1" "$2"
}

# syscr PID: read-type system calls the process made so far (/proc/PID/io).
syscr() { awk '/^syscr:/ { printf "%.0f\n", $2 }' "/proc/$1/io" 2>/dev/null; }

record() { printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" >>"$RAW"; }

# metric NAME{LABELS}: the value on ktlsgated's metrics endpoint, empty if absent.
metric() {
	curl -s --max-time 5 "http://127.0.0.1:$MPORT/metrics" |
		awk -v k="$1" '$1 == k { print $2; exit }'
}

# ---- set-up --------------------------------------------------------------------------

MQTT_PORT=""
MQ_PID=""
start_backend() {
	free_port MQTT_PORT
	if [[ $BACKEND == sink ]]; then
		start_bg sink "$KG_SINK" "127.0.0.1:$MQTT_PORT"
		MQ_PID=$BG_PID
		wait_listen "$MQ_PID" "$MQTT_PORT" sink || die setup "kg-sink did not listen"
		say "backend kg-sink on 127.0.0.1:$MQTT_PORT (pid $MQ_PID)"
		return 0
	fi
	# the one plain-TCP broker behind every proxy
	plain_broker_conf "$MQTT_PORT" >"$RUN/mosquitto.conf"
	start_bg mosquitto mosquitto -c "$RUN/mosquitto.conf"
	MQ_PID=$BG_PID
	wait_listen "$MQ_PID" "$MQTT_PORT" mosquitto || die setup "mosquitto did not listen"
	say "backend mosquitto on 127.0.0.1:$MQTT_PORT (pid $MQ_PID)"
}

# A server certificate (ktlsgated needs one even with only a plain listener: [daemon]
# cert is required) and a registry with one access-token device, whose token is the
# CONNECT user name of every connection (client_id_check = off: each its own client id).
make_registry() {
	local out
	if ! { "$KTLSGATE" pki root --cn bench-plain-root --out "$RUN/pki/root" >/dev/null &&
		"$KTLSGATE" pki server --cn localhost --ca "$RUN/pki/root" --out "$RUN/pki/server" >/dev/null; }; then
		die setup "ktlsgate pki failed"
	fi
	out=$("$KTLSGATE" -r "$RUN/registry.db" device add bench --auth token 2>>"$LOGS/registry.log") ||
		die setup "ktlsgate device add bench --auth token failed: $out"
	TOKEN=$(sed -n 's/^token: *//p' <<<"$out")
	[[ -n $TOKEN ]] || die setup "device add printed no token: $out"
	say "registry: device bench (access token) in $RUN/registry.db"
}

# ---- proxies: start_X sets SRV_PID and SRV_PORT -----------------------------------------

start_ktlsgated() {
	local relay=$1
	free_port SRV_PORT
	free_port MPORT
	rm -f "$RUN/ctl.sock"
	cat >"$RUN/ktlsgated-$relay.conf" <<-EOF
	[daemon]
	workers = $WORKERS
	cert = $RUN/pki/server/chain.pem
	key = $RUN/pki/server/key.pem
	registry = $RUN/registry.db
	control_socket = $RUN/ctl.sock
	metrics_listen = 127.0.0.1:$MPORT
	default_backend = local
	client_id_check = off
	relay = $relay
	log_level = warn

	[listener bench]
	type = plain
	allow_plain = yes
	listen = 127.0.0.1:$SRV_PORT

	[limits]
	# every client comes from 127.0.0.1: one source, limits off
	source_max_handshakes = 0
	source_rate = 0

	[backend local]
	address = 127.0.0.1:$MQTT_PORT
	EOF
	start_bg "ktlsgated-$relay" "$KTLSGATED" -c "$RUN/ktlsgated-$relay.conf"
	SRV_PID=$BG_PID
	wait_listen "$SRV_PID" "$SRV_PORT" "ktlsgated-$relay"
}

start_sockmap() { start_ktlsgated auto; }
start_userspace() { start_ktlsgated userspace; }

start_haproxy() {
	free_port SRV_PORT
	sed -e "s|@DIR@|$RUN|g" -e "s|@PORT@|$SRV_PORT|g" -e "s|@MQTT_PORT@|$MQTT_PORT|g" \
		"$HERE/haproxy-plain.cfg.in" >"$RUN/haproxy-plain.cfg"
	start_bg haproxy haproxy -f "$RUN/haproxy-plain.cfg" -db
	SRV_PID=$BG_PID
	wait_listen "$SRV_PID" "$SRV_PORT" haproxy
}

# Reference: no proxy, kg-bench straight to the broker (its CPU columns are the broker's).
start_direct() {
	SRV_PID=$MQ_PID
	SRV_PORT=$MQTT_PORT
}

stop_proxy() {
	[[ -n $SRV_PID && $SRV_PID != "$MQ_PID" ]] && stop_bg "$SRV_PID"
	SRV_PID=""
}

# The session mode each ktlsgated run must show rising; none for the others.
want_mode() {
	case $1 in
	sockmap) echo sockmap ;;
	userspace) echo plain ;;
	*) echo "" ;;
	esac
}

# ---- one measured run ---------------------------------------------------------------

kgb() {
	local args=(publish --plain --target "127.0.0.1:$SRV_PORT" -t "$THREADS" "$@")
	# the broker needs no credentials; ktlsgated and HAProxy pass the token through to it
	[[ $PROXY != direct ]] && args+=(--username "$TOKEN")
	"$KG_BENCH" "${args[@]}" 2>>"$LOGS/kg-bench.log"
}

# bench_run PROXY SIZE REP
bench_run() {
	local proxy=$1 size=$2 rep=$3 msgs mode pids u0 s0 u1 s1 n0 n1 h0 h1 mq0 mq1 m0="" m1="" \
		out rc=0 count errors gb name bpid ready="" i i0 i1 t0 t1 w0 w1 r0 r1
	name="$proxy/$size/#$rep"
	msgs=$MSGS_SMALL
	((size >= 4096)) && msgs=$MSGS_LARGE
	mode=$(want_mode "$proxy")
	mapfile -t pids < <(proc_tree "$SRV_PID")
	[[ -n $mode ]] && m0=$(metric "ktlsgate_sessions_started_total{mode=\"$mode\"}")
	# --gate: connect and authenticate all, say "ready", publish 1 s later; CPU is
	# sampled in between, so the figures are the data path's, not the session set-up's.
	: >"$RUN/pub.out"
	kgb --conns "$CONNS" --msgs "$msgs" --size "$size" --qos 1 --window "$WINDOW" --gate 1 \
		>"$RUN/pub.out" &
	bpid=$!
	PIDS+=("$bpid")
	for ((i = 0; i < 300; i++)); do
		ready=$(awk '/^ready/ { print $2 }' "$RUN/pub.out")
		[[ -n $ready ]] && break
		kill -0 "$bpid" 2>/dev/null || break
		sleep 0.05
	done
	# the proxy's CPU with the sessions up and no traffic: half a second of the gate
	i0=$(sched_ns "${pids[@]}")
	t0=$(date +%s%N)
	sleep 0.5
	i1=$(sched_ns "${pids[@]}")
	t1=$(date +%s%N)
	kworker_snap >"$RUN/kw0"
	read -r u0 s0 < <(cpu_ut "${pids[@]}")
	read -r mq0 _ < <(cpu_ut "$MQ_PID" | awk '{ print $1 + $2 }')
	r0=$(syscr "$MQ_PID")
	n0=$(sched_ns "${pids[@]}")
	w0=$(date +%s%N)
	h0=$(host_busy)
	wait "$bpid" || rc=$?
	forget_pid "$bpid"
	h1=$(host_busy)
	w1=$(date +%s%N)
	kworker_snap >"$RUN/kw1"
	n1=$(sched_ns "${pids[@]}")
	read -r u1 s1 < <(cpu_ut "${pids[@]}")
	read -r mq1 _ < <(cpu_ut "$MQ_PID" | awk '{ print $1 + $2 }')
	r1=$(syscr "$MQ_PID")
	[[ -n $mode ]] && m1=$(metric "ktlsgate_sessions_started_total{mode=\"$mode\"}")
	out=$(grep '^{' "$RUN/pub.out" || true)
	echo "$name $out" >>"$LOGS/kg-bench.json"
	if [[ ${ready:-} != "$CONNS" ]]; then
		fail "$name" "kg-bench said 'ready ${ready:-(nothing)}', want ready $CONNS (see $LOGS/kg-bench.log)"
		return 0
	fi
	count=$(json_get "$out" count)
	errors=$(json_get "$out" errors)
	if ((rc != 0)) || [[ -z $count || -z $errors ]] || ((errors != 0 || count != msgs)); then
		fail "$name" "kg-bench exit $rc, count '${count}' of $msgs, errors '${errors}' (see $LOGS/kg-bench.log)"
		return 0
	fi
	if [[ -n $mode ]]; then
		if [[ -z $m0 || -z $m1 ]]; then
			fail "$name mode" "no ktlsgate_sessions_started_total{mode=\"$mode\"} on the metrics endpoint"
			return 0
		fi
		if (($(calc "$m1 - $m0" 0) != CONNS)); then
			fail "$name mode" "sessions_started_total{mode=\"$mode\"} rose by $(calc "$m1 - $m0" 0), want $CONNS"
			return 0
		fi
	fi
	gb=$(calc "$count * $size / 1e9" 6)
	record "$proxy" "$size" "$rep" rate "$(json_get "$out" rate)"
	record "$proxy" "$size" "$rep" p99_ms "$(calc "$(json_get "$out" p99_us) / 1000" 2)"
	record "$proxy" "$size" "$rep" user_s_gb "$(calc "($u1 - $u0) / $CLK_TCK / $gb" 4)"
	record "$proxy" "$size" "$rep" sys_s_gb "$(calc "($s1 - $s0) / $CLK_TCK / $gb" 4)"
	record "$proxy" "$size" "$rep" cpu_ns_s_gb "$(calc "($n1 - $n0) / 1e9 / $gb" 4)"
	record "$proxy" "$size" "$rep" host_s_gb "$(calc "($h1 - $h0) / $CLK_TCK / $gb" 3)"
	record "$proxy" "$size" "$rep" mq_s_gb "$(calc "($mq1 - $mq0) / $CLK_TCK / $gb" 3)"
	# mosquitto read()s its sockets; kg-sink's recv() is no read-type call for syscr
	[[ $BACKEND == mosquitto && -n $r0 && -n $r1 ]] && record "$proxy" "$size" "$rep" be_reads_msg "$(calc "($r1 - $r0) / $count" 2)"
	record "$proxy" "$size" "$rep" kw_s_gb "$(calc "$(kworker_delta "$RUN/kw0" "$RUN/kw1") / $CLK_TCK / $gb" 3)"
	record "$proxy" "$size" "$rep" idle_ms_s "$(calc "($i1 - $i0) / 1e6 / (($t1 - $t0) / 1e9)" 3)"
	# what the traffic cost: the window's CPU less the idle rate over the window
	record "$proxy" "$size" "$rep" busy_s_gb \
		"$(calc "(($n1 - $n0) - ($i1 - $i0) / ($t1 - $t0) * ($w1 - $w0)) / 1e9 / $gb" 4)"
	record "$proxy" "$size" "$rep" user_ticks "$((u1 - u0))"
	record "$proxy" "$size" "$rep" gb "$gb"
	pass "$name${mode:+ (mode $mode x$CONNS)}: $(json_get "$out" rate) msg/s, p99 $(json_get "$out" p99_us) us, user $((u1 - u0)) sys $((s1 - s0)) ticks over $gb GB"
}

# A short run that must succeed before anything is measured (path, credentials, relay).
warm_up() {
	local out rc=0
	out=$(kgb --conns 2 --msgs 200 --size 256 --qos 1 --window 4) || rc=$?
	if ((rc != 0)) || [[ $(json_get "$out" errors) != 0 ]]; then
		fail "$1 warm-up" "kg-bench exit $rc: $out (see $LOGS/kg-bench.log, $LOGS/*.log)"
		return 1
	fi
}

# ---- report ------------------------------------------------------------------------

median() {
	awk -F'\t' -v p="$1" -v z="$2" -v m="$3" '$1 == p && $2 == z && $4 == m { print $5 }' "$RAW" |
		sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) exit; if (NR % 2) print v[(NR + 1) / 2];
			else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
runs() { awk -F'\t' -v p="$1" -v z="$2" '$1 == p && $2 == z && $4 == "rate"' "$RAW" | wc -l; }
fmt() { [[ -n ${1:-} ]] && printf '%s' "$1" || printf 'n/a'; }

# ratio A B: a / b, n/a when either is missing or b is 0.
ratio() {
	if [[ -n $1 && -n $2 ]] && awk "BEGIN { exit !($2 > 0) }"; then
		calc "$1 / $2" 4
	else
		printf 'n/a'
	fi
}

# met VALUE 'OP BOUND': yes / no / n/a.
met() {
	if [[ $1 == n/a ]]; then
		echo n/a
	elif awk "BEGIN { exit !($1 $2) }"; then
		echo yes
	else
		echo no
	fi
}

label() {
	case $1 in
	sockmap) echo "ktlsgated plain, relay = auto (sockmap)" ;;
	userspace) echo "ktlsgated plain, relay = userspace (plain)" ;;
	haproxy) echo "HAProxy 2.6 mode tcp" ;;
	direct) echo "none: kg-bench -> $BACKEND (reference)" ;;
	esac
}

report() {
	local p z r_user r_rate sm us hp
	{
		echo "# ktlsgate plain-session benchmark (make bench-plain, backend: $BACKEND)"
		echo
		echo "- stamp: ktlsgate $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?'), $(date -u '+%Y-%m-%d %H:%M UTC'), host $(uname -r), $(nproc) CPUs ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo))"
		echo "- versions: $(haproxy -v 2>/dev/null | head -1 | awk '{ print "HAProxy " $3 }'), $(mosquitto -h 2>/dev/null | awk 'NR == 1 { print "mosquitto " $3 }')"
		echo "- medians of $REPEAT run(s) (proxies interleaved per repeat); kg-bench --plain, $THREADS thread(s), $CONNS connections, QoS 1, $WINDOW in flight per connection; $MSGS_SMALL messages per run below 4 KiB, $MSGS_LARGE from 4 KiB; ktlsgated $WORKERS workers, HAProxy nbthread $WORKERS; everything on 127.0.0.1, client, proxy and broker share the CPUs"
		echo
		echo "| proxy | payload (B) | runs | msgs/s | PUBLISH->PUBACK p99 (ms) | proxy user CPU (s/GB) | proxy system CPU (s/GB) | proxy CPU, schedstat (s/GB) | $BACKEND CPU (s/GB) | $BACKEND reads/msg | kworker CPU (s/GB) | whole host CPU (s/GB) | proxy CPU idle, $CONNS sessions (ms/s) |"
		echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
		for z in $SIZES; do
			for p in $PROXIES; do
				printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$(label "$p")" "$z" \
					"$(runs "$p" "$z")" "$(fmt "$(median "$p" "$z" rate)")" \
					"$(fmt "$(median "$p" "$z" p99_ms)")" "$(fmt "$(median "$p" "$z" user_s_gb)")" \
					"$(fmt "$(median "$p" "$z" sys_s_gb)")" "$(fmt "$(median "$p" "$z" cpu_ns_s_gb)")" \
					"$(fmt "$(median "$p" "$z" mq_s_gb)")" "$(fmt "$(median "$p" "$z" be_reads_msg)")" \
					"$(fmt "$(median "$p" "$z" kw_s_gb)")" \
					"$(fmt "$(median "$p" "$z" host_s_gb)")" "$(fmt "$(median "$p" "$z" idle_ms_s)")"
			done
		done
		echo
		echo "| ratio (target) | payload (B) | value | met |"
		echo "|---|---:|---:|---|"
		for z in $SIZES; do
			sm=$(median sockmap "$z" user_s_gb)
			us=$(median userspace "$z" user_s_gb)
			r_user=$(ratio "$sm" "$us")
			printf '| ktlsgated user CPU/GB, sockmap / userspace (< 0.02) | %s | %s | %s |\n' "$z" "$r_user" \
				"$(met "$r_user" '< 0.02')"
			# ticks are coarse: all of sockmap ktlsgated's CPU (ns) bounds its user part
			r_user=$(ratio "$(median sockmap "$z" cpu_ns_s_gb)" "$us")
			printf '| upper bound: ktlsgated all CPU/GB (schedstat), sockmap / userspace user CPU/GB (< 0.02) | %s | %s | %s |\n' \
				"$z" "$r_user" "$(met "$r_user" '< 0.02')"
			r_user=$(ratio "$(median sockmap "$z" busy_s_gb)" "$us")
			printf '| the same above the idle rate: (all CPU - idle ms/s x window)/GB, sockmap / userspace user CPU/GB | %s | %s | %s |\n' \
				"$z" "$r_user" "$(met "$r_user" '< 0.02')"
		done
		for z in $SIZES; do
			sm=$(median sockmap "$z" rate)
			hp=$(median haproxy "$z" rate)
			r_rate=$(ratio "$sm" "$hp")
			if ((z == 65536)); then
				printf '| msgs/s, ktlsgated sockmap / HAProxy (>= 1.5 at 64 KiB) | %s | %s | %s |\n' "$z" "$r_rate" \
					"$(met "$r_rate" '>= 1.5')"
			else
				printf '| msgs/s, ktlsgated sockmap / HAProxy (no target) | %s | %s | |\n' "$z" "$r_rate"
			fi
		done
		for z in $SIZES; do
			printf '| proxy CPU (schedstat)/GB, ktlsgated sockmap / HAProxy (no target) | %s | %s | |\n' "$z" \
				"$(ratio "$(median sockmap "$z" cpu_ns_s_gb)" "$(median haproxy "$z" cpu_ns_s_gb)")"
		done
		echo
		echo "GB = 10^9 bytes of PUBLISH payload acknowledged (headers not counted). Proxy CPU:"
		echo "utime and stime from /proc/PID/stat of the proxy's processes (all threads), in"
		echo "$CLK_TCK Hz ticks: one tick over a run's GB is its resolution (the 'user_ticks' rows of"
		echo "raw.tsv give the raw counts). The schedstat column is the same CPU to the"
		echo "nanosecond, user and system together. Softirq work (TCP, and the sockmap verdict"
		echo "program that redirects each skb) is charged to whichever task is on the CPU, often"
		echo "kg-bench or mosquitto, so the whole-host column (busy time from /proc/stat, client"
		echo "and broker included) is the one that cannot hide a cost; the kworker column is the"
		echo "part of it the kernel's sockmap backlog work (the egress redirect) shows up in."
		echo "The backend's reads per message are its read-type system calls (syscr in"
		echo "/proc/PID/io) over the window divided by the messages acknowledged: how finely the"
		echo "proxy's writes arrive at the broker."
		echo "The idle column is the proxy's on-CPU time per second over half a second with the"
		echo "sessions up and no traffic (in the gate, before the CPU window opens); the CPU"
		echo "window holds the other half second of the gate. 'Above the idle rate' takes that"
		echo "rate times the window's length off the window's CPU: what the traffic itself cost"
		echo "(noise can make it negative; shown as measured); the window also holds the close of"
		echo "the sessions, a per-session cost spread over the run's GB. A run in which kg-bench"
		echo "counted an error, or ktlsgated's session mode counter did not rise by exactly the"
		echo "connections opened, is not reported (its FAIL line says why)."
	} >"$RESULTS"
	cat "$RESULTS"
}

# ---- main ------------------------------------------------------------------------------

main() {
	local rep p z
	[[ -x $KG_BENCH ]] || die setup "$KG_BENCH is missing: make $BUILD/kg-bench"
	for p in mosquitto haproxy curl ss pgrep awk; do
		command -v "$p" >/dev/null || die setup "$p is not installed"
	done
	case $BACKEND in
	mosquitto) ;;
	sink) [[ -x $KG_SINK ]] || die setup "$KG_SINK is missing: make $BUILD/kg-sink" ;;
	*) die setup "PLAIN_BACKEND must be mosquitto or sink, not '$BACKEND'" ;;
	esac
	for p in $PROXIES; do
		case $p in
		sockmap | userspace)
			[[ -x $KTLSGATED && -x $KTLSGATE ]] || die setup "$KTLSGATED or $KTLSGATE is not built"
			;;
		haproxy | direct) ;;
		*) die setup "unknown proxy '$p' in PLAIN_PROXIES" ;;
		esac
	done
	ulimit -n "$(ulimit -Hn)"
	mkdir -p "$OUT" "$LOGS"
	rm -rf "$RUN"
	mkdir -p "$RUN"
	rm -f "$LOGS"/*.log "$LOGS"/kg-bench.json
	: >"$RAW"
	start_backend
	[[ " $PROXIES " == *" sockmap "* || " $PROXIES " == *" userspace "* ]] && make_registry
	for ((rep = 1; rep <= REPEAT; rep++)); do
		for p in $PROXIES; do
			say "== repeat $rep: $(label "$p") =="
			PROXY=$p
			if ! "start_$p"; then
				fail "$p/#$rep start" "did not listen (see $LOGS)"
				stop_proxy
				continue
			fi
			if warm_up "$p/#$rep"; then
				for z in $SIZES; do
					bench_run "$p" "$z" "$rep"
				done
			fi
			stop_proxy
		done
	done
	report
	say "results in $RESULTS (raw numbers: $RAW, logs: $LOGS)"
}

PROXY=""
main "$@"
