#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# report.sh OUT_DIR - the instruction-count bench's table from t-instr.sh's exports
# (OUT_DIR/results.tsv and OUT_DIR/cg.tar.gz): per data path, the daemon's user-space
# instructions (callgrind Ir) per GB of payload as the slope between the two volumes
# of each repeat (start-up, handshakes and shutdown cancel), medians over the repeats;
# the ratio ktls_splice / userspace against issue 14's 2 % target; and the functions
# (self Ir, callgrind_annotate) that make up each data path's slope. TOP=N functions
# (default 12). GB = 1e9 bytes of MQTT payload.
set -euo pipefail
OUT=$1
TOP=${TOP:-12}
command -v callgrind_annotate >/dev/null || { echo "report.sh: callgrind_annotate (valgrind) missing" >&2; exit 1; }
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
tar -xzf "$OUT/cg.tar.gz" -C "$T"
# funcs.tsv: term rep msgs bytes function Ir (self), every function of every run
tail -n +2 "$OUT/results.tsv" | while IFS=$'\t' read -r term rep msgs bytes _ _; do
	callgrind_annotate --inclusive=no --threshold=100 --auto=no "$T/cg/$term-$rep-$msgs.out" 2>/dev/null |
		awk -v p="$term	$rep	$msgs	$bytes" '
			/^-+$/ { sec++; next }
			sec == 6 && $1 ~ /^[0-9,]+$/ && $2 ~ /^\(/ {
				ir = $1; gsub(/,/, "", ir)
				fn = $0; sub(/^ *[0-9,]+ +\([^)]*\) +/, "", fn)
				obj = ""; if (match(fn, / \[[^]]*\]$/)) { obj = substr(fn, RSTART + 2, RLENGTH - 3); fn = substr(fn, 1, RSTART - 1) }
				sub(/^.*\//, "", obj)
				if (fn !~ /^\?\?\?:0x/) sub(/^[^:]*:/, "", fn)
				if (fn == "PROGRAM TOTALS") next
				printf "%s\t%s%s\t%s\n", p, fn, obj == "" ? "" : " (" obj ")", ir
			}'
done >"$T/funcs.tsv"
awk -F'\t' -v top="$TOP" '
function med(k,   n, i, j, t, a) {
	n = cnt[k]; if (n == 0) return 0
	for (i = 1; i <= n; i++) a[i] = val[k, i]
	for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
	return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
function add(k, v) { cnt[k]++; val[k, cnt[k]] = v }
FNR == 1 { file++ }
file == 1 && FNR > 1 {
	k = $1 SUBSEP $2; terms[$1] = 1; reps[k] = 1
	if (!(k in lo) || $3 < lo[k]) { lo[k] = $3; lob[k] = $4; loir[k] = $5 }
	if (!(k in hi) || $3 > hi[k]) { hi[k] = $3; hib[k] = $4; hiir[k] = $5 }
	ses[$1] = $6
	next
}
file == 2 { f[$1 SUBSEP $2 SUBSEP $3, $5] = $6; fns[$1 SUBSEP $5] = 1; next }
END {
	order = "ktls_splice ktls_tx userspace"; n = split(order, O, " ")
	for (k in reps) {
		split(k, kk, SUBSEP); t = kk[1]
		if (hib[k] == lob[k]) continue
		gb = (hib[k] - lob[k]) / 1e9
		add(t, (hiir[k] - loir[k]) / gb); add(t "#lo", loir[k]); add(t "#hi", hiir[k]); nrep[t]++
		GBd[t] = gb; LO[t] = lo[k]; HI[t] = hi[k]
		for (q in fns) {
			split(q, qq, SUBSEP); if (qq[1] != t) continue
			add(q, (f[t, kk[2], hi[k], qq[2]] - f[t, kk[2], lo[k], qq[2]]) / gb)
		}
	}
	print "| data path | runs (messages) | Ir, fewer messages | Ir, more messages | user instructions per GB | per payload byte | sessions (last run) |"
	print "|---|---|---:|---:|---:|---:|---|"
	for (i = 1; i <= n; i++) {
		t = O[i]; if (!(t in nrep)) continue
		S[t] = med(t)
		printf "| %s | %d x (%d, %d) | %.0f | %.0f | %.3g | %.4f | %s |\n", t, nrep[t], LO[t], HI[t], med(t "#lo"), med(t "#hi"), S[t], S[t] / 1e9, ses[t]
	}
	print ""
	if (("ktls_splice" in S) && ("userspace" in S) && S["userspace"] > 0)
		printf "- ktls_splice user instructions per GB / the user-space relay'\''s (target < 2%%): **%.2f%%**\n", 100 * S["ktls_splice"] / S["userspace"]
	# valgrind counts each iteration of a rep-prefixed instruction (glibc'\''s memcpy of
	# large blocks is rep movsb) as one instruction: about one per byte copied
	for (q in fns) { split(q, qq, SUBSEP); if (qq[2] ~ /^__mem(cpy|move)/) MC[qq[1]] += med(q) }
	if (("ktls_splice" in S) && ("userspace" in S) && S["userspace"] > MC["userspace"])
		printf "- the same without memcpy/memmove (valgrind counts each rep movsb iteration as an instruction): %.3g / %.3g Ir per GB = **%.2f%%**\n", S["ktls_splice"] - MC["ktls_splice"], S["userspace"] - MC["userspace"], 100 * (S["ktls_splice"] - MC["ktls_splice"]) / (S["userspace"] - MC["userspace"])
	print ""
	for (i = 1; i <= n; i++) {
		t = O[i]; if (!(t in nrep)) continue
		m = 0; delete L
		for (q in fns) { split(q, qq, SUBSEP); if (qq[1] != t) continue; m++; L[m] = qq[2]; V[qq[2]] = med(q) }
		for (a = 1; a <= m; a++) for (b = a + 1; b <= m; b++) if (V[L[b]] > V[L[a]]) { x = L[a]; L[a] = L[b]; L[b] = x }
		printf "%s: the functions with the most self instructions per GB (median slope; %% of the path'\''s):\n\n", t
		print "| function (object) | Ir per GB | % |"
		print "|---|---:|---:|"
		for (a = 1; a <= m && a <= top; a++) printf "| `%s` | %.3g | %.1f |\n", L[a], V[L[a]], S[t] ? 100 * V[L[a]] / S[t] : 0
		print ""
	}
}' "$OUT/results.tsv" "$T/funcs.tsv"
