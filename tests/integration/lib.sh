# SPDX-License-Identifier: BSD-2-Clause
# lib.sh - shared helpers of the integration tests and the demo (sourced by bash).
#
# Free loopback ports, a backend mosquitto, a ktlsgated with a generated config, the
# test PKI (root -> "factory" intermediate -> devices, a server cert, CAs registered
# with proof of possession), audit-line and metrics checks through tests/lib/kgclient.py,
# and the test harness (run_tests over ALL_TESTS printing PASS/FAIL/SKIP lines).
# Everything started here is recorded and stopped by stop_all (installed as an EXIT
# trap by kg_init). Every external command runs under `timeout` so nothing can hang.

KG_TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
GATED=${GATED:-$KG_TOP/build/ktlsgated}
KGCLI=${KGCLI:-$KG_TOP/build/ktlsgate}
PY=/usr/bin/python3
KGC="$KG_TOP/tests/lib/kgclient.py"
KG_PIDS=()
WORK=""

# --- setup / teardown ---------------------------------------------------------------

# kg_init NAME: a fresh work dir under build/itest (or $KG_WORK_BASE), traps, limits.
kg_init() {
	local base=${KG_WORK_BASE:-$KG_TOP/build/itest}
	mkdir -p "$base"
	WORK=$(mktemp -d "$base/$1.XXXXXX")
	# 2000 concurrent sessions need ~3 fds each in the gate, one in the broker and client
	ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
	trap stop_all EXIT
	trap 'exit 130' INT TERM
}

stop_all() {
	local p
	for p in "${KG_PIDS[@]}"; do
		kill "$p" 2>/dev/null || true
	done
	for p in "${KG_PIDS[@]}"; do
		timeout 5 tail --pid="$p" -f /dev/null 2>/dev/null || kill -9 "$p" 2>/dev/null || true
	done
	KG_PIDS=()
	if [ -n "$WORK" ] && [ -z "${KG_KEEP:-}" ] && [ "${KG_FAILED:-0}" = 0 ]; then
		rm -rf "$WORK"
	fi
}

# forget_pid PID: stop tracking a process we already stopped.
forget_pid() {
	local p keep=()
	for p in "${KG_PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
	KG_PIDS=("${keep[@]}")
}

free_port() {
	$PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

port_free() {
	$PY -c 'import socket,sys
s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try: s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError: sys.exit(1)' "$1"
}

# wait_port PORT [SECONDS] [PID]: until something listens on 127.0.0.1:PORT. Looks at
# the socket table rather than connecting, so the gate does not audit a probe.
wait_port() {
	local port=$1 secs=${2:-10} pid=${3:-} i
	for ((i = 0; i < secs * 20; i++)); do
		if [ -n "$(ss -Hltn "sport = :$port" 2>/dev/null)" ]; then
			return 0
		fi
		if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
			return 1
		fi
		sleep 0.05
	done
	return 1
}

# start_broker PORT: a plain mosquitto on 127.0.0.1:PORT; sets BROKER_PID.
start_broker() {
	local port=$1 conf="$WORK/mosquitto-$1.conf"
	cat >"$conf" <<EOF
# backend broker for the ktlsgate integration tests
user root
per_listener_settings false
allow_anonymous true
max_connections -1
max_queued_messages 10000
persistence false
log_dest stderr
log_type error
log_type warning
listener $port 127.0.0.1
EOF
	mosquitto -c "$conf" >"$WORK/mosquitto-$port.log" 2>&1 &
	BROKER_PID=$!
	KG_PIDS+=("$BROKER_PID")
	wait_port "$port" 10 "$BROKER_PID" || { echo "mosquitto on $port did not start:" >&2; cat "$WORK/mosquitto-$port.log" >&2; return 1; }
}

# write_gw_conf DIR PORT MPORT BACKEND_PORT BACKEND2_PORT [extra lines for [daemon]]
# KG_RELAY=userspace|openssl|... pins the data path (`relay =`); unset leaves `auto`.
# Paths are relative: they resolve against the config file's directory. KG_GW_LIMITS:
# extra lines for [limits] (load tests and benchmarks, whose clients all come from
# one address, turn the per-source limits off with KG_GW_NO_SOURCE_LIMITS).
write_gw_conf() {
	local dir=$1 port=$2 mport=$3 bport=$4 b2port=$5
	shift 5
	mkdir -p "$dir"
	cat >"$dir/ktlsgate.conf" <<EOF
; ktlsgate integration test config
[daemon]
listen = 127.0.0.1:$port
workers = 2
cert = server/chain.pem
key = server/key.pem
registry = registry.db
control_socket = ctl.sock
metrics_listen = 127.0.0.1:$mport
default_backend = local
client_id_check = exact
log_level = info
${KG_RELAY:+relay = $KG_RELAY}
$*
[limits]
handshake_timeout_ms = 2000
connect_timeout_ms = 2000
backend_timeout_ms = 1000
max_connect_bytes = 65536
${KG_GW_LIMITS:-}

[backend local]
address = 127.0.0.1:$bport

[backend other]
address = 127.0.0.1:$b2port
EOF
}

KG_GW_NO_SOURCE_LIMITS=$'source_max_handshakes = 0\nsource_rate = 0'

# kg ARGS...: the CLI against the current gateway config ($GW_CONF).
kg() {
	timeout 20 "$KGCLI" -c "$GW_CONF" "$@"
}

# start_gateway: run build/ktlsgated -c $GW_CONF, stderr (audit) to $GW_LOG; GW_PID.
start_gateway() {
	GW_LOG=${GW_LOG:-$(dirname "$GW_CONF")/gw.log}
	"$GATED" -c "$GW_CONF" 2>>"$GW_LOG" >>"$GW_LOG" &
	GW_PID=$!
	KG_PIDS+=("$GW_PID")
	if ! wait_port "$GW_PORT" 10 "$GW_PID"; then
		echo "ktlsgated did not start; log:" >&2
		tail -20 "$GW_LOG" >&2
		return 1
	fi
	wait_port "$GW_MPORT" 5 "$GW_PID" || true
}

stop_gateway() {
	[ -n "${GW_PID:-}" ] || return 0
	kill "$GW_PID" 2>/dev/null || true
	timeout 5 tail --pid="$GW_PID" -f /dev/null 2>/dev/null || kill -9 "$GW_PID" 2>/dev/null || true
	forget_pid "$GW_PID"
	GW_PID=""
}

# --- PKI --------------------------------------------------------------------------

pki() {
	timeout 30 "$KGCLI" pki "$@" >/dev/null
}

# register_ca NAME CERTDIR [ca add options...]: ca add + proof of possession.
register_ca() {
	local name=$1 dir=$2 out code
	shift 2
	out=$(kg ca add "$dir/cert.pem" --name "$name" "$@") || { echo "ca add $name failed: $out" >&2; return 1; }
	code=$(printf '%s\n' "$out" | sed -n 's/^challenge: *//p' | head -1)
	[ -n "$code" ] || { echo "ca add $name: no challenge in: $out" >&2; return 1; }
	pki verification-cert --ca "$dir" --challenge "$code" --out "$dir/verify.pem" || return 1
	kg ca verify "$name" "$dir/verify.pem" >/dev/null || { echo "ca verify $name failed" >&2; return 1; }
}

# add_pending_ca NAME CERTDIR: registered but possession never proven.
add_pending_ca() {
	kg ca add "$2/cert.pem" --name "$1" >/dev/null
}

# device_cert ID ISSUERDIR [pki device options]: $PKI/dev/ID/{cert,key,chain}.pem
device_cert() {
	local id=$1 ca=$2
	shift 2
	pki device --cn "$id" --ca "$ca" --out "$PKI/dev/$id" "$@"
}

# pki_setup DIR: the standard PKI and registry for $GW_CONF.
#   root (registered "root", proven) -> factory (registered "factory", proven, CRL)
#   server cert for 127.0.0.1 under factory; devices under factory.
pki_setup() {
	PKI=$1
	mkdir -p "$PKI/dev"
	pki root --cn "ktlsgate test root" --out "$PKI/root" || return 1
	pki intermediate --cn "factory" --ca "$PKI/root" --out "$PKI/factory" || return 1
	pki server --cn localhost --ca "$PKI/factory" --out "$(dirname "$GW_CONF")/server" || return 1
	register_ca root "$PKI/root" || return 1
	register_ca factory "$PKI/factory" || return 1
}

# fingerprint FILE: lowercase hex SHA-256 of the certificate, as openssl prints it.
fingerprint() {
	openssl x509 -noout -fingerprint -sha256 -in "$1" | sed 's/.*=//; s/://g' | tr 'A-F' 'a-f'
}

# --- clients ------------------------------------------------------------------------

# dev_args ID: kgclient TLS options for device ID.
dev_args() {
	echo "--port $GW_PORT --ca $PKI/root/cert.pem --cert $PKI/dev/$1/chain.pem --key $PKI/dev/$1/key.pem --id $1"
}

kgc() {
	timeout 60 $PY "$KGC" "$@"
}

# sub_start TOPIC COUNT SECONDS: mosquitto_sub on the backend broker into a file;
# prints the file name. Waits until the subscription is active.
sub_start() {
	local f
	f=$(mktemp "$WORK/sub.XXXXXX")
	timeout "$(($3 + 2))" mosquitto_sub -h 127.0.0.1 -p "$BK_PORT" -t "$1" -v -C "$2" -W "$3" >"$f" 2>/dev/null &
	sleep 0.3
	echo "$f"
}

# sub_wait FILE LINE [SECONDS]: until FILE has LINE.
sub_wait() {
	local i
	for ((i = 0; i < ${3:-5} * 20; i++)); do
		grep -qxF -- "$2" "$1" && return 0
		sleep 0.05
	done
	return 1
}

# log_mark: the current line count of the gateway log (audit checks look after it).
log_mark() {
	wc -l <"$GW_LOG"
}

# wait_log PATTERN SECS [FROM_LINE]: until the gateway log has a line matching PATTERN
# (grep -E) after line FROM_LINE.
wait_log() {
	local i
	for ((i = 0; i < $2 * 20; i++)); do
		tail -n +"$((${3:-0} + 1))" "$GW_LOG" | grep -Eq -- "$1" && return 0
		sleep 0.05
	done
	return 1
}

# gone PID SECS: until PID (a child of this shell) has exited; its status in RC.
gone() {
	local i
	for ((i = 0; i < $2 * 20; i++)); do
		if ! kill -0 "$1" 2>/dev/null; then
			wait "$1" 2>/dev/null
			RC=$?
			forget_pid "$1"
			return 0
		fi
		sleep 0.05
	done
	return 1
}

# travel_gw_conf: a gateway config in $WORK/gw whose plain sessions can move to another
# process (core/conn_xfer.c): relay = userspace (a plain listener's sessions are then
# copied in user space, not put in the sockmap), a plain listener on PLAIN_PORT,
# client_id_check off (one device, many client ids), no per-source limits. Sets BK_PORT,
# BK2_PORT, GW_PORT, GW_MPORT, PLAIN_PORT, GW_DIR, GW_CONF and GW_LOG (emptied).
travel_gw_conf() {
	unset KG_RELAY   # pinned here
	BK_PORT=$(free_port)
	BK2_PORT=$(free_port)
	GW_PORT=$(free_port)
	GW_MPORT=$(free_port)
	PLAIN_PORT=$(free_port)
	GW_DIR="$WORK/gw"
	KG_GW_LIMITS=$KG_GW_NO_SOURCE_LIMITS write_gw_conf "$GW_DIR" "$GW_PORT" "$GW_MPORT" \
		"$BK_PORT" "$BK2_PORT" "relay = userspace"
	GW_CONF="$GW_DIR/ktlsgate.conf"
	GW_LOG="$GW_DIR/gw.log"
	: >"$GW_LOG"
	sed -i 's/^client_id_check = exact$/client_id_check = off/' "$GW_CONF"
	plain_listener "$GW_CONF" "$PLAIN_PORT"
}

# plain_listener CONF PORT: a `plain` listener (allow_plain) on 127.0.0.1:PORT.
plain_listener() {
	printf '\n[listener closed-net]\ntype = plain\nallow_plain = yes\nlisten = 127.0.0.1:%s\n' "$2" >>"$1"
}

# token_device ID FILE: `device add ID --auth token`, its token into FILE.
token_device() {
	kg device add "$1" --auth token 2>/dev/null | sed -n 's/^token: //p' >"$2"
	[ -s "$2" ] || { echo "device add $1 printed no token" >&2; return 1; }
}

# last_audit MARK: the last audit decision line written after MARK (raw JSON).
last_audit() {
	tail -n +"$(($1 + 1))" "$GW_LOG" | grep '"event":"decision"' | tail -1
}

# add_typed_listeners CONF: three listeners beside the config's default (mtls) one, on
# new ports: one-way TLS (TLS_PORT), TLS with x509_only (X509_PORT), plain with
# allow_plain (PLAIN_PORT).
add_typed_listeners() {
	TLS_PORT=$(free_port)
	X509_PORT=$(free_port)
	PLAIN_PORT=$(free_port)
	cat >>"$1" <<EOF

[listener one-way]
type = tls
listen = 127.0.0.1:$TLS_PORT

[listener certs-only]
type = tls
x509_only = yes
listen = 127.0.0.1:$X509_PORT

[listener closed-net]
type = plain
allow_plain = yes
listen = 127.0.0.1:$PLAIN_PORT
EOF
}

# audit_has MARK REASON [DEVICE] [DECISION]: an audit decision after MARK matches.
audit_has() {
	local args=(audit --log "$GW_LOG" --from "$1" --reason "$2" --wait 3)
	[ -n "${3:-}" ] && args+=(--device "$3")
	[ -n "${4:-}" ] && args+=(--decision "$4")
	AUDIT_OUT=$(kgc "${args[@]}")
}

metrics() {
	kgc metrics --port "$GW_MPORT"
}

# metric_value NAME_WITH_LABELS: value of one sample (0 if absent). Label order as
# printed by the daemon; we match on the name and each label separately.
metric_value() {
	local name=$1
	shift
	metrics | awk -v n="$name" -v labs="$*" '
		BEGIN { k = split(labs, want, " ") }
		$1 ~ "^" n "([{]|$)" {
			ok = 1
			for (i = 1; i <= k; i++) if (index($1, want[i]) == 0) ok = 0
			if (ok) { s += $NF; found = 1 }
		}
		END { print found ? s : 0 }'
}

rss_kb() {
	awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"
}

# --- harness ------------------------------------------------------------------------

# note MSG: why the current test fails (shown on its FAIL line).
note() {
	WHY="$*"
	echo "    $*"
}

skip() {
	WHY="$*"
	return 77
}

# run_tests: run every function named in ALL_TESTS (or $KG_ONLY, space separated).
# A test returns 0 (PASS), 77 (SKIP, reason via skip) or anything else (FAIL, reason
# via note). If the file defines after_each, it runs after every test; non-zero fails it.
run_tests() {
	local t rc passed=0 failed=0 list=("${ALL_TESTS[@]}")
	[ -n "${KG_ONLY:-}" ] && read -r -a list <<<"$KG_ONLY"
	for t in "${list[@]}"; do
		WHY=""
		echo "--- $t"
		local t0=$SECONDS
		"$t"
		rc=$?
		# a shared daemon that died is blamed on this test, then restarted so one
		# crash does not fail every test after it
		if declare -F after_each >/dev/null && ! after_each && [ $rc -ne 1 ]; then
			rc=1
		fi
		if [ $rc -eq 0 ]; then
			echo "PASS $t ($((SECONDS - t0))s)"
			passed=$((passed + 1))
		elif [ $rc -eq 77 ]; then
			echo "SKIP $t: $WHY"
		else
			echo "FAIL $t: ${WHY:-exit $rc}"
			failed=$((failed + 1))
			KG_FAILED=1
		fi
	done
	[ $failed -eq 0 ]
}
