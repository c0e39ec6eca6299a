#!/usr/bin/python3
# SPDX-License-Identifier: BSD-2-Clause
"""notify_sink.py - systemd's side of sd_notify(3), for tests: what each process said.

Binds SOCKET (a unix datagram socket, as systemd's NOTIFY_SOCKET), and for every message
appends one line to OUT: "<sender pid> <message, its newlines as '|'>[ fds=N]". Sockets
passed with a message (FDSTORE=1) are closed: nothing is stored. Runs until killed.

Usage: notify_sink.py SOCKET OUT
"""
import array
import os
import socket
import struct
import sys


def main():
    path, out = sys.argv[1:3]
    if os.path.exists(path):
        os.unlink(path)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    s.bind(path)
    os.chmod(path, 0o777)
    fd_size = array.array("i").itemsize
    with open(out, "a", buffering=1) as f:
        while True:
            msg, anc, _flags, _addr = s.recvmsg(65536, socket.CMSG_SPACE(253 * fd_size) +
                                                socket.CMSG_SPACE(12))
            pid, nfds = 0, 0
            for level, kind, data in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = struct.unpack("iII", data[:12])[0]
                elif level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds = array.array("i")
                    fds.frombytes(data[:len(data) - len(data) % fd_size])
                    nfds += len(fds)
                    for fd in fds:
                        os.close(fd)
            text = msg.decode("utf-8", "replace").strip().replace("\n", "|")
            f.write("%d %s%s\n" % (pid, text, " fds=%d" % nfds if nfds else ""))


if __name__ == "__main__":
    main()
