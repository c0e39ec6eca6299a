#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# test-rpm.sh - `make check-rpm`: the RPM builds with Debian's rpmbuild, is rpmlint-clean
# as docs/packaging.md's RPM section says, holds the same tree as the Debian package,
# and installs into and erases from a scratch root (issue 12, the RPM part).
#
# Steps (each prints PASS name / FAIL name: why; the last line counts them):
#   build       make rpm (a tarball of the tree, rpmbuild -bb --nodeps)
#   version     the RPM's VERSION-RELEASE is packaging/debian/changelog's
#   rpmlint     rpmlint -c packaging/rpm/rpmlint.toml -r packaging/rpm/ktlsgate.rpmlintrc
#               on the package and its -debuginfo: no E: at all (an unused filter of
#               the rpmlintrc is one), every W: tag is one the RPM section's rpmlint
#               list justifies, and every listed tag still occurs
#   files       rpm -qp (mode, owner, path of every entry) against the expected list
#   same_tree   the regular files and symlinks against the .deb's (dpkg-deb -c of
#               build/deb/ktlsgate_*.deb, paths mapped as docs/packaging.md says),
#               when build/deb has one; reported as not run otherwise
#   binaries    the packaged ktlsgate and ktlsgated (rpm2cpio) print the version
#   scripts     rpm -qp --scripts: the sysusers line is packaging/ktlsgate.sysusers's,
#               nothing enables or starts the unit, stop/disable only on erase,
#               %postun only reloads, %pre leaves the upgrade marker only on an
#               upgrade under systemd, %posttrans acts on it alone (ktlsgate upgrade,
#               try-restart as the fallback); each scriptlet passes sh -n (dash)
#   sysusers    %pre's systemd-sysusers command and here-document, run with --root on
#               an empty root by the host's systemd-sysusers, make the user and group
#   conffile    rpm -qp --configfiles is the config, flagged %config(noreplace)
#   root        rpm --root DIR --nodeps -ivh into a bookworm minbase root (scripts/
#               check-fresh.sh's cached tarball; debootstrapped when missing) with an
#               rpmdb initialised in it (--initdb): the scriptlets run there (chroot)
#   user, dirs, verify (rpm -V), upgrade (to the tree rebuilt as RELEASE.test1: the
#               registry backed up by %pre, the edited config kept, nothing replaced:
#               no systemd), upgrade_fallback (test1 reinstalled under a stand-in
#               systemctl that says systemd runs the unit: the in-place upgrade fails
#               there, %posttrans says so and try-restarts once), erase (the edited
#               config kept as .rpmsave, the state directory with its registry kept,
#               binaries gone, rpmdb empty)
#
# Environment: BUILD (build), KG_RPM (test this .rpm instead of building one),
# KG_PKG_KEEP=1 (keep the root), KG_FRESH_CACHE (/var/cache/ktlsgate-fresh).
set -u
TOP=$(cd "$(dirname "$0")/../.." && pwd)
cd "$TOP" || exit 1
BUILD=${BUILD:-build}
. "$TOP/tests/packaging/lib.sh"
CACHE=${KG_FRESH_CACHE:-/var/cache/ktlsgate-fresh}
WORKBASE=${KG_PKG_WORK:-/var/tmp/ktlsgate-pkg}
OUT="$TOP/$BUILD/packaging-rpm"
ROOT=""
XDIR=""

cleanup() {
	[ -n "$XDIR" ] && rm -rf "$XDIR"
	if [ -n "$ROOT" ] && [ -d "$ROOT" ]; then
		if [ -n "${KG_PKG_KEEP:-}" ]; then log "kept $ROOT"; else rm -rf --one-file-system "$ROOT"; fi
	fi
	return 0
}
pkg_checks rpm

[ "$(id -u)" -eq 0 ] || abort setup "needs root (rpm --root runs the scriptlets in a chroot)"
for t in rpmbuild rpm rpmlint rpm2cpio cpio dash; do
	command -v "$t" >/dev/null || abort setup "$t is missing (scripts/deps.sh check installs rpm, rpmlint)"
done
mkdir -p "$OUT" "$WORKBASE" || abort setup "cannot create $OUT or $WORKBASE"
ARCH=$(rpm --eval '%{_arch}')

# --- build ------------------------------------------------------------------------------
if [ -n "${KG_RPM:-}" ]; then
	RPM=$KG_RPM
	log "testing the given $RPM"
else
	tb=$(date +%s)
	if make --no-print-directory rpm BUILD="$BUILD" >"$OUT/build.log" 2>&1; then
		pass "build ($(($(date +%s) - tb)) s)"
	else
		tail -20 "$OUT/build.log"
		abort build "make rpm failed (see $OUT/build.log)"
	fi
	RPM=$(ls "$BUILD"/rpm/ktlsgate-[0-9]*."$ARCH".rpm 2>/dev/null | head -1)
fi
[ -f "$RPM" ] || abort build "no ktlsgate-*.$ARCH.rpm"
DEBUGINFO=$(ls "$(dirname "$RPM")"/ktlsgate-debuginfo-*."$ARCH".rpm 2>/dev/null | head -1)
q() { rpm -qp --nosignature "$@" "$RPM" 2>/dev/null; }

# --- version: one source of truth ------------------------------------------------------
CHV=$(sed -n '1s/^ktlsgate (\([^)]*\)).*/\1/p' packaging/debian/changelog)
VR=$(q --qf '%{VERSION}-%{RELEASE}')
UPSTREAM=$(q --qf '%{VERSION}')
[ -n "$CHV" ] && [ "$VR" = "$CHV" ] && pass "version ($VR, as packaging/debian/changelog)" ||
	fail version "rpm says '$VR', packaging/debian/changelog '$CHV'"

# --- rpmlint ----------------------------------------------------------------------------
# The justified warnings: "- `tag`: why" lines of the RPM section's rpmlint list. No
# error is allowed: the package's one justified finding is filtered by its rpmlintrc.
SECTION=$(sed -n '/^## RPM/,/^## [^R]/p' docs/packaging.md | sed -n '/^### rpmlint/,/^##/p')
JUSTIFIED=$(printf '%s\n' "$SECTION" | sed -n 's/^- `\([a-z0-9%+.-]*\)`.*/\1/p')
rpmlint -c packaging/rpm/rpmlint.toml -r packaging/rpm/ktlsgate.rpmlintrc "$RPM" ${DEBUGINFO:+"$DEBUGINFO"} >"$OUT/rpmlint.log" 2>&1
lrc=$?
seen=$(grep -E '^\S+: [EW]: ' "$OUT/rpmlint.log" | awk '{ print $3 }' | sort -u)
bad_e=$(grep -E '^\S+: E: ' "$OUT/rpmlint.log" | awk '{ print $3 " " $4 }' | sort -u | tr '\n' ';')
bad_w=$(grep -E '^\S+: W: ' "$OUT/rpmlint.log" | awk '{ print $3 }' | sort -u |
	while read -r tag; do printf '%s\n' "$JUSTIFIED" | grep -qxF "$tag" || printf '%s ' "$tag"; done)
stale=$(printf '%s\n' "$JUSTIFIED" | while read -r tag; do
	[ -n "$tag" ] && ! printf '%s\n' "$seen" | grep -qxF "$tag" && printf '%s ' "$tag"; done)
summary=$(grep -E 'packages and .* checked' "$OUT/rpmlint.log" | sed 's/;.*//; s/^ *//')
counts=$(grep -oE '[0-9]+ errors, [0-9]+ warnings' "$OUT/rpmlint.log")
if ! grep -q 'packages and .* checked' "$OUT/rpmlint.log"; then
	fail rpmlint "rpmlint did not run (exit $lrc): $(tail -3 "$OUT/rpmlint.log" | tr '\n' ';')"
elif [ -z "$JUSTIFIED" ]; then
	fail rpmlint "no justified tags found in docs/packaging.md (section '## RPM', '### rpmlint')"
elif [ -n "$bad_e" ]; then
	fail rpmlint "errors (none is allowed): $bad_e"
elif [ -n "$bad_w" ]; then
	fail rpmlint "warnings not justified in docs/packaging.md: $bad_w"
elif [ -n "$stale" ]; then
	fail rpmlint "justified in docs/packaging.md but no longer reported (remove them): $stale"
else
	pass "rpmlint ($summary: $counts, each justified: $(printf '%s' "$seen" | tr '\n' ' '))"
fi

# --- the file list ----------------------------------------------------------------------
# "mode owner/group path" of every entry but the build-id links (they name the build).
expected() {
	cat <<'EOF'
drwxr-xr-x root/root /etc/ktlsgate
-rw-r--r-- root/root /etc/ktlsgate/ktlsgate.conf
-rwxr-xr-x root/root /usr/bin/ktlsgate
-rw-r--r-- root/root /usr/lib/systemd/system/ktlsgated.service
-rw-r--r-- root/root /usr/lib/sysusers.d/ktlsgate.conf
-rw-r--r-- root/root /usr/lib/tmpfiles.d/ktlsgate.conf
-rw-r--r-- root/root /usr/lib/modules-load.d/ktlsgate.conf
-rwxr-xr-x root/root /usr/sbin/ktlsgated
-rw-r--r-- root/root /usr/share/bash-completion/completions/ktlsgate
drwxr-xr-x root/root /usr/share/doc/ktlsgate
-rw-r--r-- root/root /usr/share/doc/ktlsgate/README.md
drwxr-xr-x root/root /usr/share/doc/ktlsgate/examples
drwxr-xr-x root/root /usr/share/licenses/ktlsgate
-rw-r--r-- root/root /usr/share/licenses/ktlsgate/LICENSE
-rw-r--r-- root/root /usr/share/man/man5/ktlsgate.conf.5.gz
-rw-r--r-- root/root /usr/share/man/man8/ktlsgate.8.gz
-rw-r--r-- root/root /usr/share/man/man8/ktlsgated.8.gz
drwxr-x--- ktlsgate/ktlsgate /var/lib/ktlsgate
EOF
	for f in docs/*.md; do echo "-rw-r--r-- root/root /usr/share/doc/ktlsgate/$(basename "$f")"; done
	for f in docs/examples/*; do echo "-rw-r--r-- root/root /usr/share/doc/ktlsgate/examples/$(basename "$f")"; done
	# the opt-in drop-ins (the spec's rule), where the deb puts them too
	echo "drwxr-xr-x root/root /usr/share/ktlsgate"
	echo "drwxr-xr-x root/root /usr/share/ktlsgate/systemd"
	for f in packaging/systemd/ktlsgated.service.d-examples/*.conf; do
		echo "-rw-r--r-- root/root /usr/share/ktlsgate/systemd/$(basename "$f")"
	done
}
expected | sort >"$OUT/files.expected"
q --qf '[%{FILEMODES:perms} %{FILEUSERNAME}/%{FILEGROUPNAME} %{FILENAMES}\n]' |
	grep -v ' /usr/lib/\.build-id' | sort >"$OUT/files.actual"
nbid=$(q --qf '[%{FILENAMES}\n]' | grep -c '^/usr/lib/\.build-id/../.')
if [ "$nbid" -ne 2 ]; then
	fail files "$nbid build-id links (want 2: ktlsgate, ktlsgated)"
elif d=$(diff "$OUT/files.expected" "$OUT/files.actual"); then
	pass "files ($(wc -l <"$OUT/files.actual") entries and 2 build-id links)"
else
	fail files "rpm -qp differs from the expected list: $(printf '%s' "$d" | grep '^[<>]' | head -8 | tr '\n' ';')"
fi

# --- the same tree as the deb -----------------------------------------------------------
# Regular files and symlinks (directories are listed differently: dpkg lists every one,
# rpm those the package owns). The deb's paths mapped to the RPM's: the unit under
# /usr/lib (Fedora's merged /usr), docs uncompressed (rpm compresses only man pages),
# Debian's changelog.Debian.gz and copyright against the RPM's licenses/LICENSE.
DEB=$(ls "$BUILD"/deb/ktlsgate_*_*.deb 2>/dev/null | grep -v dbgsym | head -1)
if [ -n "$DEB" ]; then
	dpkg-deb -c "$DEB" | awk '$1 !~ /^d/ { print $6 }' | sed 's|^\./|/|' |
		sed -e 's|^/lib/systemd/|/usr/lib/systemd/|' \
		    -e '\|^/usr/share/doc/ktlsgate/changelog.Debian.gz$|d' \
		    -e 's|^/usr/share/doc/ktlsgate/copyright$|/usr/share/licenses/ktlsgate/LICENSE|' \
		    -e 's|^\(/usr/share/doc/ktlsgate/.*\.md\)\.gz$|\1|' | sort >"$OUT/tree.deb"
	q --qf '[%{FILEMODES:perms} %{FILENAMES}\n]' | awk '$1 !~ /^d/ { print $2 }' |
		grep -v '^/usr/lib/\.build-id/' | sort >"$OUT/tree.rpm"
	if d=$(diff "$OUT/tree.deb" "$OUT/tree.rpm"); then
		pass "same_tree ($(wc -l <"$OUT/tree.rpm") files, as in $(basename "$DEB"))"
	else
		fail same_tree "the RPM's files differ from $(basename "$DEB")'s: $(printf '%s' "$d" | grep '^[<>]' | head -8 | tr '\n' ';')"
	fi
else
	log "same_tree: NOT RUN (no $BUILD/deb/ktlsgate_*.deb: make deb first; files above still checks the list)"
fi

# --- the binaries say the package's version ----------------------------------------------
XDIR=$(mktemp -d "$WORKBASE/rpmx.XXXXXX")
(cd "$XDIR" && rpm2cpio "$TOP/$RPM" | cpio -idm --quiet) 2>"$OUT/cpio.log"
v1=$("$XDIR/usr/bin/ktlsgate" --version 2>&1)
v2=$("$XDIR/usr/sbin/ktlsgated" -V 2>&1)
if [ "$v1" = "ktlsgate $UPSTREAM" ] && [ "$v2" = "ktlsgated $UPSTREAM" ]; then
	pass "binaries ($v1, $v2)"
else
	fail binaries "versions '$v1' / '$v2' (want $UPSTREAM)"
fi
if file "$XDIR/usr/sbin/ktlsgated" | grep -q 'not stripped'; then
	fail binaries "ktlsgated is not stripped (the -debuginfo package should hold its symbols)"
fi

# --- the scriptlets ---------------------------------------------------------------------
q --scripts >"$OUT/scripts.txt"
pre=$(q --qf '%{PREIN}')
post=$(q --qf '%{POSTIN}')
preun=$(q --qf '%{PREUN}')
postun=$(q --qf '%{POSTUN}')
posttrans=$(q --qf '%{POSTTRANS}')
sysu=$(grep -v '^#' packaging/ktlsgate.sysusers)
sbad=""
for s in pre post preun postun posttrans; do
	body=${!s}
	[ -n "$body" ] && [ "$body" != "(none)" ] || { sbad="$sbad no %$s;"; continue; }
	e=$(printf '%s\n' "$body" | dash -n 2>&1) || sbad="$sbad %$s: sh -n: $e;"
done
printf '%s\n' "$pre" | grep -qxF "$sysu" || sbad="$sbad %pre lacks the sysusers line '$sysu';"
printf '%s\n' "$pre" | grep -q 'systemd-sysusers --replace=/usr/lib/sysusers.d/ktlsgate.conf -' ||
	sbad="$sbad %pre does not call systemd-sysusers;"
printf '%s\n' "$pre" | grep -q 'useradd -r -g ktlsgate -d /var/lib/ktlsgate' || sbad="$sbad %pre has no useradd fallback;"
printf '%s\n' "$pre" | grep -q "\.backup '\$bak.tmp'" || sbad="$sbad %pre has no registry backup;"
printf '%s\n' "$post" | grep -q 'systemd-tmpfiles --create /usr/lib/tmpfiles.d/ktlsgate.conf' ||
	sbad="$sbad %post does not apply the tmpfiles file;"
grep -v '^[[:space:]]*#' "$OUT/scripts.txt" | grep -qE 'systemctl[^|;]* (enable|start|restart|preset)\b|systemctl --now enable' &&
	sbad="$sbad a scriptlet enables, starts or restarts the unit unconditionally: $(grep -E 'systemctl' "$OUT/scripts.txt" | grep -v '^[[:space:]]*#' | tr '\n' ';');"
printf '%s\n' "$preun" | grep -q 'if \[ "$1" -eq 0 \]' && printf '%s\n' "$preun" | grep -q 'disable --now ktlsgated.service' ||
	sbad="$sbad %preun does not stop and disable on erase only;"
# The upgrade (docs/packaging.md, "Upgrade"): the old package's %postun runs after the
# new %post, so it must not restart (this one's will be the old one next time); the new
# %posttrans replaces the daemon, only after %pre's marker (upgrade, systemd booted).
printf '%s\n' "$postun" | grep -v '^[[:space:]]*#' | grep -q 'restart' &&
	sbad="$sbad %postun restarts: $(printf '%s\n' "$postun" | grep restart | tr '\n' ';');"
printf '%s\n' "$postun" | grep -q 'systemctl daemon-reload' || sbad="$sbad %postun does not daemon-reload;"
printf '%s\n' "$pre" | grep -q 'if \[ "$1" -ge 2 \] && \[ -d /run/systemd/system \]; then' &&
	printf '%s\n' "$pre" | grep -q '>"$marker"' || sbad="$sbad %pre does not leave the marker on an upgrade under systemd only;"
printf '%s\n' "$posttrans" | grep -q '^if \[ -f "$marker" \]; then' || sbad="$sbad %posttrans does not act on the marker alone;"
printf '%s\n' "$posttrans" | grep -q 'ktlsgate upgrade --timeout' && printf '%s\n' "$posttrans" | grep -q 'systemctl try-restart "$unit"' ||
	sbad="$sbad %posttrans has no ktlsgate upgrade with the try-restart fallback;"
[ -z "$sbad" ] && pass "scripts (%pre sysusers + backup + upgrade marker, %post tmpfiles, erase stops, %postun reloads, %posttrans upgrades in place or try-restarts, never enabled; sh -n)" ||
	fail scripts "$sbad"

# --- %pre's systemd-sysusers branch, which the scratch root (no systemd) does not take ---
# Its command line and here-document, as packaged, run by the host's systemd-sysusers
# against an empty root (--root): the user and group it makes must be the sysusers file's.
sucmd=$(printf '%s\n' "$pre" | sed -n "s/^[[:space:]]*\(systemd-sysusers [^<]*\) - <<'SYSUSERS_EOF'\$/\1/p")
subody=$(printf '%s\n' "$pre" | sed -n "/<<'SYSUSERS_EOF'\$/,/^SYSUSERS_EOF\$/p" | sed '1d;$d')
if ! command -v systemd-sysusers >/dev/null; then
	log "sysusers: NOT RUN (no systemd-sysusers on this host)"
elif [ -z "$sucmd" ] || [ -z "$subody" ]; then
	fail sysusers "no systemd-sysusers call with a here-document in %pre"
else
	st=$(mktemp -d "$WORKBASE/sysusers.XXXXXX")
	mkdir -p "$st/etc" && : >"$st/etc/passwd" && : >"$st/etc/group"
	# shellcheck disable=SC2086
	out=$($sucmd --root="$st" - <<<"$subody" 2>&1); src=$?
	pw=$(grep '^ktlsgate:' "$st/etc/passwd" | cut -d: -f1,5-7)
	gr=$(grep -c '^ktlsgate:' "$st/etc/group")
	rm -rf "$st"
	if [ $src -ne 0 ]; then fail sysusers "'$sucmd --root=DIR -': exit $src: $out"
	elif [ "$pw" != "ktlsgate:ktlsgate mutual-TLS gateway:/var/lib/ktlsgate:/usr/sbin/nologin" ] || [ "$gr" -ne 1 ]; then
		fail sysusers "passwd '$pw', $gr group line(s)"
	else pass "sysusers (%pre's '$sucmd -' makes $pw and its group)"; fi
fi

# --- the conffile -----------------------------------------------------------------------
cf=$(q --configfiles)
flags=$(q --qf '[%{FILEFLAGS:fflags} %{FILENAMES}\n]' | awk '$2 == "/etc/ktlsgate/ktlsgate.conf" { print $1 }')
if [ "$cf" = /etc/ktlsgate/ktlsgate.conf ] && [ "$flags" = cn ]; then
	pass "conffile (/etc/ktlsgate/ktlsgate.conf, flags '$flags': %config(noreplace))"
else
	fail conffile "configfiles '$(printf '%s' "$cf" | tr '\n' ' ')', flags '$flags' (want cn)"
fi

# --- the scratch root -------------------------------------------------------------------
# A root with a shell, coreutils and useradd for the scriptlets (rpm chroots into it):
# the bookworm minbase tarball scripts/check-fresh.sh and test-deb.sh cache.
DARCH=$(dpkg --print-architecture)
minbase_tarball bookworm "$DARCH"
ROOT=$(mktemp -d "$WORKBASE/rpmroot.XXXXXX") || abort root "mktemp failed"
tar -C "$ROOT" --numeric-owner -xpzf "$BASE" || abort root "cannot unpack $BASE"
chmod 755 "$ROOT"
# Fedora's rpmdb path (Debian's rpm defaults to ~/.rpmdb).
R() { rpm --root "$ROOT" --dbpath /var/lib/rpm "$@"; }
in_root() { chroot "$ROOT" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"; }
R --initdb || abort root "rpm --initdb failed"
if R --nodeps --nosignature -ivh "$RPM" >"$OUT/install.log" 2>&1; then
	st=$(R -q ktlsgate 2>&1)
	[ "$st" = "ktlsgate-$VR.$ARCH" ] && pass "root (rpm --root --nodeps -ivh: $st)" || fail root "rpm -q says '$st'"
else
	abort root "rpm -ivh failed: $(tail -5 "$OUT/install.log" | tr '\n' ';')"
fi
grep -iE 'warning|error' "$OUT/install.log" && fail root "rpm -ivh warned: $(grep -iE 'warning|error' "$OUT/install.log" | head -3 | tr '\n' ';')"

# The system user (%pre: useradd here, minbase has no systemd-sysusers).
pw=$(in_root getent passwd ktlsgate)
uid=$(printf '%s' "$pw" | cut -d: -f3)
if [ -z "$pw" ]; then fail user "no user ktlsgate in the root"
elif [ "$uid" -ge 1000 ] || [ "$uid" -eq 0 ]; then fail user "uid $uid is not a system uid"
elif [ "$(printf '%s' "$pw" | cut -d: -f6,7)" != /var/lib/ktlsgate:/usr/sbin/nologin ]; then fail user "home/shell: $pw"
elif ! in_root getent group ktlsgate >/dev/null; then fail user "no group ktlsgate"
else pass "user ($pw)"; fi

# Owners and modes as installed (names resolved in the root).
bad=""
for e in "/var/lib/ktlsgate ktlsgate ktlsgate 750" "/etc/ktlsgate/server root ktlsgate 750" \
	"/etc/ktlsgate root root 755" "/etc/ktlsgate/ktlsgate.conf root root 644" \
	"/usr/sbin/ktlsgated root root 755" "/usr/bin/ktlsgate root root 755" \
	"/usr/lib/systemd/system/ktlsgated.service root root 644" \
	"/usr/lib/sysusers.d/ktlsgate.conf root root 644" "/usr/lib/tmpfiles.d/ktlsgate.conf root root 644" \
	"/usr/share/man/man8/ktlsgated.8.gz root root 644" \
	"/usr/share/bash-completion/completions/ktlsgate root root 644"; do
	set -- $e
	got=$(in_root stat -c '%U %G %a' "$1" 2>&1)
	[ "$got" = "$2 $3 $4" ] || bad="$bad $1: '$got' (want '$2 $3 $4');"
done
cmp -s "$ROOT/etc/ktlsgate/ktlsgate.conf" packaging/ktlsgate.conf || bad="$bad the config is not packaging/ktlsgate.conf;"
cmp -s "$ROOT/usr/lib/systemd/system/ktlsgated.service" packaging/systemd/ktlsgated.service || bad="$bad the unit is not packaging/systemd's;"
[ -z "$bad" ] && pass "dirs (state 0750 ktlsgate, /etc/ktlsgate/server 0750 root:ktlsgate, files 0644/0755 root)" || fail dirs "$bad"

v=$(R -V --nodeps ktlsgate 2>&1)
[ -z "$v" ] && pass "verify (rpm -V --nodeps: every file as packaged)" || fail verify "rpm -V: $(printf '%s' "$v" | head -4 | tr '\n' ';')"

# Upgrade to the same tree built as RELEASE.test1, with a registry (made by the
# daemon's user) and an edited config: %pre backs the registry up (SQLite's online
# backup, as its owner, 0600), the edit is kept (noreplace), the old %postun runs.
# The backup needs sqlite3 in the root: Debian's, from test-deb.sh's download cache
# when it has it, else `apt-get download` on the host (bookworm, as the root).
echo '# edited by test-rpm' >>"$ROOT/etc/ktlsgate/ktlsgate.conf"
UVR="$VR.test1"
up_fail() { fail upgrade "$1"; UPGRADED=""; }
UPGRADED=yes
mkdir -p "$ROOT/tmp/debs"
for p in sqlite3 libsqlite3-0 libreadline8 readline-common; do
	d=$(ls "$CACHE/bookworm-$DARCH-debs-packaging/${p}_"*.deb 2>/dev/null | head -1)
	if [ -n "$d" ]; then cp "$d" "$ROOT/tmp/debs/"
	else (cd "$ROOT/tmp/debs" && apt-get download -q "$p" >>"$OUT/download.log" 2>&1) || up_fail "cannot get $p.deb (see $OUT/download.log)"
	fi
done
if [ -n "$UPGRADED" ] && ! in_root sh -c 'dpkg -i /tmp/debs/*.deb' >"$OUT/sqlite3.log" 2>&1; then
	up_fail "dpkg -i sqlite3 in the root failed: $(tail -3 "$OUT/sqlite3.log" | tr '\n' ';')"
fi
if [ -n "$UPGRADED" ] && ! in_root runuser -u ktlsgate -- sqlite3 /var/lib/ktlsgate/registry.db \
	"CREATE TABLE cas(name TEXT); INSERT INTO cas VALUES('Test-Root');" >"$OUT/registry.log" 2>&1; then
	up_fail "cannot make a registry as ktlsgate: $(tail -2 "$OUT/registry.log" | tr '\n' ';')"
fi
if [ -n "$UPGRADED" ] && ! make --no-print-directory rpm BUILD="$BUILD" RPM_RELEASE="${VR#*-}.test1" \
	RPM_DIR="$OUT/upgrade" >"$OUT/build-upgrade.log" 2>&1; then
	up_fail "make rpm RPM_RELEASE=....test1 failed (see $OUT/build-upgrade.log)"
fi
if [ -n "$UPGRADED" ]; then
	URPM=$(ls "$OUT"/upgrade/ktlsgate-[0-9]*."$ARCH".rpm 2>/dev/null | head -1)
	if ! R --nodeps --nosignature -Uvh "$URPM" >"$OUT/upgrade.log" 2>&1; then
		up_fail "rpm -Uvh failed: $(tail -4 "$OUT/upgrade.log" | tr '\n' ';')"
	else
		bak=/var/lib/ktlsgate/registry.db.bak-before-$UVR
		st=$(R -q ktlsgate 2>&1)
		bst=$(in_root stat -c '%U %a' "$bak" 2>&1)
		ic=$(in_root sqlite3 "$bak" 'PRAGMA integrity_check' 2>&1)
		cas=$(in_root sqlite3 "$bak" 'SELECT name FROM cas' 2>&1)
		live=$(in_root sqlite3 -readonly /var/lib/ktlsgate/registry.db 'SELECT name FROM cas' 2>&1)
		if [ "$st" != "ktlsgate-$UVR.$ARCH" ]; then fail upgrade "rpm -q says '$st'"
		elif [ "$bst" != "ktlsgate 600" ]; then fail upgrade "backup $bak: '$bst' (want 'ktlsgate 600')"
		elif [ "$ic" != ok ] || [ "$cas" != Test-Root ]; then fail upgrade "backup: integrity '$ic', CAs '$cas'"
		elif [ "$live" != Test-Root ]; then fail upgrade "registry after the upgrade: CAs '$live'"
		elif ! grep -q "registry backed up to $bak" "$OUT/upgrade.log"; then fail upgrade "%pre did not report the backup"
		elif ! grep -qx '# edited by test-rpm' "$ROOT/etc/ktlsgate/ktlsgate.conf"; then fail upgrade "the edited config was replaced"
		elif [ -e "$ROOT/etc/ktlsgate/ktlsgate.conf.rpmnew" ] || [ -e "$ROOT/etc/ktlsgate/ktlsgate.conf.rpmsave" ]; then
			fail upgrade "an .rpmnew/.rpmsave appeared though the packaged config did not change"
		elif grep -iE 'warning|error' "$OUT/upgrade.log" >/dev/null; then fail upgrade "rpm -Uvh warned: $(grep -iE 'warning|error' "$OUT/upgrade.log" | head -2 | tr '\n' ';')"
		# no systemd in the root: nothing to replace, and nothing tried
		elif grep -E '^ktlsgate: (upgraded|restart|not )' "$OUT/upgrade.log" >/dev/null || [ -e "$ROOT/run/ktlsgate.rpm-upgrade" ]; then
			fail upgrade "without systemd the scriptlets still acted: $(grep '^ktlsgate: ' "$OUT/upgrade.log" | tr '\n' ';') $(ls "$ROOT/run/ktlsgate.rpm-upgrade" 2>/dev/null)"
		else pass "upgrade ($VR -> $UVR: $bak 0600 with the CA, registry kept, config edit kept; no systemd: nothing replaced)"; fi
	fi
fi

# The in-place upgrade's fallback, under a stand-in for systemd: /run/systemd/system and
# a systemctl (the root has none) that says the unit is active with one MainPID and
# logs every call. The daemon does not run here (its libraries are not in the root), so
# `ktlsgate upgrade` fails: %posttrans must say so and try-restart once, %postun (the
# "old" package's, this same spec's) only reload, and rpm -U succeed. The real path,
# under systemd as PID 1, is the deb's (test-boot.sh upgrade, upgrade_unit).
if [ -n "$UPGRADED" ] && [ -e "$ROOT/usr/bin/systemctl" ]; then
	fail upgrade_fallback "the root has a systemctl of its own: no place for the stand-in"
elif [ -n "$UPGRADED" ]; then
	[ -e "$ROOT/run/systemd" ] && had_rs=yes || had_rs=""
	mkdir -p "$ROOT/run/systemd/system"
	cat >"$ROOT/usr/bin/systemctl" <<'SYSTEMCTL_EOF'
#!/bin/sh
# test-rpm: a stand-in for systemctl, logging its calls
echo "systemctl $*" >>/tmp/systemctl.log
case "$*" in
"is-active --quiet ktlsgated.service") exit 0 ;;
"show -p MainPID --value ktlsgated.service") echo 4242 ;;
"show -p User --value ktlsgated.service") echo ktlsgate ;;
"cat ktlsgated.service") echo "# /usr/lib/systemd/system/ktlsgated.service"; cat /usr/lib/systemd/system/ktlsgated.service ;;
esac
exit 0
SYSTEMCTL_EOF
	chmod 0755 "$ROOT/usr/bin/systemctl"
	# --reinstall of RELEASE.test1: an upgrade transaction to rpm (%pre gets 2, the old
	# instance's %preun and %postun run, then %posttrans) without a third rpmbuild.
	if ! R --nodeps --nosignature --reinstall -vh "$URPM" >"$OUT/upgrade2.log" 2>&1; then
		fail upgrade_fallback "rpm --reinstall failed: $(tail -4 "$OUT/upgrade2.log" | tr '\n' ';')"
	else
		calls=$(grep -v -e '^systemctl show' -e '^systemctl cat' -e '^systemctl is-active' "$ROOT/tmp/systemctl.log" 2>/dev/null | tr '\n' ';')
		said=$(grep '^ktlsgate: ' "$OUT/upgrade2.log" | grep -v 'registry backed up' | tr '\n' ';')
		st=$(R -q ktlsgate 2>&1)
		if [ "$st" != "ktlsgate-$UVR.$ARCH" ]; then fail upgrade_fallback "rpm -q says '$st'"
		elif [ -e "$ROOT/run/ktlsgate.rpm-upgrade" ]; then fail upgrade_fallback "%posttrans left its marker"
		# %postun's reload, %posttrans's reload and its one try-restart, in that order
		elif [ "$calls" != "systemctl daemon-reload;systemctl daemon-reload;systemctl try-restart ktlsgated.service;" ]; then
			fail upgrade_fallback "systemctl calls (besides show/cat/is-active): '$calls'; the scriptlets said '$said'"
		else
			case $said in
			"ktlsgate: restarting: ktlsgate upgrade exited "[1-9]*";") pass "upgrade_fallback ($UVR reinstalled under a stand-in systemd: %postun reloaded, %posttrans said '${said%;}' and try-restarted once)" ;;
			*) fail upgrade_fallback "%posttrans said '$said', want one 'ktlsgate: restarting: ktlsgate upgrade exited N: ...' line" ;;
			esac
		fi
	fi
	rm -f "$ROOT/usr/bin/systemctl"
	rmdir "$ROOT/run/systemd/system"
	[ -n "$had_rs" ] || rmdir "$ROOT/run/systemd"
fi

# Erase: unmodified files go, the edited config stays as .rpmsave, the state directory
# with its registry stays (rpm has no purge), /etc/ktlsgate/server (made by %post, not
# the package's) stays.
if [ ! -f "$ROOT/var/lib/ktlsgate/registry.db" ]; then
	: >"$ROOT/var/lib/ktlsgate/registry.db"
	chown --reference="$ROOT/var/lib/ktlsgate" "$ROOT/var/lib/ktlsgate/registry.db"
fi
R --nodeps -e ktlsgate >"$OUT/erase.log" 2>&1
erc=$?
left=$(cd "$ROOT" && ls -d usr/sbin/ktlsgated usr/bin/ktlsgate usr/lib/systemd/system/ktlsgated.service \
	usr/share/man/man8/ktlsgated.8.gz usr/share/doc/ktlsgate usr/lib/sysusers.d/ktlsgate.conf \
	etc/ktlsgate/ktlsgate.conf 2>/dev/null | tr '\n' ' ')
if [ $erc -ne 0 ]; then fail erase "rpm -e: exit $erc: $(tail -3 "$OUT/erase.log" | tr '\n' ';')"
elif R -q ktlsgate >/dev/null 2>&1; then fail erase "still installed"
elif [ -n "$left" ]; then fail erase "left behind: $left"
elif ! grep -qx '# edited by test-rpm' "$ROOT/etc/ktlsgate/ktlsgate.conf.rpmsave" 2>/dev/null; then
	fail erase "no /etc/ktlsgate/ktlsgate.conf.rpmsave with the edit: $(ls "$ROOT/etc/ktlsgate" | tr '\n' ' ')"
elif [ ! -f "$ROOT/var/lib/ktlsgate/registry.db" ] || [ ! -d "$ROOT/etc/ktlsgate/server" ]; then
	fail erase "the registry or /etc/ktlsgate/server was removed"
else
	pass "erase (files gone; ktlsgate.conf.rpmsave with the edit, /var/lib/ktlsgate with its registry and /etc/ktlsgate/server kept)"
fi
finish
