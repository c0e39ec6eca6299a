#!/usr/bin/python3
# SPDX-License-Identifier: BSD-2-Clause
# Independent vectors for tests/unit/check_auth.c: Python's hmac/hashlib (scrypt is
# hashlib's), base64 and urllib.parse, never the C code under test.
import base64, hashlib, hmac, urllib.parse
K1 = bytes(range(1, 33)); K2 = bytes(range(101, 133)); K3 = bytes(range(201, 233))
b = lambda k: base64.b64encode(k).decode()
HUB = "myhub.azure-devices.net"
def sas(dev, se, key, sr_raw=None, skn=None, sign_raw=False):
    res = f"{HUB}/devices/{dev}"
    canon = urllib.parse.quote(res, safe="")   # every byte but A-Z a-z 0-9 - _ . ~ escaped
    raw = sr_raw if sr_raw is not None else canon
    sts = (raw if sign_raw else canon) + "\n" + str(se)
    sig = base64.b64encode(hmac.new(key, sts.encode(), hashlib.sha256).digest()).decode()
    t = f"SharedAccessSignature sr={raw}&sig={urllib.parse.quote(sig, safe='')}&se={se}"
    if skn: t += f"&skn={skn}"
    return t
print('#define K1 "%s"' % b(K1)); print('#define K2 "%s"' % b(K2)); print('#define K3 "%s"' % b(K3))
V = {
 "SAS_P": sas("dev-1", 1900000000, K1),
 "SAS_S": sas("dev-1", 1900000000, K2),
 "SAS_RAW": sas("dev-1", 1900000000, K1, sr_raw=HUB.replace(".", ".") + "%2fdevices%2fdev-1", sign_raw=True),
 "SAS_EXPIRED": sas("dev-1", 1700000000, K1),
 "SAS_OTHER_RES": sas("dev-2", 1900000000, K1),
 "SAS_WRONG_KEY": sas("dev-1", 1900000000, K3),
 "SAS_SKN": sas("dev-1", 1900000000, K1, skn="iothubowner"),
 "SAS_SHORT": sas("dev-1", 1800000600, K1),
 "SAS_BASICDEV": sas("bas-1", 1900000000, K1),
}
for k, v in V.items(): print('#define %s "%s"' % (k, v))
TOK = "tb-AbCdEf0123456789xyz"
print('#define TOKEN "%s"' % TOK)
print('#define TOKEN_SHA "%s"' % hashlib.sha256(TOK.encode()).hexdigest())
def phc(pw, salt):
    h = hashlib.scrypt(pw.encode(), salt=salt, n=1024, r=8, p=1, dklen=32)
    e = lambda x: base64.b64encode(x).decode().rstrip("=")
    return f"$scrypt$ln=10,r=8,p=1${e(salt)}${e(h)}"
print('#define PW1 "correct horse battery"'); print('#define PW2 "second-pass-0123"')
print('#define PHC1 "%s"' % phc("correct horse battery", bytes(range(16))))
print('#define PHC2 "%s"' % phc("second-pass-0123", bytes(range(50, 66))))
# A slower hash (ln=14: 16 MiB) for the pool tests that need a job to be running.
salt = bytes(range(100, 116))
h = hashlib.scrypt(b"slow-password-1", salt=salt, n=1 << 14, r=8, p=1, dklen=32, maxmem=64 << 20)
e = lambda x: base64.b64encode(x).decode().rstrip("=")
print('#define PW_SLOW "slow-password-1"')
print('#define PHC_SLOW "$scrypt$ln=14,r=8,p=1$%s$%s"' % (e(salt), e(h)))
# The CLI's default parameters (ln=15, r=8, p=1: 32 MiB and a bit): OpenSSL's default
# maxmem (32 MiB) is below what they need, so this one fails without kg_scrypt_mem().
salt = bytes(range(200, 216))
h = hashlib.scrypt(b"default-cost-pw", salt=salt, n=1 << 15, r=8, p=1, dklen=32, maxmem=64 << 20)
print('#define PW_DEFAULT "default-cost-pw"')
print('#define PHC_DEFAULT "$scrypt$ln=15,r=8,p=1$%s$%s"' % (e(salt), e(h)))
