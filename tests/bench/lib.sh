# shellcheck shell=bash
# SPDX-License-Identifier: BSD-2-Clause
# tests/bench/lib.sh - what the bench scripts (run.sh, plain.sh, pg.sh, tpm.sh; revoke-ca.sh
# only the first) share: their paths (bench_paths), free ports (and port pairs), background processes with their
# logs in $LOGS, the process tree of a server, the CPU ticks of processes, the plain broker's
# config, and two small text helpers. It only defines functions: a script sources it first.
# The caller sets `set -u`, LOGS, PIDS=() and USED_PORTS=" ", and defines die MESSAGE... (its
# own wording: run.sh stops with it, plain.sh counts a FAIL); bench_paths needs none of them.

# bench_paths NAME [OUT]: the paths a bench resolves before anything else; sets
#   ROOT       the top of the tree
#   BUILD      $BUILD, else $ROOT/build; made absolute against ROOT (make runs from the top,
#              and the configs written under it name paths relative to themselves)
#   OUT        the output directory: OUT when given and not empty, else $BENCH_OUT, else
#              $BUILD/NAME; made absolute against $PWD
#   KG_BENCH, KTLSGATE, KTLSGATED  the binaries: the environment's, else $BUILD/kg-bench,
#              $BUILD/ktlsgate, $BUILD/ktlsgated
# shellcheck disable=SC2034  # set for the caller
bench_paths() {
	ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
	BUILD=${BUILD:-$ROOT/build}
	[[ $BUILD == /* ]] || BUILD=$ROOT/$BUILD
	OUT=${2:-${BENCH_OUT:-$BUILD/$1}}
	[[ $OUT == /* ]] || OUT=$PWD/$OUT
	KG_BENCH=${KG_BENCH:-$BUILD/kg-bench}
	KTLSGATE=${KTLSGATE:-$BUILD/ktlsgate}
	KTLSGATED=${KTLSGATED:-$BUILD/ktlsgated}
}

# free_port VAR: a TCP port nobody uses and we have not handed out yet, into VAR
# (not echoed: USED_PORTS must be updated in this shell, not in a $(...) subshell).
free_port() {
	local p
	for _ in $(seq 200); do
		p=$((20000 + RANDOM % 30000))
		[[ $USED_PORTS == *" $p "* ]] && continue
		if [[ -z $(ss -Htan "( sport = :$p or dport = :$p )" 2>/dev/null) ]]; then
			USED_PORTS+="$p "
			printf -v "$1" '%s' "$p"
			return 0
		fi
	done
	die "no free port found"
}

# start_bg LOGNAME CMD...: run in the background, remember the pid in BG_PID.
start_bg() {
	local log=$LOGS/$1.log
	shift
	"$@" >>"$log" 2>&1 &
	BG_PID=$!
	PIDS+=("$BG_PID")
}

forget_pid() {
	local p keep=()
	for p in "${PIDS[@]}"; do
		[[ $p == "$1" ]] || keep+=("$p")
	done
	PIDS=("${keep[@]+"${keep[@]}"}")
}

stop_bg() {
	local pid=$1
	kill -TERM "$pid" 2>/dev/null || true
	for _ in $(seq 50); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	forget_pid "$pid"
}

# wait_listen PID PORT LOGNAME: 0 once PORT accepts; 1 (the log's tail on stderr) if PID
# died or 15 s passed. The caller decides what that means.
wait_listen() {
	for _ in $(seq 150); do
		if ! kill -0 "$1" 2>/dev/null; then
			tail -20 "$LOGS/$3.log" >&2 || true
			return 1
		fi
		[[ -n $(ss -Hltn "sport = :$2" 2>/dev/null) ]] && return 0
		sleep 0.1
	done
	return 1
}

# The pid and all its descendants (nginx: master + workers).
proc_tree() {
	local c
	echo "$1"
	for c in $(pgrep -P "$1" || true); do
		proc_tree "$c"
	done
}

# plain_broker_conf PORT: the config of the plain-TCP mosquitto the benches put behind
# the proxies (no limits on in-flight or queued messages, Nagle off, errors only).
plain_broker_conf() {
	cat <<-EOF
	per_listener_settings false
	listener $1 127.0.0.1
	allow_anonymous true
	persistence false
	max_inflight_messages 0
	max_queued_messages 0
	set_tcp_nodelay true
	connection_messages false
	log_dest stderr
	log_type error
	log_type warning
	user root
	EOF
}

# utime + stime (clock ticks) summed over the given pids; /proc/PID/stat counts all threads.
cpu_ticks() {
	local p s=0 t
	for p in "$@"; do
		t=$(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$p/stat" 2>/dev/null) || continue
		s=$((s + t))
	done
	echo "$s"
}

json_get() { sed -n "s/.*\"$2\":\([^,}]*\).*/\1/p" <<<"$1" | tr -d '"'; }
calc() { awk "BEGIN { printf \"%.${2:-1}f\", $1 }"; }

# free_port_pair VAR: a free port P whose P+1 is free too (swtpm and its TCTI use both:
# commands on P, control on P+1), into VAR; both are marked used.
free_port_pair() {
	local q  # not p: free_port keeps its own local p
	for _ in $(seq 100); do
		free_port q
		((q < 65535)) || continue
		[[ $USED_PORTS == *" $((q + 1)) "* ]] && continue
		if [[ -z $(ss -Htan "( sport = :$((q + 1)) or dport = :$((q + 1)) )" 2>/dev/null) ]]; then
			USED_PORTS+="$((q + 1)) "
			printf -v "$1" '%s' "$q"
			return 0
		fi
	done
	die "no free port pair found"
}
