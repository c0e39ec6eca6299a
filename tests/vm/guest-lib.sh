# SPDX-License-Identifier: BSD-2-Clause
# shellcheck shell=sh
# guest-lib.sh - helpers for guest tests (busybox sh, sourced: . "$KGVM_LIB").
#
# A test is an executable t-*.sh in the suite directory, run by guest-runner.sh with
# its own time limit in its own process group (everything it leaves running is killed
# afterwards). Its verdict: exit 0 = ok, `skip REASON` (exit 77) = skip, `fail REASON`
# or any other exit status = not ok. A fail recorded in a subshell still counts, because
# the reason goes to $KGVM_REASON, which the runner reads. Environment: KGVM_SUITE,
# KGVM_DATA (the host's data dir), KGVM_OUT (scratch dir), KGVM_TEST (test name).

# note MSG: a line in the console log (the runner prefixes it with the test name).
note() { echo "$*"; }

# fail MSG: not ok, with a reason (also when called in a subshell).
fail() {
	echo "FAIL: $*"
	echo "fail $*" >>"${KGVM_REASON:-/dev/null}"
	exit 1
}

# skip MSG: the test cannot run here; the host counts it separately (and as a failure
# unless --allow-skip).
skip() {
	echo "SKIP: $*"
	echo "skip $*" >>"${KGVM_REASON:-/dev/null}"
	exit 77
}

# ok [MSG]: end the test successfully.
ok() {
	[ $# -gt 0 ] && echo "OK: $*"
	exit 0
}

# check COND-COMMAND... : run a command, fail with the command as reason if it fails.
check() {
	"$@" || fail "check failed: $*"
}

# expect_eq GOT WANT WHAT
expect_eq() {
	[ "$1" = "$2" ] || fail "$3: got '$1', want '$2'"
}

# kgvm_export FILE [NAME]: copy a guest file to the host's --out dir (as NAME, default
# the file's base name). Goes straight to the console, base64, with a checksum the host
# verifies, so keep other writers quiet while it runs.
kgvm_export() {
	_f=$1
	_n=${2:-$(basename "$1")}
	[ -f "$_f" ] || fail "kgvm_export: no file $_f"
	_sum=$(sha256sum "$_f" | cut -d' ' -f1)
	{
		echo "KGVM: file $_n"
		base64 "$_f" | sed 's/^/KGVM:b /'
		echo "KGVM: end $_sum"
	} >/dev/console
}

# wait_port PORT [SECONDS]: until a TCP socket listens on PORT (any address), by
# reading /proc/net/tcp{,6} so nothing connects to the server.
wait_port() {
	_hex=$(printf '%04X' "$1")
	_i=0
	_max=$((${2:-10} * 10))
	while [ $_i -lt $_max ]; do
		if cat /proc/net/tcp /proc/net/tcp6 2>/dev/null |
			awk -v p=":$_hex" '$4 == "0A" && substr($2, length($2) - 4) == p { f = 1 } END { exit !f }'; then
			return 0
		fi
		sleep 0.1
		_i=$((_i + 1))
	done
	return 1
}

# start_broker: mosquitto on 127.0.0.1:1883 (plain; the gateway's backend, and the
# benches' broker).
start_broker() {
	cat >/tmp/mosq.conf <<EOC
listener 1883 127.0.0.1
allow_anonymous true
max_inflight_messages 0
max_queued_messages 100000
EOC
	mosquitto -c /tmp/mosq.conf >/tmp/mosq.log 2>&1 &
	wait_port 1883 20 || fail "mosquitto did not start: $(tail -3 /tmp/mosq.log)"
}

# tls_stat NAME: the value of a /proc/net/tls_stat counter (e.g. TlsTxSw); returns 1
# (prints nothing) if the kernel has no such counter.
tls_stat() {
	awk -v n="$1" '$1 == n { print $2; f = 1 } END { exit !f }' /proc/net/tls_stat 2>/dev/null
}

# tls_stat_has NAME: the kernel has that counter.
tls_stat_has() {
	tls_stat "$1" >/dev/null
}

# rand_file PATH BYTES: a file of random bytes.
rand_file() {
	head -c "$2" /dev/urandom >"$1"
}

# file_sum PATH: its sha256.
file_sum() {
	sha256sum "$1" | cut -d' ' -f1
}
