#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# host-prep.sh DATA - run on the host by tests/vm/run.sh before the initramfs is made:
# the PKI, a registry with proven CAs and the test devices, and the gateway config the
# guest tests start from (relay = auto; tests derive the other modes with sed).
# Fixed ports are fine: the guest has its own loopback and nothing else.
set -euo pipefail
DATA=$1
TOP=$(cd "$(dirname "$0")/../../.." && pwd)
BUILD=${KG_VM_BUILD:-build}
KGCLI=$TOP/$BUILD/ktlsgate
# shellcheck source=../../integration/lib.sh
. "$TOP/tests/integration/lib.sh"

GW_PORT=8883
GW_MPORT=9100
gw=$DATA/gw
# every client runs on the one guest address (stress tests): per-source limits off
KG_GW_LIMITS=$KG_GW_NO_SOURCE_LIMITS write_gw_conf "$gw" "$GW_PORT" "$GW_MPORT" 1883 1884 "relay = auto"
GW_CONF=$gw/ktlsgate.conf
# the guest is slow (TCG): generous limits
sed -i 's/^handshake_timeout_ms = .*/handshake_timeout_ms = 20000/; s/^connect_timeout_ms = .*/connect_timeout_ms = 20000/; s/^backend_timeout_ms = .*/backend_timeout_ms = 10000/' "$GW_CONF"
pki_setup "$DATA/pki"
for d in dev1 dev2 dev3 dev4 ku1 ku2 cut1; do
	device_cert "$d" "$PKI/factory"
	kg device add "$d" >/dev/null
done
# Stress devices for the exact-switch test share one certificate per id range.
mkdir -p "$DATA/pki/stress"
for i in $(seq 0 19); do
	device_cert "s$i" "$PKI/factory"
	kg device add "s$i" >/dev/null
done
# A token device for t-70-plain-relay (the plain listener: credentials in the CONNECT).
kg device add plaintok --auth token >"$gw/plaintok.out"
sed -n 's/^token: //p' "$gw/plaintok.out" >"$gw/plaintok.token"
[ -s "$gw/plaintok.token" ] || { echo "host-prep: device add printed no token" >&2; exit 1; }
rm -f "$gw/plaintok.out"
# The registry is copied into the guest: fold the WAL into the main file.
sqlite3 "$gw/registry.db" 'PRAGMA wal_checkpoint(TRUNCATE);' >/dev/null
rm -f "$gw"/ctl.sock
