# SPDX-License-Identifier: BSD-2-Clause
# shellcheck shell=bash
# tests/packaging/boot/lib.sh - host-side helpers of test-boot.sh (sourced after
# tests/packaging/lib.sh; uses the caller's CACHE, WORKBASE, OUT, log and abort).
#
# boot_suite_mirror SUITE: print the Debian mirror for SUITE: the host's apt entry for it,
#   else the one the host uses for bookworm (deb.debian.org serves both), else
#   KG_FRESH_MIRROR. boot_suite_sources SUITE: the sources.list lines for a root of SUITE
#   (SUITE, SUITE-updates, SUITE-security), from the same mirrors.
# guest_tarball SUITE ARCH DEB: set GUEST to the cached tarball of a SUITE root that
#   holds everything the boot test's guest needs except the package itself (systemd as
#   init, udev, mosquitto, openssl, iproute2, kmod, ... and DEB's Depends), so the per-run
#   install is `dpkg -i` without network. Cached as $CACHE/boot-SUITE-ARCH-KEY.tar.zst,
#   KEY a hash of the package list; made from minbase_tarball's root (apt-get install in
#   a chroot of its own mount and PID namespaces) under $CACHE/lock when missing.
BOOT_PKGS="systemd-sysv udev mosquitto mosquitto-clients openssl iproute2 kmod procps
	curl sqlite3 libcap2-bin tpm2-openssl"

boot_suite_mirror() {
	local m
	m=${KG_FRESH_MIRROR:-}
	[ -n "$m" ] || m=$(apt-get indextargets --format '$(REPO_URI) $(RELEASE)' 2>/dev/null |
		awk -v s="$1" '$2 == s { print $1; exit }')
	[ -n "$m" ] || m=$(apt-get indextargets --format '$(REPO_URI) $(RELEASE)' 2>/dev/null |
		awk '$2 == "bookworm" { print $1; exit }')
	printf '%s\n' "$m"
}

boot_suite_sources() {
	local s=$1 m sec
	m=$(boot_suite_mirror "$s")
	sec=$(apt-get indextargets --format '$(REPO_URI) $(RELEASE)' 2>/dev/null |
		awk '$2 ~ /-security$/ { print $1; exit }')
	echo "deb $m $s main"
	echo "deb $m $s-updates main"
	[ -n "$sec" ] && echo "deb $sec $s-security main"
	return 0
}

# deb_depends DEB: the package names of DEB's Depends (first alternative, no versions).
deb_depends() {
	dpkg-deb -f "$1" Depends | tr ',' '\n' | sed 's/|.*//; s/(.*)//; s/^ *//; s/ *$//' | grep -v '^$'
}

# chroot_run ROOT DEBCACHE CMD...: CMD in ROOT with /proc, /sys, /dev and the .deb cache
# mounted, in mount and PID namespaces of its own (the mounts and processes die with it),
# killed after CHROOT_TIMEOUT seconds (1200).
chroot_run() {
	local root=$1 debs=$2
	shift 2
	# shellcheck disable=SC2016
	timeout -k 30 "${CHROOT_TIMEOUT:-1200}" unshare --mount --pid --fork --kill-child=SIGTERM --propagation private /bin/bash -c '
		set -u
		root=$1 debs=$2
		shift 2
		mount -t proc proc "$root/proc" && mount --bind /sys "$root/sys" &&
			mount -o remount,bind,ro "$root/sys" && mount --rbind /dev "$root/dev" &&
			mount --bind "$debs" "$root/var/cache/apt/archives" || { echo "chroot_run: mounts failed"; exit 2; }
		env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
			LANG=C.UTF-8 TERM=dumb DEBIAN_FRONTEND=noninteractive chroot "$root" "$@"
	' chroot_run "$root" "$debs" "$@"
}

guest_tarball() {
	local suite=$1 arch=$2 deb=$3 pkgs key b debs
	# shellcheck disable=SC2046,SC2086 # lists of package names, split on purpose
	pkgs=$(printf '%s\n' $BOOT_PKGS $(deb_depends "$deb") | sort -u | tr '\n' ' ')
	key=$(printf '%s %s\n' "$suite" "$pkgs" | sha256sum | cut -c1-12)
	GUEST="$CACHE/boot-$suite-$arch-$key.tar.zst"
	[ -s "$GUEST" ] && return 0
	# minbase_tarball (tests/packaging/lib.sh) takes the host's entry for SUITE; trixie
	# has none on a bookworm host: the bookworm mirror serves it.
	KG_FRESH_MIRROR=$(boot_suite_mirror "$suite") minbase_tarball "$suite" "$arch"
	mkdir -p "$CACHE"
	exec 9>"$CACHE/lock"
	timeout 1800 flock 9 || abort guest_root "another run holds $CACHE/lock"
	if [ ! -s "$GUEST" ]; then
		log "making the $suite guest root (cold): $pkgs"
		b=$(mktemp -d "$WORKBASE/guest.XXXXXX")
		debs="$CACHE/$suite-$arch-debs-boot"
		mkdir -p "$debs/partial"
		tar -C "$b" --numeric-owner -xpzf "$BASE" || abort guest_root "cannot unpack $BASE"
		chmod 755 "$b"
		boot_suite_sources "$suite" >"$b/etc/apt/sources.list"
		cp -L /etc/resolv.conf "$b/etc/resolv.conf" 2>/dev/null || true
		printf '#!/bin/sh\nexit 101\n' >"$b/usr/sbin/policy-rc.d"
		chmod 755 "$b/usr/sbin/policy-rc.d"
		# shellcheck disable=SC2086
		if ! chroot_run "$b" "$debs" /bin/sh -c \
			"chown _apt:root /var/cache/apt/archives/partial 2>/dev/null; apt-get update -q &&
			 apt-get install -y -q --no-install-recommends $pkgs" >"$OUT/guest-root.log" 2>&1; then
			rm -rf --one-file-system "$b"
			abort guest_root "apt-get install in the $suite root failed (see $OUT/guest-root.log: $(tail -2 "$OUT/guest-root.log" | tr '\n' ';'))"
		fi
		rm -f "$b/usr/sbin/policy-rc.d" "$b/etc/resolv.conf"
		rm -rf "$b"/var/lib/apt/lists/* "$b"/var/cache/apt/*.bin
		tar -C "$b" --numeric-owner --zstd -cf "$GUEST.tmp" . && mv "$GUEST.tmp" "$GUEST"
		rm -rf --one-file-system "$b"
		# Roots of an older package list are not used again.
		find "$CACHE" -maxdepth 1 -name "boot-$suite-$arch-*.tar.zst" ! -path "$GUEST" -delete
	fi
	exec 9>&-
}

# boot_modules KVER KDEB: print a directory holding the module tree the guest needs
# (kTLS, the crypto it asks for, veth), as KDEB ships it (compressed; kmod reads xz),
# with modules.builtin and modules.order for depmod. Cached beside the kernel
# ($VMCACHE/boot-modules-KVER); BOOT_MOD_DIRS lists the subtrees under kernel/.
BOOT_MOD_DIRS="crypto arch/x86/crypto lib/crypto net/tls drivers/net/veth.ko"
boot_modules() {
	local kver=$1 kdeb=$2 dir="$VMCACHE/boot-modules-$1" raw m d
	if [ ! -f "$dir/.complete" ]; then
		rm -rf "$dir.tmp"
		raw="$dir.tmp/raw"
		mkdir -p "$raw"
		dpkg-deb --fsys-tarfile "$kdeb" | tar -x -C "$raw" --wildcards \
			"./lib/modules/$kver/*" "./usr/lib/modules/$kver/*" 2>/dev/null
		m=$raw/lib/modules/$kver
		[ -d "$m/kernel" ] || m=$raw/usr/lib/modules/$kver
		[ -d "$m/kernel" ] || return 1
		mkdir -p "$dir.tmp/tree/kernel"
		for d in $BOOT_MOD_DIRS; do
			set -- "$m/kernel/$d"*
			[ -e "$1" ] || return 1
			mkdir -p "$dir.tmp/tree/kernel/$(dirname "$d")"
			cp -a "$@" "$dir.tmp/tree/kernel/$(dirname "$d")/"
		done
		cp -a "$m"/modules.builtin* "$m/modules.order" "$dir.tmp/tree/"
		rm -rf "$raw" "$dir"
		touch "$dir.tmp/tree/.complete"
		mv "$dir.tmp/tree" "$dir" && rm -rf "$dir.tmp"
	fi
	printf '%s\n' "$dir"
}
