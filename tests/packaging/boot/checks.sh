#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# checks.sh - the boot test's guest side (kg-boot-checks.service, systemd as PID 1):
# the installed package under its own unit, in the order of tests/packaging/test-boot.sh's
# header (ready ktls_module device ktls reload restart takeover xdp block tpm_provider tpm
# upgrade upgrade_crash upgrade_unit purge), then the guest powers off.
#
# Console protocol (the serial console, read by test-boot.sh): "KGBOOT: PASS name ...",
# "KGBOOT: FAIL name: why", "KGBOOT: note ...", "KGBOOT: time name S", "KGBOOT: done";
# files go out with tests/vm/guest-lib.sh's kgvm_export ("KGVM: file/b/end" lines).
# /etc/kg-boot.env gives VERSION, SUITE and TPM (1 when the host attached swtpm, else
# the reason it did not). Devices dev-sub, dev-pub, dev-tpm (enabled) and dev-off
# (disabled) and the CA are in /opt/kg-pki (setup-root.sh).
# shellcheck disable=SC2046 # $(mqa ...) is split into the clients' arguments on purpose
set -u
. /etc/kg-boot.env
. /usr/local/lib/kg-boot/guest-lib.sh
P=/opt/kg-pki
say() { echo "KGBOOT: $*"; }
pass() { say "PASS $*"; }
fail() { say "FAIL $1: $2"; }
note() { say "note $*"; }
up() { cut -d' ' -f1 /proc/uptime; }
T_LAST=0
phase_time() { local t; t=$(up); say "time $1 $(awk -v a="$T_LAST" -v b="$t" 'BEGIN { printf "%.1f", b - a }')"; T_LAST=$t; }
prop() { systemctl show -p "$1" --value ktlsgated; }
metric() { # NAME{LABELS} -> value (empty when absent)
	curl -s --max-time 5 http://127.0.0.1:9883/metrics | awk -v m="$1" '$1 == m { print $2; exit }'
}
tls_stat() { awk -v n="$1" '$1 == n { print $2 }' /proc/net/tls_stat 2>/dev/null; }
# The mosquitto clients' arguments for device ID (CN = client id) through the gateway on
# HOST: `mosquitto_sub $(mqa ID HOST) ...`, so that a background client's $! is the
# client itself (killing a shell function's subshell would leave the client running,
# and two clients of one id take the broker session from each other in a loop).
# --insecure: the test server certificate names gw.test, not the address.
mqa() { # ID HOST
	echo "-h $2 -p 8883 --cafile $P/root/cert.pem --cert $P/$1/cert.pem --key $P/$1/key.pem --insecure -i $1 -q 1"
}
# wait_active S: until the unit is active (0), or failed / S seconds gone (1).
wait_active() {
	local i st
	for i in $(seq 1 $(($1 * 2))); do
		st=$(prop ActiveState)
		[ "$st" = active ] && return 0
		[ "$st" = failed ] && return 1
		sleep 0.5
	done
	return 1
}
# wait_session ID S: until `ktlsgate session list` shows ID relaying.
wait_session() {
	local i
	for i in $(seq 1 "$2"); do
		ktlsgate session list 2>/dev/null | grep -qw "$1" && return 0
		sleep 1
	done
	return 1
}
# pubsub TAG SUBID PUBID HOST: a message from PUBID reaches SUBID's subscription.
pubsub() {
	local tag=$1 sid=$2 pid=$3 host=$4 msg got spid
	msg="boot-$tag-$RANDOM$RANDOM"
	wait_gone "$sid" 20
	mosquitto_sub $(mqa "$sid" "$host") -t "kg/$tag" -C 1 -W 90 >/tmp/sub-$tag.out 2>/tmp/sub-$tag.err &
	spid=$!
	wait_session "$sid" 40 || { kill $spid 2>/dev/null; echo "subscriber $sid never relayed: $(cat /tmp/sub-$tag.err); journal: $(journalctl -u ktlsgated -b --no-pager | tail -2 | tr '\n' ';')"; return 1; }
	deliver /tmp/sub-$tag.out "$pid" "$host" "kg/$tag" "$msg" || { kill $spid 2>/dev/null; echo "never delivered: $(cat /tmp/pub-deliver.err)"; return 1; }
	wait $spid
	got=$(cat /tmp/sub-$tag.out)
	[ "$got" = "$msg" ] || { echo "received '$got', want '$msg' ($(cat /tmp/sub-$tag.err))"; return 1; }
	echo "$msg"
}
# deliver FILE PUBID HOST TOPIC MSG: publish MSG as PUBID until a subscriber writing to
# FILE has it (a subscription the gateway relays may not have reached the broker yet:
# no fixed sleep to guess that on a loaded TCG guest); at most 15 tries, 2 s apart.
deliver() {
	local i
	for i in $(seq 1 15); do
		mosquitto_pub $(mqa "$2" "$3") -t "$4" -m "$5" 2>/tmp/pub-deliver.err || return 1
		sleep 2
		grep -qxF "$5" "$1" && return 0
	done
	return 1
}
# wait_gone ID S: until no session of ID is left (a killed client's may linger a moment).
wait_gone() {
	local i
	for i in $(seq 1 "$2"); do
		ktlsgate session list 2>/dev/null | grep -qw "$1" || return 0
		sleep 1
	done
	return 1
}
# live_start TAG: a kTLS subscriber (dev-sub) relaying through the daemon, one message
# delivered; LS_OK (yes/no), LS_MODE (its data path), LS_PEER (its TCP peer address:port).
live_start() {
	LS_OUT=/tmp/sub-$1.out LS_OK=no LS_M1="$1-a-$RANDOM" LS_M2="$1-b-$RANDOM"
	wait_gone dev-sub 20
	mosquitto_sub $(mqa dev-sub 127.0.0.1) -t "kg/$1" -W 200 >"$LS_OUT" 2>/tmp/sub-$1.err &
	LS_PID=$!
	if wait_session dev-sub 40 && deliver "$LS_OUT" dev-pub 127.0.0.1 "kg/$1" "$LS_M1"; then
		LS_OK=yes
	fi
	LS_MODE=$(ktlsgate session list 2>/dev/null | awk '$2 == "dev-sub"' | grep -oE 'ktls_splice|ktls_tx|userspace[a-z_]*' | head -1)
	LS_PEER=$(ktlsgate session list 2>/dev/null | awk '$2 == "dev-sub" { print $3 }')
}
# live_after TAG: after the event, a second message; LS_GOT2 (yes/no), LS_ALIVE, LS_PEER1
# (the subscriber's connection now: the same one, or mosquitto_sub reconnected on its
# own and nothing was kept); the subscriber is stopped.
live_after() {
	LS_GOT2=no
	[ "$LS_OK" = yes ] && deliver "$LS_OUT" dev-pub 127.0.0.1 "kg/$1" "$LS_M2" && LS_GOT2=yes
	LS_ALIVE=$(kill -0 $LS_PID 2>/dev/null && echo yes || echo no)
	LS_PEER1=$(ktlsgate session list 2>/dev/null | awk '$2 == "dev-sub" { print $3 }')
	kill $LS_PID 2>/dev/null; wait $LS_PID 2>/dev/null
}
# live_verdict: why the live session was not kept ("" when it was).
live_verdict() {
	if [ "$LS_OK" != yes ]; then echo "the live subscriber never relayed before: $(tr '\n' ' ' </tmp/sub-$1.err)"
	elif [ "$LS_GOT2" != yes ]; then echo "the live $LS_MODE session did not relay after: subscriber alive $LS_ALIVE, got '$(tr '\n' ' ' <"$LS_OUT")'; journal: $(journalctl -u ktlsgated -b --no-pager -o cat | grep -E 'live session|session socket' | tail -3 | tr '\n' ';')"
	elif [ -z "$LS_PEER" ] || [ "$LS_PEER1" != "$LS_PEER" ]; then echo "the subscriber's connection changed: '$LS_PEER' before, '$LS_PEER1' after (it reconnected: the session was not kept)"
	fi
}
restart_unit() { # WHY: daemon-reload + restart, wait for active
	systemctl daemon-reload
	systemctl restart ktlsgated >/tmp/restart.log 2>&1
	wait_active 90
}

# connect_loop OUT: TCP connects to 127.0.0.1:8883 every 50 ms until /tmp/loop.stop
# exists, one line per attempt into OUT: "UPTIME ok|refused". A bare connect (bash's
# /dev/tcp, closed at once): what a device's SYN meets while the daemon restarts.
connect_loop() {
	local out=$1
	: >"$out"
	rm -f /tmp/loop.stop
	while [ ! -e /tmp/loop.stop ]; do
		if : 2>/dev/null 3<>/dev/tcp/127.0.0.1/8883; then echo "$(up) ok" >>"$out"
		else echo "$(up) refused" >>"$out"; fi
		sleep 0.05
	done
}
# loop_count OUT WHAT [FROM TO]: attempts in OUT that were WHAT (ok|refused|all),
# between uptimes FROM and TO when given.
loop_count() {
	awk -v w="$2" -v a="${3:-0}" -v b="${4:-1e12}" '$1 >= a && $1 <= b && (w == "all" || $2 == w) { n++ } END { print n + 0 }' "$1"
}

say "begin $(uname -r) suite $SUITE version $VERSION at $(up)s"
phase_time boot
udevadm settle -t 30 2>/dev/null

# --- ready: Type=notify reached active (READY=1), as the package's user, with STATUS= ---
if wait_active 120; then
	pid=$(prop MainPID)
	uid=$(awk '/^Uid:/ { print $2 }' "/proc/$pid/status" 2>/dev/null)
	want=$(id -u ktlsgate)
	st=$(prop StatusText)
	ty=$(prop Type)
	if [ "$ty" != notify ]; then fail ready "Type=$ty"
	elif [ -z "$uid" ] || [ "$uid" != "$want" ]; then fail ready "MainPID $pid runs as uid '$uid', want ktlsgate's $want"
	elif [ -z "$st" ]; then fail ready "no StatusText (STATUS=) after READY"
	else pass "ready (active via Type=notify, MainPID $pid uid $uid = ktlsgate, Status: $st)"; fi
else
	fail ready "ktlsgated is $(prop ActiveState)/$(prop SubState) (Result=$(prop Result)): $(systemctl status ktlsgated --no-pager 2>&1 | tail -5 | tr '\n' ';')"
fi
phase_time ready

# --- ktls_module: the tls module is there without the test's help. An unprivileged
# setsockopt(TCP_ULP, "tls") does not autoload it (net/ipv4/tcp_ulp.c asks for
# CAP_NET_ADMIN), so the unit's daemon cannot load it itself: something must (e.g. a
# modules-load.d file in the package). When it is missing the test loads it as an
# operator would and restarts the unit, so the checks after this one still run.
if grep -q '^tls ' /proc/modules; then
	pass "ktls_module (tls loaded at boot: $(grep -l '^tls$' /etc/modules-load.d/*.conf /usr/lib/modules-load.d/*.conf /lib/modules-load.d/*.conf 2>/dev/null | tr '\n' ' '))"
else
	# One session first: the proof that the daemon did not load it either.
	m=$(pubsub mod dev-sub dev-pub 127.0.0.1 2>&1)
	us=$(metric 'ktlsgate_sessions_started_total{mode="userspace"}')
	fail ktls_module "the tls module is not loaded after boot, and a session through the unit did not load it (setsockopt TCP_ULP autoloads only with CAP_NET_ADMIN): tls in /proc/modules: $(grep -c '^tls ' /proc/modules), sessions started in userspace: '$us' ($m); the test runs modprobe tls and restarts ktlsgated"
	modprobe tls && restart_unit
	note "after modprobe tls and a restart: $(prop ActiveState)"
fi
TX0=$(tls_stat TlsTxSw) RX0=$(tls_stat TlsRxSw)
phase_time ktls_module

# --- device: a subscriber and a publisher, each its own device, through 8883 -----------
S_LIST=""
msg=$(pubsub dev dev-sub dev-pub 127.0.0.1 2>&1) &&
	pass "device (dev-pub -> mosquitto via 127.0.0.1:8883 -> dev-sub: '$msg')" || fail device "$msg"
phase_time device

# --- ktls: the sessions' data path, /proc/net/tls_stat ---------------------------------
mosquitto_sub $(mqa dev-sub 127.0.0.1) -t kg/ktls -C 1 -W 60 >/dev/null 2>&1 &
kpid=$!
if wait_session dev-sub 30; then
	S_LIST=$(ktlsgate session list 2>&1)
fi
kill $kpid 2>/dev/null; wait $kpid 2>/dev/null
TX1=$(tls_stat TlsTxSw) RX1=$(tls_stat TlsRxSw)
started=$(curl -s --max-time 5 http://127.0.0.1:9883/metrics | awk '/^ktlsgate_sessions_started_total/ { printf "%s=%s ", $1, $2 }')
rxinst=$(curl -s --max-time 5 http://127.0.0.1:9883/metrics | awk '/^ktlsgate_ktls_rx_installed_total/ { printf "%s=%s ", $1, $2 }')
splice=$(metric 'ktlsgate_sessions_started_total{mode="ktls_splice"}')
note "session list: $(printf '%s' "$S_LIST" | tr '\n' ';')"
note "tls_stat TlsTxSw $TX0 -> $TX1, TlsRxSw $RX0 -> $RX1; $started"
note "ktls_rx_installed: ${rxinst:-metric absent}; $(openssl version)"
# mosquitto's clients speak TLS 1.3: its receive key is installed by OpenSSL itself from
# 3.2 on (trixie's 3.5), by the daemon under 3.0 (bookworm) (docs/ktls.md)
case $(openssl version | awk '{ print $2 }') in
3.[01].*) rx_by=daemon ;;
*) rx_by=openssl ;;
esac
rx_n=$(metric "ktlsgate_ktls_rx_installed_total{by=\"$rx_by\"}")
if [ -z "$TX0" ] || [ -z "$TX1" ]; then fail ktls "no /proc/net/tls_stat (tls module not loaded: $(lsmod | grep -c '^tls '))"
elif ! printf '%s' "$S_LIST" | grep -qw dev-sub; then fail ktls "no live session to read the data path from: $S_LIST"
elif ! printf '%s' "$S_LIST" | grep -w dev-sub | grep -qE 'ktls_splice|ktls_tx'; then fail ktls "dev-sub's data path is not kTLS: $(printf '%s' "$S_LIST" | grep -w dev-sub)"
elif [ "$TX1" -le "$TX0" ] || [ "$RX1" -le "$RX0" ]; then fail ktls "tls_stat did not rise: TlsTxSw $TX0 -> $TX1, TlsRxSw $RX0 -> $RX1"
elif [ -z "$splice" ] || [ "$splice" -lt 1 ]; then fail ktls "ktlsgate_sessions_started_total{mode=\"ktls_splice\"} = '$splice'"
elif [ -z "$rx_n" ] || [ "$rx_n" -lt 1 ]; then fail ktls "$(openssl version | cut -d' ' -f1-2): want the TLS 1.3 receive keys installed by the $rx_by, ktlsgate_ktls_rx_installed_total: ${rxinst:-absent}"
else pass "ktls (mode $(printf '%s' "$S_LIST" | grep -w dev-sub | grep -oE 'ktls_splice|ktls_tx' | head -1); TlsTxSw +$((TX1 - TX0)) TlsRxSw +$((RX1 - RX0)); ktls_splice started $splice; receive keys installed by $rx_by: $rx_n)"; fi
phase_time ktls

# --- reload: a live subscriber survives `systemctl reload`, same MainPID ---------------
pid0=$(prop MainPID)
m1="reload-a-$RANDOM" m2="reload-b-$RANDOM"
wait_gone dev-sub 20
mosquitto_sub $(mqa dev-sub 127.0.0.1) -t kg/reload -W 120 >/tmp/sub-reload.out 2>/tmp/sub-reload.err &
rpid=$!
if ! wait_session dev-sub 40; then
	fail reload "subscriber never relayed: $(cat /tmp/sub-reload.err)"
elif ! deliver /tmp/sub-reload.out dev-pub 127.0.0.1 kg/reload "$m1"; then
	fail reload "a message before the reload never arrived: $(cat /tmp/pub-deliver.err)"
else
	s0=$(ktlsgate session list 2>/dev/null | awk '$2 == "dev-sub" { print $1 "@" $3 }')
	r=$(systemctl reload ktlsgated 2>&1); rrc=$?
	sleep 2
	wait_active 30
	pid1=$(prop MainPID)
	st=$(prop StatusText)
	s1=$(ktlsgate session list 2>/dev/null | awk '$2 == "dev-sub" { print $1 "@" $3 }')
	deliver /tmp/sub-reload.out dev-pub 127.0.0.1 kg/reload "$m2"
	s2=$(ktlsgate session list 2>/dev/null | awk '$2 == "dev-sub" { print $1 "@" $3 }')
	alive=$(kill -0 $rpid 2>/dev/null && echo yes || echo no)
	# (a retried publish may arrive twice: each message once is what counts)
	got=$(awk '!seen[$0]++' /tmp/sub-reload.out | tr '\n' ' ')
	[ "$got" = "$m1 $m2 " ] || note "reload: after the reload: subscriber alive $alive, dev-sub's session '$s1' then '$s2'; tls_stat: $(awk '$2 != 0 { printf "%s=%s ", $1, $2 }' /proc/net/tls_stat); journal: $(journalctl -u ktlsgated -b --no-pager -n 6 | cut -c1-220 | tr '\n' ';')"
	if [ $rrc -ne 0 ]; then fail reload "systemctl reload: rc $rrc: $r"
	elif [ "$pid1" != "$pid0" ]; then fail reload "MainPID changed: $pid0 -> $pid1"
	elif [ -z "$s0" ] || [ "$s1" != "$s0" ] || [ "$s2" != "$s0" ]; then fail reload "dev-sub's session (id@peer) '$s0' before the reload, '$s1' after, '$s2' after the publish"
	elif [ "$alive" != yes ]; then fail reload "the subscriber exited: $(tr '\n' ' ' </tmp/sub-reload.err)"
	elif [ "$got" != "$m1 $m2 " ]; then fail reload "the subscriber got '$got', want '$m1 $m2 ' ($(tr '\n' ' ' </tmp/sub-reload.err))"
	else pass "reload (MainPID $pid0 kept, session $s0 kept, the subscriber got the messages from before and after; Status: $st)"; fi
fi
kill $rpid 2>/dev/null
phase_time reload

# --- restart: `systemctl restart` refuses no connection: the listeners wait in systemd's
# file descriptor store (FileDescriptorStoreMax=, docs/systemd.md "Restart"); a live
# kTLS subscriber's session waits there too and relays on in the new process ----------
pid0=$(prop MainPID)
live_start restart
nfd0=$(prop NFileDescriptorStore)
connect_loop /tmp/loop-restart.out &
lpid=$!
sleep 1
t0=$(up)
systemctl restart ktlsgated >/tmp/restart.log 2>&1; rrc=$?
t1=$(up)
wait_active 90
sleep 1
touch /tmp/loop.stop; wait $lpid
pid1=$(prop MainPID)
nfd1=$(prop NFileDescriptorStore)
inside=$(loop_count /tmp/loop-restart.out all "$t0" "$t1")
refused=$(loop_count /tmp/loop-restart.out refused)
total=$(loop_count /tmp/loop-restart.out all)
kept=$(journalctl -u ktlsgated -b --no-pager -o cat | grep -o 'systemd kept [0-9]* device listener(s)[a-z/ ]* across the restart' | tail -1)
# the live subscriber: a message after the restart reaches it, through the new process
live_after restart
lv=$(live_verdict restart)
adopted=$(journalctl -u ktlsgated -b --no-pager -o cat | grep -o 'adopted [0-9]* live session(s) kept across the restart' | tail -1)
if [ $rrc -ne 0 ]; then fail restart "systemctl restart: rc $rrc: $(tr '\n' ' ' </tmp/restart.log)"
elif [ "$pid1" = "$pid0" ] || [ "$(prop ActiveState)" != active ]; then fail restart "MainPID $pid0 -> $pid1, $(prop ActiveState)"
elif [ "$inside" -lt 3 ]; then fail restart "only $inside connect attempts while systemctl restart ran ($t0 .. $t1 s): the loop did not cover the gap"
elif [ "$refused" -ne 0 ]; then fail restart "$refused of $total connects refused ($(awk '$2 == "refused" { printf "%s ", $1 }' /tmp/loop-restart.out)); restart ran $t0 .. $t1 s; the store held '$nfd0' descriptors"
elif [ -z "$nfd0" ] || [ "$nfd0" -lt 1 ]; then fail restart "the store held '$nfd0' descriptors before the restart (NFileDescriptorStore)"
elif [ -z "$kept" ]; then fail restart "the new process did not say it got the sockets back: $(journalctl -u ktlsgated -b --no-pager -o cat | tail -4 | tr '\n' ';')"
elif [ -n "$lv" ]; then fail restart "$lv"
elif [ -z "$adopted" ]; then fail restart "the subscriber relayed, but the new process did not say it adopted the session: $(journalctl -u ktlsgated -b --no-pager -o cat | tail -6 | tr '\n' ';')"
elif ! m=$(pubsub rst dev-sub dev-pub 127.0.0.1 2>&1); then fail restart "no device after the restart: $m"
else pass "restart (MainPID $pid0 -> $pid1; store $nfd0 -> $nfd1 descriptors; $total connects, $inside of them during the $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s of systemctl restart, 0 refused; '$kept'; the live $LS_MODE subscriber ($LS_PEER) got '$LS_M1' before and '$LS_M2' after on the same connection ('$adopted'); a device connects)"; fi
phase_time restart

# --- takeover: `ktlsgate upgrade` under the unit (daemon/core/upgrade.h): the daemon
# starts its successor inside the service (its user, no capability); systemd follows it
# as MainPID (the old main pid said MAINPID=, NotifyAccess=main), the live kTLS
# subscriber moves to it on the same connection, a connect loop is never refused, the
# old process exits, and the watchdog is fed by the new main pid. (With the XDP gate:
# the xdp check.) -----------------------------------------------------------------------
takeover_check() {
	local pid0 pid1 out t0 t1 refused total wd0 wd1 c bad t i
	pid0=$(prop MainPID)
	live_start takeover
	connect_loop /tmp/loop-takeover.out &
	local loop=$!
	sleep 0.5
	t0=$(up)
	out=$(ktlsgate upgrade --timeout 90 2>&1) || { touch /tmp/loop.stop; wait $loop; live_after takeover; echo "ktlsgate upgrade: $out"; return 1; }
	t1=$(up)
	wd0=$(prop WatchdogTimestampMonotonic)
	for i in $(seq 100); do [ "$(prop MainPID)" != "$pid0" ] && break; sleep 0.1; done
	pid1=$(prop MainPID)
	sleep 0.5
	touch /tmp/loop.stop
	wait $loop
	live_after takeover
	refused=$(loop_count /tmp/loop-takeover.out refused)
	total=$(loop_count /tmp/loop-takeover.out all)
	case $out in *"upgraded: pid $pid1 accepts; pid $pid0 drains"*) ;; *) echo "MainPID $pid0 -> $pid1, but ktlsgate upgrade said: $out"; return 1 ;; esac
	[ "$(prop ActiveState)" = active ] || { echo "not active after the upgrade: $(prop ActiveState)/$(prop SubState)"; return 1; }
	[ "$refused" -eq 0 ] || { echo "$refused of $total connects refused"; return 1; }
	for i in $(seq 100); do kill -0 "$pid0" 2>/dev/null || break; sleep 0.1; done
	! kill -0 "$pid0" 2>/dev/null || { echo "the old process $pid0 still runs 10 s after: $(journalctl -u ktlsgated -b --no-pager -o cat | grep -i handover | tail -2 | tr '\n' ';')"; return 1; }
	# the unit's user, no drop-in here: the successor holds no capability either
	c=$(awk '/^Cap(Prm|Eff|Amb):/ { printf "%s ", $2 }' "/proc/$pid1/status")
	[ "$c" = "0000000000000000 0000000000000000 0000000000000000 " ] || { echo "the successor's CapPrm/CapEff/CapAmb: $c"; return 1; }
	[ "$(awk '/^Uid:/ { print $2 }' "/proc/$pid1/status")" = "$(id -u ktlsgate)" ] || { echo "the successor does not run as ktlsgate"; return 1; }
	c=$(live_verdict takeover)
	[ -z "$c" ] || { echo "$c"; return 1; }
	# systemd takes the watchdog pings from the new main pid (every WatchdogSec/2)
	for i in $(seq 40); do
		wd1=$(prop WatchdogTimestampMonotonic)
		[ "$wd1" != "$wd0" ] && break
		sleep 0.5
	done
	[ "$wd1" != "$wd0" ] || { echo "no watchdog ping taken from MainPID $pid1 in 20 s"; return 1; }
	[ "$(prop MainPID)" = "$pid1" ] && [ "$(prop ActiveState)" = active ] || { echo "MainPID $(prop MainPID), $(prop ActiveState) after the watchdog wait"; return 1; }
	echo "MainPID $pid0 -> $pid1 ($(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s); $total connects, 0 refused; the live $LS_MODE subscriber ($LS_PEER) kept its connection; uid ktlsgate, no capability; old pid gone; watchdog fed by $pid1"
}
if out=$(takeover_check 2>&1); then pass "takeover ($(printf '%s' "$out" | tail -1))"; else fail takeover "$(printf '%s' "$out" | grep -v '^KGBOOT: ' | tail -3 | tr '\n' ';')"; fi
phase_time takeover

# --- xdp: edge.conf's capabilities, [edge] on a veth, a disabled device's source dropped --
xdp_check() {
	local pid pid1 caps bad t tid n i denied d0 d1 c rc out prog0 prog1 a
	ip netns add kgdev || { echo "ip netns add failed"; return 1; }
	ip link add kg0 type veth peer name kg1 || { echo "ip link add veth failed (module veth: $(modprobe -n -v veth 2>&1))"; return 1; }
	ip link set kg1 netns kgdev
	ip addr add 10.99.0.1/24 dev kg0 && ip link set kg0 up
	ip -n kgdev addr add 10.99.0.2/24 dev kg1 && ip -n kgdev link set kg1 up && ip -n kgdev link set lo up
	cat >>/etc/ktlsgate/ktlsgate.conf <<-EOC

		; test-boot: the XDP gate on the test veth
		[edge]
		interfaces = kg0
		ports = 8883
		fail_threshold = 2
		fail_window_s = 120
		deny_base_s = 600
	EOC
	mkdir -p /etc/systemd/system/ktlsgated.service.d
	ln -sf /usr/share/ktlsgate/systemd/edge.conf /etc/systemd/system/ktlsgated.service.d/edge.conf
	restart_unit || { echo "not active after the restart with edge.conf: $(prop ActiveState)/$(prop Result): $(journalctl -u ktlsgated -b --no-pager | tail -4 | tr '\n' ';')"; return 1; }
	pid=$(prop MainPID)
	caps=$(awk '/^CapEff:/ { print $2 }' "/proc/$pid/status")
	note "xdp: CapEff $caps = $(capsh --decode="$caps" 2>&1 | sed 's/.*=//'); CapBnd $(capsh --decode="$(awk '/^CapBnd:/ { print $2 }' "/proc/$pid/status")" | sed 's/.*=//'); $(ip -d link show kg0 | grep -o 'prog/xdp[^ ]* id [0-9]*' | head -1)"
	# docs/packaging.md: the daemon keeps CAP_BPF and CAP_NET_ADMIN (gate loaded), in every thread.
	bad=""
	for t in /proc/"$pid"/task/*; do
		tid=$(awk '/^CapEff:/ { print $2 }' "$t/status")
		c=$(capsh --decode="$tid" | sed 's/.*=//')
		[ "$c" = "cap_net_admin,cap_bpf" ] || bad="$bad $(basename "$t"):$c"
	done
	[ -z "$bad" ] || { echo "threads whose CapEff is not cap_net_admin,cap_bpf:$bad"; return 1; }
	ip -d link show kg0 | grep -q 'xdp' || { echo "no XDP program on kg0: $(ip -d link show kg0 | tr '\n' ' ')"; return 1; }
	# A TCP connect from the netns works before the deny.
	ip netns exec kgdev timeout 10 bash -c 'exec 3<>/dev/tcp/10.99.0.1/8883' ||
		{ echo "a TCP connect from the netns failed before any deny"; return 1; }
	d0=$(metric 'ktlsgate_xdp_packets_total{verdict="dropped_deny"}')
	[ -n "$d0" ] || { echo "no ktlsgate_xdp_packets_total{verdict=\"dropped_deny\"} in /metrics"; return 1; }
	# dev-off (status disabled) is refused fail_threshold times: its source is denied.
	denied=0
	for i in 1 2 3; do
		ip netns exec kgdev timeout 20 mosquitto_pub -h 10.99.0.1 -p 8883 --cafile $P/root/cert.pem \
			--cert $P/dev-off/cert.pem --key $P/dev-off/key.pem --insecure -i dev-off -t kg/x -m x >/tmp/off-$i.log 2>&1
		rc=$?
		[ $rc -ne 0 ] && denied=$((denied + 1))
	done
	[ "$denied" -eq 3 ] || { echo "dev-off was let through ($denied of 3 refused)"; return 1; }
	n=$(metric 'ktlsgate_xdp_deny_added_total{reason="policy"}')
	[ -n "$n" ] && [ "$n" -ge 1 ] || { echo "ktlsgate_xdp_deny_added_total{reason=\"policy\"} = '$n' after 3 refusals"; return 1; }
	if ip netns exec kgdev timeout 8 bash -c 'exec 3<>/dev/tcp/10.99.0.1/8883' 2>/dev/null; then
		echo "a new TCP connect from the denied source succeeded"; return 1
	fi
	d1=$(metric 'ktlsgate_xdp_packets_total{verdict="dropped_deny"}')
	[ -n "$d1" ] && [ "$d1" -gt "$d0" ] || { echo "dropped_deny did not rise: '$d0' -> '$d1'"; return 1; }
	# Loopback is not behind the gate: a device still gets through.
	m=$(pubsub xdp dev-sub dev-pub 127.0.0.1 2>&1) || { echo "loopback device after the deny: $m"; return 1; }
	note "xdp: ktlsgate block list as root: $(ktlsgate block list 2>&1 | head -3 | tr '\n' ';') (rc $?); $(ls -ld /sys/fs/bpf/ktlsgate 2>&1)"
	note "xdp: bpffs: $(grep ' bpf ' /proc/mounts | cut -d' ' -f2,4 | tr '\n' ' '); /sys/fs/bpf: $(ls -la /sys/fs/bpf 2>&1 | tail -n +2 | tr '\n' ';'); in the daemon's namespace: $(nsenter -t "$pid" -m ls -la /sys/fs/bpf/ktlsgate 2>&1 | tail -n +2 | tr '\n' ';'); journal: $(journalctl -u ktlsgated -b --no-pager | grep -i -m3 -E '\bpin|pinn|bpffs|/sys/fs/bpf' | cut -c1-200 | tr '\n' ';')"
	note "xdp: ktlsgate block list as ktlsgate: $(runuser -u ktlsgate -- ktlsgate block list 2>&1 | head -2 | tr '\n' ';')"
	# `ktlsgate upgrade` with the gate on: the successor (no CAP_PERFMON: dropped after
	# start) cannot load BPF; it keeps the running program and its maps (edge.h), so the
	# same program stays on kg0 and the deny made above still drops.
	prog0=$(ip -d link show kg0 | grep -o 'prog/xdp[^ ]* id [0-9]*' | head -1)
	t=$(ls /proc/"$pid"/task | wc -l)
	out=$(ktlsgate upgrade --timeout 60 2>&1) || { echo "ktlsgate upgrade with the gate: $out"; return 1; }
	pid1=$(prop MainPID)
	[ "$pid1" != "$pid" ] && [ "$(prop ActiveState)" = active ] || { echo "after ktlsgate upgrade ($out): MainPID $pid -> $pid1, $(prop ActiveState)"; return 1; }
	prog1=$(ip -d link show kg0 | grep -o 'prog/xdp[^ ]* id [0-9]*' | head -1)
	[ -n "$prog0" ] && [ "$prog1" = "$prog0" ] || { echo "the XDP program on kg0 changed across the upgrade: '$prog0' -> '$prog1'"; return 1; }
	journalctl -u ktlsgated -b --no-pager -o cat | grep -q "keeping the gate's program the previous process ran" ||
		{ echo "the successor did not say it kept the gate's program: $(journalctl -u ktlsgated -b --no-pager -o cat | grep 'edge:' | tail -3 | tr '\n' ';')"; return 1; }
	for i in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
	! kill -0 "$pid" 2>/dev/null || { echo "the old pid $pid did not exit after the upgrade"; return 1; }
	c=$(capsh --decode="$(awk '/^CapEff:/ { print $2 }' "/proc/$pid1/status")" | sed 's/.*=//')
	[ "$c" = "cap_net_admin,cap_bpf" ] || { echo "the successor's CapEff: $c"; return 1; }
	a=$(metric 'ktlsgate_xdp_attached{interface="kg0",mode="adopted"}')
	[ "$a" = 1 ] || { echo "ktlsgate_xdp_attached{kg0,adopted} = '$a' after the upgrade"; return 1; }
	if ip netns exec kgdev timeout 8 bash -c 'exec 3<>/dev/tcp/10.99.0.1/8883' 2>/dev/null; then
		echo "the denied source connects after the upgrade"; return 1
	fi
	echo "CapEff cap_net_admin,cap_bpf in all $t threads; dev-off refused 3x from 10.99.0.2, deny_added{policy} $n, new connect timed out, dropped_deny $d0 -> $d1; ktlsgate upgrade took over (MainPID $pid -> $pid1), kept $prog0 on kg0, the denied source still dropped"
}
if out=$(xdp_check 2>&1); then pass "xdp ($(printf '%s' "$out" | tail -1))"; else fail xdp "$(printf '%s' "$out" | grep -v '^KGBOOT: ' | tail -3 | tr '\n' ';')"; fi
printf '%s\n' "$out" | grep '^KGBOOT: note' || true
phase_time xdp

# --- block: `ktlsgate block` under the unit (its user cannot pin under /sys/fs/bpf: the
# CLI goes through the daemon's control socket, docs/cli.md) -------------------------
# connect_from ADDR: curl's exit status for a TCP connect to the gate from ADDR in the
# netns (28: timed out, i.e. dropped; anything else: the SYN was answered).
connect_from() {
	ip netns exec kgdev curl -s -o /dev/null --connect-timeout 5 --max-time 8 \
		--interface "$1" http://10.99.0.1:8883/ 2>/dev/null
	echo $?
}
block_check() {
	local rc l
	ip -n kgdev addr add 10.99.0.3/24 dev kg1 || { echo "no second address in the netns"; return 1; }
	rc=$(connect_from 10.99.0.3)
	[ "$rc" != 28 ] || { echo "10.99.0.3 dropped before any block (curl $rc)"; return 1; }
	ktlsgate block add 10.99.0.3 --for 600 >/tmp/block-add.log 2>&1 ||
		{ echo "block add as root: $(tr '\n' ';' </tmp/block-add.log)"; return 1; }
	l=$(runuser -u ktlsgate -- ktlsgate block list 2>&1)
	printf '%s\n' "$l" | grep -Eq '^10\.99\.0\.3 +manual ' || { echo "block list as ktlsgate: $l"; return 1; }
	rc=$(connect_from 10.99.0.3)
	[ "$rc" = 28 ] || { echo "10.99.0.3 still connects after block add (curl $rc)"; return 1; }
	ktlsgate block remove 10.99.0.3 >/tmp/block-rm.log 2>&1 ||
		{ echo "block remove: $(tr '\n' ';' </tmp/block-rm.log)"; return 1; }
	rc=$(connect_from 10.99.0.3)
	[ "$rc" != 28 ] || { echo "10.99.0.3 still dropped after block remove"; return 1; }
	echo "add as root, list as ktlsgate ($(printf '%s' "$l" | grep -c .) line(s)), the source dropped, removed, connects again; $(tr '\n' ' ' </tmp/block-add.log)"
}
if out=$(block_check 2>&1); then pass "block ($(printf '%s' "$out" | tail -1))"; else fail block "$(printf '%s' "$out" | tail -3 | tr '\n' ';')"; fi
phase_time block

# --- tpm: the server key made in the (swtpm) TPM, tpm.conf's device access ------------
# The TPM key is used through OpenSSL's tpm2 provider (docs/tpm.md), Debian's
# tpm2-openssl: the guest root has it (boot/lib.sh BOOT_PKGS, as an operator would
# install it), so the tpm check tests the rest; whether the package pulls it in is this
# verdict.
dep=$(dpkg-query -W -f='${Depends}, ${Recommends}' ktlsgate | tr ',' '\n' | grep -c 'tpm2-openssl')
if [ "$dep" -ge 1 ]; then pass "tpm_provider (ktlsgate's Depends/Recommends name tpm2-openssl)"
else fail tpm_provider "ktlsgate neither Depends on nor Recommends tpm2-openssl, the OpenSSL provider daemon/tpm/tpm_key.c loads for [daemon] key = handle:...; without it 'ktlsgate tpm csr' and the daemon say 'cannot connect (tpm2 provider: failed)'"; fi

tpm_check() {
	local h=0x81000101 kpub spub m
	[ "$TPM" = 1 ] || { echo "not run: $TPM"; return 1; }
	dpkg-query -W -f='${Status}' tpm2-openssl 2>/dev/null | grep -q 'ok installed' ||
		{ echo "tpm2-openssl is not installed in the guest"; return 1; }
	for _ in $(seq 1 20); do [ -c /dev/tpmrm0 ] && break; sleep 0.5; done
	[ -c /dev/tpmrm0 ] || { echo "no /dev/tpmrm0 in the guest: $(ls /dev/tpm* 2>&1 | tr '\n' ' ')"; return 1; }
	note "tpm: $(stat -c '%n %U:%G %a' /dev/tpmrm0)"
	ktlsgate tpm keygen --ecdsa --handle $h --tcti device:/dev/tpmrm0 >/tmp/keygen.log 2>&1 ||
		{ echo "tpm keygen: $(tail -3 /tmp/keygen.log | tr '\n' ';')"; return 1; }
	ktlsgate tpm csr --key handle:$h --cn gw.test --out /tmp/tpm.csr --tcti device:/dev/tpmrm0 >/tmp/csr.log 2>&1 ||
		{ echo "tpm csr: $(tail -3 /tmp/csr.log | tr '\n' ';')"; return 1; }
	printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:gw.test\n' >/tmp/ext.cnf
	openssl x509 -req -in /tmp/tpm.csr -CA $P/root/cert.pem -CAkey $P/root/key.pem -CAcreateserial \
		-days 30 -extfile /tmp/ext.cnf -out /tmp/tpm-cert.pem 2>/tmp/sign.log ||
		{ echo "signing the CSR: $(tail -2 /tmp/sign.log | tr '\n' ';')"; return 1; }
	install -m 0644 /tmp/tpm-cert.pem /etc/ktlsgate/server/tpm-chain.pem
	sed -i "s|^key = /etc/ktlsgate/server/key.pem|key = handle:$h|; s|^cert = /etc/ktlsgate/server/chain.pem|cert = /etc/ktlsgate/server/tpm-chain.pem|" /etc/ktlsgate/ktlsgate.conf
	printf '\n; test-boot: the server key in the TPM\n[tpm]\ntcti = device:/dev/tpmrm0\n' >>/etc/ktlsgate/ktlsgate.conf
	ln -sf /usr/share/ktlsgate/systemd/tpm.conf /etc/systemd/system/ktlsgated.service.d/tpm.conf
	restart_unit || { echo "not active after the restart with tpm.conf: $(prop ActiveState)/$(prop Result): $(journalctl -u ktlsgated -b --no-pager | tail -4 | tr '\n' ';')"; return 1; }
	kpub=$(openssl req -in /tmp/tpm.csr -pubkey -noout 2>&1)
	spub=$(openssl s_client -connect 127.0.0.1:8883 -cert $P/dev-tpm/cert.pem -key $P/dev-tpm/key.pem \
		</dev/null 2>/dev/null | openssl x509 -pubkey -noout 2>&1)
	printf '%s' "$kpub" | grep -q 'BEGIN PUBLIC KEY' || { echo "no public key in the CSR: $kpub"; return 1; }
	[ "$kpub" = "$spub" ] || { echo "the server's key is not the TPM key's: server '$(printf '%s' "$spub" | sed -n 2p)' vs TPM '$(printf '%s' "$kpub" | sed -n 2p)'"; return 1; }
	m=$(pubsub tpm dev-sub dev-tpm 127.0.0.1 2>&1) || { echo "device through the TPM key: $m"; return 1; }
	echo "key $h made by ktlsgate tpm keygen, CSR signed by the test CA; the server key seen by s_client is the TPM key; dev-tpm -> dev-sub '$m'"
}
if out=$(tpm_check 2>&1); then pass "tpm ($(printf '%s' "$out" | tail -1))"; else fail tpm "$(printf '%s' "$out" | grep -v '^KGBOOT: ' | tail -3 | tr '\n' ';')"; fi
printf '%s\n' "$out" | grep '^KGBOOT: ' || true
phase_time tpm

# --- upgrade: dpkg -i VERSION+test1 under the running service: postinst replaces the
# daemon in place (`ktlsgate upgrade`, docs/packaging.md "Upgrade"): the unit never
# leaves active, MainPID moves to the successor, the old process drains and exits on
# its own, no connect is refused, the live session keeps its connection ------------
# The XDP gate stays on (the xdp check's [edge] and drop-in): the successor keeps its
# program (edge.h), so the package's upgrade keeps the gate too.
sed -i 's/^log_level = info$/log_level = debug/' /etc/ktlsgate/ktlsgate.conf
systemctl reload ktlsgated; sleep 1
xdp0=$(ip -d link show kg0 2>/dev/null | grep -o 'prog/xdp[^ ]* id [0-9]*' | head -1)
conf0=$(md5sum </etc/ktlsgate/ktlsgate.conf)
devs0=$(sqlite3 -readonly /var/lib/ktlsgate/registry.db 'SELECT id FROM devices ORDER BY id' 2>&1 | tr '\n' ' ')
pid0=$(prop MainPID)
ae0=$(prop ActiveEnterTimestampMonotonic)
live_start upgrade
connect_loop /tmp/loop-upgrade.out &
lpid=$!
sleep 1
dpkg -i /root/pkg/upgrade.deb >/tmp/upgrade.log 2>&1
urc=$?
wait_active 90
for _ in $(seq 50); do [ "$(prop MainPID)" != "$pid0" ] && break; sleep 0.2; done
sleep 1
touch /tmp/loop.stop; wait $lpid
live_after upgrade
lv=$(live_verdict upgrade)
urefused=$(loop_count /tmp/loop-upgrade.out refused)
utotal=$(loop_count /tmp/loop-upgrade.out all)
st=$(dpkg-query -W -f='${Status} ${Version}' ktlsgate)
pid1=$(prop MainPID)
ae1=$(prop ActiveEnterTimestampMonotonic)
conf1=$(md5sum </etc/ktlsgate/ktlsgate.conf)
devs1=$(sqlite3 -readonly /var/lib/ktlsgate/registry.db 'SELECT id FROM devices ORDER BY id' 2>&1 | tr '\n' ' ')
bak=/var/lib/ktlsgate/registry.db.bak-$VERSION
bdevs=$(sqlite3 -readonly "$bak" 'SELECT id FROM devices ORDER BY id' 2>&1 | tr '\n' ' ')
said=$(grep '^ktlsgate: \(upgraded\|restarting\|not \)' /tmp/upgrade.log | tr '\n' ';')
xdp1=$(ip -d link show kg0 2>/dev/null | grep -o 'prog/xdp[^ ]* id [0-9]*' | head -1)
# The old process ends by its drain (its own "handover: ...: exiting", no stop): the
# live session moved, so at once; at most drain_timeout otherwise.
for _ in $(seq 60); do kill -0 "$pid0" 2>/dev/null || break; sleep 0.5; done
old_gone=$(kill -0 "$pid0" 2>/dev/null && echo no || echo yes)
# Who said what: the daemon writes native journal entries, so _PID is the real sender.
jl() { journalctl -b --no-pager -o cat _PID="$1" 2>/dev/null; }
j_spawn=$(jl "$pid0" | grep -c "upgrade: started /usr/sbin/ktlsgated --takeover .* as pid $pid1\$")
j_drain=$(jl "$pid0" | grep -c "handover: pid $pid1 accepts: stopped accepting; draining")
j_exit=$(jl "$pid0" | grep -E 'handover: (every connection ended|drain_timeout reached: closing the rest): exiting' | tail -1)
j_new=$(jl "$pid1" | grep -c "handover: accepting on [0-9]* adopted and [0-9]* new listener(s); pid $pid0 drains")
if [ $urc -ne 0 ]; then fail upgrade "dpkg -i: $(tail -3 /tmp/upgrade.log | tr '\n' ';')"
elif [ "$st" != "install ok installed $VERSION+test1" ]; then fail upgrade "status '$st'"
elif [ "$(prop ActiveState)" != active ]; then fail upgrade "ktlsgated is $(prop ActiveState) after the upgrade"
elif [ "$conf1" != "$conf0" ]; then fail upgrade "the edited config changed"
elif [ -z "$devs0" ] || [ "$devs1" != "$devs0" ]; then fail upgrade "devices '$devs0' -> '$devs1'"
elif [ "$bdevs" != "$devs0" ]; then fail upgrade "backup $bak: '$bdevs'"
elif [ "$pid1" = "$pid0" ]; then fail upgrade "MainPID $pid0 kept: the upgrade did not replace the daemon (postinst said '$said')"
elif [ "$said" != "ktlsgate: upgraded in place: pid $pid1 accepts; pid $pid0 drains its sessions;" ]; then fail upgrade "postinst said '$said', want 'ktlsgate: upgraded in place: pid $pid1 accepts; pid $pid0 drains its sessions'"
elif [ "$ae1" != "$ae0" ]; then fail upgrade "the unit left active (ActiveEnterTimestampMonotonic $ae0 -> $ae1): stopped and started, not taken over"
elif [ "$j_spawn" -ne 1 ] || [ "$j_drain" -ne 1 ] || [ "$j_new" -ne 1 ]; then fail upgrade "journal: pid $pid0 started the successor $j_spawn time(s) and saw it accept $j_drain, pid $pid1 said it accepts while $pid0 drains $j_new (want 1 each): $(journalctl -u ktlsgated -b --no-pager | grep -E 'upgrade:|handover:' | tail -4 | cut -c1-200 | tr '\n' ';')"
elif [ "$old_gone" != yes ] || [ -z "$j_exit" ]; then fail upgrade "the old process $pid0: gone '$old_gone', its last handover line '$j_exit' (want it to exit by its drain)"
elif [ -z "$xdp0" ] || [ "$xdp1" != "$xdp0" ]; then fail upgrade "the XDP gate on kg0: '$xdp0' -> '$xdp1' (want the same program kept)"
elif [ "$urefused" -ne 0 ]; then fail upgrade "$urefused of $utotal connects refused during the upgrade ($(awk '$2 == "refused" { printf "%s ", $1 }' /tmp/loop-upgrade.out))"
elif [ -n "$lv" ]; then fail upgrade "$lv"
elif ! m=$(pubsub upg dev-sub dev-pub 127.0.0.1 2>&1); then fail upgrade "no device after the upgrade: $m"
else pass "upgrade ($VERSION -> $VERSION+test1 under the running unit, in place: '${said%;}', the unit stayed active, $pid0 '$j_exit'; $utotal connects through it and 0 refused, the live $LS_MODE subscriber ($LS_PEER) got a message before and after on the same connection, the XDP gate kept ($xdp1), devices '$devs1' kept, $bak, conffile edit kept, a device connects)"; fi
phase_time upgrade

# --- upgrade_crash: the successor an in-place upgrade left is the unit's main process,
# though not systemd's child when it was named (systemd: "Supervising process N which
# is not our child"). Once the old process is gone it is PID 1's, and a crash of it is
# seen: Restart=on-failure brings the daemon back -------------------------------------
upgrade_crash_check() {
	local pid0 pid1 i
	pid0=$(prop MainPID)
	[ "$pid0" -gt 1 ] 2>/dev/null || { echo "no MainPID"; return 1; }
	[ "$(awk '/^PPid:/ { print $2 }' "/proc/$pid0/status")" = 1 ] || { echo "MainPID $pid0's parent is $(awk '/^PPid:/ { print $2 }' "/proc/$pid0/status"), not PID 1"; return 1; }
	kill -KILL "$pid0"
	for i in $(seq 60); do
		pid1=$(prop MainPID)
		[ "$pid1" != "$pid0" ] && [ "$pid1" != 0 ] && [ "$(prop ActiveState)" = active ] && break
		sleep 0.5
	done
	[ "$pid1" != "$pid0" ] && [ "$pid1" != 0 ] && [ "$(prop ActiveState)" = active ] ||
		{ echo "after SIGKILL of MainPID $pid0: MainPID $pid1, $(prop ActiveState)/$(prop SubState), NRestarts $(prop NRestarts)"; return 1; }
	m=$(pubsub crash dev-sub dev-pub 127.0.0.1 2>&1) || { echo "no device after the restart: $m"; return 1; }
	echo "SIGKILL of the upgraded MainPID $pid0 (PPid 1): restarted as $pid1 (NRestarts $(prop NRestarts)), a device connects"
}
if out=$(upgrade_crash_check 2>&1); then pass "upgrade_crash ($(printf '%s' "$out" | tail -1))"; else fail upgrade_crash "$(printf '%s' "$out" | grep -v '^KGBOOT: ' | tail -3 | tr '\n' ';')"; fi
phase_time upgrade_crash

# --- upgrade_unit: the fallback. VERSION+test2's unit differs (test-boot.sh adds
# Environment=KG_BOOT_UNIT=test2): a takeover would keep the running unit's settings,
# so postinst restarts and says why; the new process has the new unit's environment,
# and the restart refuses no connect (the fd store holds the listeners) ---------------
upgrade_unit_check() {
	local pid0 pid1 ae0 ae1 rc said refused total
	pid0=$(prop MainPID)
	ae0=$(prop ActiveEnterTimestampMonotonic)
	connect_loop /tmp/loop-upgrade-unit.out &
	local loop=$!
	sleep 0.5
	dpkg -i /root/pkg/upgrade-unit.deb >/tmp/upgrade-unit.log 2>&1
	rc=$?
	wait_active 90
	sleep 0.5
	touch /tmp/loop.stop
	wait $loop
	pid1=$(prop MainPID)
	ae1=$(prop ActiveEnterTimestampMonotonic)
	said=$(grep '^ktlsgate: \(upgraded\|restarting\|not \)' /tmp/upgrade-unit.log | tr '\n' ';')
	refused=$(loop_count /tmp/loop-upgrade-unit.out refused)
	total=$(loop_count /tmp/loop-upgrade-unit.out all)
	[ $rc -eq 0 ] || { echo "dpkg -i: $(tail -3 /tmp/upgrade-unit.log | tr '\n' ';')"; return 1; }
	[ "$(dpkg-query -W -f='${Version}' ktlsgate)" = "$VERSION+test2" ] || { echo "version $(dpkg-query -W -f='${Version}' ktlsgate)"; return 1; }
	case $said in
	"ktlsgate: restarting: the unit or one of its drop-ins changed "*";") ;;
	*) echo "postinst said '$said', want one 'ktlsgate: restarting: the unit or one of its drop-ins changed ...' line"; return 1 ;;
	esac
	[ "$(prop ActiveState)" = active ] || { echo "not active after the upgrade: $(prop ActiveState)/$(prop Result)"; return 1; }
	[ "$pid1" != "$pid0" ] && [ "$ae1" != "$ae0" ] || { echo "MainPID $pid0 -> $pid1, ActiveEnterTimestampMonotonic $ae0 -> $ae1: not restarted"; return 1; }
	[ "$(journalctl -b --no-pager -o cat _PID="$pid0" | grep -c 'upgrade: started')" -eq 0 ] || { echo "pid $pid0 was asked to upgrade though the unit changed"; return 1; }
	tr '\0' '\n' <"/proc/$pid1/environ" | grep -qx 'KG_BOOT_UNIT=test2' || { echo "the new MainPID $pid1 lacks the new unit's KG_BOOT_UNIT=test2: the old unit's settings run"; return 1; }
	[ "$refused" -eq 0 ] || { echo "$refused of $total connects refused during the restart"; return 1; }
	[ -f "/var/lib/ktlsgate/registry.db.bak-$VERSION+test1" ] || { echo "no registry backup registry.db.bak-$VERSION+test1"; return 1; }
	echo "$VERSION+test1 -> $VERSION+test2 (unit changed): '${said%;}'; MainPID $pid0 -> $pid1 with KG_BOOT_UNIT=test2, $total connects and 0 refused, registry.db.bak-$VERSION+test1"
}
if out=$(upgrade_unit_check 2>&1); then pass "upgrade_unit ($(printf '%s' "$out" | tail -1))"; else fail upgrade_unit "$(printf '%s' "$out" | grep -v '^KGBOOT: ' | tail -3 | tr '\n' ';')"; fi
phase_time upgrade_unit

# --- purge --------------------------------------------------------------------------------
# The drop-in links are the operator's (this test's): removed first, as an operator would.
journalctl -u ktlsgated -b --no-pager >/tmp/ktlsgated.journal 2>&1
systemctl stop ktlsgated
rm -rf /etc/systemd/system/ktlsgated.service.d
dpkg -P ktlsgate >/tmp/purge.log 2>&1
prc=$?
systemctl daemon-reload
ls_=$(prop LoadState)
left=$(ls -d /etc/ktlsgate /var/lib/ktlsgate /run/ktlsgate /lib/systemd/system/ktlsgated.service \
	/etc/systemd/system/multi-user.target.wants/ktlsgated.service /usr/sbin/ktlsgated /usr/bin/ktlsgate \
	/usr/share/ktlsgate /sys/fs/bpf/ktlsgate 2>/dev/null | tr '\n' ' ')
st=$(dpkg-query -W -f='${Status}' ktlsgate 2>/dev/null)
if [ $prc -ne 0 ]; then fail purge "dpkg -P: $(tail -3 /tmp/purge.log | tr '\n' ';')"
elif [ -n "$st" ] && [ "$st" != "unknown ok not-installed" ]; then fail purge "status '$st'"
elif [ -n "$left" ]; then fail purge "left behind: $left"
elif [ "$ls_" != not-found ]; then fail purge "systemd still knows ktlsgated: LoadState=$ls_"
else pass "purge (config, state, unit, enablement link, binaries gone; LoadState=not-found)"; fi
phase_time purge

kgvm_export /tmp/ktlsgated.journal ktlsgated.journal
journalctl -b --no-pager -o short-monotonic >/tmp/boot.journal 2>&1
tail -400 /tmp/boot.journal >/tmp/boot-tail.journal
kgvm_export /tmp/boot-tail.journal boot.journal
say "done at $(up)s"
# Immediately (the logs are out; nothing to stop cleanly in a RAM root): qemu exits
# (-no-reboot). `systemctl poweroff --no-block` wants D-Bus, which the guest has not.
sync
systemctl --force --force poweroff
