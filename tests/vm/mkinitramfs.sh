#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# mkinitramfs.sh -k KERNEL_DIR -o OUT [-s SUITE_DIR] [-d DATA_DIR] [-e K=V]...
#                [-f SRC[:DEST]]... [BINARY...]
#
# A newc initramfs for the kTLS guest in two layers, concatenated (the kernel unpacks
# them in order): a base cached under ${KG_VM_CACHE:-/var/tmp/ktlsgate-vm} (busybox-static,
# the kernel's modules from KERNEL_DIR as made by fetch-kernel.sh, openssl, mosquitto
# and its clients, their libraries), and a run layer: every BINARY given (to
# /usr/local/bin) with the libraries ldd lists and the ELF interpreter, the guest runner
# and its library in /kgvm, SUITE_DIR as /kgvm/suite, DATA_DIR as /kgvm/data, -f extra
# files, -e variables for the tests (/kgvm/env), and an /init that prepares the system,
# runs the suite and powers off. Uncompressed by default: under TCG the guest takes
# longer to inflate a gzip'd image than qemu takes to load a plain one
# (KG_VM_COMPRESS=gzip if size matters).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
KDIR="" OUT="" SUITE="" DATA=""
ENVS=() FILES=()
while getopts k:o:s:d:e:f: opt; do
	case $opt in
	k) KDIR=$OPTARG ;;
	o) OUT=$OPTARG ;;
	s) SUITE=$OPTARG ;;
	d) DATA=$OPTARG ;;
	e) ENVS+=("$OPTARG") ;;
	f) FILES+=("$OPTARG") ;;
	*) exit 2 ;;
	esac
done
shift $((OPTIND - 1))
die() { echo "mkinitramfs: $*" >&2; exit 1; }
[ -n "$KDIR" ] && [ -n "$OUT" ] || die "usage: mkinitramfs.sh -k KERNEL_DIR -o OUT [-s SUITE] [-d DATA] [-e K=V] [-f SRC[:DEST]] [BIN...]"
[ -f "$KDIR/.complete" ] || die "$KDIR is not a kernel made by fetch-kernel.sh"
BUSYBOX=/bin/busybox
file -L "$BUSYBOX" 2>/dev/null | grep -q 'statically linked' || BUSYBOX=/usr/bin/busybox
[ -x "$BUSYBOX" ] || die "busybox-static missing"

COMPRESS=${KG_VM_COMPRESS:-none}
case $COMPRESS in none) zcmd=(cat) ;; gzip) zcmd=(gzip -1) ;; *) die "KG_VM_COMPRESS: none or gzip" ;; esac
CACHE=${KG_VM_CACHE:-/var/tmp/ktlsgate-vm}
BASE_BINS="/usr/bin/openssl /usr/sbin/mosquitto /usr/bin/mosquitto_pub /usr/bin/mosquitto_sub"
TMPS=()
trap 'rm -rf "${TMPS[@]}"' EXIT

# skeleton DIR: merged-/usr layout, so a library lands in one place whatever path ldd
# names, in both layers.
skeleton() {
	mkdir -p "$1"/{usr/bin,usr/sbin,usr/lib,usr/lib64,usr/local/bin,proc,sys,dev,tmp,run,etc,root,kgvm,var/lib/mosquitto}
	ln -s usr/bin "$1/bin"
	ln -s usr/sbin "$1/sbin"
	ln -s usr/lib "$1/lib"
	ln -s usr/lib64 "$1/lib64"
}

# libs_of ELF: the libraries ldd lists ("name => /path (addr)") and the interpreter
# ("/path (addr)"); nothing for a static binary or a script.
libs_of() {
	ldd "$1" 2>/dev/null | sed -n -e 's/.*=> \(\/[^ ]*\) .*/\1/p' -e 's/^\s*\(\/[^ ]*\) (.*/\1/p'
}

declare -A SEEN=()
# add_elf ROOT SRC DEST: the file plus the libraries not yet in the image.
add_elf() {
	local root=$1 src=$2 dest=$3 lib
	mkdir -p "$root$(dirname "$dest")"
	cp -L "$src" "$root$dest"
	for lib in $(libs_of "$src"); do
		[ -n "${SEEN[$lib]:-}" ] && continue
		SEEN[$lib]=1
		mkdir -p "$root$(dirname "$lib")"
		cp -L "$lib" "$root$lib"
	done
}

# pack DIR OUT: a newc archive of DIR, owned by root.
pack() {
	(cd "$1" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0 | "${zcmd[@]}") >"$2"
}

# The base layer (busybox, modules, openssl, mosquitto, their libraries) changes only
# with the kernel or the host's packages: cached, keyed by those files and this script.
kver=$(cat "$KDIR/kver")
base_libs=$(for b in $BASE_BINS; do libs_of "$b"; done | sort -u)
key=$( {
	cat "$0"
	echo "$kver $COMPRESS"
	# shellcheck disable=SC2086
	stat -L -c '%n %s %Y' "$BUSYBOX" $BASE_BINS $base_libs
} | sha256sum | cut -c1-16)
base="$CACHE/initramfs-base-$kver-$key.cpio"
for b in $BASE_BINS; do
	[ -x "$b" ] || die "$b missing (packages openssl, mosquitto, mosquitto-clients)"
done
if [ ! -f "$base" ]; then
	B=$(mktemp -d "${TMPDIR:-/tmp}/kgvm-base.XXXXXX")
	TMPS+=("$B")
	skeleton "$B"
	cp "$BUSYBOX" "$B/usr/bin/busybox"
	cp -a "$KDIR/modules/lib/modules" "$B/usr/lib/"
	# The kernel opens /dev/console for init before devtmpfs is mounted.
	mknod -m 600 "$B/dev/console" c 5 1 2>/dev/null || true
	for b in $BASE_BINS; do
		add_elf "$B" "$b" "$b"
	done
	# OpenSSL reads its config at startup; mosquitto drops root for its own user.
	[ -f /usr/lib/ssl/openssl.cnf ] && mkdir -p "$B/usr/lib/ssl" && cp -L /usr/lib/ssl/openssl.cnf "$B/usr/lib/ssl/"
	cat >"$B/etc/passwd" <<-'EOF'
		root:x:0:0:root:/root:/bin/sh
		mosquitto:x:100:101:mosquitto:/var/lib/mosquitto:/bin/false
		nobody:x:65534:65534:nobody:/nonexistent:/bin/false
	EOF
	cat >"$B/etc/group" <<-'EOF'
		root:x:0:
		mosquitto:x:101:
		nogroup:x:65534:
	EOF
	printf '127.0.0.1 localhost\n::1 localhost\n' >"$B/etc/hosts"
	echo 'hosts: files' >"$B/etc/nsswitch.conf"
	rm -f "$CACHE"/initramfs-base-"$kver"-*.cpio
	pack "$B" "$base.tmp.$$"
	mv "$base.tmp.$$" "$base"
fi
for lib in $base_libs; do SEEN[$lib]=1; done

# The run layer: this suite, its data, the given binaries; unpacked over the base.
ROOT=$(mktemp -d "${TMPDIR:-/tmp}/kgvm-root.XXXXXX")
TMPS+=("$ROOT")
skeleton "$ROOT"
for b in "$@"; do
	[ -f "$b" ] || die "binary $b not found"
	add_elf "$ROOT" "$b" "/usr/local/bin/$(basename "$b")"
done
for f in "${FILES[@]+"${FILES[@]}"}"; do
	src=${f%%:*}
	dest=${f#*:}
	[ "$dest" = "$f" ] && dest=$src
	[ -e "$src" ] || die "file $src not found"
	mkdir -p "$ROOT$(dirname "$dest")"
	cp -aL "$src" "$ROOT$dest"
done

cp "$HERE/guest-runner.sh" "$HERE/guest-lib.sh" "$ROOT/kgvm/"
if [ -n "$SUITE" ]; then
	[ -d "$SUITE" ] || die "suite dir $SUITE not found"
	cp -aL "$SUITE" "$ROOT/kgvm/suite"
else
	mkdir "$ROOT/kgvm/suite"
fi
if [ -n "$DATA" ]; then
	[ -d "$DATA" ] || die "data dir $DATA not found"
	cp -aL "$DATA" "$ROOT/kgvm/data"
else
	mkdir "$ROOT/kgvm/data"
fi
for e in "${ENVS[@]+"${ENVS[@]}"}"; do
	printf 'export %q\n' "$e" >>"$ROOT/kgvm/env"
done
touch "$ROOT/kgvm/env"

cat >"$ROOT/init" <<-'EOF'
	#!/bin/busybox sh
	# /init of the ktlsgate test guest (made by tests/vm/mkinitramfs.sh).
	/bin/busybox --install -s
	export PATH=/usr/local/bin:/usr/bin:/usr/sbin:/bin:/sbin HOME=/root
	mount -t proc proc /proc
	mount -t sysfs sysfs /sys
	mount -t devtmpfs devtmpfs /dev
	exec </dev/console >/dev/console 2>&1
	mkdir -p /dev/pts /dev/shm
	mount -t devpts devpts /dev/pts
	mount -t tmpfs tmpfs /dev/shm
	mount -t tmpfs -o size=512m tmpfs /tmp
	echo /sbin/modprobe >/proc/sys/kernel/modprobe
	ip link set lo up
	hostname kgvm
	echo
	echo "KGVM: kernel $(uname -r)"
	. /kgvm/env
	loaded="" missing=""
	for m in aesni_intel ghash_clmulni_intel gcm tls chacha20poly1305 chacha_x86_64 poly1305_x86_64 ${KGVM_MODULES:-}; do
		if modprobe "$m" 2>/dev/null; then loaded="$loaded $m"; else missing="$missing $m"; fi
	done
	echo "KGVM: modules loaded:$loaded; not available:${missing:- none}"
	ulimit -n 65536 2>/dev/null || ulimit -n 4096
	echo 65536 >/proc/sys/net/core/somaxconn
	echo "KGVM: userspace ready at $(cut -d' ' -f1 /proc/uptime)s"
	export KGVM_SUITE=/kgvm/suite KGVM_DATA=/kgvm/data KGVM_OUT=/tmp/kgvm KGVM_LIB=/kgvm/guest-lib.sh
	sh /kgvm/guest-runner.sh /kgvm/suite
	echo "KGVM: guest uptime $(cut -d' ' -f1 /proc/uptime)s"
	sync
	poweroff -f
EOF
chmod 755 "$ROOT/init"

mkdir -p "$(dirname "$OUT")"
pack "$ROOT" "$OUT.run"
# The kernel unpacks concatenated archives in order (each compressed on its own).
cat "$base" "$OUT.run" >"$OUT.tmp"
rm -f "$OUT.run"
mv "$OUT.tmp" "$OUT"
