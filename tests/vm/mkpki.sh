#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# mkpki.sh DIR - a small test PKI for guest tests, made on the host (the guest has the
# openssl CLI too, but key generation under TCG is slow): ca.{key,pem}, server.{key,pem}
# (CN and SAN localhost, IP 127.0.0.1) and client.{key,pem} (CN kgvm-client), all
# ECDSA P-256, signed by the CA, valid for 30 days; plus openssl-ktls.cnf, an OpenSSL
# config that turns kTLS on for every SSL_CTX (OPENSSL_CONF=...): OpenSSL 3.0's
# s_server and s_client have no -ktls switch, but libssl takes "Options = KTLS".
set -euo pipefail
d=${1:?usage: mkpki.sh DIR}
mkdir -p "$d"
cd "$d"
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.key" 2>/dev/null; }
key ca
openssl req -x509 -new -key ca.key -subj /CN=kgvm-test-ca -days 30 -out ca.pem \
	-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
issue() { # NAME CN EXT
	key "$1"
	openssl req -new -key "$1.key" -subj "/CN=$2" -out "$1.csr"
	printf '%s\n' "$3" >"$1.ext"
	openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 \
		-extfile "$1.ext" -out "$1.pem" 2>/dev/null
	rm -f "$1.csr" "$1.ext"
}
issue server localhost 'subjectAltName=DNS:localhost,IP:127.0.0.1
extendedKeyUsage=serverAuth'
issue client kgvm-client 'extendedKeyUsage=clientAuth'
rm -f ca.srl
cat >openssl-ktls.cnf <<'CNF'
# kTLS for every SSL_CTX of a process run with OPENSSL_CONF=<this file>.
openssl_conf = kgvm_init
[kgvm_init]
ssl_conf = kgvm_ssl
[kgvm_ssl]
system_default = kgvm_sys
[kgvm_sys]
Options = KTLS
CNF
