#!/usr/bin/python3
# SPDX-License-Identifier: BSD-2-Clause
"""alertprobe.py - does a refused TLS client read the gate's alert, and a clean close?

Connects N times (one after the other) with a python ssl client pinned to one TLS
version, optionally presenting a certificate, and, as a device would, sends an MQTT
CONNECT as soon as its side of the handshake is done (TLS 1.3 finishes before the
server has judged the certificate). TLS runs over memory BIOs so the probe sees the
TCP stream itself: after the alert it keeps reading to learn how the stream ended.
A RST (ECONNRESET) is what loses the alert on stacks that drop received data on a
reset (Windows, lwIP and other embedded stacks), so it is reported even though Linux
delivers the alert first. Each try is one of
  alert:<name>+fin   the alert, then an orderly close: what a device must see
  alert:<name>+reset the alert, then a reset: the alert is at the mercy of the stack
  reset / eof / connected / open / other:<text>
and one JSON line {"n":..,"results":{"...":k,...}} is printed.
"""
import argparse
import json
import socket
import ssl
import sys
import time

CONNECT = b"\x10\x11\x00\x04MQTT\x04\x02\x00\x3c\x00\x05probe"


def alert_name(e):
    r = (e.reason or str(e)).lower()
    return r if "alert" in r else None


class Stream:
    """The raw socket under an SSLObject; remembers how the peer ended it."""

    def __init__(self, sock, deadline):
        self.sock = sock
        self.deadline = deadline
        self.end = None   # "fin" | "reset" | "open"

    def pump_in(self, inc):
        if self.end is not None:
            inc.write_eof()
            return
        left = self.deadline - time.monotonic()
        if left <= 0:
            self.end = "open"
            inc.write_eof()
            return
        self.sock.settimeout(left)
        try:
            d = self.sock.recv(65536)
        except ConnectionResetError:
            self.end = "reset"
            inc.write_eof()
            return
        except socket.timeout:
            self.end = "open"
            inc.write_eof()
            return
        if not d:
            self.end = "fin"
            inc.write_eof()
        else:
            inc.write(d)

    def flush(self, out):
        d = out.read()
        if d:
            try:
                self.sock.sendall(d)
            except OSError:
                pass   # the read side tells what happened

    def finish(self):
        """Read until the peer's FIN or RST (or the deadline)."""
        while self.end is None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                self.end = "open"
                break
            self.sock.settimeout(left)
            try:
                if not self.sock.recv(65536):
                    self.end = "fin"
            except ConnectionResetError:
                self.end = "reset"
            except socket.timeout:
                self.end = "open"
        return self.end


def one(a):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(a.ca)
    ctx.check_hostname = False
    v = ssl.TLSVersion.TLSv1_3 if a.tls == "1.3" else ssl.TLSVersion.TLSv1_2
    ctx.minimum_version = ctx.maximum_version = v
    if a.cert:
        ctx.load_cert_chain(a.cert, a.key)
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="localhost")
    sock = socket.create_connection((a.host, a.port), timeout=a.timeout)
    st = Stream(sock, time.monotonic() + a.timeout)
    try:
        phase = "handshake"
        while True:
            try:
                if phase == "handshake":
                    obj.do_handshake()
                    phase = "connect"
                    obj.write(CONNECT)
                    st.flush(out)
                    continue
                d = obj.read(16)
                if not d:
                    return "eof"
                return "connected" if d[:1] == b"\x20" else "other:data"
            except ssl.SSLWantReadError:
                st.flush(out)
                if st.end is not None:
                    return st.end if st.end != "fin" else "eof"
                st.pump_in(inc)
            except ssl.SSLError as e:
                st.flush(out)
                name = alert_name(e)
                if name is None:
                    return (st.end or "other:" + str(e.reason)) if st.end != "fin" else "eof"
                return "alert:%s+%s" % (name, st.finish())
    finally:
        sock.close()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--tls", choices=("1.2", "1.3"), required=True)
    p.add_argument("--n", type=int, default=20)
    p.add_argument("--timeout", type=float, default=5.0)
    a = p.parse_args()
    res = {}
    for _ in range(a.n):
        r = one(a)
        res[r] = res.get(r, 0) + 1
    print(json.dumps({"n": a.n, "results": res}, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
