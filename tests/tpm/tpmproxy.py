#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-2-Clause
"""tpmproxy.py - a TCP proxy in front of swtpm's command socket that records the
command code of every TPM command passing through (one hex code per line in --log),
so tests can check which operations ktlsgated really sends to the TPM. Optional
--sign-delay-ms emulates a slow hardware TPM on TPM2_Sign. Serves one connection at a
time, as swtpm does. Raw TPM framing (the swtpm TCTI): tag u16, size u32, code u32."""
import argparse
import socket
import struct
import sys
import threading
import time

TPM2_CC_SIGN = 0x15D


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def recv_msg(s):
    hdr = recv_exact(s, 10)
    if hdr is None:
        return None
    _, size, code = struct.unpack(">HII", hdr)
    if size < 10 or size > 1 << 20:
        return None
    rest = recv_exact(s, size - 10)
    if rest is None:
        return None
    return code, hdr + rest


def serve(client, a, log_lock):
    try:
        up = socket.create_connection(("127.0.0.1", a.upstream))
    except OSError:
        client.close()
        return
    try:
        while True:
            m = recv_msg(client)
            if m is None:
                break
            code, data = m
            with log_lock, open(a.log, "a") as f:
                f.write("%x\n" % code)
            if code == TPM2_CC_SIGN and a.sign_delay_ms:
                time.sleep(a.sign_delay_ms / 1000.0)
            up.sendall(data)
            r = recv_msg(up)
            if r is None:
                break
            client.sendall(r[1])
    except OSError:
        pass
    finally:
        up.close()
        client.close()


def pump(src, dst):
    try:
        while True:
            b = src.recv(65536)
            if not b:
                break
            dst.sendall(b)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def ctrl_forward(port, upstream):
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port))
    ls.listen(16)
    while True:
        c, _ = ls.accept()
        try:
            u = socket.create_connection(("127.0.0.1", upstream))
        except OSError:
            c.close()
            continue
        threading.Thread(target=pump, args=(c, u), daemon=True).start()
        threading.Thread(target=pump, args=(u, c), daemon=True).start()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--listen", type=int, required=True)
    p.add_argument("--upstream", type=int, required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--ctrl-upstream", type=int, required=True)
    p.add_argument("--sign-delay-ms", type=int, default=0)
    a = p.parse_args()
    threading.Thread(target=ctrl_forward, args=(a.listen + 1, a.ctrl_upstream),
                     daemon=True).start()
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", a.listen))
    ls.listen(16)
    lock = threading.Lock()
    open(a.log, "a").close()
    while True:
        c, _ = ls.accept()
        # one client at a time, like swtpm: the next waits in the backlog
        serve(c, a, lock)


if __name__ == "__main__":
    sys.exit(main())
