#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
#
# pg.sh - `make bench-pg` (issue 16): the PostgreSQL registry against SQLite, in two
# rounds: the registry holding the benchmark's own devices (BENCH_DEVICES + 2 x
# PG_TRIALS), then the same registries filled up to PG_DEVICES (100 000) devices.
# Per round:
#   1. handshakes/s: one ktlsgated on the SQLite registry and one on a throwaway
#      PostgreSQL cluster (tests/lib/pg.sh) holding the same devices (made in SQLite,
#      `ktlsgate registry copy` to PostgreSQL), same config otherwise, 2 workers each;
#      every device handshakes once on each (unmeasured), then `kg-bench handshake`
#      (HS_COUNT full TLS 1.3 mTLS handshakes + CONNECT/CONNACK) against each in turn,
#      BENCH_REPEAT times (the order flips every repeat); medians, ratio PG / SQLite,
#      the daemon's CPU per handshake and the PostgreSQL server's (all its processes).
#   2. revocation across three appliances: three ktlsgated on the one database, each in
#      front of its own mosquitto; per trial a fresh device gets a live session on each
#      (pg_cutprobe.py), then appliance 1's `ktlsgate device set ID --status disabled`;
#      the time from just before the CLI starts to the last of the three sessions seeing
#      its close, PG_TRIALS trials, median / p90 / worst, and the CLI's own runtime;
#      before each trial one `device show` of the device is timed: a CLI process's
#      fixed cost (start-up, registry open) under the same load.
# A trial whose session is still open after PG_LIMIT (10) s, or a handshake error,
# counts as a failure: printed, kept in the table, and the exit status is 1. A daemon
# or cluster that does not start stops the run (exit 1). Everything on 127.0.0.1;
# every process started here is stopped on exit, the cluster removed.
# Knobs and output: tests/bench/README.md; numbers: docs/benchmarks.md "Issue 16".
set -euo pipefail
# bash 5.2: '&' in a ${var//pattern/replacement} replacement means the match; the
# database URI's '&'s must stay themselves.
shopt -u patsub_replacement 2>/dev/null || true

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# bench_paths, free_port, start_bg, stop_bg, wait_listen, proc_tree, cpu_ticks, json_get, calc
# shellcheck source=tests/bench/lib.sh
. "$HERE/lib.sh"
bench_paths bench-pg   # ROOT, BUILD, OUT, KG_BENCH, KTLSGATE, KTLSGATED

# The command as given (the knobs set in the environment), for the report.
CMDLINE="make bench-pg"
for v in BENCH_QUICK BENCH_REPEAT BENCH_THREADS HS_COUNT HS_CONC BENCH_DEVICES PG_TRIALS PG_DEVICES PG_LIMIT PG_ROUNDS PG_CUT_CMD; do
	if [[ -n ${!v:-} ]]; then CMDLINE+=" $v=${!v@Q}"; fi
done
if [[ ${BENCH_QUICK:-0} == 1 ]]; then
	: "${BENCH_REPEAT:=1}" "${HS_COUNT:=500}" "${PG_TRIALS:=10}" "${PG_DEVICES:=10000}"
	: "${BENCH_DEVICES:=200}"
fi
REPEAT=${BENCH_REPEAT:-3}
HS_COUNT=${HS_COUNT:-3000}       # full handshakes per measured run
HS_CONC=${HS_CONC:-50}           # in flight
THREADS=${BENCH_THREADS:-1}      # kg-bench threads
N_DEVICES=${BENCH_DEVICES:-1000} # devices kg-bench cycles through
TRIALS=${PG_TRIALS:-100}         # revocation trials per round
BIG=${PG_DEVICES:-100000}        # registry size of the second round
LIMIT=${PG_LIMIT:-10}            # seconds a revoked session may stay open
ROUNDS=${PG_ROUNDS:-"small big"}
# What disables the trial's device ({id}; {conf}: appliance 1's config; {uri}: the
# database's URI, quoted). Another command (an SQL UPDATE through psql, or `true` to see
# a failed trial reported) can be put here; "sql:STATEMENT" runs STATEMENT through one
# psql kept open, so its time holds no process start-up.
CUT_CMD=${PG_CUT_CMD:-"$KTLSGATE -c {conf} device set {id} --status disabled"}

PKI=$OUT/pki
RUN=$OUT/run
LOGS=$OUT/logs
RAW=$OUT/raw.tsv
RESULTS=$OUT/results.md
CLK_TCK=$(getconf CLK_TCK)

declare -a PIDS=()
USED_PORTS=" "
PASSED=0
FAILED=0
PGBASE=""
ROUND=""

say() { printf '[bench-pg %s] %s\n' "$(date +%T)" "$*" >&2; }
pass() { PASSED=$((PASSED + 1)); echo "PASS $1"; }
fail() { FAILED=$((FAILED + 1)); echo "FAIL $1: $2"; }
# die MESSAGE: a FAIL setup line, then stop (the count line is printed on the way out).
die() { fail setup "$*"; exit 1; }
# kg_pg_start, kg_pg_stop, kg_pg_sql
# shellcheck source=tests/lib/pg.sh
. "$ROOT/tests/lib/pg.sh"

cleanup() {
	local rc=$? pid
	for pid in "${PIDS[@]+"${PIDS[@]}"}"; do kill -TERM "$pid" 2>/dev/null || true; done
	for pid in "${PIDS[@]+"${PIDS[@]}"}"; do
		timeout 5 tail --pid="$pid" -f /dev/null 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
	done
	if [[ -n $PGBASE ]]; then
		kg_pg_stop "$PGBASE/pg" || true
		rm -rf "$PGBASE"
	fi
	echo "bench-pg: $PASSED passed, $FAILED failed"
	if ((rc == 0 && (FAILED > 0 || PASSED == 0))); then
		rc=1
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The whole host's busy clock ticks (all CPUs; idle and iowait excluded): with the
# daemon's and PostgreSQL's own CPU it shows how much went to everything else.
host_busy() { awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat; }
record() { printf '%s\t%s\t%s\t%s\n' "$ROUND" "$1" "$2" "$3" >>"$RAW"; }
median() {   # median ROUND METRIC from raw.tsv (empty if never measured)
	awk -F'\t' -v r="$1" -v m="$2" '$1 == r && $2 == m { print $4 }' "$RAW" | sort -g |
		awk '{ v[NR] = $1 } END { if (NR == 0) exit; if (NR % 2) print v[(NR + 1) / 2];
			else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
fmt() { [[ -n ${1:-} ]] && printf '%s' "$1" || printf 'n/a'; }
pg_pids() { proc_tree "$(head -1 "$PGBASE/pg/data/postmaster.pid")"; }

# ---- PKI: root -> factory -> dev-NNNNN (kg-bench) and rev1-NNN, rev2-NNN (trials) ----
make_pki() {
	local want="$N_DEVICES $TRIALS" i r
	if [[ -f $PKI/.stamp && $(cat "$PKI/.stamp") == "$want" ]] &&
		openssl x509 -checkend 86400 -noout -in "$PKI/devices/dev-00000/cert.pem" >/dev/null 2>&1; then
		say "PKI: reusing $PKI"
		return 0
	fi
	rm -rf "$PKI"
	mkdir -p "$PKI/devices" "$PKI/rev"
	say "PKI: root, factory, server, $N_DEVICES + 2 x $TRIALS devices"
	"$KTLSGATE" pki root --cn "bench-pg-root" --out "$PKI/root" >/dev/null
	"$KTLSGATE" pki intermediate --cn "factory" --ca "$PKI/root" --out "$PKI/factory" >/dev/null
	"$KTLSGATE" pki server --cn localhost --ca "$PKI/root" --out "$PKI/server" >/dev/null
	# All in one process (mkdevices.py, shared with revoke-ca.sh).
	{
		for ((i = 0; i < N_DEVICES; i++)); do printf 'devices dev-%05d\n' "$i"; done
		for r in 1 2; do
			for ((i = 0; i < TRIALS; i++)); do printf 'rev rev%d-%03d\n' "$r" "$i"; done
		done
	} | /usr/bin/python3 "$HERE/mkdevices.py" "$PKI" || die "device certificates failed"
	echo "$want" >"$PKI/.stamp"
}

# ---- registries: SQLite made here, copied to PostgreSQL ---------------------------
SQLITE_REG=""
make_registries() {
	local out code i
	SQLITE_REG=$RUN/registry.db
	out=$("$KTLSGATE" -r "$SQLITE_REG" ca add "$PKI/root/cert.pem" --name root) || die "ca add: $out"
	code=$(sed -n 's/^challenge: *//p' <<<"$out" | head -1)
	[[ -n $code ]] || die "ca add printed no challenge: $out"
	"$KTLSGATE" pki verification-cert --ca "$PKI/root" --challenge "$code" --out "$RUN/verify.pem" >/dev/null
	"$KTLSGATE" -r "$SQLITE_REG" ca verify root "$RUN/verify.pem" >/dev/null || die "ca verify root"
	# The benchmark's devices, attested by their CA (no thumbprint), in one transaction.
	{
		echo id
		for ((i = 0; i < N_DEVICES; i++)); do printf 'dev-%05d\n' "$i"; done
		for ((i = 0; i < TRIALS; i++)); do printf 'rev1-%03d\nrev2-%03d\n' "$i" "$i"; done
	} >"$RUN/devices.csv"
	"$KTLSGATE" -r "$SQLITE_REG" device import "$RUN/devices.csv" >>"$LOGS/registry.log" 2>&1 ||
		die "device import into SQLite failed (see $LOGS/registry.log)"
	"$KTLSGATE" registry copy --from "$SQLITE_REG" --to "$KG_PG_URI" >>"$LOGS/registry.log" 2>&1 ||
		die "registry copy to PostgreSQL failed (see $LOGS/registry.log)"
	check_counts $((N_DEVICES + 2 * TRIALS))
}

count_sqlite() { sqlite3 "$SQLITE_REG" 'SELECT count(*) FROM devices'; }
count_pg() { kg_pg_sql 'SELECT count(*) FROM ktlsgate.devices'; }
check_counts() {
	local s p
	s=$(count_sqlite) p=$(count_pg)
	[[ $s == "$1" && $p == "$1" ]] || die "registries hold $s (SQLite) and $p (PostgreSQL) devices, not $1"
	say "registries: $1 devices each"
}

# fill_up N: import filler devices (random pinned thumbprints, the index a lookup by
# thumbprint searches) into both registries until each holds N; the import times too.
fill_up() {
	local have n t0 t1 t2
	have=$(count_sqlite)
	n=$(($1 - have))
	((n > 0)) || return 0
	python3 - "$n" >"$RUN/fill.csv" <<-'PY'
	import os, sys
	print("id,thumbprint")
	for i in range(int(sys.argv[1])):
	    print("fill-%06d,%s" % (i, os.urandom(32).hex()))
	PY
	t0=$(date +%s.%N)
	"$KTLSGATE" -r "$SQLITE_REG" device import "$RUN/fill.csv" >>"$LOGS/registry.log" 2>&1 ||
		die "filler import into SQLite failed (see $LOGS/registry.log)"
	t1=$(date +%s.%N)
	"$KTLSGATE" -r "$KG_PG_URI" device import "$RUN/fill.csv" >>"$LOGS/registry.log" 2>&1 ||
		die "filler import into PostgreSQL failed (see $LOGS/registry.log)"
	t2=$(date +%s.%N)
	kg_pg_sql 'ANALYZE' >/dev/null
	IMPORT_NOTE="$n filler devices imported in $(calc "$t1 - $t0" 1) s (SQLite), $(calc "$t2 - $t1" 1) s (PostgreSQL)"
	say "$IMPORT_NOTE"
	check_counts "$1"
}
IMPORT_NOTE=""

# ---- processes --------------------------------------------------------------------
# start_broker NAME: a plain mosquitto on a free port, into BROKER_PORT.
start_broker() {
	local port
	free_port port
	plain_broker_conf "$port" >"$RUN/$1.conf"
	start_bg "$1" mosquitto -c "$RUN/$1.conf"
	wait_listen "$BG_PID" "$port" "$1" || die "$1 (mosquitto) is not listening on $port"
	BROKER_PORT=$port
}

# start_gated NAME REGISTRY BACKEND_PORT: ktlsgated with run.sh's config and REGISTRY;
# sets GATED_PID, GATED_PORT, GATED_MPORT; its config is $RUN/NAME/ktlsgate.conf.
start_gated() {
	local name=$1 dir=$RUN/$1
	mkdir -p "$dir"
	free_port GATED_PORT
	free_port GATED_MPORT
	cat >"$dir/ktlsgate.conf" <<-EOF
	[daemon]
	listen = 127.0.0.1:$GATED_PORT
	workers = 2
	cert = $PKI/server/chain.pem
	key = $PKI/server/key.pem
	registry = $2
	control_socket = $dir/ctl.sock
	metrics_listen = 127.0.0.1:$GATED_MPORT
	default_backend = local
	log_level = warn

	[limits]
	# every benchmark client comes from 127.0.0.1: one source, limits off
	source_max_handshakes = 0
	source_rate = 0

	[backend local]
	address = 127.0.0.1:$3
	EOF
	start_bg "$name" "$KTLSGATED" -c "$dir/ktlsgate.conf"
	GATED_PID=$BG_PID
	wait_listen "$GATED_PID" "$GATED_PORT" "$name" ||
		die "ktlsgated $name did not start (exited, or 15 s passed): see $LOGS/$name.log"
}

# metric PORT NAME: the value of an unlabelled metric (empty if absent).
metric() {
	curl -sf --max-time 2 "http://127.0.0.1:$1/metrics" | awk -v n="$2" '$1 == n { print $2; exit }' || true
}

kgb() {
	"$KG_BENCH" handshake --target "127.0.0.1:$1" --ca "$PKI/root/cert.pem" \
		--devices "$PKI/devices" -t "$THREADS" "${@:2}" 2>>"$LOGS/kg-bench.log"
}

# ---- 1. handshakes/s ----------------------------------------------------------------
declare -A HS_PORT HS_PID
bench_hs_one() {   # bench_hs_one sqlite|pg REP
	local reg=$1 rep=$2 out rc=0 c0 c1 p0 p1 h0 h1 w n e pids pgp name=$ROUND-$1-handshake-$2
	mapfile -t pids < <(proc_tree "${HS_PID[$reg]}")
	mapfile -t pgp < <(pg_pids)
	c0=$(cpu_ticks "${pids[@]}")
	p0=$(cpu_ticks "${pgp[@]}")
	h0=$(host_busy)
	out=$(kgb "${HS_PORT[$reg]}" --count "$HS_COUNT" --concurrency "$HS_CONC") || rc=$?
	c1=$(cpu_ticks "${pids[@]}")
	p1=$(cpu_ticks "${pgp[@]}")
	h1=$(host_busy)
	echo "$ROUND $reg $rep $out" >>"$LOGS/kg-bench.json"
	e=$(json_get "$out" errors)
	n=$(json_get "$out" count)
	if [[ -z $e || -z $n ]] || ((e > 0 || rc != 0 || n != HS_COUNT)); then
		fail "$name" "${e:-?} error(s), ${n:-0} of $HS_COUNT done, exit $rc (see $LOGS/kg-bench.log)"
		record "${reg}_hs_errors" "$rep" "${e:-1}"
		return 0
	fi
	record "${reg}_hs_rate" "$rep" "$(json_get "$out" rate)"
	record "${reg}_hs_cpu_us" "$rep" "$(calc "($c1 - $c0) * 1000000 / $CLK_TCK / $n")"
	record "${reg}_hs_pgcpu_us" "$rep" "$(calc "($p1 - $p0) * 1000000 / $CLK_TCK / $n")"
	record "${reg}_hs_p50_ms" "$rep" "$(calc "$(json_get "$out" p50_us) / 1000" 2)"
	record "${reg}_hs_p99_ms" "$rep" "$(calc "$(json_get "$out" p99_us) / 1000" 2)"
	# Host CPU not ours: busy ticks less ktlsgated's and PostgreSQL's, per handshake
	# (kg-bench, the backend, softirq and every other user of the shared CPUs).
	w=$(calc "(($h1 - $h0) - ($c1 - $c0) - ($p1 - $p0)) * 1000000 / $CLK_TCK / $n")
	record "${reg}_hs_rest_us" "$rep" "$w"
	pass "$name: $(json_get "$out" rate)/s, ktlsgated CPU $(calc "($c1 - $c0) * 1000000 / $CLK_TCK / $n") us, postgres CPU $(calc "($p1 - $p0) * 1000000 / $CLK_TCK / $n") us, rest of the host $w us per handshake"
}

bench_handshakes() {
	local reg rep order out
	start_gated "hs-sqlite-$ROUND" "$SQLITE_REG" "${BROKERS[1]}"
	HS_PORT[sqlite]=$GATED_PORT HS_PID[sqlite]=$GATED_PID
	start_gated "hs-pg-$ROUND" "$KG_PG_URI" "${BROKERS[1]}"
	HS_PORT[pg]=$GATED_PORT HS_PID[pg]=$GATED_PID
	# Warm: every device handshakes once on each daemon (last-seen written, statements
	# prepared, pages cached), unmeasured.
	for reg in sqlite pg; do
		say "$ROUND $reg: warming ($N_DEVICES devices, one handshake each)"
		out=$(kgb "${HS_PORT[$reg]}" --count "$N_DEVICES" --concurrency 20) ||
			die "$ROUND $reg: warm-up failed: $out (see $LOGS/kg-bench.log, $LOGS/hs-$reg-$ROUND.log)"
	done
	for ((rep = 1; rep <= REPEAT; rep++)); do
		order="sqlite pg"
		((rep % 2)) || order="pg sqlite"
		for reg in $order; do bench_hs_one "$reg" "$rep"; done
	done
	stop_bg "${HS_PID[sqlite]}"
	stop_bg "${HS_PID[pg]}"
}

# ---- 2. revocation across three appliances ------------------------------------------
bench_revoke() {
	local set=$1 i j ids=() a1 ports=() apids=() rc=0 k v f cmd sqlopt
	for i in 1 2 3; do
		start_gated "app$i-$ROUND" "$KG_PG_URI" "${BROKERS[i]}"
		ports+=("$GATED_PORT")
		apids+=("$GATED_PID")
		for ((j = 0; j < 100; j++)); do
			[[ $(metric "$GATED_MPORT" ktlsgate_registry_watch_connected) == 1 ]] && break
			sleep 0.1
		done
		[[ $(metric "$GATED_MPORT" ktlsgate_registry_watch_connected) == 1 ]] ||
			die "appliance $i ($ROUND): change feed not connected after 10 s (see $LOGS/app$i-$ROUND.log)"
	done
	a1=$RUN/app1-$ROUND/ktlsgate.conf
	for ((i = 0; i < TRIALS; i++)); do ids+=("$(printf 'rev%d-%03d' "$set" "$i")"); done
	say "$ROUND: $TRIALS revocation trials across 3 appliances ($CUT_CMD)"
	cmd=${CUT_CMD//\{conf\}/$a1}
	cmd=${cmd//\{uri\}/\'$KG_PG_URI\'}
	sqlopt=()
	if [[ $cmd == sql:* ]]; then   # SQL through one psql kept open (no process start-up)
		cmd=${cmd#sql:}
		sqlopt=(--sql-uri "$KG_PG_URI")
	fi
	/usr/bin/python3 "$HERE/pg_cutprobe.py" --ports "$(IFS=,; echo "${ports[*]}")" --ca "$PKI/root/cert.pem" \
		--devices "$PKI/rev" --limit "$LIMIT" "${sqlopt[@]}" \
		--baseline "$KTLSGATE -c $a1 device show {id}" \
		--cmd "$cmd" "${ids[@]}" \
		>"$LOGS/revoke-$ROUND.jsonl" 2>>"$LOGS/cutprobe.log" || rc=$?
	# Every trial is in the file, failed ones with their reason; the summary counts them.
	python3 - "$LOGS/revoke-$ROUND.jsonl" "$TRIALS" >"$RUN/revoke-$ROUND.sum" <<-'PY' || rc=1
	import json, sys
	rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
	ok = [r for r in rows if r["ok"]]
	bad = [r for r in rows if not r["ok"]]
	def q(v, p):   # nearest-rank percentile
	    v = sorted(v)
	    return v[min(len(v) - 1, max(0, -(-len(v) * p // 100) - 1))] if v else None
	def three(v):
	    return "%s %s %s" % (q(v, 50), q(v, 90), max(v)) if v else "n/a n/a n/a"
	last = [r["last_ms"] for r in ok]
	cli = [r["cli_ms"] for r in ok]
	print("trials", len(rows), "ok", len(ok), "failed", len(bad) + max(0, int(sys.argv[2]) - len(rows)))
	print("last", three(last))
	print("cli", three(cli))
	print("show", three([r["baseline_ms"] for r in ok if "baseline_ms" in r]))
	for a in range(3):
	    print("app%d" % (a + 1), three([r["closed_ms"][a] for r in ok]))
	for r in bad:
	    print("bad", r["id"], r.get("why", "?"))
	sys.exit(1 if bad or len(rows) < int(sys.argv[2]) else 0)
	PY
	while read -r k v; do
		read -r -a f <<<"$v"
		case $k in
		trials) record revoke_failed 1 "$((TRIALS - f[2]))" ;;
		last) record revoke_p50_ms 1 "${f[0]}"; record revoke_p90_ms 1 "${f[1]}"; record revoke_max_ms 1 "${f[2]}" ;;
		cli) record cli_p50_ms 1 "${f[0]}"; record cli_p90_ms 1 "${f[1]}"; record cli_max_ms 1 "${f[2]}" ;;
		show) record show_p50_ms 1 "${f[0]}"; record show_p90_ms 1 "${f[1]}" ;;
		app?) record "${k}_p50_ms" 1 "${f[0]}"; record "${k}_max_ms" 1 "${f[2]}" ;;
		bad) fail "$ROUND-revoke-${f[0]}" "${v#* }" ;;
		esac
	done <"$RUN/revoke-$ROUND.sum"
	if ((rc != 0)); then
		fail "$ROUND-revoke" "$(awk '$1 == "trials" { print $6 }' "$RUN/revoke-$ROUND.sum") of $TRIALS trials failed or missing (see $LOGS/revoke-$ROUND.jsonl)"
	else
		pass "$ROUND-revoke: $TRIALS of $TRIALS trials closed on all 3 appliances; $(sed -n 's/^last //p' "$RUN/revoke-$ROUND.sum") ms (median p90 worst); CLI $(sed -n 's/^cli //p' "$RUN/revoke-$ROUND.sum") ms"
	fi
	for i in "${apids[@]}"; do stop_bg "$i"; done
}

# ---- report -------------------------------------------------------------------------
report() {
	local r rs rp ratio cs cp cq cratio
	{
		echo "# bench-pg: the PostgreSQL registry against SQLite (issue 16)"
		echo
		echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); ktlsgate $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?'); $(psql --version | awk '{ print "PostgreSQL " $3 }'); host $(uname -r), $(nproc) CPUs; load average (1/5/15 min) at the start: $LOAD_START, at the end: $(cut -d' ' -f1-3 /proc/loadavg) (the CPUs are shared: see the note in docs/benchmarks.md)"
		echo "- command: \`$CMDLINE\`"
		echo "- handshakes: $HS_COUNT full TLS 1.3 mTLS handshakes + CONNECT/CONNACK per run, $HS_CONC in flight, kg-bench $THREADS thread(s), over $N_DEVICES devices, 2 workers; medians of $REPEAT runs per registry, alternating (order flipped every repeat), after one unmeasured handshake per device"
		echo "- revocation: $TRIALS trials per round, each a fresh device with one session on each of 3 appliances (one PostgreSQL), \`${CUT_CMD//$BUILD\//build/}\` ({conf}: appliance 1's config); time from just before the CLI starts to the last of the 3 sessions seeing its close (client side, monotonic); a session open after $LIMIT s fails the trial"
		[[ -n $IMPORT_NOTE ]] && echo "- big round: $IMPORT_NOTE"
		echo
		echo "| registry size | SQLite hs/s | PG hs/s | PG / SQLite | ktlsgated CPU/hs SQLite / PG (us) | postgres CPU/hs (us) | CPU/hs PG (ktlsgated + postgres) / SQLite | rest of host CPU/hs SQLite / PG (us) | hs p50 SQLite / PG (ms) | hs errors |"
		echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
		for r in $ROUNDS; do
			rs=$(median "$r" sqlite_hs_rate)
			rp=$(median "$r" pg_hs_rate)
			ratio=n/a
			[[ -n $rs && -n $rp ]] && ratio=$(calc "$rp / $rs" 3)
			cs=$(median "$r" sqlite_hs_cpu_us)
			cp=$(median "$r" pg_hs_cpu_us)
			cq=$(median "$r" pg_hs_pgcpu_us)
			cratio=n/a
			[[ -n $cs && -n $cp && -n $cq ]] && cratio=$(calc "($cp + $cq) / $cs" 3)
			printf '| %s | %s | %s | %s | %s / %s | %s | %s | %s / %s | %s / %s | %s |\n' "$(size_of "$r")" \
				"$(fmt "$rs")" "$(fmt "$rp")" "$ratio" \
				"$(fmt "$cs")" "$(fmt "$cp")" "$(fmt "$cq")" "$cratio" \
				"$(fmt "$(median "$r" sqlite_hs_rest_us)")" "$(fmt "$(median "$r" pg_hs_rest_us)")" \
				"$(fmt "$(median "$r" sqlite_hs_p50_ms)")" "$(fmt "$(median "$r" pg_hs_p50_ms)")" \
				"$(awk -F'\t' -v r="$r" '$1 == r && $2 ~ /_hs_errors$/ { s += $4 } END { print s + 0 }' "$RAW")"
		done
		echo
		echo "| registry size | disable -> last of 3 closed: median / p90 / worst (ms) | CLI runtime: median / p90 / worst (ms) | \`device show\` runtime: median / p90 (ms) | per appliance median (ms) 1 / 2 / 3 | failed trials |"
		echo "|---|---:|---:|---:|---:|---:|"
		for r in $ROUNDS; do
			printf '| %s | %s / %s / %s | %s / %s / %s | %s / %s | %s / %s / %s | %s |\n' "$(size_of "$r")" \
				"$(fmt "$(median "$r" revoke_p50_ms)")" "$(fmt "$(median "$r" revoke_p90_ms)")" "$(fmt "$(median "$r" revoke_max_ms)")" \
				"$(fmt "$(median "$r" cli_p50_ms)")" "$(fmt "$(median "$r" cli_p90_ms)")" "$(fmt "$(median "$r" cli_max_ms)")" \
				"$(fmt "$(median "$r" show_p50_ms)")" "$(fmt "$(median "$r" show_p90_ms)")" \
				"$(fmt "$(median "$r" app1_p50_ms)")" "$(fmt "$(median "$r" app2_p50_ms)")" "$(fmt "$(median "$r" app3_p50_ms)")" \
				"$(fmt "$(median "$r" revoke_failed)")"
		done
	} >"$RESULTS"
	cat "$RESULTS"
}
declare -A SIZE
size_of() { printf '%s' "${SIZE[$1]:-?}"; }

# ---- main -----------------------------------------------------------------------------
main() {
	local r
	for b in "$KG_BENCH" "$KTLSGATE" "$KTLSGATED"; do
		[[ -x $b ]] || die "$b missing (make all build/kg-bench)"
	done
	for t in mosquitto openssl ss curl sqlite3 psql python3; do
		command -v "$t" >/dev/null || die "$t is not installed"
	done
	grep -q "PostgreSQL store not built" "$KTLSGATED" && die "this ktlsgated has no PostgreSQL store"
	LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
	ulimit -n "$(ulimit -Hn)"
	mkdir -p "$OUT" "$LOGS"
	rm -rf "$RUN"
	mkdir -p "$RUN"
	rm -f "$LOGS"/*.log "$LOGS"/*.json "$LOGS"/*.jsonl
	: >"$RAW"
	make_pki
	# Not under a 0700 directory: the postgres user must reach the cluster's files.
	PGBASE=$(mktemp -d /var/tmp/kg-bench-pg.XXXXXX)
	chmod 0755 "$PGBASE"
	kg_pg_start "$PGBASE/pg" 2>>"$LOGS/postgres.log" || die "PostgreSQL did not start (see $LOGS/postgres.log)"
	say "PostgreSQL $(psql --version | awk '{ print $3 }') on $KG_PG_URI"
	declare -ga BROKERS=("")
	for r in 1 2 3; do
		start_broker "mosquitto$r"
		BROKERS[r]=$BROKER_PORT
	done
	make_registries
	for r in $ROUNDS; do
		ROUND=$r
		case $r in
		small) SIZE[$r]=$(count_sqlite); bench_handshakes; bench_revoke 1 ;;
		big) fill_up "$BIG"; SIZE[$r]=$(count_sqlite); bench_handshakes; bench_revoke 2 ;;
		*) die "unknown round '$r' in PG_ROUNDS (small big)" ;;
		esac
	done
	report
	say "results in $RESULTS (raw: $RAW, logs: $LOGS)"
}

main "$@"
