#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# test-operations.sh - docs/operations.md is true, against real processes:
#   * t_reasons_table: section 9's table has exactly one row per reason that
#     `ktlsgate reasons` lists, and no row for a word that is not a reason;
#   * t_cli_lines: every `ktlsgate ...` line of the doc's ```sh blocks names a real noun
#     and verb, and every option it uses is in that noun's `--help` for that verb;
#     the `block` commands, which need a loaded XDP gate, give the documented error
#     without one (exit 3, the message the doc quotes);
#   * t_seen_column: section 9's "what the device sees" for 17 reasons a test can
#     provoke here (nine handshake refusals: the TLS alert s_client reads is one the row
#     names; eight MQTT refusals: CONNACK at 3.1.1 and 5.0 equal the row's "A / 0xB"),
#     each confirmed by its audit line;
#   * t_flow: the blocks marked `<!-- ops-test: NAME -->` run as written (bash -e, in a
#     scratch directory holding the files they name) against a real ktlsgated and
#     mosquitto: a CA enrolled with proof of possession (openssl as written), devices
#     added and imported, they connect (CONNACK 0; the suspended one 5), one disabled
#     and its live session cut while another stays, the server certificate rotated
#     with a reload (new handshakes see the new certificate, a live session survives),
#     the CA disabled (its live session cut) and enabled again (CONNACK 0), a CRL
#     named in [crl] and reloaded (the listed device's session cut, its handshake
#     refused with certificate_revoked, another device's session kept).
# What the blocks cannot do here is stood in for, and only that: `ktlsgate` and
# `ktlsgated` are the build's binaries with `-c` the test's config, `/etc/ktlsgate` is
# the test's config directory, `install` drops `-g`/`-o` (no ktlsgate group here).
# lib.sh reads ALL_TESTS and KG_FAILED.
# shellcheck disable=SC2034,SC2046,SC2016
set -u
. "$(dirname "$0")/lib.sh"

DOC=${OPS_DOC:-$KG_TOP/docs/operations.md}

# --- the doc ------------------------------------------------------------------------

# doc_block NAME: the ```sh block right after "<!-- ops-test: NAME -->".
doc_block() {
	awk -v tag="<!-- ops-test: $1 -->" '
		$0 == tag { want = 1; next }
		want && /^```sh$/ { b = 1; want = 0; next }
		want && !/^[[:space:]]*$/ { exit }
		b && /^```$/ { exit }
		b { print }' "$DOC"
}

# The prelude every block runs after: the stand-ins named in the header.
write_prelude() {
	cat >"$WORK/prelude.sh" <<EOF
ktlsgate() { timeout 20 "$KGCLI" -c "$ETC/ktlsgate.conf" "\$@"; }
ktlsgated() { timeout 20 "$GATED" -c "$ETC/ktlsgate.conf" "\$@"; }
install() {
	local a=()
	while [ \$# -gt 0 ]; do
		case \$1 in -g|-o) shift 2 ;; *) a+=("\$1"); shift ;; esac
	done
	command install "\${a[@]}"
}
set -e -o pipefail
cd "$OPS"
EOF
}

# run_block NAME: run it as written; its output in BLOCK_OUT, echoed indented.
run_block() {
	local body rc
	body=$(doc_block "$1")
	[ -n "$body" ] || { note "no sh block tagged ops-test: $1 in $DOC"; return 1; }
	printf '%s\n' "$body" | sed "s#/etc/ktlsgate#$ETC#g" >"$WORK/block-$1.sh"
	BLOCK_OUT=$(cat "$WORK/prelude.sh" "$WORK/block-$1.sh" | timeout 60 bash 2>&1)
	rc=$?
	printf '%s\n' "$BLOCK_OUT" | sed "s/^/    [$1] /"
	[ $rc -eq 0 ] || { note "block $1 failed (exit $rc)"; return 1; }
}

# out_has LINE: the last block printed exactly this line.
out_has() {
	printf '%s\n' "$BLOCK_OUT" | grep -qxF -- "$1" || { note "block output lacks '$1'"; return 1; }
}

# --- setup --------------------------------------------------------------------------

setup() {
	kg_init operations
	ETC="$WORK/etc/ktlsgate"
	OPS="$WORK/ops"
	PKI="$WORK/pki"
	mkdir -p "$OPS" "$PKI/dev"
	BK_PORT=$(free_port)
	GW_PORT=$(free_port)
	GW_MPORT=$(free_port)
	write_gw_conf "$ETC" "$GW_PORT" "$GW_MPORT" "$BK_PORT" "$(free_port)"
	GW_CONF="$ETC/ktlsgate.conf"
	GW_LOG="$WORK/gw.log"
	: >"$GW_LOG"
	# the gateway's own PKI (what devices trust), and the factory CA of section 2
	pki root --cn "gw root" --out "$PKI/gwca" || return 1
	pki server --cn localhost --ca "$PKI/gwca" --out "$ETC/server" || return 1
	pki server --cn localhost --ca "$PKI/gwca" --out "$PKI/srv-new" || return 1
	pki root --cn "Factory CA" --out "$PKI/factory" || return 1
	for d in sensor-0001 sensor-0002 sensor-0003 sensor-0100; do
		pki device --cn "$d" --ca "$PKI/factory" --out "$PKI/dev/$d" || return 1
	done
	pki self-signed --cn legacy-7 --out "$PKI/dev/legacy-7" || return 1
	# the files the doc's blocks name, in the directory they run in
	cp "$PKI/factory/cert.pem" "$OPS/factory-ca.pem"
	cp "$PKI/factory/key.pem" "$OPS/factory-ca.key"
	cp "$PKI/dev/legacy-7/cert.pem" "$OPS/legacy-7.pem"
	cp "$PKI/srv-new/chain.pem" "$OPS/gw-chain-new.pem"
	cp "$PKI/srv-new/key.pem" "$OPS/gw-key-new.pem"
	pki crl --ca "$PKI/factory" --out "$OPS/factory-crl.pem" "$PKI/dev/sensor-0100/cert.pem" || return 1
	# the packaged config has an empty [crl] section, which the doc's CRL block fills
	printf '\n[crl]\n; factory = /etc/ktlsgate/crl/factory.pem\n' >>"$ETC/ktlsgate.conf"
	write_prelude
	start_broker "$BK_PORT" || return 1
	start_gateway || return 1
}

# dargs ID: kgclient options for a device of this test (the gateway's root trusted).
dargs() {
	echo "--port $GW_PORT --ca $PKI/gwca/cert.pem --cert $PKI/dev/$1/chain.pem --key $PKI/dev/$1/key.pem --id $1"
}

connack_of() {
	kgc connect $(dargs "$1") --level 4 | head -1
}

# hold ID SECONDS: a relayed session in the background, its output file in HOLD_OUT.
hold() {
	local f i
	f=$(mktemp "$WORK/hold.XXXXXX")
	kgc connect $(dargs "$1") --hold "$2" >"$f" 2>&1 &
	for ((i = 0; i < 200; i++)); do
		grep -q '^connack' "$f" && break
		sleep 0.05
	done
	HOLD_OUT=$f
	[ "$(head -1 "$f")" = "connack 0x00" ] || { note "$1: no session: $(cat "$f")"; return 1; }
}

# closed_within FILE SECONDS: the held session reported its EOF in time.
closed_within() {
	local i
	for ((i = 0; i < $2 * 20; i++)); do
		sed -n 2p "$1" | grep -q '^eof' && return 0
		sleep 0.05
	done
	return 1
}

# served_fp: SHA-256 fingerprint of the certificate the gateway serves a new handshake.
served_fp() {
	timeout 10 openssl s_client -connect "127.0.0.1:$GW_PORT" -CAfile "$PKI/gwca/cert.pem" \
		-cert "$PKI/dev/sensor-0100/cert.pem" -key "$PKI/dev/sensor-0100/key.pem" </dev/null 2>/dev/null |
		openssl x509 -noout -fingerprint -sha256 2>/dev/null | sed 's/.*=//'
}

fp_of() {
	openssl x509 -noout -fingerprint -sha256 -in "$1" | sed 's/.*=//'
}

# --- tests --------------------------------------------------------------------------

# Section 9: one row per reason, no row for a non-reason.
t_reasons_table() {
	local reasons rows missing extra dup
	reasons=$("$KGCLI" reasons | awk '{print $1}' | sort)
	[ "$(printf '%s\n' "$reasons" | grep -c .)" -ge 30 ] || { note "ktlsgate reasons listed too few: $reasons"; return 1; }
	rows=$(awk '/^## 9\./ { s = 1; next } /^## / { s = 0 } s && /^\| `[a-z_0-9]+` \|/' "$DOC" |
		sed -E 's/^\| `([a-z_0-9]+)` \|.*/\1/' | sort)
	[ -n "$rows" ] || { note "no table rows in section 9 of $DOC"; return 1; }
	dup=$(printf '%s\n' "$rows" | uniq -d | tr '\n' ' ')
	missing=$(comm -23 <(printf '%s\n' "$reasons") <(printf '%s\n' "$rows" | uniq) | tr '\n' ' ')
	extra=$(comm -13 <(printf '%s\n' "$reasons") <(printf '%s\n' "$rows" | uniq) | tr '\n' ' ')
	echo "    $(printf '%s\n' "$reasons" | wc -l) reasons, $(printf '%s\n' "$rows" | wc -l) rows"
	[ -z "$missing$extra$dup" ] ||
		{ note "reasons without a troubleshooting row: [$missing]; rows naming no reason: [$extra]; reasons with more than one row: [$dup]"; return 1; }
}

# Every ktlsgate line of the doc's sh blocks: noun, verb and options against --help.
t_cli_lines() {
	local res out rc want
	res=$($PY - "$DOC" "$KGCLI" <<'EOF'
import re, shlex, subprocess, sys
doc, cli = sys.argv[1], sys.argv[2]
lines, inblock = [], False
for n, l in enumerate(open(doc), 1):
    if l.rstrip() == "```sh":
        inblock = True; continue
    if l.rstrip() == "```":
        inblock = False; continue
    if not inblock:
        continue
    m = re.search(r"(?:^|\$\(|-- )\s*(ktlsgate\s.*)", l.strip())
    if m and not l.strip().startswith("#"):
        lines.append((n, m.group(1)))
helps, bad, checked = {}, [], 0
for n, l in lines:
    l = re.split(r"\s#|\s\||\)|\s>", l)[0]
    try:
        tok = shlex.split(l)
    except ValueError as e:
        bad.append(f"{n}: cannot split: {e}"); continue
    tok = tok[1:]
    while tok and tok[0] in ("-c", "-r", "--config", "--registry"):
        tok = tok[2:]
    if not tok:
        bad.append(f"{n}: no noun"); continue
    noun = tok[0]
    if noun not in helps:
        p = subprocess.run([cli, noun, "--help"], capture_output=True, text=True)
        helps[noun] = p.stdout if p.returncode == 0 else None
    h = helps[noun]
    if h is None:
        bad.append(f"{n}: unknown noun '{noun}'"); continue
    # the usage of each verb: its line and the indented continuation lines
    usage, cur = {}, None
    for hl in h.splitlines():
        m = re.match(r"ktlsgate (\S+)(?: (\S+))?", hl)
        if m and m.group(1) == noun:
            cur = m.group(2) if m.group(2) and not m.group(2).startswith(("[", "-")) else ""
            usage[cur] = usage.get(cur, "") + hl
        elif cur is not None and re.match(r"\s{6,}[\[(]", hl):
            usage[cur] += hl
        else:
            cur = None
    verb = tok[1] if "" not in usage and len(tok) > 1 else ""
    if verb not in usage:
        bad.append(f"{n}: '{noun} {verb}' is not in `ktlsgate {noun} --help`"); continue
    known = set(re.findall(r"--[a-z][a-z-]*", usage[verb]))
    for t in tok[1:]:
        if t.startswith("--") and t.split("=")[0] not in known:
            bad.append(f"{n}: {noun} {verb}: option {t} not in --help ({' '.join(sorted(known))})")
    checked += 1
print(f"checked {checked}")
for b in bad:
    print("BAD " + b)
EOF
)
	printf '%s\n' "$res" | sed 's/^/    /'
	printf '%s\n' "$res" | grep -q '^BAD' && { note "doc lines that do not parse (above)"; return 1; }
	[ "$(printf '%s\n' "$res" | sed -n 's/^checked //p')" -ge 20 ] 2>/dev/null ||
		{ note "too few ktlsgate lines found: $res"; return 1; }
	# block without a gate: the error the doc quotes, exit 3
	out=$(timeout 10 "$KGCLI" -c "$GW_CONF" block list 2>&1)
	rc=$?
	echo "    block list without a gate: exit $rc: $out"
	[ $rc -eq 3 ] || { note "block list without a gate: exit $rc, want 3"; return 1; }
	want=$(awk '/^## 7\./ { s = 1 } s' "$DOC" | tr '\n' ' ' | grep -o '`ktlsgate: block list: cannot reach the XDP gate: [^`]*`' | tr -d '`' | tr -s ' ')
	[ -n "$want" ] || { note "section 7 quotes no block error"; return 1; }
	[ "$out" = "$want" ] || { note "block error '$out', the doc says '$want'"; return 1; }
}

# doc_seen REASON: the "what the device sees" cell of the reason's row.
doc_seen() {
	awk -F' \\| ' -v r="| \`$1\`" '/^## 9\./ { s = 1; next } /^## / { s = 0 } s && $1 == r { print $2; exit }' "$DOC"
}

# seen_alert REASON DEVICE_DIR [s_client options]: the TLS alert a handshake gets is
# one the doc's row names, and the audit says REASON. TLS 1.2 unless the options say
# otherwise: there the alert ends the client's handshake; in TLS 1.3 it comes after the
# client's Finished, so s_client's stdin stays open a second to read it.
seen_alert() {
	local reason=$1 dir=$2 cell alert mark ver=-tls1_2 wait=0
	shift 2
	case " $* " in *" -tls1_"*) ver= ;; esac
	case " $* " in *" -tls1_3 "*) wait=1 ;; esac
	cell=$(doc_seen "$reason")
	mark=$(log_mark)
	alert=$(sleep $wait | timeout 10 openssl s_client -connect "127.0.0.1:$GW_PORT" -CAfile "$PKI/gwca/cert.pem" \
		${dir:+-cert "$dir/chain.pem" -key "$dir/key.pem"} $ver "$@" 2>&1 |
		grep -o 'alert [a-z ]*' | head -1 | sed 's/^alert //; s/ /_/g')
	echo "    $reason: alert '$alert'; the doc: $cell"
	[ -n "$alert" ] || { note "$reason: no TLS alert read"; return 1; }
	case $cell in *"TLS alert"*"\`$alert\`"*) ;; *)
		note "$reason: the device got alert $alert, the doc says: $cell"; return 1 ;;
	esac
	audit_has "$mark" "$reason" || { note "$reason: not audited as such: $AUDIT_OUT"; return 1; }
}

# seen_connack REASON ID [kgclient options]: CONNACK codes at MQTT 3.1.1 and 5.0 are
# the doc's "CONNACK A / 0xB", and the audit says REASON.
seen_connack() {
	local reason=$1 id=$2 cell want4 want5 got4 got5 mark
	shift 2
	cell=$(doc_seen "$reason")
	want4=$(printf '%s' "$cell" | sed -nE 's/^CONNACK ([0-9]+) \/ 0x([0-9A-Fa-f]+).*/\1/p')
	want5=$(printf '%s' "$cell" | sed -nE 's/^CONNACK ([0-9]+) \/ 0x([0-9A-Fa-f]+).*/\2/p' | tr 'A-F' 'a-f')
	[ -n "$want4" ] && [ -n "$want5" ] || { note "$reason: no 'CONNACK A / 0xB' in the doc's cell: $cell"; return 1; }
	mark=$(log_mark)
	got4=$(kgc connect $(dargs "$id") --level 4 "$@" | head -1)
	got5=$(kgc connect $(dargs "$id") --level 5 "$@" | head -1)
	echo "    $reason: $got4 (3.1.1), $got5 (5.0); the doc: $cell"
	[ "$got4" = "$(printf 'connack 0x%02x' "$want4")" ] || { note "$reason: 3.1.1 got '$got4', doc says $want4"; return 1; }
	[ "$got5" = "connack 0x$want5" ] || { note "$reason: 5.0 got '$got5', doc says 0x$want5"; return 1; }
	audit_has "$mark" "$reason" "$id" || { note "$reason: not audited as such: $AUDIT_OUT"; return 1; }
}

# Section 9's "what the device sees", for the reasons a test can provoke cheaply: its own
# CAs ("lab" proven, "pending" not), so it does not depend on t_flow.
t_seen_column() {
	local now bad=0 out code
	now=$(date +%s)
	pki root --cn "Lab CA" --out "$PKI/lab" || return 1
	pki root --cn "Pending CA" --out "$PKI/pending" || return 1
	pki root --cn "Stranger CA" --out "$PKI/stranger" || return 1
	out=$(timeout 20 "$KGCLI" -c "$GW_CONF" ca add "$PKI/lab/cert.pem" --name lab) || { note "ca add lab: $out"; return 1; }
	code=$(printf '%s\n' "$out" | awk '/^challenge:/{print $2}')
	pki verification-cert --ca "$PKI/lab" --challenge "$code" --out "$PKI/lab/pop.pem" || return 1
	timeout 20 "$KGCLI" -c "$GW_CONF" ca verify lab "$PKI/lab/pop.pem" >/dev/null || { note "ca verify lab failed"; return 1; }
	timeout 20 "$KGCLI" -c "$GW_CONF" ca add "$PKI/pending/cert.pem" --name pending >/dev/null || return 1
	pki device --cn lab-expired --ca "$PKI/lab" --out "$PKI/dev/lab-expired" --not-before $((now - 400 * 86400)) --days 1 || return 1
	pki device --cn lab-future --ca "$PKI/lab" --out "$PKI/dev/lab-future" --not-before $((now + 86400)) || return 1
	pki device --cn lab-srv --ca "$PKI/lab" --out "$PKI/dev/lab-srv" --eku server || return 1
	pki device --cn "lab bad id" --ca "$PKI/lab" --out "$PKI/dev/lab-badid" || return 1
	pki device --cn lab-pending --ca "$PKI/pending" --out "$PKI/dev/lab-pending" || return 1
	pki device --cn lab-stranger --ca "$PKI/stranger" --out "$PKI/dev/lab-stranger" || return 1
	pki self-signed --cn lab-self --out "$PKI/dev/lab-self" || return 1
	for d in lab-unknown lab-disabled lab-suspended lab-quarantined lab-decom lab-ok lab-down; do
		pki device --cn "$d" --ca "$PKI/lab" --out "$PKI/dev/$d" || return 1
	done
	printf '%s\n' id,status,backend lab-disabled,disabled, lab-suspended,suspended, \
		lab-quarantined,quarantined, lab-decom,decommissioned, lab-ok,, lab-down,,other >"$WORK/lab.csv"
	timeout 20 "$KGCLI" -c "$GW_CONF" device import "$WORK/lab.csv" >/dev/null || { note "lab import failed"; return 1; }

	seen_alert no_cert "" -tls1_3 || bad=1
	seen_alert no_cert "" -tls1_2 || bad=1
	seen_alert unknown_ca "$PKI/dev/lab-stranger" || bad=1
	seen_alert unproven_ca "$PKI/dev/lab-pending" || bad=1
	seen_alert cert_expired "$PKI/dev/lab-expired" || bad=1
	seen_alert cert_not_yet_valid "$PKI/dev/lab-future" || bad=1
	seen_alert bad_eku "$PKI/dev/lab-srv" || bad=1
	seen_alert thumbprint_mismatch "$PKI/dev/lab-self" || bad=1
	seen_alert bad_identity "$PKI/dev/lab-badid" || bad=1
	seen_alert tls_failed "" -tls1_2 -cipher AES128-SHA || bad=1
	seen_connack unknown_device lab-unknown || bad=1
	seen_connack disabled lab-disabled || bad=1
	seen_connack suspended lab-suspended || bad=1
	seen_connack quarantined lab-quarantined || bad=1
	seen_connack decommissioned lab-decom || bad=1
	seen_connack client_id_mismatch lab-ok --id someone-else || bad=1
	seen_connack username_mismatch lab-ok --username someone-else || bad=1
	seen_connack backend_down lab-down || bad=1
	[ $bad = 0 ]
}

# Sections 2-5 as written, end to end.
t_flow() {
	local s1 s2 got fp_old fp_new
	# 2: CA with proof of possession
	run_block enrol-ca || return 1
	out_has "ca factory added (unverified)" || return 1
	out_has "ca factory verified" || return 1
	printf '%s\n' "$BLOCK_OUT" | grep -qE '^factory +yes +enabled +local ' ||
		{ note "ca list does not show factory verified, enabled, backend local"; return 1; }
	# 3: one at a time, and in bulk
	run_block device-add || return 1
	out_has "device sensor-0100 added (attestation ca)" || return 1
	out_has "device legacy-7 added (attestation thumbprint)" || return 1
	out_has "thumbprint: $(fingerprint "$PKI/dev/legacy-7/cert.pem")" || return 1
	run_block import || return 1
	out_has "imported 3 devices (daemon notified)" || return 1
	printf '%s\n' "$BLOCK_OUT" | grep -qE '^sensor-0003 +suspended +ca ' ||
		{ note "device list does not show sensor-0003 suspended"; return 1; }
	# they connect: attested, pinned; the suspended one is refused
	got=$(connack_of sensor-0100)
	[ "$got" = "connack 0x00" ] || { note "sensor-0100: '$got', want connack 0x00"; return 1; }
	got=$(kgc connect --port "$GW_PORT" --ca "$PKI/gwca/cert.pem" --cert "$PKI/dev/legacy-7/cert.pem" \
		--key "$PKI/dev/legacy-7/key.pem" --id legacy-7 --level 4 | head -1)
	[ "$got" = "connack 0x00" ] || { note "legacy-7 (pinned): '$got', want connack 0x00"; return 1; }
	got=$(connack_of sensor-0003)
	[ "$got" = "connack 0x05" ] || { note "sensor-0003 (suspended): '$got', want connack 0x05"; return 1; }
	# 4: a device disabled: its live session is cut, another device's stays
	hold sensor-0001 40 || return 1
	s1=$HOLD_OUT
	hold sensor-0002 40 || return 1
	s2=$HOLD_OUT
	run_block disable-device || return 1
	printf '%s\n' "$BLOCK_OUT" | grep -qE '^[0-9]+ +sensor-0001 +127\.0\.0\.1:[0-9]+ +relaying ' ||
		{ note "session list does not show sensor-0001 relaying"; return 1; }
	out_has "device sensor-0001: status disabled (closed 1 live sessions)" || return 1
	closed_within "$s1" 5 || { note "sensor-0001's live session not closed: $(cat "$s1")"; return 1; }
	got=$(connack_of sensor-0001)
	[ "$got" = "connack 0x05" ] || { note "sensor-0001 after disable: '$got', want connack 0x05"; return 1; }
	[ "$(wc -l <"$s2")" = 1 ] || { note "sensor-0002 was cut too: $(cat "$s2")"; return 1; }
	# 5: rotation with a reload; sensor-0002's session survives it
	fp_old=$(served_fp)
	[ "$fp_old" = "$(fp_of "$ETC/server/cert.pem")" ] ||
		{ note "served certificate before rotation '$fp_old' is not the installed one"; return 1; }
	run_block rotate || return 1
	out_has "reloaded" || return 1
	fp_new=$(served_fp)
	echo "    served certificate: $fp_old -> $fp_new"
	[ "$fp_new" = "$(fp_of "$PKI/srv-new/cert.pem")" ] ||
		{ note "after rotation the gateway serves '$fp_new', want the new certificate"; return 1; }
	sleep 1
	[ "$(wc -l <"$s2")" = 1 ] || { note "sensor-0002's session did not survive the reload: $(cat "$s2")"; return 1; }
	# 4 again: the CA disabled cuts sensor-0002 (ca_disabled), enabled lets it back
	run_block disable-ca || return 1
	out_has "ca factory: status disabled (closed 1 live sessions)" || return 1
	closed_within "$s2" 5 || { note "sensor-0002's live session not closed by the CA disable: $(cat "$s2")"; return 1; }
	got=$(connack_of sensor-0002)
	[ "$got" = "connack 0x00" ] || { note "sensor-0002 after the CA was enabled again: '$got', want connack 0x00"; return 1; }
	grep -q '"device":"sensor-0002".*"reason":"ca_disabled"' "$GW_LOG" ||
		{ note "no ca_disabled audit line for sensor-0002"; return 1; }
	grep -q '"device":"sensor-0001".*"reason":"revoked"' "$GW_LOG" ||
		{ note "no revoked audit line for sensor-0001"; return 1; }
	# 4, CRL: sensor-0100 listed; its live session is cut, sensor-0002's stays, and
	# its next handshake is refused with certificate_revoked
	hold sensor-0100 40 || return 1
	s1=$HOLD_OUT
	hold sensor-0002 40 || return 1
	s2=$HOLD_OUT
	run_block crl || return 1
	out_has "reloaded" || return 1
	grep -qx "factory = $ETC/crl/factory.pem" "$GW_CONF" || { note "the CRL block did not name the CRL in [crl]"; return 1; }
	closed_within "$s1" 5 || { note "sensor-0100's live session not closed by the CRL: $(cat "$s1")"; return 1; }
	sleep 0.5
	[ "$(wc -l <"$s2")" = 1 ] || { note "sensor-0002 was cut by the CRL too: $(cat "$s2")"; return 1; }
	grep -q '"device":"sensor-0100".*"reason":"cert_revoked"' "$GW_LOG" ||
		{ note "no cert_revoked audit line for sensor-0100"; return 1; }
	got=$(kgc connect $(dargs sensor-0100) --peek 500 | head -1)
	echo "    sensor-0100 after the CRL: $got"
	case $got in
	tls_error:*revoked*) ;;
	*) note "sensor-0100 after the CRL: '$got', want a certificate_revoked alert"; return 1 ;;
	esac
	# the block is idempotent: run again, the CRL is named once
	run_block crl || return 1
	[ "$(grep -c '^factory = ' "$GW_CONF")" = 1 ] || { note "a second run named the CRL twice"; return 1; }
}

ALL_TESTS=(t_reasons_table t_cli_lines t_seen_column t_flow)

if ! setup; then
	echo "FAIL setup: PKI / broker / gateway (log: ${GW_LOG:-none})"
	[ -n "${GW_LOG:-}" ] && tail -20 "$GW_LOG"
	KG_FAILED=1
	exit 1
fi
run_tests
