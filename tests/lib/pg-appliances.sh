# shellcheck shell=bash disable=SC2034  # sets what lib.sh's helpers read (GW_CONF, GW_PORT...)
# SPDX-License-Identifier: BSD-2-Clause
# pg-appliances.sh - several ktlsgated sharing one throwaway PostgreSQL cluster, for the
# test-pg-*.sh suites. Sourced after tests/integration/lib.sh and tests/lib/pg.sh.
#
#   pga_cluster NAME         kg_init NAME, a cleanup trap (daemons, then the cluster), a
#                            cluster under /tmp (PGBASE), BK_PORT and BK2_PORT picked,
#                            PORTS/MPORTS emptied; "NOT RUN" and exit 1 if the binaries
#                            were built without the PostgreSQL store
#   pga_conf N URI [EXTRA]   appliance N's config in $WORK/aN (write_gw_conf, EXTRA as
#                            its extra lines) with `registry = URI`, an empty gw.log
#   use N                    point lib.sh's helpers (kg, dev_args, metrics, audit) at N
#   pga_start N...           start those appliances (GW_PIDS[N]) and wait until each
#                            one's change watcher is connected
#   wait_metric NAME V S     until the current appliance's metric NAME is V, S seconds
#   hba_tcp reject|accept    refuse or allow logins over TCP (KG_PG_TCP_URI: the way in of
#                            the appliances configured with it) with a first pg_hba.conf
#                            line; the file keeps its owner (postgres), a running server
#                            reloads

PGBASE=""

pga_cleanup() {
	stop_all
	if [ -n "$PGBASE" ]; then
		kg_pg_stop "$PGBASE/pg"
		rm -rf "$PGBASE"
	fi
}

pga_cluster() {
	# Until the store lands, registry.c refuses postgresql:// with this very sentence:
	# its presence in the binaries means there is nothing to test yet.
	if grep -q "PostgreSQL store not built" "$GATED" "$KGCLI"; then
		echo "NOT RUN: PostgreSQL store not built"
		exit 1
	fi
	kg_init "$1"
	trap pga_cleanup EXIT
	# Not under the 0700 work dir: the postgres user must reach the cluster's files.
	PGBASE=$(mktemp -d "/tmp/kg-$1.XXXXXX") || return 1
	chmod 0755 "$PGBASE"
	kg_pg_start "$PGBASE/pg" || { echo "FAIL setup: tests/lib/pg.sh could not start PostgreSQL"; return 1; }
	BK_PORT=$(free_port)
	BK2_PORT=$(free_port)
	PORTS=("") MPORTS=("")
}

pga_conf() {
	local i=$1 uri=$2
	PORTS[i]=$(free_port)
	MPORTS[i]=$(free_port)
	write_gw_conf "$WORK/a$i" "${PORTS[i]}" "${MPORTS[i]}" "$BK_PORT" "$BK2_PORT" ${3+"$3"} || return 1
	sed -i "s|^registry = .*|registry = ${uri//&/\\&}|" "$WORK/a$i/ktlsgate.conf"   # & is sed's match
	: >"$WORK/a$i/gw.log"
}

use() {
	GW_CONF="$WORK/a$1/ktlsgate.conf"
	GW_LOG="$WORK/a$1/gw.log"
	GW_PORT=${PORTS[$1]}
	GW_MPORT=${MPORTS[$1]}
}

pga_start() {
	local i
	for i in "$@"; do
		use "$i"
		start_gateway || return 1
		GW_PIDS[i]=$GW_PID
		GW_PID=""
	done
	# every watcher connected before anything is changed
	for i in "$@"; do
		use "$i"
		wait_metric ktlsgate_registry_watch_connected 1 10 || {
			echo "FAIL setup: appliance $i: watcher not connected" >&2
			return 1
		}
	done
}

wait_metric() {
	local i v
	for ((i = 0; i < $3 * 10; i++)); do
		v=$(metric_value "$1")
		[ "$v" = "$2" ] && return 0
		sleep 0.1
	done
	return 1
}

hba_tcp() {
	local hba="$PGBASE/pg/data/pg_hba.conf" rest
	rest=$(grep -v '^host all all 127.0.0.1/32 reject$' "$hba")
	if [ "$1" = reject ]; then
		printf 'host all all 127.0.0.1/32 reject\n%s\n' "$rest" >"$hba"
	else
		printf '%s\n' "$rest" >"$hba"
	fi
}
