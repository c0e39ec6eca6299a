#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# gen-bad-certs.sh DIR - the certificates test-certs.sh feeds the gate, made with the
# openssl CLI only (an independent implementation from the daemon's own `pki`):
#   DIR/root, DIR/factory            EC P-256 root -> intermediate (ktlsgate pki)
#   DIR/rsaroot                      RSA-2048 root (ktlsgate pki --rsa), signs MD5/SHA-1
#   DIR/dev/NAME/{cert,key,chain,tail}.pem, one per case below; chain = leaf + tail,
#                                    tail = the intermediates the device sends
#   DIR/ca/NAME/{cert,key}.pem       the CAs made by hand (bad or good)
# Needs KGCLI (build/ktlsgate). Exits non-zero if any openssl call fails.
set -eu
D=$1
KGCLI=${KGCLI:-$(cd "$(dirname "$0")/../.." && pwd)/build/ktlsgate}
mkdir -p "$D/dev" "$D/ca"
X="$D/ext.cnf"

# One extension section per profile; -extfile/-extensions pick one.
cat >"$X" <<'CNF'
[leaf]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[leaf_certsign]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyCertSign
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[leaf_noakid]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
# openssl x509 -req adds key identifiers by default: "none" keeps this one out
authorityKeyIdentifier = none
[leaf_badakid]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = DER:30:16:80:14:00:01:02:03:04:05:06:07:08:09:0a:0b:0c:0d:0e:0f:10:11:12:13
[leaf_malformed]
basicConstraints = critical,CA:FALSE
keyUsage = DER:03:02
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[ca_nobc]
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[ca_noskid]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = none
authorityKeyIdentifier = keyid
[root_nobc]
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
CNF

pki() { "$KGCLI" pki "$@" >/dev/null; }
[ -f "$D/root/cert.pem" ] || pki root --cn "certs test root" --out "$D/root"
[ -f "$D/factory/cert.pem" ] || pki intermediate --cn "certs factory" --ca "$D/root" --out "$D/factory"
[ -f "$D/rsaroot/cert.pem" ] || pki root --cn "certs rsa root" --rsa --out "$D/rsaroot"

# key NAME SPEC: a private key (rsa:BITS or ec:CURVE)
key() {
	case $2 in
	rsa:*) openssl genpkey -algorithm RSA -pkeyopt "rsa_keygen_bits:${2#rsa:}" -out "$1" 2>/dev/null ;;
	ec:*) openssl genpkey -algorithm EC -pkeyopt "ec_paramgen_curve:${2#ec:}" -out "$1" 2>/dev/null ;;
	esac
}

# sign OUTDIR CN KEYSPEC ISSUERDIR MD PROFILE [CHAIN_TAIL...]: a certificate for a new
# key signed by ISSUERDIR's key; chain.pem = cert + the CHAIN_TAIL files.
sign() {
	local out=$1 cn=$2 spec=$3 iss=$4 md=$5 prof=$6
	shift 6
	mkdir -p "$out"
	key "$out/key.pem" "$spec"
	openssl req -new -key "$out/key.pem" -subj "/CN=$cn" -out "$out/req.csr" 2>/dev/null
	openssl x509 -req -in "$out/req.csr" -CA "$iss/cert.pem" -CAkey "$iss/key.pem" \
		-set_serial "0x$(openssl rand -hex 8)" -days 30 "-$md" \
		-extfile "$X" -extensions "$prof" -out "$out/cert.pem" 2>/dev/null
	cat "$out/cert.pem" "$@" >"$out/chain.pem"
	cat /dev/null "$@" >"$out/tail.pem" # what a client sends after its leaf
}

F=$D/factory/cert.pem
# weak keys under the good factory
sign "$D/dev/rsa512" rsa512 rsa:512 "$D/factory" sha256 leaf "$F"
sign "$D/dev/rsa1024" rsa1024 rsa:1024 "$D/factory" sha256 leaf "$F"
sign "$D/dev/p192" p192 ec:P-192 "$D/factory" sha256 leaf "$F"
# good references
sign "$D/dev/rsa2048" rsa2048 rsa:2048 "$D/factory" sha256 leaf "$F"
sign "$D/dev/p256" p256 ec:P-256 "$D/factory" sha256 leaf "$F"
# weak signatures on the leaf (RSA issuer: MD5 exists only with RSA)
sign "$D/ca/rsaca" "certs rsa ca" rsa:2048 "$D/rsaroot" sha256 ca
R=$D/ca/rsaca/cert.pem
sign "$D/dev/leafmd5" leafmd5 ec:P-256 "$D/ca/rsaca" md5 leaf "$R"
sign "$D/dev/leafsha1" leafsha1 ec:P-256 "$D/ca/rsaca" sha1 leaf "$R"
sign "$D/dev/rsagood" rsagood ec:P-256 "$D/ca/rsaca" sha256 leaf "$R"
# weak signatures on the intermediate (leaf itself signed with SHA-256)
sign "$D/ca/md5ca" "certs md5 ca" rsa:2048 "$D/rsaroot" md5 ca
sign "$D/dev/intmd5" intmd5 ec:P-256 "$D/ca/md5ca" sha256 leaf "$D/ca/md5ca/cert.pem"
sign "$D/ca/sha1ca" "certs sha1 ca" rsa:2048 "$D/rsaroot" sha1 ca
sign "$D/dev/intsha1" intsha1 ec:P-256 "$D/ca/sha1ca" sha256 leaf "$D/ca/sha1ca/cert.pem"
# an intermediate with a weak key (CA_KEY_TOO_SMALL)
sign "$D/ca/weakca" "certs weak ca" rsa:1024 "$D/rsaroot" sha256 ca
sign "$D/dev/intweak" intweak ec:P-256 "$D/ca/weakca" sha256 leaf "$D/ca/weakca/cert.pem"
# RFC 5280 profile
sign "$D/ca/nobc" "certs no bc" ec:P-256 "$D/root" sha256 ca_nobc
sign "$D/dev/under-nobc" under-nobc ec:P-256 "$D/ca/nobc" sha256 leaf "$D/ca/nobc/cert.pem" "$F"
sign "$D/ca/noskid" "certs no skid" ec:P-256 "$D/root" sha256 ca_noskid
# its leaf names it by the keyid it would have had (SHA-1 of the EC point: the last
# 65 bytes of the SPKI), since openssl cannot compute an AKID from a missing SKID
kid=$(openssl x509 -in "$D/ca/noskid/cert.pem" -pubkey -noout | openssl pkey -pubin -outform DER |
	tail -c 65 | openssl dgst -sha1 -binary | od -An -tx1 | tr -s ' \n' ':' | sed 's/^://; s/:$//')
printf '[leaf_kid]\nbasicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature\nextendedKeyUsage = clientAuth\nsubjectKeyIdentifier = hash\nauthorityKeyIdentifier = DER:30:16:80:14:%s\n' "$kid" >>"$X"
sign "$D/dev/under-noskid" under-noskid ec:P-256 "$D/ca/noskid" sha256 leaf_kid "$D/ca/noskid/cert.pem"
sign "$D/dev/certsign" certsign ec:P-256 "$D/factory" sha256 leaf_certsign "$F"
sign "$D/dev/noakid" noakid ec:P-256 "$D/factory" sha256 leaf_noakid "$F"
sign "$D/dev/badakid" badakid ec:P-256 "$D/factory" sha256 leaf_badakid "$F"
sign "$D/dev/malformed" malformed ec:P-256 "$D/factory" sha256 leaf_malformed "$F"
# a root without basicConstraints (keyCertSign only: `ca add` takes it) and its device
mkdir -p "$D/ca/rootnobc"
key "$D/ca/rootnobc/key.pem" ec:P-256
openssl req -x509 -new -key "$D/ca/rootnobc/key.pem" -subj "/CN=certs root no bc" -days 30 \
	-sha256 -config <(printf '[req]\ndistinguished_name=dn\nx509_extensions=root_nobc\n[dn]\n'; sed -n '/^\[root_nobc\]/,$p' "$X") \
	-out "$D/ca/rootnobc/cert.pem" 2>/dev/null
sign "$D/dev/under-rootnobc" under-rootnobc ec:P-256 "$D/ca/rootnobc" sha256 leaf
# self-signed weak keys for thumbprint pins
for s in rsa1024 rsa2048; do
	mkdir -p "$D/dev/ss-$s"
	key "$D/dev/ss-$s/key.pem" "rsa:${s#rsa}"
	openssl req -x509 -new -key "$D/dev/ss-$s/key.pem" -subj "/CN=ss-$s" -days 30 -sha256 \
		-addext "basicConstraints=critical,CA:FALSE" -addext "keyUsage=critical,digitalSignature" \
		-addext "extendedKeyUsage=clientAuth" -out "$D/dev/ss-$s/cert.pem" 2>/dev/null
	cp "$D/dev/ss-$s/cert.pem" "$D/dev/ss-$s/chain.pem"
	: >"$D/dev/ss-$s/tail.pem"
done
echo ok
