#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# build-deb.sh OUTDIR [SUITE] - build the Debian package (issue 12): `make deb` (no SUITE:
# on this host, for its own release) and `make deb-trixie` (SUITE=trixie: inside a
# debootstrapped root of that release, so the package links that release's libraries).
# OUTDIR gets ktlsgate_*.deb, its -dbgsym, the .changes and the .buildinfo; a SUITE build
# also writes OUTDIR/lintian.log, that release's lintian on the .changes (test-deb.sh
# judges it). Exit 0 only when every file is there.
#
# Both builds share one recipe: the tree (git's tracked and untracked-but-not-ignored
# files, so uncommitted work is packaged as it stands; never build/) is copied to a
# scratch directory, packaging/debian becomes its debian/ (with the sysusers and
# tmpfiles files and the unit under the names dh_installsysusers, dh_installtmpfiles and
# dh_installsystemd --name=ktlsgated look for), a changelog entry VERSION~debN (N: the
# building system's /etc/debian_version) is put on top of packaging/debian/changelog's,
# and dpkg-buildpackage -b runs there with its own build/. The copy is not under the
# worktree's build/: the top Makefile includes every `find build -name '*.d'`, and the
# package tree's tmpfiles.d/sysusers.d would be read as makefiles. It is removed after
# a good build and kept (and named) after a failed one.
#
# The SUITE build root: $CACHE/SUITE-ARCH-build-HASH.tar.gz, the SUITE minbase tarball
# (tests/packaging/lib.sh) + build-essential + lintian + `apt-get satisfy` of
# packaging/debian/control's Build-Depends; HASH covers that field and the extra
# packages, so a changed Build-Depends makes a new root (older ones are removed).
# Its apt sources come from the host's (lib.sh suite_sources; nothing names a mirror).
# Each build unpacks it afresh and runs in its own mount, PID and network namespaces
# (unshare; no network: the build uses only the root), chrooted, as root.
#
# build-deb.sh --root-path SUITE [CONTROL] prints the build root's tarball path for
# CONTROL's Build-Depends (packaging/debian/control) and builds nothing (test-deb.sh
# checks that a changed Build-Depends names another root).
#
# Environment: DEB_JOBS (2), DEB_WORK_BASE (/var/tmp), KG_FRESH_CACHE
# (/var/cache/ktlsgate-fresh), KG_FRESH_MIRROR (see lib.sh), KG_DEB_TIMEOUT (1800 s per
# chroot step).
set -u
TOP=$(cd "$(dirname "$0")/.." && pwd)
cd "$TOP" || exit 1
OUTDIR=${1:?usage: build-deb.sh OUTDIR [SUITE] | --root-path SUITE [CONTROL]}
SUITE=${2:-}
CONTROL=packaging/debian/control
if [ "$OUTDIR" = --root-path ]; then
	[ -n "$SUITE" ] || { echo "usage: build-deb.sh --root-path SUITE [CONTROL]" >&2; exit 2; }
	CONTROL=${3:-$CONTROL}
fi
JOBS=${DEB_JOBS:-2}
WORKBASE=${DEB_WORK_BASE:-/var/tmp}
CACHE=${KG_FRESH_CACHE:-/var/cache/ktlsgate-fresh}
T_STEP=${KG_DEB_TIMEOUT:-1800}
# Installed into the build root besides the Build-Depends (part of the root's hash).
ROOT_EXTRA="build-essential lintian"
. "$TOP/tests/packaging/lib.sh"

WORK=""
KEEP_WORK=""
log() { printf 'build-deb: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }
abort() { die "$1: $2"; } # lib.sh's minbase_tarball reports through this
cleanup() {
	[ -n "$WORK" ] && [ -d "$WORK" ] || return 0
	if [ -n "$KEEP_WORK" ]; then
		log "the build tree is kept in $WORK"
	else
		rm -rf --one-file-system "$WORK"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# copy_tree DEST: the worktree as it stands, without build/.
copy_tree() {
	mkdir -p "$1"
	git ls-files -z --cached --others --exclude-standard |
		xargs -0 sh -c 'for f; do case $f in build/*) continue;; esac;
			if [ -e "$f" ] || [ -L "$f" ]; then printf "%s\0" "$f"; fi; done' sh |
		tar --null -T - -cf - | tar -C "$1" -xf -
}

# debianize SRC MAJOR DIST: debian/ from packaging/, and the release's changelog entry.
# Its date is the top entry's plus one second: SOURCE_DATE_EPOCH (the newest entry's
# date) stays the source's, so the build is as reproducible as the source is, and
# lintian sees a newer date on the newer entry.
debianize() {
	local src=$1 major=$2 dist=$3 v maint ts
	cp -a packaging/debian "$src/debian" &&
		cp packaging/ktlsgate.sysusers "$src/debian/ktlsgate.sysusers" &&
		cp packaging/ktlsgate.tmpfiles "$src/debian/ktlsgate.tmpfiles" &&
		cp packaging/systemd/ktlsgated.service "$src/debian/ktlsgate.ktlsgated.service" || return 1
	v=$(dpkg-parsechangelog -l packaging/debian/changelog -S Version) &&
		maint=$(dpkg-parsechangelog -l packaging/debian/changelog -S Maintainer) &&
		ts=$(dpkg-parsechangelog -l packaging/debian/changelog -S Timestamp) || return 1
	{
		printf 'ktlsgate (%s~deb%s) %s; urgency=medium\n\n' "$v" "$major" "$dist"
		printf '  * %s, built for Debian %s (%s) by scripts/build-deb.sh.\n\n' "$v" "$major" "$dist"
		printf ' -- %s  %s\n\n' "$maint" "$(LC_ALL=C date -u -R -d "@$((ts + 1))")"
		cat packaging/debian/changelog
	} >"$src/debian/changelog"
	log "version $v~deb$major ($dist)"
}

# debian_major FILE: 12 from /etc/debian_version's "12.9".
debian_major() {
	local m
	m=$(cut -d. -f1 "$1" 2>/dev/null)
	case $m in '' | *[!0-9]*) return 1 ;; esac
	echo "$m"
}

collect() { # FROM: move the build's results to OUTDIR
	rm -rf "$OUTDIR" && mkdir -p "$OUTDIR" || return 1
	ls "$1"/ktlsgate_*.deb "$1"/ktlsgate_*.changes "$1"/ktlsgate_*.buildinfo >/dev/null 2>&1 || return 1
	mv "$1"/*.deb "$1"/*.changes "$1"/*.buildinfo "$OUTDIR"/
}

# --- on this host ------------------------------------------------------------------------
if [ -z "$SUITE" ]; then
	command -v dh >/dev/null || die "debhelper is missing (scripts/deps.sh check installs it)"
	major=$(debian_major /etc/debian_version) || die "cannot tell this host's Debian release from /etc/debian_version"
	dist=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
	WORK=$(mktemp -d "$WORKBASE/ktlsgate-deb.XXXXXX") || die "mktemp failed"
	log "copying the tree to $WORK/src"
	copy_tree "$WORK/src" && debianize "$WORK/src" "$major" "$dist" || die "cannot prepare $WORK/src"
	if ! (cd "$WORK/src" && dpkg-buildpackage -b -us -uc -j"$JOBS"); then
		KEEP_WORK=1
		die "dpkg-buildpackage failed"
	fi
	collect "$WORK" || { KEEP_WORK=1; die "no .deb/.changes/.buildinfo in $WORK"; }
	ls -l "$OUTDIR"
	exit 0
fi

# --- in a SUITE root ---------------------------------------------------------------------
[ "$OUTDIR" = --root-path ] || [ "$(id -u)" -eq 0 ] || die "a $SUITE build needs root (debootstrap, chroot, namespaces)"
for t in debootstrap unshare dpkg-parsechangelog sha256sum; do
	command -v "$t" >/dev/null || die "$t is missing (scripts/deps.sh check installs it)"
done
ARCH=$(dpkg --print-architecture)
# The Build-Depends field, on one line, without the trailing comma.
BD=$(awk '/^$/ { exit } /^[A-Za-z-]+:/ { f = ($1 == "Build-Depends:") } f' "$CONTROL" |
	sed 's/^Build-Depends://' | tr '\n' ' ' | tr -s ' \t' ' ' | sed 's/^ //; s/[ ,]*$//')
[ -n "$BD" ] || die "no Build-Depends in $CONTROL"
HASH=$(printf '%s\n%s\n' "$BD" "$ROOT_EXTRA" | sha256sum | cut -c1-12)
BROOT="$CACHE/$SUITE-$ARCH-build-$HASH.tar.gz"
if [ "$OUTDIR" = --root-path ]; then
	echo "$BROOT"
	exit 0
fi
mkdir -p "$CACHE" "$WORKBASE" || die "cannot create $CACHE"
OUT=$(mktemp -d "$WORKBASE/ktlsgate-deb-log.XXXXXX") # minbase_tarball's bootstrap.log
DEBS="$CACHE/$SUITE-$ARCH-debs-build"
ROOTLOG="$OUTDIR-root.log" # the cold root's apt log

# in_root ROOT NET CMD...: CMD chrooted in ROOT, in new mount and PID namespaces (and a
# new network namespace unless NET is "net"); when the chroot's command, the
# namespace's PID 1, ends or the timeout kills it, everything in it dies and its mounts
# go. Mounted: /proc, a read-only /proc/sys (package scripts such as procps' run
# `sysctl --system`, which would set the host's kernel), a read-only /sys (the BPF
# build reads the running kernel's BTF there), /dev, and the .deb cache as apt's
# archives.
# shellcheck disable=SC2016
INNER='
set -u
root=$1 debs=$2
shift 2
mount -t proc proc "$root/proc" &&
	mount --bind "$root/proc/sys" "$root/proc/sys" && mount -o remount,bind,ro "$root/proc/sys" &&
	mount --bind /sys "$root/sys" && mount -o remount,bind,ro "$root/sys" &&
	mount --rbind /dev "$root/dev" &&
	mount --bind "$debs" "$root/var/cache/apt/archives" || { echo "build-deb: mounts in $root failed" >&2; exit 2; }
exec env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
	LANG=C.UTF-8 TERM=dumb DEBIAN_FRONTEND=noninteractive chroot "$root" "$@"
'
in_root() {
	local root=$1 net=()
	[ "$2" = net ] || net=(--net)
	shift 2
	timeout -k 30 "$T_STEP" unshare --mount --pid --fork --kill-child=SIGKILL --propagation private "${net[@]}" \
		/bin/bash -c "$INNER" inner "$root" "$DEBS" "$@"
}

unpack_root() { # TARBALL -> prints the new root's path
	local r
	r=$(mktemp -d "$WORKBASE/ktlsgate-deb-$SUITE.XXXXXX") || return 1
	tar -C "$r" --numeric-owner -xpzf "$1" || { rm -rf --one-file-system "$r"; return 1; }
	chmod 755 "$r"
	echo "$r"
}

# The build root, made once per Build-Depends (under the cache's lock, as the minbase is).
make_build_root() {
	local r t0
	minbase_tarball "$SUITE" "$ARCH"
	exec 8>"$CACHE/build-root.lock"
	timeout 3600 flock 8 || die "another build holds $CACHE/build-root.lock"
	if [ ! -s "$BROOT" ]; then
		t0=$(date +%s)
		log "making the $SUITE build root $BROOT (cold): $ROOT_EXTRA + Build-Depends"
		mkdir -p "$DEBS/partial"
		r=$(unpack_root "$BASE") || die "cannot unpack $BASE"
		suite_sources "$SUITE" >"$r/etc/apt/sources.list"
		[ -s "$r/etc/apt/sources.list" ] || die "no apt source for $SUITE (set KG_FRESH_MIRROR)"
		printf '#!/bin/sh\n# build root: start no services\nexit 101\n' >"$r/usr/sbin/policy-rc.d"
		chmod 755 "$r/usr/sbin/policy-rc.d"
		cp -L /etc/resolv.conf "$r/etc/resolv.conf" 2>/dev/null || true
		# shellcheck disable=SC2086
		if ! in_root "$r" net /bin/sh -c 'chown _apt:root /var/cache/apt/archives/partial 2>/dev/null
			apt-get update -q && apt-get install -y -q --no-install-recommends $1 &&
			apt-get satisfy -y -q --no-install-recommends "$2"' sh "$ROOT_EXTRA" "$BD" >"$ROOTLOG" 2>&1; then
			tail -5 "$ROOTLOG" >&2
			rm -rf --one-file-system "$r"
			die "cannot install the build packages into the $SUITE root (see $ROOTLOG)"
		fi
		rm -rf "$r"/var/lib/apt/lists/* "$r"/var/cache/apt/*.bin
		tar -C "$r" --numeric-owner -czf "$BROOT.tmp" . && mv "$BROOT.tmp" "$BROOT" || die "cannot write $BROOT"
		rm -rf --one-file-system "$r"
		# the roots of older Build-Depends
		for old in "$CACHE/$SUITE-$ARCH"-build-*.tar.gz; do
			[ "$old" = "$BROOT" ] || rm -f "$old"
		done
		log "build root made in $(($(date +%s) - t0)) s"
	fi
	exec 8>&-
}

mkdir -p "$(dirname "$OUTDIR")"
[ -s "$BROOT" ] || make_build_root
rm -rf "$OUT"
t0=$(date +%s)
WORK=$(unpack_root "$BROOT") || die "cannot unpack $BROOT"
major=$(debian_major "$WORK/etc/debian_version") || die "cannot tell $SUITE's Debian release from its /etc/debian_version ($(cat "$WORK/etc/debian_version" 2>/dev/null))"
log "root $WORK ($SUITE, $(basename "$BROOT"), unpacked in $(($(date +%s) - t0)) s); copying the tree to /build/src"
copy_tree "$WORK/build/src" && debianize "$WORK/build/src" "$major" "$SUITE" || die "cannot prepare $WORK/build/src"
t0=$(date +%s)
if ! in_root "$WORK" nonet /bin/sh -c 'cd /build/src && dpkg-buildpackage -b -us -uc -j"$1"' sh "$JOBS"; then
	KEEP_WORK=1
	die "dpkg-buildpackage failed in the $SUITE root"
fi
log "built in $(($(date +%s) - t0)) s"
# lintian of that release, on the .changes (the .deb, -dbgsym, .buildinfo), in the root.
t0=$(date +%s)
changes=$(cd "$WORK/build" && ls ktlsgate_*.changes | head -1)
deb=$(cd "$WORK/build" && ls ktlsgate_*_"$ARCH".deb | head -1)
{
	printf '# lintian %s in the %s build root on %s; the .deb: %s sha256 %s\n' \
		"$(in_root "$WORK" nonet lintian --version | awk '{ print $2 }')" "$SUITE" "$changes" "$deb" \
		"$(sha256sum "$WORK/build/$deb" | cut -d' ' -f1)"
	# as nobody (lintian warns when run as root; it only reads the files)
	in_root "$WORK" nonet setpriv --reuid=nobody --regid=nogroup --clear-groups \
		env HOME=/tmp lintian --pedantic -I "/build/$changes" 2>&1
	echo "# lintian exit $?"
} >"$WORK/build/lintian.log"
log "lintian in $(($(date +%s) - t0)) s"
collect "$WORK/build" || { KEEP_WORK=1; die "no .deb/.changes/.buildinfo in $WORK/build"; }
mv "$WORK/build/lintian.log" "$OUTDIR/"
ls -l "$OUTDIR"
