#!/bin/sh
# The guest kernel has kTLS: the tls module is loaded (or built in), the TCP ULP is
# offered and /proc/net/tls_stat exists. Prints the counters this kernel has.
. "$KGVM_LIB"

note "kernel $(uname -r), $(nproc) CPUs, RLIMIT_NOFILE $(ulimit -n)"
[ "$(ulimit -n)" -ge 65536 ] || fail "RLIMIT_NOFILE $(ulimit -n), /init should raise it"
grep -qw tls /proc/sys/net/ipv4/tcp_available_ulp ||
	fail "tls not in tcp_available_ulp: $(cat /proc/sys/net/ipv4/tcp_available_ulp)"
[ -d /sys/module/tls ] || fail "tls module not loaded"
[ -r /proc/net/tls_stat ] || fail "/proc/net/tls_stat missing"
note "tls_stat counters: $(awk '{ printf "%s ", $1 }' /proc/net/tls_stat)"
for c in TlsCurrTxSw TlsCurrRxSw TlsTxSw TlsRxSw TlsDecryptError; do
	tls_stat_has "$c" || fail "counter $c missing from /proc/net/tls_stat"
done
# The ciphers the kernel can do in software for kTLS.
for a in 'gcm(aes)' 'rfc4106(gcm(aes))' 'rfc7539(chacha20,poly1305)'; do
	if grep -q "^name *: $a\$" /proc/crypto; then
		note "crypto: $a $(grep -A2 "^name *: $a\$" /proc/crypto | sed -n 's/^driver *: //p' | head -1)"
	else
		note "crypto: $a not registered yet (instantiated on first use)"
	fi
done
ok
