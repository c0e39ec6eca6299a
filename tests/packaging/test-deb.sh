#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# test-deb.sh - `make check-packages`: the Debian package builds, is lintian-clean, holds
# exactly the expected files, and installs, upgrades, removes and purges as
# docs/packaging.md says, in a fresh root of its release (issue 12, the DEB part):
# bookworm (the host's release, `make deb`) or trixie (KG_PKG_SUITE=trixie, `make
# deb-trixie`: built in a trixie root). What differs by release is in the table below
# ("per release"), not loosened.
#
# Steps (each prints PASS name / FAIL name: why; the last line counts them):
#   host   build       make deb / make deb-SUITE (scripts/build-deb.sh)
#          build_root  (not the host's release) the cached build root is the current
#                      Build-Depends' and was used; another Build-Depends names another
#          version     the changelog's version + ~debN of the release
#          man         groff -man -ww -z and man --warnings -l on each page: no warning
#          lintian     lintian on the .changes (.deb, dbgsym, .buildinfo): no E:, and
#                      every W: tag is one docs/packaging.md justifies for the release;
#                      the host's lintian for the host's release, else the release's own,
#                      run in its build root (build/deb-SUITE/lintian.log)
#          files       dpkg-deb -c against the expected list (modes and owners too)
#          depends     the .deb's Depends names the release's libssl and libbpf packages
#          conf_drift  the packaged config's keys are docs/examples/ktlsgate.conf's
#          completion  the completion's nouns and verbs are those of `ktlsgate --help`
#          scripts     the maintainer scripts (dpkg-deb -e) pass dash -n; debhelper's
#                      parts stop nothing on upgrade and restart nothing (the release's
#                      debhelper, with --no-stop-on-upgrade); postinst daemon-reloads,
#                      runs ktlsgate upgrade with the try-restart fallback; preinst
#                      saves the unit's sum (docs/packaging.md, "Upgrade")
#   root   install     apt-get install ./ktlsgate_*.deb in a debootstrapped minbase root
#                      of the release (chroot; policy-rc.d refuses service starts)
#          links       the installed ktlsgated resolves libssl.so.3 and libbpf.so.1 to
#                      the release's packages; `openssl version` there is its series
#          user, dirs, conffile, cli, config_unprovisioned, config_pki, daemon_start
#          (in a network namespace of its own), upgrade (no systemd: the running
#          daemon is left alone), schema_probe (the CLI's words on an older schema,
#          which postinst relies on), remove, purge (see the inner script below)
#
# The root: scripts/check-fresh.sh's cached minbase tarball
# ($KG_FRESH_CACHE/SUITE-ARCH-minbase.tar.gz, default /var/cache/ktlsgate-fresh);
# when it is missing this script makes it the same way (debootstrap, the mirror from the
# host's apt configuration, lib.sh: nothing is hard-coded). Downloaded .debs are cached
# beside it in SUITE-ARCH-debs-packaging (not check-fresh's: both may run at once). The
# chroot runs in its own mount and PID namespaces (unshare): its mounts and processes
# die with it; it shares the host's network (apt), and the one daemon it starts runs
# in a network namespace this script creates (loopback only) and removes.
#
# Environment: BUILD (build), KG_PKG_SUITE (bookworm or trixie; bookworm), KG_PKG_DEB
# (test this .deb instead of building one; lintian and the file list still run on it),
# KG_PKG_KEEP=1 (keep the root), KG_PKG_TIMEOUT (900 s for the chroot part).
set -u
TOP=$(cd "$(dirname "$0")/../.." && pwd)
cd "$TOP" || exit 1
BUILD=${BUILD:-build}
. "$TOP/tests/packaging/lib.sh"
SUITE=${KG_PKG_SUITE:-bookworm}
CACHE=${KG_FRESH_CACHE:-/var/cache/ktlsgate-fresh}
WORKBASE=${KG_PKG_WORK:-/var/tmp/ktlsgate-pkg}
T_ROOT=${KG_PKG_TIMEOUT:-900}
OUT="$TOP/$BUILD/packaging"
ROOT=""
INNER_PID=""

cleanup() {
	if [ -n "$INNER_PID" ] && kill -0 "$INNER_PID" 2>/dev/null; then
		kill "$INNER_PID" 2>/dev/null
		timeout 30 tail --pid="$INNER_PID" -f /dev/null 2>/dev/null || kill -9 "$INNER_PID" 2>/dev/null
	fi
	[ -n "${NETNS:-}" ] && ip netns del "$NETNS" 2>/dev/null
	[ -n "$ROOT" ] && [ -d "$ROOT" ] || return 0
	awk -v r="$ROOT/" 'index($5 "/", r) == 1 { print $5 }' /proc/self/mountinfo | sort -r |
		while read -r m; do umount -l "$m" 2>/dev/null; done
	if awk -v r="$ROOT/" 'index($5 "/", r) == 1 { f = 1 } END { exit !f }' /proc/self/mountinfo; then
		echo "packaging: $ROOT still has mounts; not removing it" >&2
		return 0
	fi
	if [ -n "${KG_PKG_KEEP:-}" ]; then
		log "kept $ROOT"
	else
		rm -rf --one-file-system "$ROOT"
	fi
}
pkg_checks packaging

[ "$(id -u)" -eq 0 ] || abort setup "needs root (chroot, mount namespaces, dpkg inside the root)"
for t in dpkg-buildpackage dh lintian groff debootstrap unshare ip; do
	command -v "$t" >/dev/null || abort setup "$t is missing (scripts/deps.sh check installs it)"
done
mkdir -p "$OUT" "$CACHE" "$WORKBASE" || abort setup "cannot create $OUT, $CACHE or $WORKBASE"
ARCH=$(dpkg --print-architecture)
HOST_SUITE=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")

# --- per release ------------------------------------------------------------------------
# DEBN: the version suffix ~debN (docs/packaging.md, "Two releases"); UNIT_DIR: where
# that release's debhelper puts the unit (trixie's installs into /usr only); SSL_PKG,
# BPF_PKG: the packages that must provide libssl.so.3 and libbpf.so.1 (trixie renamed
# libssl3 for the 64-bit time_t transition); OPENSSL: the `openssl version` series.
case $SUITE in
bookworm) DEBN=12 UNIT_DIR=lib/systemd/system SSL_PKG=libssl3 BPF_PKG=libbpf1 OPENSSL=3.0 ;;
trixie) DEBN=13 UNIT_DIR=usr/lib/systemd/system SSL_PKG=libssl3t64 BPF_PKG=libbpf1 OPENSSL=3.5 ;;
*) abort setup "no expectations for the release '$SUITE' (bookworm, trixie)" ;;
esac
# The host's release is built on the host (make deb), another one in its own root.
if [ "$SUITE" = "$HOST_SUITE" ]; then TARGET=deb DEBDIR=$BUILD/deb; else TARGET=deb-$SUITE DEBDIR=$BUILD/deb-$SUITE; fi

# --- host: build ----------------------------------------------------------------------
if [ -n "${KG_PKG_DEB:-}" ]; then
	DEB=$KG_PKG_DEB
	CHANGES=$(ls "$(dirname "$DEB")"/ktlsgate_*.changes 2>/dev/null | head -1)
	log "testing the given $DEB ($SUITE)"
else
	tb=$(date +%s)
	if make --no-print-directory "$TARGET" BUILD="$BUILD" >"$OUT/build.log" 2>&1; then
		pass "build (make $TARGET, $(($(date +%s) - tb)) s)"
	else
		tail -20 "$OUT/build.log"
		abort build "make $TARGET failed (see $OUT/build.log)"
	fi
	DEB=$(ls "$DEBDIR"/ktlsgate_*_"$ARCH".deb 2>/dev/null | head -1)
	CHANGES=$(ls "$DEBDIR"/ktlsgate_*_"$ARCH".changes 2>/dev/null | head -1)
fi
[ -f "$DEB" ] || abort build "no ktlsgate_*_$ARCH.deb"
VERSION=$(dpkg-deb -f "$DEB" Version)
UPSTREAM=${VERSION%-*}

# --- host: the build root of another release -------------------------------------------
# Its cached tarball is named after packaging/debian/control's Build-Depends: the one for
# the current control exists and this build used it; one more Build-Depends names
# another (so a changed field makes a new root).
if [ "$TARGET" != deb ]; then
	broot=$(KG_FRESH_CACHE=$CACHE scripts/build-deb.sh --root-path "$SUITE")
	ctl=$(mktemp "$WORKBASE/control.XXXXXX")
	sed 's/^Build-Depends: /Build-Depends: kg-probe-package,\n               /' packaging/debian/control >"$ctl"
	broot2=$(KG_FRESH_CACHE=$CACHE scripts/build-deb.sh --root-path "$SUITE" "$ctl")
	rm -f "$ctl"
	if [ -z "$broot" ] || [ -z "$broot2" ]; then
		fail build_root "scripts/build-deb.sh --root-path printed nothing"
	elif [ ! -s "$broot" ]; then
		fail build_root "$broot is missing"
	elif [ "$broot2" = "$broot" ]; then
		fail build_root "one more Build-Depends names the same root $broot"
	elif [ -z "${KG_PKG_DEB:-}" ] && ! grep -qF "$(basename "$broot")" "$OUT/build.log"; then
		fail build_root "make $TARGET did not use $broot (see $OUT/build.log)"
	else
		pass "build_root ($(basename "$broot"); one more Build-Depends: $(basename "$broot2"))"
	fi
fi

# --- host: the version scheme -----------------------------------------------------------
# The changelog's version + ~debN: below the unsuffixed version, and a bookworm
# package below the trixie one, so a dist-upgrade upgrades it. Compared with the other
# release's .deb when build/ has one.
CLV=$(dpkg-parsechangelog -l packaging/debian/changelog -S Version)
vbad=""
[ "$VERSION" = "$CLV~deb$DEBN" ] || vbad="Version '$VERSION', want '$CLV~deb$DEBN';"
dpkg --compare-versions "$VERSION" lt "$CLV" || vbad="$vbad '$VERSION' is not below '$CLV';"
vother=""
for o in "$BUILD"/deb/ktlsgate_*_"$ARCH".deb "$BUILD"/deb-*/ktlsgate_*_"$ARCH".deb; do
	[ -f "$o" ] && [ "$(realpath "$o")" != "$(realpath "$DEB")" ] || continue
	ov=$(dpkg-deb -f "$o" Version)
	case $ov in *~deb12) rel=lt ;; *~deb13) rel=gt ;; *) continue ;; esac
	[ "$ov" = "$VERSION" ] && continue
	if dpkg --compare-versions "$ov" "$rel" "$VERSION"; then vother="$vother; $ov $rel $VERSION"
	else vbad="$vbad '$ov' $rel '$VERSION' does not hold;"; fi
done
[ -z "$vbad" ] && pass "version ($VERSION$vother)" || fail version "$vbad"

# --- host: man pages --------------------------------------------------------------------
bad=""
for m in packaging/man/*.[0-9]; do
	w=$(LC_ALL=C.UTF-8 groff -man -ww -z "$m" 2>&1)
	# man -l as lintian renders it (man-db comes with debhelper)
	w="$w$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -E UTF-8 -l -Tutf8 -Z "$m" 2>&1 >/dev/null)"
	[ -z "$w" ] || bad="$bad $m: $w;"
done
[ -z "$bad" ] && pass man || fail man "$bad"

# --- host: lintian ----------------------------------------------------------------------
# The justified tags: "- `tag`: why" lines of docs/packaging.md's lintian section (every
# release), and "- `tag` (SUITE): why" ones (that release only).
JUSTIFIED=$(sed -n '/^## lintian/,/^## /p' docs/packaging.md |
	sed -n -e 's/^- `\([a-z0-9+.-]*\)`:.*/\1/p' -e "s/^- \`\([a-z0-9+.-]*\)\` ($SUITE):.*/\1/p")
LINT_ON=${CHANGES:-$DEB}
if [ "$TARGET" = deb ]; then
	lintian --pedantic -I "$LINT_ON" >"$OUT/lintian.log" 2>&1
	lrc=$?
	lwho="host lintian $(lintian --version | awk '{ print $2 }')"
else
	# The release's own lintian ran in its build root (scripts/build-deb.sh); its log
	# must be about this very .deb.
	llog="$(dirname "$DEB")/lintian.log"
	want_sum=$(sha256sum "$DEB" | cut -d' ' -f1)
	head1=$(head -1 "$llog" 2>/dev/null)
	lrc=$(sed -n 's/^# lintian exit \([0-9]*\)$/\1/p' "$llog" 2>/dev/null)
	lwho="$SUITE lintian $(printf '%s' "$head1" | awk '{ print $3 }')"
	if [ ! -s "$llog" ]; then lrc=99; echo "no $llog (make $TARGET writes it)" >"$OUT/lintian.log"
	elif [ "${head1##* }" != "$want_sum" ]; then lrc=99; echo "$llog is not about $(basename "$DEB") (sha256)" >"$OUT/lintian.log"
	else grep -v '^# ' "$llog" >"$OUT/lintian.log"; fi
	lrc=${lrc:-99}
fi
errs=$(grep -c '^E: ' "$OUT/lintian.log")
unjustified=$(grep '^W: ' "$OUT/lintian.log" | awk '{ print $3 }' | sort -u |
	while read -r tag; do printf '%s\n' "$JUSTIFIED" | grep -qx "$tag" || printf '%s ' "$tag"; done)
tags=$(grep -E '^[EWIP]: ' "$OUT/lintian.log" | awk '{ print $1 $3 }' | sort -u | tr '\n' ' ')
if [ "$errs" -ne 0 ]; then
	fail lintian "$errs error(s): $(grep '^E: ' "$OUT/lintian.log" | head -5 | tr '\n' ';')"
elif [ "$lrc" -gt 1 ]; then
	fail lintian "lintian itself failed (exit $lrc): $(grep -v '^N:' "$OUT/lintian.log" | tail -3 | tr '\n' ';')"
elif [ -n "$unjustified" ]; then
	fail lintian "warnings not justified in docs/packaging.md: $unjustified"
elif [ -z "$JUSTIFIED" ]; then
	fail lintian "no justified tags found in docs/packaging.md (section '## lintian')"
else
	pass "lintian ($lwho, $(basename "$LINT_ON"): ${tags:-no tags})"
fi

# --- host: the file list ----------------------------------------------------------------
# "mode owner path" of every entry; the documentation part follows the tree's docs/.
expected() {
	cat <<'EOF'
drwxr-xr-x root/root ./
drwxr-xr-x root/root ./etc/
drwxr-xr-x root/root ./etc/ktlsgate/
-rw-r--r-- root/root ./etc/ktlsgate/ktlsgate.conf
drwxr-xr-x root/root ./usr/
drwxr-xr-x root/root ./usr/bin/
-rwxr-xr-x root/root ./usr/bin/ktlsgate
drwxr-xr-x root/root ./usr/lib/
drwxr-xr-x root/root ./usr/lib/sysusers.d/
-rw-r--r-- root/root ./usr/lib/sysusers.d/ktlsgate.conf
drwxr-xr-x root/root ./usr/lib/tmpfiles.d/
-rw-r--r-- root/root ./usr/lib/tmpfiles.d/ktlsgate.conf
drwxr-xr-x root/root ./usr/lib/modules-load.d/
-rw-r--r-- root/root ./usr/lib/modules-load.d/ktlsgate.conf
drwxr-xr-x root/root ./usr/sbin/
-rwxr-xr-x root/root ./usr/sbin/ktlsgated
drwxr-xr-x root/root ./usr/share/
drwxr-xr-x root/root ./usr/share/bash-completion/
drwxr-xr-x root/root ./usr/share/bash-completion/completions/
-rw-r--r-- root/root ./usr/share/bash-completion/completions/ktlsgate
drwxr-xr-x root/root ./usr/share/doc/
drwxr-xr-x root/root ./usr/share/doc/ktlsgate/
-rw-r--r-- root/root ./usr/share/doc/ktlsgate/README.md
-rw-r--r-- root/root ./usr/share/doc/ktlsgate/changelog.Debian.gz
-rw-r--r-- root/root ./usr/share/doc/ktlsgate/copyright
drwxr-xr-x root/root ./usr/share/doc/ktlsgate/examples/
drwxr-xr-x root/root ./usr/share/man/
drwxr-xr-x root/root ./usr/share/man/man5/
-rw-r--r-- root/root ./usr/share/man/man5/ktlsgate.conf.5.gz
drwxr-xr-x root/root ./usr/share/man/man8/
-rw-r--r-- root/root ./usr/share/man/man8/ktlsgate.8.gz
-rw-r--r-- root/root ./usr/share/man/man8/ktlsgated.8.gz
EOF
	# the unit, where the release's debhelper puts it (UNIT_DIR, above)
	d=.
	for c in ${UNIT_DIR//\// }; do
		d=$d/$c
		echo "drwxr-xr-x root/root $d/"
	done
	echo "-rw-r--r-- root/root ./$UNIT_DIR/ktlsgated.service"
	for f in docs/*.md; do echo "-rw-r--r-- root/root ./usr/share/doc/ktlsgate/$(basename "$f").gz"; done
	for f in docs/examples/*; do echo "-rw-r--r-- root/root ./usr/share/doc/ktlsgate/examples/$(basename "$f")"; done
	# the feature drop-ins, installed disabled (docs/packaging.md, "Capabilities and drop-ins")
	echo "drwxr-xr-x root/root ./usr/share/ktlsgate/"
	echo "drwxr-xr-x root/root ./usr/share/ktlsgate/systemd/"
	for f in packaging/systemd/ktlsgated.service.d-examples/*.conf; do
		echo "-rw-r--r-- root/root ./usr/share/ktlsgate/systemd/$(basename "$f")"
	done
}
expected | sort -u >"$OUT/files.expected"
dpkg-deb -c "$DEB" | awk '{ print $1, $2, $6 }' | sort >"$OUT/files.actual"
if d=$(diff "$OUT/files.expected" "$OUT/files.actual"); then
	pass "files ($(wc -l <"$OUT/files.actual") entries)"
else
	fail files "dpkg-deb -c differs from the expected list: $(printf '%s' "$d" | grep '^[<>]' | head -8 | tr '\n' ';')"
fi

# --- host: the release's libraries, by package name -------------------------------------
dep=$(dpkg-deb -f "$DEB" Depends)
names=$(printf '%s\n' "$dep" | tr ',|' '\n\n' | awk '{ print $1 }')
dbad=""
for p in "$SSL_PKG" "$BPF_PKG"; do
	printf '%s\n' "$names" | grep -qx "$p" || dbad="$dbad no $p;"
done
# the TPM key's OpenSSL provider: recommended (the TPM is optional), found by the boot test
rec=$(dpkg-deb -f "$DEB" Recommends)
printf '%s\n' "$rec" | tr ',|' '\n\n' | awk '{ print $1 }' | grep -qx tpm2-openssl || dbad="$dbad Recommends '$rec' lacks tpm2-openssl;"
[ -z "$dbad" ] && pass "depends ($SSL_PKG and $BPF_PKG in: $dep; recommends $rec)" || fail depends "Depends '$dep':$dbad"

# --- host: the packaged config follows the documented example --------------------------
# Same body from [daemon] on (only the header differs): a key added to the example and
# not to the package (or the reverse) fails here.
if d=$(diff <(sed -n '/^\[daemon\]/,$p' docs/examples/ktlsgate.conf) <(sed -n '/^\[daemon\]/,$p' packaging/ktlsgate.conf)); then
	pass conf_drift
else
	fail conf_drift "packaging/ktlsgate.conf and docs/examples/ktlsgate.conf differ after [daemon]: $(printf '%s' "$d" | head -4 | tr '\n' ';')"
fi

# --- the completion's nouns and verbs are the CLI's ------------------------------------
# From the package's own binary: `ktlsgate --help` lists "ktlsgate NOUN VERB ..." lines.
# check_completion HELP: the host's release runs the binary on the host, before the
# root; another release's binary needs its libraries, so the root's inner script saves
# its `ktlsgate --help` and this runs after the root stage.
check_completion() {
	local help=$1 xdir want_nouns got want nouns_in_completion missing_nouns cbad n
	xdir=$(mktemp -d "$WORKBASE/x.XXXXXX")
	dpkg-deb -x "$DEB" "$xdir"
	want_nouns=$(printf '%s\n' "$help" | awk '$1 == "ktlsgate" && $2 ~ /^[a-z]/ { print $2 }' | sort -u | tr '\n' ' ')
	got=$(bash -c 'source "$1"; for n in '"$want_nouns"'; do for v in $(_ktlsgate_verbs $n); do echo "$n $v"; done; done' sh "$xdir/usr/share/bash-completion/completions/ktlsgate" | sort)
	want=$(printf '%s\n' "$help" | awk '$1 == "ktlsgate" && $2 ~ /^[a-z]/ && $3 ~ /^[a-z]/ {
		n = split($3, v, "|"); for (i = 1; i <= n; i++) print $2, v[i] }' | sort -u)
	# (nouns without verbs - verify CERT, status, reload, reasons - have no lower-case $3)
	nouns_in_completion=$(sed -n 's/.*compgen -W "\(pki ca [^"]*\)".*/\1/p' "$xdir/usr/share/bash-completion/completions/ktlsgate")
	missing_nouns=""
	for n in $want_nouns; do
		case " $nouns_in_completion " in *" $n "*) ;; *) missing_nouns="$missing_nouns $n" ;; esac
	done
	# A few command lines through the function itself (bash-completion's two helpers
	# stubbed: the host need not have bash-completion installed).
	complete_line() { # WORDS... -> the sorted candidates for the last word
		bash -c '_init_completion() { words=("${COMP_WORDS[@]}"); cword=$COMP_CWORD
			cur=${words[cword]}; prev=${words[cword-1]}; }
		_filedir() { COMPREPLY=(FILE); }
		source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _ktlsgate
		printf "%s\n" "${COMPREPLY[@]}" | sort | tr "\n" " "' sh \
			"$xdir/usr/share/bash-completion/completions/ktlsgate" "$@"
}
cbad=""
check_line() { # EXPECTED WORDS...
	local want=$1 got
	shift
	got=$(complete_line "$@")
	[ "$got" = "$want" ] || cbad="$cbad '$*' -> '$got' (want '$want');"
}
check_line "block ca device help pki reasons registry reload session status tpm upgrade verify " ktlsgate ""
check_line "--help --timeout " ktlsgate upgrade --
check_line "--help add credentials expiring import list remove set show " ktlsgate -c /etc/x.conf device ""
check_line "basic sas thumbprint token x509 " ktlsgate device add d1 --auth ""
check_line "primary secondary " ktlsgate device credentials d1 --slot ""
check_line "--help --json --password-stdin --rotate --slot " ktlsgate device credentials d1 --
check_line "disabled enabled revoked " ktlsgate ca set factory --status ""
check_line "decommissioned disabled enabled quarantined suspended " ktlsgate device add d1 --status ""
check_line "--help --json --status " ktlsgate device list --
check_line "FILE " ktlsgate -r ""
check_line "csv jsonl " ktlsgate device import f.csv --format ""
if [ -z "$want_nouns" ]; then
	fail completion "ktlsgate --help listed no commands: $(printf '%s' "$help" | head -2 | tr '\n' ';')"
elif [ -n "$cbad" ]; then
	fail completion "$cbad"
elif ! bash -n "$xdir/usr/share/bash-completion/completions/ktlsgate"; then
	fail completion "bash -n fails"
elif [ -n "$missing_nouns" ]; then
	fail completion "nouns missing:$missing_nouns"
elif [ "$got" != "$want" ]; then
	fail completion "verbs differ from ktlsgate --help: $(diff <(printf '%s\n' "$want") <(printf '%s\n' "$got") | grep '^[<>]' | tr '\n' ';')"
else
	pass "completion ($(printf '%s\n' "$got" | wc -l) noun/verb pairs)"
fi
rm -rf "$xdir"
}
if [ "$TARGET" = deb ]; then
	x=$(mktemp -d "$WORKBASE/x.XXXXXX")
	dpkg-deb -x "$DEB" "$x"
	check_completion "$("$x/usr/bin/ktlsgate" --help 2>&1)"
	rm -rf "$x"
fi

# --- host: the maintainer scripts, as the release's debhelper made them ---------------
# The upgrade is postinst's own (docs/packaging.md, "Upgrade"): debhelper's parts must
# neither stop the daemon before it (preinst, prerm) nor restart it (postinst); what
# dh_installsystemd generates for an option differs by debhelper version, so this reads
# the built package, not debian/rules.
x=$(mktemp -d "$WORKBASE/ctl.XXXXXX")
dpkg-deb -e "$DEB" "$x/c"
sbad=""
for m in preinst postinst prerm postrm; do
	[ -f "$x/c/$m" ] || { sbad="$sbad no $m;"; continue; }
	e=$(dash -n "$x/c/$m" 2>&1) || sbad="$sbad $m: sh -n: $e;"
done
# debhelper's blocks only ("# Automatically added by dh_..." to "# End automatically ...")
dh_part() { sed -n '/^# Automatically added by dh_/,/^# End automatically added section/p' "$x/c/$1" 2>/dev/null; }
dh_part preinst | grep -q 'deb-systemd-invoke stop' && sbad="$sbad debhelper stops the unit in preinst;"
dh_part prerm | grep -q 'deb-systemd-invoke stop' && sbad="$sbad debhelper stops the unit in prerm;"
dh_part postinst | grep -qE 'deb-systemd-invoke|_dh_action' &&
	sbad="$sbad debhelper starts or restarts the unit in postinst: $(dh_part postinst | grep -E 'deb-systemd-invoke|_dh_action' | tr '\n' ';');"
grep -q 'if \[ "\$1" = remove \]' "$x/c/prerm" && grep -q 'deb-systemd-invoke stop ktlsgated.service' "$x/c/prerm" ||
	sbad="$sbad prerm does not stop the unit on remove;"
grep -q 'systemctl --system daemon-reload' "$x/c/postinst" || sbad="$sbad postinst does not daemon-reload;"
grep -q 'ktlsgate upgrade --timeout' "$x/c/postinst" && grep -q 'deb-systemd-invoke try-restart "$UNIT"' "$x/c/postinst" ||
	sbad="$sbad postinst has no ktlsgate upgrade with the try-restart fallback;"
grep -q 'systemctl cat ktlsgated.service' "$x/c/preinst" && grep -q '>"$UNIT_SUM"' "$x/c/preinst" ||
	sbad="$sbad preinst does not save the unit's sum;"
rm -rf "$x"
[ -z "$sbad" ] && pass "scripts (dash -n; debhelper's parts stop and restart nothing on upgrade; postinst: daemon-reload, ktlsgate upgrade or try-restart; preinst saves the unit's sum)" ||
	fail scripts "$sbad"

# --- the root -------------------------------------------------------------------------
minbase_tarball "$SUITE" "$ARCH"
ROOT=$(mktemp -d "$WORKBASE/root.XXXXXX") || abort root "mktemp failed"
tar -C "$ROOT" --numeric-owner -xpzf "$BASE" || abort root "cannot unpack $BASE"
chmod 755 "$ROOT"
printf '#!/bin/sh\n# test-deb: start no services from package scripts\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
chmod 755 "$ROOT/usr/sbin/policy-rc.d"
cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true
# The host's sources for this suite (and its -updates/-security), or derived from the
# host's own release's (lib.sh suite_sources).
suite_sources "$SUITE" >"$ROOT/etc/apt/sources.list"
[ -s "$ROOT/etc/apt/sources.list" ] || abort root "no apt source for $SUITE on the host"
mkdir -p "$ROOT/tmp/pkg"
cp "$DEB" "$ROOT/tmp/pkg/"
# The upgrade: the same package as VERSION+test1 (repacked: the maintainer scripts
# are what an upgrade exercises; the binaries need not differ).
rp=$(mktemp -d "$WORKBASE/repack.XXXXXX")
dpkg-deb -R "$DEB" "$rp/p" && sed -i "s/^Version: .*/Version: $VERSION+test1/" "$rp/p/DEBIAN/control" &&
	dpkg-deb --root-owner-group -b "$rp/p" "$ROOT/tmp/pkg/upgrade.deb" >/dev/null || abort root "cannot repack $DEB as $VERSION+test1"
rm -rf "$rp"
DEBS="$CACHE/$SUITE-$ARCH-debs-packaging"
mkdir -p "$DEBS/partial"

cat >"$ROOT/root/test-deb-inner.sh" <<'EOF'
# Runs inside the root, as root, in a chroot. Prints PASS/FAIL lines.
set -u
VERSION=$1 UPSTREAM=$2 SSL_PKG=$3 BPF_PKG=$4 OPENSSL=$5
pass() { echo "PASS $1"; }
fail() { echo "FAIL $1: $2"; }
export DEBIAN_FRONTEND=noninteractive
chown _apt:root /var/cache/apt/archives/partial 2>/dev/null || true
DEB=$(ls /tmp/pkg/ktlsgate_*.deb)

if ! apt-get update -q >/tmp/apt.log 2>&1; then
	fail install "apt-get update failed: $(tail -3 /tmp/apt.log | tr '\n' ';')"; exit 0
fi
if apt-get install -y -q --no-install-recommends "$DEB" >>/tmp/apt.log 2>&1; then
	st=$(dpkg-query -W -f='${Status} ${Version}' ktlsgate)
	[ "$st" = "install ok installed $VERSION" ] && pass "install ($st)" || fail install "status '$st'"
else
	fail install "apt-get install failed: $(tail -5 /tmp/apt.log | tr '\n' ';')"; exit 0
fi

# What the installed daemon links: the loader's choice of libssl.so.3 and libbpf.so.1,
# the package dpkg says owns that file, and the release's openssl (installed for this).
lbad="" lgot=""
for e in "libssl.so.3 $SSL_PKG" "libbpf.so.1 $BPF_PKG"; do
	set -- $e
	path=$(ldd /usr/sbin/ktlsgated 2>/dev/null | awk -v l="$1" '$1 == l { print $3 }')
	if [ -z "$path" ] || [ ! -e "$path" ]; then lbad="$lbad $1 not resolved;"; continue; fi
	# merged /usr: dpkg may know the file by its /usr path only
	owner=$(dpkg -S "$path" 2>/dev/null || dpkg -S "$(realpath "$path")" 2>/dev/null)
	owner=${owner%%:*}
	ver=$(dpkg-query -W -f='${Version}' "$owner" 2>/dev/null)
	[ "$owner" = "$2" ] || lbad="$lbad $1 ($path) belongs to '$owner', want $2;"
	lgot="$lgot $1 -> $path ($owner $ver);"
done
apt-get install -y -q --no-install-recommends openssl >>/tmp/apt.log 2>&1
ov=$(openssl version 2>&1)
case $ov in "OpenSSL $OPENSSL".*) ;; *) lbad="$lbad openssl version '$ov', want $OPENSSL.x;" ;; esac
[ -z "$lbad" ] && pass "links ($lgot openssl version: $ov)" || fail links "$lbad"

# For the completion check (run outside, after this root: the host may not run this
# release's binary).
ktlsgate --help >/tmp/ktlsgate-help.txt 2>&1

# The system user (sysusers.d), without a login.
pw=$(getent passwd ktlsgate)
uid=$(printf '%s' "$pw" | cut -d: -f3)
shell=$(printf '%s' "$pw" | cut -d: -f7)
if [ -z "$pw" ]; then fail user "no user ktlsgate"
elif [ "$uid" -ge 1000 ] || [ "$uid" -eq 0 ]; then fail user "uid $uid is not a system uid"
elif [ "$shell" != /usr/sbin/nologin ]; then fail user "shell $shell"
elif ! getent group ktlsgate >/dev/null; then fail user "no group ktlsgate"
else pass "user ($pw)"; fi

# Directories: owner, group, mode.
bad=""
for e in "/var/lib/ktlsgate ktlsgate ktlsgate 750" "/run/ktlsgate ktlsgate ktlsgate 750" \
	"/etc/ktlsgate/server root ktlsgate 750" "/etc/ktlsgate root root 755"; do
	set -- $e
	got=$(stat -c '%U %G %a' "$1" 2>&1)
	[ "$got" = "$2 $3 $4" ] || bad="$bad $1: '$got' (want '$2 $3 $4');"
done
[ -z "$bad" ] && pass dirs || fail dirs "$bad"

# The conffile, registered with the md5 of the shipped file.
cf=$(dpkg-query -W -f='${Conffiles}' ktlsgate)
md5=$(md5sum /etc/ktlsgate/ktlsgate.conf | cut -d' ' -f1)
if printf '%s\n' "$cf" | grep -qx " /etc/ktlsgate/ktlsgate.conf $md5"; then
	pass "conffile (/etc/ktlsgate/ktlsgate.conf $md5)"
else
	fail conffile "dpkg-query Conffiles: '$cf' (file md5 $md5)"
fi

# The binaries run, and say the package's version.
out=$(ktlsgate --help 2>&1); rc=$?
v1=$(ktlsgate --version 2>&1); v2=$(ktlsgated -V 2>&1)
if [ $rc -ne 0 ] || ! printf '%s' "$out" | grep -q '^usage: ktlsgate '; then fail cli "ktlsgate --help: rc $rc"
elif [ "$v1" != "ktlsgate $UPSTREAM" ] || [ "$v2" != "ktlsgated $UPSTREAM" ]; then fail cli "versions '$v1' / '$v2' (want $UPSTREAM)"
else pass "cli (ktlsgate --help, $v1, $v2)"; fi

# Freshly installed: the config is valid, the certificate is reported missing.
out=$(ktlsgated -t 2>&1); rc=$?
if [ $rc -eq 0 ] && printf '%s' "$out" | grep -q 'does not exist yet: not checked' &&
	printf '%s' "$out" | grep -q 'configuration /etc/ktlsgate/ktlsgate.conf ok (0 CA(s) trusted, 1 backend(s)'; then
	pass config_unprovisioned
else
	fail config_unprovisioned "ktlsgated -t: rc $rc: $(printf '%s' "$out" | head -3 | tr '\n' ';')"
fi

# A test PKI where the packaged config looks (docs/packaging.md, "First start"), a CA
# registered and proven by the daemon's user, then -t as root and as that user: it must
# read the key (group ktlsgate) and the registry.
(
	set -e
	umask 022
	mkdir -p /tmp/pki
	ktlsgate pki root --cn "Test Root" --out /tmp/pki/root >/dev/null
	ktlsgate pki server --cn gw.test --ca /tmp/pki/root --out /tmp/pki/server >/dev/null
	chmod 0755 /tmp/pki /tmp/pki/root
	install -m 0644 -o root -g root /tmp/pki/server/chain.pem /etc/ktlsgate/server/chain.pem
	install -m 0640 -o root -g ktlsgate /tmp/pki/server/key.pem /etc/ktlsgate/server/key.pem
	chmod 0644 /tmp/pki/root/cert.pem
	code=$(runuser -u ktlsgate -- ktlsgate ca add /tmp/pki/root/cert.pem | awk '/^challenge:/{print $2}')
	ktlsgate pki verification-cert --ca /tmp/pki/root --challenge "$code" --out /tmp/pki/vc.pem >/dev/null
	chmod 0644 /tmp/pki/vc.pem
	runuser -u ktlsgate -- ktlsgate ca verify Test-Root /tmp/pki/vc.pem >/dev/null
) >/tmp/pki.log 2>&1 || { fail config_pki "test PKI setup failed: $(tail -3 /tmp/pki.log | tr '\n' ';')"; }
want='configuration /etc/ktlsgate/ktlsgate.conf ok (1 CA(s) trusted, 1 backend(s)'
out=$(ktlsgated -t 2>&1); rc=$?
out2=$(runuser -u ktlsgate -- ktlsgated -t 2>&1); rc2=$?
reg=$(stat -c '%U %a' /var/lib/ktlsgate/registry.db 2>&1)
if [ $rc -ne 0 ] || ! printf '%s' "$out" | grep -qF "$want"; then
	fail config_pki "ktlsgated -t as root: rc $rc: $(printf '%s' "$out" | head -3 | tr '\n' ';')"
elif [ $rc2 -ne 0 ] || ! printf '%s' "$out2" | grep -qF "$want"; then
	fail config_pki "ktlsgated -t as ktlsgate: rc $rc2: $(printf '%s' "$out2" | head -3 | tr '\n' ';')"
elif printf '%s' "$out" | grep -q 'not checked'; then
	fail config_pki "the certificate was not checked: $(printf '%s' "$out" | head -2 | tr '\n' ';')"
elif [ "$reg" != "ktlsgate 600" ]; then
	fail config_pki "registry.db is '$reg', want 'ktlsgate 600'"
else
	pass "config_pki (ktlsgated -t as root and as ktlsgate: 1 CA trusted)"
fi

# The packaged config runs: ktlsgated as the ktlsgate user (setpriv, as the unit's
# User= would), in a network namespace of this test's own (/tmp/kg-netns: loopback
# up, nothing else), so listen = 0.0.0.0:8883 binds nowhere real. It must come up,
# answer `ktlsgate status` and `ktlsgate reload` on /run/ktlsgate/control.sock, run as
# that user, and stop cleanly on SIGTERM, removing its socket.
if [ -e /tmp/kg-netns ]; then
	nsenter --net=/tmp/kg-netns setpriv --reuid=ktlsgate --regid=ktlsgate --init-groups \
		ktlsgated -c /etc/ktlsgate/ktlsgate.conf >/tmp/daemon.log 2>&1 &
	dpid=$!
	status=""
	for _ in $(seq 1 100); do
		status=$(ktlsgate status 2>/dev/null) && break
		status=""
		kill -0 "$dpid" 2>/dev/null || break
		sleep 0.2
	done
	duid=$(awk '/^Uid:/ { print $2 }' "/proc/$dpid/status" 2>/dev/null)
	reload=$(ktlsgate reload 2>&1)
	kill -TERM "$dpid" 2>/dev/null
	wait "$dpid"
	drc=$?
	if [ -z "$status" ]; then
		fail daemon_start "no answer on the control socket: $(tail -3 /tmp/daemon.log | tr '\n' ';')"
	elif ! printf '%s\n' "$status" | grep -qx "pid: $dpid" ||
		! printf '%s\n' "$status" | grep -qx "version: $UPSTREAM" ||
		! printf '%s\n' "$status" | grep -qx "cas_trusted: 1"; then
		fail daemon_start "status: $(printf '%s' "$status" | head -6 | tr '\n' ';')"
	elif [ "$duid" != "$(id -u ktlsgate)" ]; then
		fail daemon_start "the daemon ran as uid '$duid'"
	elif [ "$reload" != reloaded ]; then
		fail daemon_start "ktlsgate reload: '$reload'"
	elif [ $drc -ne 0 ] || [ -e /run/ktlsgate/control.sock ]; then
		fail daemon_start "SIGTERM: exit $drc, socket left: $(ls /run/ktlsgate 2>&1 | tr '\n' ' ')"
	else
		pass "daemon_start (as ktlsgate, status and reload answered, clean stop)"
	fi
else
	fail daemon_start "no network namespace at /tmp/kg-netns"
fi

# Upgrade to VERSION+test1 while the daemon runs: the registry is backed up online
# (named after the old version) and kept, an edited conffile is kept, and the running
# daemon is not disturbed: without a booted systemd (none here) postinst does not
# replace it, though `ktlsgate upgrade` would reach this one (its log would say
# "upgrade: started"), and says nothing of it.
sed -i 's/^log_level = info$/log_level = debug/' /etc/ktlsgate/ktlsgate.conf
dpid=""
if [ -e /tmp/kg-netns ]; then
	nsenter --net=/tmp/kg-netns setpriv --reuid=ktlsgate --regid=ktlsgate --init-groups \
		ktlsgated -c /etc/ktlsgate/ktlsgate.conf >/tmp/daemon2.log 2>&1 &
	dpid=$!
	for _ in $(seq 1 100); do
		ktlsgate status >/dev/null 2>&1 && break
		sleep 0.2
	done
fi
dpkg -i /tmp/pkg/upgrade.deb >/tmp/upgrade.log 2>&1
urc=$?
alive=no
if [ -n "$dpid" ] && ktlsgate status 2>/dev/null | grep -qx "pid: $dpid"; then alive=yes; fi
[ -n "$dpid" ] && { kill -TERM "$dpid"; wait "$dpid"; }
if [ $urc -ne 0 ]; then
	fail upgrade "dpkg -i of $VERSION+test1 failed: $(tail -3 /tmp/upgrade.log | tr '\n' ';')"
else
	bak=/var/lib/ktlsgate/registry.db.bak-$VERSION
	bst=$(stat -c '%U %a' "$bak" 2>&1)
	ic=$(sqlite3 "$bak" 'PRAGMA integrity_check' 2>&1)
	cas=$(sqlite3 "$bak" 'SELECT name FROM cas' 2>&1)
	live=$(sqlite3 -readonly /var/lib/ktlsgate/registry.db 'SELECT name FROM cas' 2>&1)
	st=$(dpkg-query -W -f='${Status} ${Version}' ktlsgate)
	if [ "$st" != "install ok installed $VERSION+test1" ]; then fail upgrade "status '$st'"
	elif [ "$bst" != "ktlsgate 600" ]; then fail upgrade "backup $bak: '$bst' (want 'ktlsgate 600')"
	elif [ "$ic" != ok ] || [ "$cas" != Test-Root ]; then fail upgrade "backup: integrity '$ic', CAs '$cas'"
	elif [ "$live" != Test-Root ]; then fail upgrade "registry after the upgrade: CAs '$live'"
	elif ! grep -qx 'log_level = debug' /etc/ktlsgate/ktlsgate.conf; then fail upgrade "the edited conffile was replaced"
	elif ! grep -q "registry backed up to $bak" /tmp/upgrade.log; then fail upgrade "postinst did not report the backup"
	elif [ "$alive" != yes ]; then fail upgrade "the daemon running during the upgrade did not answer after it"
	elif ls /var/lib/ktlsgate/*-wal /var/lib/ktlsgate/*-shm 2>/dev/null | xargs -r stat -c '%U %n' | grep -q '^root '; then
		fail upgrade "root-owned WAL/SHM files left beside the registry"
	elif grep -q 'upgrade: started' /tmp/daemon2.log || grep -qE '^ktlsgate: (upgraded|restarting|not )' /tmp/upgrade.log ||
		[ -e /run/ktlsgate.pkg-unit-sum ]; then
		fail upgrade "without systemd the package still acted on the daemon: $(grep -E 'upgrade: started' /tmp/daemon2.log | head -1) $(grep -E '^ktlsgate: (upgraded|restarting|not )' /tmp/upgrade.log | tr '\n' ';') $(ls /run/ktlsgate.pkg-unit-sum 2>/dev/null)"
	else pass "upgrade ($VERSION -> $VERSION+test1 under a running daemon: $bak, conffile edit kept; no systemd: the daemon left alone)"; fi
fi

# postinst restarts instead of upgrading in place when the new build would migrate the
# registry, and learns that from the new CLI's read-only open, which refuses an older
# schema with "... is older than this build (N); open it read-write to migrate"
# (registry_migrates in postinst). That contract, on the installed CLI as the daemon's
# user: the live registry lists (no migration due), a copy with user_version one lower
# is refused with those words.
rv=$(sqlite3 -readonly /var/lib/ktlsgate/registry.db 'PRAGMA user_version' 2>&1)
runuser -u ktlsgate -- sqlite3 /var/lib/ktlsgate/registry.db ".backup /tmp/reg-older.db" >/tmp/probe.log 2>&1 &&
	runuser -u ktlsgate -- sqlite3 /tmp/reg-older.db "PRAGMA user_version = $((rv - 1))" >>/tmp/probe.log 2>&1
now=$(runuser -u ktlsgate -- ktlsgate ca list 2>&1 >/dev/null); nrc=$?
older=$(runuser -u ktlsgate -- ktlsgate -r /tmp/reg-older.db ca list 2>&1 >/dev/null); orc=$?
case $rv in ''|*[!0-9]*) fail schema_probe "the registry's user_version: '$rv'" ;;
*)
	if [ $nrc -ne 0 ]; then fail schema_probe "ktlsgate ca list on the current registry: rc $nrc: $now"
	elif [ $orc -eq 0 ] || [ "${older#*is older than this build}" = "$older" ]; then
		fail schema_probe "ktlsgate ca list on a schema-$((rv - 1)) copy: rc $orc, '$older' (want '... is older than this build'): $(cat /tmp/probe.log)"
	else pass "schema_probe (schema $rv lists; a schema-$((rv - 1)) copy: '$older')"; fi ;;
esac
rm -f /tmp/reg-older.db

# remove keeps the configuration and the state; purge removes both.
dpkg -r ktlsgate >/tmp/remove.log 2>&1
st=$(dpkg-query -W -f='${Status}' ktlsgate 2>&1)
if [ "$st" != "deinstall ok config-files" ]; then fail remove "status '$st'"
elif [ -e /usr/sbin/ktlsgated ] || [ -e /usr/bin/ktlsgate ]; then fail remove "binaries left"
elif [ ! -f /etc/ktlsgate/ktlsgate.conf ] || [ ! -f /etc/ktlsgate/server/key.pem ]; then fail remove "/etc/ktlsgate lost files"
elif [ ! -f /var/lib/ktlsgate/registry.db ] || [ ! -f "/var/lib/ktlsgate/registry.db.bak-$VERSION" ]; then fail remove "/var/lib/ktlsgate lost files"
else pass "remove (binaries gone; /etc/ktlsgate and /var/lib/ktlsgate kept)"; fi

dpkg -P ktlsgate >/tmp/purge.log 2>&1
st=$(dpkg-query -W -f='${Status}' ktlsgate 2>/dev/null)
left=$(ls -d /etc/ktlsgate /var/lib/ktlsgate /run/ktlsgate /usr/lib/sysusers.d/ktlsgate.conf 2>/dev/null | tr '\n' ' ')
if [ -n "$st" ] && [ "$st" != "unknown ok not-installed" ]; then fail purge "status '$st'"
elif [ -n "$left" ]; then fail purge "left behind: $left"
else pass "purge (/etc/ktlsgate, /var/lib/ktlsgate, /run/ktlsgate gone; user ktlsgate kept by design)"; fi
EOF

# Runs as PID 1 of a new PID namespace: when it exits, everything started inside dies.
# shellcheck disable=SC2016
INNER='
set -u
root=$1 debs=$2 netns=$3 chpid=""
shift 3
umount_all() {
	local m
	for m in tmp/kg-netns var/cache/apt/archives dev sys proc/sys proc; do
		mountpoint -q "$root/$m" || continue
		umount -R "$root/$m" 2>/dev/null || umount -R -l "$root/$m" 2>/dev/null
	done
}
stop() { [ -n "$chpid" ] && kill -TERM "$chpid" 2>/dev/null; umount_all; exit 124; }
trap umount_all EXIT
trap stop INT TERM
mount -t proc proc "$root/proc" &&
	mount --bind "$root/proc/sys" "$root/proc/sys" && mount -o remount,bind,ro "$root/proc/sys" &&
	mount --bind /sys "$root/sys" && mount -o remount,bind,ro "$root/sys" &&
	mount --rbind /dev "$root/dev" &&
	mount --bind "$debs" "$root/var/cache/apt/archives" &&
	touch "$root/tmp/kg-netns" && mount --bind "$netns" "$root/tmp/kg-netns" || { echo "FAIL root: mounts failed"; exit 2; }
env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
	LANG=C.UTF-8 TERM=dumb chroot "$root" /bin/bash /root/test-deb-inner.sh "$@" &
chpid=$!
wait "$chpid"
st=$?
umount_all
trap - EXIT
exit $st
'
# The daemon step's network: a namespace of our own with only loopback up.
NETNS=kg-pkg-$$
ip netns add "$NETNS" && ip -n "$NETNS" link set lo up || abort root "cannot create network namespace $NETNS"
log "root: $ROOT ($SUITE minbase, $(basename "$DEB") and its $VERSION+test1 repack; log $OUT/root.log)"
tr0=$(date +%s)
timeout -k 30 "$T_ROOT" unshare --mount --pid --fork --kill-child=SIGTERM --propagation private \
	/bin/bash -c "$INNER" inner "$ROOT" "$DEBS" "/run/netns/$NETNS" "$VERSION" "$UPSTREAM" "$SSL_PKG" "$BPF_PKG" "$OPENSSL" >"$OUT/root.log" 2>&1 &
INNER_PID=$!
wait "$INNER_PID"
st=$?
INNER_PID=""
while read -r line; do
	case $line in
	PASS\ *) pass "${line#PASS }" ;;
	FAIL\ *) n=${line#FAIL }; fail "${n%%:*}" "${n#*: }" ;;
	esac
done < <(grep -E '^(PASS|FAIL) ' "$OUT/root.log")
[ $st -eq 124 ] && fail root "timed out after ${T_ROOT}s (see $OUT/root.log)"
[ $st -ne 0 ] && [ $st -ne 124 ] && fail root "the chroot exited $st (see $OUT/root.log)"
grep -q '^PASS purge' "$OUT/root.log" || grep -q '^FAIL purge' "$OUT/root.log" ||
	fail root "the chroot stopped before its last step (see $OUT/root.log)"
log "root stage: $(($(date +%s) - tr0)) s"
if [ "$TARGET" != deb ]; then
	if [ -s "$ROOT/tmp/ktlsgate-help.txt" ]; then
		check_completion "$(cat "$ROOT/tmp/ktlsgate-help.txt")"
	else
		fail completion "the root saved no ktlsgate --help (see $OUT/root.log)"
	fi
fi
finish
