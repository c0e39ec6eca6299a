#!/usr/bin/python3
# SPDX-License-Identifier: BSD-2-Clause
"""flood.py - one source floods the gate while good devices try to get in.

  flood: from --source (a loopback address), keep --conns TCP connections open to the
         gate, opening new ones as fast as they are closed; each sends the first 5
         bytes of a TLS record that never comes (so it holds a handshake slot until
         the handshake timeout) and then waits. Runs until killed or --seconds; prints
         {"opened": N, "closed_by_gate": M} at the end.
  good:  --n connects of real devices (PREFIX0.. PREFIX<parallel-1>), --parallel at a time: mTLS + MQTT CONNECT, success = CONNACK
         0 within --timeout. Prints {"n":..,"ok":..,"fail":..,"pct":..,"errors":{...}}.
Sockets close with SO_LINGER 0 so the churn leaves no TIME_WAIT behind.
"""
import argparse
import asyncio
import json
import signal
import socket
import ssl
import struct
import sys
import threading
import time

HOLD = b"\x16\x03\x01\x40\x00"   # a handshake record of 16 KiB announced, never sent
LINGER0 = struct.pack("ii", 1, 0)


async def flood(a):
    loop = asyncio.get_running_loop()
    stats = {"opened": 0, "closed_by_gate": 0, "connect_errors": 0}
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)

    async def one():
        while not stop.is_set():
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER0)
            try:
                s.bind((a.source, 0))
                await asyncio.wait_for(loop.sock_connect(s, (a.host, a.port)), 2)
                stats["opened"] += 1
                await loop.sock_sendall(s, HOLD)
                # wait for the gate to close it (or for the stop)
                d = await loop.sock_recv(s, 64)
                if not d:
                    stats["closed_by_gate"] += 1
            except (OSError, asyncio.TimeoutError):
                stats["connect_errors"] += 1
                await asyncio.sleep(0.005)
            finally:
                s.close()

    tasks = [asyncio.ensure_future(one()) for _ in range(a.conns)]
    try:
        await asyncio.wait_for(stop.wait(), a.seconds)
    except asyncio.TimeoutError:
        pass
    stop.set()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    print(json.dumps(stats, sort_keys=True), flush=True)


def good_one(a, dev):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(a.ca)
    ctx.check_hostname = False
    ctx.load_cert_chain("%s/%s/chain.pem" % (a.certdir, dev), "%s/%s/key.pem" % (a.certdir, dev))
    deadline = time.monotonic() + a.timeout
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER0)
    raw.settimeout(a.timeout)
    try:
        raw.bind((a.source, 0))
        raw.connect((a.host, a.port))
        s = ctx.wrap_socket(raw, server_hostname="localhost")
        cid = dev.encode()
        vh = b"\x00\x04MQTT\x04\x02\x00\x3c"
        body = vh + struct.pack("!H", len(cid)) + cid
        s.settimeout(max(0.1, deadline - time.monotonic()))
        s.sendall(b"\x10" + bytes([len(body)]) + body)
        got = b""
        while len(got) < 4:
            d = s.recv(4 - len(got))
            if not d:
                return "eof"
            got += d
        return "ok" if got == b"\x20\x02\x00\x00" else "connack %s" % got.hex()
    except socket.timeout:
        return "timeout"
    except ssl.SSLError as e:
        return "tls:%s" % (e.reason or e.__class__.__name__)
    except OSError as e:
        return "os:%s" % (e.__class__.__name__)
    finally:
        raw.close()


def good(a):
    res = {}
    lock = threading.Lock()
    nxt = [0]

    def worker(t):
        while True:
            with lock:
                if nxt[0] >= a.n:
                    return
                nxt[0] += 1
            r = good_one(a, "%s%d" % (a.prefix, t))
            with lock:
                res[r] = res.get(r, 0) + 1
            time.sleep(a.pause)

    ts = [threading.Thread(target=worker, args=(t,)) for t in range(a.parallel)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    ok = res.get("ok", 0)
    print(json.dumps({"n": a.n, "ok": ok, "fail": a.n - ok, "pct": round(100.0 * ok / a.n, 1),
                      "results": res}, sort_keys=True), flush=True)


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="op", required=True)
    for name in ("flood", "good"):
        sp = sub.add_parser(name)
        sp.add_argument("--host", default="127.0.0.1")
        sp.add_argument("--port", type=int, required=True)
        sp.add_argument("--source", default="127.0.0.1")
    sp = sub.choices["flood"]
    sp.add_argument("--conns", type=int, default=300)
    sp.add_argument("--seconds", type=float, default=60)
    sp = sub.choices["good"]
    sp.add_argument("--ca", required=True)
    sp.add_argument("--certdir", required=True, help="DIR/PREFIXt/{chain,key}.pem")
    sp.add_argument("--prefix", required=True, help="device t of --parallel is PREFIXt")
    sp.add_argument("--n", type=int, default=60)
    sp.add_argument("--parallel", type=int, default=3)
    sp.add_argument("--pause", type=float, default=0.05)
    sp.add_argument("--timeout", type=float, default=3.0)
    a = p.parse_args()
    if a.op == "flood":
        asyncio.run(flood(a))
    else:
        good(a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
