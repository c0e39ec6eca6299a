# SPDX-License-Identifier: BSD-2-Clause
# tests/packaging/lib.sh - sourced by test-deb.sh, test-rpm.sh and scripts/build-deb.sh.
#
# suite_sources SUITE: print the apt sources ("deb URI RELEASE main" lines) for SUITE,
# its -updates and -security, taken from the host's apt configuration: the host's own
# entries for SUITE when it has them, else the host's entries for its own release
# (VERSION_CODENAME) with that name replaced by SUITE (a bookworm host lists only
# bookworm; trixie comes from the same mirrors). KG_FRESH_MIRROR replaces all of it
# with "deb KG_FRESH_MIRROR SUITE main". Nothing here names a mirror.
# suite_mirror SUITE: the first URI suite_sources gives for SUITE itself (debootstrap's).
#
# minbase_tarball SUITE ARCH: set BASE to the cached debootstrap --variant=minbase
# tarball of SUITE/ARCH ($CACHE/SUITE-ARCH-minbase.tar.gz, the one scripts/check-fresh.sh
# caches too), making it first when it is missing: debootstrap from suite_mirror, under
# a lock so parallel runs build it once. Uses the caller's CACHE, WORKBASE, OUT, log and
# abort (abort STEP WHY ends the test with a FAIL).
suite_sources() {
	local suite=$1 host
	if [ -n "${KG_FRESH_MIRROR:-}" ]; then
		echo "deb $KG_FRESH_MIRROR $suite main"
		return 0
	fi
	host=$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}")
	apt-get indextargets --format '$(REPO_URI) $(RELEASE)' 2>/dev/null | sort -u |
		awk -v s="$suite" -v h="$host" '
		function want(r, base) { return r == base || r == base "-updates" || r == base "-security" || r == base "-security/updates" }
		{ line[NR] = $0; if (want($2, s)) own = 1 }
		END {
			for (i = 1; i <= NR; i++) {
				split(line[i], f, " ")
				if (own && want(f[2], s)) print "deb", f[1], f[2], "main"
				else if (!own && h != "" && want(f[2], h)) { sub("^" h, s, f[2]); print "deb", f[1], f[2], "main" }
			}
		}' | sort -u
}
suite_mirror() {
	suite_sources "$1" | awk -v s="$1" '$3 == s { print $2; exit }'
}

minbase_tarball() {
	local suite=$1 arch=$2 mirror b
	BASE="$CACHE/$suite-$arch-minbase.tar.gz"
	[ -s "$BASE" ] && return 0
	command -v debootstrap >/dev/null || abort root "no $BASE and no debootstrap to make it"
	mirror=$(suite_mirror "$suite")
	[ -n "$mirror" ] || abort root "no apt source on the host to derive '$suite' from (set KG_FRESH_MIRROR)"
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

# pkg_checks LABEL: the package tests' verdicts. After it: pass NAME, fail NAME WHY,
# log MSG..., abort NAME WHY (a FAIL, then finish) and finish (the caller's cleanup(),
# then "LABEL: N passed, M failed (S s)"; exit 0 only if nothing failed and something
# passed); a signal or an exit before finish is a FAIL and the summary. The caller
# defines cleanup().
pkg_checks() {
	PKG_LABEL=$1 T0=$(date +%s) NPASS=0 NFAIL=0
	trap 'fail interrupted "signal"; finish' INT TERM
	trap 'fail exited_early "the script stopped before its summary"; finish' EXIT
}
pass() { echo "PASS $1"; NPASS=$((NPASS + 1)); }
fail() { echo "FAIL $1: $2"; NFAIL=$((NFAIL + 1)); }
log() { printf '%s: %s\n' "$PKG_LABEL" "$*"; }
finish() {
	trap - EXIT INT TERM
	cleanup
	echo "$PKG_LABEL: $NPASS passed, $NFAIL failed ($(($(date +%s) - T0)) s)"
	[ "$NFAIL" -eq 0 ] && [ "$NPASS" -gt 0 ]
	exit $?
}
abort() { fail "$1" "$2"; finish; }
