# SPDX-License-Identifier: BSD-2-Clause
# shellcheck shell=sh
# guest-runner.sh SUITE_DIR - run inside the guest (busybox sh) by /init.
#
# Runs every executable t-*.sh of SUITE_DIR in name order, each in its own process group
# under its own time limit (KGVM_TEST_TIMEOUT seconds, default 120, or a
# "# kgvm-timeout: N" line in the test), shows its output prefixed with "[name] ", then
# kills whatever the test left running. Prints the line protocol run.sh parses:
#   KGVM: begin NAME | KGVM: ok NAME | KGVM: not ok NAME REASON | KGVM: skip NAME REASON
#   KGVM: done
# KGVM_ONLY="t-10-x t-20-y" runs only those tests.

suite=${1:?suite dir}
. /kgvm/guest-lib.sh
tmp=${KGVM_OUT:-/tmp/kgvm}
mkdir -p "$tmp"

verdict() {
	echo "KGVM: $*" >/dev/console
}

for t in "$suite"/t-*.sh; do
	[ -f "$t" ] || continue
	name=$(basename "$t" .sh)
	if [ -n "${KGVM_ONLY:-}" ]; then
		case " $KGVM_ONLY " in *" $name "*) ;; *) continue ;; esac
	fi
	if [ ! -x "$t" ]; then
		echo "[runner] $name is not executable: not run"
		continue
	fi
	limit=$(sed -n 's/^# kgvm-timeout: *\([0-9][0-9]*\).*/\1/p' "$t" | head -1)
	limit=${limit:-${KGVM_TEST_TIMEOUT:-120}}
	reason="$tmp/$name.reason"
	fifo="$tmp/$name.fifo"
	rm -f "$reason" "$fifo" "$tmp/$name.timeout"
	mkfifo "$fifo"
	verdict "begin $name"
	start=$(cut -d' ' -f1 /proc/uptime)

	sed "s/^/[$name] /" <"$fifo" &
	sedpid=$!
	# Not a group leader (no job control here), so setsid execs in place: the pid is
	# also the process group of everything the test starts.
	(cd "$tmp" && KGVM_TEST=$name KGVM_REASON=$reason exec setsid "$t") >"$fifo" 2>&1 </dev/null &
	pid=$!
	(
		sleep "$limit"
		touch "$tmp/$name.timeout"
		kill -KILL -"$pid" 2>/dev/null
	) &
	dog=$!
	wait "$pid"
	rc=$?
	kill -KILL -"$pid" 2>/dev/null
	kill "$dog" 2>/dev/null
	wait "$dog" 2>/dev/null
	wait "$sedpid"
	rm -f "$fifo"
	secs=$(awk -v s="$start" '{ printf "%.1f", $1 - s }' /proc/uptime)

	why=""
	[ -f "$reason" ] && why=$(grep '^fail ' "$reason" | head -1 | cut -d' ' -f2-)
	if [ -f "$tmp/$name.timeout" ]; then
		verdict "not ok $name timed out after ${limit}s"
	elif [ -n "$why" ]; then
		verdict "not ok $name $why (${secs}s)"
	elif [ "$rc" = 77 ]; then
		why=$(grep '^skip ' "$reason" 2>/dev/null | head -1 | cut -d' ' -f2-)
		verdict "skip $name ${why:-no reason given} (${secs}s)"
	elif [ "$rc" = 0 ]; then
		verdict "ok $name (${secs}s)"
	else
		verdict "not ok $name exit status $rc (${secs}s)"
	fi
done
verdict "done"
