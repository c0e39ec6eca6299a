#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# fetch-kernel.sh NAME - fetch Debian's stock kernel for the kTLS guest (NAME = bookworm
# | trixie) and print its version (uname -r) on stdout; progress goes to stderr.
#
# The package is the one `linux-image-amd64` depends on: bookworm's from the system's
# apt sources, trixie's through a private apt config under the cache (the system's
# sources, lists and caches are never touched). We keep vmlinuz, the kernel config and
# only the module subtrees kTLS needs (decompressed, with a busybox-made modules.dep),
# in ${KG_VM_CACHE:-/var/tmp/ktlsgate-vm}/NAME-VERSION/. A complete cache entry is
# reused without any network access; KG_VM_REFRESH=1 asks the archive for a newer
# kernel. KG_VM_MOD_DIRS replaces the list of module subtrees (paths under kernel/).
set -euo pipefail

NAME=${1:-}
CACHE=${KG_VM_CACHE:-/var/tmp/ktlsgate-vm}
MOD_DIRS=${KG_VM_MOD_DIRS:-crypto arch/x86/crypto lib/crypto net/tls}
MIRROR=${KG_VM_MIRROR:-http://deb.debian.org/debian}
SEC_MIRROR=${KG_VM_SEC_MIRROR:-http://deb.debian.org/debian-security}

die() { echo "fetch-kernel: $*" >&2; exit 1; }
say() { echo "fetch-kernel: $*" >&2; }

case "$NAME" in
bookworm | trixie) ;;
*) die "usage: fetch-kernel.sh bookworm|trixie" ;;
esac
for t in apt-get apt-cache dpkg-deb busybox xz; do
	command -v "$t" >/dev/null || die "$t not found"
done
mkdir -p "$CACHE"

# extract_vmlinux DIR: the ELF kernel inside DIR/vmlinuz, as DIR/vmlinux. qemu boots
# it directly (PVH entry), which saves the 2-3 s the bzImage stub spends inflating
# itself under TCG. Best effort: run.sh falls back to vmlinuz.
extract_vmlinux() {
	local z=$1/vmlinuz magic tool off
	[ -s "$1/vmlinux" ] && return 0
	command -v readelf >/dev/null || return 0
	for m in 'xz:\xfd7zXZ\x00' 'zstd:\x28\xb5\x2f\xfd' 'gzip:\x1f\x8b\x08'; do
		tool=${m%%:*} magic=${m#*:}
		command -v "$tool" >/dev/null || continue
		for off in $(LC_ALL=C grep -obUaP "$magic" "$z" | cut -d: -f1 | head -3); do
			tail -c +$((off + 1)) "$z" | "$tool" -dc 2>/dev/null >"$1/vmlinux.tmp" || true
			# XEN_ELFNOTE_PHYS32_ENTRY (0x12): the PVH entry point qemu needs.
			if readelf -n "$1/vmlinux.tmp" 2>/dev/null | grep -q '^ *Xen .*(0x00000012)'; then
				mv "$1/vmlinux.tmp" "$1/vmlinux"
				return 0
			fi
		done
	done
	rm -f "$1/vmlinux.tmp"
	say "note: no ELF vmlinux with a PVH entry found in $z; booting the bzImage"
}

# A previous complete fetch is used as is (no network) unless a refresh is asked for.
current="$CACHE/$NAME.current"
if [ -z "${KG_VM_REFRESH:-}" ] && [ -L "$current" ] && [ -f "$current/.complete" ]; then
	extract_vmlinux "$current"
	cat "$current/kver"
	exit 0
fi

# Private apt state for the foreign release; the system's apt is used for bookworm.
# Network timeouts short enough that an unreachable archive fails fast.
APT=(-o "Acquire::http::Timeout=20" -o "Acquire::Retries=2")
if [ "$NAME" = trixie ]; then
	A="$CACHE/apt-trixie"
	mkdir -p "$A/lists/partial" "$A/cache/archives/partial" "$A/parts" "$A/prefs.d"
	keys=/usr/share/keyrings/debian-archive-keyring.gpg
	[ -r "$keys" ] || die "$keys missing (package debian-archive-keyring)"
	cat >"$A/sources.list" <<-EOF
		deb [signed-by=$keys] $MIRROR trixie main
		deb [signed-by=$keys] $MIRROR trixie-updates main
		deb [signed-by=$keys] $SEC_MIRROR trixie-security main
	EOF
	APT+=(-o "Dir::Etc::SourceList=$A/sources.list" -o "Dir::Etc::SourceParts=$A/parts"
		-o "Dir::State::Lists=$A/lists" -o "Dir::Cache=$A/cache"
		-o "Dir::Etc::Preferences=$A/prefs" -o "Dir::Etc::PreferencesParts=$A/prefs.d"
		-o "APT::Architecture=amd64" -o "APT::Get::List-Cleanup=0"
		-o "APT::Sandbox::User=root")
	if [ -n "${KG_VM_REFRESH:-}" ] || ! ls "$A/lists/"*_InRelease >/dev/null 2>&1; then
		say "updating the private trixie package lists in $A"
		if ! apt-get "${APT[@]}" -q update >"$A/update.log" 2>&1 ||
			grep -qE '^(W|E): (Failed|Some index)' "$A/update.log"; then
			sed 's/^/  /' "$A/update.log" >&2
			die "cannot reach the Debian archive ($MIRROR) for trixie"
		fi
	fi
fi

# The kernel package the meta package depends on, e.g. linux-image-6.1.0-56-amd64.
dep=$(apt-cache "${APT[@]}" show --no-all-versions linux-image-amd64 2>/dev/null |
	sed -n 's/^Depends: //p' | tr ',' '\n' | sed -n 's/^ *\(linux-image-[^ ]*\).*/\1/p' | head -1)
[ -n "$dep" ] || die "no linux-image-amd64 in the $NAME package lists (for bookworm: apt-get update)"
kver=${dep#linux-image-}
dir="$CACHE/$NAME-$kver"
if [ -f "$dir/.complete" ]; then
	extract_vmlinux "$dir"
	ln -sfn "$NAME-$kver" "$current"
	echo "$kver"
	exit 0
fi

rm -rf "$dir.tmp"
mkdir -p "$dir.tmp"
deb=$(ls "$CACHE/debs/${dep}_"*.deb 2>/dev/null | head -1 || true)
if [ -z "$deb" ]; then
	mkdir -p "$CACHE/debs"
	say "downloading $dep"
	t0=$(date +%s)
	if ! (cd "$CACHE/debs" && apt-get "${APT[@]}" -q download "$dep") >"$dir.tmp/download.log" 2>&1; then
		sed 's/^/  /' "$dir.tmp/download.log" >&2
		die "cannot download $dep from the Debian archive (unreachable? for bookworm, stale lists: apt-get update)"
	fi
	deb=$(ls "$CACHE/debs/${dep}_"*.deb | head -1)
	say "downloaded $(basename "$deb") ($(du -m "$deb" | cut -f1) MB) in $(($(date +%s) - t0)) s"
fi

# Bookworm ships /lib/modules, trixie (merged /usr) /usr/lib/modules; take only what
# the guest needs.
say "extracting $(basename "$deb")"
raw="$dir.tmp/raw"
mkdir -p "$raw"
dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$raw" --wildcards \
	"./boot/vmlinuz-$kver" "./boot/config-$kver" "./lib/modules/$kver/*" "./usr/lib/modules/$kver/*" \
	2>/dev/null || true
[ -f "$raw/boot/vmlinuz-$kver" ] || die "no boot/vmlinuz-$kver in $deb"
mdir=$raw/lib/modules/$kver
[ -d "$mdir" ] || mdir=$raw/usr/lib/modules/$kver
[ -d "$mdir/kernel" ] || die "no modules for $kver in $deb"

mv "$raw/boot/vmlinuz-$kver" "$dir.tmp/vmlinuz"
cp "$raw/boot/config-$kver" "$dir.tmp/config" 2>/dev/null || true
out="$dir.tmp/modules/lib/modules/$kver"
mkdir -p "$out/kernel"
for d in $MOD_DIRS; do
	if [ -d "$mdir/kernel/$d" ]; then
		mkdir -p "$out/kernel/$(dirname "$d")"
		cp -a "$mdir/kernel/$d" "$out/kernel/$d"
	else
		say "note: $kver has no kernel/$d"
	fi
done
cp -a "$mdir/modules.builtin" "$mdir/modules.order" "$out/" 2>/dev/null || true
# busybox depmod/modprobe want plain .ko files.
find "$out" -name '*.ko.xz' -exec xz -d {} +
find "$out" -name '*.ko.zst' | grep -q . && die "zstd modules are not supported"
busybox depmod -b "$dir.tmp/modules" "$kver"
extract_vmlinux "$dir.tmp"
[ -s "$out/modules.dep" ] || die "busybox depmod made no modules.dep"
rm -rf "$raw"
echo "$kver" >"$dir.tmp/kver"
touch "$dir.tmp/.complete"
rm -rf "$dir"
mv "$dir.tmp" "$dir"
ln -sfn "$NAME-$kver" "$current"
say "$NAME kernel $kver ready in $dir"
echo "$kver"
