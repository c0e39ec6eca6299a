#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# test-steer.sh - worker steering (SK_REUSEPORT over a REUSEPORT_SOCKARRAY) on the host
# kernel: build/kg-steer-check (tests/edge/steer_check.c) in a private network
# namespace (its own loopback), deleted on exit. Root needed (CAP_BPF).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(cd "$HERE/../.." && pwd)
BUILD=${BUILD:-build}
[[ $BUILD = /* ]] || BUILD="$TOP/$BUILD"
if [ "$(id -u)" != 0 ]; then
	echo "SKIP test-steer: needs root (CAP_BPF)"
	exit 77
fi
[ -x "$BUILD/kg-steer-check" ] || { echo "FAIL test-steer: $BUILD/kg-steer-check not built"; exit 1; }
NS="kgsteer-$(head -c4 /dev/urandom | od -An -tx1 | tr -d ' \n')"
trap 'ip netns del "$NS" 2>/dev/null' EXIT
ip netns add "$NS" && ip -n "$NS" link set lo up || exit 1
timeout 60 ip netns exec "$NS" "$BUILD/kg-steer-check"
