#!/bin/sh
# Install what building, testing and the demo need (Debian 12 packages).
# Idempotent and quiet when everything is present; needs root (or sudo) otherwise.
set -eu
PKGS="build-essential clang pkg-config libssl-dev libsqlite3-dev libinih-dev libmicrohttpd-dev
libjson-c-dev check libsubunit-dev libclang-rt-14-dev mosquitto mosquitto-clients
python3-paho-mqtt sqlite3 openssl iproute2 procps haproxy nginx libnginx-mod-stream systemd
libbpf-dev bpftool libnl-route-3-dev nftables
libtss2-dev libtss2-tcti-swtpm0 swtpm swtpm-tools tpm2-tools tpm2-openssl
qemu-system-x86 busybox-static cpio xz-utils zstd"
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
for s in mosquitto haproxy nginx; do
	$SUDO systemctl disable --now "$s" >/dev/null 2>&1 || true
done
