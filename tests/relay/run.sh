#!/usr/bin/env bash
# tests/relay/run.sh - make check-sockmap: the plain sessions' relays (sockmap, splice,
# plain) on the host kernel, driven by kg-sockmap-check (tests/relay/kg_sockmap_check.c)
# exactly as the daemon calls them. Needs root (CAP_BPF to load bpf/sockmap.bpf.c) and
# a kernel with sockmap; without them it prints NOT RUN and fails (a skip is not a pass).
# Each kg-sockmap-check run prints PASS/FAIL lines, counted here, and STAT lines (CPU
# per GB, revocation latency) copied to the log and docs/architecture.md's numbers.
set -u
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
TOOL=$BUILD/kg-sockmap-check
pass=0
fail=0

finish() {
	echo "check-sockmap: $pass passed, $fail failed"
	[ "$fail" -eq 0 ] && [ "$pass" -gt 0 ]
	exit $?
}

if [ ! -x "$TOOL" ]; then
	echo "FAIL build: $TOOL missing (make $TOOL)"
	fail=$((fail + 1))
	finish
fi
if [ "$(id -u)" -ne 0 ] || ! grep -qw bpf /proc/filesystems 2>/dev/null; then
	echo "NOT RUN check-sockmap: needs root and a kernel with BPF (uid $(id -u))"
	fail=$((fail + 1))
	finish
fi

run() {
	local out rc
	out=$("$TOOL" "$@" 2>"$BUILD/kg-sockmap-check.err")
	rc=$?
	printf '%s\n' "$out" | grep -E '^(PASS|FAIL|STAT)'
	pass=$((pass + $(printf '%s\n' "$out" | grep -c '^PASS')))
	fail=$((fail + $(printf '%s\n' "$out" | grep -c '^FAIL')))
	if [ "$rc" -ne 0 ]; then
		head -20 "$BUILD/kg-sockmap-check.err"
		if ! printf '%s\n' "$out" | grep -q '^FAIL'; then
			echo "FAIL $1 $2: kg-sockmap-check exited $rc without a verdict"
			fail=$((fail + 1))
		fi
	fi
}

start=$(date +%s)
# byte-exact, half-close order, counters, the relay chosen: thousands of sessions
run exact sockmap 2000 64
run exact splice 500 32            # the program not loaded: splice
run exact plain 500 32             # no program, no pipes: the user-space copy
run exact cfg-userspace 300 32     # program loaded, `relay = userspace`: plain
# revocation cuts within 100 ms; the steady state costs the daemon nothing
run revoke 50
# without capabilities the program does not load, and says why
run nocaps
# bytes queued before the insert are relayed at once (the SO_RCVLOWAT kick)
run queued 200
# CPU per GB, large sessions (each direction 16..32 MiB), one relay after the other
for m in sockmap splice plain; do
	run exact "$m" 8 8 32768
done
echo "check-sockmap: $(( $(date +%s) - start )) s"
finish
