#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-2-Clause
"""fdstore_peer.py - systemd's side of a restart with the file descriptor store, for
ktlsgated on a host where systemd is not PID 1 (tests/integration/test-fdstore.sh; the
real systemd does the same in tests/packaging/boot/checks.sh, check "restart").

The protocols are sd_notify(3) (READY=1, FDSTORE=1 / FDSTOREREMOVE=1 with FDNAME= and
SCM_RIGHTS) and sd_listen_fds(3) (LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES, descriptors
from 3). This script:
  1. starts ktlsgated with NOTIFY_SOCKET, keeps what it stores, waits for READY=1;
  2. stops it (SIGTERM, waits for the exit) while holding the stored sockets, as
     systemd does between the stop and the start of `systemctl restart`;
  3. opens --gap TCP connections to --port meanwhile (refused without a store);
  4. starts ktlsgated again with the stored sockets (and --stray: a listening socket on
     another port, named kg-listen, which it must close) and waits for READY=1;
  5. on each connection opened in the gap: TLS with the device certificate, an MQTT
     3.1.1 CONNECT, and the CONNACK;
  6. stops the second daemon.
With --before CMD / --after CMD, a shell command runs after the first daemon's READY=1
(live sessions opened through it) and after the second's (they checked): the live
sessions the first stored at its stop (kg-sess sockets and the kg-sessions records) are
passed to the second like the listeners (lines stored1_sessions, stored1_records,
stored2_sessions, before_rc, after_rc).
With --metrics-port, a /metrics request is also sent in the gap and its answer read
after the second start. Prints "key value" lines: pid1, stored1, stored1_metrics,
exit1, gap_ok, gap_failed, pid2, stored2, removed2, served, refused, scrape_status,
stored2_metrics, stray_port, exit2. Exit 0 when it ran to the end (the
verdicts are the caller's), 2 on a harness failure (a line "error ..." says what).
"""
import argparse, array, os, select, signal, socket, ssl, struct, subprocess, sys, time


def say(k, v):
    print("%s %s" % (k, v), flush=True)


class Notify:
    def __init__(self, path):
        self.path = path
        if os.path.exists(path):
            os.unlink(path)
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.s.bind(path)
        self.store = []       # (name, fd)
        self.removed = 0
        self.ready = False

    def pump(self, timeout):
        """Read notify messages for up to timeout s (until READY=1 if not yet)."""
        end = time.time() + timeout
        while time.time() < end:
            r, _, _ = select.select([self.s], [], [], max(0.0, end - time.time()))
            if not r:
                break
            fds = array.array("i")
            msg, anc, _, _ = self.s.recvmsg(4096, socket.CMSG_SPACE(253 * fds.itemsize))
            for lvl, typ, data in anc:
                if lvl == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                    fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
            kv = dict(l.split("=", 1) for l in msg.decode().split("\n") if "=" in l)
            name = kv.get("FDNAME", "stored")
            if kv.get("FDSTOREREMOVE") == "1":
                keep = []
                for n, fd in self.store:
                    if n == name:
                        os.close(fd)
                        self.removed += 1
                    else:
                        keep.append((n, fd))
                self.store = keep
            if kv.get("FDSTORE") == "1":
                for fd in fds:
                    self.store.append((name, fd))
            else:
                for fd in fds:
                    os.close(fd)
            if kv.get("READY") == "1":
                self.ready = True
                return True
        return self.ready


def start(gated, conf, log, notify, passed):
    """Fork and exec ktlsgated; passed: [(name, fd)] as LISTEN_FDS from 3."""
    pid = os.fork()
    if pid == 0:
        try:
            logfd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            high = [os.dup(fd) for _, fd in passed]   # out of the way of 3..
            moved = [os.dup2(h, 200 + i) or (200 + i) for i, h in enumerate(high)]
            for i, fd in enumerate(moved):
                os.dup2(fd, 3 + i)
            os.dup2(logfd, 1)
            os.dup2(logfd, 2)
            os.closerange(3 + len(passed), 65536)
            env = dict(os.environ)
            env["NOTIFY_SOCKET"] = notify
            if passed:
                env["LISTEN_PID"] = str(os.getpid())
                env["LISTEN_FDS"] = str(len(passed))
                env["LISTEN_FDNAMES"] = ":".join(n for n, _ in passed)
            os.execve(gated, [gated, "-c", conf], env)
        finally:
            os._exit(127)
    return pid


def wait_exit(pid, secs):
    end = time.time() + secs
    while time.time() < end:
        p, st = os.waitpid(pid, os.WNOHANG)
        if p == pid:
            return os.waitstatus_to_exitcode(st)
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return "timeout"


def mqtt_connect(cid):
    vh = b"\x00\x04MQTT\x04\x02\x00\x3c"
    pl = struct.pack("!H", len(cid)) + cid.encode()
    body = vh + pl
    return b"\x10" + bytes([len(body)]) + body


def main():
    ap = argparse.ArgumentParser()
    for o in ("gated", "conf", "log", "dir", "ca", "cert", "key", "id"):
        ap.add_argument("--" + o, required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--gap", type=int, default=20)
    ap.add_argument("--stray", action="store_true")
    ap.add_argument("--metrics-port", type=int, default=0)
    ap.add_argument("--before", help="shell command after the first READY=1")
    ap.add_argument("--after", help="shell command after the second READY=1")
    a = ap.parse_args()

    nt = Notify(os.path.join(a.dir, "notify.sock"))
    pid1 = start(a.gated, a.conf, a.log, nt.path, [])
    say("pid1", pid1)
    if not nt.pump(20):
        say("error", "the first daemon never said READY=1")
        os.kill(pid1, signal.SIGKILL)
        return 2
    nt.pump(0.5)   # FDSTORE follows READY
    say("stored1", len([1 for n, _ in nt.store if n == "kg-listen"]))
    say("stored1_metrics", len([1 for n, _ in nt.store if n == "kg-metrics"]))
    if a.before:
        say("before_rc", subprocess.call(a.before, shell=True))
    os.kill(pid1, signal.SIGTERM)
    say("exit1", wait_exit(pid1, 15))
    nt.pump(0.5)   # what it stored while stopping
    say("stored1_sessions", len([1 for n, _ in nt.store if n == "kg-sess"]))
    say("stored1_records", len([1 for n, _ in nt.store if n == "kg-sessions"]))

    # the gap: no ktlsgated runs; the stored sockets queue what connects
    gap, failed = [], 0
    for _ in range(a.gap):
        s = socket.socket()
        s.settimeout(3)
        try:
            s.connect(("127.0.0.1", a.port))
            gap.append(s)
        except OSError as e:
            failed += 1
            say("gap_error", e.__class__.__name__)
            s.close()
    say("gap_ok", len(gap))
    say("gap_failed", failed)
    scrape = None
    if a.metrics_port:
        # a scrape while no daemon runs: its request waits in the queue
        scrape = socket.socket()
        scrape.settimeout(10)
        try:
            scrape.connect(("127.0.0.1", a.metrics_port))
            scrape.sendall(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        except OSError as e:
            say("scrape_error", e.__class__.__name__)
            scrape = None

    passed = list(nt.store)
    stray = None
    if a.stray:
        stray = socket.socket()
        stray.bind(("127.0.0.1", 0))
        stray.listen(8)
        say("stray_port", stray.getsockname()[1])
        passed.append(("kg-listen", stray.fileno()))
    nt.store = [(n, fd) for n, fd in nt.store]   # the daemon's publish replaces them
    nt.ready = False
    pid2 = start(a.gated, a.conf, a.log, nt.path, passed)
    say("pid2", pid2)
    if stray is not None:
        stray.close()   # the daemon holds the only other reference
    if not nt.pump(20):
        say("error", "the second daemon never said READY=1")
        os.kill(pid2, signal.SIGKILL)
        return 2
    nt.pump(0.5)
    say("stored2", len([1 for n, _ in nt.store if n == "kg-listen"]))
    say("removed2", nt.removed)
    say("stored2_sessions", len([1 for n, _ in nt.store if n in ("kg-sess", "kg-sessions")]))
    if a.after:
        say("after_rc", subprocess.call(a.after, shell=True))

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(a.ca)
    ctx.load_cert_chain(a.cert, a.key)
    ctx.check_hostname = False
    served = refused = 0
    for i, s in enumerate(gap):
        try:
            t = ctx.wrap_socket(s, server_hostname="localhost")
            t.sendall(mqtt_connect(a.id))
            ack = t.recv(4)
            if len(ack) == 4 and ack[0] == 0x20 and ack[3] == 0:
                served += 1
            else:
                refused += 1
                say("connack", ack.hex())
            t.close()
        except (OSError, ssl.SSLError) as e:
            refused += 1
            say("conn_error", "%s %s" % (e.__class__.__name__, e))
    say("served", served)
    say("refused", refused)
    if scrape is not None:
        data = b""
        try:
            while len(data) < 64:
                b = scrape.recv(4096)
                if not b:
                    break
                data += b
        except OSError as e:
            say("scrape_error", e.__class__.__name__)
        line = data.split(b"\r\n", 1)[0].decode(errors="replace")
        say("scrape_status", line.replace(" ", "_") or "none")
        scrape.close()
    say("stored2_metrics", len([1 for n, _ in nt.store if n == "kg-metrics"]))
    os.kill(pid2, signal.SIGTERM)
    say("exit2", wait_exit(pid2, 15))
    return 0


if __name__ == "__main__":
    sys.exit(main())
