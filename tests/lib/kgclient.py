#!/usr/bin/python3
# SPDX-License-Identifier: BSD-2-Clause
"""kgclient.py - the MQTT-over-mTLS test client of the integration suite and the demo.

Hand-built MQTT packets over a python ssl socket, so a test can see the exact CONNACK
byte the gate answers with, a TLS alert, or the moment the gate closes the socket; plus
a paho-mqtt check of the same CONNACK, a load generator (asyncio, N concurrent devices
publishing QoS 1), raw TCP probes (cut or stalled ClientHello, silent peer), a reader
of the daemon's JSON audit lines and a metrics scraper. Every operation has a deadline;
results are printed as one line of text ("connack 0x87", "tls_error: ...", JSON) for
the shell tests to assert on. Uses /usr/bin/python3 with paho-mqtt 1.6 only.
"""
import argparse
import asyncio
import json
import os
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
import urllib.request

# --- MQTT encoding -------------------------------------------------------------------


def varint(n):
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def mstr(b):
    if isinstance(b, str):
        b = b.encode()
    return struct.pack("!H", len(b)) + b


def connect_packet(client_id, level=4, keepalive=60, clean=True, username=None,
                   password=None, will_topic=None, will_msg=b"", props=b"", will_props=b""):
    """A CONNECT. props, will_props: MQTT 5.0 property bytes of the CONNECT, the will."""
    proto = b"MQIsdp" if level == 3 else b"MQTT"
    flags = 0x02 if clean else 0
    if username is not None:
        flags |= 0x80
    if password is not None:
        flags |= 0x40
    if will_topic is not None:
        flags |= 0x04 | 0x08  # will, QoS 1
    vh = mstr(proto) + bytes([level, flags]) + struct.pack("!H", keepalive)
    if level == 5:
        vh += varint(len(props)) + props
    payload = mstr(client_id)
    if will_topic is not None:
        if level == 5:
            payload += varint(len(will_props)) + will_props
        payload += mstr(will_topic) + mstr(will_msg)
    if username is not None:
        payload += mstr(username)
    if password is not None:
        payload += mstr(password)
    return b"\x10" + varint(len(vh) + len(payload)) + vh + payload


def parse_connect(buf):
    """The fields of the CONNECT at the start of buf (3.1, 3.1.1, 5.0) as a dict; the
    test side of what the gate forwards. Raises ValueError on anything else."""
    if not buf or buf[0] != 0x10:
        raise ValueError("not a CONNECT")
    rem, mult, i = 0, 1, 1
    while True:
        rem += (buf[i] & 0x7F) * mult
        mult *= 128
        i += 1
        if not buf[i - 1] & 0x80:
            break
    end = i + rem
    if len(buf) < end:
        raise ValueError("short CONNECT")
    pos = i

    def take(n):
        nonlocal pos
        if pos + n > end:
            raise ValueError("field past the end")
        v = buf[pos:pos + n]
        pos += n
        return v

    def string():
        return take(struct.unpack("!H", take(2))[0])

    def props():
        n, mult = 0, 1
        while True:
            b = take(1)[0]
            n += (b & 0x7F) * mult
            mult *= 128
            if not b & 0x80:
                return take(n)

    res = {"protocol": string().decode(), "level": take(1)[0]}
    flags = take(1)[0]
    res["flags"] = flags
    res["keepalive"] = struct.unpack("!H", take(2))[0]
    if res["level"] == 5:
        res["props"] = props().hex()
    res["client_id"] = string().decode()
    res["will_topic"] = res["will_msg"] = None
    if flags & 0x04:
        if res["level"] == 5:
            res["will_props"] = props().hex()
        res["will_topic"] = string().decode()
        res["will_msg"] = string().decode(errors="replace")
    res["username"] = string().decode() if flags & 0x80 else None
    res["password"] = string().decode(errors="replace") if flags & 0x40 else None
    if pos != end:
        raise ValueError("%d bytes left in the CONNECT" % (end - pos))
    res["connect_len"] = end
    return res


def publish_packet(topic, payload, qos=0, pid=1, level=4):
    if isinstance(payload, str):
        payload = payload.encode()
    vh = mstr(topic)
    if qos:
        vh += struct.pack("!H", pid)
    if level == 5:
        vh += varint(0)
    return bytes([0x30 | (qos << 1)]) + varint(len(vh) + len(payload)) + vh + payload


def disconnect_packet():
    return b"\xe0\x00"


class PacketReader:
    """Splits a byte stream (ssl socket) into MQTT packets."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("peer closed")
        self.buf += data

    def packet(self):
        """Returns (first byte, body). Raises EOFError, ssl.SSLError, socket.timeout."""
        while True:
            if len(self.buf) >= 2:
                mult, rem, i = 1, 0, 1
                complete = False
                while i < len(self.buf) and i <= 4:
                    b = self.buf[i]
                    rem += (b & 0x7F) * mult
                    mult *= 128
                    i += 1
                    if not b & 0x80:
                        complete = True
                        break
                if complete and len(self.buf) >= i + rem:
                    first, body = self.buf[0], self.buf[i:i + rem]
                    self.buf = self.buf[i + rem:]
                    return first, body
            self._fill()


# --- TLS -----------------------------------------------------------------------------


def client_ctx(ca, cert=None, key=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False  # the server name is not what these tests are about
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(ca)
    if cert:
        ctx.load_cert_chain(cert, key)
    return ctx


def tls_open(a):
    src = (a.source, 0) if getattr(a, "source", None) else None
    raw = socket.create_connection((a.host, a.port), timeout=a.timeout, source_address=src)
    if getattr(a, "plain", False):
        return raw
    if not a.ca:
        raise SystemExit("--ca is required unless --plain")
    ctx = client_ctx(a.ca, a.cert, a.key)
    s = ctx.wrap_socket(raw, server_hostname=a.host)
    return s


TLS_ERRORS = (ssl.SSLError, ConnectionResetError, BrokenPipeError)


def is_eof_error(e):
    return isinstance(e, (EOFError, ssl.SSLEOFError, ssl.SSLZeroReturnError,
                          ConnectionResetError, BrokenPipeError))


def out(line):
    print(line, flush=True)


def connack_code(first, body, level):
    if first >> 4 != 2 or len(body) < 2:
        raise ValueError("not a CONNACK: %02x %s" % (first, body.hex()))
    return body[1]


def mqtt_session(a):
    """TLS connect, CONNECT (optionally pipelined with a PUBLISH), read the CONNACK.
    Returns (sock, reader, code) or prints the failure and returns None."""
    try:
        s = tls_open(a)
    except TLS_ERRORS as e:
        out("tls_error: %s" % e)
        return None
    except socket.timeout:
        out("timeout: handshake")
        return None
    except OSError as e:
        out("connect_error: %s" % e)
        return None
    if getattr(a, "peek", 0):
        # Wait for the server's verdict on our certificate before sending anything: a
        # TLS 1.3 server that refuses it sends its alert after our Finished, and a
        # CONNECT already on its way could turn the alert into a connection reset.
        s.settimeout(a.peek / 1000.0)
        try:
            s.recv(1)
            out("closed: eof before CONNECT")
            return None
        except socket.timeout:
            s.settimeout(a.timeout)
        except ssl.SSLError as e:
            out("tls_error: %s" % e)
            return None
        except OSError as e:
            out("closed: %s" % e)
            return None
    pkt = connect_packet(a.id, a.level, username=getattr(a, "username", None),
                         password=getattr(a, "password", None),
                         will_topic=getattr(a, "will_topic", None),
                         will_msg=getattr(a, "will_msg", "") or "",
                         props=bytes.fromhex(getattr(a, "v5_props", "") or ""),
                         will_props=bytes.fromhex(getattr(a, "v5_will_props", "") or ""))
    if getattr(a, "sent_connect", None):
        with open(a.sent_connect, "wb") as f:
            f.write(pkt)
    if a.pipeline:
        pkt += publish_packet(a.topic, a.msg, a.qos, 1, a.level)
    if getattr(a, "pipeline_n", 0):
        tail = b"".join(publish_packet("%s/%d" % (a.topic, k), pipeline_payload(k), 1, k, a.level)
                        for k in range(1, a.pipeline_n + 1))
        pkt += tail
        if a.sent:
            with open(a.sent, "wb") as f:
                f.write(tail)
    r = PacketReader(s)
    try:
        s.sendall(pkt)
        first, body = r.packet()
        code = connack_code(first, body, a.level)
    except ssl.SSLError as e:
        # TLS 1.3: the server's verdict on our certificate arrives after our side of
        # the handshake finished, so the alert shows up on the first read.
        out("tls_error: %s" % e)
        return None
    except socket.timeout:
        out("timeout: no CONNACK")
        return None
    except (EOFError, ConnectionResetError, BrokenPipeError) as e:
        out("closed: %s" % (e or "eof"))
        return None
    out("connack 0x%02x" % code)
    if code != 0:
        return None
    return s, r, code


# Sizes of the --pipeline-n PUBLISH payloads: around the one- and two-byte remaining
# length limits, so the packets behind a rewritten CONNECT cross them too.
PIPELINE_SIZES = (1, 120, 121, 127, 128, 16370, 16384, 300)


def pipeline_payload(k):
    """Printable and a pure function of k (a subscriber prints it on one line)."""
    alpha = b"abcdefghijklmnopqrstuvwxyz0123456789"
    n = PIPELINE_SIZES[(k - 1) % len(PIPELINE_SIZES)]
    return bytes(alpha[(k * 7 + i) % len(alpha)] for i in range(n))


def subscribe_packet(topic, pid, level):
    vh = struct.pack("!H", pid)
    if level == 5:
        vh += varint(0)
    payload = mstr(topic) + b"\x01"
    return b"\x82" + varint(len(vh) + len(payload)) + vh + payload


def wait_suback(r, pid, level):
    while True:
        first, body = r.packet()
        if first >> 4 == 9 and struct.unpack("!H", body[:2])[0] == pid:
            i = 2
            if level == 5:
                n, mult = 0, 1
                while True:
                    b = body[i]
                    i += 1
                    n += (b & 0x7F) * mult
                    mult *= 128
                    if not b & 0x80:
                        break
                i += n
            return body[i]


def listen_publishes(s, r, secs, level):
    """Print every PUBLISH received for secs seconds ("message TOPIC PAYLOAD")."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < secs:
        s.settimeout(max(0.05, secs - (time.monotonic() - t0)))
        try:
            first, body = r.packet()
        except socket.timeout:
            break
        if first >> 4 != 3:
            continue
        tlen = struct.unpack("!H", body[:2])[0]
        topic = body[2:2 + tlen].decode()
        i = 2 + tlen
        qos = (first >> 1) & 3
        if qos:
            pid = struct.unpack("!H", body[i:i + 2])[0]
            i += 2
            s.sendall(b"\x40\x02" + struct.pack("!H", pid))
        if level == 5:
            n, mult = 0, 1
            while True:
                b = body[i]
                i += 1
                n += (b & 0x7F) * mult
                mult *= 128
                if not b & 0x80:
                    break
            i += n
        out("message %s %s" % (topic, body[i:].decode(errors="replace")))


def wait_puback(r, pid):
    while True:
        first, body = r.packet()
        if first >> 4 == 4 and struct.unpack("!H", body[:2])[0] == pid:
            return body[2] if len(body) > 2 else 0


def publish(s, r, a, pid):
    s.sendall(publish_packet(a.topic, a.msg, a.qos, pid, a.level))
    if a.qos:
        rc = wait_puback(r, pid)
        out("puback 0x%02x" % rc)


def cmd_connect(a):
    res = mqtt_session(a)
    if res is None:
        return 0
    s, r, _ = res
    try:
        if a.pipeline:
            if a.qos:
                out("puback 0x%02x" % wait_puback(r, 1))
        elif a.pipeline_n:
            for k in range(1, a.pipeline_n + 1):
                wait_puback(r, k)
            out("pubacks %d" % a.pipeline_n)
        elif a.topic:
            publish(s, r, a, 1)
        if a.subscribe:
            s.sendall(subscribe_packet(a.subscribe, 100, a.level))
            out("suback 0x%02x" % wait_suback(r, 100, a.level))
        if a.publish_cmd:
            rc = subprocess.call(a.publish_cmd, shell=True, timeout=a.timeout * 4)
            out("publish_cmd rc=%d" % rc)
        if a.listen:
            listen_publishes(s, r, a.listen, a.level)
        if a.drop:
            # no DISCONNECT: the broker publishes the will
            s.close()
            out("dropped")
            return 0
        if a.then:
            rc = subprocess.call(a.then, shell=True, timeout=a.timeout * 4)
            out("then rc=%d" % rc)
            if a.topic:
                a.msg = a.msg + "-after"
                publish(s, r, a, 2)
        if a.hold:
            hold_until_eof(s, a.hold)
            return 0
        s.sendall(disconnect_packet())
        s.close()
    except socket.timeout:
        out("timeout")
    except Exception as e:  # noqa: BLE001 - report any failure as a line
        out("closed: %s" % (e.__class__.__name__ if not str(e) else e))
    return 0


def cmd_resume(a):
    """Connect --times times with one TLS context, offering the last session's ticket:
    per connection "conn N new|reused VERSION", then its CONNACK (and PUBACK with
    --topic). --between runs a shell command before every connection but the first;
    --during one while each admitted connection is up (env KGC_CONN = its number)."""
    ctx = client_ctx(a.ca, a.cert, a.key)
    if a.tls12:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    sess = None
    for i in range(a.times):
        if i > 0 and a.between:
            out("between rc=%d" % subprocess.call(a.between, shell=True, timeout=a.timeout * 4))
        try:
            raw = socket.create_connection((a.host, a.port), timeout=a.timeout)
            s = ctx.wrap_socket(raw, server_hostname=a.host, session=sess)
        except (TLS_ERRORS + (OSError,)) as e:
            out("conn %d tls_error: %s" % (i, e))
            continue
        out("conn %d %s %s" % (i, "reused" if s.session_reused else "new", s.version()))
        r = PacketReader(s)
        try:
            s.sendall(connect_packet(a.id, a.level))
            first, body = r.packet()
            code = connack_code(first, body, a.level)
            out("conn %d connack 0x%02x" % (i, code))
            if code == 0:
                if a.topic:
                    a.msg = "%s-%d" % (a.base_msg, i)
                    publish(s, r, a, 1)
                if a.during:
                    env = dict(os.environ, KGC_CONN=str(i))
                    out("conn %d during rc=%d" % (i, subprocess.call(
                        a.during, shell=True, timeout=a.timeout * 4, env=env)))
                # a TLS 1.3 ticket arrives before the first application data;
                # without one (the server let the client keep its ticket) the
                # session offered is the one to offer again. OpenSSL names a
                # client's ticket session by the SHA-256 of the ticket.
                sess = s.session
                if sess is not None:
                    out("conn %d ticket %s" % (i, sess.id.hex()[:16]))
                s.sendall(disconnect_packet())
        except ssl.SSLError as e:
            out("conn %d tls_error: %s" % (i, e))
        except (EOFError, ConnectionResetError, BrokenPipeError, socket.timeout) as e:
            out("conn %d closed: %s" % (i, e or "eof"))
        s.close()
    return 0


def hold_until_eof(s, secs):
    t0 = time.monotonic()
    s.settimeout(0.2)
    while time.monotonic() - t0 < secs:
        try:
            d = s.recv(4096)
            if not d:
                break
        except socket.timeout:
            continue
        except Exception:  # noqa: BLE001 - any error ends the session
            break
    else:
        out("still open after %.1fs" % secs)
        return
    out("eof after %.0f ms" % ((time.monotonic() - t0) * 1000))


def cmd_cutoff(a):
    """Connected session; run the CLI; time from just before starting it to EOF."""
    res = mqtt_session(a)
    if res is None:
        return 1
    s, _, _ = res
    s.settimeout(0.005)
    times = {}

    def run():
        p = subprocess.Popen(a.cmd, shell=True)
        rc = p.wait()
        times["cli_end"] = time.monotonic()
        times["cli_rc"] = rc

    t0 = time.monotonic()
    th = threading.Thread(target=run)
    th.start()
    eof = None
    while time.monotonic() - t0 < 5:
        try:
            d = s.recv(4096)
            if not d:
                eof = time.monotonic()
                break
        except socket.timeout:
            continue
        except Exception:  # noqa: BLE001 - reset, TLS EOF: the session ended
            eof = time.monotonic()
            break
    th.join(10)
    res = {"cli_rc": times.get("cli_rc"),
           "cli_ms": round((times["cli_end"] - t0) * 1000, 1) if "cli_end" in times else None,
           "eof_ms": round((eof - t0) * 1000, 1) if eof else None}
    out(json.dumps(res))
    return 0


def cmd_paho(a):
    import paho.mqtt.client as mqtt
    proto = mqtt.MQTTv5 if a.level == 5 else mqtt.MQTTv311
    c = mqtt.Client(client_id=a.id, protocol=proto)
    if not getattr(a, "plain", False):
        c.tls_set(ca_certs=a.ca, certfile=a.cert, keyfile=a.key)
        c.tls_insecure_set(True)
    if getattr(a, "username", None) is not None:
        c.username_pw_set(a.username, getattr(a, "password", None))
    result = {}

    def on_connect(client, userdata, flags, rc, properties=None):
        result["rc"] = rc.value if hasattr(rc, "value") else rc

    c.on_connect = on_connect
    try:
        c.connect(a.host, a.port, keepalive=30)
    except TLS_ERRORS as e:
        out("tls_error: %s" % e)
        return 0
    except OSError as e:
        out("connect_error: %s" % e)
        return 0
    t0 = time.monotonic()
    while "rc" not in result and time.monotonic() - t0 < a.timeout:
        try:
            if c.loop(timeout=0.1) not in (0,) and "rc" not in result:
                break
        except TLS_ERRORS as e:
            out("tls_error: %s" % e)
            return 0
    if "rc" in result:
        out("connack 0x%02x" % result["rc"])
        if result["rc"] == 0 and a.topic:
            info = c.publish(a.topic, a.msg, qos=a.qos)
            t0 = time.monotonic()
            while not info.is_published() and time.monotonic() - t0 < a.timeout:
                c.loop(timeout=0.1)
            out("published" if info.is_published() else "publish timeout")
            c.disconnect()
    else:
        out("closed: no CONNACK")
    return 0


# --- bad input ------------------------------------------------------------------------


def bad_payload(kind, level, cid):
    good = connect_packet(cid, level)
    if kind == "garbage":
        return b"\xff\x13\x37GARBAGE-not-mqtt" * 8
    if kind == "truncated":
        # consistent remaining length, but the body stops inside the protocol name
        body = mstr(b"MQTT")[:4]
        return b"\x10" + varint(len(body)) + body
    if kind == "oversized":
        return b"\x10" + varint(200000) + good[2:]
    if kind == "not_connect":
        return publish_packet("x/y", "first", 0, 1, level)
    if kind == "bad_varint":
        return b"\x10\xff\xff\xff\xff\x7f"
    if kind == "partial":
        return good[: len(good) // 2]
    if kind == "bad_level":
        # a well-formed CONNECT with protocol level 6, which no MQTT version defines
        body = mstr(b"MQTT") + bytes([6, 2, 0, 60]) + mstr(cid.encode())
        return b"\x10" + varint(len(body)) + body
    raise SystemExit("unknown kind " + kind)


def wait_closed(s, secs):
    """Seconds until the peer closed, or None if still open after secs."""
    t0 = time.monotonic()
    s.settimeout(0.05)
    while time.monotonic() - t0 < secs:
        try:
            d = s.recv(65536)
            if not d:
                return time.monotonic() - t0
        except socket.timeout:
            continue
        except Exception:  # noqa: BLE001 - reset / TLS EOF: closed
            return time.monotonic() - t0
    return None


def cmd_bad(a):
    """After a good TLS handshake, send bad MQTT and time how soon the gate closes."""
    try:
        s = tls_open(a)
    except TLS_ERRORS as e:
        out("tls_error: %s" % e)
        return 1
    except OSError as e:
        out("connect_error: %s" % e)
        return 1
    sent = 0
    reply = b""
    t0 = time.monotonic()
    try:
        if a.kind == "huge":
            # a 10 MB CONNECT: header first, then stream the body until the gate hangs up
            total = 10 * 1024 * 1024
            s.sendall(b"\x10" + varint(total) + mstr(b"MQTT") + bytes([4, 2, 0, 60]))
            chunk = b"A" * 65536
            s.settimeout(2)
            while sent < total and time.monotonic() - t0 < 10:
                s.sendall(chunk)
                sent += len(chunk)
        elif a.kind == "silent":
            pass
        else:
            s.sendall(bad_payload(a.kind, a.level, a.id))
        if a.kind == "bad_level":
            s.settimeout(2)
            while len(reply) < 4:
                d = s.recv(4 - len(reply))
                if not d:
                    break
                reply += d
    except Exception:  # noqa: BLE001 - the gate closed while we were still sending
        pass
    left = max(0.1, a.timeout - (time.monotonic() - t0))
    dt = wait_closed(s, left)
    elapsed = time.monotonic() - t0
    out(json.dumps({"kind": a.kind, "closed": dt is not None,
                    "ms": round(elapsed * 1000) if dt is not None else None,
                    "sent": sent, "reply": reply.hex()}))
    return 0


def client_hello(host):
    """The first flight of a real TLS client, via memory BIOs."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    inc, outg = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, outg, server_hostname=host)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outg.read()


def cmd_tcp(a):
    """Raw TCP probes: cut ClientHello (then close), stalled ClientHello, silent peer."""
    try:
        s = socket.create_connection((a.host, a.port), timeout=a.timeout)
    except OSError as e:
        out("connect_error: %s" % e)
        return 1
    t0 = time.monotonic()
    if a.kind in ("cut_hello", "stall_hello"):
        hello = client_hello(a.host)
        s.sendall(hello[:50])
    if a.kind == "cut_hello":
        s.close()
        out(json.dumps({"kind": a.kind, "sent": 50}))
        return 0
    dt = wait_closed(s, a.timeout)
    elapsed = time.monotonic() - t0
    out(json.dumps({"kind": a.kind, "closed": dt is not None,
                    "ms": round(elapsed * 1000) if dt is not None else None}))
    return 0


# --- load ----------------------------------------------------------------------------


async def load_one(i, a, ctx, sem, connected, go, stats):
    cid = "%s%d" % (a.prefix, i)
    topic = "%s/%s" % (a.topic, cid)
    w = None
    try:
        async with sem:
            r, w = await asyncio.wait_for(
                asyncio.open_connection(a.host, a.port, ssl=ctx, server_hostname=a.host),
                a.timeout)
            w.write(connect_packet(cid, a.level))
            hdr = await asyncio.wait_for(r.readexactly(2), a.timeout)
            body = await asyncio.wait_for(r.readexactly(hdr[1]), a.timeout)
            if hdr[0] >> 4 != 2 or body[1] != 0:
                stats["refused"] += 1
                return
        stats["connected"] += 1
        connected.release()
        await go.wait()
        w.write(publish_packet(topic, "load %d" % i, 1, 7, a.level))
        while True:
            hdr = await asyncio.wait_for(r.readexactly(2), a.timeout * 4)
            body = await asyncio.wait_for(r.readexactly(hdr[1]), a.timeout)
            if hdr[0] >> 4 == 4:
                stats["puback"] += 1
                break
        w.write(disconnect_packet())
        await w.drain()
    except Exception as e:  # noqa: BLE001 - counted, first few reported
        stats["errors"] += 1
        if stats["errors"] <= 5:
            print("device %s: %r" % (cid, e), file=sys.stderr)
        connected.release()
    finally:
        if w is not None:
            w.close()


async def load_main(a):
    ctxs = []
    for i in range(a.n):
        d = os.path.join(a.certdir, "%s%d" % (a.prefix, i))
        ctxs.append(client_ctx(a.ca, os.path.join(d, "chain.pem"), os.path.join(d, "key.pem")))
    stats = {"connected": 0, "refused": 0, "puback": 0, "errors": 0}
    sem = asyncio.Semaphore(a.parallel)
    connected = asyncio.Semaphore(0)
    go = asyncio.Event()
    t0 = time.monotonic()
    tasks = [asyncio.create_task(load_one(i, a, ctxs[i], sem, connected, go, stats))
             for i in range(a.n)]
    for _ in range(a.n):
        await connected.acquire()
    t_conn = time.monotonic() - t0
    # every device is connected at once now (all that made it): publish together
    go.set()
    await asyncio.gather(*tasks)
    stats["connect_s"] = round(t_conn, 2)
    stats["total_s"] = round(time.monotonic() - t0, 2)
    stats["n"] = a.n
    out(json.dumps(stats))


def cmd_load(a):
    asyncio.run(load_main(a))
    return 0


# --- audit log and metrics ---------------------------------------------------------


def audit_lines(path, start):
    res = []
    try:
        with open(path, "rb") as f:
            lines = f.read().split(b"\n")
    except OSError:
        return res
    for n, line in enumerate(lines[start:], start):
        line = line.strip()
        if not line.startswith(b"{"):
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        # "decision" lines, and "close" lines that carry the verdict on a live
        # session (revoked, killed, timeout...)
        if "decision" in obj and "reason" in obj:
            res.append(obj)
    return res


def cmd_audit(a):
    """Wait until an audit line with a verdict after line `from` matches; print it."""
    t0 = time.monotonic()
    while True:
        for obj in audit_lines(a.log, a.start):
            if a.reason and obj.get("reason") != a.reason:
                continue
            if a.device is not None and obj.get("device") != a.device:
                continue
            if a.decision and obj.get("decision") != a.decision:
                continue
            out(json.dumps(obj))
            return 0
        if time.monotonic() - t0 > a.wait:
            seen = [(o.get("device"), o.get("reason")) for o in audit_lines(a.log, a.start)]
            out("no match; decisions seen since line %d: %s" % (a.start, seen[-8:]))
            return 1
        time.sleep(0.05)


def cmd_metrics(a):
    url = "http://%s:%d/metrics" % (a.host, a.port)
    try:
        with urllib.request.urlopen(url, timeout=a.timeout) as r:
            sys.stdout.write(r.read().decode())
    except OSError as e:
        print("metrics: %s: %s" % (url, e), file=sys.stderr)
        return 1
    return 0


# --- what the gate forwards to the broker --------------------------------------------


def cmd_tap(a):
    """A TCP proxy in front of the broker that records what each connection sends
    upstream in DIR/N.up (N counts connections from 1), flushed as it arrives."""
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((a.host, a.port))
    ls.listen(128)
    n = 0

    def pump(src, dst, rec):
        try:
            while True:
                d = src.recv(65536)
                if not d:
                    break
                if rec:
                    rec.write(d)
                    rec.flush()
                dst.sendall(d)
        except OSError:
            pass
        finally:
            for sock, how in ((dst, socket.SHUT_WR), (src, socket.SHUT_RD)):
                try:
                    sock.shutdown(how)
                except OSError:
                    pass
            if rec:
                rec.close()

    while True:
        c, _ = ls.accept()
        n += 1
        try:
            u = socket.create_connection((a.host, a.to), timeout=a.timeout)
            u.settimeout(None)
        except OSError:
            c.close()
            continue
        rec = open(os.path.join(a.dir, "%d.up" % n), "wb")
        threading.Thread(target=pump, args=(c, u, rec), daemon=True).start()
        threading.Thread(target=pump, args=(u, c, None), daemon=True).start()


def cmd_tapcheck(a):
    """The CONNECT recorded in a tap file, and whether the bytes behind it start with
    exactly the ones in --sent: one JSON line."""
    with open(a.tap, "rb") as f:
        data = f.read()
    try:
        res = parse_connect(data)
    except (ValueError, IndexError) as e:
        out(json.dumps({"error": str(e), "len": len(data)}))
        return 1
    if a.sent:
        with open(a.sent, "rb") as f:
            sent = f.read()
        rest = data[res["connect_len"]:]
        res["sent_len"] = len(sent)
        res["rest_exact"] = rest[:len(sent)] == sent
    if a.connect:
        with open(a.connect, "rb") as f:
            res["connect_exact"] = data[:res["connect_len"]] == f.read()
    out(json.dumps(res))
    return 0


# --- command line -------------------------------------------------------------------


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="op", required=True)

    def common(sp, tls=True):
        sp.add_argument("--host", default="127.0.0.1")
        sp.add_argument("--source", help="local address to connect from")
        sp.add_argument("--port", type=int, required=True)
        sp.add_argument("--timeout", type=float, default=5.0)
        if tls:
            sp.add_argument("--ca", help="CA file to verify the gate (required but with --plain)")
            sp.add_argument("--plain", action="store_true",
                            help="no TLS: MQTT straight over TCP (a plain listener)")
            sp.add_argument("--cert")
            sp.add_argument("--key")
            sp.add_argument("--id", default="dev")
            sp.add_argument("--level", type=int, default=4, choices=(3, 4, 5))
            sp.add_argument("--topic", default="")
            sp.add_argument("--msg", default="hello")
            sp.add_argument("--qos", type=int, default=1, choices=(0, 1))
            sp.add_argument("--username", help="CONNECT user name (default: none)")
            sp.add_argument("--password", help="CONNECT password (default: none)")
            sp.add_argument("--will-topic", help="CONNECT will (QoS 1) on this topic")
            sp.add_argument("--will-msg", default="", help="the will's payload")
            sp.add_argument("--v5-props", default="", help="MQTT 5.0 CONNECT properties, hex")
            sp.add_argument("--v5-will-props", default="", help="MQTT 5.0 will properties, hex")

    sp = sub.add_parser("connect", help="CONNECT, print the CONNACK code, optionally publish")
    common(sp)
    sp.add_argument("--pipeline", action="store_true", help="CONNECT+PUBLISH in one send")
    sp.add_argument("--then", help="shell command to run after the CONNACK, then publish again")
    sp.add_argument("--hold", type=float, default=0, help="stay connected up to N s, print EOF")
    sp.add_argument("--peek", type=float, default=0,
                    help="wait up to MS for a TLS alert before sending CONNECT")
    sp.add_argument("--pipeline-n", type=int, default=0,
                    help="N QoS 1 PUBLISHes to TOPIC/1..N in the CONNECT's send, wait for the PUBACKs")
    sp.add_argument("--sent", help="write the bytes pipelined behind the CONNECT to FILE")
    sp.add_argument("--sent-connect", help="write the CONNECT sent to FILE")
    sp.add_argument("--subscribe", help="after the CONNACK: SUBSCRIBE (QoS 1), print the SUBACK code")
    sp.add_argument("--publish-cmd", help="shell command to run after --subscribe")
    sp.add_argument("--listen", type=float, default=0,
                    help="then print every PUBLISH received for N s")
    sp.add_argument("--drop", action="store_true", help="close without DISCONNECT (fires the will)")
    sp = sub.add_parser("resume", help="connect N times, resuming the TLS session each time")
    common(sp)
    sp.add_argument("--times", type=int, default=2)
    sp.add_argument("--between", help="shell command to run before each reconnection")
    sp.add_argument("--during", help="shell command to run while each connection is up")
    sp.add_argument("--tls12", action="store_true", help="at most TLS 1.2")
    sp = sub.add_parser("paho", help="same CONNACK check through paho-mqtt")
    common(sp)
    sp = sub.add_parser("cutoff", help="time from running CMD to the session's EOF")
    common(sp)
    sp.add_argument("--cmd", required=True)
    sp.add_argument("--pipeline", action="store_true")
    sp = sub.add_parser("bad", help="bad MQTT after a good handshake")
    common(sp)
    sp.add_argument("--kind", required=True,
                    choices=("garbage", "truncated", "oversized", "not_connect", "bad_varint",
                             "partial", "huge", "silent", "bad_level"))
    sp = sub.add_parser("tcp", help="raw TCP probes")
    common(sp, tls=False)
    sp.add_argument("--kind", required=True, choices=("cut_hello", "stall_hello", "silent"))
    sp = sub.add_parser("load", help="N concurrent devices publish QoS 1")
    common(sp)
    sp.add_argument("--n", type=int, required=True)
    sp.add_argument("--certdir", required=True, help="DIR/PREFIXi/{chain,key}.pem")
    sp.add_argument("--prefix", default="load-")
    sp.add_argument("--parallel", type=int, default=64, help="handshakes in flight")
    sp = sub.add_parser("audit", help="wait for an audit decision line")
    sp.add_argument("--log", required=True)
    sp.add_argument("--from", dest="start", type=int, default=0, help="skip this many lines")
    sp.add_argument("--reason")
    sp.add_argument("--device")
    sp.add_argument("--decision")
    sp.add_argument("--wait", type=float, default=3.0)
    sp = sub.add_parser("metrics", help="print /metrics")
    common(sp, tls=False)
    sp = sub.add_parser("tap", help="recording TCP proxy: PORT -> TO, upstream bytes in DIR/N.up")
    common(sp, tls=False)
    sp.add_argument("--to", type=int, required=True)
    sp.add_argument("--dir", required=True)
    sp = sub.add_parser("tapcheck", help="the CONNECT in a tap file (JSON), and what follows it")
    sp.add_argument("--tap", required=True)
    sp.add_argument("--sent", help="bytes that must follow the CONNECT exactly")
    sp.add_argument("--connect", help="bytes the CONNECT must be exactly")

    a = p.parse_args()
    if getattr(a, "topic", None) == "" and a.op == "load":
        a.topic = "load"
    fn = {"connect": cmd_connect, "paho": cmd_paho, "cutoff": cmd_cutoff, "bad": cmd_bad,
          "tcp": cmd_tcp, "load": cmd_load, "audit": cmd_audit, "metrics": cmd_metrics,
          "tap": cmd_tap, "tapcheck": cmd_tapcheck, "resume": cmd_resume}[a.op]
    a.base_msg = getattr(a, "msg", "")
    return fn(a)


if __name__ == "__main__":
    sys.exit(main())
