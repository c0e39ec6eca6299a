#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# import.sh - `make bench-import`: bulk enrolment, side by side in one run.
#
# The same N devices (id + pinned thumbprint, the worst case: each insert also checks
# that no other device pins the thumbprint) are enrolled into a fresh registry twice
# per repeat, in turn: (A) one `ktlsgate device import FILE` (one transaction), and
# (B) N `ktlsgate device add ID --thumbprint HEX` calls (one process and one commit
# each: what a script did before import existed). Wall seconds per whole run, start-up
# included, from a monotonic clock; each run is checked to have enrolled exactly N
# devices. Prints every run, the medians and the ratio B/A, and one markdown row.
# No daemon runs (the config's control socket is absent, so the CLI's "device-changed"
# notification fails fast, as it does on a host where ktlsgated is stopped).
# Knobs: BENCH_IMPORT_DEVICES (2000), BENCH_REPEAT (3), BUILD (build).
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${BENCH_IMPORT_DEVICES:-2000}
R=${BENCH_REPEAT:-3}
KG=$(realpath "${BUILD:-build}/ktlsgate")
W=$(mktemp -d "${TMPDIR:-/tmp}/kg-bench-import.XXXXXX")
trap 'rm -rf "$W"' EXIT

now() { date +%s.%N; }
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# The devices: "id,thumbprint" lines (random 32-byte thumbprints, all distinct).
/usr/bin/python3 - "$N" >"$W/devices.csv" <<'PY'
import os, sys
print("id,thumbprint")
for i in range(int(sys.argv[1])):
    print("bench-%05d,%s" % (i, os.urandom(32).hex()))
PY

# fresh DIR: an empty directory with a config naming its registry and control socket.
fresh() {
	rm -rf "$1"
	mkdir -p "$1"
	printf '[daemon]\ncert = none.pem\nkey = none.pem\nregistry = registry.db\ncontrol_socket = ctl.sock\n' >"$1/k.conf"
}

count() {
	"$KG" -c "$1/k.conf" device list --json | /usr/bin/python3 -c 'import json,sys; print(len(json.load(sys.stdin)))'
}

run_import() {
	"$KG" -c "$1/k.conf" device import "$W/devices.csv" >/dev/null
}

run_add() {
	local id th
	# One process per device, as a shell loop over `device add` does.
	tail -n +2 "$W/devices.csv" | while IFS=, read -r id th; do
		"$KG" -c "$1/k.conf" device add "$id" --thumbprint "$th" >/dev/null
	done
}

echo "bench-import: $N devices, $R repeats, $(nproc) CPUs, $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo '+dirty'), $(date -u +%Y-%m-%dT%H:%MZ)"
printf '%-6s %12s %12s %8s\n' run import_s add_s add/import
: >"$W/a"
: >"$W/b"
: >"$W/r"
for ((i = 1; i <= R; i++)); do
	fresh "$W/imp"
	t0=$(now)
	run_import "$W/imp"
	t1=$(now)
	fresh "$W/add"
	run_add "$W/add"
	t2=$(now)
	for d in imp add; do
		c=$(count "$W/$d")
		[ "$c" = "$N" ] || { echo "bench-import: $d enrolled $c devices, not $N" >&2; exit 1; }
	done
	a=$(echo "$t1 - $t0" | bc -l)
	b=$(echo "$t2 - $t1" | bc -l)
	r=$(echo "$b / $a" | bc -l)
	echo "$a" >>"$W/a"
	echo "$b" >>"$W/b"
	echo "$r" >>"$W/r"
	printf '%-6s %12.3f %12.3f %8.1f\n' "$i" "$a" "$b" "$r"
done
ma=$(median <"$W/a")
mb=$(median <"$W/b")
mr=$(median <"$W/r")
printf '%-6s %12.3f %12.3f %8.1f\n' median "$ma" "$mb" "$mr"
printf '| %s | %.3f | %.2f | %.0fx |\n' "$N" "$ma" "$mb" "$mr"
