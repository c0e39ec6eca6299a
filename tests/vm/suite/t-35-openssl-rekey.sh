#!/bin/sh
# A finding, recorded as a test: what OpenSSL 3.0 itself does when a TLS 1.3 client
# requests our KeyUpdate while the kernel holds our transmit key. This is why ktls_tx
# closes such a session instead of letting OpenSSL answer (docs/ktls.md). The test
# prints what happened and fails only if the client hangs: a hang would be the bug.
# kgvm-timeout: 60
. "$KGVM_LIB"
. "$KGVM_SUITE/lib.sh"
command -v kg-rekey-server >/dev/null || skip "kg-rekey-server not in the guest"
cp "$GW/server/chain.pem" /tmp/srv-chain.pem
cp "$GW/server/key.pem" /tmp/srv-key.pem
kg-rekey-server 9443 /tmp/srv-chain.pem /tmp/srv-key.pem >/tmp/rekey.out 2>&1 &
wait_port 9443 10 || fail "server did not start: $(cat /tmp/rekey.out)"
out=$(kg-tlsprobe 9443 "$CA" "$PKI/dev/ku2/chain.pem" "$PKI/dev/ku2/key.pem" ku2 requested 2>&1)
sleep 1.5
note "server: $(tr '\n' '|' </tmp/rekey.out)"
note "client: $(echo "$out" | tr '\n' '|')"
echo "$out" | grep -q 'after keyupdate: timeout' && fail "the client hung"
ok
