#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# run.sh --kernel NAME --suite DIR [options] - boot Debian's kernel NAME (bookworm |
# trixie) under qemu TCG with an initramfs holding the suite, and report its results.
#
#   --bins "B..."    binaries for the guest (/usr/local/bin), with their libraries
#   --data DIR       files for the guest tests (/kgvm/data); DIR/host-prep.sh is not
#                    special, but SUITE/host-prep.sh, if present, is run on the host as
#                    `host-prep.sh DATA_COPY` before the initramfs is made (PKI, configs)
#   --env K=V        a variable for the guest tests (repeatable)
#   --file SRC[:DST] one more file in the guest (repeatable)
#   --only "t-a t-b" run only those tests
#   --timeout S      whole-guest time limit (default 600); per test: KGVM_TEST_TIMEOUT
#                    via --env, or "# kgvm-timeout: N" in the test
#   --out DIR        where files the guest exports (kgvm_export) go (default WORK/out)
#   --work DIR       work dir (default build/vm/SUITE-NAME); holds console.log
#   --allow-skip     skipped tests do not fail the run (they are still reported)
#   --verbose        stream the guest console while it runs
# The guest speaks a line protocol on the serial console (see guest-runner.sh). Exit
# status 0 only if the guest said "done", at least one test ran, every test was ok (or
# skipped, with --allow-skip) and the kernel neither panicked nor oopsed.
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(cd "$HERE/../.." && pwd)
. "$TOP/tests/lib/qemu-boot.sh"
KNAME="" SUITE="" BINS="" DATA="" TIMEOUT=600 OUT="" WORK="" ALLOW_SKIP="" VERBOSE="" ONLY=""
MEM=${KG_VM_MEM:-2048} SMP=${KG_VM_SMP:-2}
ENVS=() FILES=()
usage() { sed -n '3,21p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
while [ $# -gt 0 ]; do
	case $1 in
	--kernel) KNAME=$2; shift ;;
	--suite) SUITE=$2; shift ;;
	--bins) BINS=$2; shift ;;
	--data) DATA=$2; shift ;;
	--env) ENVS+=("$2"); shift ;;
	--file) FILES+=("$2"); shift ;;
	--only) ONLY=$2; shift ;;
	--timeout) TIMEOUT=$2; shift ;;
	--out) OUT=$2; shift ;;
	--work) WORK=$2; shift ;;
	--allow-skip) ALLOW_SKIP=1 ;;
	--verbose) VERBOSE=1 ;;
	-h | --help) usage ;;
	*) echo "run.sh: unknown argument $1" >&2; usage ;;
	esac
	shift
done
if [ -z "$KNAME" ] || [ -z "$SUITE" ]; then usage; fi
[ -d "$SUITE" ] || { echo "run.sh: suite dir $SUITE not found" >&2; exit 2; }
SUITE=$(cd "$SUITE" && pwd)
tag="vm[$KNAME]"
now() { date +%s.%N; }
dt() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

t_start=$(now)
kver=$("$HERE/fetch-kernel.sh" "$KNAME") || { echo "$tag: FAIL: cannot get the $KNAME kernel"; exit 1; }
CACHE=${KG_VM_CACHE:-/var/tmp/ktlsgate-vm}
kdir="$CACHE/$KNAME-$kver"
t_fetch=$(now)

WORK=${WORK:-$TOP/build/vm/$(basename "$SUITE")-$KNAME}
rm -rf "$WORK"
mkdir -p "$WORK/data"
OUT=${OUT:-$WORK/out}
mkdir -p "$OUT"
if [ -n "$DATA" ]; then
	cp -a "$DATA"/. "$WORK/data/" || exit 1
fi
if [ -x "$SUITE/host-prep.sh" ]; then
	if ! KGVM_KERNEL=$KNAME KGVM_KVER=$kver "$SUITE/host-prep.sh" "$WORK/data" >"$WORK/host-prep.log" 2>&1; then
		cat "$WORK/host-prep.log"
		echo "$tag: FAIL: $SUITE/host-prep.sh failed"
		exit 1
	fi
fi
margs=(-k "$kdir" -o "$WORK/initramfs.cpio" -s "$SUITE" -d "$WORK/data")
for e in "${ENVS[@]+"${ENVS[@]}"}"; do margs+=(-e "$e"); done
[ -n "$ONLY" ] && margs+=(-e "KGVM_ONLY=$ONLY")
for f in "${FILES[@]+"${FILES[@]}"}"; do margs+=(-f "$f"); done
# shellcheck disable=SC2086 # a list of paths
if ! "$HERE/mkinitramfs.sh" "${margs[@]}" $BINS; then
	echo "$tag: FAIL: initramfs not built"
	exit 1
fi
t_initrd=$(now)

# The bare ELF kernel boots ~3 s sooner than the bzImage (no self-inflation under TCG).
kimg="$kdir/vmlinuz"
[ -s "$kdir/vmlinux" ] && [ "${KG_VM_BOOT:-}" != bzimage ] && kimg="$kdir/vmlinux"
LOG="$WORK/console.log"
: >"$LOG"
trap qemu_boot_stop EXIT
trap 'echo "$tag: interrupted"; exit 130' INT TERM
# A kernel that oopses while it boots, before our init prints its first "KGVM:" line, is
# the emulator's, not the code under test, which has not run: qemu_boot boots once more
# and says so. KG_VM_FIRST_APPEND goes on the first boot's command line only (e.g.
# "init=/nonexistent rdinit=/nonexistent" panics at once: a way to see that work).
C="$WORK/console.txt"
qemu_boot --console "$LOG" --console-text "$C" --qemu-log "$WORK/qemu.log" \
	--timeout "$TIMEOUT" --kill-after 5 --append "console=ttyS0 panic=-1 quiet ${KG_VM_APPEND:-}" \
	--first-append "${KG_VM_FIRST_APPEND:-}" --marker '^KGVM: ' --marker-what "init ran" \
	--label "$tag" ${VERBOSE:+--verbose} \
	-- -m "$MEM" -smp "$SMP" -kernel "$kimg" -initrd "$WORK/initramfs.cpio"
qrc=$?
t_qemu=$(now)

# Files the guest exported (kgvm_export), into --out.
export_bad=0
while read -r verdict name; do
	if [ "$verdict" = ok ]; then
		echo "$tag: exported $OUT/$name ($(stat -c %s "$OUT/$name") bytes)"
	else
		echo "$tag: FAIL: exported file $name arrived corrupted"
		export_bad=$((export_bad + 1))
	fi
done < <(qemu_boot_exports "$C" "$OUT")

gkver=$(sed -n 's/.*KGVM: kernel //p' "$C" | head -1)
echo "$tag: guest kernel ${gkver:-unknown} (Debian $KNAME, cache $kdir)"
sed -n 's/^KGVM: \(modules loaded.*\)/'"$tag"': \1/p' "$C"
grep -E '^KGVM: (ok|not ok|skip) ' "$C" | sed "s/^KGVM: /$tag: /"
n_ok=$(grep -c '^KGVM: ok ' "$C")
n_fail=$(grep -c '^KGVM: not ok ' "$C")
n_skip=$(grep -c '^KGVM: skip ' "$C")
done_seen=$(grep -c '^KGVM: done' "$C")

# Output of the tests that did not pass, so a failure explains itself.
while read -r name; do
	echo "--- $tag: output of $name (last 60 lines)"
	grep -F "[$name] " "$C" | tail -60
done < <(sed -n 's/^KGVM: \(not ok\|skip\) \([^ ]*\).*/\2/p' "$C")

problems=()
running=$(sed -n 's/^KGVM: begin //p' "$C" | tail -1)
if [ "$qrc" = 124 ] || [ "$qrc" = 137 ]; then
	problems+=("guest timed out after ${TIMEOUT}s and was killed${running:+ (last test started: $running)}")
elif [ "$qrc" != 0 ]; then
	problems+=("qemu exited with status $qrc: $(tail -3 "$WORK/qemu.log" | tr '\n' ' ')")
fi
if grep -qE 'Kernel panic|BUG: |Oops: |general protection fault|WARNING: CPU: |Call Trace:' "$C"; then
	problems+=("the guest kernel panicked, oopsed or warned: $(grep -m1 -E 'Kernel panic|BUG: |Oops: |general protection fault|WARNING: CPU: |Call Trace:' "$C")")
fi
[ "$done_seen" -gt 0 ] || problems+=("the guest never said done${running:+ (last test started: $running)}")
[ $((n_ok + n_fail + n_skip)) -gt 0 ] || [ "$done_seen" = 0 ] || problems+=("no test ran")
[ "$export_bad" = 0 ] || problems+=("$export_bad exported file(s) corrupted")
if [ "${#problems[@]}" -gt 0 ]; then
	echo "--- $tag: last 40 console lines ($LOG)"
	tail -40 "$C"
	echo "---"
	for p in "${problems[@]}"; do echo "$tag: FAIL: $p"; done
fi

ready=$(sed -n 's/^KGVM: userspace ready at \([0-9.]*\)s/\1/p' "$C" | head -1)
up=$(sed -n 's/^KGVM: guest uptime \([0-9.]*\)s/\1/p' "$C" | head -1)
suite_s=$([ -n "$ready" ] && [ -n "$up" ] && dt "$ready" "$up" || echo "?")
echo "$tag: $n_ok ok, $n_fail not ok, $n_skip skipped;" \
	"times: kernel $(dt "$t_start" "$t_fetch")s, initramfs $(dt "$t_fetch" "$t_initrd")s" \
	"($(du -k "$WORK/initramfs.cpio" | cut -f1) KiB), qemu $(dt "$t_initrd" "$t_qemu")s" \
	"(guest boot to init ${ready:-?}s, suite ${suite_s}s), total $(dt "$t_start" "$t_qemu")s"

[ "${#problems[@]}" = 0 ] || exit 1
[ "$n_fail" = 0 ] || exit 1
if [ "$n_skip" -gt 0 ] && [ -z "$ALLOW_SKIP" ]; then
	echo "$tag: FAIL: $n_skip test(s) skipped (a skip is not a pass; --allow-skip to accept)"
	exit 1
fi
exit 0
