#!/usr/bin/python3
# SPDX-License-Identifier: BSD-2-Clause
"""opsprobe.py - probes for tests/integration/test-ops-limits.sh (issue 10, section 4).

  flood     N TLS handshakes without a client certificate from one source address,
            some in parallel: the audit flood guard's load.
  idle      an MQTT session with a given keep-alive that goes silent, or publishes
            (QoS 0) every P seconds, or subscribes and then only receives: prints when
            the gate closed it.
  metrics   idle and half-sent connections to the metrics endpoint, then timed scrapes
            from another address, then whether the endpoint closed the idle ones.

Every result is one line of text for the shell to assert on. Uses kgclient.py's MQTT
encoding and TLS context (read-only import).
"""
import argparse
import concurrent.futures
import os
import socket
import ssl
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kgclient as kg  # noqa: E402


def out(line):
    print(line, flush=True)


# --- flood --------------------------------------------------------------------------


def one_nocert(a, ctx):
    """One handshake without a certificate; returns True once the gate ended it."""
    try:
        raw = socket.create_connection((a.host, a.port), timeout=5, source_address=(a.source, 0))
    except OSError:
        return False
    try:
        s = ctx.wrap_socket(raw, server_hostname=a.host)
        # TLS 1.3: the refusal arrives after our Finished; wait for it (alert or EOF)
        s.settimeout(5)
        try:
            s.recv(1)
        except (ssl.SSLError, OSError):
            pass
        s.close()
    except (ssl.SSLError, OSError):
        raw.close()
    return True


def cmd_flood(a):
    ctx = kg.client_ctx(a.ca)
    t0 = time.monotonic()
    done = 0
    with concurrent.futures.ThreadPoolExecutor(a.parallel) as ex:
        for ok in ex.map(lambda _: one_nocert(a, ctx), range(a.n)):
            done += 1 if ok else 0
    out("flood done=%d seconds=%.1f" % (done, time.monotonic() - t0))
    return 0


# --- idle -----------------------------------------------------------------------------


def cmd_idle(a):
    try:
        s = kg.tls_open(a)
        r = kg.PacketReader(s)
        s.sendall(kg.connect_packet(a.id, 4, a.keepalive))
        first, body = r.packet()
        code = kg.connack_code(first, body, 4)
    except (ssl.SSLError, OSError, EOFError) as e:
        out("error: %s" % e)
        return 0
    if code != 0:
        out("connack 0x%02x" % code)
        return 0
    if a.subscribe:
        # then only receive: broker->device traffic, the device itself silent
        body = struct.pack("!H", 1) + kg.mstr(a.subscribe) + b"\x00"
        s.sendall(b"\x82" + kg.varint(len(body)) + body)
        first, body = r.packet()
        if first >> 4 != 9:
            out("no SUBACK: %02x" % first)
            return 0
        r.buf = b""
    t0 = time.monotonic()
    next_pub = t0 + a.every if a.every else None
    n = 0
    got = 0   # bytes received after the CONNACK (and SUBACK)
    s.settimeout(0.05)
    while True:
        now = time.monotonic()
        if now - t0 >= a.duration:
            out("open after %.1fs published=%d received=%d" % (now - t0, n, got))
            s.close()
            return 0
        if next_pub is not None and now >= next_pub:
            try:
                s.sendall(kg.publish_packet(a.topic, "tick %d" % n, 0))
                n += 1
            except OSError:
                out("closed after %.1fs published=%d" % (now - t0, n))
                return 0
            next_pub += a.every
        try:
            d = s.recv(4096)
            if not d:
                out("closed after %.1fs published=%d" % (time.monotonic() - t0, n))
                return 0
            got += len(d)
        except socket.timeout:
            continue
        except (ssl.SSLError, OSError):
            out("closed after %.1fs published=%d" % (time.monotonic() - t0, n))
            return 0


# --- metrics --------------------------------------------------------------------------


def scrape(host, port, source, timeout):
    t0 = time.monotonic()
    try:
        s = socket.create_connection((host, port), timeout=timeout, source_address=(source, 0))
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            data += d
        s.close()
    except OSError as e:
        return None, "%s" % e, time.monotonic() - t0
    ok = data.startswith(b"HTTP/1.1 200") and b"\nktlsgate_workers " in data
    return ok, data[:40], time.monotonic() - t0


def closed_by_peer(s):
    s.settimeout(0)
    try:
        return s.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True   # reset: closed too


def cmd_metrics(a):
    held = []
    for i in range(a.idle + a.half):
        src = a.sources[i % len(a.sources)]
        try:
            s = socket.create_connection((a.host, a.port), timeout=2, source_address=(src, 0))
        except OSError as e:
            out("connect %d from %s failed: %s" % (i, src, e))
            return 1
        if i >= a.idle:
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")   # never finished
        held.append(s)
    time.sleep(0.3)   # let the endpoint accept (or refuse) them all
    worst = 0.0
    for _ in range(3):
        ok, what, secs = scrape(a.host, a.port, a.scraper, a.scrape_timeout)
        worst = max(worst, secs)
        if not ok:
            out("scrape failed after %.2fs with %d held: %s" % (secs, len(held), what))
            return 0
    open_now = sum(0 if closed_by_peer(s) else 1 for s in held)
    out("scrape ok worst=%.2fs held=%d open=%d" % (worst, len(held), open_now))
    if a.wait_closed:
        deadline = time.monotonic() + a.wait_closed
        while time.monotonic() < deadline:
            still = sum(0 if closed_by_peer(s) else 1 for s in held)
            if still == 0:
                break
            time.sleep(0.2)
        still = sum(0 if closed_by_peer(s) else 1 for s in held)
        out("after wait open=%d" % still)
    for s in held:
        s.close()
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="op", required=True)
    sp = sub.add_parser("flood")
    sp.add_argument("--host", default="127.0.0.1")
    sp.add_argument("--port", type=int, required=True)
    sp.add_argument("--source", default="127.0.0.1")
    sp.add_argument("--ca", required=True)
    sp.add_argument("--n", type=int, default=2000)
    sp.add_argument("--parallel", type=int, default=16)
    sp = sub.add_parser("idle")
    sp.add_argument("--host", default="127.0.0.1")
    sp.add_argument("--port", type=int, required=True)
    sp.add_argument("--source")
    sp.add_argument("--timeout", type=float, default=5.0)
    sp.add_argument("--ca", required=True)
    sp.add_argument("--cert", required=True)
    sp.add_argument("--key", required=True)
    sp.add_argument("--id", required=True)
    sp.add_argument("--keepalive", type=int, required=True)
    sp.add_argument("--every", type=float, default=0, help="publish every N s (0: silent)")
    sp.add_argument("--topic", default="itest/idle")
    sp.add_argument("--subscribe", help="subscribe to this filter, then only receive")
    sp.add_argument("--duration", type=float, required=True)
    sp = sub.add_parser("metrics")
    sp.add_argument("--host", default="127.0.0.1")
    sp.add_argument("--port", type=int, required=True)
    sp.add_argument("--idle", type=int, default=200)
    sp.add_argument("--half", type=int, default=20)
    sp.add_argument("--sources", type=lambda v: v.split(","), default=["127.0.0.1"])
    sp.add_argument("--scraper", default="127.0.0.9")
    sp.add_argument("--scrape-timeout", type=float, default=2.0)
    sp.add_argument("--wait-closed", type=float, default=0)
    a = p.parse_args()
    return {"flood": cmd_flood, "idle": cmd_idle, "metrics": cmd_metrics}[a.op](a)


if __name__ == "__main__":
    sys.exit(main())
