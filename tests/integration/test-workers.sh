#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# test-workers.sh - per-worker metrics (issue 14, docs/monitoring.md "Workers") against a
# live ktlsgated with 2 workers and mosquitto behind it:
#   t_per_worker_sums     TLS sessions spread by SO_REUSEPORT over both workers: every
#                         ktlsgate_worker_* family adds up to its aggregate (accepts,
#                         handshakes by result, bytes each way, connections, sessions)
#                         in one scrape; the bytes published are counted; both workers
#                         took connections and handshakes
#   t_kernel_relay_bytes  a plain session relayed by the kernel (sockmap, or splice): its
#                         bytes reach its worker's counters, the sums still hold
#   t_cpu_seconds         the CPU seconds of each worker grew with its handshakes and are
#                         the thread's own: between two reads of
#                         /proc/PID/task/TID/stat (utime + stime) of kg-workerN
#   t_session_worker      a held session's worker (session list, JSON and table) is the
#                         worker whose ktlsgate_worker_sessions counts it
#   t_status_per_worker   `ktlsgate status`: one per_worker entry per worker, the same
#                         counters as /metrics, a table in text mode
#   t_imbalance_even      a fresh daemon: no imbalance sample under 50 accepts per worker,
#                         then connections from random ports: under 1.5, equal to max /
#                         mean of the per-worker accepts (the window starts at the start)
#   t_imbalance_hot       a fresh daemon, every connection from the same address and port
#                         (reset after connect, so the 4-tuple is free again): the kernel's
#                         hash sends all to one worker: imbalance 2, the status says so
# Each test prints PASS/FAIL; lib.sh runs ALL_TESTS (KG_ONLY picks some).
# dev_args prints options meant to split into words.
# shellcheck disable=SC2046,SC2034
set -u
. "$(dirname "$0")/lib.sh"

setup() {
	kg_init workers
	# relay = auto (make check-integration pins userspace): plain sessions then go to
	# the kernel (t_kernel_relay_bytes); TLS ones to what the host can do
	unset KG_RELAY
	BK_PORT=$(free_port)
	BK2_PORT=$(free_port)
	GW_PORT=$(free_port)
	GW_MPORT=$(free_port)
	GW_DIR="$WORK/gw"
	# all clients come from 127.0.0.1: no per-source limits in the way of the bursts
	KG_GW_LIMITS=$KG_GW_NO_SOURCE_LIMITS write_gw_conf "$GW_DIR" "$GW_PORT" "$GW_MPORT" "$BK_PORT" "$BK2_PORT"
	GW_CONF="$GW_DIR/ktlsgate.conf"
	GW_LOG="$GW_DIR/gw.log"
	: >"$GW_LOG"
	# a plain listener: its sessions are relayed in the kernel (sockmap, or splice)
	PLAIN_PORT=$(free_port)
	printf '\n[listener closed-net]\ntype = plain\nallow_plain = yes\nlisten = 127.0.0.1:%s\n' "$PLAIN_PORT" >>"$GW_CONF"
	pki_setup "$WORK/pki" || return 1
	kg device add wk-tok --auth token >"$WORK/add.out" 2>/dev/null || return 1
	TOKEN=$(sed -n 's/^token: //p' "$WORK/add.out")
	[ -n "$TOKEN" ] || { echo "device add printed no token" >&2; return 1; }
	device_cert wk-1 "$PKI/factory" || return 1
	kg device add wk-1 >/dev/null || return 1
	device_cert wk-hold "$PKI/factory" || return 1
	kg device add wk-hold >/dev/null || return 1
	start_broker "$BK_PORT" || return 1
	start_gateway || return 1
	wait_port "$GW_MPORT" 5 "$GW_PID" || { echo "no metrics endpoint on $GW_MPORT" >&2; return 1; }
	WK_PY="$WORK/workers.py"
	write_helper >"$WK_PY"
}

# write_helper: the python3 side (stdout).
#   sums FILE                  check sum over workers == aggregate for each family
#   get FILE NAME LABELS...    one sample's value ("absent" if none)
#   byworker FILE NAME [LABELS...]  "worker value" lines of a per-worker family
#   imbalance FILE             max / mean of ktlsgate_worker_accepted_total, 4 decimals
#   threadcpu PID NAME         utime + stime of the thread named NAME, seconds
#   resets PORT N              N connections from one fixed source port, each reset
#   spread PORT N              N plain connects from random ports, closed
write_helper() {
	cat <<'PYEOF'
import errno, os, re, socket, struct, sys, time

def samples(path):
    out = []
    for line in open(path):
        if line.startswith("#") or not line.strip():
            continue
        m = re.match(r'([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)', line)
        if m:
            labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
            out.append((m.group(1), labels, float(m.group(3))))
    return out

def total(ss, name, **want):
    v, found = 0.0, False
    for n, l, x in ss:
        if n == name and all(l.get(k) == w for k, w in want.items()):
            v += x
            found = True
    return v if found else None

def byworker(ss, name, **want):
    res = {}
    for n, l, x in ss:
        if n == name and "worker" in l and all(l.get(k) == w for k, w in want.items()):
            res[int(l["worker"])] = res.get(int(l["worker"]), 0) + x
    return res

# (per-worker family, aggregate family, the label values to compare by)
PAIRS = [
    ("ktlsgate_worker_accepted_total", "ktlsgate_accepted_total", [{}]),
    ("ktlsgate_worker_handshakes_total", "ktlsgate_handshakes_total",
     [{"result": r} for r in ("ok", "failed", "timeout")]),
    ("ktlsgate_worker_bytes_relayed_total", "ktlsgate_bytes_relayed_total",
     [{"direction": d} for d in ("device_to_broker", "broker_to_device")]),
    ("ktlsgate_worker_connections", "ktlsgate_connections", [{}]),
    ("ktlsgate_worker_sessions", "ktlsgate_sessions", [{}]),
]

def cmd_sums(path, workers):
    ss = samples(path)
    bad = []
    for fam, agg, sets in PAIRS:
        for want in sets:
            per = byworker(ss, fam, **want)
            a = total(ss, agg, **want)
            if sorted(per) != list(range(workers)):
                bad.append("%s%s: workers %s, want 0..%d" % (fam, want, sorted(per), workers - 1))
            elif a is None or sum(per.values()) != a:
                bad.append("%s%s: per worker %s (sum %g) != %s %s" % (fam, want, per,
                           sum(per.values()), agg, a))
            else:
                print("ok: %s%s: %s = %g" % (fam, want or "", per, a))
    for b in bad:
        print("BAD " + b)
    return 1 if bad else 0

def main():
    cmd = sys.argv[1]
    if cmd == "sums":
        return cmd_sums(sys.argv[2], int(sys.argv[3]))
    if cmd == "get":
        want = dict(a.split("=", 1) for a in sys.argv[4:])
        v = total(samples(sys.argv[2]), sys.argv[3], **want)
        print("absent" if v is None else "%.6f" % v)
        return 0
    if cmd == "byworker":
        want = dict(a.split("=", 1) for a in sys.argv[4:])
        for w, v in sorted(byworker(samples(sys.argv[2]), sys.argv[3], **want).items()):
            print(w, "%.6f" % v)
        return 0
    if cmd == "imbalance":
        per = byworker(samples(sys.argv[2]), "ktlsgate_worker_accepted_total")
        s = sum(per.values())
        print("%.4f" % (max(per.values()) * len(per) / s) if s else "none")
        return 0
    if cmd == "threadcpu":
        pid, name = sys.argv[2], sys.argv[3]
        hz = os.sysconf("SC_CLK_TCK")
        for tid in os.listdir("/proc/%s/task" % pid):
            try:
                comm = open("/proc/%s/task/%s/comm" % (pid, tid)).read().strip()
                stat = open("/proc/%s/task/%s/stat" % (pid, tid)).read()
            except OSError:
                continue
            if comm == name:
                f = stat[stat.rindex(")") + 2:].split()
                print("%.6f" % ((int(f[11]) + int(f[12])) / hz))   # utime, stime
                return 0
        print("none")
        return 1
    if cmd == "resets":
        port, n = int(sys.argv[2]), int(sys.argv[3])
        src = None
        done = 0
        deadline = time.monotonic() + 60
        while done < n and time.monotonic() < deadline:
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            # RST at close: no TIME_WAIT on either side, the same 4-tuple is free at once
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.bind(("127.0.0.1", src or 0))
            src = s.getsockname()[1]
            s.settimeout(5)
            try:
                s.connect(("127.0.0.1", port))
                done += 1
            except OSError as e:
                if e.errno not in (errno.EADDRNOTAVAIL, errno.EADDRINUSE, errno.ECONNREFUSED):
                    raise
                time.sleep(0.01)
            s.close()
        print("connected %d from port %s" % (done, src))
        return 0 if done == n else 1
    if cmd == "spread":
        port, n = int(sys.argv[2]), int(sys.argv[3])
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.close()
        print("connected %d" % n)
        return 0
    print("unknown command " + cmd)
    return 2

sys.exit(main())
PYEOF
}

wk() {
	timeout 120 $PY "$WK_PY" "$@"
}

# scrape FILE: /metrics into FILE.
scrape() {
	metrics >"$1" 2>&1 || { note "scrape failed: $(head -3 "$1")"; return 1; }
	grep -q '^ktlsgate_workers 2$' "$1" || { note "scrape has no ktlsgate_workers 2: $(head -3 "$1")"; return 1; }
}

# quiet_scrape FILE: a scrape of a quiet daemon: no connection left and two scrapes in
# a row agree on the per-worker families (a scrape reads the workers one after the
# other, so only a quiet daemon's are comparable line by line). 20 s at most.
quiet_scrape() {
	local i prev="$WORK/prev.txt"
	: >"$prev"
	for i in $(seq 1 100); do
		scrape "$1" || return 1
		if [ "$(wk get "$1" ktlsgate_worker_connections)" = 0.000000 ] &&
			cmp -s <(grep '^ktlsgate_worker_[a-z_]*\(total\|connections\|sessions\){' "$1" | grep -v cpu_seconds) \
				<(grep '^ktlsgate_worker_[a-z_]*\(total\|connections\|sessions\){' "$prev" | grep -v cpu_seconds); then
			return 0
		fi
		cp "$1" "$prev"
		sleep 0.2
	done
	note "the daemon did not settle (connections $(wk get "$1" ktlsgate_worker_connections))"
	return 1
}

# restart_gateway: a fresh daemon (the imbalance window starts at the start).
restart_gateway() {
	stop_gateway
	start_gateway || return 1
	wait_port "$GW_MPORT" 5 "$GW_PID" || { note "no metrics endpoint after the restart"; return 1; }
}

MSG_LEN=3000

# --- sums and traffic -----------------------------------------------------------------

t_per_worker_sums() {
	local out bad=0 n ok fail b0 b1 w v msg
	quiet_scrape "$WORK/before.txt" || return 1
	msg=$(head -c $MSG_LEN /dev/zero | tr '\0' 'm')
	# 30 sessions, each a new TCP connection (the kernel hashes each to a worker), each
	# publishing MSG_LEN bytes; the TLS sessions resume after the first
	out=$(kgc resume $(dev_args wk-1) --times 30 --topic itest/wk --msg "$msg" 2>&1)
	ok=$(printf '%s\n' "$out" | grep -c 'connack 0x00')
	[ "$ok" = 30 ] || { note "30 sessions, $ok admitted: $(printf '%s\n' "$out" | grep -v connack | head -3)"; return 1; }
	# and 4 refused handshakes: a TLS client without a certificate
	for _ in 1 2 3 4; do kgc connect --port "$GW_PORT" --ca "$PKI/root/cert.pem" --id nocert >/dev/null 2>&1; done
	quiet_scrape "$WORK/after.txt" || return 1
	out=$(wk sums "$WORK/after.txt" 2)
	printf '%s\n' "$out" | grep -v '^BAD ' | sed 's/^/    /'
	printf '%s\n' "$out" | grep -q '^BAD ' &&
		{ note "$(printf '%s\n' "$out" | grep '^BAD ' | sed 's/^BAD //' | paste -sd ';' -)"; bad=1; }
	# each worker took some of the 34 (all on one: 2^-33 by chance) and did handshakes
	for w in 0 1; do
		b0=$(wk get "$WORK/before.txt" ktlsgate_worker_accepted_total worker=$w)
		b1=$(wk get "$WORK/after.txt" ktlsgate_worker_accepted_total worker=$w)
		echo "    worker $w accepted $b0 -> $b1"
		awk -v a="$b0" -v b="$b1" 'BEGIN { exit !(b > a) }' || { note "worker $w accepted nothing of 34 connections"; bad=1; }
	done
	v=$(awk -v a="$(wk get "$WORK/before.txt" ktlsgate_handshakes_total result=ok)" \
		-v b="$(wk get "$WORK/after.txt" ktlsgate_handshakes_total result=ok)" 'BEGIN { print b - a }')
	[ "$v" = 30 ] || { note "handshakes ok grew by $v, want 30"; bad=1; }
	v=$(awk -v a="$(wk get "$WORK/before.txt" ktlsgate_handshakes_total result=failed)" \
		-v b="$(wk get "$WORK/after.txt" ktlsgate_handshakes_total result=failed)" 'BEGIN { print b - a }')
	[ "$v" = 4 ] || { note "handshakes failed grew by $v, want 4"; bad=1; }
	# the published bytes are in the per-worker device_to_broker counters
	v=$(awk -v a="$(wk get "$WORK/before.txt" ktlsgate_worker_bytes_relayed_total direction=device_to_broker)" \
		-v b="$(wk get "$WORK/after.txt" ktlsgate_worker_bytes_relayed_total direction=device_to_broker)" 'BEGIN { print b - a }')
	echo "    device_to_broker grew by $v bytes (30 x $MSG_LEN published)"
	awk -v v="$v" -v m=$((30 * MSG_LEN)) 'BEGIN { exit !(v >= m) }' || { note "device_to_broker grew by $v, under $((30 * MSG_LEN))"; bad=1; }
	v=$(awk -v a="$(wk get "$WORK/before.txt" ktlsgate_worker_bytes_relayed_total direction=broker_to_device)" \
		-v b="$(wk get "$WORK/after.txt" ktlsgate_worker_bytes_relayed_total direction=broker_to_device)" 'BEGIN { print b - a }')
	# CONNACK and PUBACK come back: 4 bytes each at least
	awk -v v="$v" 'BEGIN { exit !(v >= 30 * 8) }' || { note "broker_to_device grew by $v, under 240"; bad=1; }
	[ $bad = 0 ] || WHY=${WHY:-see above}
	return $bad
}

# --- a kernel-relayed session's bytes ----------------------------------------------------

# A plain session is relayed by the kernel (sockmap here, as root on a kernel with the
# kfunc; splice without it): the daemon reads the kernel's per-session byte counts (at
# a listing, an idle check, the end), and they land in its worker's counters.
t_kernel_relay_bytes() {
	local out bad=0 msg mode v w n0 n1
	quiet_scrape "$WORK/kb0.txt" || return 1
	msg=$(head -c $MSG_LEN /dev/zero | tr '\0' 'k')
	out=$(kgc connect --plain --port "$PLAIN_PORT" --id wk-tok --username "$TOKEN" --topic itest/wk --msg "$msg")
	printf '%s\n' "$out" | grep -q '^connack 0x00' || { note "plain session: $out"; return 1; }
	quiet_scrape "$WORK/kb1.txt" || return 1
	for mode in sockmap splice plain; do
		n0=$(wk get "$WORK/kb0.txt" ktlsgate_sessions_started_total mode=$mode)
		n1=$(wk get "$WORK/kb1.txt" ktlsgate_sessions_started_total mode=$mode)
		[ "$n0" != "$n1" ] && { v=$mode; break; }
	done
	echo "    the plain session ran in mode ${v:-none}"
	case ${v:-none} in sockmap | splice) ;; *) note "the plain session was not kernel-relayed (mode ${v:-none})"; return 1 ;; esac
	out=$(wk sums "$WORK/kb1.txt" 2)
	printf '%s\n' "$out" | grep -q '^BAD ' &&
		{ note "$(printf '%s\n' "$out" | grep '^BAD ' | sed 's/^BAD //' | paste -sd ';' -)"; bad=1; }
	# its worker's device_to_broker counter took the publish
	n0=0
	for w in 0 1; do
		v=$(awk -v a="$(wk get "$WORK/kb0.txt" ktlsgate_worker_bytes_relayed_total worker=$w direction=device_to_broker)" \
			-v b="$(wk get "$WORK/kb1.txt" ktlsgate_worker_bytes_relayed_total worker=$w direction=device_to_broker)" 'BEGIN { print b - a }')
		echo "    worker $w: device_to_broker +$v"
		awk -v v="$v" -v m=$MSG_LEN 'BEGIN { exit !(v >= m) }' && n0=$((n0 + 1))
	done
	[ "$n0" = 1 ] || { note "$n0 workers counted the $MSG_LEN bytes published, want exactly 1"; bad=1; }
	[ $bad = 0 ] || WHY=${WHY:-see above}
	return $bad
}

# --- CPU seconds ----------------------------------------------------------------------

t_cpu_seconds() {
	local bad=0 w hs0 hs1 c0 c1 p0 p1 sc
	[ -s "$WORK/before.txt" ] && [ -s "$WORK/after.txt" ] || { note "no scrapes from t_per_worker_sums"; return 1; }
	for w in 0 1; do
		hs0=$(wk get "$WORK/before.txt" ktlsgate_worker_handshakes_total worker=$w result=ok)
		hs1=$(wk get "$WORK/after.txt" ktlsgate_worker_handshakes_total worker=$w result=ok)
		c0=$(wk get "$WORK/before.txt" ktlsgate_worker_cpu_seconds_total worker=$w)
		c1=$(wk get "$WORK/after.txt" ktlsgate_worker_cpu_seconds_total worker=$w)
		echo "    worker $w: handshakes ok $hs0 -> $hs1, cpu $c0 -> $c1 s"
		case "$c0$c1" in *absent*) note "worker $w: no ktlsgate_worker_cpu_seconds_total"; bad=1; continue ;; esac
		if awk -v a="$hs0" -v b="$hs1" 'BEGIN { exit !(b > a) }'; then
			awk -v a="$c0" -v b="$c1" 'BEGIN { exit !(b > a) }' ||
				{ note "worker $w did handshakes and its CPU seconds did not grow ($c0 -> $c1)"; bad=1; }
		fi
		# the thread's own clock: between two reads of what the kernel says of
		# kg-worker$w (ticks: 1/CLK_TCK each for utime and stime, and a margin)
		p0=$(wk threadcpu "$GW_PID" kg-worker$w)
		scrape "$WORK/cpu.txt" || return 1
		p1=$(wk threadcpu "$GW_PID" kg-worker$w)
		sc=$(wk get "$WORK/cpu.txt" ktlsgate_worker_cpu_seconds_total worker=$w)
		echo "    worker $w: /proc $p0 .. $p1, scrape $sc"
		awk -v a="$p0" -v b="$p1" -v s="$sc" 'BEGIN { exit !(s >= a - 0.03 && s <= b + 0.03) }' ||
			{ note "worker $w: scrape says $sc s, /proc/$GW_PID/task says $p0 .. $p1"; bad=1; }
	done
	[ $bad = 0 ] || WHY=${WHY:-see above}
	return $bad
}

# --- the worker of a session ------------------------------------------------------------

t_session_worker() {
	local pid out w i v table
	# not through kgc (a function: $! would be its subshell, and killing that leaves the
	# client holding the session); timeout passes the TERM on to the client
	timeout 30 $PY "$KGC" connect $(dev_args wk-hold) --hold 20 >"$WORK/hold.out" 2>&1 &
	pid=$!
	for i in $(seq 1 100); do
		out=$(kg session list --json 2>/dev/null)
		w=$($PY -c 'import json,sys
for s in json.loads(sys.argv[1] or "[]"):
    if s["device"] == "wk-hold" and s["state"] == "relaying":
        print(s["worker"])' "$out")
		[ -n "$w" ] && break
		sleep 0.1
	done
	[ -n "$w" ] || { kill "$pid" 2>/dev/null; note "no relaying session of wk-hold in: $out"; return 1; }
	table=$(kg session list)
	scrape "$WORK/hold.txt" || { kill "$pid"; return 1; }
	kill "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	echo "    wk-hold relays on worker $w"
	printf '%s\n' "$table" | sed 's/^/    /'
	printf '%s\n' "$table" | grep -Eq "^ID .* WORKER +PID$" || { note "session list has no WORKER column"; return 1; }
	printf '%s\n' "$table" | grep -Eq "wk-hold .* $w +[0-9-]+\$" || { note "session list's table does not show worker $w for wk-hold"; return 1; }
	v=$(wk get "$WORK/hold.txt" ktlsgate_worker_sessions worker="$w")
	[ "$v" = 1.000000 ] || { note "ktlsgate_worker_sessions{worker=$w} = $v with wk-hold relaying there"; return 1; }
	v=$(wk get "$WORK/hold.txt" ktlsgate_worker_sessions worker=$((1 - w)))
	[ "$v" = 0.000000 ] || { note "ktlsgate_worker_sessions{worker=$((1 - w))} = $v, want 0"; return 1; }
}

# --- ktlsgate status --------------------------------------------------------------------

t_status_per_worker() {
	local out
	quiet_scrape "$WORK/st.txt" || return 1
	out=$(kg status --json) || { note "status failed: $out"; return 1; }
	printf '%s\n' "$out" >"$WORK/status.json"
	$PY - "$WORK/status.json" "$WORK/st.txt" "$WK_PY" <<'EOF' || { WHY="see above"; return 1; }
import json, re, sys
st = json.load(open(sys.argv[1]))
ss = open(sys.argv[2]).read()
def metric(name, **want):
    v = 0
    for m in re.finditer(r'^' + name + r'\{([^}]*)\} (\S+)$', ss, re.M):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        if all(labels.get(k) == w for k, w in want.items()):
            v += float(m.group(2))
    return v
per = st.get("per_worker")
bad = []
if not isinstance(per, list) or [w.get("worker") for w in per] != [0, 1]:
    bad.append("per_worker %r, want workers 0 and 1" % (per,))
else:
    for w in per:
        i = str(w["worker"])
        for key, name, want in (("accepted", "ktlsgate_worker_accepted_total", {}),
                                ("handshakes_ok", "ktlsgate_worker_handshakes_total", {"result": "ok"}),
                                ("handshakes_failed", "ktlsgate_worker_handshakes_total", {"result": "failed"}),
                                ("bytes_up", "ktlsgate_worker_bytes_relayed_total", {"direction": "device_to_broker"}),
                                ("bytes_down", "ktlsgate_worker_bytes_relayed_total", {"direction": "broker_to_device"}),
                                ("sessions", "ktlsgate_worker_sessions", {})):
            m = metric(name, worker=i, **want)
            if w.get(key) != m:
                bad.append("worker %s: status %s = %r, /metrics %s" % (i, key, w.get(key), m))
        if not isinstance(w.get("cpu_s"), (int, float)) or w["cpu_s"] <= 0:
            bad.append("worker %s: cpu_s %r" % (i, w.get("cpu_s")))
    print("    per_worker: %s" % json.dumps(per))
for k in ("accept_imbalance", "accept_window_s"):
    if k not in st:
        bad.append("status has no " + k)
for b in bad:
    print("    " + b)
sys.exit(1 if bad else 0)
EOF
	out=$(kg status) || { note "status (text) failed"; return 1; }
	printf '%s\n' "$out" | grep -Eq '^WORKER +ACCEPTED +HS_OK +HS_FAILED +CONNS +SESSIONS +BYTES_UP +BYTES_DOWN +CPU_S$' ||
		{ note "status has no per-worker table: $out"; return 1; }
	[ "$(printf '%s\n' "$out" | grep -Ec '^[01] +[0-9]+ ')" = 2 ] || { note "status table: not one row per worker: $out"; return 1; }
	printf '%s\n' "$out" | grep -q '^per_worker' && { note "status printed per_worker as a key"; return 1; }
	return 0
}

# --- the accept imbalance ---------------------------------------------------------------

t_imbalance_even() {
	local v want
	restart_gateway || return 1
	# 60 accepts for 2 workers: under 50 each on average, not judged
	wk spread "$GW_PORT" 60 >/dev/null || { note "60 connects failed"; return 1; }
	quiet_scrape "$WORK/imb1.txt" || return 1
	v=$(wk get "$WORK/imb1.txt" ktlsgate_worker_accept_imbalance)
	echo "    60 accepts: imbalance $v"
	[ "$v" = absent ] || { note "an imbalance ($v) from 60 accepts on 2 workers"; return 1; }
	grep -q '^# TYPE ktlsgate_worker_accept_imbalance gauge$' "$WORK/imb1.txt" || { note "no # TYPE for the imbalance"; return 1; }
	wk spread "$GW_PORT" 100 >/dev/null || { note "100 connects failed"; return 1; }
	quiet_scrape "$WORK/imb2.txt" || return 1
	v=$(wk get "$WORK/imb2.txt" ktlsgate_worker_accept_imbalance)
	want=$(wk imbalance "$WORK/imb2.txt")
	echo "    160 accepts ($(wk byworker "$WORK/imb2.txt" ktlsgate_worker_accepted_total | tr '\n' ' ')): imbalance $v, max/mean $want"
	[ "$v" != absent ] || { note "no imbalance sample after 160 accepts"; return 1; }
	awk -v v="$v" -v w="$want" 'BEGIN { exit !(v - w < 0.0002 && w - v < 0.0002) }' ||
		{ note "imbalance $v, the per-worker accepts say $want"; return 1; }
	# 160 random ports over 2 workers: 1.5 would be 120/40, some 6 sigma away
	awk -v v="$v" 'BEGIN { exit !(v >= 1 && v < 1.5) }' || { note "imbalance $v for a random spread"; return 1; }
}

t_imbalance_hot() {
	local v want out
	restart_gateway || return 1
	# one 4-tuple, so one hash: every connection to the same worker
	out=$(wk resets "$GW_PORT" 150) || { note "resets: $out"; return 1; }
	echo "    $out"
	quiet_scrape "$WORK/imb3.txt" || return 1
	v=$(wk get "$WORK/imb3.txt" ktlsgate_worker_accept_imbalance)
	want=$(wk imbalance "$WORK/imb3.txt")
	echo "    accepts by worker: $(wk byworker "$WORK/imb3.txt" ktlsgate_worker_accepted_total | tr '\n' ' '); imbalance $v, max/mean $want"
	[ "$v" != absent ] || { note "no imbalance sample after 150 accepts"; return 1; }
	awk -v v="$v" -v w="$want" 'BEGIN { exit !(v - w < 0.0002 && w - v < 0.0002) }' ||
		{ note "imbalance $v, the per-worker accepts say $want"; return 1; }
	awk -v v="$v" 'BEGIN { exit !(v > 1.9) }' || { note "imbalance $v with every connection on one 4-tuple, want 2"; return 1; }
	out=$(kg status --json) || { note "status failed"; return 1; }
	v=$($PY -c 'import json,sys; print(json.loads(sys.argv[1])["accept_imbalance"])' "$out")
	echo "    status accept_imbalance $v"
	awk -v v="$v" -v w="$want" 'BEGIN { exit !(v - w < 0.001 && w - v < 0.001) }' ||
		{ note "status accept_imbalance $v, want $want"; return 1; }
}

# a daemon that died during a test fails it
after_each() {
	kill -0 "$GW_PID" 2>/dev/null || { echo "    ktlsgated died; log:"; tail -20 "$GW_LOG"; return 1; }
}

ALL_TESTS=(t_per_worker_sums t_cpu_seconds t_kernel_relay_bytes t_session_worker t_status_per_worker t_imbalance_even t_imbalance_hot)

if ! setup; then
	echo "FAIL setup"
	exit 1
fi
run_tests
