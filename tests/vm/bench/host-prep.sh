#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# host-prep.sh DATA - the bench guest's data, made on the host: root -> factory PKI,
# a server certificate, BENCH_DEVICES device certificates (kg-bench's dev-NNNNN layout),
# a registry with the root proven and auto-enrolling, the ktlsgated config (relay mode
# set per run in the guest) and HAProxy's (tests/bench/haproxy.cfg.in, filled in).
set -euo pipefail
DATA=$1
TOP=$(cd "$(dirname "$0")/../../.." && pwd)
BUILD=${KG_VM_BUILD:-build}
KGCLI=$TOP/$BUILD/ktlsgate
N=${BENCH_DEVICES:-600}
# shellcheck source=../../integration/lib.sh
. "$TOP/tests/integration/lib.sh"

gw=$DATA/gw
KG_GW_LIMITS=$KG_GW_NO_SOURCE_LIMITS write_gw_conf "$gw" 8883 9100 1883 1884 "relay = auto"
GW_CONF=$gw/ktlsgate.conf
sed -i 's/^handshake_timeout_ms = .*/handshake_timeout_ms = 60000/; s/^connect_timeout_ms = .*/connect_timeout_ms = 60000/; s/^backend_timeout_ms = .*/backend_timeout_ms = 20000/; s/^log_level = .*/log_level = warn/' "$GW_CONF"
pki_setup "$DATA/pki"
# devices are issued by factory, the nearest proven CA: it enrolls them
kg ca set factory --auto-enroll on >/dev/null
mkdir -p "$DATA/pki/devices"
seq 0 $((N - 1)) | xargs -P 2 -I{} sh -c 'd=$(printf dev-%05d {}); '"\"$KGCLI\""' pki device --cn "$d" --ca "'"$DATA/pki/factory"'" --out "'"$DATA/pki/devices"'/$d" >/dev/null'
# HAProxy: the server cert with its key in one file, clients verified against both CAs.
cat "$gw/server/chain.pem" "$gw/server/key.pem" >"$DATA/server-full.pem"
cat "$DATA/pki/root/cert.pem" "$DATA/pki/factory/cert.pem" >"$DATA/clients-ca.pem"
sed -e "s|@DIR@|/tmp|g" -e "s|@PORT@|8884|g" -e "s|@SERVER_PEM@|/kgvm/data/server-full.pem|g" \
	-e "s|@CA_FILE@|/kgvm/data/clients-ca.pem|g" -e "s|@MQTT_PORT@|1883|g" \
	"$TOP/tests/bench/haproxy.cfg.in" >"$DATA/haproxy.cfg"
sqlite3 "$gw/registry.db" 'PRAGMA wal_checkpoint(TRUNCATE);' >/dev/null
