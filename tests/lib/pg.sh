# shellcheck shell=bash
# tests/lib/pg.sh - a throwaway PostgreSQL cluster for the registry tests (source it).
#
#   kg_pg_start DIR    (DIR's parents must be traversable by `postgres`: not under a 0700
#                      mktemp dir) initdb a cluster in DIR/data (created, owned by the `postgres`
#                      system user: the server refuses to run as root), start it on a
#                      unix socket in DIR/sock and a free loopback port, and create the
#                      database "ktlsgate". Sets KG_PG_URI (unix socket) and
#                      KG_PG_TCP_URI (127.0.0.1:KG_PG_PORT); returns non-zero with the
#                      server's log on stderr when it cannot.
#   kg_pg_stop DIR     stop it (fast shutdown) if it runs; the caller removes DIR.
#   kg_pg_kill DIR     stop it immediately (SIGQUIT: what a crash looks like to clients).
#   kg_pg_restart DIR  start it again on the same socket and port (after stop or kill).
#   kg_pg_sql SQL...   run SQL against KG_PG_URI with psql (-X -q -A -t, ON_ERROR_STOP).
#
# The cluster trusts local connections from any role (tests only): the role is
# "ktlsgate_test", the superuser initdb made. Nothing outside DIR is touched; a system
# cluster, if any, is never used.
KG_PG_BIN=${KG_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)}

_kg_pg_as() {
	if [ "$(id -u)" -eq 0 ]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

_kg_pg_free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

_kg_pg_ctl_start() {
	local dir=$1
	if ! _kg_pg_as "$KG_PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
		-o "-k $dir/sock -p $KG_PG_PORT -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" \
		start >/dev/null 2>&1; then
		echo "kg_pg: the server did not start; its log:" >&2
		tail -n 20 "$dir/server.log" >&2
		return 1
	fi
}

kg_pg_start() {
	local dir=$1
	if [ -z "$KG_PG_BIN" ] || [ ! -x "$KG_PG_BIN/initdb" ]; then
		echo "kg_pg: no PostgreSQL server binaries under /usr/lib/postgresql (package postgresql)" >&2
		return 1
	fi
	mkdir -p "$dir/data" "$dir/sock" || return 1
	if [ "$(id -u)" -eq 0 ]; then
		chown postgres: "$dir" "$dir/data" "$dir/sock" || return 1
	fi
	if ! _kg_pg_as "$KG_PG_BIN/initdb" -D "$dir/data" -U ktlsgate_test --auth=trust \
		-E UTF8 --locale=C >"$dir/initdb.log" 2>&1; then
		echo "kg_pg: initdb failed; its log:" >&2
		tail -n 20 "$dir/initdb.log" >&2
		return 1
	fi
	KG_PG_PORT=$(_kg_pg_free_port)
	export KG_PG_PORT
	_kg_pg_ctl_start "$dir" || return 1
	KG_PG_URI="postgresql:///ktlsgate?host=$dir/sock&port=$KG_PG_PORT&user=ktlsgate_test"
	KG_PG_TCP_URI="postgresql://ktlsgate_test@127.0.0.1:$KG_PG_PORT/ktlsgate"
	export KG_PG_URI KG_PG_TCP_URI
	if ! psql -X -q "postgresql:///postgres?host=$dir/sock&port=$KG_PG_PORT&user=ktlsgate_test" \
		-c 'CREATE DATABASE ktlsgate' >/dev/null 2>&1; then
		echo "kg_pg: CREATE DATABASE ktlsgate failed" >&2
		return 1
	fi
}

kg_pg_stop() {
	local dir=$1
	[ -f "$dir/data/postmaster.pid" ] || return 0
	_kg_pg_as "$KG_PG_BIN/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null 2>&1
}

kg_pg_kill() {
	local dir=$1
	[ -f "$dir/data/postmaster.pid" ] || return 0
	_kg_pg_as "$KG_PG_BIN/pg_ctl" -D "$dir/data" -m immediate -w -t 60 stop >/dev/null 2>&1
}

kg_pg_restart() {
	_kg_pg_ctl_start "$1"
}

kg_pg_sql() {
	psql -X -q -A -t -v ON_ERROR_STOP=1 "$KG_PG_URI" -c "$*"
}
