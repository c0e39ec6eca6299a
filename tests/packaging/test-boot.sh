#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# test-boot.sh --suite bookworm|trixie --deb PATH [--keep] [--verbose] - the package
# booted: a root of SUITE with the .deb installed boots under qemu (TCG) with systemd as
# PID 1 and Debian's own kernel of SUITE, and checks the unit (issue 12, "How it is
# tested"; docs/packaging.md, "Boot test").
#
# Checks (PASS name / FAIL name: why; one boot per suite for all the guest ones):
#   host   guest_root  the cached root of SUITE with systemd, mosquitto, ... and the
#                      .deb's Depends (boot/lib.sh guest_tarball)
#          install     dpkg -i of the .deb in that root (chroot, no network, no start)
#          provision   test PKI, CA proven by the ktlsgate user, 4 devices; ktlsgated -t
#   guest  ready        Type=notify reached active, MainPID runs as ktlsgate, STATUS= set
#          ktls_module  the tls module is loaded after boot (else: modprobe, restart)
#          device       mosquitto_pub -> gateway :8883 -> mosquitto -> mosquitto_sub
#          ktls         the session's data path is kTLS, tls_stat rose, the TLS 1.3
#                       receive key installed by the daemon (OpenSSL 3.0) or OpenSSL (3.5)
#          reload       systemctl reload keeps MainPID, the session and its traffic
#          restart      systemctl restart: a connect loop through it is never refused
#                       (the listeners wait in systemd's fd store), a live kTLS
#                       subscriber relays on over the same connection (its session
#                       waits in the store too), a device connects
#          takeover     ktlsgate upgrade under the unit: the successor is MainPID (its
#                       user, no capability), a live kTLS subscriber keeps its
#                       connection, no connect refused, the watchdog is fed
#          xdp          edge.conf: CapEff, the gate drops a denied source from a netns;
#                       ktlsgate upgrade refuses (the successor cannot load the gate)
#          block        ktlsgate block add/list/remove under the unit (via the daemon)
#          tpm_provider the package pulls in tpm2-openssl
#          tpm          tpm.conf: server key made in swtpm's TPM, seen by the client
#          upgrade      dpkg -i VERSION+test1 under the unit (the XDP gate on) keeps
#                       registry and config and replaces the daemon in place: postinst
#                       says so, the unit never leaves active, MainPID moves to the
#                       successor, the old pid drains and exits, none of a connect
#                       loop's attempts is refused, a live kTLS subscriber keeps its
#                       connection, the same XDP program stays on kg0
#          upgrade_crash SIGKILL of the successor (PPid 1 by then): systemd sees it and
#                       Restart=on-failure brings the daemon back
#          upgrade_unit dpkg -i VERSION+test2, whose unit differs: postinst restarts
#                       instead and says why, the new MainPID has the new unit's
#                       environment, no connect refused
#          purge        dpkg -P leaves no config, state or unit
#   host   boot         the guest said done, every check gave a verdict, no oops
# (boot/checks.sh and docs/packaging.md, "Boot test", say how.) A check that cannot run
# here (no swtpm: tpm) is a FAIL with its reason.
#
# Caches: the root under $KG_FRESH_CACHE (/var/cache/ktlsgate-fresh), the kernel and its
# .deb under $KG_VM_CACHE (/var/tmp/ktlsgate-vm; tests/vm/fetch-kernel.sh). qemu runs
# under flock /tmp/kg-vm.lock. Output in $BUILD/boot/SUITE: console.log, exports
# (ktlsgated.journal, boot.journal), the logs of each host phase.
# Environment: BUILD (build), KG_BOOT_TIMEOUT (guest time limit, 1500 s), KG_BOOT_SWTPM
# (the swtpm to run, default swtpm from PATH; a missing one fails tpm with the reason).
set -u
TOP=$(cd "$(dirname "$0")/../.." && pwd)
cd "$TOP" || exit 1
BUILD=${BUILD:-build}
. "$TOP/tests/packaging/lib.sh"
. "$TOP/tests/packaging/boot/lib.sh"
. "$TOP/tests/lib/qemu-boot.sh"
SUITE="" DEB="" KEEP="" VERBOSE=""
while [ $# -gt 0 ]; do
	case $1 in
	--suite) SUITE=$2; shift ;;
	--deb) DEB=$2; shift ;;
	--keep) KEEP=1 ;;
	--verbose) VERBOSE=1 ;;
	*) sed -n '3,5p' "$0" | sed 's/^# //'; exit 2 ;;
	esac
	shift
done
case $SUITE in bookworm | trixie) ;; *) echo "test-boot.sh: --suite bookworm|trixie" >&2; exit 2 ;; esac
CACHE=${KG_FRESH_CACHE:-/var/cache/ktlsgate-fresh}
VMCACHE=${KG_VM_CACHE:-/var/tmp/ktlsgate-vm}
WORKBASE=${KG_PKG_WORK:-/var/tmp/ktlsgate-pkg}
T_GUEST=${KG_BOOT_TIMEOUT:-1500}
OUT="$TOP/$BUILD/boot/$SUITE"
ROOT="" SWPID=""
phase() { local t; t=$(date +%s); log "phase $1: $((t - TP)) s"; TP=$t; }

cleanup() {
	qemu_boot_stop
	[ -n "$SWPID" ] && kill "$SWPID" 2>/dev/null
	SWPID=""
	[ -n "$ROOT" ] && [ -d "$ROOT" ] || return 0
	if awk -v r="$ROOT/" 'index($5 "/", r) == 1 { f = 1 } END { exit !f }' /proc/self/mountinfo; then
		log "$ROOT still has mounts; not removing it"
	elif [ -n "$KEEP" ]; then
		log "kept $ROOT"
	else
		rm -rf --one-file-system "$ROOT"
	fi
}
pkg_checks "boot[$SUITE]"
TP=$T0

[ "$(id -u)" -eq 0 ] || abort setup "needs root (chroot, namespaces, dpkg inside the root)"
for t in qemu-system-x86_64 debootstrap unshare cpio zstd dpkg-deb flock; do
	command -v "$t" >/dev/null || abort setup "$t is missing"
done
if [ -z "$DEB" ] || [ ! -f "$DEB" ]; then abort setup "no .deb given (--deb PATH): '$DEB'"; fi
DEB=$(cd "$(dirname "$DEB")" && pwd)/$(basename "$DEB")
rm -rf "$OUT"
mkdir -p "$OUT" "$CACHE" "$WORKBASE" || abort setup "cannot create $OUT, $CACHE or $WORKBASE"
ARCH=$(dpkg --print-architecture)
VERSION=$(dpkg-deb -f "$DEB" Version)
log "testing $(basename "$DEB") ($VERSION) on $SUITE; output in $OUT"

# --- the guest root (cached) and the kernel ---------------------------------------------
guest_tarball "$SUITE" "$ARCH" "$DEB"
pass "guest_root ($(basename "$GUEST"), $(du -m "$GUEST" | cut -f1) MB)"
phase guest_root
KVER=$("$TOP/tests/vm/fetch-kernel.sh" "$SUITE" 2>"$OUT/fetch-kernel.log") || abort kernel "tests/vm/fetch-kernel.sh $SUITE failed: $(tail -2 "$OUT/fetch-kernel.log" | tr '\n' ';')"
KDIR="$VMCACHE/$SUITE-$KVER"
KIMG="$KDIR/vmlinux"
[ -s "$KIMG" ] || KIMG="$KDIR/vmlinuz"
KDEB=$(find "$VMCACHE/debs" -maxdepth 1 -name "linux-image-${KVER}_*.deb" 2>/dev/null | sort | head -1)
# fetch-kernel.sh keeps the .deb; a cache entry without it is refetched by removing it.
[ -f "$KDEB" ] || abort kernel "no linux-image-$KVER .deb in $VMCACHE/debs (rm -rf $KDIR $VMCACHE/$SUITE.current to fetch it again)"
MODS=$(boot_modules "$KVER" "$KDEB") || abort kernel "cannot extract the modules of $KVER from $KDEB"
phase kernel

# --- the root: install, provision, modules ------------------------------------------------
ROOT=$(mktemp -d "$WORKBASE/bootroot.XXXXXX") || abort install "mktemp failed"
tar -C "$ROOT" --numeric-owner --zstd -xpf "$GUEST" || abort install "cannot unpack $GUEST"
chmod 755 "$ROOT"
printf '#!/bin/sh\n# test-boot: no service starts in the chroot\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
chmod 755 "$ROOT/usr/sbin/policy-rc.d"
mkdir -p "$ROOT/root/pkg" "$ROOT/usr/local/lib/kg-boot"
cp "$DEB" "$ROOT/root/pkg/"
# The upgrade: the same package as VERSION+test1 (the maintainer scripts are what an
# upgrade exercises), as test-deb.sh makes it.
rp=$(mktemp -d "$WORKBASE/repack.XXXXXX")
if ! { dpkg-deb -R "$DEB" "$rp/p" && sed -i "s/^Version: .*/Version: $VERSION+test1/" "$rp/p/DEBIAN/control" &&
	dpkg-deb --root-owner-group -b "$rp/p" "$ROOT/root/pkg/upgrade.deb" >/dev/null; }; then
	abort install "cannot repack $DEB as $VERSION+test1"
fi
rm -rf "$rp"
# The fallback: VERSION+test2 with a changed unit (one Environment= line more, which the
# guest reads back from the restarted daemon), so that postinst must restart.
rp=$(mktemp -d "$WORKBASE/repack.XXXXXX")
if ! { dpkg-deb -R "$ROOT/root/pkg/upgrade.deb" "$rp/p" && sed -i "s/^Version: .*/Version: $VERSION+test2/" "$rp/p/DEBIAN/control" &&
	u=$(find "$rp/p" -path '*/systemd/system/ktlsgated.service') && [ -n "$u" ] &&
	sed -i '/^\[Service\]$/a Environment=KG_BOOT_UNIT=test2' "$u" && grep -qx 'Environment=KG_BOOT_UNIT=test2' "$u" &&
	dpkg-deb --root-owner-group -b "$rp/p" "$ROOT/root/pkg/upgrade-unit.deb" >/dev/null; }; then
	abort install "cannot repack $DEB as $VERSION+test2 with a changed unit"
fi
rm -rf "$rp"
install -m 0755 tests/packaging/boot/setup-root.sh "$ROOT/root/setup-root.sh"
install -m 0644 tests/packaging/boot/checks.sh tests/vm/guest-lib.sh "$ROOT/usr/local/lib/kg-boot/"
install -m 0644 tests/packaging/boot/kg-boot-checks.service "$ROOT/etc/systemd/system/"
# The kernel's modules the guest needs (kTLS, its ciphers, veth), where kmod finds them
# (setup-root.sh runs the root's depmod: the host need not have kmod).
mkdir -p "$ROOT/lib/modules"
cp -a "$MODS" "$ROOT/lib/modules/$KVER"
# swtpm on the host gives the guest a TPM (tpm-tis: /dev/tpm0, /dev/tpmrm0).
SWTPM=${KG_BOOT_SWTPM:-swtpm}
TPM=1
if ! command -v "$SWTPM" >/dev/null; then TPM="no $SWTPM on the host (package swtpm): no TPM for the guest"; fi
printf 'SUITE=%s\nVERSION=%s\nTPM="%s"\n' "$SUITE" "$VERSION" "$TPM" >"$ROOT/etc/kg-boot.env"
DEBS="$CACHE/$SUITE-$ARCH-debs-boot"
mkdir -p "$DEBS"
CHROOT_TIMEOUT=600 chroot_run "$ROOT" "$DEBS" /bin/bash /root/setup-root.sh "$VERSION" "$KVER" >"$OUT/setup-root.log" 2>&1
src=$?
while read -r line; do
	case $line in
	PASS\ *) pass "${line#PASS }" ;;
	FAIL\ *) n=${line#FAIL }; fail "${n%%:*}" "${n#*: }" ;;
	esac
done < <(grep -E '^(PASS|FAIL) ' "$OUT/setup-root.log")
[ $src -eq 0 ] || abort install "setup-root.sh exited $src (see $OUT/setup-root.log)"
phase install

# --- the initramfs: the whole root as one newc archive (no docs, man pages, locales) ----
[ -e "$ROOT/etc/initrd-release" ] && abort initramfs "$ROOT/etc/initrd-release exists: systemd would run the initrd path"
rm -rf "$ROOT"/usr/share/doc/* "$ROOT"/usr/share/man/* "$ROOT"/usr/share/info/* "$ROOT"/var/cache/apt/archives/*.deb
find "$ROOT/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name 'locale.alias' -exec rm -rf {} + 2>/dev/null
(cd "$ROOT" && find . -xdev -print0 | cpio --null -o -H newc --quiet) >"$OUT/initramfs.cpio" ||
	abort initramfs "cpio failed"
log "initramfs $(du -m "$OUT/initramfs.cpio" | cut -f1) MB"
phase initramfs

# --- boot ---------------------------------------------------------------------------------
QARGS=()
if [ "$TPM" = 1 ]; then
	# shellcheck disable=SC2054 # commas separate qemu's suboptions, not array elements
	QARGS+=(-chardev "socket,id=chrtpm,path=$OUT/tpm/sock" -tpmdev emulator,id=tpm0,chardev=chrtpm
		-device tpm-tis,tpmdev=tpm0)
	# Booted as the ELF vmlinux (PVH entry, tests/vm's choice), the guest kernel finds no
	# TPM ("ima: No TPM chip found"; no ACPI TPM2 table); the bzImage finds tpm_tis
	# MSFT0101. It costs the 2-3 s the bzImage takes to inflate itself under TCG.
	KIMG="$KDIR/vmlinuz"
fi
LOG="$OUT/console.log"
exec 8>/tmp/kg-vm.lock
log "waiting for /tmp/kg-vm.lock"
flock 8
phase vm_lock
# swtpm_per_boot before|after ATTEMPT: qemu_boot's hook, the guest's TPM for one boot
# (swtpm --terminate exits when qemu lets go of it); its state directory stays across
# boots.
# shellcheck disable=SC2317 # called by qemu_boot (--hook), which shellcheck cannot see
swtpm_per_boot() {
	case $1 in
	before)
		mkdir -p "$OUT/tpm"
		rm -f "$OUT/tpm/sock"
		"$SWTPM" socket --tpm2 --tpmstate dir="$OUT/tpm" --ctrl type=unixio,path="$OUT/tpm/sock" \
			--log file="$OUT/swtpm.log" --terminate >/dev/null 2>&1 &
		SWPID=$!
		for _ in $(seq 1 50); do [ -S "$OUT/tpm/sock" ] && break; sleep 0.1; done
		;;
	after)
		if [ -n "$SWPID" ]; then   # gone by itself once qemu let go (--terminate)
			kill "$SWPID" 2>/dev/null
			wait "$SWPID" 2>/dev/null
			SWPID=""
		fi
		;;
	esac
}
BOOT_OPTS=()
[ "$TPM" = 1 ] && BOOT_OPTS+=(--hook swtpm_per_boot)
[ -n "$VERBOSE" ] && BOOT_OPTS+=(--verbose)
# A guest kernel that oopses before the checks print their first "KGBOOT:" line failed
# in the emulator: the package has not run yet (the unit is not enabled at boot; the
# checks start it). qemu_boot boots once more and says so. KG_BOOT_FIRST_APPEND goes on
# the first boot's command line only: a way to see that work, e.g.
# "init=/nonexistent rdinit=/nonexistent" panics at once.
C="$OUT/console.txt"
qemu_boot --console "$LOG" --console-text "$C" --qemu-log "$OUT/qemu.log" \
	--timeout "$T_GUEST" --kill-after 10 \
	--append "console=ttyS0 panic=-1 quiet loglevel=4 rdinit=/lib/systemd/systemd systemd.show_status=error" \
	--first-append "${KG_BOOT_FIRST_APPEND:-}" --marker 'KGBOOT: ' --marker-what "the checks began" \
	--label "boot[$SUITE]" "${BOOT_OPTS[@]}" \
	-- -m "${KG_VM_MEM:-2048}" -smp 2 -kernel "$KIMG" -initrd "$OUT/initramfs.cpio" "${QARGS[@]}"
qrc=$?
exec 8>&-
phase qemu

# --- the verdicts -------------------------------------------------------------------------
qemu_boot_exports "$C" "$OUT" >/dev/null || fail exports "an exported file arrived corrupted"
grep '^KGBOOT: note ' "$C" | sed "s/^KGBOOT: note /boot[$SUITE]: /"
grep '^KGBOOT: time ' "$C" | awk -v s="$SUITE" '{ printf "boot[%s]: guest %s %s s\n", s, $3, $4 }'
while read -r line; do
	case $line in
	PASS\ *) pass "${line#PASS }" ;;
	FAIL\ *) n=${line#FAIL }; fail "${n%%:*}" "${n#*: }" ;;
	esac
done < <(sed -n 's/^KGBOOT: \(PASS\|FAIL\) /\1 /p' "$C")
problems=""
[ "$qrc" = 124 ] || [ "$qrc" = 137 ] && problems="$problems the guest timed out after ${T_GUEST}s;"
[ "$qrc" != 0 ] && [ "$qrc" != 124 ] && [ "$qrc" != 137 ] && problems="$problems qemu exited $qrc: $(tail -2 "$OUT/qemu.log" | tr '\n' ' ');"
grep -q '^KGBOOT: done' "$C" || problems="$problems the guest never said done (last check started: $(sed -n 's/^KGBOOT: time //p' "$C" | tail -1));"
grep -qE 'Kernel panic|BUG: |Oops: |general protection fault' "$C" &&
	problems="$problems the kernel: $(grep -m1 -E 'Kernel panic|BUG: |Oops: |general protection fault' "$C");"
for c in ready ktls_module device ktls reload restart takeover xdp block tpm_provider tpm upgrade upgrade_crash upgrade_unit purge; do
	grep -qE "^KGBOOT: (PASS|FAIL) $c\b" "$C" || problems="$problems no verdict for $c;"
done
if [ -z "$problems" ]; then
	pass "boot ($KVER, systemd as PID 1, guest up to checks in $(sed -n 's/^KGBOOT: time boot //p' "$C")s)"
else
	fail boot "$problems"
fi
if [ "$NFAIL" -gt 0 ]; then
	echo "--- boot[$SUITE]: ktlsgated's journal (journalctl -u ktlsgated -b; $OUT/ktlsgated.journal)"
	tail -60 "$OUT/ktlsgated.journal" 2>/dev/null || echo "(not exported)"
	echo "--- boot[$SUITE]: last 40 console lines ($C)"
	grep -v '^KGVM:b ' "$C" | tail -40
	echo "---"
fi
finish
