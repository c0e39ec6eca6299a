#!/usr/bin/python3
# SPDX-License-Identifier: BSD-2-Clause
"""handover_loop.py HOST PORT CA CERT KEY ID RATE STOPFILE [SOURCE]: a device fleet's
reconnects across a restart (tests/edge/test-handover.sh): RATE full connections a
second (TCP, a full mutual TLS handshake, MQTT CONNECT, the CONNACK, DISCONNECT) from
a few threads, paced, until STOPFILE exists. Every attempt ends in one class: ok
(CONNACK 0), refused (ECONNREFUSED), reset (ECONNRESET, EOF or a TLS error before the
CONNACK), timeout, connack_N (another code), other. Prints one JSON object of counts
(and the first few failures, with the time they happened) on exit. STOPFILE.started
appears once the first attempt has ended."""
import json
import os
import socket
import ssl
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import kgclient  # noqa: E402

host, port, ca, cert, key, dev, rate, stop = sys.argv[1:9]
port, rate = int(port), float(rate)
source = sys.argv[9] if len(sys.argv) > 9 else None
THREADS = 8
counts = {}
failures = []
lock = threading.Lock()
t_start = time.monotonic()
ctx = kgclient.client_ctx(ca, cert, key)
# Full handshakes: a resumed one would not show a gate that cannot do a handshake.
ctx.options |= ssl.OP_NO_TICKET


def one():
    src = (source, 0) if source else None
    try:
        raw = socket.create_connection((host, port), timeout=5, source_address=src)
    except ConnectionRefusedError:
        return "refused"
    except socket.timeout:
        return "timeout"
    except OSError as e:
        return "other: %s" % e
    try:
        s = ctx.wrap_socket(raw, server_hostname=host)
        s.sendall(kgclient.connect_packet(dev))
        first, body = kgclient.PacketReader(s).packet()
        code = kgclient.connack_code(first, body, 4)
        if code != 0:
            return "connack_%d" % code
        s.sendall(kgclient.disconnect_packet())
        s.close()
        return "ok"
    except socket.timeout:
        return "timeout"
    except (ConnectionResetError, BrokenPipeError, EOFError, ssl.SSLError) as e:
        return "reset: %s" % e.__class__.__name__
    except Exception as e:  # noqa: BLE001 - any other failure is a result too
        return "other: %s" % e
    finally:
        raw.close()


def worker(k):
    period = THREADS / rate
    nxt = time.monotonic() + period * k / THREADS
    while not os.path.exists(stop):
        now = time.monotonic()
        if now < nxt:
            time.sleep(nxt - now)
        nxt = max(nxt + period, time.monotonic() - period)
        r = one()
        cls = r.split(":")[0]
        with lock:
            if not counts:
                open(stop + ".started", "w").close()   # the loop runs: tell the test
            counts[cls] = counts.get(cls, 0) + 1
            if cls != "ok" and len(failures) < 10:
                failures.append("%.2fs %s" % (time.monotonic() - t_start, r))


threads = [threading.Thread(target=worker, args=(k,)) for k in range(THREADS)]
for t in threads:
    t.start()
for t in threads:
    t.join()
elapsed = time.monotonic() - t_start
print(json.dumps({"counts": counts, "total": sum(counts.values()),
                  "rate": round(sum(counts.values()) / elapsed, 1), "failures": failures}))
