#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-2-Clause
"""stallcheck.py - a plain MQTT device that writes into a broker that never reads.

  stallcheck.py broker PORT            a broker that answers the CONNECT with CONNACK 0,
                                       then reads nothing more until the file RELEASE
                                       exists (or HOLD s passed); then it reads to the
                                       end and prints {"read": BYTES, "exact": BOOL}:
                                       the PUBLISH's payload checked against the
                                       device's pattern
  stallcheck.py device PORT TOKEN ID   CONNECT (3.1.1, user name TOKEN, client id ID) to
                                       a plain listener, then one QoS 0 PUBLISH of
                                       LIMIT pattern bytes written without blocking
                                       until the socket has taken nothing for QUIET s;
                                       prints {"accepted": BYTES, "connack": RC, "port":
                                       ITS PORT} as a JSON line; with FINISH set it then
                                       writes the rest (blocking), closes, and prints
                                       {"sent": BYTES}; with FINISH=fin it sends its FIN
                                       right after the JSON line, behind whatever its
                                       send buffer still holds, waits for the gate's
                                       EOF and prints {"sent": BYTES} (the payload it
                                       wrote in all); else it holds the session HOLD s
  stallcheck.py capture PORT           a broker that answers the CONNECT with CONNACK 0
                                       and records every byte after it until EOF (or
                                       HOLD s); prints {"after_connect": HEX}
  stallcheck.py overlap PORT TOKEN ID  CONNECT as `device`, then (the session in the
                                       kernel by then) 100 bytes A, then a segment
                                       crafted on a raw socket that a retransmission
                                       could be: A's last 50 bytes again and 50 new
                                       ones (seq and ack from TCP_REPAIR); prints
                                       {"expect": HEX}: A + the 50 new bytes, what
                                       TCP delivers (the overlap is read once)
  stallcheck.py lowat PID PORT         TCP_NOTSENT_LOWAT of every socket of process
                                       PID connected to 127.0.0.1:PORT (pidfd_getfd),
                                       one per line

test-relay-plain.sh t_notsent_lowat_sockmap uses them. A relay that buffers without
bound lets the device write all of LIMIT (the sockmap relay does today: docs/
architecture.md "Plain sessions").
"""
import ctypes
import json
import os
import select
import socket
import struct
import sys
import time

HOLD = float(os.environ.get("STALL_HOLD", "60"))
LIMIT = int(os.environ.get("STALL_LIMIT", str(200 << 20)))
QUIET = float(os.environ.get("STALL_QUIET", "3"))
RELEASE = os.environ.get("STALL_RELEASE", "")
FINISH = os.environ.get("STALL_FINISH", "")   # "1": write the rest; "fin": stop here
TCP_NOTSENT_LOWAT = 25
# The payload: a prime-length pattern repeated, so a lost, doubled or reordered chunk
# shows at the byte (offset % PAT_LEN picks the slice of PAT2).
PAT_LEN = 65521
PAT2 = bytes((i * 7 + 3) % 251 for i in range(PAT_LEN)) * 3


def pattern(off, n):
    o = off % PAT_LEN
    return PAT2[o:o + n]
SYS_PIDFD_GETFD = 438


def remaining_length(n):
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def mqtt_str(s):
    b = s.encode()
    return struct.pack("!H", len(b)) + b


def broker(port):
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen(4)
    conn, _ = srv.accept()
    conn.recv(4096)                      # the CONNECT (the gate forwards it whole)
    conn.sendall(b"\x20\x02\x00\x00")
    until = time.monotonic() + HOLD      # read nothing until released
    while time.monotonic() < until and not (RELEASE and os.path.exists(RELEASE)):
        time.sleep(0.1)
    head = b""
    while True:                          # the PUBLISH's fixed header and topic
        b = conn.recv(1)
        if not b:
            break
        head += b
        if len(head) >= 2 and not head[-1] & 0x80:
            break
    topic_len = conn.recv(2, socket.MSG_WAITALL)
    topic = conn.recv(struct.unpack("!H", topic_len)[0], socket.MSG_WAITALL) if len(topic_len) == 2 else b""
    got, exact = 0, topic == b"stall/t"
    while True:
        data = conn.recv(65536)
        if not data:
            break
        if exact:
            exact = data == pattern(got, len(data))
        got += len(data)
    print(json.dumps({"read": got, "exact": exact}))


def device(port, token, cid):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    var = mqtt_str("MQTT") + b"\x04\x82" + struct.pack("!H", 60)   # 3.1.1, user name, clean
    pay = mqtt_str(cid) + mqtt_str(token)
    body = var + pay
    s.sendall(b"\x10" + remaining_length(len(body)) + body)
    ack = b""
    while len(ack) < 4:
        chunk = s.recv(4 - len(ack))
        if not chunk:
            break
        ack += chunk
    rc = ack[3] if len(ack) == 4 else -1
    if rc != 0:
        print(json.dumps({"accepted": 0, "connack": rc}))
        return
    time.sleep(0.5)                      # the daemon hands the session to the kernel
    topic = mqtt_str("stall/t")
    head = b"\x30" + remaining_length(len(topic) + LIMIT) + topic
    s.sendall(head)
    s.setblocking(False)
    sent, last = 0, time.monotonic()
    while sent < LIMIT:
        _, w, _ = select.select([], [s], [], 0.2)
        if w:
            try:
                n = s.send(pattern(sent, min(65536, LIMIT - sent)))
            except BlockingIOError:
                n = 0
            if n > 0:
                sent += n
                last = time.monotonic()
                continue
        if time.monotonic() - last >= QUIET:
            break
    print(json.dumps({"accepted": sent, "connack": rc, "port": s.getsockname()[1]}))
    sys.stdout.flush()
    if not FINISH:
        time.sleep(HOLD)                 # the session stays up for the caller's checks
        return
    s.setblocking(True)
    if FINISH == "fin":                  # the FIN queues behind the unsent bytes
        s.settimeout(HOLD)
        s.shutdown(socket.SHUT_WR)
        while s.recv(4096):
            pass
        print(json.dumps({"sent": sent}))
        return
    s.settimeout(HOLD)
    while sent < LIMIT:
        n = min(65536, LIMIT - sent)
        s.sendall(pattern(sent, n))
        sent += n
        if sent % (1 << 20) == 0:
            time.sleep(0.01)             # a device paced like a real link (100 MB/s):
                                         # a relay that took over catches up, gives back
    s.shutdown(socket.SHUT_WR)
    while s.recv(4096):
        pass
    print(json.dumps({"sent": sent}))


def capture(port):
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen(4)
    conn, _ = srv.accept()
    conn.recv(4096)                      # the CONNECT
    conn.sendall(b"\x20\x02\x00\x00")
    conn.settimeout(HOLD)
    got = b""
    try:
        while True:
            data = conn.recv(65536)
            if not data:
                break
            got += data
    except socket.timeout:
        pass
    print(json.dumps({"after_connect": got.hex()}))


TCP_REPAIR, TCP_REPAIR_QUEUE, TCP_QUEUE_SEQ = 19, 20, 21
TCP_RECV_QUEUE, TCP_SEND_QUEUE = 1, 2


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def overlap(port, token, cid):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    var = mqtt_str("MQTT") + b"\x04\x82" + struct.pack("!H", 60)
    body = var + mqtt_str(cid) + mqtt_str(token)
    s.sendall(b"\x10" + remaining_length(len(body)) + body)
    ack = s.recv(4)
    if ack != b"\x20\x02\x00\x00":
        print(json.dumps({"error": "connack " + ack.hex()}))
        return
    time.sleep(0.5)                      # the daemon hands the session to the kernel
    a = bytes((i * 13 + 7) % 256 for i in range(100))
    s.sendall(a)
    time.sleep(0.3)                      # received and acknowledged
    # Where the stream is: our next sequence number and the gate's (TCP_REPAIR, root).
    s.setsockopt(socket.IPPROTO_TCP, TCP_REPAIR, 1)
    s.setsockopt(socket.IPPROTO_TCP, TCP_REPAIR_QUEUE, TCP_SEND_QUEUE)
    snd = struct.unpack("I", s.getsockopt(socket.IPPROTO_TCP, TCP_QUEUE_SEQ, 4))[0]
    s.setsockopt(socket.IPPROTO_TCP, TCP_REPAIR_QUEUE, TCP_RECV_QUEUE)
    rcv = struct.unpack("I", s.getsockopt(socket.IPPROTO_TCP, TCP_QUEUE_SEQ, 4))[0]
    new = bytes(0x41 + i % 26 for i in range(50))
    payload = a[50:] + new
    sport, dport = s.getsockname()[1], port
    hdr = struct.pack("!HHIIBBHHH", sport, dport, (snd - 50) & 0xFFFFFFFF, rcv, 5 << 4, 0x18, 65535, 0, 0)
    pseudo = socket.inet_aton("127.0.0.1") * 2 + struct.pack("!BBH", 0, 6, len(hdr) + len(payload))
    c = checksum(pseudo + hdr + payload)
    hdr = hdr[:16] + struct.pack("!H", c) + hdr[18:]
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
    raw.sendto(hdr + payload, ("127.0.0.1", 0))
    raw.close()
    print(json.dumps({"expect": (a + new).hex()}))
    sys.stdout.flush()
    time.sleep(1)                        # relayed by then; closing ends the capture


def lowat(pid, port):
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = os.pidfd_open(pid)
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            continue
        if not target.startswith("socket:"):
            continue
        fd = libc.syscall(SYS_PIDFD_GETFD, pidfd, int(name), 0)
        if fd < 0:
            continue
        try:
            s = socket.socket(fileno=fd)
            try:
                peer = s.getpeername()
            except OSError:
                continue
            if s.family == socket.AF_INET and s.type == socket.SOCK_STREAM and peer[1] == port:
                print(s.getsockopt(socket.IPPROTO_TCP, TCP_NOTSENT_LOWAT))
        finally:
            s.detach()
            os.close(fd)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "broker":
        broker(int(sys.argv[2]))
    elif len(sys.argv) == 5 and sys.argv[1] == "device":
        device(int(sys.argv[2]), sys.argv[3], sys.argv[4])
    elif len(sys.argv) == 3 and sys.argv[1] == "capture":
        capture(int(sys.argv[2]))
    elif len(sys.argv) == 5 and sys.argv[1] == "overlap":
        overlap(int(sys.argv[2]), sys.argv[3], sys.argv[4])
    elif len(sys.argv) == 4 and sys.argv[1] == "lowat":
        lowat(int(sys.argv[2]), int(sys.argv[3]))
    else:
        sys.exit(__doc__)
