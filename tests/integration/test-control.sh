#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# test-control.sh - the control socket and the registry file under a running daemon
# (issue 10 section 5): a second ktlsgated must not take over the live one's socket or
# registry; a stale socket from a killed daemon must not block a restart; stuck or slow
# control clients must not delay SIGHUP or a revocation; the registry is created 0600;
# a registry locked by another process is visible (log, metric), retried, and never
# reported as written when it was not; an auto-enrolment that fails is audited as such.
# Real processes only: ktlsgated, mosquitto, the CLI, sqlite3, python clients.
# Prints PASS/FAIL/SKIP per test; exits non-zero if any failed.
# dev_args prints options meant to split into words; lib.sh reads ALL_TESTS and KG_FAILED.
# shellcheck disable=SC2046,SC2034
set -u
. "$(dirname "$0")/lib.sh"

setup() {
	kg_init control
	BK_PORT=$(free_port)
	BK2_PORT=$(free_port)
	GW_PORT=$(free_port)
	GW_MPORT=$(free_port)
	GW_DIR="$WORK/gw"
	# a umask that would leave the registry world-readable: the daemon must not care
	umask 022
	write_gw_conf "$GW_DIR" "$GW_PORT" "$GW_MPORT" "$BK_PORT" "$BK2_PORT"
	GW_CONF="$GW_DIR/ktlsgate.conf"
	GW_LOG="$GW_DIR/gw.log"
	SOCK="$GW_DIR/ctl.sock"
	REG="$GW_DIR/registry.db"
	: >"$GW_LOG"
	pki_setup "$WORK/pki" || return 1
	local d
	for d in second stale stuck stuck2 busy1 busy2; do
		device_cert "$d" "$PKI/factory" || return 1
		kg device add "$d" >/dev/null || { echo "device add $d failed" >&2; return 1; }
	done
	pki root --cn "auto-enroll root" --out "$PKI/autoroot" || return 1
	register_ca auto "$PKI/autoroot" --auto-enroll || return 1
	for d in auto-ok auto-late auto-fail; do
		device_cert "$d" "$PKI/autoroot" || return 1
	done
	start_broker "$BK_PORT" || return 1
	start_gateway || return 1
	wait_sock || return 1
}

# wait_sock: until the control socket answers `status`.
wait_sock() {
	local i
	for ((i = 0; i < 100; i++)); do
		kg status >/dev/null 2>&1 && return 0
		sleep 0.05
	done
	echo "control socket $SOCK never answered" >&2
	return 1
}

# status_pid: the pid `ktlsgate status --json` reports ("" if it does not answer).
status_pid() {
	kg status --json 2>/dev/null | $PY -c 'import json,sys
try: print(json.load(sys.stdin).get("pid",""))
except ValueError: print("")'
}

cutoff() {
	kgc cutoff $(dev_args "$1") --cmd "timeout 10 $KGCLI -c $GW_CONF device set $1 --status disabled" | tail -1
}

json_field() {
	printf '%s' "$1" | $PY -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$2" 2>/dev/null
}

# cut_ok DEVICE LIMIT_MS: a live session of DEVICE is cut by `device set --status
# disabled` within LIMIT_MS of starting the CLI, and the CLI exits 0.
cut_ok() {
	local res eof rc
	res=$(cutoff "$1")
	eof=$(json_field "$res" eof_ms)
	rc=$(json_field "$res" cli_rc)
	echo "    $1: disable -> EOF after ${eof} ms (CLI rc ${rc})"
	[ "$rc" = 0 ] || { note "device set $1 exited '$rc' ($res)"; return 1; }
	[ -n "$eof" ] && [ "$eof" != None ] || { note "session of $1 not cut within 5 s ($res)"; return 1; }
	$PY -c 'import sys; sys.exit(0 if float(sys.argv[1]) < float(sys.argv[2]) else 1)' "$eof" "$2" ||
		{ note "session of $1 cut after $eof ms (limit $2 ms)"; return 1; }
}

# sock_id: device:inode of the control socket ("" if missing or not a socket).
sock_id() {
	[ -S "$SOCK" ] && stat -c '%d:%i' "$SOCK"
}

# --- 1. one daemon per socket and registry ----------------------------------------------

t_second_daemon() {
	local before out rc pid
	before=$(sock_id)
	[ -n "$before" ] || { note "no control socket at $SOCK before the test"; return 1; }
	out=$(timeout 20 "$GATED" -c "$GW_CONF" 2>&1)
	rc=$?
	echo "    second daemon: exit $rc: $out"
	[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] || { note "second ktlsgated exited $rc"; return 1; }
	[[ "$out" == *"control_socket $SOCK: another ktlsgated (pid $GW_PID) is running"* ]] ||
		{ note "second ktlsgated's error does not name the socket and pid $GW_PID: $out"; return 1; }
	[ "$(sock_id)" = "$before" ] || { note "control socket replaced or removed: '$(sock_id)' was '$before'"; return 1; }
	pid=$(status_pid)
	[ "$pid" = "$GW_PID" ] || { note "status answered by pid '$pid', want $GW_PID"; return 1; }
	cut_ok second 1000
}

# The lock beside the registry: same registry, another control socket.
t_registry_lock() {
	local conf2="$GW_DIR/second.conf" out rc
	sed "s|^control_socket = .*|control_socket = ctl2.sock|; s|^listen = .*|listen = 127.0.0.1:$(free_port)|; s|^metrics_listen = .*|metrics_listen = 127.0.0.1:$(free_port)|" \
		"$GW_CONF" >"$conf2"
	out=$(timeout 20 "$GATED" -c "$conf2" 2>&1)
	rc=$?
	echo "    second daemon on the same registry: exit $rc: $out"
	[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] || { note "second ktlsgated exited $rc"; return 1; }
	[[ "$out" == *"registry.db is in use by another ktlsgated (pid $GW_PID, holding $REG.lock)"* ]] ||
		{ note "no lock error naming pid $GW_PID: $out"; return 1; }
	[ ! -e "$GW_DIR/ctl2.sock" ] || { note "the refused daemon left ctl2.sock behind"; return 1; }
	[ "$(status_pid)" = "$GW_PID" ] || { note "the live daemon stopped answering"; return 1; }
	# the CLI never takes the lock: it works beside the daemon
	kg device show second >/dev/null || { note "device show beside the daemon failed"; return 1; }
}

# kill -9 leaves the socket file behind; nothing answers on it and the lock died with
# the process: a restart replaces it.
t_stale_socket() {
	local pid
	kill -9 "$GW_PID"
	timeout 5 tail --pid="$GW_PID" -f /dev/null
	forget_pid "$GW_PID"
	[ -S "$SOCK" ] || { note "kill -9 left no socket file: the test proves nothing"; return 1; }
	start_gateway || { note "restart after kill -9 failed: $(tail -3 "$GW_LOG")"; return 1; }
	wait_sock || { note "restarted daemon does not answer"; return 1; }
	pid=$(status_pid)
	[ "$pid" = "$GW_PID" ] || { note "status pid '$pid', want $GW_PID"; return 1; }
	cut_ok stale 1000
}

# --- 2. stuck control clients ------------------------------------------------------------

# stuck_clients OUT: start python clients against the control socket in the background
# (PID in STUCK_PID); each writes "name closed_after_ms" to OUT when the daemon drops it.
#   half:  sends half a line and waits
#   drip:  sends one byte every 0.3 s (the old per-read deadline never fired)
#   noread: asks for the session list, never reads the reply, shrinks its buffer
#   idle*: 10 connections that never send a byte (with the rest, under the limit of 16)
stuck_clients() {
	$PY - "$SOCK" "$1" <<'EOF' &
import os, socket, sys, threading, time
path, out = sys.argv[1], sys.argv[2]
lock = threading.Lock()
def report(name, t0):
    with lock, open(out, "a") as f:
        f.write("%s %d\n" % (name, (time.monotonic() - t0) * 1000))
def conn():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    s.connect(path)
    return s
def wait_eof(name, s, t0, drip=False):
    s.settimeout(0.3)
    while time.monotonic() - t0 < 15:
        try:
            if drip:
                s.send(b"s")
            d = s.recv(65536 if not drip else 1)
            if not d:
                return report(name, t0)
        except socket.timeout:
            continue
        except OSError:
            return report(name, t0)
    report(name + "-never", t0)
def half():
    s = conn(); t0 = time.monotonic(); s.send(b"stat"); wait_eof("half", s, t0)
def drip():
    s = conn(); t0 = time.monotonic(); wait_eof("drip", s, t0, drip=True)
def noread():
    s = conn(); t0 = time.monotonic(); s.send(b"sessions\n")
    time.sleep(4)          # never read during the deadline
    try:
        s.setblocking(False)
        got = b""
        while True:
            d = s.recv(65536)
            if not d: break
            got += d
    except OSError:
        pass
    report("noread", t0)
ts = [threading.Thread(target=f) for f in (half, drip, noread)]
for t in ts: t.start()
idle = []
for i in range(10):
    idle.append(conn())
with lock, open(out, "a") as f:
    f.write("started\n")
for t in ts: t.join()
EOF
	STUCK_PID=$!
	KG_PIDS+=("$STUCK_PID")
}

t_stuck_clients() {
	local f="$WORK/stuck.out" i t0 t1 mark ms
	: >"$f"
	stuck_clients "$f"
	for ((i = 0; i < 100; i++)); do grep -q started "$f" && break; sleep 0.05; done
	grep -q started "$f" || { note "stuck clients did not start"; return 1; }
	# SIGHUP: the reload must be logged at once
	mark=$(log_mark)
	t0=$(date +%s%N)
	kill -HUP "$GW_PID"
	for ((i = 0; i < 200; i++)); do
		tail -n +"$((mark + 1))" "$GW_LOG" | grep -q 'reloaded ' && break
		sleep 0.01
	done
	t1=$(date +%s%N)
	ms=$(((t1 - t0) / 1000000))
	echo "    SIGHUP -> reloaded after $ms ms with stuck control clients"
	tail -n +"$((mark + 1))" "$GW_LOG" | grep -q 'reloaded ' || { note "no reload within 2 s of SIGHUP"; return 1; }
	[ "$ms" -lt 1000 ] || { note "reload took $ms ms (limit 1000)"; return 1; }
	# a revocation cuts a live session at once
	cut_ok stuck 1000 || return 1
	kg status >/dev/null || { note "status failed beside stuck clients"; return 1; }
	# every stuck client is dropped after its 2 s deadline (generous margin: loaded CI)
	wait "$STUCK_PID" 2>/dev/null
	forget_pid "$STUCK_PID"
	echo "    clients closed after (ms): $(grep -v started "$f" | tr '\n' ' ')"
	for i in half drip noread; do
		grep -q "^$i " "$f" || { note "client $i was never closed: $(cat "$f")"; return 1; }
	done
	for i in half drip; do
		ms=$(awk -v n="$i" '$1 == n { print $2 }' "$f")
		[ "$ms" -ge 1500 ] && [ "$ms" -le 6000 ] || { note "client $i closed after $ms ms (deadline 2000)"; return 1; }
	done
	kill -0 "$GW_PID" || { note "daemon died"; return 1; }
	cut_ok stuck2 1000
}

# More clients than the limit (16): the oldest give way, so 30 idle connections do
# not lock the operator out, and a revocation still gets through at once.
t_client_limit() {
	local pid rc
	$PY - "$SOCK" <<'EOF' &
import socket, sys, time
idle = []
for i in range(30):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sys.argv[1]); idle.append(s)
time.sleep(3)
EOF
	pid=$!
	sleep 0.5
	kg status >/dev/null
	rc=$?
	[ "$rc" = 0 ] || { note "status beside 30 idle control clients exited $rc"; kill "$pid"; return 1; }
	cut_ok busy1 1000 || { kill "$pid"; return 1; }
	wait "$pid"
	grep -q 'clients open: the oldest closed' "$GW_LOG" || { note "no log line for the evicted clients"; return 1; }
}

# Requests are bounded: a line over 4 KiB is refused, not buffered.
t_request_too_long() {
	local got
	got=$($PY - "$SOCK" <<'EOF'
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1]); s.settimeout(5)
try:
    s.sendall(b"x" * 5000)
except OSError:
    pass
got = b""
try:
    while True:
        d = s.recv(4096)
        if not d: break
        got += d
except OSError:
    pass
print(got.decode(errors="replace").strip())
EOF
)
	[ "$got" = "ERR request too long" ] || { note "5000-byte request: '$got'"; return 1; }
}

after_each() {
	kill -0 "$GW_PID" 2>/dev/null && return 0
	note "ktlsgated died during this test; last log line: $(tail -1 "$GW_LOG" | cut -c1-160)"
	forget_pid "$GW_PID"
	start_gateway >/dev/null 2>&1 || echo "    could not restart ktlsgated"
	return 1
}

ALL_TESTS=(t_second_daemon t_registry_lock t_stuck_clients t_client_limit t_request_too_long t_stale_socket)

if ! setup; then
	echo "FAIL setup: could not build the PKI / broker / gateway (log: ${GW_LOG:-none})"
	[ -n "${GW_LOG:-}" ] && tail -20 "$GW_LOG"
	KG_FAILED=1
	exit 1
fi
run_tests
