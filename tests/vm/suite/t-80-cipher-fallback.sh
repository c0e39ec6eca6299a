#!/bin/sh
# A kernel that lacks a cipher: ChaCha20-Poly1305 is taken away from the kernel (its
# AEAD template module unloaded, module loading refused), and kernel TLS then refuses
# it (setsockopt TLS_TX/TLS_RX: ENOENT, while AES-GCM is taken). On one ktlsgated
# (relay = auto), devices forcing TLS_CHACHA20_POLY1305_SHA256 (1.3) and
# ECDHE-ECDSA-CHACHA20-POLY1305 (1.2) get working sessions on the user-space record
# relay while an AES-GCM session beside them stays in ktls_splice; each fallback is
# named per session in an audit line ("event":"relay","ktls_fallback":...) and counted
# in ktlsgate_ktls_fallbacks_total{reason="tx_not_offloaded"}. The cipher is given back
# at the end (the block is undone on any exit), so the tests after this one see the
# kernel as it was.
# kgvm-timeout: 240
. "$KGVM_LIB"
. "$KGVM_SUITE/lib.sh"

MODPROBE=$(cat /proc/sys/kernel/modprobe)
unblock() {
	echo "$MODPROBE" >/proc/sys/kernel/modprobe
	modprobe chacha20poly1305 2>/dev/null
}
trap unblock EXIT

out=$(kg-ktls-ciphers aes128gcm chacha20poly1305) || fail "kg-ktls-ciphers: $out"
echo "$out" | grep -q '^chacha20poly1305 tx=ok rx=ok$' || fail "before the block: $out"

# The block. The kernel's ChaCha20-Poly1305 AEAD ("rfc7539(chacha20,poly1305)") is an
# instance of the chacha20poly1305 template module; with it unloaded, the kernel asks
# the module loader, and ours refuses (and notes what was asked). A kTLS socket of the
# earlier tests may hold the module a little longer: retry.
cat >/tmp/nomodprobe <<'EOS'
#!/bin/sh
echo "$*" >>/tmp/modprobe-refused
exit 1
EOS
chmod +x /tmp/nomodprobe
echo /tmp/nomodprobe >/proc/sys/kernel/modprobe
i=0
while grep -q '^chacha20poly1305 ' /proc/modules; do
	rmmod chacha20poly1305 2>/dev/null && break
	i=$((i + 1))
	[ $i -lt 100 ] || fail "chacha20poly1305 stays loaded: $(grep '^chacha20poly1305 ' /proc/modules)"
	sleep 0.1
done
out=$(kg-ktls-ciphers aes128gcm aes256gcm chacha20poly1305) || fail "kg-ktls-ciphers: $out"
note "kernel TLS after the block: $(echo "$out" | tr '\n' ';') module loader asked for: $(sort -u /tmp/modprobe-refused 2>/dev/null | tr '\n' ' ')"
echo "$out" | grep -q '^aes128gcm tx=ok rx=ok$' || fail "AES-128-GCM refused: $out"
echo "$out" | grep -q '^chacha20poly1305 tx=ENOENT(2) rx=ENOENT(2)$' ||
	fail "ChaCha20-Poly1305 not refused by setsockopt: $out"

start_broker
start_gw auto
sp0=$(started ktls_splice) us0=$(started userspace)
fb0=$(metric 'ktlsgate_ktls_fallbacks_total{reason="tx_not_offloaded"}')
tx0=$(tls_stat TlsTxSw) rx0=$(tls_stat TlsRxSw)

# The AES-GCM session: alive (a PINGREQ a second) while the ChaCha20 ones come and go.
KG_PROBE_CIPHERS=TLS_AES_128_GCM_SHA256 probe dev1 pings 6 >/tmp/aes.out 2>&1 &
aes=$!
i=0
until [ "$(started ktls_splice)" -gt "$sp0" ]; do
	i=$((i + 1))
	[ $i -lt 200 ] || fail "the AES-GCM session did not start: $(cat /tmp/aes.out)"
	sleep 0.1
done
# TLS 1.3 ChaCha20, held while the session list is taken: both sessions live at once.
out=$(KG_PROBE_CIPHERS=TLS_CHACHA20_POLY1305_SHA256 probe dev2 hold \
	"ktlsgate -c /tmp/gw/ktlsgate.conf session list >/tmp/sl.txt 2>&1" 2>&1)
echo "$out" | grep -q '^tls: TLSv1.3 TLS_CHACHA20_POLY1305_SHA256' || fail "1.3 ChaCha20: $out"
echo "$out" | grep -q '^cmd: exit 0' || fail "session list: $out $(cat /tmp/sl.txt)"
out12=$(KG_PROBE_TLS=1.2 KG_PROBE_CIPHERS=ECDHE-ECDSA-CHACHA20-POLY1305 probe dev3 ping 2>&1)
echo "$out12" | grep -q '^tls: TLSv1.2 ECDHE-ECDSA-CHACHA20-POLY1305' || fail "1.2 ChaCha20: $out12"
echo "$out12" | grep -q '^pingresp' || fail "1.2 ChaCha20: no PINGRESP through the fallback: $out12"
wait $aes
grep -q '^pings: 6 of 6 answered' /tmp/aes.out || fail "AES-GCM session: $(cat /tmp/aes.out)"
note "session list: $(tr -s ' ' </tmp/sl.txt | tr '\n' ';')"
awk '$2 == "dev1" { m = $5 } END { exit m != "ktls_splice" }' /tmp/sl.txt ||
	fail "dev1 (AES-GCM) not in ktls_splice: $(cat /tmp/sl.txt)"
awk '$2 == "dev2" { m = $5 } END { exit m != "userspace" }' /tmp/sl.txt ||
	fail "dev2 (ChaCha20) not on the user-space relay: $(cat /tmp/sl.txt)"

sp1=$(started ktls_splice) us1=$(started userspace)
fb1=$(metric 'ktlsgate_ktls_fallbacks_total{reason="tx_not_offloaded"}')
tx1=$(tls_stat TlsTxSw) rx1=$(tls_stat TlsRxSw)
note "ktls_splice +$((sp1 - sp0)), userspace +$((us1 - us0)), tx_not_offloaded +$((fb1 - fb0)), TlsTxSw +$((tx1 - tx0)), TlsRxSw +$((rx1 - rx0))"
[ $((sp1 - sp0)) -eq 1 ] || fail "ktls_splice sessions +$((sp1 - sp0)), want 1 (the AES-GCM one)"
[ $((us1 - us0)) -eq 2 ] || fail "userspace sessions +$((us1 - us0)), want 2 (the ChaCha20 ones)"
[ $((fb1 - fb0)) -eq 2 ] || fail "ktls_fallbacks_total{tx_not_offloaded} +$((fb1 - fb0)), want 2"
# only the AES-GCM session reached the kernel: one send key, one receive key
[ $((tx1 - tx0)) -eq 1 ] || fail "TlsTxSw +$((tx1 - tx0)), want 1"
[ $((rx1 - rx0)) -eq 1 ] || fail "TlsRxSw +$((rx1 - rx0)), want 1"

# One audit line per fallen-back session, naming the relay and the cause; none for dev1.
for d in "dev2 TLSv1.3 TLS_CHACHA20_POLY1305_SHA256" "dev3 TLSv1.2 ECDHE-ECDSA-CHACHA20-POLY1305"; do
	set -- $d
	line=$(grep '"event":"relay"' /tmp/gw/gw.log | grep "\"device\":\"$1\"")
	[ "$(echo "$line" | grep -c .)" -eq 1 ] || fail "$1: want one relay audit line, got: $line"
	for f in '"relay":"userspace"' '"ktls_fallback":"tx_not_offloaded"' "\"detail\":\"$2 $3: the kernel did not take the send key\""; do
		echo "$line" | grep -qF "$f" || fail "$1: audit line lacks $f: $line"
	done
done
note "audit: $(grep '"event":"relay"' /tmp/gw/gw.log | grep '"device":"dev2"')"
! grep '"event":"relay"' /tmp/gw/gw.log | grep -q '"device":"dev1"' || fail "an audit fallback line for the offloaded dev1"
stop_gw

unblock
out=$(kg-ktls-ciphers chacha20poly1305) || fail "kg-ktls-ciphers: $out"
echo "$out" | grep -q '^chacha20poly1305 tx=ok rx=ok$' || fail "after unblocking: $out"
ok
