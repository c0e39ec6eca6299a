# SPDX-License-Identifier: BSD-2-Clause
# shellcheck shell=bash
# tests/lib/qemu-boot.sh - the host side of a guest harness's qemu boot, shared by
# tests/vm/run.sh and tests/packaging/test-boot.sh (sourced; bash, set -u safe).
#
# qemu_boot OPTIONS -- QEMU_ARGS...: boot qemu-system-x86_64 under TCG (-cpu max, no
#   network, no monitor, no reboot; the serial console to --console) with the caller's
#   QEMU_ARGS (-kernel, -initrd, -m, -smp, devices), under timeout -k; return timeout's
#   status (124 or 137: the guest ran out of time). A first boot whose console shows a
#   kernel panic, BUG, oops or GPF and no line matching --marker failed before the
#   caller's code ran: it is said on stdout ("LABEL: the guest kernel failed before
#   WHAT (LINE): booting again (console of the first boot: DIR/console-boot1.log)"),
#   its console kept as console-boot1.log beside --console, and qemu boots once more.
#   While qemu runs, QEMU_BOOT_PID (timeout's) and QEMU_BOOT_TAIL_PID (--verbose's tail)
#   are set: the caller's EXIT/INT/TERM trap must call qemu_boot_stop.
# qemu_console_text LOG: the console without CRs and terminal escape sequences.
# qemu_boot_exports TEXT DIR: decode the files the guest exported (kgvm_export) into DIR.

# Lines of a kernel that failed; the callers' own verdicts have their own lists.
QEMU_BOOT_KERNEL_FAILED='Kernel panic|BUG: |Oops: |general protection fault'
QEMU_BOOT_PID="" QEMU_BOOT_TAIL_PID=""

# qemu_boot's options (each takes a value unless said):
#   --console LOG        the serial console, emptied before each boot
#   --console-text TXT   LOG as text (qemu_console_text), written after each boot
#   --qemu-log FILE      qemu's own stdout and stderr
#   --timeout S          each boot's time limit; --kill-after S (5): SIGKILL that much
#                        later if qemu ignored the TERM
#   --append LINE        the kernel's command line
#   --first-append MORE  goes last on the command line of the first boot only: a way to
#                        make it fail (e.g. "init=/nonexistent rdinit=/nonexistent") and
#                        see the second boot happen
#   --marker ERE         a console line matching it: the caller's code had started, so a
#                        failure is the caller's to judge and no boot is repeated
#   --marker-what TEXT   what such a line means, for the message ("init ran")
#   --label TEXT         the message's prefix ("vm[trixie]")
#   (--console, --console-text, --qemu-log, --timeout and --marker are required)
#   --hook FUNCTION      called as FUNCTION before ATTEMPT and FUNCTION after ATTEMPT
#                        around each boot (test-boot.sh: swtpm, which exits with qemu)
#   --verbose            (no value) stream the console to stdout while qemu runs
qemu_boot() {
	local console="" console_text="" qemu_log="" time_limit="" kill_after=5 append=""
	local first_append="" marker="" marker_what="its first marker line" label=qemu_boot
	local hook="" verbose=""
	while [ $# -gt 0 ] && [ "$1" != -- ]; do
		case $1 in
		--verbose) verbose=1; shift; continue ;;
		--console | --console-text | --qemu-log | --timeout | --kill-after | --append | \
			--first-append | --marker | --marker-what | --label | --hook)
			[ $# -ge 2 ] || { echo "qemu_boot: $1 needs a value" >&2; return 2; } ;;
		*) echo "qemu_boot: unknown option $1" >&2; return 2 ;;
		esac
		case $1 in
		--console) console=$2 ;;
		--console-text) console_text=$2 ;;
		--qemu-log) qemu_log=$2 ;;
		--timeout) time_limit=$2 ;;
		--kill-after) kill_after=$2 ;;
		--append) append=$2 ;;
		--first-append) first_append=$2 ;;
		--marker) marker=$2 ;;
		--marker-what) marker_what=$2 ;;
		--label) label=$2 ;;
		--hook) hook=$2 ;;
		esac
		shift 2
	done
	if [ $# -gt 0 ]; then shift; fi   # the --
	if [ -z "$console" ] || [ -z "$console_text" ] || [ -z "$qemu_log" ] ||
		[ -z "$time_limit" ] || [ -z "$marker" ]; then
		echo "qemu_boot: --console, --console-text, --qemu-log, --timeout and --marker are required" >&2
		return 2
	fi
	local attempt status more failed_line
	for attempt in 1 2; do
		more=""
		if [ "$attempt" = 1 ]; then more=$first_append; fi
		[ -z "$hook" ] || "$hook" before "$attempt"
		: >"$console"
		timeout -k "$kill_after" "$time_limit" qemu-system-x86_64 -accel tcg -cpu max \
			-nographic -no-reboot -nic none -monitor none -serial "file:$console" "$@" \
			-append "$append${more:+ $more}" </dev/null >"$qemu_log" 2>&1 &
		QEMU_BOOT_PID=$!
		if [ -n "$verbose" ]; then
			tail -n +1 -f --pid="$QEMU_BOOT_PID" "$console" &
			QEMU_BOOT_TAIL_PID=$!
		fi
		wait "$QEMU_BOOT_PID"
		status=$?
		QEMU_BOOT_PID=""
		# tail --pid ends by itself once qemu is gone, after printing the last lines.
		[ -z "$QEMU_BOOT_TAIL_PID" ] || wait "$QEMU_BOOT_TAIL_PID" 2>/dev/null
		QEMU_BOOT_TAIL_PID=""
		[ -z "$hook" ] || "$hook" after "$attempt"
		qemu_console_text "$console" >"$console_text"

		# Only a failure before the caller's first marker line is the emulator's (an SMP
		# text-patching int3 under TCG was seen once in trixie's kernel at 1.7 s): the code
		# under test had not run. Anything later counts as it is, and so does a second
		# failure.
		[ "$attempt" = 1 ] || break
		grep -aqE "$marker" "$console_text" && break
		failed_line=$(grep -a -m1 -E "$QEMU_BOOT_KERNEL_FAILED" "$console_text") || break
		echo "$label: the guest kernel failed before $marker_what ($failed_line): booting again (console of the first boot: $(dirname "$console")/console-boot1.log)"
		cp "$console" "$(dirname "$console")/console-boot1.log"
	done
	return "$status"
}

# qemu_boot_stop: end the boot qemu_boot is waiting for (from the caller's trap).
qemu_boot_stop() {
	# timeout forwards the TERM to qemu and waits for it.
	if [ -n "$QEMU_BOOT_PID" ] && kill -TERM "$QEMU_BOOT_PID" 2>/dev/null; then
		wait "$QEMU_BOOT_PID" 2>/dev/null
	fi
	[ -z "$QEMU_BOOT_TAIL_PID" ] || kill "$QEMU_BOOT_TAIL_PID" 2>/dev/null
	QEMU_BOOT_PID="" QEMU_BOOT_TAIL_PID=""
	return 0
}

# qemu_console_text LOG: LOG without the firmware's and the tty's decorations (CR at line
# ends, escape sequences), so that protocol lines start at the start of a line.
qemu_console_text() {
	sed -e 's/\r$//' -e 's/\x1b\[[0-9;?]*[A-Za-z]//g' -e 's/\x1bc//g' "$1"
}

# qemu_boot_exports TEXT DIR: the files the guest exported with tests/vm/guest-lib.sh's
# kgvm_export ("KGVM: file NAME", "KGVM:b <base64>"..., "KGVM: end SHA256" in the
# console TEXT), decoded into DIR/NAME (characters of NAME outside [A-Za-z0-9._+-] as
# _). One line per file on stdout: "ok NAME", or "corrupt NAME" when its checksum does
# not match (the file is not kept); status 1 when one was corrupt.
qemu_boot_exports() {
	local text=$1 dir=$2 scratch name sum corrupt=0
	scratch=$(mktemp -d "${TMPDIR:-/tmp}/kg-exports.XXXXXX") || return 1
	mkdir -p "$scratch/b64" "$dir"
	awk -v dir="$scratch/b64" '
		/^KGVM: file / { name = $3; gsub(/[^A-Za-z0-9._+-]/, "_", name); f = dir "/" name; printf "" > f; next }
		/^KGVM:b / && f != "" { print substr($0, 8) > f; next }
		/^KGVM: end / && f != "" { close(f); print name, $3; f = "" }
	' "$text" >"$scratch/list"
	while read -r name sum; do
		if base64 -d "$scratch/b64/$name" >"$dir/$name" 2>/dev/null &&
			[ "$(sha256sum "$dir/$name" | cut -d' ' -f1)" = "$sum" ]; then
			echo "ok $name"
		else
			rm -f "$dir/$name"
			echo "corrupt $name"
			corrupt=1
		fi
	done <"$scratch/list"
	rm -rf "$scratch"
	return "$corrupt"
}
