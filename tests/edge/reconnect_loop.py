#!/usr/bin/python3
# SPDX-License-Identifier: BSD-2-Clause
"""reconnect_loop.py N KGCLIENT-CONNECT-ARGS...: a device's reconnect loop for
bench.sh: N sequential `kgclient connect` runs in one process (no interpreter start
per attempt), each result line counted; prints "COUNT result" lines."""
import collections
import contextlib
import io
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import kgclient  # noqa: E402

n, args = int(sys.argv[1]), sys.argv[2:]
seen = collections.Counter()
for _ in range(n):
    buf = io.StringIO()
    sys.argv = ["kgclient", "connect"] + args
    with contextlib.redirect_stdout(buf):
        try:
            kgclient.main()
        except SystemExit:
            pass
        except Exception as e:  # a dropped SYN ends in a timeout: that is a result too
            print("error %s" % type(e).__name__)
    seen[(buf.getvalue().splitlines() or ["(nothing)"])[0]] += 1
print(", ".join("%d x %s" % (c, r) for r, c in seen.most_common()))
