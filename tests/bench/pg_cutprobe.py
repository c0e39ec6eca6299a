#!/usr/bin/python3
# SPDX-License-Identifier: BSD-2-Clause
"""pg_cutprobe.py - revocation across appliances, timed from the client side (make bench-pg).

For each device id given (one trial each): open one mTLS + MQTT 3.1.1 session with that
device's certificate to EVERY appliance port (CONNECT / CONNACK 0 required on each),
then take t0 = time.monotonic() just before starting the command (--cmd, split as a
shell would but run without one, {id} replaced: `ktlsgate ... device set ID --status
disabled`) and wait, one thread per session blocked in recv(), for each session to see
its close (EOF, reset, or TLS close_notify; bytes read instead are recorded too).
Prints one JSON line per trial: each appliance's close time and the last of them (ms
after t0), the command's own runtime and exit status, and `ok`. A session still open
--limit seconds after t0, a command that fails or cannot start, or a session that
cannot be set up makes the trial `ok: false` with a `why`: printed like any other,
never dropped. Exit status 1 if any trial was not ok.
--baseline times a read-only command on the same device just before each trial's
sessions are opened (`baseline_ms`): what any CLI process costs, start-up and registry
open included, under the same load. With --sql-uri, --cmd is an SQL statement run
through one psql kept open for the whole run: its time (`cli_ms`) is the database's
alone, commit included, with no process start-up.
Uses kgclient.py (tests/lib) for the TLS context and the CONNECT packet.
"""
import argparse
import json
import os
import shlex
import socket
import ssl
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import kgclient  # noqa: E402


def open_session(port, ca, devdir, dev_id, timeout):
    """A live session for dev_id through 127.0.0.1:port, or raise with the reason."""
    ctx = kgclient.client_ctx(ca, os.path.join(devdir, dev_id, "chain.pem"),
                              os.path.join(devdir, dev_id, "key.pem"))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
    s.sendall(kgclient.connect_packet(dev_id, level=4, keepalive=120))
    buf = b""
    while len(buf) < 4:
        d = s.recv(4 - len(buf))
        if not d:
            raise RuntimeError("closed before CONNACK")
        buf += d
    if buf[0] != 0x20 or buf[3] != 0:
        raise RuntimeError("CONNACK %s" % buf.hex())
    return s


def wait_close(s, t0, limit, res, i, stop):
    """res[i] = (ms after t0 the close was seen, what was seen), or None on timeout or
    once stop is set (the command failed: the trial has failed, no need to wait)."""
    got = b""
    end = t0 + limit
    while True:
        left = end - time.monotonic()
        if left <= 0 or stop.is_set():
            res[i] = None
            return
        # A close is seen as soon as it arrives; the short timeout only bounds how
        # long a stop takes to be noticed.
        s.settimeout(min(left, 0.2))
        try:
            d = s.recv(4096)
        except socket.timeout:
            continue
        except (ssl.SSLError, OSError) as e:
            res[i] = ((time.monotonic() - t0) * 1000, "error: %s" % e)
            return
        if not d:
            res[i] = ((time.monotonic() - t0) * 1000, "eof" + (" after %s" % got.hex() if got else ""))
            return
        got += d


class Psql:
    """One psql kept open (--sql-uri): a statement's time is then the database's alone
    (commit included), with no process start-up in it."""

    def __init__(self, uri):
        self.p = subprocess.Popen(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", uri],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, bufsize=1)

    def run(self, sql, out):
        """out[0] = 0 once psql has run sql (autocommit: committed), else an error."""
        try:
            self.p.stdin.write(sql.rstrip().rstrip(";") + ";\n\\echo kg-cutprobe-done\n")
            self.p.stdin.flush()
        except OSError as e:
            out[0] = "psql: %s" % e
            return
        for line in self.p.stdout:
            if line.strip() == "kg-cutprobe-done":
                out[0] = 0
                return
        out[0] = "psql exited %s: %s" % (self.p.wait(), self.p.stderr.read().strip()[:200])


def trial(a, dev_id):
    r = {"id": dev_id, "ok": False}
    if a.baseline:
        t0 = time.monotonic()
        rc = subprocess.run(shlex.split(a.baseline.replace("{id}", dev_id)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
        r["baseline_ms"] = round((time.monotonic() - t0) * 1000, 1)
        if rc != 0:
            r["why"] = "baseline command exit %s" % rc
            return r
    socks = []
    try:
        for p in a.ports:
            socks.append(open_session(p, a.ca, a.devices, dev_id, a.timeout))
    except (OSError, ssl.SSLError, RuntimeError) as e:
        r["why"] = "session %d of %d not set up: %s" % (len(socks) + 1, len(a.ports), e)
        for s in socks:
            s.close()
        return r
    time.sleep(a.settle)
    res = [None] * len(socks)
    t0 = time.monotonic()
    p = err = None
    if a.psql:
        out = ["timeout"]
        pt = threading.Thread(target=a.psql.run, args=(a.cmd.replace("{id}", dev_id), out),
                              daemon=True)
        pt.start()
    else:
        # No shell in between unless the command needs one: the CLI's runtime is its own.
        try:
            p = subprocess.Popen(shlex.split(a.cmd.replace("{id}", dev_id)),
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        except OSError as e:
            rc, err = "not started", str(e).encode()
    stop = threading.Event()
    ths = [threading.Thread(target=wait_close, args=(s, t0, a.limit, res, i, stop))
           for i, s in enumerate(socks)]
    for t in ths:
        t.start()
    if a.psql:
        pt.join(a.limit)
        rc, err = (0, b"") if out[0] == 0 else (1, str(out[0]).encode())
    elif p is not None:
        try:
            _, err = p.communicate(timeout=a.limit)
            rc = p.returncode
        except subprocess.TimeoutExpired:
            p.kill()
            _, err = p.communicate()
            rc = "timeout"
    t_cli = time.monotonic()
    if rc != 0:
        stop.set()
    for t in ths:
        t.join()
    for s in socks:
        s.close()
    r["cli_ms"] = round((t_cli - t0) * 1000, 1)
    r["cli_rc"] = rc
    r["closed_ms"] = [None if x is None else round(x[0], 1) for x in res]
    r["seen"] = [None if x is None else x[1] for x in res]
    if rc != 0:
        r["why"] = "command exit %s: %s" % (rc, err.decode(errors="replace").strip()[:200])
    elif any(x is None for x in res):
        r["why"] = "session(s) on appliance(s) %s still open after %g s" % (
            ",".join(str(i + 1) for i, x in enumerate(res) if x is None), a.limit)
    else:
        r["last_ms"] = max(r["closed_ms"])
        r["ok"] = True
    return r


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ports", required=True, help="appliance ports, comma-separated")
    p.add_argument("--ca", required=True, help="root CA that signed the servers' certificates")
    p.add_argument("--devices", required=True, help="DIR/ID/{chain,key}.pem")
    p.add_argument("--cmd", required=True, help="command (split like a shell, run without one), {id} replaced by the device id")
    p.add_argument("--limit", type=float, default=10.0, help="seconds a session may stay open")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to set up one session")
    p.add_argument("--settle", type=float, default=0.05, help="seconds between CONNACKs and t0")
    p.add_argument("--sql-uri", help="--cmd is SQL, run through one psql kept open on this URI")
    p.add_argument("--baseline", help="a read-only command ({id} replaced) timed before "
                   "each trial: the fixed cost of a CLI process")
    p.add_argument("ids", nargs="+")
    a = p.parse_args()
    a.ports = [int(x) for x in a.ports.split(",")]
    a.psql = Psql(a.sql_uri) if a.sql_uri else None
    bad = 0
    for dev_id in a.ids:
        r = trial(a, dev_id)
        bad += not r["ok"]
        print(json.dumps(r), flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
