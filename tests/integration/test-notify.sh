#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# test-notify.sh - ktlsgated under systemd's notify protocol (issue 12, docs/systemd.md):
# a python listener plays the service manager on an AF_UNIX datagram socket
# (NOTIFY_SOCKET) and records every message with its arrival time and sender pid; the
# daemon must send READY=1 only once its listener accepts (the listener itself connects
# the moment READY arrives), STATUS= with the live session count, RELOADING=1 (with
# MONOTONIC_USEC=) then READY=1 around SIGHUP and `ktlsgate reload`, WATCHDOG=1 at half
# of WATCHDOG_USEC, STOPPING=1 on TERM. And the journal's side: with JOURNAL_STREAM
# naming stderr but no journald (this container), every line still reaches stderr; with
# JOURNAL_STREAM naming another file, stderr is unchanged.
# Real processes only: ktlsgated, mosquitto, python clients.
# Prints PASS/FAIL/SKIP per test; exits non-zero if any failed.
# dev_args prints options meant to split into words; lib.sh reads ALL_TESTS and KG_FAILED.
# shellcheck disable=SC2046,SC2034
set -u
. "$(dirname "$0")/lib.sh"

# Watchdog interval given to the daemon: it pings every WD_USEC/2.
WD_USEC=4000000

# The service manager's side: bind NOTIFY_SOCKET, log each datagram as one JSON line
# {"t": monotonic seconds, "pid": sender, "msg": text}; on the first READY=1 connect to
# the gate's port at once and log {"probe": "ok"} or the error.
write_listener() {
	cat >"$WORK/notify_listen.py" <<'EOF'
import json, os, socket, struct, sys, time
path, out, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
s.bind(path)
f = open(out, "a", buffering=1)
probed = False
while True:
    msg, anc, _, _ = s.recvmsg(4096, socket.CMSG_SPACE(12))
    pid = -1
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            pid = struct.unpack("iII", data[:12])[0]
    text = msg.decode(errors="replace")
    f.write(json.dumps({"t": time.monotonic(), "pid": pid, "msg": text}) + "\n")
    if not probed and "READY=1" in text.split("\n"):
        probed = True
        try:
            c = socket.create_connection(("127.0.0.1", port), timeout=2)
            c.close()
            r = "ok"
        except OSError as e:
            r = "error: %s" % e
        f.write(json.dumps({"t": time.monotonic(), "probe": r}) + "\n")
EOF
}

# nmsg: the number of lines recorded so far (checks look after such a mark).
nmsg() {
	wc -l <"$NLOG"
}

# wait_msg MARK FIELD [SECONDS]: until a message after line MARK has the line FIELD
# (e.g. READY=1, or a prefix like STATUS=1 session); prints that message's line number.
wait_msg() {
	local i n
	for ((i = 0; i < ${3:-10} * 10; i++)); do
		n=$($PY - "$NLOG" "$1" "$2" <<'EOF'
import json, sys
log, mark, want = sys.argv[1], int(sys.argv[2]), sys.argv[3]
for i, line in enumerate(open(log)):
    if i < mark:
        continue
    m = json.loads(line).get("msg", "")
    if any(l == want or (want.endswith("*") and l.startswith(want[:-1])) for l in m.split("\n")):
        print(i + 1)
        break
EOF
)
		[ -n "$n" ] && { echo "$n"; return 0; }
		sleep 0.1
	done
	return 1
}

# msg_at LINE: the message text of recorded line LINE (1-based).
msg_at() {
	sed -n "${1}p" "$NLOG" | $PY -c 'import json,sys; print(json.loads(sys.stdin.read()).get("msg",""))'
}

# start_notified: the gate with NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID = its own
# pid (a subshell that execs the daemon keeps its pid, so $BASHPID is the daemon's).
start_notified() {
	(
		export NOTIFY_SOCKET="$NSOCK" WATCHDOG_USEC=$WD_USEC
		export WATCHDOG_PID=$BASHPID
		exec "$GATED" -c "$GW_CONF" 2>>"$GW_LOG" >>"$GW_LOG"
	) &
	GW_PID=$!
	KG_PIDS+=("$GW_PID")
}

setup() {
	kg_init notify
	BK_PORT=$(free_port)
	BK2_PORT=$(free_port)
	GW_PORT=$(free_port)
	GW_MPORT=$(free_port)
	GW_DIR="$WORK/gw"
	write_gw_conf "$GW_DIR" "$GW_PORT" "$GW_MPORT" "$BK_PORT" "$BK2_PORT"
	GW_CONF="$GW_DIR/ktlsgate.conf"
	GW_LOG="$GW_DIR/gw.log"
	NSOCK="$WORK/notify.sock"
	NLOG="$WORK/notify.log"
	: >"$GW_LOG"
	: >"$NLOG"
	pki_setup "$WORK/pki" || return 1
	device_cert dev1 "$PKI/factory" || return 1
	kg device add dev1 >/dev/null || { echo "device add dev1 failed" >&2; return 1; }
	start_broker "$BK_PORT" || return 1
	write_listener
	timeout 600 $PY "$WORK/notify_listen.py" "$NSOCK" "$NLOG" "$GW_PORT" &
	KG_PIDS+=("$!")
	local i
	for ((i = 0; i < 50; i++)); do
		[ -S "$NSOCK" ] && break
		sleep 0.1
	done
	[ -S "$NSOCK" ] || { echo "notify listener did not bind $NSOCK" >&2; return 1; }
	start_notified
}

t_ready_after_listen() {
	local n msg probe senders
	n=$(wait_msg 0 READY=1 20) || { note "no READY=1 within 20 s"; return 1; }
	msg=$(msg_at "$n")
	echo "    READY message: $(echo "$msg" | tr '\n' '|')"
	# the first message is READY (nothing before it), with a STATUS= of the counts
	[ "$n" = 1 ] || { note "READY=1 is message $n, not the first"; return 1; }
	echo "$msg" | grep -qx 'STATUS=0 session(s) (ktls_splice 0, ktls_tx 0, userspace 0, userspace_ssl 0, sockmap 0, splice 0, plain 0), 0 handshake(s) in flight, 0 connection(s)' ||
		{ note "READY without the expected STATUS=: $msg"; return 1; }
	# the listener connected the moment READY arrived
	local i
	for ((i = 0; i < 50; i++)); do
		probe=$(grep '"probe"' "$NLOG" | $PY -c 'import json,sys; print(json.loads(sys.stdin.readline())["probe"])' 2>/dev/null)
		[ -n "$probe" ] && break
		sleep 0.1
	done
	[ -n "$probe" ] || { note "the listener recorded no connect probe"; return 1; }
	[ "$probe" = ok ] || { note "connect right after READY=1: $probe"; return 1; }
	local got
	got=$(kgc connect $(dev_args dev1))
	[ "$got" = "connack 0x00" ] || { note "device after READY: '$got'"; return 1; }
	# every message came from the daemon itself (NotifyAccess=main)
	senders=$($PY -c 'import json,sys
print(" ".join(sorted({str(json.loads(l)["pid"]) for l in open(sys.argv[1]) if "msg" in l})))' "$NLOG")
	[ "$senders" = "$GW_PID" ] || { note "senders '$senders', daemon $GW_PID"; return 1; }
}

t_status_sessions() {
	local mark n hold
	mark=$(nmsg)
	# timeout passes our TERM on to the client: the session ends when we say
	timeout 40 $PY "$KGC" connect $(dev_args dev1) --hold 30 >"$WORK/hold.out" 2>&1 &
	hold=$!
	# refreshed at most every 5 s: allow three periods on a loaded machine
	n=$(wait_msg "$mark" 'STATUS=1 session(s)*' 20) ||
		{ kill "$hold" 2>/dev/null; note "no STATUS= with 1 session within 20 s: $(tail -3 "$NLOG")"; return 1; }
	echo "    $(msg_at "$n")"
	msg_at "$n" | grep -q '), 0 handshake(s) in flight, 1 connection(s)$' ||
		{ kill "$hold" 2>/dev/null; note "status: $(msg_at "$n")"; return 1; }
	kill "$hold" 2>/dev/null
	wait "$hold" 2>/dev/null
	mark=$(nmsg)
	n=$(wait_msg "$mark" 'STATUS=0 session(s)*' 20) ||
		{ note "no STATUS= back to 0 sessions within 20 s"; return 1; }
}

# reload_cycle HOW EXPECTED_STATUS: RELOADING=1 with MONOTONIC_USEC=, then READY=1
# with STATUS=EXPECTED_STATUS (a prefix ending in *), in that order.
reload_cycle() {
	local how=$1 want=$2 mark r1 r2 msg
	mark=$(nmsg)
	case $how in
	hup) kill -HUP "$GW_PID" ;;
	control) kg reload >"$WORK/reload.out" 2>&1 ;;
	esac
	r1=$(wait_msg "$mark" RELOADING=1 10) || { note "$how: no RELOADING=1"; return 1; }
	msg=$(msg_at "$r1")
	echo "$msg" | grep -qE '^MONOTONIC_USEC=[0-9]+$' || { note "$how: no MONOTONIC_USEC=: $msg"; return 1; }
	r2=$(wait_msg "$r1" READY=1 10) || { note "$how: no READY=1 after RELOADING=1"; return 1; }
	msg=$(msg_at "$r2")
	echo "    $how: $(echo "$msg" | tr '\n' '|')"
	echo "$msg" | grep -q "^STATUS=${want%\*}" || { note "$how: READY status: $msg"; return 1; }
}

t_reload() {
	reload_cycle hup reloaded || return 1
	reload_cycle control reloaded || return 1
	# a reload that fails says so, and the daemon is READY again on the old config
	cp "$GW_CONF" "$WORK/good.conf"
	echo "no_such_key = 1" >>"$GW_CONF"
	reload_cycle hup 'reload failed, the previous configuration stays:*'
	local rc=$?
	cp "$WORK/good.conf" "$GW_CONF"
	[ $rc -eq 0 ] || return 1
	local got
	got=$(kgc connect $(dev_args dev1))
	[ "$got" = "connack 0x00" ] || { note "device after the failed reload: '$got'"; return 1; }
}

t_watchdog() {
	local mark=$(($(nmsg)))
	sleep 12
	# intervals between the pings recorded in those 12 s: WD_USEC/2 = 2 s each
	local stats
	stats=$($PY - "$NLOG" "$mark" <<'EOF'
import json, sys
ts = [json.loads(l)["t"] for i, l in enumerate(open(sys.argv[1]))
      if i >= int(sys.argv[2]) and "WATCHDOG=1" in json.loads(l).get("msg", "").split("\n")]
gaps = sorted(b - a for a, b in zip(ts, ts[1:]))
print(len(ts), "%.2f" % (gaps[len(gaps) // 2] if gaps else -1), "%.2f" % (gaps[-1] if gaps else -1))
EOF
)
	read -r count median maxgap <<<"$stats"
	echo "    $count pings in 12 s, median gap ${median}s, longest ${maxgap}s"
	[ -n "$count" ] || { note "no ping statistics"; return 1; }
	# 6 expected; a loaded machine delays some, none may come early
	[ "$count" -ge 4 ] && [ "$count" -le 7 ] || { note "$count pings in 12 s (expected ~6)"; return 1; }
	awk -v m="$median" -v g="$maxgap" 'BEGIN { exit !(m >= 1.8 && m <= 3.0 && g < 4.0) }' ||
		{ note "median gap $median s, longest $maxgap s (expected 2, below 4)"; return 1; }
}

# Freeze one worker thread of PID for SECONDS: ptrace(PTRACE_SEIZE + PTRACE_INTERRUPT)
# stops that thread alone (a SIGSTOP would stop the whole process). A worker is the
# thread the daemon named kg-workerN.
write_freezer() {
	cat >"$WORK/freeze.py" <<'FZEOF'
import ctypes, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
PTRACE_DETACH, PTRACE_SEIZE, PTRACE_INTERRUPT, WALL = 17, 0x4206, 0x4207, 0x40000000
pid, secs = int(sys.argv[1]), float(sys.argv[2])
tid = None
for _ in range(50):
    for t in sorted(os.listdir("/proc/%d/task" % pid)):
        try:
            comm = open("/proc/%d/task/%s/comm" % (pid, t)).read().strip()
        except OSError:
            continue
        if comm.startswith("kg-worker"):
            tid = int(t)
            break
    if tid:
        break
    time.sleep(0.1)
if tid is None:
    print("no worker thread found", flush=True)
    sys.exit(1)
if libc.ptrace(PTRACE_SEIZE, tid, None, None) != 0:
    print("PTRACE_SEIZE: %s" % os.strerror(ctypes.get_errno()), flush=True)
    sys.exit(1)
libc.ptrace(PTRACE_INTERRUPT, tid, None, None)
os.waitpid(tid, WALL)
print("frozen %d %.3f" % (tid, time.monotonic()), flush=True)
time.sleep(secs)
libc.ptrace(PTRACE_DETACH, tid, None, None)
print("thawed %.3f" % time.monotonic(), flush=True)
FZEOF
}

# A stalled worker withholds the pings (systemd would restart the daemon after
# WatchdogSec=); once it runs again they resume. The stall limit is WD_USEC/2 = 2 s.
t_watchdog_stalled_worker() {
	local mark out frozen thawed res
	write_freezer
	mark=$(nmsg)
	out=$($PY "$WORK/freeze.py" "$GW_PID" 8) || { note "freezer: $out"; return 1; }
	echo "    $(echo "$out" | tr '\n' ' ')"
	frozen=$(echo "$out" | awk '/^frozen/ { print $3 }')
	thawed=$(echo "$out" | awk '/^thawed/ { print $2 }')
	[ -n "$frozen" ] && [ -n "$thawed" ] || { note "freezer output: $out"; return 1; }
	sleep 5
	# pings in the frozen window after the stall limit (+1 s of slack for the loop),
	# and after the thaw
	res=$($PY - "$NLOG" "$mark" "$frozen" "$thawed" <<'EOF'
import json, sys
log, mark, fr, th = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
ts = [json.loads(l)["t"] for i, l in enumerate(open(log))
      if i >= mark and "WATCHDOG=1" in json.loads(l).get("msg", "").split("\n")]
print(sum(1 for t in ts if fr + 3.0 < t < th), sum(1 for t in ts if t > th))
EOF
)
	read -r during after <<<"$res"
	echo "    pings while frozen (after the stall limit): $during, after the thaw: $after"
	[ -n "$during" ] && [ -n "$after" ] || { note "no ping counts: $res"; return 1; }
	[ "$during" = 0 ] || { note "$during ping(s) while a worker was frozen"; return 1; }
	[ "$after" -ge 1 ] || { note "no ping after the worker ran again"; return 1; }
	grep -q "watchdog ping withheld" "$GW_LOG" || { note "no 'watchdog ping withheld' log line"; return 1; }
}

t_stopping() {
	local mark n
	mark=$(nmsg)
	kill -TERM "$GW_PID"
	n=$(wait_msg "$mark" STOPPING=1 10) || { note "no STOPPING=1 after TERM"; return 1; }
	timeout 10 tail --pid="$GW_PID" -f /dev/null || { note "daemon still running 10 s after TERM"; return 1; }
	forget_pid "$GW_PID"
	GW_PID=""
	# nothing after STOPPING: no READY, no watchdog ping from a dying daemon
	local extra
	extra=$(tail -n +$((n + 1)) "$NLOG" | grep -c '"msg"')
	[ "$extra" = 0 ] || { note "messages after STOPPING=1: $(tail -n +$((n + 1)) "$NLOG")"; return 1; }
}

# start_plain ENV...: the gate with extra environment, stderr to its own file; waits
# for the listener. Sets PLAIN_PID and PLAIN_ERR.
start_plain() {
	stop_gateway   # the notified daemon, if t_stopping did not run
	PLAIN_ERR="$WORK/plain.$RANDOM.err"
	: >"$PLAIN_ERR"
	env -u NOTIFY_SOCKET "$@" "$GATED" -c "$GW_CONF" 2>>"$PLAIN_ERR" &
	PLAIN_PID=$!
	KG_PIDS+=("$PLAIN_PID")
	wait_port "$GW_PORT" 10 "$PLAIN_PID" || { note "gate did not start: $(tail -3 "$PLAIN_ERR")"; return 1; }
}

stop_plain() {
	kill "$PLAIN_PID" 2>/dev/null
	timeout 10 tail --pid="$PLAIN_PID" -f /dev/null
	forget_pid "$PLAIN_PID"
}

# plain_lines_ok: the stderr lines of a start + one device decision, in today's format.
plain_lines_ok() {
	local i
	kgc connect $(dev_args dev1) >/dev/null
	for ((i = 0; i < 30; i++)); do
		grep -q '"device":"dev1"' "$PLAIN_ERR" && break
		sleep 0.1
	done
	grep -qE '^ktlsgated: info: listening on 127\.0\.0\.1:[0-9]+ \(2 workers' "$PLAIN_ERR" ||
		{ note "no 'ktlsgated: info: listening' line: $(head -3 "$PLAIN_ERR")"; return 1; }
	grep -qE '^\{"ts":"[^"]+","event":"decision","conn":[0-9]+,"peer":"127\.0\.0\.1:[0-9]+","device":"dev1",.*"decision":"allow","reason":"ok"' "$PLAIN_ERR" ||
		{ note "no audit JSON line for dev1: $(grep dev1 "$PLAIN_ERR" | head -2)"; return 1; }
}

# JOURNAL_STREAM names another file: not the journal; stderr exactly as without it.
t_journal_stream_other() {
	start_plain JOURNAL_STREAM=1:1 || return 1
	plain_lines_ok
	local rc=$?
	stop_plain
	return $rc
}

# JOURNAL_STREAM names our stderr but no journald listens here (no socket): libsystemd
# would drop every entry silently, so the daemon must stay on stderr, byte for byte.
t_journal_no_journald() {
	[ -S /run/systemd/journal/socket ] &&
		{ skip "journald runs here: the entries go to the journal (the packaged-VM test checks them)"; return 77; }
	stop_gateway
	PLAIN_ERR="$WORK/plain.nojournald.err"
	: >"$PLAIN_ERR"
	local js
	js=$(stat -c '%d:%i' "$PLAIN_ERR")
	# the same file, opened by the shell: stderr's device and inode are the file's
	env -u NOTIFY_SOCKET JOURNAL_STREAM="$js" "$GATED" -c "$GW_CONF" 2>>"$PLAIN_ERR" &
	PLAIN_PID=$!
	KG_PIDS+=("$PLAIN_PID")
	wait_port "$GW_PORT" 10 "$PLAIN_PID" || { note "gate did not start: $(tail -3 "$PLAIN_ERR")"; return 1; }
	plain_lines_ok
	local rc=$?
	stop_plain
	return $rc
}

# The runner of t_journald_fields, inside the private mount namespace: tmpfs over
# journald's directories, journald, the gate with stderr a journal stream; on $jd/stop,
# stop the gate and dump the journal as JSON.
write_journal_runner() {
	cat >"$1/run.sh" <<'JDEOF'
set -u
jd=$1 gated=$2 conf=$3
mount -t tmpfs tmpfs /run/systemd && mount -t tmpfs tmpfs /run/log &&
	mkdir -p /var/log/journal && mount -t tmpfs tmpfs /var/log/journal || exit 9
/lib/systemd/systemd-journald >"$jd/journald.out" 2>&1 &
J=$!
for i in $(seq 100); do
	[ -S /run/systemd/journal/socket ] && [ -S /run/systemd/journal/stdout ] && break
	sleep 0.1
done
# JOURNAL_STREAM as systemd sets it: the stream socket's device and inode
systemd-cat -t ktlsgated-stream bash -c \
	'export JOURNAL_STREAM=$(stat -L -c "%d:%i" /proc/self/fd/2); exec "$0" -c "$1"' \
	"$gated" "$conf" &
G=$!
for i in $(seq 600); do [ -e "$jd/stop" ] && break; sleep 0.1; done
kill $G
wait $G
sleep 0.5
journalctl --no-pager -o json >"$jd/journal.json" 2>"$jd/journalctl.err"
kill $J
wait $J
JDEOF
}

# Checks the journal dump: prints "ok ..." or why not.
write_journal_check() {
	cat >"$1/check.py" <<'JDEOF'
import json, sys
ents = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
mine = [e for e in ents if e.get("SYSLOG_IDENTIFIER") in ("ktlsgated", "ktlsgated-stream")]
def fail(why):
    print(why)
    sys.exit(0)
if not mine:
    fail("no entries of ktlsgated among %d" % len(ents))
stream = [e.get("MESSAGE") for e in mine if e.get("_TRANSPORT") != "journal"]
if stream:
    fail("stream (unstructured) entries: %r" % stream[:3])
logs = [e for e in mine if "KTLSGATE_AUDIT" not in e]
listen = [e for e in logs if str(e.get("MESSAGE", "")).startswith("listening on 127.0.0.1:")]
if not listen:
    fail("no 'listening on' log entry: %r" % [e.get("MESSAGE") for e in logs][:5])
e = listen[0]
if e.get("PRIORITY") != "6" or e.get("SYSLOG_IDENTIFIER") != "ktlsgated":
    fail("log entry: PRIORITY=%s SYSLOG_IDENTIFIER=%s" % (e.get("PRIORITY"), e.get("SYSLOG_IDENTIFIER")))
aud = [e for e in mine if e.get("KTLSGATE_AUDIT") == "1" and e.get("DEVICE_ID") == "dev1"]
if not aud:
    fail("no audit entry with DEVICE_ID=dev1")
a = aud[0]
want = {"DECISION": "allow", "REASON": "ok", "KTLSGATE_EVENT": "decision", "PRIORITY": "6",
        "SYSLOG_IDENTIFIER": "ktlsgated"}
bad = {k: a.get(k) for k, v in want.items() if a.get(k) != v}
if bad:
    fail("audit fields differ: %r" % bad)
if not str(a.get("PEER", "")).startswith("127.0.0.1:"):
    fail("PEER=%r" % a.get("PEER"))
m = json.loads(a["MESSAGE"])
if m.get("device") != "dev1" or m.get("decision") != "allow" or m.get("peer") != a["PEER"]:
    fail("MESSAGE is not the audit JSON line: %r" % a["MESSAGE"])
print("ok %d entries; audit %s" % (len(mine), " ".join("%s=%s" % (k, a[k]) for k in
      ("DEVICE_ID", "REASON", "PEER", "DECISION"))))
JDEOF
}

# A real journald in a private mount namespace (tmpfs over /run/systemd, /run/log and
# /var/log/journal: a host journal, if any, is not touched); the gate's stderr is a
# journal stream (systemd-cat) and JOURNAL_STREAM names it, as systemd sets it for a
# unit with StandardError=journal. Its log lines and audit records must arrive as
# native entries (_TRANSPORT=journal) with the structured fields, none as stream text.
t_journald_fields() {
	[ "$(id -u)" -eq 0 ] || { skip "needs root for a private mount namespace"; return 77; }
	command -v unshare >/dev/null && command -v systemd-cat >/dev/null &&
		[ -x /lib/systemd/systemd-journald ] ||
		{ skip "unshare, systemd-cat or systemd-journald missing"; return 77; }
	stop_gateway
	local jd="$WORK/jd" got res runner
	mkdir -p "$jd" || return 1
	write_journal_runner "$jd"
	write_journal_check "$jd"
	timeout 90 unshare --mount --propagation private bash "$jd/run.sh" "$jd" "$GATED" "$GW_CONF" &
	runner=$!
	KG_PIDS+=("$runner")
	wait_port "$GW_PORT" 15 ||
		{ touch "$jd/stop"; note "gate did not start under the journal: $(head -3 "$jd/journald.out")"; return 1; }
	got=$(kgc connect $(dev_args dev1))
	touch "$jd/stop"
	wait "$runner"
	forget_pid "$runner"
	[ "$got" = "connack 0x00" ] || { note "device under the journal: '$got'"; return 1; }
	[ -s "$jd/journal.json" ] ||
		{ note "no journal read back: $(cat "$jd/journalctl.err" "$jd/journald.out" | head -3)"; return 1; }
	res=$($PY "$jd/check.py" "$jd/journal.json")
	echo "    $res"
	[ "${res%% *}" = ok ] || { note "$res"; return 1; }
}

ALL_TESTS=(t_ready_after_listen t_status_sessions t_reload t_watchdog t_watchdog_stalled_worker t_stopping
	t_journal_stream_other t_journal_no_journald t_journald_fields)

if ! setup; then
	echo "FAIL setup: could not build the PKI / broker / gateway (log: ${GW_LOG:-none})"
	[ -n "${GW_LOG:-}" ] && tail -20 "$GW_LOG"
	KG_FAILED=1
	exit 1
fi
run_tests
