#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# check-fresh.sh - `make check-fresh`: the first `make demo` works on a bare Debian root.
#
# Guards issue 10 section 1: the Makefile reads pkg-config's flags when it is parsed, so
# a make that had to install the libraries first built without their include paths and
# only a second run worked. This test does what a new user does on a fresh machine:
# a Debian --variant=minbase root (debootstrap; none of the build packages), a clean
# `git clone` of the commit under test (nothing uncommitted leaks in), `apt-get install
# make`, then `make demo` once, as root, in a chroot. It passes only if that first run
# exits 0 and prints the demo's own success line.
#
# Host safety: the chroot runs in its own mount and PID namespaces (unshare), so its
# mounts (a new /proc, /sys read-only, /dev with /dev/pts, the .deb cache) are invisible to the host and its
# processes die with it; the mounts are also unmounted by a trap. /usr/sbin/policy-rc.d
# exits 101, so the packages installed inside start no services. The mirror comes from
# the host's apt configuration (nothing is hard-coded).
#
# Caches (KG_FRESH_CACHE, default /var/cache/ktlsgate-fresh): the pristine debootstrap
# base as a tarball keyed by suite and architecture, so later runs only unpack it, and
# downloaded .deb files (download time only: every package is still installed by the
# project's own scripts/deps.sh inside the root). Remove the directory for a cold run.
#
# Environment: KG_FRESH_SUITE (bookworm), KG_FRESH_REV (HEAD: the commit to test),
# KG_FRESH_MIRROR (override the host's), KG_FRESH_KEEP=1 (keep the root afterwards),
# KG_FRESH_BOOTSTRAP_TIMEOUT (900 s), KG_FRESH_DEMO_TIMEOUT (1800 s).
# Output: build/fresh/{bootstrap,demo}.log, a PASS/FAIL line and a summary line.
set -u
TOP=$(cd "$(dirname "$0")/.." && pwd)
SUITE=${KG_FRESH_SUITE:-bookworm}
REV=${KG_FRESH_REV:-HEAD}
CACHE=${KG_FRESH_CACHE:-/var/cache/ktlsgate-fresh}
WORKBASE=${KG_FRESH_WORK:-/var/tmp/ktlsgate-fresh}
T_BOOT=${KG_FRESH_BOOTSTRAP_TIMEOUT:-900}
T_DEMO=${KG_FRESH_DEMO_TIMEOUT:-1800}
OUT="$TOP/build/fresh"
NAME=fresh_make_demo
SUCCESS_LINE="demo: every device behaved as expected"
ROOT=""
INNER_PID=""

now() { date +%s; }
T0=$(now)
log() { printf 'fresh: %s\n' "$*"; }

# Unmounts whatever is still mounted under the root in this (host) namespace - nothing
# should be, the mounts live in the child's namespace - and only then removes it.
cleanup() {
	if [ -n "$INNER_PID" ] && kill -0 "$INNER_PID" 2>/dev/null; then
		kill "$INNER_PID" 2>/dev/null
		timeout 30 tail --pid="$INNER_PID" -f /dev/null 2>/dev/null || kill -9 "$INNER_PID" 2>/dev/null
	fi
	[ -n "$ROOT" ] && [ -d "$ROOT" ] || return 0
	awk -v r="$ROOT/" 'index($5 "/", r) == 1 { print $5 }' /proc/self/mountinfo | sort -r |
		while read -r m; do umount -l "$m" 2>/dev/null; done
	if awk -v r="$ROOT/" 'index($5 "/", r) == 1 { f = 1 } END { exit !f }' /proc/self/mountinfo; then
		echo "fresh: $ROOT still has mounts; not removing it" >&2
		return 0
	fi
	if [ -n "${KG_FRESH_KEEP:-}" ]; then
		log "kept $ROOT"
	else
		rm -rf --one-file-system "$ROOT"
	fi
}

finish() { # PASS|FAIL reason
	local st=1
	trap - EXIT
	cleanup
	if [ "$1" = PASS ]; then
		echo "PASS $NAME ($2; $(($(now) - T0)) s)"
		echo "1 passed, 0 failed"
		st=0
	else
		echo "FAIL $NAME: $2 ($(($(now) - T0)) s)"
		echo "0 passed, 1 failed"
	fi
	exit $st
}
trap 'finish FAIL "interrupted"' INT TERM
trap 'finish FAIL "exited early"' EXIT

[ "$(id -u)" -eq 0 ] || finish FAIL "needs root (debootstrap, chroot, mount namespaces)"
mkdir -p "$OUT" "$CACHE" "$WORKBASE" || finish FAIL "cannot create $OUT, $CACHE or $WORKBASE"
ARCH=$(dpkg --print-architecture) || finish FAIL "dpkg --print-architecture failed"

# One run at a time: the runs share the base tarball and apt's lock on the .deb cache.
exec 9>"$CACHE/lock"
timeout 1800 flock 9 || finish FAIL "another check-fresh holds $CACHE/lock"

# --- the host's apt sources ---------------------------------------------------------
# apt_entries: "URI SUITE" per enabled `deb` entry of /etc/apt/sources.list,
# sources.list.d/*.list (one-line format) and sources.list.d/*.sources (deb822).
apt_entries() {
	local f
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -f "$f" ] || continue
		awk '{ sub(/#.*/, "") } $1 == "deb" {
			i = 2
			if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
			if (i + 1 <= NF) print $i, $(i + 1)
		}' "$f"
	done
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] || continue
		awk 'BEGIN { RS = ""; FS = "\n" }
		function flush() {
			if (types ~ /(^|[ \t])deb([ \t]|$)/ && tolower(enabled) != "no") {
				nu = split(uris, U, /[ \t]+/); ns = split(suites, S, /[ \t]+/)
				for (a = 1; a <= nu; a++) for (b = 1; b <= ns; b++)
					if (U[a] != "" && S[b] != "") print U[a], S[b]
			}
		}
		{
			types = uris = suites = enabled = ""; key = ""
			for (l = 1; l <= NF; l++) {
				line = $l
				if (line ~ /^#/) continue
				if (line ~ /^[ \t]/) { val = line } else {
					p = index(line, ":"); if (!p) continue
					key = tolower(substr(line, 1, p - 1)); val = substr(line, p + 1)
				}
				if (key == "types") types = types " " val
				else if (key == "uris") uris = uris " " val
				else if (key == "suites") suites = suites " " val
				else if (key == "enabled") { gsub(/[ \t]/, "", val); enabled = val }
			}
			flush()
		}' "$f"
	done
}
ENTRIES=$(apt_entries | sort -u)
MIRROR=${KG_FRESH_MIRROR:-$(printf '%s\n' "$ENTRIES" | awk -v s="$SUITE" '$2 == s { print $1; exit }')}
[ -n "$MIRROR" ] || finish FAIL "no '$SUITE' entry in the host's apt sources (set KG_FRESH_MIRROR)"
log "suite $SUITE/$ARCH, mirror $MIRROR (from the host's apt sources)"

# --- the pristine base --------------------------------------------------------------
BASE="$CACHE/$SUITE-$ARCH-minbase.tar.gz"
if [ -s "$BASE" ]; then
	log "base: cached $BASE"
	BASE_HOW=cached
else
	if ! command -v debootstrap >/dev/null 2>&1; then
		log "installing debootstrap (apt-get)"
		DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -q --no-install-recommends \
			debootstrap >"$OUT/bootstrap.log" 2>&1 || finish FAIL "apt-get install debootstrap failed (see $OUT/bootstrap.log)"
	fi
	ROOT=$(mktemp -d "$WORKBASE/base.XXXXXX") || finish FAIL "mktemp failed"
	log "base: debootstrap --variant=minbase $SUITE (cold; up to ${T_BOOT}s)"
	tb=$(now)
	# In its own mount namespace: mounts a failed debootstrap leaves behind vanish with it.
	timeout -k 30 "$T_BOOT" unshare --mount --propagation private \
		debootstrap --variant=minbase --arch="$ARCH" "$SUITE" "$ROOT" "$MIRROR" \
		>>"$OUT/bootstrap.log" 2>&1 || { tail -20 "$OUT/bootstrap.log"; finish FAIL "debootstrap failed (see $OUT/bootstrap.log)"; }
	chmod 755 "$ROOT"
	tar -C "$ROOT" --numeric-owner -czf "$BASE.tmp" . || finish FAIL "cannot write $BASE.tmp"
	mv "$BASE.tmp" "$BASE"
	cleanup
	ROOT=""
	log "base: debootstrap + tarball in $(($(now) - tb)) s -> $BASE"
	BASE_HOW=cold
fi

# --- the root: base + clean clone + apt sources -------------------------------------
ROOT=$(mktemp -d "$WORKBASE/root.XXXXXX") || finish FAIL "mktemp failed"
tu=$(now)
tar -C "$ROOT" --numeric-owner -xpzf "$BASE" || finish FAIL "cannot unpack $BASE"
chmod 755 "$ROOT" # mktemp's 0700 would lock apt's _apt user (and any daemon user) out
SHA=$(git -C "$TOP" rev-parse --verify "$REV^{commit}") || finish FAIL "no commit $REV"
if ! git clone -q --no-hardlinks --no-checkout "$TOP" "$ROOT/src/ktlsgate" ||
	! git -C "$ROOT/src/ktlsgate" checkout -q --detach "$SHA"; then
	finish FAIL "git clone of $SHA failed"
fi
log "root: $ROOT (base unpacked, clone of $(git -C "$TOP" log -1 --format='%h %s' "$SHA" | cut -c1-60)) in $(($(now) - tu)) s"
printf '#!/bin/sh\n# check-fresh: start no services from package scripts\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
chmod 755 "$ROOT/usr/sbin/policy-rc.d"
cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true
printf '%s\n' "$ENTRIES" | awk -v s="$SUITE" '$2 == s || $2 == s "-updates" || $2 == s "-security" {
	print "deb", $1, $2, "main" }' >"$ROOT/etc/apt/sources.list"
[ -n "${KG_FRESH_MIRROR:-}" ] && echo "deb $KG_FRESH_MIRROR $SUITE main" >"$ROOT/etc/apt/sources.list"
DEBS="$CACHE/$SUITE-$ARCH-debs"
mkdir -p "$DEBS/partial"

# --- the first `make demo` ----------------------------------------------------------
# Inside the root: what a new user types on a fresh machine.
cat >"$ROOT/root/fresh-first-run.sh" <<'EOF'
set -e
# The test is only honest if the base has none of what deps.sh installs.
for p in make pkg-config libjson-c-dev libssl-dev mosquitto clang; do
	if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		echo "fresh: the base already has $p: not a fresh machine"
		exit 3
	fi
done
chown _apt:root /var/cache/apt/archives/partial 2>/dev/null || true
echo "fresh: apt-get install make (what a new user types first)"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
apt-get install -y -q --no-install-recommends make >/dev/null
cd /src/ktlsgate
echo "fresh: make demo (first run)"
exec make demo
EOF
# Runs as PID 1 of a new PID namespace: when it exits, everything started inside dies.
# shellcheck disable=SC2016
INNER='
set -u
root=$1 debs=$2 chpid=""
umount_all() {
	local m
	for m in var/cache/apt/archives dev sys proc; do
		mountpoint -q "$root/$m" || continue
		umount -R "$root/$m" 2>/dev/null || umount -R -l "$root/$m" 2>/dev/null
	done
}
stop() { [ -n "$chpid" ] && kill -TERM "$chpid" 2>/dev/null; umount_all; exit 124; }
trap umount_all EXIT
trap stop INT TERM
mount -t proc proc "$root/proc" &&
	mount --bind /sys "$root/sys" && mount -o remount,bind,ro "$root/sys" &&
	mount --rbind /dev "$root/dev" &&
	mount --bind "$debs" "$root/var/cache/apt/archives" || { echo "fresh: mounts failed"; exit 2; }
env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
	LANG=C.UTF-8 TERM=dumb chroot "$root" /bin/sh /root/fresh-first-run.sh &
chpid=$!
wait "$chpid"
st=$?
umount_all
trap - EXIT
exit $st
'
log "chroot: apt-get install make; make demo (up to ${T_DEMO}s; log $OUT/demo.log)"
td=$(now)
timeout -k 30 "$T_DEMO" unshare --mount --pid --fork --kill-child=SIGTERM --propagation private \
	/bin/bash -c "$INNER" inner "$ROOT" "$DEBS" >"$OUT/demo.log" 2>&1 &
INNER_PID=$!
wait "$INNER_PID"
st=$?
INNER_PID=""
DEMO_S=$(($(now) - td))
log "chroot: exit status $st after $DEMO_S s"
grep '^fresh: \|deps: installing' "$OUT/demo.log" | sed 's/^/    /' | cut -c1-160
[ $st -eq 124 ] && { tail -30 "$OUT/demo.log"; finish FAIL "timed out after ${T_DEMO}s (see $OUT/demo.log)"; }
if [ $st -ne 0 ]; then
	tail -30 "$OUT/demo.log"
	finish FAIL "first make demo exited $st (see $OUT/demo.log)"
fi
grep -qF "$SUCCESS_LINE" "$OUT/demo.log" ||
	{ tail -30 "$OUT/demo.log"; finish FAIL "make demo exited 0 without '$SUCCESS_LINE'"; }
finish PASS "first make demo on a bare $SUITE root; base $BASE_HOW, demo stage $DEMO_S s"
