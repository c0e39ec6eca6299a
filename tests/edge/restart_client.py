#!/usr/bin/python3
# SPDX-License-Identifier: BSD-2-Clause
"""restart_client.py - what a fleet sees while its gateway restarts (issue 14).

  loop  --host H --port P --ca CA --devices DIR --ids A,B,.. [--rate 200] [--duration S]
        [--timeout 3] [--live ID] [--plain]
      Opens --rate connections a second for --duration seconds, each as one of the
      devices in turn (DIR/ID/{chain,key}.pem): TCP connect, TLS handshake with the
      device's certificate (none with --plain), MQTT CONNECT, CONNACK, DISCONNECT, close.
      Attempts are started on schedule by a pool of threads, so a stalled attempt does not
      delay the next one (the offered rate stays 200/s whatever the server does). Each
      attempt ends in exactly one class:
        ok        CONNACK 0 received
        refused   ECONNREFUSED on connect (nobody listening)
        reset     ECONNRESET/EPIPE/EOF after connect, before the CONNACK (dropped mid-
                  handshake, or accepted by a process that then went away)
        timeout   no connect, handshake or CONNACK within --timeout
        tls_error a TLS alert or verification failure
        connack_N a CONNACK with return code N != 0
        other     anything else (named in "other_kinds")
      --live ID: before the loop, ID opens one session and sends PINGREQ every 0.2 s for
      the whole run; "live" in the result says whether every PINGRESP came back within
      --live-timeout s (2)
      on that same TCP connection (a session that survived the restart) or when and how
      it died.
      Prints one JSON line: counts per class, offered/started attempts, the epoch times
      of the first and last failure, the time to CONNACK of the ok attempts (p50, p99,
      max: a restart that refuses nobody may still stall them), the live session's fate.

  qos1-pub --host H --port P --ca CA --cert C --key K --id ID --topic T
        [--rate 50] [--duration S] [--out FILE]
      Publishes the numbers 1, 2, ... as QoS 1 messages at --rate a second on a
      persistent session (clean session 0). If the connection drops it reconnects
      (every 0.1 s until it gets a CONNACK) and resends every unacknowledged message with
      the same packet id and the DUP flag, as MQTT 3.1.1 4.4 requires, then carries on.
      At the end it stops publishing and waits (reconnecting if needed) up to 15 s for
      the last PUBACKs. Writes JSON to --out: sent, the acked numbers, the resent
      numbers, unacked numbers, drops, reconnect attempts, the longest outage.

  qos1-check PUBJSON SUBFILE
      SUBFILE: the payloads a subscriber on the broker received (one per line, e.g.
      `mosquitto_sub -q 1 -t T`). "Exactly once" here: every number the publisher got a
      PUBACK for was delivered to the subscriber once and only once, and every number
      sent was acked in the end. Reports missing (acked, never delivered: loss),
      duplicated (delivered twice or more; split into resent ones, which QoS 1 allows
      after a drop but exactly-once does not, and unexplained ones), and exits 1 unless
      exactly once held.
"""
import argparse
import errno
import json
import os
import select
import socket
import ssl
import struct
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from kgclient import connect_packet, disconnect_packet, PacketReader  # noqa: E402

PINGREQ = b"\xc0\x00"


def ctx_for(ca, cert, key):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False  # chains are verified; the name is not what this measures
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(ca)
    ctx.load_cert_chain(cert, key)
    return ctx


def classify(exc, stage):
    """One attempt's failure as a class name (see the module doc)."""
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, (ConnectionResetError, BrokenPipeError, EOFError,
                        ssl.SSLEOFError, ssl.SSLZeroReturnError)):
        return "reset"
    if isinstance(exc, ssl.SSLError):
        # an EOF mid-handshake surfaces as SSLError "unexpected eof" on OpenSSL 3
        if "EOF" in str(exc) or "eof" in str(exc):
            return "reset"
        return "tls_error"
    if isinstance(exc, OSError) and exc.errno in (errno.ECONNRESET, errno.EPIPE):
        return "reset"
    if isinstance(exc, OSError) and exc.errno == errno.ECONNREFUSED:
        return "refused"
    return "other:%s:%s" % (stage, type(exc).__name__)


def open_session(host, port, ctx, client_id, timeout, clean=True):
    """TCP + TLS (ctx None: plain) + CONNECT/CONNACK. Returns (sock, reader, rc,
    session_present); raises on failure."""
    raw = socket.create_connection((host, port), timeout=timeout)
    try:
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s = ctx.wrap_socket(raw, server_hostname=host) if ctx else raw
        s.sendall(connect_packet(client_id, clean=clean, keepalive=60))
        rd = PacketReader(s)
        first, body = rd.packet()
        if first != 0x20 or len(body) < 2:
            raise EOFError("not a CONNACK")
        return s, rd, body[1], body[0] & 1
    except BaseException:
        raw.close()
        raise


# --- the connection loop ---------------------------------------------------------------


class Live:
    """One session held open across the run, pinged every 0.2 s."""

    def __init__(self, a, ctx):
        self.a, self.ctx = a, ctx
        self.state = {"opened": False, "survived": False, "pings": 0}
        self.stop = threading.Event()

    def run(self):
        try:
            s, rd, rc, _ = open_session(self.a.host, self.a.port, self.ctx, self.a.live,
                                        self.a.timeout)
        except Exception as e:  # noqa: BLE001 - reported, not raised
            self.state["error"] = "open: " + classify(e, "open")
            return
        if rc != 0:
            self.state["error"] = "open: connack %d" % rc
            return
        self.state["opened"] = True
        self.opened.set()
        s.settimeout(self.a.live_timeout)
        try:
            while not self.stop.wait(0.2):
                s.sendall(PINGREQ)
                first, _ = rd.packet()
                if first != 0xD0:
                    raise EOFError("0x%02x instead of PINGRESP" % first)
                self.state["pings"] += 1
            self.state["survived"] = True
            s.sendall(disconnect_packet())
        except Exception as e:  # noqa: BLE001
            self.state["died_at"] = time.time()
            self.state["error"] = "%s (%s)" % (classify(e, "ping"), e)
        finally:
            s.close()

    def start(self):
        self.opened = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()
        return self.opened.wait(self.a.timeout + 2)


def attempt(a, ctxs, ids, i, results, lock):
    t0 = time.time()
    cid = ids[i % len(ids)]
    stage = "connect"
    s = None
    try:
        s, _, rc, _ = open_session(a.host, a.port, None if a.plain else ctxs[cid], cid, a.timeout)
        stage = "disconnect"
        cls = "ok" if rc == 0 else "connack_%d" % rc
        try:
            s.sendall(disconnect_packet())
        except OSError:
            pass  # the CONNACK came: the attempt succeeded whatever happens after
    except Exception as e:  # noqa: BLE001 - every failure is a result
        cls = classify(e, stage)
    finally:
        if s is not None:
            s.close()
    with lock:
        results.append((t0, time.time() - t0, cls))


def cmd_loop(a):
    ids = a.ids.split(",")
    ctxs = {} if a.plain else {i: ctx_for(a.ca, os.path.join(a.devices, i, "chain.pem"),
                                          os.path.join(a.devices, i, "key.pem")) for i in ids}
    live = None
    if a.live:
        live = Live(a, ctx_for(a.ca, os.path.join(a.devices, a.live, "chain.pem"),
                               os.path.join(a.devices, a.live, "key.pem")))
        if not live.start():
            print(json.dumps({"error": "live session did not open: %s" % live.state}))
            return 2
    results, lock = [], threading.Lock()
    n = int(a.rate * a.duration)
    t_start = time.time()
    print("start %.3f" % t_start, file=sys.stderr, flush=True)
    with ThreadPoolExecutor(max_workers=a.threads) as pool:
        for i in range(n):
            # on schedule: attempt i starts at t_start + i / rate
            delay = t_start + i / a.rate - time.time()
            if delay > 0:
                time.sleep(delay)
            pool.submit(attempt, a, ctxs, ids, i, results, lock)
        t_end = time.time()
    if live:
        live.stop.set()
        live.thread.join(5)
    counts = {}
    for _, _, c in results:
        k = c if not c.startswith("other") else "other"
        counts[k] = counts.get(k, 0) + 1
    fails = sorted(t for t, _, c in results if c != "ok")
    lat = sorted(d for _, d, c in results if c == "ok")
    out = {
        "offered": n, "done": len(results),
        "offered_rate": round(n / max(t_end - t_start, 1e-9), 1),
        "ok": counts.get("ok", 0), "refused": counts.get("refused", 0),
        "reset": counts.get("reset", 0), "timeout": counts.get("timeout", 0),
        "failed": len(fails),
        "counts": counts,
        "other_kinds": sorted({c for _, _, c in results if c.startswith("other")}),
        "first_fail": fails[0] if fails else None, "last_fail": fails[-1] if fails else None,
        "p50_ms": round(lat[len(lat) // 2] * 1000, 1) if lat else None,
        "p99_ms": round(lat[len(lat) * 99 // 100] * 1000, 1) if lat else None,
        "max_ms": round(lat[-1] * 1000, 1) if lat else None,
        "t_start": t_start, "t_end": t_end,
    }
    if live:
        out["live"] = live.state
    if a.events:
        with open(a.events, "w") as f:
            for t, d, c in sorted(results):
                f.write("%.3f %.3f %s\n" % (t, d, c))
    print(json.dumps(out), flush=True)
    return 0


# --- QoS 1 exactly once ----------------------------------------------------------------


def publish_packet(topic, payload, pid, dup):
    vh = struct.pack("!H", len(topic)) + topic + struct.pack("!H", pid)
    rem = len(vh) + len(payload)
    enc = bytearray()
    while True:
        b, rem = rem % 128, rem // 128
        enc.append(b | (0x80 if rem else 0))
        if not rem:
            break
    return bytes([0x32 | (0x08 if dup else 0)]) + bytes(enc) + vh + payload


class Publisher:
    def __init__(self, a):
        self.a = a
        self.ctx = ctx_for(a.ca, a.cert, a.key)
        self.topic = a.topic.encode()
        self.s = None
        self.rd = None
        self.inflight = {}          # packet id -> number, in send order (dicts keep it)
        self.acked, self.resent = [], []
        self.sent = 0
        self.drops = 0
        self.reconnect_failures = 0
        self.down_since = None
        self.outages = []

    def connect(self, deadline):
        """Until connected or deadline; then resend what is unacked, with DUP."""
        while time.time() < deadline:
            try:
                self.s, self.rd, rc, _ = open_session(self.a.host, self.a.port, self.ctx,
                                                      self.a.id, 3.0, clean=False)
                if rc == 0:
                    break
                self.s.close()
                self.s = None
            except Exception:  # noqa: BLE001 - retried, counted
                self.s = None
            self.reconnect_failures += 1
            time.sleep(0.1)
        if self.s is None:
            return False
        # blocking with a deadline: a send or a started TLS record that cannot finish in
        # 5 s is a dead connection
        self.s.settimeout(5.0)
        if self.down_since is not None:
            self.outages.append(round(time.time() - self.down_since, 3))
            self.down_since = None
        try:
            for pid, num in self.inflight.items():
                self.s.sendall(publish_packet(self.topic, b"%d" % num, pid, True))
                self.resent.append(num)
        except OSError:
            self.drop()
        return True

    def drop(self):
        if self.s is not None:
            self.s.close()
        self.s = None
        self.drops += 1
        self.down_since = time.time()

    def send(self, num):
        pid = (num - 1) % 65535 + 1
        self.inflight[pid] = num
        if self.s is None:
            return
        try:
            self.s.sendall(publish_packet(self.topic, b"%d" % num, pid, False))
        except OSError:
            self.drop()

    def read(self, wait):
        if self.s is None:
            return
        try:
            if not self.rd.buf and not (isinstance(self.s, ssl.SSLSocket) and self.s.pending()):
                r, _, _ = select.select([self.s], [], [], wait)
                if not r:
                    return
            data = self.s.recv(65536)
            if not data:
                raise EOFError
            self.rd.buf += data
            while True:
                first, body = self.parse()
                if first is None:
                    break
                if first >> 4 == 4 and len(body) >= 2:  # PUBACK
                    pid = struct.unpack("!H", body[:2])[0]
                    num = self.inflight.pop(pid, None)
                    if num is not None:
                        self.acked.append(num)
        except (ssl.SSLWantReadError, BlockingIOError):
            return
        except (OSError, EOFError, ssl.SSLError):
            self.drop()

    def parse(self):
        b = self.rd.buf
        if len(b) < 2:
            return None, None
        mult, rem, i = 1, 0, 1
        while i < len(b) and i <= 4:
            rem += (b[i] & 0x7F) * mult
            mult *= 128
            i += 1
            if not b[i - 1] & 0x80:
                break
        else:
            return None, None
        if len(b) < i + rem:
            return None, None
        self.rd.buf = b[i + rem:]
        return b[0], b[i:i + rem]


def cmd_qos1_pub(a):
    p = Publisher(a)
    if not p.connect(time.time() + 10):
        print(json.dumps({"error": "could not connect"}))
        return 2
    t0 = time.time()
    print("start %.3f" % t0, file=sys.stderr, flush=True)
    n = int(a.rate * a.duration)
    for i in range(1, n + 1):
        due = t0 + (i - 1) / a.rate
        while True:
            now = time.time()
            if p.s is None:
                p.connect(now + 0.5)
                continue
            if now >= due:
                break
            p.read(due - now)
        p.send(i)
        p.sent = i
    end = time.time() + 15
    while p.inflight and time.time() < end:
        if p.s is None:
            p.connect(end)
        else:
            p.read(0.2)
    if p.s is not None:
        try:
            p.s.sendall(disconnect_packet())
        except OSError:
            pass
        p.s.close()
    out = {"sent": p.sent, "acked": sorted(p.acked), "resent": p.resent,
           "unacked": sorted(p.inflight.values()), "drops": p.drops,
           "reconnect_failures": p.reconnect_failures, "outages_s": p.outages,
           "t_start": t0, "t_end": time.time()}
    with open(a.out, "w") as f:
        json.dump(out, f)
    print(json.dumps({k: (len(v) if isinstance(v, list) and k != "outages_s" else v)
                      for k, v in out.items()}), flush=True)
    return 0


def cmd_qos1_check(a):
    with open(a.pubjson) as f:
        pub = json.load(f)
    got = {}
    with open(a.subfile) as f:
        for line in f:
            line = line.strip()
            if line.isdigit():
                got[int(line)] = got.get(int(line), 0) + 1
    acked = set(pub["acked"])
    resent = set(pub["resent"])
    missing = sorted(acked - set(got))
    dups = sorted(n for n, c in got.items() if c > 1)
    res = {
        "sent": pub["sent"], "acked": len(acked), "unacked": len(pub["unacked"]),
        "delivered": sum(got.values()), "distinct": len(got),
        "missing": len(missing), "duplicated": len(dups),
        "dup_resent": len([n for n in dups if n in resent]),
        "dup_unexplained": len([n for n in dups if n not in resent]),
        "resent": len(pub["resent"]), "drops": pub["drops"],
        "outage_max_s": max(pub["outages_s"]) if pub["outages_s"] else 0,
        "missing_first": missing[:10], "duplicated_first": dups[:10],
    }
    res["exactly_once"] = (not missing and not dups and not pub["unacked"]
                           and len(acked) == pub["sent"])
    print(json.dumps(res), flush=True)
    return 0 if res["exactly_once"] else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    lp = sub.add_parser("loop")
    lp.add_argument("--host", required=True)
    lp.add_argument("--port", type=int, required=True)
    lp.add_argument("--ca")
    lp.add_argument("--devices", default="")
    lp.add_argument("--ids", required=True, help="comma-separated device ids / client ids")
    lp.add_argument("--rate", type=float, default=200)
    lp.add_argument("--duration", type=float, default=10)
    lp.add_argument("--timeout", type=float, default=3)
    lp.add_argument("--threads", type=int, default=128)
    lp.add_argument("--live")
    lp.add_argument("--live-timeout", type=float, default=2.0,
                    help="seconds a PINGRESP of the live session may take")
    lp.add_argument("--plain", action="store_true")
    lp.add_argument("--events", help="write 'start_epoch seconds class' per attempt")
    pp = sub.add_parser("qos1-pub")
    for o in ("--host", "--ca", "--cert", "--key", "--id", "--topic", "--out"):
        pp.add_argument(o, required=True)
    pp.add_argument("--port", type=int, required=True)
    pp.add_argument("--rate", type=float, default=50)
    pp.add_argument("--duration", type=float, default=10)
    cp = sub.add_parser("qos1-check")
    cp.add_argument("pubjson")
    cp.add_argument("subfile")
    a = ap.parse_args()
    return {"loop": cmd_loop, "qos1-pub": cmd_qos1_pub, "qos1-check": cmd_qos1_check}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
