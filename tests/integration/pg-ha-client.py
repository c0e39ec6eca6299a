#!/usr/bin/python3
# SPDX-License-Identifier: BSD-2-Clause
"""pg-ha-client.py - the clients of test-pg-ha.sh (several appliances on one PostgreSQL).

  race --ca ROOT --hold S --pair ID PORT1 CERTDIR1 PORT2 CERTDIR2 [--pair ...]
      For each pair in turn: two threads meet at a barrier, then each opens mTLS to
      its port with its certificate (CERTDIR/{chain,key}.pem), sends CONNECT(ID) and
      reads the CONNACK, so both appliances judge the same new device at the same
      instant. Every session admitted stays open; S seconds after the last pair each
      one is checked. One JSON line per pair: {"id", "a": [connack, eof_ms], "b": ...}
      where eof_ms is when the appliance closed it (ms after its CONNACK) or null.
  echo --ca ROOT --port P --certdir DIR --id ID --hold S
      A live session that echoes: SUBSCRIBE ID/in, and every message on it is
      published back (QoS 1) on ID/out. Prints "connack 0xNN", "ready", "echo MSG"
      per message, and at the end "eof EPOCH_MS" (the appliance closed it) or "held".

Reuses kgclient.py's packet code; every socket operation has a deadline.
"""
import argparse
import json
import os
import socket
import ssl
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import kgclient as kc  # noqa: E402


def open_session(ca, port, certdir, dev_id, timeout=10.0):
    """(sock, reader, 'connack 0xNN') or (None, None, 'why')."""
    try:
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        ctx = kc.client_ctx(ca, os.path.join(certdir, "chain.pem"), os.path.join(certdir, "key.pem"))
        s = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
        r = kc.PacketReader(s)
        s.sendall(kc.connect_packet(dev_id, 4))
        first, body = r.packet()
        code = kc.connack_code(first, body, 4)
    except (OSError, EOFError, ValueError) as e:
        return None, None, "error: %s" % e
    return s, r, "connack 0x%02x" % code


def closed_now(s):
    """True when the peer has closed (EOF or reset), without blocking."""
    s.settimeout(0.01)
    try:
        while True:
            data = s.recv(4096)
            if not data:
                return True
    except (socket.timeout, ssl.SSLWantReadError):
        return False
    except (OSError, ssl.SSLError):
        return True


def cmd_race(a):
    results = []
    watch = []   # (record, side, sock, t_connack)
    for dev_id, p1, d1, p2, d2 in a.pair:
        rec = {"id": dev_id, "a": [None, None], "b": [None, None]}
        barrier = threading.Barrier(2)

        def one(side, port, certdir):
            barrier.wait(timeout=10)
            s, _, res = open_session(a.ca, int(port), certdir, dev_id)
            rec[side][0] = res
            if s is not None:
                watch.append((rec, side, s, time.monotonic()))

        ts = [threading.Thread(target=one, args=("a", p1, d1)),
              threading.Thread(target=one, args=("b", p2, d2))]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        results.append(rec)
    # Poll every open session until S seconds after the last pair: an appliance that
    # cuts one (a revalidation after the other's enrolment) is seen with its time.
    end = time.monotonic() + a.hold
    while time.monotonic() < end:
        for rec, side, s, t0 in watch:
            if rec[side][1] is None and closed_now(s):
                rec[side][1] = int((time.monotonic() - t0) * 1000)
        time.sleep(0.05)
    for _, _, s, _ in watch:
        try:
            s.sendall(kc.disconnect_packet())
            s.close()
        except OSError:
            pass
    for rec in results:
        print(json.dumps(rec), flush=True)
    return 0


def cmd_echo(a):
    s, r, res = open_session(a.ca, a.port, a.certdir, a.id)
    print(res, flush=True)
    if s is None:
        return 1
    try:
        s.sendall(kc.subscribe_packet(a.id + "/in", 1, 4))
        if kc.wait_suback(r, 1, 4) != 1:
            print("suback refused", flush=True)
            return 1
    except (OSError, EOFError) as e:
        print("eof %d (before ready: %s)" % (int(time.time() * 1000), e), flush=True)
        return 1
    print("ready", flush=True)
    pid = 100
    end = time.monotonic() + a.hold
    while time.monotonic() < end:
        s.settimeout(max(0.05, end - time.monotonic()))
        try:
            first, body = r.packet()
        except socket.timeout:
            break
        except (OSError, EOFError):
            print("eof %d" % int(time.time() * 1000), flush=True)
            return 0
        if first >> 4 != 3:
            continue   # PUBACKs of our echoes
        tlen = struct.unpack("!H", body[:2])[0]
        i = 2 + tlen
        if (first >> 1) & 3:
            s.sendall(b"\x40\x02" + body[i:i + 2])
            i += 2
        msg = body[i:].decode(errors="replace")
        pid = pid % 60000 + 1
        try:
            s.sendall(kc.publish_packet(a.id + "/out", msg, 1, pid, 4))
        except OSError:
            print("eof %d" % int(time.time() * 1000), flush=True)
            return 0
        print("echo %s" % msg, flush=True)
    print("held", flush=True)
    try:
        s.sendall(kc.disconnect_packet())
    except OSError:
        pass
    return 0


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    sp = sub.add_parser("race")
    sp.add_argument("--ca", required=True)
    sp.add_argument("--hold", type=float, default=2.0)
    sp.add_argument("--pair", nargs=5, action="append", required=True,
                    metavar=("ID", "PORT1", "CERTDIR1", "PORT2", "CERTDIR2"))
    sp = sub.add_parser("echo")
    sp.add_argument("--ca", required=True)
    sp.add_argument("--port", type=int, required=True)
    sp.add_argument("--certdir", required=True)
    sp.add_argument("--id", required=True)
    sp.add_argument("--hold", type=float, default=60.0)
    a = ap.parse_args()
    return cmd_race(a) if a.cmd == "race" else cmd_echo(a)


if __name__ == "__main__":
    sys.exit(main())
