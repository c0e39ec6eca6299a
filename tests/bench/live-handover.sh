#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# live-handover.sh - `make bench-handover` (issue 14; docs/benchmarks.md "Issue 14: live
# sessions at a takeover"): how long N live sessions take to move to the new process at
# `ktlsgated --takeover`, and that every one of them relays afterwards.
#
# On this host the sessions that can travel are plain ones (no kTLS here: the record
# relay's sessions do not move); a plain session moves as a ktls_splice one does (two
# sockets and a record, core/conn_xfer.c), so the cost per session is the same but for
# the ULP check. For each N of BENCH_SESSIONS (default "1000 4000") and each of
# BENCH_REPEAT rounds (3): a fresh daemon (2 workers, relay = userspace), N subscribed
# sessions (tests/lib/live_sessions.py), a --takeover; measured: from starting the new
# process to the old one's exit (wall: the new process's start included), the move
# itself (from the new process's "accepting" audit line to the moment its counter shows
# every session adopted, polled every 5 ms with curl: exported, sent, adopted and judged again
# by the policy), and the sessions' check afterwards (each publishes QoS 1 and
# gets its PUBACK and its own message back through the new process). Medians in
# $OUT/results.md; raw rows in $OUT/raw.tsv. Exit 1 if a session failed in any round.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"
bench_paths bench-handover
mkdir -p "$OUT"
ulimit -n 20000 2>/dev/null || true
# the integration suite's helpers (config, PKI, broker, daemon)
GATED=$KTLSGATED
KGCLI=$KTLSGATE
KG_WORK_BASE=$OUT
# shellcheck source=../integration/lib.sh
. "$ROOT/tests/integration/lib.sh"

SESSIONS=${BENCH_SESSIONS:-"1000 4000"}
REPEAT=${BENCH_REPEAT:-3}
RAW=$OUT/raw.tsv
RESULTS=$OUT/results.md
printf 'sessions\tround\twall_ms\tdrain_ms\tpassed\tadopted\tok\n' >"$RAW"
failed=0

one_round() {   # N ROUND
	local n=$1 r=$2 old new t0 t1 drain passed adopted ok
	kg_init handover-$n-$r
	travel_gw_conf
	pki_setup "$WORK/pki" >/dev/null 2>&1 || return 1
	token_device dev "$WORK/dev.token" || return 1
	# mosquitto with no connection cap (the suite's broker config keeps its defaults)
	printf 'listener %s 127.0.0.1\nallow_anonymous true\nmax_connections -1\n' "$BK_PORT" >"$WORK/mosq.conf"
	mosquitto -c "$WORK/mosq.conf" >"$WORK/mosq.log" 2>&1 &
	KG_PIDS+=($!)
	wait_port "$BK_PORT" 10 || return 1
	start_gateway >/dev/null || return 1
	$PY "$ROOT/tests/lib/live_sessions.py" 127.0.0.1 "$PLAIN_PORT" "$(cat "$WORK/dev.token")" \
		"$n" s "$WORK/ready" "$WORK/go" 600 >"$WORK/live.out" 2>&1 &
	local lp=$!
	for ((i = 0; i < 6000; i++)); do [ -e "$WORK/ready" ] && break; sleep 0.1; done
	[ -e "$WORK/ready" ] || { echo "round $n/$r: the sessions did not come up: $(cat "$WORK/live.out")"; return 1; }
	old=$GW_PID
	t0=$(date +%s%N)
	"$GATED" --takeover -c "$GW_CONF" >>"$GW_LOG" 2>&1 &
	new=$!
	KG_PIDS+=("$new")
	# until every session is adopted (the new process's counter), and the old one gone
	t1="" t2=""
	for ((i = 0; i < 12000 && (${#t1} == 0 || ${#t2} == 0); i++)); do
		[ -z "$t1" ] && ! kill -0 "$old" 2>/dev/null && t1=$(date +%s%N)
		if [ -z "$t2" ]; then
			adopted=$(curl -s --max-time 2 "http://127.0.0.1:$GW_MPORT/metrics" 2>/dev/null |
				awk '/^ktlsgate_sessions_handed_over_total\{direction="adopted"/ { s += $2 } END { print s + 0 }')
			[ "${adopted:-0}" -ge "$n" ] && t2=$(date +%s%N)
		fi
		sleep 0.005
	done
	wait "$old" 2>/dev/null
	GW_PID=$new
	# from the new process's "accepting" (its audit line's timestamp) to the moment its
	# counter showed every session adopted
	drain=$($PY -c '
import json, sys, datetime
ts = {}
for line in open(sys.argv[1], errors="replace"):
    if "\"event\":\"handover\"" not in line:
        continue
    try:
        o = json.loads(line[line.index("{"):])
    except ValueError:
        continue
    k = (o.get("role"), o.get("result"))
    if k in (("new", "ok"), ("old", "drained")):
        ts[k] = datetime.datetime.strptime(o["ts"], "%Y-%m-%dT%H:%M:%S.%fZ")
t2 = int(sys.argv[2] or 0) / 1e9
if len(ts) == 2 and t2:
    acc = ts[("new", "ok")].replace(tzinfo=datetime.timezone.utc).timestamp()
    print(int((t2 - acc) * 1000))
' "$GW_LOG" "$t2")
	passed=$(grep -o '"sessions_passed":[0-9]*' "$GW_LOG" | cut -d: -f2)
	touch "$WORK/go"
	wait "$lp"
	ok=$(sed -n 's/^{"ok": \([0-9]*\).*/\1/p' "$WORK/live.out")
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$n" "$r" "$(((t1 - t0) / 1000000))" "${drain:-?}" \
		"${passed:-0}" "${adopted:-0}" "${ok:-0}" >>"$RAW"
	echo "round $n/$r: wall $(((t1 - t0) / 1000000)) ms, accepting -> adopted ${drain:-?} ms, passed ${passed:-0}, adopted ${adopted:-0}, relayed after ${ok:-0} of $n"
	stop_all >/dev/null 2>&1
	[ "${ok:-0}" = "$n" ] && [ "${passed:-0}" = "$n" ]
}

for n in $SESSIONS; do
	for ((r = 1; r <= REPEAT; r++)); do
		one_round "$n" "$r" || failed=1
	done
done

{
	echo "- stamp: ktlsgate $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?'), $(date -u '+%Y-%m-%d %H:%M UTC'), load $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "- command: make bench-handover BENCH_SESSIONS='$SESSIONS' BENCH_REPEAT=$REPEAT"
	echo
	echo "| live sessions | takeover start -> old process exit, ms (median) | new accepts -> every session adopted, ms (median) | per session, µs | passed / adopted / relayed after (worst round) |"
	echo "|---|---|---|---|---|"
	awk -F'\t' 'NR > 1 { w[$1] = w[$1] " " $3; d[$1] = d[$1] " " $4; p[$1] = (p[$1] == "" || $5 < p[$1]) ? $5 : p[$1];
		a[$1] = (a[$1] == "" || $6 < a[$1]) ? $6 : a[$1]; o[$1] = (o[$1] == "" || $7 < o[$1]) ? $7 : o[$1]; order[++k] = $1 }
		function med(s,   n, v, i, j, t) { n = split(s, v, " "); for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (v[j] + 0 < v[i] + 0) { t = v[i]; v[i] = v[j]; v[j] = t }
			return v[int((n + 1) / 2)] }
		END { for (i = 1; i <= k; i++) { n = order[i]; if (seen[n]++) continue
			printf "| %s | %s | %s | %.0f | %s / %s / %s |\n", n, med(w[n]), med(d[n]), med(d[n]) * 1000 / n, p[n], a[n], o[n] } }' "$RAW"
} >"$RESULTS"
cat "$RESULTS"
exit $failed
