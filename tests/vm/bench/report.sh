#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# report.sh RESULTS.tsv... - the offload bench's table (medians over the files and the
# repeats in them): CPU seconds per GB of payload and per million messages (user and
# system apart), idle RSS and fds per session, and the ratios.
set -euo pipefail
awk -F'\t' '
function med(k,   n, i, j, t, a) {
	n = cnt[k]; if (n == 0) return "";
	for (i = 1; i <= n; i++) a[i] = val[k, i];
	for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
	return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
function add(k, v) { cnt[k]++; val[k, cnt[k]] = v }
$1 == "term" { next }
{
	t = $1; terms[t] = 1
	if ($3 == "idle") {
		split($8, kv, /[ =]/); add(t SUBSEP "rss", kv[2]); add(t SUBSEP "fds", kv[4]); next
	}
	gb = $5 / 1e9; mm = $4 / 1e6
	add(t SUBSEP $3 SUBSEP "ugb", $6 / gb); add(t SUBSEP $3 SUBSEP "sgb", $7 / gb)
	# the relay threads alone (t-bench.sh wcpu; absent in older results)
	if ($8 ~ /wu=/) {
		split($8, kv, /[ =]/)
		add(t SUBSEP $3 SUBSEP "wugb", kv[2] / gb); add(t SUBSEP $3 SUBSEP "wsgb", kv[4] / gb)
		add(t SUBSEP $3 SUBSEP "wcgb", kv[6] / gb); add(t SUBSEP $3 SUBSEP "pcgb", kv[8] / gb)
		wt[t SUBSEP $3] += kv[10]; W[t] = 1
	}
	add(t SUBSEP $3 SUBSEP "umm", $6 / mm); add(t SUBSEP $3 SUBSEP "smm", $7 / mm)
}
END {
	order = "ktls_splice ktls_tx userspace haproxy"; n = split(order, O, " ")
	print "| data path | 64 KiB: user s/GB | 64 KiB: sys s/GB | 64 KiB: total s/GB | 256 B: user s/M msgs | 256 B: sys s/M msgs | 256 B: total s/GB | idle RSS KiB/session | idle fds/session |"
	print "|---|---|---|---|---|---|---|---|---|"
	for (i = 1; i <= n; i++) {
		t = O[i]; if (!(t in terms)) continue
		bu = med(t SUBSEP "big" SUBSEP "ugb"); bs = med(t SUBSEP "big" SUBSEP "sgb")
		su = med(t SUBSEP "small" SUBSEP "umm"); ss = med(t SUBSEP "small" SUBSEP "smm")
		st = med(t SUBSEP "small" SUBSEP "ugb") + med(t SUBSEP "small" SUBSEP "sgb")
		U[t] = bu; T[t] = bu + bs; R[t] = med(t SUBSEP "rss")
		printf "| %s | %.2f | %.2f | %.2f | %.2f | %.2f | %.1f | %.2f | %.2f |\n", t, bu, bs, bu + bs, su, ss, st, R[t], med(t SUBSEP "fds")
	}
	print ""
	if (length(W) > 0) {
		print "Relay threads only (the workers; HAProxy: all its threads), 64 KiB messages: user and system"
		print "seconds per GB from the tick split, on-CPU seconds per GB from schedstat (exact), the"
		print "whole process on-CPU for comparison, and the user ticks seen (all repeats):"
		print ""
		print "| data path | user s/GB | sys s/GB | on-CPU s/GB (schedstat) | process on-CPU s/GB | user ticks seen |"
		print "|---|---|---|---|---|---|"
		for (i = 1; i <= n; i++) {
			t = O[i]; if (!(t in W)) continue
			WU[t] = med(t SUBSEP "big" SUBSEP "wugb")
			printf "| %s | %.3f | %.2f | %.2f | %.2f | %d |\n", t, WU[t], med(t SUBSEP "big" SUBSEP "wsgb"),
				med(t SUBSEP "big" SUBSEP "wcgb"), med(t SUBSEP "big" SUBSEP "pcgb"), wt[t SUBSEP "big"]
		}
		print ""
		if (("ktls_splice" in WU) && ("userspace" in WU) && WU["userspace"] > 0)
			printf "- ktls_splice workers user CPU per GB / user-space relay workers (target < 2%%): %.2f%% (%d user ticks seen)\n", 100 * WU["ktls_splice"] / WU["userspace"], wt["ktls_splice" SUBSEP "big"]
	}
	if (("ktls_splice" in U) && ("userspace" in U) && U["userspace"] > 0)
		printf "- ktls_splice user CPU per GB / user-space relay (target < 2%%): %.1f%%\n", 100 * U["ktls_splice"] / U["userspace"]
	if (("ktls_splice" in T) && ("haproxy" in T) && T["haproxy"] > 0)
		printf "- ktls_splice total CPU per GB / HAProxy (target < 1): %.2f\n", T["ktls_splice"] / T["haproxy"]
	if ("ktls_splice" in R)
		printf "- RSS per idle ktls_splice session (target <= 4 KiB): %.2f KiB\n", R["ktls_splice"]
}' "$@"
