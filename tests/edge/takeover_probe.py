#!/usr/bin/python3
# SPDX-License-Identifier: BSD-2-Clause
"""takeover_probe.py MIGRATE: the kernel mechanism a zero-refusal restart rests on.

An "old" server (2 SO_REUSEPORT listeners on 127.0.0.1:PORT, accepting) serves a
client that connects in a tight loop; each accepted connection is answered with one
byte naming the server. Mid-run a "new" server opens its own listeners on the same
port, the old one stops accepting and closes its listeners with connections still
in their accept queues. With net.ipv4.tcp_migrate_req = MIGRATE (set by the caller in
a private netns), those queued connections either move to the new listeners (1) or
are reset (0). Prints one line: attempts, served by old/new, failures; exits 0 when
MIGRATE=1 saw no failure (or MIGRATE=0: always 0, the count is informational).
"""
import socket
import sys
import threading
import time

MIGRATE = sys.argv[1] == "1"


def listeners(port, n=2):
    out = []
    for _ in range(n):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.bind(("127.0.0.1", port))
        s.listen(1024)
        out.append(s)
    return out


def serve(socks, tag, stop):
    for s in socks:
        s.settimeout(0.01)
    while not stop.is_set():
        for s in socks:
            try:
                c, _ = s.accept()
            except (socket.timeout, OSError):
                continue
            try:
                c.sendall(tag)
            except OSError:
                pass
            c.close()


def main():
    old = listeners(0)
    port = old[0].getsockname()[1]
    old += listeners(port, 1)
    old_stop, new_stop, client_stop = threading.Event(), threading.Event(), threading.Event()
    counts = {b"o": 0, b"n": 0, "fail": 0, "n": 0}

    def client():
        while not client_stop.is_set():
            counts["n"] += 1
            try:
                c = socket.create_connection(("127.0.0.1", port), timeout=3)
                b = c.recv(1)
                c.close()
                if b in (b"o", b"n"):
                    counts[b] += 1
                else:
                    counts["fail"] += 1
            except OSError:
                counts["fail"] += 1

    threading.Thread(target=serve, args=(old, b"o", old_stop), daemon=True).start()
    clients = [threading.Thread(target=client, daemon=True) for _ in range(4)]
    for t in clients:
        t.start()
    time.sleep(1.0)
    new = listeners(port)
    threading.Thread(target=serve, args=(new, b"n", new_stop), daemon=True).start()
    time.sleep(0.2)
    # the old server stops accepting, lets its queues fill a moment, then closes
    old_stop.set()
    time.sleep(0.3)
    for s in old:
        s.close()
    time.sleep(1.0)
    client_stop.set()
    for t in clients:
        t.join(5)
    new_stop.set()
    print("tcp_migrate_req=%d: %d connects, served by old %d, by new %d, failed %d" %
          (MIGRATE, counts["n"], counts[b"o"], counts[b"n"], counts["fail"]))
    ok = counts["fail"] == 0 and counts[b"n"] > 0
    return 0 if (ok or not MIGRATE) else 1


sys.exit(main())
