#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# test-takeover.sh - the kernel fact the zero-refusal restart (issue 5, next slice) is
# built on, checked on this kernel: when an old server closes SO_REUSEPORT listeners
# that still hold queued connections while a new server's listeners are in the same
# group, net.ipv4.tcp_migrate_req=1 moves those connections to the new listeners
# (no failure), and 0 resets them (the contrast proves the probe can see a failure).
# tests/edge/takeover_probe.py in a private netns per setting (the sysctl is per netns).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
if [ "$(id -u)" != 0 ]; then
	echo "SKIP test-takeover: needs root (netns)"
	exit 77
fi
NS=""
trap '[ -n "$NS" ] && ip netns del "$NS" 2>/dev/null' EXIT
run() {
	NS="kgtake-$(head -c4 /dev/urandom | od -An -tx1 | tr -d ' \n')"
	ip netns add "$NS" && ip -n "$NS" link set lo up &&
		ip netns exec "$NS" sysctl -qw net.ipv4.tcp_migrate_req="$1" || return 1
	ip netns exec "$NS" timeout 60 /usr/bin/python3 "$HERE/takeover_probe.py" "$1"
	ip netns del "$NS"
	NS=""
}
without=$(run 0) || { echo "FAIL test-takeover: probe (0): $without"; exit 1; }
with=$(run 1) || { echo "FAIL test-takeover: $with"; exit 1; }
echo "    $without"
echo "    $with"
fails0=$(sed -n 's/.*failed \([0-9]*\)$/\1/p' <<<"$without")
fails1=$(sed -n 's/.*failed \([0-9]*\)$/\1/p' <<<"$with")
if [ "$fails1" != 0 ]; then
	echo "FAIL test-takeover: connections failed with tcp_migrate_req=1"
	exit 1
fi
if [ "${fails0:-0}" = 0 ]; then
	echo "FAIL test-takeover: no failure without migration either: the probe did not stress the switch"
	exit 1
fi
echo "PASS test-takeover"
