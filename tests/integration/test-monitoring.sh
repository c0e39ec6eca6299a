#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# test-monitoring.sh - the monitoring kit against a live daemon (issue 12, Monitoring):
# docs/monitoring.md, packaging/prometheus/ktlsgate.rules.yml (+ .test.yml) and
# packaging/grafana/ktlsgate.json must name only metrics that exist, and every metric
# the daemon exports must be documented.
#
# A real ktlsgated (mosquitto behind it, a CRL on the "factory" CA) gets a good device,
# an unknown device, a device of an unregistered CA and a device whose broker is down,
# so the labelled series exist; then /metrics is scraped and compared with:
#   - the code's list: every `# TYPE ktlsgate_...` the sources under daemon/ print
#     (families the test cannot make appear, e.g. the XDP gate's, are only there);
#   - the names in docs/monitoring.md, in every rule expression, in every dashboard
#     panel and template query (a small PromQL tokenizer in python3; the rules are read
#     with python3-yaml, or a line-based reader where it is missing).
# The series added for the alerts get plausible live values: each CA's and the server
# certificate's notAfter equal to `openssl x509 -enddate`, process_open_fds near
# /proc/PID/fd's count and under process_max_fds, the registry writer's queue 0 at rest
# and 1 (with its last commit frozen) while another process holds the registry's lock.
# promtool (Debian's prometheus package) checks and unit-tests the rules; without it the
# test FAILS. Each test prints PASS/FAIL with the offending names.
# dev_args prints options meant to split into words; lib.sh reads ALL_TESTS and KG_FAILED.
# shellcheck disable=SC2046,SC2034
set -u
. "$(dirname "$0")/lib.sh"

DOC="$KG_TOP/docs/monitoring.md"
RULES="$KG_TOP/packaging/prometheus/ktlsgate.rules.yml"
RULES_TEST="$KG_TOP/packaging/prometheus/ktlsgate.rules.test.yml"
DASH=${KG_DASHBOARD:-$KG_TOP/packaging/grafana/ktlsgate.json}

setup() {
	kg_init monitoring
	BK_PORT=$(free_port)
	BK2_PORT=$(free_port)   # backend "other": nothing listens there (backend_down)
	GW_PORT=$(free_port)
	GW_MPORT=$(free_port)
	GW_DIR="$WORK/gw"
	write_gw_conf "$GW_DIR" "$GW_PORT" "$GW_MPORT" "$BK_PORT" "$BK2_PORT"
	GW_CONF="$GW_DIR/ktlsgate.conf"
	GW_LOG="$GW_DIR/gw.log"
	: >"$GW_LOG"
	pki_setup "$WORK/pki" || return 1
	# a CRL on factory: the per-CA CRL series carry ca="factory"
	pki crl --ca "$PKI/factory" --out "$GW_DIR/crl.pem" || return 1
	printf '\n[crl]\nfactory = crl.pem\n' >>"$GW_CONF"
	device_cert mon-ok "$PKI/factory" || return 1
	kg device add mon-ok >/dev/null || return 1
	device_cert mon-far "$PKI/factory" || return 1
	kg device add mon-far --backend other >/dev/null || return 1
	device_cert mon-unknown "$PKI/factory" || return 1   # never added
	pki root --cn "rogue root" --out "$PKI/rogue" || return 1   # never registered
	device_cert mon-rogue "$PKI/rogue" || return 1
	start_broker "$BK_PORT" || return 1
	start_gateway || return 1
	wait_port "$GW_MPORT" 5 "$GW_PID" || { echo "no metrics endpoint on $GW_MPORT" >&2; return 1; }
	MON_PY="$WORK/moncheck.py"
	write_checker >"$MON_PY"
}

# write_checker: the python3 side (stdout). Subcommands print "ok: ..." lines and, on a
# problem, one line per offence and exit 1.
write_checker() {
	cat <<'PYEOF'
import json, os, re, sys

# ktlsgate_*, and the Prometheus client convention's process_* (process_open_fds, ...)
NAME = r'(?:ktlsgate|process)_[a-z0-9_]+'
TYPE_RE = re.compile(r'# TYPE (' + NAME + r') (counter|gauge|histogram|summary|untyped)')
HIST_SUFFIXES = ("_bucket", "_sum", "_count")
# Series Prometheus makes itself, not the daemon.
PROMETHEUS_OWN = {"up"}

def code_families(top):
    fams = {}
    for root, _, files in os.walk(os.path.join(top, "daemon")):
        for f in files:
            if f.endswith((".c", ".h")):
                for m in TYPE_RE.finditer(open(os.path.join(root, f), errors="replace").read()):
                    fams[m.group(1)] = m.group(2)
    return fams

def scrape_families(path):
    fams, samples = {}, {}
    for line in open(path):
        m = TYPE_RE.match(line)
        if m:
            fams[m.group(1)] = m.group(2)
        elif line.strip() and not line.startswith("#"):
            m = re.match(r'([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s', line)
            if m:
                samples.setdefault(m.group(1), []).append(
                    dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or "")))
    return fams, samples

def family_of(name, fams):
    """The family a series name belongs to (histogram suffixes stripped), or None."""
    if name in fams:
        return name
    for s in HIST_SUFFIXES:
        if name.endswith(s) and fams.get(name[: -len(s)]) in ("histogram", "summary"):
            return name[: -len(s)]
    return None

KEYWORDS = {"and", "or", "unless", "bool", "by", "without", "on", "ignoring", "group_left",
            "group_right", "offset", "inf", "nan", "sum", "min", "max", "avg", "group",
            "stddev", "stdvar", "count", "count_values", "bottomk", "topk", "quantile"}

def promql_metrics(expr):
    """Metric names a PromQL expression selects (functions, keywords, labels, strings,
    durations and Grafana variables are not names)."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    s = re.sub(r'\$\{[^}]*\}|\$\w+', ' ', s)
    s = re.sub(r'\{[^{}]*\}', ' ', s)
    s = re.sub(r'\[[^\]]*\]', ' ', s)
    s = re.sub(r'\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)', ' ', s)
    s = re.sub(r'\boffset\s+-?\w+', ' ', s)
    names = []
    for m in re.finditer(r'\d[\w.]*|([A-Za-z_:][\w:]*)(\s*\()?', s):
        n = m.group(1)
        if n and not m.group(2) and n.lower() not in KEYWORDS:
            names.append(n)
    return names

def template_query_metrics(q):
    m = re.match(r'\s*label_values\(\s*(.*?)\s*,\s*\w+\s*\)\s*$', q, re.S)
    if m:
        return promql_metrics(m.group(1))
    if re.match(r'\s*label_values\(\s*\w+\s*\)\s*$', q):
        return []
    m = re.match(r'\s*(?:query_result|metrics|label_names)\((.*)\)\s*$', q, re.S)
    return promql_metrics(m.group(1) if m else q)

def load_rules(path):
    """[{alert, expr, for, labels, annotations}], with python3-yaml or a line reader."""
    try:
        import yaml
    except ImportError:
        yaml = None
    if yaml is not None:
        print("ok: rules read with python3-yaml")
        doc = yaml.safe_load(open(path))
        return [r for g in doc["groups"] for r in g["rules"]]
    print("ok: python3-yaml missing: rules read line by line")
    rules, cur, block, block_indent = [], None, None, 0
    for line in open(path).read().split("\n"):
        ind = len(line) - len(line.lstrip())
        if block is not None:
            if line.strip() == "" or ind > block_indent:
                cur[block] += line.strip() + "\n"
                continue
            block = None
        m = re.match(r'\s*- (alert|record):\s*(\S+)', line)
        if m:
            cur = {m.group(1): m.group(2), "labels": {}, "annotations": {}}
            rules.append(cur)
            continue
        if cur is None:
            continue
        m = re.match(r'(\s*)(expr|for):\s*(.*)$', line)
        if m:
            if m.group(3).strip() in ("|", ">", "|-", ">-"):
                block, block_indent, cur[m.group(2)] = m.group(2), len(m.group(1)), ""
            else:
                cur[m.group(2)] = m.group(3).strip().strip("'\"")
            continue
        m = re.match(r'\s*(severity|summary|description):\s*(.*)$', line)
        if m:
            key = "labels" if m.group(1) == "severity" else "annotations"
            cur[key][m.group(1)] = m.group(2).strip().strip("'\"")
    return rules

def panel_list(dash):
    for p in dash.get("panels", []):
        yield p
        for q in p.get("panels", []):   # collapsed rows hold their panels
            yield q

def main():
    cmd, top = sys.argv[1], sys.argv[2]
    code = code_families(top)
    bad = []
    if len(code) < 25 or "ktlsgate_workers" not in code:
        print("FAIL: the code list is implausible (%d families): %s" % (len(code), sorted(code)))
        sys.exit(1)
    if cmd == "code":
        for n in sorted(code):
            print(n, code[n])
        return
    scrape, samples = scrape_families(sys.argv[3])
    if len(scrape) < 20 or "ktlsgate_workers" not in scrape:
        print("FAIL: the scrape is implausible (%d families)" % len(scrape))
        sys.exit(1)
    print("ok: %d families in the code, %d in the live scrape" % (len(code), len(scrape)))
    if cmd == "docs":
        doc = open(sys.argv[4]).read()
        documented = set(re.findall(NAME, doc))
        for n in sorted(scrape):
            if n not in documented:
                bad.append("exported but not in docs/monitoring.md: " + n)
        for n in sorted(code):
            if n not in documented:
                bad.append("in the code but not in docs/monitoring.md: " + n)
        for n in sorted(documented):
            if family_of(n, code) is None:
                bad.append("in docs/monitoring.md but not in the code: " + n)
        for n in sorted(set(samples) - set(scrape)):
            if family_of(n, scrape) is None:
                bad.append("sample without a # TYPE family in the scrape: " + n)
        # every label name and value seen live is on the family's row (reason values
        # are docs/reasons.md's; ca, interface and backend come from the configuration)
        rows = {m.group(1): m.group(0) for m in re.finditer(r'^\| `(' + NAME + r')` \|.*$', doc, re.M)}
        for n, lsets in sorted(samples.items()):
            fam = family_of(n, scrape)
            row = rows.get(fam)
            if fam is None:
                continue
            if row is None:
                bad.append("no table row for " + fam)
                continue
            for ls in lsets:
                for k, v in ls.items():
                    if "`%s`" % k not in row:
                        bad.append("label %s of %s not on its row" % (k, fam))
                    elif k not in ("reason", "ca", "interface", "backend") and "`%s`" % v not in row and \
                            not (k == "le" and v in row):
                        bad.append('label value %s="%s" of %s not on its row' % (k, v, fam))
        if "(reasons.md)" not in doc:
            bad.append("docs/monitoring.md does not link reasons.md")
    elif cmd == "queries":
        known = set(scrape) | set(samples)
        used = []   # (where, name)
        rules = load_rules(sys.argv[4])
        if len(rules) < 5:
            bad.append("only %d rules read from the rules file" % len(rules))
        for r in rules:
            where = "rule " + r.get("alert", r.get("record", "?"))
            names = promql_metrics(str(r.get("expr", "")))
            if not names:
                bad.append(where + ": no metric in its expression")
            used += [(where, n) for n in names]
        dash = json.load(open(sys.argv[5]))
        n_panels = 0
        for p in panel_list(dash):
            if p.get("type") in ("row", "text"):
                continue
            n_panels += 1
            where = 'panel "%s"' % p.get("title")
            ds = (p.get("datasource") or {}).get("uid")
            if ds != "${DS_PROMETHEUS}":
                bad.append("%s: datasource %r, not ${DS_PROMETHEUS}" % (where, ds))
            exprs = [t.get("expr", "") for t in p.get("targets", []) if t.get("expr", "").strip()]
            if not exprs:
                bad.append(where + ": no query")
            for e in exprs:
                names = promql_metrics(e)
                if not names:
                    bad.append("%s: no metric in %r" % (where, e))
                used += [(where, n) for n in names]
        tvars = dash.get("templating", {}).get("list", [])
        if not any(v.get("name") == "DS_PROMETHEUS" and v.get("type") == "datasource" for v in tvars):
            bad.append("no datasource variable DS_PROMETHEUS in the dashboard")
        for v in tvars:
            if v.get("type") == "query":
                q = v.get("query")
                q = q.get("query", "") if isinstance(q, dict) else (q or "")
                used += [("variable " + v.get("name", "?"), n) for n in template_query_metrics(q)]
        if n_panels < 10:
            bad.append("only %d query panels in the dashboard" % n_panels)
        cond = set()
        for where, n in used:
            if family_of(n, scrape) or n in known:
                continue
            if family_of(n, code):
                cond.add(n)
                continue
            if n in PROMETHEUS_OWN:
                continue
            bad.append("%s: no such metric: %s" % (where, n))
        print("ok: %d rules, %d panels, %d metric references; only in the code list "
              "(conditional): %s" % (len(rules), n_panels, len(used), " ".join(sorted(cond)) or "-"))
    elif cmd == "shape":
        rules = load_rules(sys.argv[4])
        for r in rules:
            if "alert" not in r:
                continue
            a = r["alert"]
            if not str(r.get("for", "")).strip():
                bad.append(a + ": no for:")
            if (r.get("labels") or {}).get("severity") not in ("warning", "critical"):
                bad.append(a + ": severity label not warning|critical")
            for k in ("summary", "description"):
                if not str((r.get("annotations") or {}).get(k, "")).strip():
                    bad.append("%s: no %s annotation" % (a, k))
        print("ok: %d alerts" % sum("alert" in r for r in rules))
        if len(sys.argv) > 5:   # the alerts table of docs/monitoring.md
            names = {r["alert"] for r in rules if "alert" in r}
            listed = set(re.findall(r'`(Ktlsgate\w+)`', open(sys.argv[5]).read()))
            bad += ["alert not in docs/monitoring.md: " + n for n in sorted(names - listed)]
            bad += ["docs/monitoring.md names an alert the rules lack: " + n for n in sorted(listed - names)]
        if not any("alert" in r for r in rules):
            bad.append("no alert rules")
    for b in bad:
        print("BAD " + b)
    sys.exit(1 if bad else 0)

if __name__ == "__main__":
    main()
PYEOF
}

# scrape FILE: /metrics into FILE; fails on an empty or failed scrape.
scrape() {
	metrics >"$1" 2>&1 || { note "scrape failed: $(head -3 "$1")"; return 1; }
	grep -q '^ktlsgate_workers 2$' "$1" || { note "scrape has no ktlsgate_workers 2: $(head -3 "$1")"; return 1; }
}

# check SUBCOMMAND ARGS...: run the checker; its BAD lines become the FAIL reason.
check() {
	local out rc
	out=$($PY "$MON_PY" "$@" 2>&1)
	rc=$?
	printf '%s\n' "$out" | grep -v '^BAD ' | sed 's/^/    /'
	if [ $rc -ne 0 ]; then
		note "$(printf '%s\n' "$out" | grep -E '^(BAD|FAIL|Traceback)' | sed 's/^BAD //' | paste -sd ';' -)"
		return 1
	fi
}

# --- traffic: the labelled series must exist before the comparison means anything ---------

t_traffic() {
	local got bad=0 v
	got=$(kgc connect $(dev_args mon-ok) --topic itest/mon --msg hello | head -2 | tr '\n' ' ')
	[ "$got" = "connack 0x00 puback 0x00 " ] || { note "mon-ok: want connack 0x00 puback 0x00, got '$got'"; return 1; }
	got=$(kgc connect $(dev_args mon-unknown) | head -1)
	[ "$got" = "connack 0x05" ] || { note "mon-unknown: want connack 0x05, got '$got'"; bad=1; }
	got=$(kgc connect $(dev_args mon-far) | head -1)
	[ "$got" = "connack 0x03" ] || { note "mon-far (broker down): want connack 0x03, got '$got'"; bad=1; }
	got=$(kgc connect $(dev_args mon-rogue) --peek 500 | head -1)
	case $got in tls_error:*) ;; *) note "mon-rogue: want a TLS error, got '$got'"; bad=1 ;; esac
	# the counters are summed on scrape: wait until the last refusal is counted
	for _ in $(seq 1 40); do
		[ "$(metric_value ktlsgate_handshakes_total 'result="failed"')" -ge 1 ] && break
		sleep 0.1
	done
	scrape "$WORK/scrape.txt" || return 1
	while read -r name labels; do
		v=$(awk -v n="$name" -v l="$labels" '$1 ~ "^" n "([{]|$)" && (l == "" || index($1, l)) { s += $NF; f = 1 } END { print f ? s : "absent" }' "$WORK/scrape.txt")
		echo "    $name{$labels} = $v"
		case $v in absent | 0) note "$name{$labels} is $v after the traffic"; bad=1 ;; esac
	done <<'EOF'
ktlsgate_decisions_total decision="allow",reason="ok"
ktlsgate_decisions_total decision="deny",reason="unknown_device"
ktlsgate_decisions_total decision="deny",reason="backend_down"
ktlsgate_decisions_total decision="deny",reason="unknown_ca"
ktlsgate_handshakes_total result="failed"
ktlsgate_handshakes_total result="ok"
ktlsgate_bytes_relayed_total direction="device_to_broker"
ktlsgate_sessions_started_total
ktlsgate_crl_next_update_timestamp_seconds ca="factory"
ktlsgate_handshake_seconds_count
EOF
	# the relayed session's end: who closed first after its DISCONNECT is a race
	grep -Eq '^ktlsgate_closes_total[{]reason="(peer|backend)_closed"[}] [1-9]' "$WORK/scrape.txt" ||
		{ note "no ktlsgate_closes_total{reason=peer_closed|backend_closed} after a relayed session"; bad=1; }
	grep -q '^ktlsgate_crl_expired{ca="factory"} 0$' "$WORK/scrape.txt" ||
		{ note "no ktlsgate_crl_expired{ca=\"factory\"} 0 in the scrape"; bad=1; }
	[ $bad = 0 ] || WHY="see above"
	return $bad
}

# --- the series added for the alerts (certificate expiry, TPM, writer, fds) ----------------

# sample NAME{LABELS}: the value of exactly that series in the last scrape, or "absent"
sample() {
	awk -v s="$1" '$1 == s { v = $2; f = 1 } END { print f ? v : "absent" }' "$WORK/scrape.txt"
}

# notafter FILE: the certificate's notAfter as `openssl x509 -enddate` prints it, unix time
notafter() {
	date -u -d "$(openssl x509 -noout -enddate -in "$1" | sed 's/^notAfter=//')" +%s
}

t_new_series() {
	local bad=0 now v want open max lsfd op
	[ -s "$WORK/scrape.txt" ] || { note "no scrape from t_traffic"; return 1; }
	now=$(date +%s)
	# every registered CA, each equal to its certificate's notAfter, in the future
	for ca in root factory; do
		v=$(sample "ktlsgate_ca_not_after_timestamp_seconds{ca=\"$ca\"}")
		want=$(notafter "$PKI/$ca/cert.pem")
		echo "    ca $ca: scrape $v, openssl $want"
		case $want in '' | *[!0-9]*) note "no notAfter from openssl for $ca: '$want'"; bad=1; continue ;; esac
		[ "$v" = "$want" ] || { note "ktlsgate_ca_not_after_timestamp_seconds{ca=$ca} = $v, openssl says $want"; bad=1; }
		[ "$want" -gt "$now" ] || { note "CA $ca notAfter $want not in the future"; bad=1; }
	done
	# the rogue root is not registered: no series
	grep -q 'ktlsgate_ca_not_after_timestamp_seconds{ca="rogue' "$WORK/scrape.txt" &&
		{ note "a series for an unregistered CA"; bad=1; }
	v=$(sample ktlsgate_server_cert_not_after_timestamp_seconds)
	want=$(notafter "$GW_DIR/server/chain.pem")
	echo "    server certificate: scrape $v, openssl $want"
	[ -n "$want" ] && [ "$v" = "$want" ] ||
		{ note "ktlsgate_server_cert_not_after_timestamp_seconds = $v, openssl says '$want'"; bad=1; }
	# no TPM here: every kind exported, at 0; no signer series
	for op in connect load sign timeout queue_full; do
		v=$(sample "ktlsgate_tpm_errors_total{kind=\"$op\"}")
		[ "$v" = 0 ] || { note "ktlsgate_tpm_errors_total{kind=$op} = $v, want 0"; bad=1; }
	done
	grep -q '^ktlsgate_tpm_up ' "$WORK/scrape.txt" && { note "ktlsgate_tpm_up without a TPM key"; bad=1; }
	# fds: counted, under the limit, close to what /proc says from outside
	open=$(sample process_open_fds)
	max=$(sample process_max_fds)
	lsfd=$(find /proc/"$GW_PID"/fd -mindepth 1 -maxdepth 1 | wc -l)
	echo "    process_open_fds $open (ls /proc/PID/fd: $lsfd), process_max_fds $max (ulimit here $(ulimit -Hn))"
	case "$open$max" in *[!0-9]* | '') note "process_open_fds '$open' / process_max_fds '$max' not numbers"; return 1 ;; esac
	[ "$open" -gt 0 ] && [ "$open" -lt "$max" ] || { note "process_open_fds $open not in (0, $max)"; bad=1; }
	[ "$open" -ge $((lsfd - 5)) ] && [ "$open" -le $((lsfd + 5)) ] ||
		{ note "process_open_fds $open far from /proc/PID/fd's $lsfd"; bad=1; }
	[ "$max" = "$(ulimit -Hn)" ] || { note "process_max_fds $max, hard limit $(ulimit -Hn) (ktlsgated raises the soft one to it)"; bad=1; }
	# the writer at rest: the traffic's last-seen update committed, nothing waits
	for _ in $(seq 1 50); do
		v=$(metric_value ktlsgate_registry_writer_queue)
		[ "$v" = 0 ] && break
		sleep 0.1
	done
	[ "$v" = 0 ] || { note "ktlsgate_registry_writer_queue $v at rest, want 0"; bad=1; }
	v=$(metric_value ktlsgate_registry_writer_last_commit_timestamp_seconds)
	want=$(metric_value ktlsgate_start_time_seconds)
	echo "    writer last commit $v, start $want, now $(date +%s)"
	[ "$want" -gt 0 ] && [ "$v" -ge "$want" ] && [ "$v" -le "$(date +%s)" ] ||
		{ note "writer last commit $v not between the start $want and now"; bad=1; }
	[ $bad = 0 ] || WHY="see above"
	return $bad
}

# Per-backend series live: "local" reached (up 1), "other" refused (up 0, failed >= 1);
# the server key from a file. A reload that puts a new backend before them keeps each
# name's counters (slots follow names, not positions); a broker coming up on "other"
# turns it up at the next connect.
t_backends() {
	local bad=0 v ok_before fail_before
	[ -s "$WORK/scrape.txt" ] || { note "no scrape from t_traffic"; return 1; }
	ok_before=$(sample 'ktlsgate_backend_connects_total{backend="local",result="ok"}')
	fail_before=$(sample 'ktlsgate_backend_connects_total{backend="other",result="failed"}')
	echo "    local ok $ok_before, other failed $fail_before"
	case "$ok_before$fail_before" in *[!0-9]* | '') note "backend counters absent: local ok '$ok_before', other failed '$fail_before'"; return 1 ;; esac
	[ "$ok_before" -ge 1 ] || { note "local ok $ok_before after a relayed device"; bad=1; }
	[ "$fail_before" -ge 1 ] || { note "other failed $fail_before after a refused device"; bad=1; }
	v=$(sample 'ktlsgate_backend_connects_total{backend="local",result="failed"}')
	[ "$v" = 0 ] || { note "local failed = $v, want 0"; bad=1; }
	v=$(sample 'ktlsgate_backend_up{backend="local"}')
	[ "$v" = 1 ] || { note "ktlsgate_backend_up{backend=local} = $v, want 1"; bad=1; }
	v=$(sample 'ktlsgate_backend_up{backend="other"}')
	[ "$v" = 0 ] || { note "ktlsgate_backend_up{backend=other} = $v, want 0"; bad=1; }
	for src in file:1 tpm:0 tpm_fallback:0; do
		v=$(sample "ktlsgate_server_key_source{source=\"${src%%:*}\"}")
		[ "$v" = "${src#*:}" ] || { note "ktlsgate_server_key_source{source=${src%%:*}} = $v, want ${src#*:}"; bad=1; }
	done
	# the host kernel has no kTLS: both exported, at 0
	for by in openssl daemon; do
		v=$(sample "ktlsgate_ktls_rx_installed_total{by=\"$by\"}")
		[ "$v" = 0 ] || { note "ktlsgate_ktls_rx_installed_total{by=$by} = $v, want 0 (no kTLS here)"; bad=1; }
	done
	# a backend inserted before the others, then a reload
	sed -i "s/^\[backend local\]\$/[backend aaa-first]\naddress = 127.0.0.1:$BK_PORT\n\n[backend local]/" "$GW_CONF"
	kg reload >/dev/null || { note "reload failed"; return 1; }
	start_broker "$BK2_PORT" || { note "no second broker on $BK2_PORT"; return 1; }
	v=$(kgc connect $(dev_args mon-far) | head -1)
	[ "$v" = "connack 0x00" ] || { note "mon-far with its broker up: want connack 0x00, got '$v'"; bad=1; }
	scrape "$WORK/scrape2.txt" || return 1
	v=$(awk '$1 == "ktlsgate_backend_connects_total{backend=\"local\",result=\"ok\"}" { print $2 }' "$WORK/scrape2.txt")
	[ "$v" = "$ok_before" ] || { note "after the reload: local ok = '$v', was $ok_before"; bad=1; }
	v=$(awk '$1 == "ktlsgate_backend_connects_total{backend=\"other\",result=\"failed\"}" { print $2 }' "$WORK/scrape2.txt")
	[ "$v" = "$fail_before" ] || { note "after the reload: other failed = '$v', was $fail_before"; bad=1; }
	v=$(awk '$1 == "ktlsgate_backend_connects_total{backend=\"other\",result=\"ok\"}" { print $2 }' "$WORK/scrape2.txt")
	[ "$v" = 1 ] || { note "after its broker came up: other ok = '$v', want 1"; bad=1; }
	v=$(awk '$1 == "ktlsgate_backend_up{backend=\"other\"}" { print $2 }' "$WORK/scrape2.txt")
	[ "$v" = 1 ] || { note "after its broker came up: other up = '$v', want 1"; bad=1; }
	v=$(awk '$1 == "ktlsgate_backend_connects_total{backend=\"aaa-first\",result=\"ok\"}" { print $2 }' "$WORK/scrape2.txt")
	[ "$v" = 0 ] || { note "the new backend: aaa-first ok = '$v', want 0"; bad=1; }
	grep -q '^ktlsgate_backend_up{backend="aaa-first"}' "$WORK/scrape2.txt" &&
		{ note "ktlsgate_backend_up for a backend never tried"; bad=1; }
	[ $bad = 0 ] || WHY="see above"
	return $bad
}

# The writer-stuck gauges live: another process holds the registry's write lock while a
# device connects, so its last-seen update waits in the writer (queue 1, no commit);
# once the lock goes, the queue is back to 0 and the last commit moved.
t_writer_held() {
	local lock="$WORK/lock.py" ready="$WORK/lock.ready" q lc0 lc got lock_pid
	cat >"$lock" <<'PYLOCK'
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=5)
db.execute("BEGIN IMMEDIATE")
open(sys.argv[2], "w").close()
time.sleep(float(sys.argv[3]))
db.execute("COMMIT")
PYLOCK
	lc0=$(metric_value ktlsgate_registry_writer_last_commit_timestamp_seconds)
	[ "$lc0" -gt 0 ] || { note "no last commit gauge: '$lc0'"; return 1; }
	# a commit in a later second than lc0 is then distinguishable
	while [ "$(date +%s)" -le "$lc0" ]; do sleep 0.2; done
	rm -f "$ready"
	$PY "$lock" "$GW_DIR/registry.db" "$ready" 5 &
	lock_pid=$!
	for _ in $(seq 1 50); do [ -e "$ready" ] && break; sleep 0.1; done
	[ -e "$ready" ] || { note "the lock holder did not get the lock"; kill "$lock_pid"; return 1; }
	got=$(kgc connect $(dev_args mon-ok) | head -1)
	[ "$got" = "connack 0x00" ] || { note "mon-ok while the registry is locked: $got"; kill "$lock_pid"; return 1; }
	sleep 0.5   # past the writer's 200 ms batch window: applying, held up
	q=$(metric_value ktlsgate_registry_writer_queue)
	lc=$(metric_value ktlsgate_registry_writer_last_commit_timestamp_seconds)
	echo "    registry locked: queue $q, last commit $lc (before $lc0)"
	kill -0 "$lock_pid" 2>/dev/null ||
		{ note "the 5 s lock was gone before the scrape (machine too slow?)"; return 1; }
	wait "$lock_pid" || { note "the lock holder failed"; return 1; }
	[ "$q" = 1 ] || { note "ktlsgate_registry_writer_queue $q while held up, want 1"; return 1; }
	[ "$lc" = "$lc0" ] || { note "last commit moved from $lc0 to $lc while the registry was locked"; return 1; }
	for _ in $(seq 1 100); do
		q=$(metric_value ktlsgate_registry_writer_queue)
		[ "$q" = 0 ] && break
		sleep 0.1
	done
	lc=$(metric_value ktlsgate_registry_writer_last_commit_timestamp_seconds)
	echo "    lock released: queue $q, last commit $lc"
	[ "$q" = 0 ] || { note "queue $q after the lock went, want 0"; return 1; }
	[ "$lc" -gt "$lc0" ] || { note "last commit $lc did not move past $lc0"; return 1; }
}

# --- (a) every exported metric is documented, every documented one exists ---------------

t_docs_match_metrics() {
	[ -s "$WORK/scrape.txt" ] || scrape "$WORK/scrape.txt" || return 1
	check docs "$KG_TOP" "$WORK/scrape.txt" "$DOC"
}

# --- (b) every rule and panel query names metrics that exist ----------------------------

t_queries_name_metrics() {
	[ -s "$WORK/scrape.txt" ] || scrape "$WORK/scrape.txt" || return 1
	check queries "$KG_TOP" "$WORK/scrape.txt" "$RULES" "$DASH"
}

# every alert has for:, a severity, a summary and a description, and is in the docs' table
t_rules_shape() {
	[ -s "$WORK/scrape.txt" ] || scrape "$WORK/scrape.txt" || return 1
	check shape "$KG_TOP" "$WORK/scrape.txt" "$RULES" "$DOC"
}

# --- (c) promtool ----------------------------------------------------------------------

t_promtool() {
	local out
	command -v promtool >/dev/null 2>&1 ||
		{ note "promtool missing: install Debian's prometheus package (scripts/deps.sh check)"; return 1; }
	out=$(cd "$(dirname "$RULES")" && timeout 60 promtool check rules "$(basename "$RULES")" 2>&1) ||
		{ note "promtool check rules: $out"; return 1; }
	printf '%s\n' "$out" | sed 's/^/    /'
	printf '%s\n' "$out" | grep -q 'SUCCESS: [1-9][0-9]* rules found' ||
		{ note "promtool check rules found no rules: $out"; return 1; }
	out=$(cd "$(dirname "$RULES_TEST")" && timeout 120 promtool test rules "$(basename "$RULES_TEST")" 2>&1) ||
		{ printf '%s\n' "$out" | sed 's/^/    /'; note "promtool test rules failed (see above)"; return 1; }
	printf '%s\n' "$out" | sed 's/^/    /'
	printf '%s\n' "$out" | grep -q 'SUCCESS' || { note "promtool test rules: no SUCCESS: $out"; return 1; }
}

# The checker must catch what it is for: a bogus name in a copy of the dashboard, a rule
# on a metric that does not exist, a metric missing from a copy of the docs.
t_checker_catches() {
	local d="$WORK/neg" bad=0 out
	mkdir -p "$d"
	[ -s "$WORK/scrape.txt" ] || scrape "$WORK/scrape.txt" || return 1
	$PY - "$DASH" "$d/dash.json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
p = next(p for p in d["panels"] if p.get("targets"))
p["targets"].append({"refId": "Z", "expr": 'sum(rate(ktlsgate_bogus_total{instance=~"$instance"}[$__rate_interval]))'})
json.dump(d, open(sys.argv[2], "w"))
EOF
	sed 's/ktlsgate_registry_write_drops_total\[10m\]/ktlsgate_registry_queue_stuck_total[10m]/' "$RULES" >"$d/rules.yml"
	grep -v 'ktlsgate_splice_pipes` |' "$DOC" >"$d/monitoring.md"
	grep -v 'process_open_fds' "$DOC" >"$d/monitoring-fds.md"
	out=$($PY "$MON_PY" queries "$KG_TOP" "$WORK/scrape.txt" "$RULES" "$d/dash.json" 2>&1) &&
		{ note "a dashboard with ktlsgate_bogus_total passed"; bad=1; }
	printf '%s\n' "$out" | grep -q 'no such metric: ktlsgate_bogus_total' || { note "bogus panel name not named: $out"; bad=1; }
	out=$($PY "$MON_PY" queries "$KG_TOP" "$WORK/scrape.txt" "$d/rules.yml" "$DASH" 2>&1) &&
		{ note "a rule on ktlsgate_registry_queue_stuck_total passed"; bad=1; }
	printf '%s\n' "$out" | grep -q 'rule KtlsgateRegistryWriterDropping: no such metric: ktlsgate_registry_queue_stuck_total' ||
		{ note "bogus rule name not named: $out"; bad=1; }
	out=$($PY "$MON_PY" docs "$KG_TOP" "$WORK/scrape.txt" "$d/monitoring.md" 2>&1) &&
		{ note "docs without ktlsgate_splice_pipes passed"; bad=1; }
	printf '%s\n' "$out" | grep -q 'exported but not in docs/monitoring.md: ktlsgate_splice_pipes' ||
		{ note "undocumented metric not named: $out"; bad=1; }
	# process_* families (not ktlsgate_) are checked too
	out=$($PY "$MON_PY" docs "$KG_TOP" "$WORK/scrape.txt" "$d/monitoring-fds.md" 2>&1) &&
		{ note "docs without process_open_fds passed"; bad=1; }
	printf '%s\n' "$out" | grep -q 'exported but not in docs/monitoring.md: process_open_fds' ||
		{ note "undocumented process_open_fds not named: $out"; bad=1; }
	[ $bad = 0 ] || WHY="see above"
	return $bad
}

# a daemon that died during a test fails it
after_each() {
	kill -0 "$GW_PID" 2>/dev/null || { echo "    ktlsgated died; log:"; tail -20 "$GW_LOG"; return 1; }
}

ALL_TESTS=(t_traffic t_new_series t_backends t_writer_held t_docs_match_metrics t_queries_name_metrics t_rules_shape t_promtool t_checker_catches)

if ! setup; then
	echo "FAIL setup"
	exit 1
fi
run_tests
