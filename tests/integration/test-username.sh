#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# test-username.sh - the MQTT user name of a certificate-authenticated device
# (username_check, docs/security.md "MQTT credentials of X.509 devices"), end to end:
# a real mosquitto whose ACL file grants topics by user name (%u) and client id (%c),
# a recording TCP proxy between the gate and the broker (kgclient.py tap) to see the
# exact bytes the gate forwards, and devices "usr-a" and "usr-b".
#   strict (the default): usr-a naming usr-b is refused (CONNACK 5 / 0x87 / 5 for
#     3.1.1 / 5.0 / 3.1, audit username_mismatch); its own name, an empty one or none
#     pass, and the CONNECT and the PUBLISHes pipelined behind it arrive byte for byte;
#   rewrite: usr-a naming usr-b with a password arrives as user usr-a without password,
#     the will and v5 properties kept, the pipelined PUBLISHes byte-exact behind the
#     shorter or longer CONNECT; the ACL then gives it devices/usr-a/# and not
#     devices/usr-b/#, and its will is published under its own name;
#   pass: the CONNECT is forwarded unchanged and usr-a reads usr-b's topics (the hole).
# Every case runs once with `relay = userspace` (the record relay) and once with
# `relay = openssl`, and checks the session used that data path.
#   per CA (`ca set CA --username-check`, schema v5): the CA's rule overrides the
#     config's for its devices and for those of the intermediates under it, and
#     `default` gives the config's back, each through `ca-changed` alone (no restart).
# dev_args prints options meant to split into words; lib.sh reads ALL_TESTS and KG_FAILED.
# shellcheck disable=SC2046,SC2034
set -u
. "$(dirname "$0")/lib.sh"

A=usr-a
B=usr-b

setup() {
	kg_init username
	unset KG_RELAY   # each test pins its relay itself
	BK_PORT=$(free_port)
	TAP_PORT=$(free_port)
	GW_PORT=$(free_port)
	GW_MPORT=$(free_port)
	local gw="$WORK/gw"
	# the gate's backend "local" is the tap, which forwards to mosquitto
	write_gw_conf "$gw" "$GW_PORT" "$GW_MPORT" "$TAP_PORT" "$(free_port)"
	GW_CONF="$gw/ktlsgate.conf"
	GW_LOG="$gw/gw.log"
	: >"$GW_LOG"
	cp "$GW_CONF" "$gw/base.conf"
	pki_setup "$WORK/pki" || return 1
	device_cert "$A" "$PKI/factory" || return 1
	device_cert "$B" "$PKI/factory" || return 1
	kg device add "$A" >/dev/null || return 1
	kg device add "$B" >/dev/null || return 1
	start_acl_broker || return 1
	mkdir -p "$WORK/tap"
	$PY "$KGC" tap --port "$TAP_PORT" --to "$BK_PORT" --dir "$WORK/tap" >"$WORK/tap.log" 2>&1 &
	KG_PIDS+=("$!")
	wait_port "$TAP_PORT" 10 "$!" || { echo "tap did not start: $(cat "$WORK/tap.log")" >&2; return 1; }
	CUR=""
}

# mosquitto with an ACL by user name and client id; "watcher" reads and writes all.
start_acl_broker() {
	local conf="$WORK/mosquitto.conf"
	cat >"$WORK/acl" <<EOF
# what a client may touch, by MQTT user name (%u) and client id (%c)
user watcher
topic readwrite #
pattern readwrite devices/%u/#
pattern readwrite c/%c/#
EOF
	cat >"$conf" <<EOF
user root
per_listener_settings false
allow_anonymous true
acl_file $WORK/acl
persistence false
log_dest stderr
log_type error
log_type warning
listener $BK_PORT 127.0.0.1
EOF
	mosquitto -c "$conf" >"$WORK/mosquitto.log" 2>&1 &
	BROKER_PID=$!
	KG_PIDS+=("$BROKER_PID")
	wait_port "$BK_PORT" 10 "$BROKER_PID" || { echo "mosquitto: $(cat "$WORK/mosquitto.log")" >&2; return 1; }
}

# use_gw RELAY MODE: (re)start the gate with relay = RELAY and username_check = MODE
# ("default": the key left out, which must mean strict).
use_gw() {
	[ "$CUR" = "$1/$2" ] && return 0
	stop_gateway
	if [ "$2" = default ]; then
		sed "s/^\[daemon\]\$/[daemon]\nrelay = $1/" "$WORK/gw/base.conf" >"$GW_CONF"
	else
		sed "s/^\[daemon\]\$/[daemon]\nrelay = $1\nusername_check = $2/" "$WORK/gw/base.conf" >"$GW_CONF"
	fi
	start_gateway || { note "gateway did not start with relay=$1 username_check=$2"; return 1; }
	CUR="$1/$2"
}

# the data path the daemon reports for a relay setting
mode_of() {
	case $1 in userspace) echo userspace ;; openssl) echo userspace_ssl ;; esac
}

started() {
	metric_value ktlsgate_sessions_started_total "mode=\"$(mode_of "$1")\""
}

# watch_start FILTER COUNT SECONDS: a subscriber at the broker as "watcher"; the file.
watch_start() {
	local f
	f=$(mktemp "$WORK/watch.XXXXXX")
	timeout "$(($3 + 2))" mosquitto_sub -h 127.0.0.1 -p "$BK_PORT" -u watcher -i "watch-$$-$RANDOM" \
		-t "$1" -v -C "$2" -W "$3" >"$f" 2>/dev/null &
	sleep 0.3
	echo "$f"
}

# the lines a watcher prints for `kgclient --pipeline-n N --topic T`
pipeline_lines() {
	$PY -c 'import sys; sys.path.insert(0, sys.argv[1]); import kgclient as k
for i in range(1, int(sys.argv[3]) + 1):
    print("%s/%d %s" % (sys.argv[2], i, k.pipeline_payload(i).decode()))' "$KG_TOP/tests/lib" "$2" "$1"
}

tap_count() {
	find "$WORK/tap" -name '*.up' | wc -l
}

# jf JSON KEY: one field of a JSON line, as python prints it (None, True, 5, text)
jf() {
	$PY -c 'import json, sys; print(json.loads(sys.argv[1]).get(sys.argv[2]))' "$1" "$2"
}

# --- cases (RELAY set by the wrapper) ---------------------------------------------------

# strict: another device's name is refused with the exact code for each level
case_strict_refuses() {
	local lvl want got mark bad=0 extra
	use_gw "$RELAY" default || return 1
	for lvl in 4:0x05 5:0x87 3:0x05; do
		want=${lvl#*:}
		lvl=${lvl%%:*}
		for extra in "" "--password secret"; do
			mark=$(log_mark)
			# shellcheck disable=SC2086
			got=$(kgc connect $(dev_args "$A") --level "$lvl" --username "$B" $extra | head -1)
			[ "$got" = "connack $want" ] || { note "level $lvl user $B $extra: want connack $want, got '$got'"; bad=1; }
			audit_has "$mark" username_mismatch "$A" deny ||
				{ note "level $lvl: no deny/username_mismatch audit: $AUDIT_OUT"; bad=1; }
		done
	done
	# a prefix of the id, the id with something after it, another case: all other names
	for got in usr- usr-a2 USR-A; do
		got=$(kgc connect $(dev_args "$A") --username "$got" | head -1)
		[ "$got" = "connack 0x05" ] || { note "near-miss user name accepted: '$got'"; bad=1; }
	done
	[ $bad = 0 ] || WHY="see above"
	return $bad
}

# strict: own name, empty or none pass; what the device sent arrives byte for byte
case_strict_accepts() {
	local user lvl got n f bad=0 json
	use_gw "$RELAY" default || return 1
	for lvl in 4 5; do
		for user in "$A" "" none; do
			local uarg=(--username "$user")
			[ "$user" = none ] && uarg=()
			f=$(watch_start "devices/$A/p/#" 8 10)
			n=$(tap_count)
			got=$(kgc connect $(dev_args "$A") --level "$lvl" "${uarg[@]}" --topic "devices/$A/p" \
				--pipeline-n 8 --sent "$WORK/sent" --sent-connect "$WORK/sentc" | head -2 | tr '\n' ' ')
			[ "$got" = "connack 0x00 pubacks 8 " ] || { note "level $lvl user '$user': '$got'"; bad=1; continue; }
			[ "$(tap_count)" = $((n + 1)) ] || { note "no new connection at the broker"; bad=1; continue; }
			json=$(kgc tapcheck --tap "$WORK/tap/$((n + 1)).up" --sent "$WORK/sent" --connect "$WORK/sentc")
			[ "$(jf "$json" connect_exact)" = True ] || { note "level $lvl user '$user': CONNECT changed: $json"; bad=1; }
			[ "$(jf "$json" rest_exact)" = True ] || { note "level $lvl user '$user': pipelined bytes changed: $json"; bad=1; }
			if [ "$user" = "$A" ]; then
				# %u = usr-a: the broker delivers the pipelined PUBLISHes
				pipeline_lines 8 "devices/$A/p" >"$WORK/want"
				sub_wait "$f" "$(tail -1 "$WORK/want")" 5 || { note "watcher missed the last PUBLISH"; bad=1; continue; }
				cmp -s "$WORK/want" "$f" || { note "level $lvl: the broker got other PUBLISHes than sent"; bad=1; }
			fi
		done
	done
	[ $bad = 0 ] || WHY="see above"
	return $bad
}

# rewrite: usr-a naming usr-b with a password reaches the broker as usr-a, no password,
# will and properties kept, pipelined PUBLISHes exact; the ACL then sees usr-a
case_rewrite() {
	local lvl got n f bad=0 json s0 mark props will_props want_flags
	use_gw "$RELAY" rewrite || return 1
	s0=$(started "$RELAY")
	for lvl in 4 5 3; do
		props="" will_props=""
		# session expiry 10, receive maximum 20, a user property; will delay 1
		[ "$lvl" = 5 ] && props="110000000a21001426000161000162" will_props="1800000001"
		# 0xce on the wire: user, password, will QoS 1, will, clean; 0x8e forwarded
		want_flags=142
		f=$(watch_start "devices/$A/#" 9 15)
		n=$(tap_count)
		mark=$(log_mark)
		got=$(kgc connect $(dev_args "$A") --level "$lvl" --username "$B" --password "secret-of-$B" \
			--will-topic "devices/$A/will" --will-msg "gone-$lvl" --v5-props "$props" \
			--v5-will-props "$will_props" --topic "devices/$A/p" --pipeline-n 8 \
			--sent "$WORK/sent" --drop | head -3 | tr '\n' ' ')
		[ "$got" = "connack 0x00 pubacks 8 dropped " ] || { note "level $lvl: '$got'"; bad=1; continue; }
		audit_has "$mark" ok "$A" allow || { note "level $lvl: no allow audit: $AUDIT_OUT"; bad=1; }
		[ "$(jf "$AUDIT_OUT" detail)" = "username set to the device id, password removed" ] ||
			{ note "level $lvl: allow audit does not say the user name was replaced: $AUDIT_OUT"; bad=1; }
		[ "$(tap_count)" = $((n + 1)) ] || { note "no new connection at the broker"; bad=1; continue; }
		json=$(kgc tapcheck --tap "$WORK/tap/$((n + 1)).up" --sent "$WORK/sent")
		[ "$(jf "$json" username)" = "$A" ] || { note "level $lvl: broker got user name: $json"; bad=1; }
		[ "$(jf "$json" password)" = None ] || { note "level $lvl: broker got a password: $json"; bad=1; }
		[ "$(jf "$json" flags)" = "$want_flags" ] || { note "level $lvl: flags: $json"; bad=1; }
		[ "$(jf "$json" level)" = "$lvl" ] || { note "level $lvl: level: $json"; bad=1; }
		[ "$(jf "$json" client_id)" = "$A" ] || { note "level $lvl: client id: $json"; bad=1; }
		[ "$(jf "$json" keepalive)" = 60 ] || { note "level $lvl: keepalive: $json"; bad=1; }
		[ "$(jf "$json" will_topic)" = "devices/$A/will" ] || { note "level $lvl: will topic: $json"; bad=1; }
		[ "$(jf "$json" will_msg)" = "gone-$lvl" ] || { note "level $lvl: will message: $json"; bad=1; }
		if [ "$lvl" = 5 ]; then
			[ "$(jf "$json" props)" = "$props" ] || { note "v5 properties changed: $json"; bad=1; }
			[ "$(jf "$json" will_props)" = "$will_props" ] || { note "v5 will properties changed: $json"; bad=1; }
		fi
		[ "$(jf "$json" rest_exact)" = True ] || { note "level $lvl: pipelined bytes changed: $json"; bad=1; }
		[ "$(jf "$json" sent_len)" -gt 32000 ] || { note "level $lvl: pipelined too little: $json"; bad=1; }
		# %u = usr-a: the PUBLISHes and then the will (v5: 1 s will delay) are delivered
		{ pipeline_lines 8 "devices/$A/p"; echo "devices/$A/will gone-$lvl"; } >"$WORK/want"
		sub_wait "$f" "devices/$A/will gone-$lvl" 8 || { note "level $lvl: watcher missed the will: $(cut -c1-60 "$f")"; bad=1; continue; }
		cmp -s "$WORK/want" "$f" || { note "level $lvl: the broker delivered other messages than sent"; bad=1; }
	done
	[ "$(started "$RELAY")" -ge $((s0 + 3)) ] || { note "sessions did not run in $(mode_of "$RELAY") mode"; bad=1; }
	[ $bad = 0 ] || WHY="see above"
	return $bad
}

# rewrite, through the ACL: usr-a naming usr-b reads devices/usr-a/# and c/usr-a/#
# (%c), not devices/usr-b/#
case_rewrite_acl() {
	local got lvl bad=0 deny
	use_gw "$RELAY" rewrite || return 1
	for lvl in 4 5; do
		deny=0x80
		[ "$lvl" = 5 ] && deny=0x87
		got=$(kgc connect $(dev_args "$A") --level "$lvl" --username "$B" --password pw \
			--subscribe "devices/$A/#" \
			--publish-cmd "mosquitto_pub -h 127.0.0.1 -p $BK_PORT -u watcher -t devices/$A/in -m mine-$lvl -q 1" \
			--listen 2 | tr '\n' ' ')
		[ "$got" = "connack 0x00 suback 0x01 publish_cmd rc=0 message devices/$A/in mine-$lvl " ] ||
			{ note "level $lvl, own topic: '$got'"; bad=1; }
		got=$(kgc connect $(dev_args "$A") --level "$lvl" --username "$B" --password pw \
			--subscribe "c/$A/#" \
			--publish-cmd "mosquitto_pub -h 127.0.0.1 -p $BK_PORT -u watcher -t c/$A/in -m cid-$lvl -q 1" \
			--listen 2 | tr '\n' ' ')
		[ "$got" = "connack 0x00 suback 0x01 publish_cmd rc=0 message c/$A/in cid-$lvl " ] ||
			{ note "level $lvl, client id topic: '$got'"; bad=1; }
		got=$(kgc connect $(dev_args "$A") --level "$lvl" --username "$B" --password pw \
			--subscribe "devices/$B/#" \
			--publish-cmd "mosquitto_pub -h 127.0.0.1 -p $BK_PORT -u watcher -t devices/$B/in -m leak-$lvl -q 1" \
			--listen 2 | tr '\n' ' ')
		# mosquitto 2.0.11 grants the subscription and filters at delivery; newer
		# versions refuse it in the SUBACK. Either way nothing of usr-b's arrives.
		[ "$got" = "connack 0x00 suback 0x01 publish_cmd rc=0 " ] ||
			[ "$got" = "connack 0x00 suback $deny publish_cmd rc=0 " ] ||
			{ note "level $lvl, $B's topic: '$got'"; bad=1; }
	done
	[ $bad = 0 ] || WHY="see above"
	return $bad
}

# pass: the old behaviour, forwarded unchanged; usr-a naming usr-b reads usr-b's topics
case_pass() {
	local got n json bad=0
	use_gw "$RELAY" pass || return 1
	n=$(tap_count)
	got=$(kgc connect $(dev_args "$A") --username "$B" --password pw --subscribe "devices/$B/#" \
		--sent-connect "$WORK/sentc" \
		--publish-cmd "mosquitto_pub -h 127.0.0.1 -p $BK_PORT -u watcher -t devices/$B/in -m leak -q 1" \
		--listen 2 | tr '\n' ' ')
	[ "$got" = "connack 0x00 suback 0x01 publish_cmd rc=0 message devices/$B/in leak " ] ||
		{ note "pass mode, $B's topic: '$got'"; bad=1; }
	[ "$(tap_count)" = $((n + 1)) ] || { note "no new connection at the broker"; return 1; }
	json=$(kgc tapcheck --tap "$WORK/tap/$((n + 1)).up" --connect "$WORK/sentc")
	if [ "$(jf "$json" connect_exact)" != True ] || [ "$(jf "$json" username)" != "$B" ] ||
		[ "$(jf "$json" password)" != pw ]; then
		note "pass mode changed the CONNECT: $json"
		bad=1
	fi
	[ $bad = 0 ] || WHY="see above"
	return $bad
}

# A daemon that died (an ASan abort under GATED=build/asan/ktlsgated) is blamed on the
# test that was running; the next test starts a new one.
after_each() {
	[ -z "${GW_PID:-}" ] || kill -0 "$GW_PID" 2>/dev/null && return 0
	note "ktlsgated died: $(tail -5 "$GW_LOG")"
	GW_PID=""
	CUR=""
	return 1
}

# ca_uc CA MODE: `ktlsgate ca set CA --username-check MODE`, the running daemon told.
ca_uc() {
	local out
	out=$(kg ca set "$1" --username-check "$2" 2>&1) || { note "ca set $1 --username-check $2: $out"; return 1; }
	[[ $out =~ ^"ca $1: username-check $2 (closed "[0-9]+" live sessions)"$ ]] ||
		{ note "ca set $1 said: $out"; return 1; }
}

# refused_as_other LEVEL WANT: usr-a naming usr-b gets CONNACK WANT, audit username_mismatch
refused_as_other() {
	local got mark
	mark=$(log_mark)
	got=$(kgc connect $(dev_args "$A") --level "$1" --username "$B" --password pw | head -1)
	[ "$got" = "connack $2" ] || { note "level $1 user $B: want connack $2, got '$got'"; return 1; }
	audit_has "$mark" username_mismatch "$A" deny ||
		{ note "level $1: no deny/username_mismatch audit: $AUDIT_OUT"; return 1; }
}

# passed_as_other: usr-a naming usr-b is accepted and the broker sees user usr-b
passed_as_other() {
	local got n json
	n=$(tap_count)
	got=$(kgc connect $(dev_args "$A") --username "$B" --password pw | head -1)
	[ "$got" = "connack 0x00" ] || { note "user $B under pass: want connack 0x00, got '$got'"; return 1; }
	[ "$(tap_count)" = $((n + 1)) ] || { note "no new connection at the broker"; return 1; }
	json=$(kgc tapcheck --tap "$WORK/tap/$((n + 1)).up")
	[ "$(jf "$json" username)" = "$B" ] || { note "pass: broker got user name: $json"; return 1; }
}

# rewritten_as_own: usr-a naming usr-b is accepted as usr-a, without its password
rewritten_as_own() {
	local got n json mark
	n=$(tap_count)
	mark=$(log_mark)
	got=$(kgc connect $(dev_args "$A") --username "$B" --password pw | head -1)
	[ "$got" = "connack 0x00" ] || { note "user $B under rewrite: want connack 0x00, got '$got'"; return 1; }
	audit_has "$mark" ok "$A" allow || { note "no allow audit: $AUDIT_OUT"; return 1; }
	[ "$(jf "$AUDIT_OUT" detail)" = "username set to the device id, password removed" ] ||
		{ note "allow audit does not say the user name was replaced: $AUDIT_OUT"; return 1; }
	[ "$(tap_count)" = $((n + 1)) ] || { note "no new connection at the broker"; return 1; }
	json=$(kgc tapcheck --tap "$WORK/tap/$((n + 1)).up")
	[ "$(jf "$json" username)" = "$A" ] || { note "rewrite: broker got user name: $json"; return 1; }
	[ "$(jf "$json" password)" = None ] || { note "rewrite: broker got a password: $json"; return 1; }
}

# Every override back to the config's, whatever a test left (the next one starts clean).
ca_uc_reset() {
	kg ca set factory --username-check default >/dev/null 2>&1
	kg ca set root --username-check default >/dev/null 2>&1
}

# --- tests ------------------------------------------------------------------------

# global pass, `ca set factory --username-check strict`: usr-a naming usr-b is refused
# (0x05 / 0x87 / 0x05, username_mismatch); `default` puts pass back; same daemon.
t_ca_override_strict() {
	local pid got bad=0
	use_gw userspace pass || return 1
	pid=$GW_PID
	passed_as_other || return 1
	ca_uc factory strict || return 1
	refused_as_other 4 0x05 || bad=1
	refused_as_other 5 0x87 || bad=1
	refused_as_other 3 0x05 || bad=1
	# the device's own name still passes
	got=$(kgc connect $(dev_args "$A") --username "$A" | head -1)
	[ "$got" = "connack 0x00" ] || { note "own user name under strict: '$got'"; bad=1; }
	ca_uc factory default || { ca_uc_reset; return 1; }
	passed_as_other || bad=1
	[ "$GW_PID" = "$pid" ] && kill -0 "$pid" 2>/dev/null || { note "the daemon was restarted"; bad=1; }
	ca_uc_reset
	[ $bad = 0 ] || WHY="see above"
	return $bad
}

# global strict, `ca set factory --username-check rewrite`: usr-a naming usr-b reaches
# the broker as usr-a without password; `default`: refused again.
t_ca_override_rewrite() {
	local bad=0
	use_gw userspace strict || return 1
	refused_as_other 4 0x05 || return 1
	ca_uc factory rewrite || return 1
	rewritten_as_own || bad=1
	ca_uc factory default || { ca_uc_reset; return 1; }
	refused_as_other 4 0x05 || bad=1
	ca_uc_reset
	[ $bad = 0 ] || WHY="see above"
	return $bad
}

# The root's rule reaches the devices of the intermediate "factory" registered under it
# (factory has none of its own); factory's own rule wins over the root's.
t_ca_override_inherited() {
	local bad=0
	use_gw userspace pass || return 1
	ca_uc root strict || return 1
	refused_as_other 4 0x05 || bad=1
	ca_uc factory pass || { ca_uc_reset; return 1; }
	passed_as_other || bad=1
	ca_uc factory default || { ca_uc_reset; return 1; }
	refused_as_other 5 0x87 || bad=1
	ca_uc root default || { ca_uc_reset; return 1; }
	passed_as_other || bad=1
	ca_uc_reset
	[ $bad = 0 ] || WHY="see above"
	return $bad
}

# `ktlsgated -t` names the user name rule, and says when it is the unsafe one
t_config_check() {
	local out mode
	for mode in strict rewrite pass; do
		sed "s/^\[daemon\]\$/[daemon]\nusername_check = $mode/" "$WORK/gw/base.conf" >"$WORK/gw/t.conf"
		out=$("$GATED" -t -c "$WORK/gw/t.conf" 2>&1) || { note "-t failed for $mode: $out"; return 1; }
		printf '%s\n' "$out" | grep -q "username_check = $mode" || { note "-t does not say $mode: $out"; return 1; }
	done
	printf '%s\n' "$out" | grep -q "unsafe" || { note "-t does not warn about pass: $out"; return 1; }
	sed "s/^\[daemon\]\$/[daemon]\nusername_check = loose/" "$WORK/gw/base.conf" >"$WORK/gw/t.conf"
	out=$("$GATED" -t -c "$WORK/gw/t.conf" 2>&1) && { note "-t accepted username_check = loose"; return 1; }
	printf '%s\n' "$out" | grep -q "'username_check': 'loose' is not one of strict, rewrite, pass" ||
		{ note "bad value message: $out"; return 1; }
}

# `ktlsgated -t` names each CA whose devices follow another rule than the config's, its
# own or inherited, and warns on pass
t_ca_override_config_check() {
	local out bad=0
	use_gw userspace pass || return 1
	ca_uc root pass || return 1
	ca_uc factory rewrite || { ca_uc_reset; return 1; }
	out=$("$GATED" -t -c "$WORK/gw/base.conf" 2>&1) || { note "-t failed: $out"; ca_uc_reset; return 1; }
	printf '%s\n' "$out" | grep -qx "ktlsgated: CA factory: username_check = rewrite (its own)" ||
		{ note "-t does not name factory's rule: $out"; bad=1; }
	printf '%s\n' "$out" | grep -q "^ktlsgated: CA root: username_check = pass (its own) (unsafe" ||
		{ note "-t does not warn about root's pass: $out"; bad=1; }
	ca_uc factory default || bad=1
	out=$("$GATED" -t -c "$WORK/gw/base.conf" 2>&1) || { note "-t failed: $out"; ca_uc_reset; return 1; }
	printf '%s\n' "$out" | grep -q "^ktlsgated: CA factory: username_check = pass (from a CA above it) (unsafe" ||
		{ note "-t does not name factory's inherited rule: $out"; bad=1; }
	ca_uc_reset
	out=$("$GATED" -t -c "$WORK/gw/base.conf" 2>&1) || { note "-t failed: $out"; return 1; }
	printf '%s\n' "$out" | grep -q "^ktlsgated: CA " && { note "-t names a CA without a rule: $out"; bad=1; }
	[ $bad = 0 ] || WHY="see above"
	return $bad
}

ALL_TESTS=(t_config_check t_ca_override_strict t_ca_override_rewrite t_ca_override_inherited
	t_ca_override_config_check)
for RELAY in userspace openssl; do
	for c in strict_refuses strict_accepts rewrite rewrite_acl pass; do
		eval "t_${c}_$RELAY() { RELAY=$RELAY; case_$c; }"
		ALL_TESTS+=("t_${c}_$RELAY")
	done
done

setup || { echo "FAIL setup"; exit 1; }
run_tests
