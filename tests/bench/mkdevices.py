#!/usr/bin/python3
# SPDX-License-Identifier: BSD-2-Clause
"""mkdevices.py PKI - device certificates in bulk for the benches (revoke-ca.sh, pg.sh).

Reads "SUBDIR CN" lines on stdin and writes PKI/SUBDIR/CN/{cert,chain,key}.pem for each:
an ECDSA P-256 leaf issued by PKI/factory, with the profile of `ktlsgate pki device`
(client auth, 30 days). One python3-cryptography process: a `pki device` process per
device costs minutes on a small machine.
"""
import datetime
import os
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

pki = sys.argv[1]
fpem = open(f"{pki}/factory/cert.pem", "rb").read()
fcert = x509.load_pem_x509_certificate(fpem)
fkey = serialization.load_pem_private_key(open(f"{pki}/factory/key.pem", "rb").read(), None)
now = datetime.datetime.now(datetime.timezone.utc)
for line in sys.stdin:
    if not line.strip():
        continue
    sub, cn = line.split()
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(fcert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(fkey.public_key()), critical=False)
            .sign(fkey, hashes.SHA256()))
    d = f"{pki}/{sub}/{cn}"
    os.makedirs(d, exist_ok=True)
    pem = cert.public_bytes(serialization.Encoding.PEM)
    open(f"{d}/cert.pem", "wb").write(pem)
    open(f"{d}/chain.pem", "wb").write(pem + fpem)
    fd = os.open(f"{d}/key.pem", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.write(fd, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))
    os.close(fd)
