#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
#
# run.sh - `make bench`: ktlsgated side by side with HAProxy 2.6 and nginx 1.22 as mTLS
# terminators in front of one mosquitto, plus mosquitto's own TLS listener for reference.
# Builds (or reuses) a test PKI and a registry, then for each terminator measures with
# build/kg-bench: server CPU per full TLS 1.3 mTLS handshake (+ MQTT CONNECT/CONNACK),
# QoS 1 publish rate and server CPU per message, and RSS per idle connection. Each
# measurement runs BENCH_REPEAT times and the medians go to build/bench/results.md.
# Everything listens on 127.0.0.1 only; every process started here is stopped on exit.
# Knobs (environment): see tests/bench/README.md; BENCH_QUICK=1 is a ~2 minute smoke run.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# bench_paths, free_port, start_bg, stop_bg, wait_listen, proc_tree, json_get, calc
# shellcheck source=tests/bench/lib.sh
. "$HERE/lib.sh"
bench_paths bench   # ROOT, BUILD, OUT, KG_BENCH, KTLSGATE, KTLSGATED
# A/B: a second ktlsgated binary (e.g. a build of main) measured side by side with
# KTLSGATED and nginx, handshakes only, interleaved per repeat (main_ab below).
KTLSGATED_B=${BENCH_GATED_B:-}

if [[ ${BENCH_QUICK:-0} == 1 ]]; then
	: "${BENCH_REPEAT:=1}" "${HS_COUNT:=500}" "${PUB_MSGS:=20000}" "${IDLE_CONNS:=1000}"
	: "${IDLE_HOLD:=2}" "${BENCH_DEVICES:=1000}"
fi
REPEAT=${BENCH_REPEAT:-3}
HS_COUNT=${HS_COUNT:-3000}         # full handshakes per run
HS_CONC=${HS_CONC:-50}             # handshakes in flight
PUB_CONNS=${PUB_CONNS:-20}
PUB_MSGS=${PUB_MSGS:-100000}       # QoS 1 PUBACKs per run, over all connections
PUB_SIZE=${PUB_SIZE:-256}
PUB_WINDOW=${PUB_WINDOW:-16}       # PUBLISHes in flight per connection
IDLE_CONNS=${IDLE_CONNS:-5000}
IDLE_HOLD=${IDLE_HOLD:-5}          # seconds held after the RSS sample
IDLE_CONC=${IDLE_CONC:-100}        # handshakes in flight while opening them
THREADS=${BENCH_THREADS:-1}        # kg-bench threads (the client shares the cores)
TERMINATORS=${BENCH_TERMINATORS:-"ktlsgated haproxy nginx mosquitto"}
N_DEVICES=${BENCH_DEVICES:-1000}
# idle needs one device per connection: one client id per live session
((N_DEVICES < IDLE_CONNS)) && N_DEVICES=$IDLE_CONNS

PKI=$OUT/pki
RUN=$OUT/run
LOGS=$OUT/logs
RAW=$OUT/raw.tsv
RESULTS=$OUT/results.md
CLK_TCK=$(getconf CLK_TCK)
CA_FILE=$RUN/clients-ca.pem        # root + factory: what the terminators trust for clients

declare -a PIDS=()                 # every background process we started
USED_PORTS=" "
TOTAL_ERRORS=0
SRV_PID=""
SRV_PORT=""

say() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { say "error: $*"; exit 1; }

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
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- helpers -----------------------------------------------------------------

rss_kb() {
	local p s=0 t
	for p in "$@"; do
		t=$(awk '/^VmRSS:/ { print $2 }' "/proc/$p/status" 2>/dev/null) || continue
		s=$((s + ${t:-0}))
	done
	echo "$s"
}

slab_kb() { awk '/^Slab:/ { print $2 }' /proc/meminfo; }

# json_get JSON KEY: the value of a flat key in kg-bench's one-line JSON.


record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$RAW"; }

# ---- PKI ---------------------------------------------------------------------

OSSL_CNF=$RUN/openssl.cnf

write_openssl_cnf() {
	cat >"$OSSL_CNF" <<-'EOF'
	[req]
	distinguished_name = dn
	[dn]
	[v3_root]
	basicConstraints = critical,CA:TRUE
	keyUsage = critical,keyCertSign,cRLSign
	subjectKeyIdentifier = hash
	[v3_int]
	basicConstraints = critical,CA:TRUE,pathlen:0
	keyUsage = critical,keyCertSign,cRLSign
	subjectKeyIdentifier = hash
	authorityKeyIdentifier = keyid
	[v3_dev]
	basicConstraints = critical,CA:FALSE
	keyUsage = critical,digitalSignature
	extendedKeyUsage = clientAuth
	subjectKeyIdentifier = hash
	authorityKeyIdentifier = keyid
	[v3_srv]
	basicConstraints = critical,CA:FALSE
	keyUsage = critical,digitalSignature
	extendedKeyUsage = serverAuth
	subjectKeyIdentifier = hash
	authorityKeyIdentifier = keyid
	subjectAltName = DNS:localhost,IP:127.0.0.1,IP:::1
	EOF
}

# Fallback while build/ktlsgate does not exist: the same layout with the openssl CLI.
# ossl_cert KIND CN OUTDIR [ISSUERDIR]
# Few processes per certificate: 5000 devices are made this way.
ossl_cert() {
	local kind=$1 cn=$2 out=$3 ca=${4:-} days=365
	local args=(-config "$OSSL_CNF" -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes
		-keyout "$out/key.pem" -out "$out/cert.pem" -subj "/CN=$cn" -extensions "v3_$kind")
	[[ $kind == root || $kind == int ]] && days=3650
	[[ -n $ca ]] && args+=(-CA "$ca/cert.pem" -CAkey "$ca/key.pem")
	mkdir -p "$out"
	(umask 077 && openssl req "${args[@]}" -days "$days" 2>/dev/null) || return 1
	# chain.pem: the cert and its issuers up to, not including, the root
	if [[ $kind == dev ]]; then
		cat "$out/cert.pem" "$ca/chain.pem" >"$out/chain.pem"
	else
		cp "$out/cert.pem" "$out/chain.pem"
	fi
}

kg_pki() { "$KTLSGATE" pki "$@" >/dev/null; }

# gen_device I: one device, by whichever generator this run uses (called via xargs).
gen_device() {
	local name dir
	printf -v name 'dev-%05d' "$1"
	dir=$PKI/devices/$name
	[[ -f $dir/chain.pem ]] && return 0
	if [[ $PKI_GEN == ktlsgate ]]; then
		kg_pki device --cn "$name" --ca "$PKI/factory" --out "$dir"
	else
		ossl_cert dev "$name" "$dir" "$PKI/factory"
	fi
}

make_pki() {
	local stamp=$PKI/.stamp have_gen="" have_n=0 t0
	PKI_GEN=openssl
	[[ -x $KTLSGATE ]] && PKI_GEN=ktlsgate
	if [[ -f $stamp ]]; then
		read -r have_gen have_n <"$stamp" || true
	fi
	# Reuse a PKI made by the same generator, big enough and valid for another day.
	if [[ $have_gen == "$PKI_GEN" ]] && ((have_n >= N_DEVICES)) &&
		openssl x509 -checkend 86400 -noout -in "$PKI/devices/dev-00000/cert.pem" >/dev/null 2>&1; then
		say "PKI: reusing $PKI ($have_n devices, made by $have_gen)"
		return 0
	fi
	t0=$(date +%s)
	if [[ $have_gen != "$PKI_GEN" ]] || ((have_n == 0)); then
		rm -rf "$PKI"
	fi
	mkdir -p "$PKI/devices"
	say "PKI: root, factory intermediate, server, $N_DEVICES devices (generator: $PKI_GEN)"
	if [[ $PKI_GEN == ktlsgate ]]; then
		if [[ ! -f $PKI/root/chain.pem ]]; then
			kg_pki root --cn "bench-root" --out "$PKI/root"
			kg_pki intermediate --cn "factory" --ca "$PKI/root" --out "$PKI/factory"
			kg_pki server --cn "localhost" --ca "$PKI/root" --out "$PKI/server"
		fi
	elif [[ ! -f $PKI/root/chain.pem ]]; then
		ossl_cert root "bench-root" "$PKI/root"
		ossl_cert int "factory" "$PKI/factory" "$PKI/root"
		ossl_cert srv "localhost" "$PKI/server" "$PKI/root"
	fi
	export PKI PKI_GEN KTLSGATE OSSL_CNF
	export -f gen_device ossl_cert kg_pki
	# shellcheck disable=SC2016 # expanded by the inner bash
	seq 0 $((N_DEVICES - 1)) |
		xargs -n 100 -P "$(nproc)" bash -c 'for i; do gen_device "$i" || exit 255; done' _ ||
		die "device certificate generation failed"
	echo "$PKI_GEN $N_DEVICES" >"$stamp"
	say "PKI: done in $(($(date +%s) - t0)) s"
}

# ---- the backend broker --------------------------------------------------------

MQTT_PORT=""
start_backend() {
	free_port MQTT_PORT
	# the shared plain-TCP backend behind every terminator
	plain_broker_conf "$MQTT_PORT" >"$RUN/mosquitto-backend.conf"
	start_bg mosquitto-backend mosquitto -c "$RUN/mosquitto-backend.conf"
	wait_listen "$BG_PID" "$MQTT_PORT" mosquitto-backend || die "mosquitto-backend is not listening on $MQTT_PORT (exited, or 15 s passed)"
	say "backend mosquitto on 127.0.0.1:$MQTT_PORT (pid $BG_PID)"
}

# ---- terminators -------------------------------------------------------------
# start_TERM sets SRV_PID and SRV_PORT; the server must verify client certificates
# against root + factory and forward plain TCP to the backend.

subst() {
	sed -e "s|@DIR@|$2|g" -e "s|@PORT@|$SRV_PORT|g" -e "s|@MQTT_PORT@|$MQTT_PORT|g" \
		-e "s|@SERVER_PEM@|$RUN/server-full.pem|g" -e "s|@SERVER_CHAIN@|$PKI/server/chain.pem|g" \
		-e "s|@SERVER_KEY@|$PKI/server/key.pem|g" -e "s|@CA_FILE@|$CA_FILE|g" "$1"
}

# start_ktlsgated [b]: with "b", KTLSGATED_B on its own copy of the registry.
start_ktlsgated() {
	local mport sfx=${1:+-$1} bin=$KTLSGATED
	[[ ${1:-} == b ]] && bin=$KTLSGATED_B
	free_port SRV_PORT
	free_port mport
	rm -f "$RUN/ctl$sfx.sock"
	cat >"$RUN/ktlsgated$sfx.conf" <<-EOF
	[daemon]
	listen = 127.0.0.1:$SRV_PORT
	workers = 2
	cert = $PKI/server/chain.pem
	key = $PKI/server/key.pem
	registry = $RUN/registry$sfx.db
	control_socket = $RUN/ctl$sfx.sock
	metrics_listen = 127.0.0.1:$mport
	default_backend = local

	[limits]
	# every benchmark client comes from 127.0.0.1: one source, limits off
	source_max_handshakes = 0
	source_rate = 0

	[backend local]
	address = 127.0.0.1:$MQTT_PORT
	EOF
	start_bg "ktlsgated$sfx" "$bin" -c "$RUN/ktlsgated$sfx.conf"
	SRV_PID=$BG_PID
	wait_listen "$SRV_PID" "$SRV_PORT" "ktlsgated$sfx" || die "ktlsgated$sfx is not listening on $SRV_PORT (exited, or 15 s passed)"
}

start_haproxy() {
	free_port SRV_PORT
	subst "$HERE/haproxy.cfg.in" "$RUN" >"$RUN/haproxy.cfg"
	start_bg haproxy haproxy -f "$RUN/haproxy.cfg" -db
	SRV_PID=$BG_PID
	wait_listen "$SRV_PID" "$SRV_PORT" haproxy || die "haproxy is not listening on $SRV_PORT (exited, or 15 s passed)"
}

start_nginx() {
	free_port SRV_PORT
	mkdir -p "$RUN/nginx"
	subst "$HERE/nginx.conf.in" "$RUN/nginx" >"$RUN/nginx/nginx.conf"
	start_bg nginx nginx -p "$RUN/nginx/" -e "$RUN/nginx/nginx-error.log" \
		-c "$RUN/nginx/nginx.conf" -g 'daemon off;'
	SRV_PID=$BG_PID
	wait_listen "$SRV_PID" "$SRV_PORT" nginx || die "nginx is not listening on $SRV_PORT (exited, or 15 s passed)"
}

# Reference: mosquitto terminating mTLS itself, no proxy in front.
start_mosquitto() {
	free_port SRV_PORT
	cat >"$RUN/mosquitto-tls.conf" <<-EOF
	per_listener_settings false
	listener $SRV_PORT 127.0.0.1
	cafile $CA_FILE
	certfile $PKI/server/chain.pem
	keyfile $PKI/server/key.pem
	require_certificate true
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
	start_bg mosquitto-tls mosquitto -c "$RUN/mosquitto-tls.conf"
	SRV_PID=$BG_PID
	wait_listen "$SRV_PID" "$SRV_PORT" mosquitto-tls || die "mosquitto-tls is not listening on $SRV_PORT (exited, or 15 s passed)"
}

stop_server() {
	[[ -n $SRV_PID ]] && stop_bg "$SRV_PID"
	SRV_PID=""
}

# ---- the registry for ktlsgated ------------------------------------------------

make_registry() {
	local reg=$RUN/registry.db out code i
	rm -f "$reg"
	out=$("$KTLSGATE" -r "$reg" ca add "$PKI/root/cert.pem" --name root) ||
		die "ktlsgate ca add failed: $out"
	code=$(sed -n 's/^challenge: *//p' <<<"$out" | head -1)
	[[ -n $code ]] || die "ktlsgate ca add printed no 'challenge:' line: $out"
	"$KTLSGATE" pki verification-cert --ca "$PKI/root" --challenge "$code" --out "$RUN/verify.pem" >/dev/null
	"$KTLSGATE" -r "$reg" ca verify root "$RUN/verify.pem" >/dev/null
	if ! "$KTLSGATE" -r "$reg" ca set root --auto-enroll on >/dev/null 2>>"$LOGS/registry.log"; then
		say "registry: auto-enroll refused, adding $N_DEVICES devices one by one"
		for ((i = 0; i < N_DEVICES; i++)); do
			"$KTLSGATE" -r "$reg" device add "$(printf 'dev-%05d' "$i")" >/dev/null
		done
	fi
	say "registry: root CA verified and enrolled ($reg)"
}

# ---- measurements --------------------------------------------------------------

kgb() {
	local mode=$1
	shift
	"$KG_BENCH" "$mode" --target "127.0.0.1:$SRV_PORT" --ca "$PKI/root/cert.pem" \
		--devices "$PKI/devices" -t "$THREADS" "$@" 2>>"$LOGS/kg-bench.log"
}

# Check the path end to end and let lazy initialisation happen before anything is sampled.
warm_up() {
	local out
	out=$(kgb handshake --count 50 --concurrency 5) || {
		say "$1: warm-up failed: $out (see $LOGS/kg-bench.log, $LOGS/$1.log)"
		return 1
	}
}

# note_errors TERM WHAT JSON RC: count and show errors, never hide them.
note_errors() {
	local e
	e=$(json_get "$3" errors)
	[[ -z $e ]] && e=1   # no JSON at all: kg-bench itself failed
	if ((e > 0)) || (($4 != 0)); then
		((e > 0)) || e=1
		TOTAL_ERRORS=$((TOTAL_ERRORS + e))
		say "$1 $2: $e error(s), exit $4 (see $LOGS/kg-bench.log)"
	fi
	echo "$e"
}

bench_handshake() {
	local term=$1 rep=$2 pids c0 c1 out rc=0 n e
	mapfile -t pids < <(proc_tree "$SRV_PID")
	c0=$(cpu_ticks "${pids[@]}")
	out=$(kgb handshake --count "$HS_COUNT" --concurrency "$HS_CONC") || rc=$?
	c1=$(cpu_ticks "${pids[@]}")
	echo "$term handshake $out" >>"$LOGS/kg-bench.json"
	e=$(note_errors "$term" handshake "$out" "$rc")
	record "$term" hs_errors "$rep" "$e"
	n=$(json_get "$out" count)
	((${n:-0} > 0)) || return 0
	record "$term" hs_rate "$rep" "$(json_get "$out" rate)"
	record "$term" hs_cpu_us "$rep" "$(calc "($c1 - $c0) * 1000000 / $CLK_TCK / $n")"
	record "$term" hs_p50_ms "$rep" "$(calc "$(json_get "$out" p50_us) / 1000" 2)"
	record "$term" hs_p99_ms "$rep" "$(calc "$(json_get "$out" p99_us) / 1000" 2)"
	say "$term handshake #$rep: $(json_get "$out" rate)/s, server CPU $(calc "($c1 - $c0) * 1000000 / $CLK_TCK / $n") us each"
}

bench_publish() {
	local term=$1 rep=$2 pids c0 c1 out rc=0 n e
	mapfile -t pids < <(proc_tree "$SRV_PID")
	c0=$(cpu_ticks "${pids[@]}")
	out=$(kgb publish --conns "$PUB_CONNS" --msgs "$PUB_MSGS" --size "$PUB_SIZE" --qos 1 \
		--window "$PUB_WINDOW") || rc=$?
	c1=$(cpu_ticks "${pids[@]}")
	echo "$term publish $out" >>"$LOGS/kg-bench.json"
	e=$(note_errors "$term" publish "$out" "$rc")
	record "$term" pub_errors "$rep" "$e"
	n=$(json_get "$out" count)
	((${n:-0} > 0)) || return 0
	record "$term" pub_rate "$rep" "$(json_get "$out" rate)"
	record "$term" pub_cpu_us "$rep" "$(calc "($c1 - $c0) * 1000000 / $CLK_TCK / $n" 2)"
	record "$term" pub_p50_us "$rep" "$(json_get "$out" p50_us)"
	record "$term" pub_p99_us "$rep" "$(json_get "$out" p99_us)"
	say "$term publish #$rep: $(json_get "$out" rate) msg/s, server CPU $(calc "($c1 - $c0) * 1000000 / $CLK_TCK / $n" 2) us each"
}

bench_idle() {
	local term=$1 rep=$2 pids r0 r1 s0 s1 bpid ready="" out rc=0 e limit i
	sleep 1
	mapfile -t pids < <(proc_tree "$SRV_PID")
	r0=$(rss_kb "${pids[@]}")
	s0=$(slab_kb)
	: >"$RUN/idle.out"
	kgb idle --conns "$IDLE_CONNS" --hold "$IDLE_HOLD" --concurrency "$IDLE_CONC" >"$RUN/idle.out" &
	bpid=$!
	PIDS+=("$bpid")
	limit=$((300 + IDLE_CONNS / 10))    # tenths of a second
	for ((i = 0; i < limit; i++)); do
		ready=$(awk '/^ready/ { print $2 }' "$RUN/idle.out")
		[[ -n $ready ]] && break
		kill -0 "$bpid" 2>/dev/null || break
		sleep 0.1
	done
	if [[ -n $ready ]]; then
		sleep 1    # let the last CONNECTs reach the backend
		mapfile -t pids < <(proc_tree "$SRV_PID")
		r1=$(rss_kb "${pids[@]}")
		s1=$(slab_kb)
	fi
	wait "$bpid" || rc=$?
	forget_pid "$bpid"
	out=$(grep '^{' "$RUN/idle.out" || true)
	echo "$term idle $out" >>"$LOGS/kg-bench.json"
	e=$(note_errors "$term" idle "$out" "$rc")
	record "$term" idle_errors "$rep" "$e"
	if [[ -z $ready || ${ready:-0} -eq 0 ]]; then
		say "$term idle #$rep: never ready"
		return 0
	fi
	((ready == IDLE_CONNS)) || say "$term idle #$rep: only $ready of $IDLE_CONNS connected"
	record "$term" idle_kib "$rep" "$(calc "($r1 - $r0) / $ready" 2)"
	record "$term" idle_slab_kib "$rep" "$(calc "($s1 - $s0) / $ready" 2)"
	say "$term idle #$rep: $ready conns, RSS $r0 -> $r1 kB: $(calc "($r1 - $r0) / $ready" 2) KiB/conn"
}

# Auto-enroll writes each device's registry row on its first connection: do that for
# every device once, before anything is measured, so no run pays for enrollment.
enroll_all() {
	local out
	say "ktlsgated: enrolling $N_DEVICES devices (one handshake each)"
	out=$(kgb handshake --count "$N_DEVICES" --concurrency 20) || {
		say "ktlsgated: enrollment pass failed: $out (see $LOGS/kg-bench.log)"
		return 1
	}
}

run_terminator() {
	local term=$1 rep ok=1
	say "== $term: handshakes and publishing =="
	"start_$term"
	if [[ $term == ktlsgated ]]; then
		enroll_all || ok=0
	fi
	if ((ok)) && warm_up "$term"; then
		for ((rep = 1; rep <= REPEAT; rep++)); do bench_handshake "$term" "$rep"; done
		for ((rep = 1; rep <= REPEAT; rep++)); do bench_publish "$term" "$rep"; done
	else
		TOTAL_ERRORS=$((TOTAL_ERRORS + 1))
		record "$term" hs_errors 0 1
	fi
	stop_server
	say "== $term: idle connections (a fresh server per run) =="
	for ((rep = 1; rep <= REPEAT; rep++)); do
		"start_$term"
		if warm_up "$term"; then
			bench_idle "$term" "$rep"
		else
			TOTAL_ERRORS=$((TOTAL_ERRORS + 1))
			record "$term" idle_errors "$rep" 1
		fi
		stop_server
	done
}

# ---- report --------------------------------------------------------------------

# median TERM METRIC (empty when never measured); sum TERM METRIC for errors.
median() {
	awk -F'\t' -v t="$1" -v m="$2" '$1 == t && $2 == m { print $4 }' "$RAW" | sort -g |
		awk '{ v[NR] = $1 } END { if (NR == 0) exit; if (NR % 2) print v[(NR + 1) / 2];
			else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
total() { awk -F'\t' -v t="$1" -v m="$2" '$1 == t && $2 == m { s += $4 } END { print s + 0 }' "$RAW"; }

fmt() { [[ -n ${1:-} ]] && printf '%s' "$1" || printf 'n/a'; }

# ratio TERM_A TERM_B METRIC
ratio() {
	local a b
	a=$(median "$1" "$3")
	b=$(median "$2" "$3")
	if [[ -n $a && -n $b ]] && awk "BEGIN { exit !($b > 0) }"; then
		calc "$a / $b" 2
	else
		printf 'n/a'
	fi
}

report() {
	local t label
	{
		echo "# ktlsgate benchmark results"
		echo
		echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); host: $(uname -r), $(nproc) CPUs ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo))"
		echo "- versions: ktlsgate $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?'), $(haproxy -v 2>/dev/null | head -1 | awk '{ print "HAProxy " $3 }'), $(nginx -v 2>&1 | sed 's|.*nginx/|nginx |'), $(mosquitto -h 2>/dev/null | awk 'NR == 1 { print "mosquitto " $3 }'), $(openssl version | awk '{ print $1 " " $2 }')"
		echo "- medians of $REPEAT run(s); client: kg-bench, $THREADS thread(s), TLS 1.3 with client certificates (ECDSA P-256, device -> factory intermediate -> root), no resumption; everything on 127.0.0.1, client and servers share the CPUs"
		echo "- handshake: $HS_COUNT full handshakes + MQTT CONNECT/CONNACK + close, $HS_CONC in flight; publish: $PUB_CONNS connections, $PUB_MSGS QoS 1 messages of $PUB_SIZE B, $PUB_WINDOW in flight per connection; idle: $IDLE_CONNS connections, PINGREQ every 5 s"
		echo
		echo "| terminator | handshakes/s | server CPU/handshake (us) | handshake p50 / p99 (ms) | QoS 1 msg/s | server CPU/msg (us) | PUBLISH->PUBACK p50 / p99 (us) | RSS/idle conn (KiB) | host slab/idle conn (KiB) | errors |"
		echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
		for t in $TERMINATORS; do
			label=$t
			[[ $t == mosquitto ]] && label="mosquitto (own TLS, reference)"
			if [[ $t == ktlsgated && ! -x $KTLSGATED ]]; then
				echo "| $label | not built | | | | | | | | |"
				continue
			fi
			printf '| %s | %s | %s | %s / %s | %s | %s | %s / %s | %s | %s | %s |\n' "$label" \
				"$(fmt "$(median "$t" hs_rate)")" "$(fmt "$(median "$t" hs_cpu_us)")" \
				"$(fmt "$(median "$t" hs_p50_ms)")" "$(fmt "$(median "$t" hs_p99_ms)")" \
				"$(fmt "$(median "$t" pub_rate)")" "$(fmt "$(median "$t" pub_cpu_us)")" \
				"$(fmt "$(median "$t" pub_p50_us)")" "$(fmt "$(median "$t" pub_p99_us)")" \
				"$(fmt "$(median "$t" idle_kib)")" "$(fmt "$(median "$t" idle_slab_kib)")" \
				"$(($(total "$t" hs_errors) + $(total "$t" pub_errors) + $(total "$t" idle_errors)))"
		done
		echo
		echo "| ratio | value |"
		echo "|---|---:|"
		echo "| server CPU per handshake, ktlsgated / nginx | $(ratio ktlsgated nginx hs_cpu_us) |"
		echo "| server CPU per handshake, ktlsgated / haproxy | $(ratio ktlsgated haproxy hs_cpu_us) |"
		echo "| QoS 1 msg/s, ktlsgated / haproxy | $(ratio ktlsgated haproxy pub_rate) |"
		echo "| server CPU per message, ktlsgated / haproxy | $(ratio ktlsgated haproxy pub_cpu_us) |"
		echo "| RSS per idle connection, ktlsgated / haproxy | $(ratio ktlsgated haproxy idle_kib) |"
		echo "| RSS per idle connection, ktlsgated / nginx | $(ratio ktlsgated nginx idle_kib) |"
		echo "| RSS per idle connection, ktlsgated / mosquitto | $(ratio ktlsgated mosquitto idle_kib) |"
		echo
		echo "Server CPU is utime + stime from /proc/PID/stat of all the terminator's processes"
		echo "(all threads), before and after the run, divided by the operations completed; the"
		echo "backend mosquitto and the client are not counted. Work the kernel does in softirq"
		echo "context (TCP, and kTLS record decryption on receive) is charged to whatever task"
		echo "is running, so it is only partly attributed. RSS is user-space memory only: the"
		echo "host slab column (Slab in /proc/meminfo, whole machine, both ends of every socket"
		echo "and the backend connections) shows where kernel-side state such as kTLS contexts"
		echo "and socket buffers went. Errors are summed over all runs, never dropped."
	} >"$RESULTS"
	cat "$RESULTS"
}

# ---- A/B: two ktlsgated builds and nginx side by side (BENCH_GATED_B) ----------------

# All three run at once (each ktlsgated on its own copy of the registry); each repeat
# measures them back to back, in a rotating order, so load from other users of the
# machine hits them alike. Handshakes only. Rows: ktlsgated (KTLSGATED, "A"),
# ktlsgated-b (BENCH_GATED_B), nginx; the paired per-repeat difference B - A says
# more than the medians on a busy host.
main_ab() {
	local rep t i order pa pb pn oa ob on
	[[ -x $KTLSGATED_B ]] || die "BENCH_GATED_B=$KTLSGATED_B is not an executable"
	[[ -x $KTLSGATED && -x $KTLSGATE ]] || die "$KTLSGATED or $KTLSGATE is not built"
	make_registry
	cp "$RUN/registry.db" "$RUN/registry-b.db"
	start_ktlsgated
	pa=$SRV_PID oa=$SRV_PORT
	if ! { enroll_all && warm_up ktlsgated; }; then die "ktlsgated (A) did not come up"; fi
	start_ktlsgated b
	pb=$SRV_PID ob=$SRV_PORT
	if ! { enroll_all && warm_up ktlsgated-b; }; then die "ktlsgated-b did not come up"; fi
	start_nginx
	pn=$SRV_PID on=$SRV_PORT
	warm_up nginx || die "nginx did not come up"
	order=(ktlsgated ktlsgated-b nginx)
	for ((rep = 1; rep <= REPEAT; rep++)); do
		say "A/B repeat $rep, load $(cut -d' ' -f1-3 /proc/loadavg)"
		for ((i = 0; i < 3; i++)); do
			t=${order[(i + rep - 1) % 3]}
			case $t in
			ktlsgated) SRV_PID=$pa SRV_PORT=$oa ;;
			ktlsgated-b) SRV_PID=$pb SRV_PORT=$ob ;;
			nginx) SRV_PID=$pn SRV_PORT=$on ;;
			esac
			bench_handshake "$t" "$rep"
		done
	done
	SRV_PID=""    # cleanup() stops all three
	{
		echo "# ktlsgate A/B handshake benchmark"
		echo
		echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
		echo "- A: $KTLSGATED; B: $KTLSGATED_B; $(nginx -v 2>&1 | sed 's|.*nginx/|nginx |'); $(openssl version | awk '{ print $1 " " $2 }')"
		echo "- $REPEAT repeat(s) of $HS_COUNT full handshakes (+ CONNECT/CONNACK), $HS_CONC in flight, each repeat measuring the three back to back"
		echo
		echo "| terminator | server CPU/handshake (us), median | per repeat | handshakes/s | errors |"
		echo "|---|---:|---|---:|---:|"
		for t in ktlsgated ktlsgated-b nginx; do
			printf '| %s | %s | %s | %s | %s |\n' "$t" "$(fmt "$(median "$t" hs_cpu_us)")" \
				"$(awk -F'\t' -v t="$t" '$1 == t && $2 == "hs_cpu_us" { printf "%s%s", s, $4; s = " " }' "$RAW")" \
				"$(fmt "$(median "$t" hs_rate)")" "$(total "$t" hs_errors)"
		done
		echo
		echo "| ratio | value |"
		echo "|---|---:|"
		echo "| server CPU per handshake, A / nginx | $(ratio ktlsgated nginx hs_cpu_us) |"
		echo "| server CPU per handshake, B / nginx | $(ratio ktlsgated-b nginx hs_cpu_us) |"
		echo "| server CPU per handshake, B / A | $(ratio ktlsgated-b ktlsgated hs_cpu_us) |"
		awk -F'\t' '$2 == "hs_cpu_us" && $1 == "ktlsgated" { a[$3] = $4 }
			$2 == "hs_cpu_us" && $1 == "ktlsgated-b" { b[$3] = $4 }
			END { for (r in a) if (r in b) { n++; d[n] = b[r] - a[r]; if (b[r] < a[r]) k++ }
				if (!n) exit
				for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (d[j] < d[i]) { x = d[i]; d[i] = d[j]; d[j] = x }
				m = n % 2 ? d[(n + 1) / 2] : (d[n / 2] + d[n / 2 + 1]) / 2
				printf "| B - A per repeat, median (us); repeats where B was cheaper | %.0f; %d of %d |\n", m, k, n }' "$RAW"
	} >"$RESULTS"
	cat "$RESULTS"
	say "results in $RESULTS (raw numbers: $RAW, logs: $LOGS)"
	((TOTAL_ERRORS == 0)) || die "$TOTAL_ERRORS error(s): see $LOGS/kg-bench.log"
}

# ---- main ------------------------------------------------------------------------

main() {
	local t ran=""
	[[ -x $KG_BENCH ]] || die "$KG_BENCH is missing: make $BUILD/kg-bench"
	for t in haproxy nginx mosquitto openssl ss pgrep; do
		command -v "$t" >/dev/null || die "$t is not installed"
	done
	[[ -f /usr/lib/nginx/modules/ngx_stream_module.so ]] ||
		die "nginx stream module missing: apt-get install libnginx-mod-stream"
	ulimit -n "$(ulimit -Hn)"    # inherited by every server started below
	mkdir -p "$OUT" "$LOGS"
	rm -rf "$RUN"
	mkdir -p "$RUN"
	rm -f "$LOGS"/*.log "$LOGS"/kg-bench.json
	: >"$RAW"
	write_openssl_cnf
	make_pki
	cat "$PKI/root/cert.pem" "$PKI/factory/cert.pem" >"$CA_FILE"
	cat "$PKI/server/chain.pem" "$PKI/server/key.pem" >"$RUN/server-full.pem"
	chmod 600 "$RUN/server-full.pem"
	start_backend
	if [[ -n $KTLSGATED_B ]]; then
		main_ab
		return
	fi
	for t in $TERMINATORS; do
		case $t in
		ktlsgated)
			if [[ ! -x $KTLSGATED || ! -x $KTLSGATE ]]; then
				say "ktlsgated or ktlsgate not built: its column stays empty"
				continue
			fi
			make_registry
			;;
		haproxy | nginx | mosquitto) ;;
		*) die "unknown terminator '$t' in BENCH_TERMINATORS" ;;
		esac
		run_terminator "$t"
		ran+="$t "
	done
	report
	say "results in $RESULTS (raw numbers: $RAW, logs: $LOGS)"
	if ((TOTAL_ERRORS > 0)); then
		say "$TOTAL_ERRORS error(s) in total: see the errors column and $LOGS/kg-bench.log"
		exit 1
	fi
}

main "$@"
