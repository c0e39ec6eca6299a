# SPDX-License-Identifier: BSD-2-Clause
# tests/packaging/lib.sh - sourced by test-deb.sh and test-rpm.sh.
#
# minbase_tarball SUITE ARCH: set BASE to the cached debootstrap --variant=minbase
# tarball of SUITE/ARCH ($CACHE/SUITE-ARCH-minbase.tar.gz, the one scripts/check-fresh.sh
# caches too), making it first when it is missing: debootstrap from the mirror the
# host's apt knows for SUITE (KG_FRESH_MIRROR overrides it; nothing names a mirror
# here), under a lock so parallel runs build it once. Uses the caller's CACHE,
# WORKBASE, OUT, log and abort (abort STEP WHY ends the test with a FAIL).
minbase_tarball() {
	local suite=$1 arch=$2 mirror b
	BASE="$CACHE/$suite-$arch-minbase.tar.gz"
	[ -s "$BASE" ] && return 0
	command -v debootstrap >/dev/null || abort root "no $BASE and no debootstrap to make it"
	mirror=${KG_FRESH_MIRROR:-$(apt-get indextargets --format '$(REPO_URI) $(RELEASE)' 2>/dev/null |
		awk -v s="$suite" '$2 == s { print $1; exit }')}
	[ -n "$mirror" ] || abort root "no '$suite' entry in the host's apt sources (set KG_FRESH_MIRROR)"
	mkdir -p "$CACHE"
	exec 9>"$CACHE/lock"
	timeout 1800 flock 9 || abort root "another run holds $CACHE/lock"
	if [ ! -s "$BASE" ]; then
		b=$(mktemp -d "$WORKBASE/base.XXXXXX")
		log "debootstrap --variant=minbase $suite from $mirror (cold)"
		if ! timeout -k 30 900 unshare --mount --propagation private \
			debootstrap --variant=minbase --arch="$arch" "$suite" "$b" "$mirror" >"$OUT/bootstrap.log" 2>&1; then
			rm -rf --one-file-system "$b"
			abort root "debootstrap failed (see $OUT/bootstrap.log)"
		fi
		chmod 755 "$b"
		tar -C "$b" --numeric-owner -czf "$BASE.tmp" . && mv "$BASE.tmp" "$BASE"
		rm -rf --one-file-system "$b"
	fi
	exec 9>&-
}
