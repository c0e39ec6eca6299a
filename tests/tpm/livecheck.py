#!/usr/bin/python3
# SPDX-License-Identifier: BSD-2-Clause
"""livecheck.py - does a live session go on while a new handshake waits for the TPM?

1. Device A (--live-cert) connects through the gate and gets CONNACK 0.
2. --cmd runs (e.g. `kill -STOP <swtpm>`: the TPM stops answering, or a kill).
3. Device B (--new-cert) starts a full handshake in a thread.
4. After --ping-after s, A sends PINGREQ and times the PINGRESP (its bytes go through
   the same worker, user-space relay).
5. B's result and time are waited for.
Prints one line: "ping_ms=N hs=ok|tls_error:... hs_ms=N". Exit 0 when it could run
(the shell asserts on the numbers), 1 when A could not even connect.
"""
import argparse
import os
import socket
import ssl
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import kgclient  # noqa: E402


def tls_ctx(a, cert, key):
    ctx = ssl.create_default_context(cafile=a.ca)
    ctx.check_hostname = False
    ctx.load_cert_chain(cert, key)
    return ctx


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise EOFError("closed")
        buf += chunk
    return buf


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--live-cert", required=True)
    p.add_argument("--live-key", required=True)
    p.add_argument("--live-id", required=True)
    p.add_argument("--new-cert", required=True)
    p.add_argument("--new-key", required=True)
    p.add_argument("--cmd", required=True)
    p.add_argument("--ping-after", type=float, default=0.3)
    p.add_argument("--timeout", type=float, default=20.0)
    a = p.parse_args()

    raw = socket.create_connection(("127.0.0.1", a.port), timeout=a.timeout)
    live = tls_ctx(a, a.live_cert, a.live_key).wrap_socket(raw, server_hostname="localhost")
    live.sendall(kgclient.connect_packet(a.live_id))
    ack = recv_exact(live, 4)
    if ack[0] != 0x20 or ack[3] != 0:
        print("live session: CONNACK %s" % ack.hex())
        return 1
    subprocess.run(a.cmd, shell=True, check=False)

    result = {}

    def handshake():
        t0 = time.monotonic()
        try:
            s = socket.create_connection(("127.0.0.1", a.port), timeout=a.timeout)
            t = tls_ctx(a, a.new_cert, a.new_key).wrap_socket(s, server_hostname="localhost")
            t.close()
            result["hs"] = "ok"
        except (ssl.SSLError, OSError) as e:
            result["hs"] = "tls_error:" + str(e).replace(" ", "_")
        result["hs_ms"] = int((time.monotonic() - t0) * 1000)

    th = threading.Thread(target=handshake)
    th.start()
    time.sleep(a.ping_after)
    t0 = time.monotonic()
    try:
        live.sendall(b"\xc0\x00")
        resp = recv_exact(live, 2)
        ping = int((time.monotonic() - t0) * 1000) if resp == b"\xd0\x00" else -1
    except (OSError, EOFError):
        ping = -1
    th.join()
    live.close()
    print("ping_ms=%d hs=%s hs_ms=%d" % (ping, result.get("hs"), result.get("hs_ms", -1)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
