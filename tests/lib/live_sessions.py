#!/usr/bin/python3
# SPDX-License-Identifier: BSD-2-Clause
"""live_sessions.py - N live MQTT sessions held open across a ktlsgated takeover.

Plain TCP to a `plain` listener (the device proves itself with its access token as the
CONNECT user name). Each session SUBSCRIBEs (QoS 1) to its own topic, then the script
writes READY_FILE and waits for GO_FILE. On GO, each session PUBLISHes (QoS 1) one
message to its own topic: it must get its PUBACK and the message back from the broker,
both through the gate, so both directions of the relay are checked after whatever
happened between READY and GO. With LIVE_CONNECT_AFTER=S in the environment the
sessions are only TCP connections at READY: their CONNECT and SUBSCRIBE go S seconds
later (connections still on their way in when something happens at READY). Prints one JSON line: {"ok": n, "failed": {reason: n}}
and exits 0 only if every session succeeded.

Usage: live_sessions.py HOST PORT TOKEN N PREFIX READY_FILE GO_FILE [TIMEOUT]
"""
import json
import os
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# the suite's MQTT encoding and packet reader
from kgclient import PacketReader, connect_packet, publish_packet, subscribe_packet  # noqa: E402


def next_packet(reader, deadline):
    """(first byte, body) of the next packet, each read bounded by what is left of
    deadline; raises EOFError or socket.timeout."""
    reader.sock.settimeout(max(0.05, deadline - time.monotonic()))
    return reader.packet()


def main():
    host, port, token, n, prefix, ready, go = sys.argv[1:8]
    timeout = float(sys.argv[8]) if len(sys.argv) > 8 else 60.0
    n, port = int(n), int(port)
    socks, failed = [], {}

    def fail(why):
        failed[why] = failed.get(why, 0) + 1

    connect_after = float(os.environ.get("LIVE_CONNECT_AFTER", "0"))
    conns = [socket.create_connection((host, port), timeout=10) for _ in range(n)]
    if connect_after > 0:
        open(ready, "w").close()
        time.sleep(connect_after)
    for i, s in enumerate(conns):
        deadline = time.monotonic() + 10
        r = PacketReader(s)
        try:
            s.sendall(connect_packet("%s-%d" % (prefix, i), keepalive=0, username=token))
            kind, body = next_packet(r, deadline)
        except (EOFError, OSError):
            fail("closed before connack")
            s.close()
            continue
        if kind != 0x20 or body[1] != 0:
            fail("connack")
            s.close()
            continue
        topic = "%s/%d" % (prefix, i)
        s.sendall(subscribe_packet(topic, 1, 4))
        kind, body = next_packet(r, deadline)
        if kind != 0x90 or body[2] > 1:
            fail("suback")
            s.close()
            continue
        socks.append((i, topic, r))
    if connect_after <= 0:
        open(ready, "w").close()
    end = time.monotonic() + timeout
    while not os.path.exists(go):
        if time.monotonic() > end:
            print(json.dumps({"ok": 0, "failed": {"no go": n}}))
            return 1
        time.sleep(0.05)
    ok = 0
    for i, topic, r in socks:
        s = r.sock
        payload = ("after %d" % i).encode()
        deadline = time.monotonic() + 10
        try:
            s.sendall(publish_packet(topic, payload, qos=1, pid=7))
            got_ack = got_msg = False
            while not (got_ack and got_msg):
                kind, body = next_packet(r, deadline)
                if kind & 0xF0 == 0x40:
                    got_ack = True
                elif kind & 0xF0 == 0x30:
                    tl = struct.unpack("!H", body[:2])[0]
                    qos = (kind >> 1) & 3
                    msg = body[2 + tl + (2 if qos else 0):]
                    if qos:   # acknowledge the broker's copy
                        s.sendall(b"\x40\x02" + body[2 + tl:4 + tl])
                    if msg == payload:
                        got_msg = True
            ok += 1
        except (EOFError, OSError) as e:
            fail("eof" if isinstance(e, EOFError) else "timeout" if isinstance(e, socket.timeout)
                 else type(e).__name__)
        finally:
            s.close()
    print(json.dumps({"ok": ok, "failed": failed}))
    return 0 if ok == n and not failed else 1


if __name__ == "__main__":
    sys.exit(main())
