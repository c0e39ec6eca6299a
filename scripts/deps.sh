#!/bin/sh
# Install what building, the demo or the tests need (Debian 12 packages).
#   scripts/deps.sh build   the libraries and tools `make` needs
#   scripts/deps.sh demo    build + what scripts/demo.sh runs (mosquitto, python3, ...)
#   scripts/deps.sh [check] everything `make check` needs (qemu, swtpm, haproxy, ...)
# Idempotent and quiet when everything is present; needs root (or sudo) otherwise.
# The Makefile runs it in a recipe and then a fresh $(MAKE), because pkg-config's flags
# are read when a Makefile is parsed (issue 10, section 1).
set -eu
BUILD_PKGS="build-essential clang pkg-config libssl-dev libsqlite3-dev libinih-dev
libmicrohttpd-dev libjson-c-dev libbpf-dev bpftool libnl-route-3-dev libtss2-dev libsystemd-dev
libpq-dev"
DEMO_PKGS="mosquitto mosquitto-clients python3 openssl iproute2 procps"
CHECK_PKGS="check libsubunit-dev libclang-rt-14-dev python3-paho-mqtt python3-yaml sqlite3 prometheus
postgresql postgresql-client
haproxy nginx libnginx-mod-stream systemd nftables gnutls-bin libgnutls28-dev
libtss2-tcti-swtpm0 swtpm swtpm-tools tpm2-tools tpm2-openssl
qemu-system-x86 busybox-static cpio xz-utils zstd debootstrap
debhelper lintian rpm rpmlint elfutils"
case ${1:-check} in
build) PKGS=$BUILD_PKGS ;;
demo) PKGS="$BUILD_PKGS $DEMO_PKGS" ;;
check) PKGS="$BUILD_PKGS $DEMO_PKGS $CHECK_PKGS" ;;
*) echo "usage: $0 [build|demo|check]" >&2; exit 2 ;;
esac
missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "deps: installing:$missing"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q >/dev/null
# shellcheck disable=SC2086
$SUDO apt-get install -y -q --no-install-recommends $missing >/dev/null
# Debian starts these on install where systemd runs; our tests start their own.
if command -v systemctl >/dev/null 2>&1; then
	for s in mosquitto haproxy nginx prometheus postgresql; do
		$SUDO systemctl disable --now "$s" >/dev/null 2>&1 || true
	done
fi
