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
	for d in second stale stuck stuck2 busy1 lockcli lockok; do
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

# --- 3. the registry file -----------------------------------------------------------------

# mode_of FILE: octal permission bits ("" if missing).
mode_of() {
	[ -e "$1" ] && stat -c '%a' "$1"
}

# The registry (created by the CLI under umask 022 in setup), its -wal and -shm, and
# the instance lock are 0600; a new one under umask 000 too.
t_registry_mode() {
	local f m
	for f in "$REG" "$REG-wal" "$REG-shm" "$REG.lock"; do
		m=$(mode_of "$f")
		[ "$m" = 600 ] || { note "$f: mode '$m', want 600"; return 1; }
	done
	mkdir -p "$WORK/fresh"
	(umask 000 && timeout 20 "$KGCLI" -c /nonexistent -r "$WORK/fresh/reg.db" device add fresh-1 >/dev/null) ||
		{ note "device add on a fresh registry failed"; return 1; }
	m=$(mode_of "$WORK/fresh/reg.db")
	[ "$m" = 600 ] || { note "fresh registry under umask 000: mode '$m', want 600"; return 1; }
	# a daemon creating its registry under umask 000 (a config with a new registry)
	local conf3="$GW_DIR/fresh.conf" p3 i
	sed "s|^registry = .*|registry = fresh-daemon.db|; s|^control_socket = .*|control_socket = ctl3.sock|; s|^listen = .*|listen = 127.0.0.1:$(free_port)|; s|^metrics_enabled.*||; s|^metrics_listen = .*|metrics_listen = 127.0.0.1:$(free_port)|" \
		"$GW_CONF" >"$conf3"
	(umask 000 && exec "$GATED" -c "$conf3") >"$WORK/fresh-daemon.log" 2>&1 &
	p3=$!
	KG_PIDS+=("$p3")
	for ((i = 0; i < 100; i++)); do [ -S "$GW_DIR/ctl3.sock" ] && break; sleep 0.05; done
	for f in "$GW_DIR/fresh-daemon.db" "$GW_DIR/fresh-daemon.db-wal" "$GW_DIR/fresh-daemon.db-shm"; do
		m=$(mode_of "$f")
		[ "$m" = 600 ] || { note "daemon-created $f under umask 000: mode '$m', want 600 ($(tail -2 "$WORK/fresh-daemon.log"))"; kill "$p3"; return 1; }
	done
	kill "$p3"
	wait "$p3"
	forget_pid "$p3"
}

# hold_lock SECONDS: another process (sqlite3) holds the registry's write lock for
# SECONDS; returns once it holds it. LOCK_PID is the holder.
hold_lock() {
	local f="$WORK/lock.$RANDOM" i
	(printf 'BEGIN EXCLUSIVE;\nSELECT '"'"'locked'"'"';\n'; sleep "$1"; printf 'COMMIT;\n') |
		timeout $(($1 + 10)) sqlite3 "$REG" >"$f" 2>&1 &
	LOCK_PID=$!
	KG_PIDS+=("$LOCK_PID")
	for ((i = 0; i < 100; i++)); do grep -q locked "$f" && return 0; sleep 0.05; done
	echo "    sqlite3 could not take the lock: $(cat "$f")"
	return 1
}

release_wait() {
	wait "$LOCK_PID" 2>/dev/null
	forget_pid "$LOCK_PID"
}

# dev_status ID: the device's status in the registry ("" if it cannot be read).
dev_status() {
	kg device show "$1" --json 2>/dev/null | $PY -c 'import json,sys
try: print(json.load(sys.stdin).get("status",""))
except ValueError: print("")'
}

# A lock held longer than the CLI's busy timeout: `device set --status disabled` says
# so, exits 3 and does not claim success; nothing was written.
t_locked_cli_fails() {
	local out err rc t0 t1
	[ "$(dev_status lockcli)" = enabled ] || { note "lockcli not enabled before the test"; return 1; }
	hold_lock 12 || { note "no lock"; return 1; }
	t0=$SECONDS
	out=$(timeout 30 "$KGCLI" -c "$GW_CONF" device set lockcli --status disabled 2>"$WORK/lockcli.err")
	rc=$?
	t1=$SECONDS
	err=$(cat "$WORK/lockcli.err")
	echo "    device set under a held lock: exit $rc after $((t1 - t0)) s; stdout '$out'; stderr: $err"
	release_wait
	[ "$rc" = 3 ] || { note "exit $rc, want 3"; return 1; }
	[ -z "$out" ] || { note "reported something on stdout although nothing was written: '$out'"; return 1; }
	[[ "$err" == *"registry is locked by another process"* ]] || { note "stderr lacks 'registry is locked by another process'"; return 1; }
	[[ "$err" == *"locked by another process, retrying"* ]] || { note "stderr lacks the retrying message"; return 1; }
	[ "$(dev_status lockcli)" = enabled ] || { note "status after the failed set: '$(dev_status lockcli)', want enabled"; return 1; }
}

# A lock released within the busy timeout: the CLI waits, the write lands and the
# live session is cut.
t_locked_cli_waits() {
	local res eof rc
	hold_lock 2 || { note "no lock"; return 1; }
	res=$(cutoff lockok)
	release_wait
	eof=$(json_field "$res" eof_ms)
	rc=$(json_field "$res" cli_rc)
	echo "    device set behind a 2 s lock: $res"
	[ "$rc" = 0 ] || { note "device set exited '$rc' ($res)"; return 1; }
	[ -n "$eof" ] && [ "$eof" != None ] || { note "session not cut ($res)"; return 1; }
	[ "$(dev_status lockok)" = disabled ] || { note "status '$(dev_status lockok)', want disabled"; return 1; }
}

# enrolled_lines FROM DEVICE REASON: audit decisions after line FROM for DEVICE/REASON.
audit_count() {
	tail -n +"$(($1 + 1))" "$GW_LOG" | grep '^{' | $PY -c 'import json,sys
n=0
for l in sys.stdin:
    try: o=json.loads(l)
    except ValueError: continue
    if o.get("device")==sys.argv[1] and o.get("reason")==sys.argv[2]: n+=1
print(n)' "$2" "$3"
}

# An auto-enrolment behind a lock: the writer says so (log, metric), retries, and the
# row lands once the lock is released; `enrolled` is audited only after the commit.
t_enrol_locked() {
	local mark got busy0 busy1 n
	busy0=$(metric_value ktlsgate_registry_busy_total)
	hold_lock 3 || { note "no lock"; return 1; }
	mark=$(log_mark)
	got=$(kgc connect $(dev_args auto-late) --topic itest/late --msg x | head -2 | tr '\n' ' ')
	[ "$got" = "connack 0x00 puback 0x00 " ] || { note "auto-enrol connect under a lock: '$got'"; release_wait; return 1; }
	n=$(audit_count "$mark" auto-late enrolled)
	[ "$n" = 0 ] || { note "'enrolled' audited while the registry was still locked"; release_wait; return 1; }
	release_wait
	kgc audit --log "$GW_LOG" --from "$mark" --reason enrolled --device auto-late --decision allow --wait 15 >/dev/null ||
		{ note "no 'enrolled' audit after the lock was released"; return 1; }
	[ "$(dev_status auto-late)" = enabled ] || { note "auto-late not in the registry after the lock"; return 1; }
	tail -n +"$((mark + 1))" "$GW_LOG" | grep -q 'locked by another process, retrying' ||
		{ note "no 'locked by another process, retrying' in the daemon log"; return 1; }
	busy1=$(metric_value ktlsgate_registry_busy_total)
	echo "    ktlsgate_registry_busy_total $busy0 -> $busy1"
	[ -n "$busy1" ] && [ "$busy1" -gt "$busy0" ] || { note "ktlsgate_registry_busy_total did not grow ($busy0 -> $busy1)"; return 1; }
}

# A lock held past the writer's retries (10 s): the enrolment is audited as
# enroll_failed with the cause, never as enrolled, and counted as such.
t_enrol_failed() {
	local mark got line f0 f1 e0 e1
	f0=$(metric_value ktlsgate_decisions_total 'reason="enroll_failed"')
	e0=$(metric_value ktlsgate_decisions_total 'reason="enrolled"')
	hold_lock 16 || { note "no lock"; return 1; }
	mark=$(log_mark)
	got=$(kgc connect $(dev_args auto-fail) | head -1)
	[ "$got" = "connack 0x00" ] || { note "auto-enrol connect under a lock: '$got'"; release_wait; return 1; }
	line=$(kgc audit --log "$GW_LOG" --from "$mark" --reason enroll_failed --device auto-fail --wait 20) ||
		{ note "no enroll_failed audit: $line"; release_wait; return 1; }
	echo "    $line"
	release_wait
	[[ "$line" == *locked* ]] || { note "enroll_failed detail does not say the registry was locked: $line"; return 1; }
	[ "$(audit_count "$mark" auto-fail enrolled)" = 0 ] || { note "'enrolled' audited for a failed enrolment"; return 1; }
	kg device show auto-fail >/dev/null 2>&1
	[ $? = 2 ] || { note "auto-fail is in the registry although its enrolment failed"; return 1; }
	f1=$(metric_value ktlsgate_decisions_total 'reason="enroll_failed"')
	e1=$(metric_value ktlsgate_decisions_total 'reason="enrolled"')
	[ "$f1" = $((f0 + 1)) ] || { note "enroll_failed count $f0 -> $f1, want +1"; return 1; }
	[ "$e1" = "$e0" ] || { note "enrolled count moved $e0 -> $e1 for a failed enrolment"; return 1; }
	# and the next connect enrols it
	mark=$(log_mark)
	got=$(kgc connect $(dev_args auto-fail) | head -1)
	[ "$got" = "connack 0x00" ] || { note "reconnect: '$got'"; return 1; }
	kgc audit --log "$GW_LOG" --from "$mark" --reason enrolled --device auto-fail --decision allow --wait 5 >/dev/null ||
		{ note "no 'enrolled' on the next connect"; return 1; }
}

# A plain auto-enrolment: one `enrolled` line, counted once.
t_enrol_ok() {
	local mark got
	mark=$(log_mark)
	got=$(kgc connect $(dev_args auto-ok) | head -1)
	[ "$got" = "connack 0x00" ] || { note "connect: '$got'"; return 1; }
	kgc audit --log "$GW_LOG" --from "$mark" --reason enrolled --device auto-ok --decision allow --wait 5 >/dev/null ||
		{ note "no 'enrolled' audit"; return 1; }
	sleep 0.3
	[ "$(audit_count "$mark" auto-ok enrolled)" = 1 ] || { note "not exactly one 'enrolled' line"; return 1; }
	[ "$(dev_status auto-ok)" = enabled ] || { note "auto-ok not in the registry"; return 1; }
}

# --- 4. CLI write errors say the real cause ---------------------------------------------

# In a mount namespace of our own: a registry on a full tmpfs and on a read-only one.
# The CLI must exit 3 with SQLite's words, never "I/O error" alone, never success.
t_cli_write_errors() {
	local d="$WORK/ns" out
	command -v unshare >/dev/null || { skip "no unshare(1)"; return 77; }
	mkdir -p "$d/mnt"
	cp "$REG" "$d/reg.db"
	sqlite3 "$d/reg.db" 'PRAGMA wal_checkpoint(TRUNCATE);' >/dev/null
	out=$(timeout 60 unshare -m bash -c '
		set -u
		mnt=$1 cli=$2 src=$3
		mount -t tmpfs -o size=512k tmpfs "$mnt" || { echo "mount failed"; exit 9; }
		cp "$src" "$mnt/reg.db"
		# full: a reader keeps -wal and -shm in place (as the daemon does), then the
		# rest of the disk is filled and a write has nowhere to go
		(echo "SELECT count(*) FROM devices;"; sleep 8) | sqlite3 "$mnt/reg.db" >/dev/null &
		sleep 0.5
		dd if=/dev/zero of="$mnt/filler" bs=4k 2>/dev/null
		"$cli" -c /nonexistent -r "$mnt/reg.db" device add full-1 >/dev/null 2>"$mnt/../full.err"
		echo "full rc=$?"
		rm -f "$mnt/filler"
		kill %1 2>/dev/null; wait
		# read-only: the same registry on a read-only mount
		mount -o remount,ro "$mnt" || { echo "remount failed"; exit 9; }
		"$cli" -c /nonexistent -r "$mnt/reg.db" device set lockcli --status disabled >/dev/null 2>"$mnt/../ro.err"
		echo "ro rc=$?"
		umount "$mnt"
	' _ "$d/mnt" "$KGCLI" "$d/reg.db" 2>&1)
	echo "    $(printf '%s' "$out" | tr '\n' ' ') | full: $(cat "$d/full.err" 2>/dev/null) | ro: $(cat "$d/ro.err" 2>/dev/null)"
	[[ "$out" == *"full rc=3"* ]] || { note "device add on a full disk: $out"; return 1; }
	grep -q 'disk is full' "$d/full.err" || { note "full disk: stderr lacks SQLite's 'disk is full': $(cat "$d/full.err")"; return 1; }
	[[ "$out" == *"ro rc=3"* ]] || { note "device set on a read-only mount: $out"; return 1; }
	grep -qiE 'readonly|read-only|unable to open' "$d/ro.err" ||
		{ note "read-only: stderr lacks SQLite's words: $(cat "$d/ro.err")"; return 1; }
}

# A daemon stopping unlinks its socket only if the path still names the socket it
# bound: here someone replaced it (another listener at the same path) meanwhile.
t_foreign_socket_kept() {
	local f="$WORK/foreign.ready" pypid id mark
	rm -f "$SOCK"
	$PY - "$SOCK" "$f" <<'EOF' &
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(sys.argv[1]); s.listen(4)
open(sys.argv[2], "w").write("ready\n")
time.sleep(20)
EOF
	pypid=$!
	KG_PIDS+=("$pypid")
	for ((i = 0; i < 100; i++)); do [ -s "$f" ] && break; sleep 0.05; done
	id=$(sock_id)
	[ -n "$id" ] || { note "the foreign socket was not created"; kill "$pypid"; return 1; }
	mark=$(log_mark)
	stop_gateway
	[ "$(sock_id)" = "$id" ] || { note "the stopping daemon removed a socket it did not bind"; kill "$pypid"; return 1; }
	tail -n +"$((mark + 1))" "$GW_LOG" | grep -q 'no longer the socket we bound; left in place' ||
		{ note "no log line about the socket left in place"; kill "$pypid"; return 1; }
	# while it answers, a new daemon refuses to start on it
	if timeout 20 "$GATED" -c "$GW_CONF" >"$WORK/refused.log" 2>&1; then
		note "a daemon started on a socket someone else answers on"; kill "$pypid"; return 1
	fi
	grep -q 'another ktlsgated (pid '"$pypid"')' "$WORK/refused.log" ||
		{ note "refusal does not name pid $pypid: $(cat "$WORK/refused.log")"; kill "$pypid"; return 1; }
	kill "$pypid"
	wait "$pypid" 2>/dev/null
	forget_pid "$pypid"
	# now stale: replaced as before
	start_gateway || { note "restart over the stale socket failed"; return 1; }
	wait_sock || { note "restarted daemon does not answer"; return 1; }
}

# --- 2. stuck control clients ------------------------------------------------------------

# stuck_clients OUT: start python clients against the control socket in the background
# (PID in STUCK_PID); each writes "name closed_after_ms" to OUT when the daemon drops it.
#   half:  sends half a line and waits
#   drip:  sends one byte every 0.3 s (the old per-read deadline never fired)
#   noread: asks for the session list and does not read for 4 s (the reply is small:
#           this one only shows that nothing waits on it; the write path is the same
#           non-blocking one that the deadline bounds)
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

ALL_TESTS=(t_second_daemon t_registry_lock t_stuck_clients t_client_limit t_request_too_long
	t_registry_mode t_enrol_ok t_locked_cli_fails t_locked_cli_waits t_enrol_locked t_enrol_failed
	t_cli_write_errors t_stale_socket t_foreign_socket_kept)

if ! setup; then
	echo "FAIL setup: could not build the PKI / broker / gateway (log: ${GW_LOG:-none})"
	[ -n "${GW_LOG:-}" ] && tail -20 "$GW_LOG"
	KG_FAILED=1
	exit 1
fi
run_tests
