#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# test-load.sh - 2000 devices at once: each holds an mTLS session through ktlsgated
# (devices unknown to the registry, enrolled on first connect by an auto-enroll CA),
# then all publish QoS 1 together; every PUBACK must come back and the subscriber on
# the backend broker must see every message. Its own PKI, broker and daemon.
# KG_LOAD_N overrides the device count (default 2000).
# dev_args prints options meant to split into words; lib.sh reads ALL_TESTS and KG_FAILED.
# shellcheck disable=SC2046,SC2034
set -u
. "$(dirname "$0")/lib.sh"

N=${KG_LOAD_N:-2000}

setup() {
	kg_init load
	BK_PORT=$(free_port)
	GW_PORT=$(free_port)
	GW_MPORT=$(free_port)
	# 2000 devices at once from 127.0.0.1: a NATed fleet, over the per-source defaults
	KG_GW_LIMITS=$KG_GW_NO_SOURCE_LIMITS write_gw_conf "$WORK/gw" "$GW_PORT" "$GW_MPORT" "$BK_PORT" "$(free_port)"
	GW_CONF="$WORK/gw/ktlsgate.conf"
	GW_LOG="$WORK/gw/gw.log"
	: >"$GW_LOG"
	PKI="$WORK/pki"
	mkdir -p "$PKI/dev"
	pki root --cn "load root" --out "$PKI/root" || return 1
	pki intermediate --cn "load line" --ca "$PKI/root" --out "$PKI/line" || return 1
	pki server --cn localhost --ca "$PKI/line" --out "$WORK/gw/server" || return 1
	register_ca loadroot "$PKI/root" --auto-enroll || return 1
	local t0=$SECONDS
	# eight at a time: each CLI run makes one key and certificate, mostly waiting on I/O
	seq 0 $((N - 1)) | timeout 600 xargs -P 8 -I{} "$KGCLI" pki device --cn "load-{}" \
		--ca "$PKI/line" --out "$PKI/dev/load-{}" >/dev/null || return 1
	echo "    $N device certificates in $((SECONDS - t0)) s"
	start_broker "$BK_PORT" || return 1
	start_gateway || return 1
}

t_load_2000() {
	local f res ok got
	f=$(sub_start 'load/#' "$N" 120)
	res=$(timeout 300 $PY "$KGC" load --port "$GW_PORT" --ca "$PKI/root/cert.pem" --n "$N" \
		--certdir "$PKI/dev" --prefix load- --topic load --timeout 30 --parallel 64 | tail -1)
	echo "    $res"
	ok=$(printf '%s' "$res" | $PY -c 'import json,sys
d=json.load(sys.stdin); n=d["n"]
print("yes" if d["connected"]==n and d["puback"]==n and d["errors"]==0 else "no")' 2>/dev/null)
	[ "$ok" = yes ] || { note "not every device connected and got its PUBACK: $res"; return 1; }
	for ((i = 0; i < 200; i++)); do
		got=$(wc -l <"$f")
		[ "$got" -ge "$N" ] && break
		sleep 0.1
	done
	echo "    subscriber received $got messages"
	[ "$got" -ge "$N" ] || { note "subscriber received $got of $N"; return 1; }
	kill -0 "$GW_PID" 2>/dev/null || { note "daemon died"; return 1; }
	got=$(kg device show "load-$((N - 1))" --json 2>/dev/null) || { note "last device not enrolled"; return 1; }
}

ALL_TESTS=(t_load_2000)

if ! setup; then
	echo "FAIL setup: load test PKI / broker / gateway (log: ${GW_LOG:-none})"
	[ -n "${GW_LOG:-}" ] && tail -20 "$GW_LOG"
	KG_FAILED=1
	exit 1
fi
run_tests
