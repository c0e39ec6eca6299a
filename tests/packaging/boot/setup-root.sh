#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# setup-root.sh VERSION KVER - run by test-boot.sh inside the guest root (chroot, on the
# host, before the root is packed as the initramfs): installs the package as an
# operator would, provisions it (test PKI, CA enrolled with proof of possession, the
# devices), and prepares the boot (the checks' unit, units masked to save TCG time).
# Everything slow under TCG (key generation) happens here, natively. Prints
# "PASS name"/"FAIL name: why" lines for what it checks (the install).
set -u
VERSION=$1 KVER=$2
pass() { echo "PASS $1"; }
fail() { echo "FAIL $1: $2"; }
export DEBIAN_FRONTEND=noninteractive

# The install: dpkg -i with no network (the guest tarball holds every Depends);
# policy-rc.d refuses the start the postinst asks for (no systemd runs in a chroot).
if ! dpkg -i /root/pkg/ktlsgate_*.deb >/root/install.log 2>&1; then
	fail install "dpkg -i failed: $(tail -4 /root/install.log | tr '\n' ';')"
	exit 1
fi
st=$(dpkg-query -W -f='${Status} ${Version}' ktlsgate)
[ "$st" = "install ok installed $VERSION" ] || { fail install "status '$st'"; exit 1; }
# Not enabled on install (docs/packaging.md, "Decisions"): the operator enables it
# once configured (below).
en=$(systemctl is-enabled ktlsgated 2>&1)
[ "$en" = disabled ] || { fail install "the package left the unit '$en', docs/packaging.md says disabled"; exit 1; }
pass "install ($st, unit $en as documented)"

# A test PKI, as docs/packaging.md "First start" says: server chain and key in
# /etc/ktlsgate/server, the CA added and proven by the daemon's user, the devices
# registered with their certificates. dev-off is registered disabled (the xdp check).
# In /opt/kg-pki: the ktlsgate user reads the certificates (not /root, 0700).
(
	set -e
	umask 022
	P=/opt/kg-pki
	install -d -m 0755 $P
	ktlsgate pki root --cn "Test Root" --out $P/root >/dev/null
	ktlsgate pki server --cn gw.test --ca $P/root --out $P/server >/dev/null
	for d in dev-sub dev-pub dev-tpm dev-off; do
		ktlsgate pki device --cn $d --ca $P/root --out $P/$d >/dev/null
	done
	chmod -R go+rX $P
	install -m 0644 -o root -g root $P/server/chain.pem /etc/ktlsgate/server/chain.pem
	install -m 0640 -o root -g ktlsgate $P/server/key.pem /etc/ktlsgate/server/key.pem
	code=$(runuser -u ktlsgate -- ktlsgate ca add $P/root/cert.pem | awk '/^challenge:/{print $2}')
	ktlsgate pki verification-cert --ca $P/root --challenge "$code" --out $P/vc.pem >/dev/null
	chmod 0644 $P/vc.pem
	runuser -u ktlsgate -- ktlsgate ca verify Test-Root $P/vc.pem >/dev/null
	for d in dev-sub dev-pub dev-tpm; do
		runuser -u ktlsgate -- ktlsgate device add $d --cert $P/$d/cert.pem >/dev/null
	done
	runuser -u ktlsgate -- ktlsgate device add dev-off --cert $P/dev-off/cert.pem --status disabled >/dev/null
	chmod 0600 $P/root/key.pem
) >/root/pki.log 2>&1
# (not "( ... ) || fail": set -e is ignored inside a command that || tests)
[ $? -eq 0 ] || { fail provision "test PKI setup failed: $(tail -3 /root/pki.log | tr '\n' ';')"; exit 1; }
out=$(ktlsgated -t 2>&1)
printf '%s' "$out" | grep -qF 'ok (1 CA(s) trusted' || { fail provision "ktlsgated -t: $(printf '%s' "$out" | head -3 | tr '\n' ';')"; exit 1; }
# "3. ktlsgated -t, then systemctl enable --now ktlsgated" (the packaged config's header;
# --now happens at the boot).
systemctl enable ktlsgated >/root/enable.log 2>&1 || { fail provision "systemctl enable: $(cat /root/enable.log)"; exit 1; }
pass "provision (CA Test-Root proven, 4 devices, ktlsgated -t ok, unit enabled)"

# The guest kernel's modules (test-boot.sh copied them under /lib/modules/KVER).
depmod "$KVER" || { fail install "depmod $KVER failed"; exit 1; }

# The boot: the checks run once multi-user is up and power the guest off.
systemctl enable kg-boot-checks.service >/dev/null 2>&1
systemd-machine-id-setup >/dev/null 2>&1
# Units the guest does not need (each costs seconds under TCG), the consoles (the serial
# console carries the checks' protocol).
for u in getty@tty1.service serial-getty@ttyS0.service console-getty.service \
	apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service \
	fstrim.timer dpkg-db-backup.timer man-db.timer logrotate.timer \
	systemd-timesyncd.service cron.service; do
	ln -sf /dev/null "/etc/systemd/system/$u"
done
echo "ktlsgate-boot" >/etc/hostname
# Upgrades in the guest start services as on a real system.
rm -f /usr/sbin/policy-rc.d
exit 0
