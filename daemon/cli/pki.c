/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * pki.c - a small test PKI built on OpenSSL 3.0 (roots, intermediates, device, server
 * and self-signed leaves, proof-of-possession verification certs, CRLs), plus the PEM
 * loaders the CLI and the daemon share. Everything here works on files named by the
 * caller and keeps no state; keys are generated with EVP_PKEY_Q_keygen and written as
 * PKCS#8 PEM, mode 0600. Errors are one line: "path: what went wrong".
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "cli/pki.h"

#define PKI_FILE_MAX (1024 * 1024) /* no cert, chain or key file is larger */
#define PKI_BACKDATE 300           /* default notBefore: now - 5 min (clock skew) */
#define PKI_CA_DAYS 3650
#define PKI_LEAF_DAYS 365
#define PKI_VERIFICATION_DAYS 30
#define PKI_CRL_DAYS 30
#define PKI_MAX_DAYS 36500
#define PKI_MAX_EXTS 8

struct ext {
	int nid;
	const char *value;
};

static void seterr(char *err, size_t errlen, const char *fmt, ...) KG_PRINTF(3, 4);
static void seterr(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* seterr() plus the reason of OpenSSL's most recent error; drains the queue so a
 * stale error never leaks into an unrelated later message. */
static void ossl_err(char *err, size_t errlen, const char *fmt, ...) KG_PRINTF(3, 4);
static void ossl_err(char *err, size_t errlen, const char *fmt, ...)
{
	unsigned long e = ERR_peek_last_error();
	const char *why = e != 0 ? ERR_reason_error_string(e) : NULL;
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	ERR_clear_error();
	if (why != NULL)
		seterr(err, errlen, "%s: %s", msg, why);
	else
		seterr(err, errlen, "%s", msg);
}

/* Read a whole regular file (bounded) into a NUL-terminated buffer. */
static int read_file(const char *path, char **out, size_t *outlen, char *err, size_t errlen)
{
	struct stat st;
	char *buf;
	size_t off = 0;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		seterr(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		seterr(err, errlen, "%s: not a regular file", path);
		goto out_close;
	}
	if (st.st_size > PKI_FILE_MAX) {
		seterr(err, errlen, "%s: larger than %d bytes", path, PKI_FILE_MAX);
		goto out_close;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (buf == NULL) {
		seterr(err, errlen, "%s: out of memory", path);
		goto out_close;
	}
	while (off < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + off, (size_t)st.st_size - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			seterr(err, errlen, "%s: %s", path, n < 0 ? strerror(errno) : "short read");
			free(buf);
			goto out_close;
		}
		off += (size_t)n;
	}
	buf[off] = '\0';
	close(fd);
	*out = buf;
	*outlen = off;
	return 0;

out_close:
	close(fd);
	return -1;
}

/* Write (create or replace) a file with exactly `mode`, even if it existed before. */
static int write_file(const char *path, const void *data, size_t len, mode_t mode, char *err,
		      size_t errlen)
{
	const char *p = data;
	int fd;

	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
	if (fd < 0) {
		seterr(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (fchmod(fd, mode) != 0)
		goto out_errno;
	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			goto out_errno;
		p += n;
		len -= (size_t)n;
	}
	if (close(fd) != 0) {
		seterr(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	return 0;

out_errno:
	seterr(err, errlen, "%s: %s", path, strerror(errno));
	close(fd);
	return -1;
}

/* Write the contents of a memory BIO to a file. */
static int write_bio(const char *path, BIO *mem, mode_t mode, char *err, size_t errlen)
{
	char *data;
	long len = BIO_get_mem_data(mem, &data);

	if (len < 0) {
		seterr(err, errlen, "%s: no data", path);
		return -1;
	}
	return write_file(path, data, (size_t)len, mode, err, errlen);
}

/* mkdir -p with mode for every directory created. */
static int mkdir_p(const char *path, mode_t mode, char *err, size_t errlen)
{
	char buf[PATH_MAX];
	struct stat st;
	size_t len = strlen(path);

	if (len == 0 || len >= sizeof(buf)) {
		seterr(err, errlen, "%s: bad directory name", path);
		return -1;
	}
	memcpy(buf, path, len + 1);
	for (size_t i = 1; i <= len; i++) {
		if (buf[i] != '/' && buf[i] != '\0')
			continue;
		buf[i] = '\0';
		if (mkdir(buf, mode) != 0 && errno != EEXIST) {
			seterr(err, errlen, "%s: %s", buf, strerror(errno));
			return -1;
		}
		if (i < len)
			buf[i] = '/';
	}
	if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
		seterr(err, errlen, "%s: not a directory", path);
		return -1;
	}
	return 0;
}

static int join(char *out, size_t cap, const char *dir, const char *file, char *err, size_t errlen)
{
	int n = snprintf(out, cap, "%s/%s", dir, file);

	if (n < 0 || (size_t)n >= cap) {
		seterr(err, errlen, "%s: path too long", dir);
		return -1;
	}
	return 0;
}

static bool is_key_block(const char *name)
{
	size_t n = strlen(name);

	return n >= 11 && strcmp(name + n - 11, "PRIVATE KEY") == 0;
}

/*
 * Parse every certificate of a PEM file (or one DER certificate) into certs.
 * Non-certificate PEM blocks are skipped; *has_key tells whether any of them (or any
 * text at all) looks like a private key. A PEM block that does not decode is an error,
 * not silently skipped: a truncated chain must not look like a shorter valid one.
 */
static int parse_certs(const char *path, const char *data, size_t len, STACK_OF(X509) *certs,
		       bool *has_key, char *err, size_t errlen)
{
	BIO *bio;
	int rc = -1;

	*has_key = memmem(data, len, "PRIVATE KEY-----", 16) != NULL;
	if (memmem(data, len, "-----BEGIN ", 11) == NULL) {
		const unsigned char *p = (const unsigned char *)data;
		X509 *x = len <= LONG_MAX ? d2i_X509(NULL, &p, (long)len) : NULL;

		if (x == NULL || p != (const unsigned char *)data + len) {
			X509_free(x);
			ERR_clear_error();
			seterr(err, errlen, "%s: not a PEM or DER certificate", path);
			return -1;
		}
		if (!sk_X509_push(certs, x)) {
			X509_free(x);
			seterr(err, errlen, "%s: out of memory", path);
			return -1;
		}
		return 0;
	}

	bio = BIO_new_mem_buf(data, (int)len);
	if (bio == NULL) {
		ossl_err(err, errlen, "%s: BIO_new_mem_buf", path);
		return -1;
	}
	for (int block = 1;; block++) {
		char *name = NULL, *header = NULL;
		unsigned char *der = NULL;
		long dlen = 0;

		if (!PEM_read_bio(bio, &name, &header, &der, &dlen)) {
			unsigned long e = ERR_peek_last_error();

			/* "no start line" after the last block is the normal end of file. */
			if (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE &&
			    block > 1) {
				ERR_clear_error();
				break;
			}
			ossl_err(err, errlen, "%s: PEM block %d is malformed", path, block);
			goto out_free_bio;
		}
		if (is_key_block(name))
			*has_key = true;
		if (strcmp(name, PEM_STRING_X509) == 0 || strcmp(name, PEM_STRING_X509_OLD) == 0) {
			const unsigned char *p = der;
			X509 *x = d2i_X509(NULL, &p, dlen);
			bool ok = false;

			if (x == NULL || p != der + dlen)
				ossl_err(err, errlen, "%s: PEM block %d is not a valid certificate", path,
					 block);
			else if (!sk_X509_push(certs, x))
				seterr(err, errlen, "%s: out of memory", path);
			else
				ok = true;
			if (!ok) {
				X509_free(x);
				OPENSSL_free(name);
				OPENSSL_free(header);
				OPENSSL_free(der);
				goto out_free_bio;
			}
		}
		OPENSSL_free(name);
		OPENSSL_free(header);
		OPENSSL_free(der);
	}
	rc = 0;

out_free_bio:
	BIO_free(bio);
	return rc;
}

/* Read all certificates of a file; at least one, or an error. */
static STACK_OF(X509) *read_certs(const char *path, bool *has_key, char *err, size_t errlen)
{
	STACK_OF(X509) *certs;
	char *data;
	size_t len;

	if (path == NULL) {
		seterr(err, errlen, "no certificate file given");
		return NULL;
	}
	if (read_file(path, &data, &len, err, errlen) != 0)
		return NULL;
	certs = sk_X509_new_null();
	if (certs == NULL) {
		seterr(err, errlen, "%s: out of memory", path);
		goto out_free_data;
	}
	if (parse_certs(path, data, len, certs, has_key, err, errlen) != 0)
		goto out_free_certs;
	if (sk_X509_num(certs) == 0) {
		if (*has_key)
			seterr(err, errlen, "%s: holds a private key but no certificate", path);
		else
			seterr(err, errlen, "%s: no certificate found", path);
		goto out_free_certs;
	}
	free(data);
	return certs;

out_free_certs:
	sk_X509_pop_free(certs, X509_free);
out_free_data:
	free(data);
	return NULL;
}

STACK_OF(X509) *kg_pem_read_chain(const char *path, char *err, size_t errlen)
{
	bool has_key;

	return read_certs(path, &has_key, err, errlen);
}

X509 *kg_pem_read_cert(const char *path, char *err, size_t errlen)
{
	STACK_OF(X509) *certs = kg_pem_read_chain(path, err, errlen);
	X509 *x;

	if (certs == NULL)
		return NULL;
	x = sk_X509_shift(certs);
	sk_X509_pop_free(certs, X509_free);
	return x;
}

int kg_pem_read_cert_only(const char *path, X509 **cert, char **pem_out, char *err, size_t errlen)
{
	STACK_OF(X509) *certs;
	bool has_key = false;
	BIO *mem = NULL;
	char *data, *pem;
	long len;
	int rc = -1;

	*cert = NULL;
	if (pem_out != NULL)
		*pem_out = NULL;
	certs = read_certs(path, &has_key, err, errlen);
	/* A key where a certificate is wanted is an operator mistake that may end up
	 * copied into the registry: refuse the file whole, even if it parsed. */
	if (has_key) {
		seterr(err, errlen, "%s: file holds a private key: refusing", path);
		goto out_free_certs;
	}
	if (certs == NULL)
		return -1;
	if (sk_X509_num(certs) != 1) {
		seterr(err, errlen, "%s: holds %d certificates, expected exactly one", path,
		       sk_X509_num(certs));
		goto out_free_certs;
	}
	if (pem_out != NULL) {
		mem = BIO_new(BIO_s_mem());
		if (mem == NULL || !PEM_write_bio_X509(mem, sk_X509_value(certs, 0))) {
			ossl_err(err, errlen, "%s: PEM_write_bio_X509", path);
			goto out_free_bio;
		}
		len = BIO_get_mem_data(mem, &data);
		pem = malloc((size_t)len + 1);
		if (pem == NULL) {
			seterr(err, errlen, "%s: out of memory", path);
			goto out_free_bio;
		}
		memcpy(pem, data, (size_t)len);
		pem[len] = '\0';
		*pem_out = pem;
	}
	*cert = sk_X509_shift(certs);
	rc = 0;

out_free_bio:
	BIO_free(mem);
out_free_certs:
	sk_X509_pop_free(certs, X509_free);
	return rc;
}

/* Never prompt on a terminal for an encrypted key: tests and daemons have no tty. */
static int no_password(char *buf, int size, int rwflag, void *u)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)u;
	return -1;
}

static EVP_PKEY *read_key(const char *path, char *err, size_t errlen)
{
	EVP_PKEY *key = NULL;
	char *data;
	size_t len;
	BIO *bio;

	if (read_file(path, &data, &len, err, errlen) != 0)
		return NULL;
	bio = BIO_new_mem_buf(data, (int)len);
	if (bio != NULL)
		key = PEM_read_bio_PrivateKey(bio, NULL, no_password, NULL);
	if (key == NULL)
		ossl_err(err, errlen, "%s: no usable private key", path);
	BIO_free(bio);
	OPENSSL_cleanse(data, len);
	free(data);
	return key;
}

/* An issuer directory: cert.pem + key.pem that belong together. */
static int load_issuer(const char *dir, X509 **cert, EVP_PKEY **key, char *err, size_t errlen)
{
	char path[PATH_MAX];
	struct stat st;

	*cert = NULL;
	*key = NULL;
	if (dir == NULL) {
		seterr(err, errlen, "no issuer directory given");
		return -1;
	}
	if (stat(dir, &st) != 0) {
		seterr(err, errlen, "issuer directory %s: %s", dir, strerror(errno));
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		seterr(err, errlen, "issuer directory %s: not a directory", dir);
		return -1;
	}
	if (join(path, sizeof(path), dir, "cert.pem", err, errlen) != 0)
		return -1;
	*cert = kg_pem_read_cert(path, err, errlen);
	if (*cert == NULL)
		return -1;
	if (join(path, sizeof(path), dir, "key.pem", err, errlen) != 0)
		goto out_free_cert;
	*key = read_key(path, err, errlen);
	if (*key == NULL)
		goto out_free_cert;
	if (X509_check_private_key(*cert, *key) != 1) {
		ossl_err(err, errlen, "issuer directory %s: key.pem does not match cert.pem", dir);
		goto out_free_key;
	}
	return 0;

out_free_key:
	EVP_PKEY_free(*key);
	*key = NULL;
out_free_cert:
	X509_free(*cert);
	*cert = NULL;
	return -1;
}

static EVP_PKEY *gen_key(enum kg_pki_keytype type, char *err, size_t errlen)
{
	EVP_PKEY *key = NULL;

	switch (type) {
	case KG_KEY_EC_P256:
		/* OpenSSL's own name for P-256: it works through the built-in EC method
		 * too (tls/ec_decode.h), which does not know "P-256" */
		key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "prime256v1");
		break;
	case KG_KEY_RSA2048:
		key = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
		break;
	default:
		seterr(err, errlen, "unknown key type %d", (int)type);
		return NULL;
	}
	if (key == NULL)
		ossl_err(err, errlen, "key generation failed");
	return key;
}

/* A random positive 127-bit serial (RFC 5280: at most 20 octets, non-negative). */
static int set_random_serial(X509 *x)
{
	unsigned char buf[16];
	BIGNUM *bn;
	int ok;

	if (RAND_bytes(buf, sizeof(buf)) != 1)
		return -1;
	buf[0] = (unsigned char)((buf[0] & 0x7f) | 0x01); /* positive and never zero */
	bn = BN_bin2bn(buf, sizeof(buf), NULL);
	if (bn == NULL)
		return -1;
	ok = BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL;
	BN_free(bn);
	return ok ? 0 : -1;
}

/*
 * Build and sign a certificate. issuer NULL: self-signed (the subject is the issuer).
 * The CN is added as a UTF8String directly, bypassing OpenSSL's 64-char ub-common-name
 * table, since device ids may be up to 128 characters.
 */
static X509 *issue(const char *cn, EVP_PKEY *pub, X509 *issuer, EVP_PKEY *signer, int64_t not_before,
		   int64_t days, const struct ext *exts, size_t n_exts, char *err, size_t errlen)
{
	X509_NAME *name;
	X509V3_CTX v3;
	X509 *x;

	x = X509_new();
	if (x == NULL) {
		ossl_err(err, errlen, "X509_new");
		return NULL;
	}
	if (!X509_set_version(x, X509_VERSION_3) || set_random_serial(x) != 0) {
		ossl_err(err, errlen, "%s: cannot set version or serial", cn);
		goto out_free;
	}
	if (ASN1_TIME_set(X509_getm_notBefore(x), (time_t)not_before) == NULL ||
	    ASN1_TIME_adj(X509_getm_notAfter(x), (time_t)not_before, (int)days, 0) == NULL) {
		ossl_err(err, errlen, "%s: cannot set validity", cn);
		goto out_free;
	}
	name = X509_get_subject_name(x);
	if (!X509_NAME_add_entry_by_NID(name, NID_commonName, V_ASN1_UTF8STRING,
					(const unsigned char *)cn, (int)strlen(cn), -1, 0) ||
	    !X509_set_issuer_name(x, issuer != NULL ? X509_get_subject_name(issuer) : name) ||
	    !X509_set_pubkey(x, pub)) {
		ossl_err(err, errlen, "%s: cannot set names or key", cn);
		goto out_free;
	}
	X509V3_set_ctx(&v3, issuer != NULL ? issuer : x, x, NULL, NULL, 0);
	for (size_t i = 0; i < n_exts; i++) {
		X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &v3, exts[i].nid, exts[i].value);

		if (e == NULL || !X509_add_ext(x, e, -1)) {
			X509_EXTENSION_free(e);
			ossl_err(err, errlen, "%s: extension %s = %s", cn, OBJ_nid2sn(exts[i].nid),
				 exts[i].value);
			goto out_free;
		}
		X509_EXTENSION_free(e);
	}
	if (X509_sign(x, signer, EVP_sha256()) <= 0) {
		ossl_err(err, errlen, "%s: signing failed", cn);
		goto out_free;
	}
	return x;

out_free:
	X509_free(x);
	return NULL;
}

static const char *eku_value(enum kg_pki_kind kind, enum kg_pki_eku eku)
{
	switch (eku) {
	case KG_EKU_CLIENT:
		return "clientAuth";
	case KG_EKU_SERVER:
		return "serverAuth";
	case KG_EKU_NONE:
		return NULL;
	case KG_EKU_DEFAULT:
	default:
		return kind == KG_PKI_SERVER ? "serverAuth" : "clientAuth";
	}
}

/* The extension set of each kind (RFC 5280 profile, like Azure's test scripts). */
static size_t kind_exts(const struct kg_pki_req *req, const char *san, struct ext *out)
{
	bool leaf = req->kind != KG_PKI_ROOT && req->kind != KG_PKI_INTERMEDIATE;
	bool self = req->kind == KG_PKI_ROOT || req->kind == KG_PKI_SELF_SIGNED;
	size_t n = 0;

	if (!leaf) {
		out[n++] = (struct ext){ NID_basic_constraints,
					 req->not_ca ? "critical,CA:FALSE" : "critical,CA:TRUE" };
		out[n++] = (struct ext){ NID_key_usage, "critical,keyCertSign,cRLSign" };
	} else {
		const char *eku = eku_value(req->kind, req->eku);

		out[n++] = (struct ext){ NID_basic_constraints, "critical,CA:FALSE" };
		/* RSA TLS 1.2 servers may need key encipherment (RSA key exchange). */
		out[n++] = (struct ext){ NID_key_usage,
					 req->kind == KG_PKI_SERVER && req->key == KG_KEY_RSA2048
						 ? "critical,digitalSignature,keyEncipherment"
						 : "critical,digitalSignature" };
		if (eku != NULL)
			out[n++] = (struct ext){ NID_ext_key_usage, eku };
		if (req->kind == KG_PKI_SERVER)
			out[n++] = (struct ext){ NID_subject_alt_name, san };
	}
	out[n++] = (struct ext){ NID_subject_key_identifier, "hash" };
	if (!self)
		out[n++] = (struct ext){ NID_authority_key_identifier, "keyid" };
	return n;
}

/* PEM of `x` followed by the issuer's chain.pem (or cert.pem), unless the issuer is a
 * self-signed root: chains stop below the root, which the verifier must already have. */
static int append_chain(BIO *mem, X509 *x, X509 *issuer, const char *issuer_dir, char *err,
			size_t errlen)
{
	STACK_OF(X509) *up = NULL;
	char path[PATH_MAX];
	struct stat st;

	if (!PEM_write_bio_X509(mem, x)) {
		ossl_err(err, errlen, "PEM_write_bio_X509");
		return -1;
	}
	if (issuer == NULL || X509_self_signed(issuer, 0) == 1)
		return 0;
	if (join(path, sizeof(path), issuer_dir, "chain.pem", err, errlen) != 0)
		return -1;
	if (stat(path, &st) == 0) {
		up = kg_pem_read_chain(path, err, errlen);
		if (up == NULL)
			return -1;
	} else {
		up = sk_X509_new_null();
		if (up == NULL || !sk_X509_push(up, issuer)) {
			sk_X509_free(up);
			seterr(err, errlen, "out of memory");
			return -1;
		}
		X509_up_ref(issuer);
	}
	for (int i = 0; i < sk_X509_num(up); i++) {
		if (!PEM_write_bio_X509(mem, sk_X509_value(up, i))) {
			sk_X509_pop_free(up, X509_free);
			ossl_err(err, errlen, "PEM_write_bio_X509");
			return -1;
		}
	}
	sk_X509_pop_free(up, X509_free);
	return 0;
}

static int write_pem_cert(const char *path, X509 *x, char *err, size_t errlen)
{
	BIO *mem = BIO_new(BIO_s_mem());
	int rc = -1;

	if (mem == NULL || !PEM_write_bio_X509(mem, x))
		ossl_err(err, errlen, "%s: PEM_write_bio_X509", path);
	else
		rc = write_bio(path, mem, 0644, err, errlen);
	BIO_free(mem);
	return rc;
}

int kg_pki_make(const struct kg_pki_req *req, char *err, size_t errlen)
{
	char path[PATH_MAX], san_buf[512];
	struct ext exts[PKI_MAX_EXTS];
	X509 *issuer = NULL, *x = NULL;
	EVP_PKEY *issuer_key = NULL, *key = NULL;
	BIO *mem = NULL;
	bool ca, needs_issuer;
	const char *san = NULL;
	int64_t not_before, days;
	size_t n_exts;
	int rc = -1;

	if (req == NULL || req->cn == NULL || req->cn[0] == '\0' || req->out_dir == NULL ||
	    req->out_dir[0] == '\0') {
		seterr(err, errlen, "certificate request needs a CN and an output directory");
		return -1;
	}
	if ((unsigned)req->kind >= KG_PKI_KIND_MAX) {
		seterr(err, errlen, "%s: unknown certificate kind %d", req->cn, (int)req->kind);
		return -1;
	}
	ca = req->kind == KG_PKI_ROOT || req->kind == KG_PKI_INTERMEDIATE;
	needs_issuer = req->kind != KG_PKI_ROOT && req->kind != KG_PKI_SELF_SIGNED;
	days = req->days != 0 ? req->days : ca ? PKI_CA_DAYS : PKI_LEAF_DAYS;
	if (days < 1 || days > PKI_MAX_DAYS) {
		seterr(err, errlen, "%s: validity of %lld days out of range 1..%d", req->cn,
		       (long long)days, PKI_MAX_DAYS);
		return -1;
	}
	if (req->not_before < 0) {
		seterr(err, errlen, "%s: negative notBefore", req->cn);
		return -1;
	}
	not_before = req->not_before != 0 ? req->not_before : (int64_t)time(NULL) - PKI_BACKDATE;
	if (req->kind == KG_PKI_SERVER) {
		san = req->san;
		if (san == NULL) {
			int n = snprintf(san_buf, sizeof(san_buf), "DNS:%s,IP:127.0.0.1,IP:::1", req->cn);

			if (n < 0 || (size_t)n >= sizeof(san_buf)) {
				seterr(err, errlen, "%s: CN too long for a DNS name", req->cn);
				return -1;
			}
			san = san_buf;
		}
	}

	if (needs_issuer && load_issuer(req->issuer_dir, &issuer, &issuer_key, err, errlen) != 0)
		return -1;
	key = gen_key(req->key, err, errlen);
	if (key == NULL)
		goto out_free;
	n_exts = kind_exts(req, san, exts);
	x = issue(req->cn, key, issuer, issuer != NULL ? issuer_key : key, not_before, days, exts,
		  n_exts, err, errlen);
	if (x == NULL)
		goto out_free;

	if (mkdir_p(req->out_dir, 0700, err, errlen) != 0)
		goto out_free;
	mem = BIO_new(BIO_s_mem());
	if (mem == NULL || !PEM_write_bio_PrivateKey(mem, key, NULL, NULL, 0, NULL, NULL)) {
		ossl_err(err, errlen, "%s: cannot encode the key", req->cn);
		goto out_free;
	}
	if (join(path, sizeof(path), req->out_dir, "key.pem", err, errlen) != 0 ||
	    write_bio(path, mem, 0600, err, errlen) != 0)
		goto out_free;
	if (join(path, sizeof(path), req->out_dir, "cert.pem", err, errlen) != 0 ||
	    write_pem_cert(path, x, err, errlen) != 0)
		goto out_free;
	/* Reuse the BIO for chain.pem; wipe the key bytes it held first. */
	{
		char *data;
		long len = BIO_get_mem_data(mem, &data);

		if (len > 0)
			OPENSSL_cleanse(data, (size_t)len);
		BIO_free(mem);
		mem = BIO_new(BIO_s_mem());
	}
	if (mem == NULL) {
		seterr(err, errlen, "out of memory");
		goto out_free;
	}
	if (append_chain(mem, x, issuer, req->issuer_dir, err, errlen) != 0 ||
	    join(path, sizeof(path), req->out_dir, "chain.pem", err, errlen) != 0 ||
	    write_bio(path, mem, 0644, err, errlen) != 0)
		goto out_free;
	rc = 0;

out_free:
	if (mem != NULL) {
		char *data;
		long len = BIO_get_mem_data(mem, &data);

		if (len > 0)
			OPENSSL_cleanse(data, (size_t)len);
		BIO_free(mem);
	}
	X509_free(x);
	EVP_PKEY_free(key);
	EVP_PKEY_free(issuer_key);
	X509_free(issuer);
	return rc;
}

int kg_pki_verification_cert(const char *ca_dir, const char *challenge, const char *out_file,
			     char *err, size_t errlen)
{
	static const struct ext exts[] = {
		{ NID_basic_constraints, "critical,CA:FALSE" },
		{ NID_key_usage, "critical,digitalSignature" },
		{ NID_subject_key_identifier, "hash" },
		{ NID_authority_key_identifier, "keyid" },
	};
	X509 *ca, *x = NULL;
	EVP_PKEY *ca_key, *key;
	int rc = -1;

	if (challenge == NULL || challenge[0] == '\0' || out_file == NULL) {
		seterr(err, errlen, "verification certificate needs a challenge and an output file");
		return -1;
	}
	if (load_issuer(ca_dir, &ca, &ca_key, err, errlen) != 0)
		return -1;
	/* The key is thrown away: only the CA's signature over the challenge matters. */
	key = gen_key(KG_KEY_EC_P256, err, errlen);
	if (key == NULL)
		goto out_free_ca;
	x = issue(challenge, key, ca, ca_key, (int64_t)time(NULL) - PKI_BACKDATE,
		  PKI_VERIFICATION_DAYS, exts, KG_NITEMS(exts), err, errlen);
	if (x != NULL)
		rc = write_pem_cert(out_file, x, err, errlen);
	X509_free(x);
	EVP_PKEY_free(key);
out_free_ca:
	EVP_PKEY_free(ca_key);
	X509_free(ca);
	return rc;
}

/* Add one revoked entry for the certificate in `path`, which ca must have issued. */
static int crl_revoke(X509_CRL *crl, X509 *ca, const char *path, ASN1_TIME *when,
		      char *err, size_t errlen)
{
	X509_REVOKED *r;
	X509 *x;

	x = kg_pem_read_cert(path, err, errlen);
	if (x == NULL)
		return -1;
	if (X509_NAME_cmp(X509_get_issuer_name(x), X509_get_subject_name(ca)) != 0) {
		seterr(err, errlen, "%s: not issued by this CA", path);
		X509_free(x);
		return -1;
	}
	r = X509_REVOKED_new();
	if (r == NULL || !X509_REVOKED_set_serialNumber(r, X509_get_serialNumber(x)) ||
	    !X509_REVOKED_set_revocationDate(r, when) || !X509_CRL_add0_revoked(crl, r)) {
		ossl_err(err, errlen, "%s: cannot add to the CRL", path);
		X509_REVOKED_free(r);
		X509_free(x);
		return -1;
	}
	X509_free(x);
	return 0;
}

int kg_pki_crl(const char *ca_dir, const char *const *revoked_files, size_t n, const char *out_file,
	       char *err, size_t errlen)
{
	ASN1_TIME *last = NULL, *next = NULL;
	ASN1_INTEGER *number = NULL;
	X509_EXTENSION *aki = NULL;
	X509_CRL *crl = NULL;
	X509V3_CTX v3;
	EVP_PKEY *key;
	time_t now = time(NULL);
	BIO *mem = NULL;
	X509 *ca;
	int rc = -1;

	if (out_file == NULL || (n > 0 && revoked_files == NULL)) {
		seterr(err, errlen, "CRL needs an output file");
		return -1;
	}
	if (load_issuer(ca_dir, &ca, &key, err, errlen) != 0)
		return -1;
	crl = X509_CRL_new();
	last = ASN1_TIME_set(NULL, now);
	next = ASN1_TIME_adj(NULL, now, PKI_CRL_DAYS, 0);
	number = ASN1_INTEGER_new();
	if (crl == NULL || last == NULL || next == NULL || number == NULL ||
	    !X509_CRL_set_version(crl, X509_CRL_VERSION_2) ||
	    !X509_CRL_set_issuer_name(crl, X509_get_subject_name(ca)) ||
	    !X509_CRL_set1_lastUpdate(crl, last) || !X509_CRL_set1_nextUpdate(crl, next)) {
		ossl_err(err, errlen, "%s: cannot build the CRL", ca_dir);
		goto out_free;
	}
	for (size_t i = 0; i < n; i++)
		if (crl_revoke(crl, ca, revoked_files[i], last, err, errlen) != 0)
			goto out_free;
	/* crlNumber must grow with each CRL; the issue time in seconds does. */
	X509V3_set_ctx(&v3, ca, NULL, NULL, crl, 0);
	aki = X509V3_EXT_conf_nid(NULL, &v3, NID_authority_key_identifier, "keyid");
	if (!ASN1_INTEGER_set_int64(number, (int64_t)now) ||
	    X509_CRL_add1_ext_i2d(crl, NID_crl_number, number, 0, 0) != 1 || aki == NULL ||
	    !X509_CRL_add_ext(crl, aki, -1) || !X509_CRL_sort(crl) ||
	    X509_CRL_sign(crl, key, EVP_sha256()) <= 0) {
		ossl_err(err, errlen, "%s: cannot sign the CRL", ca_dir);
		goto out_free;
	}
	mem = BIO_new(BIO_s_mem());
	if (mem == NULL || !PEM_write_bio_X509_CRL(mem, crl)) {
		ossl_err(err, errlen, "%s: PEM_write_bio_X509_CRL", out_file);
		goto out_free;
	}
	rc = write_bio(out_file, mem, 0644, err, errlen);

out_free:
	BIO_free(mem);
	X509_EXTENSION_free(aki);
	ASN1_INTEGER_free(number);
	ASN1_TIME_free(next);
	ASN1_TIME_free(last);
	X509_CRL_free(crl);
	EVP_PKEY_free(key);
	X509_free(ca);
	return rc;
}

int kg_pki_check_verification(X509 *ca, X509 *vcert, const char *challenge, char *err,
			      size_t errlen)
{
	X509_NAME *name;
	EVP_PKEY *ca_key;
	unsigned char *cn = NULL;
	int idx, len, rc = -1;

	if (ca == NULL || vcert == NULL || challenge == NULL || challenge[0] == '\0') {
		seterr(err, errlen, "verification needs a CA, a certificate and a challenge");
		return -1;
	}
	name = X509_get_subject_name(vcert);
	idx = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
	if (idx < 0 || X509_NAME_get_index_by_NID(name, NID_commonName, idx) >= 0) {
		seterr(err, errlen, "verification certificate must have exactly one CN");
		return -1;
	}
	len = ASN1_STRING_to_UTF8(&cn, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, idx)));
	if (len < 0) {
		ossl_err(err, errlen, "verification certificate CN unreadable");
		return -1;
	}
	if ((size_t)len != strlen(challenge) || memcmp(cn, challenge, (size_t)len) != 0) {
		seterr(err, errlen, "verification certificate CN does not match the challenge");
		goto out_free_cn;
	}
	ca_key = X509_get0_pubkey(ca);
	if (ca_key == NULL || X509_verify(vcert, ca_key) != 1) {
		ERR_clear_error();
		seterr(err, errlen, "verification certificate is not signed by the CA's key");
		goto out_free_cn;
	}
	if (X509_cmp_current_time(X509_get0_notBefore(vcert)) >= 0) {
		seterr(err, errlen, "verification certificate is not yet valid");
		goto out_free_cn;
	}
	if (X509_cmp_current_time(X509_get0_notAfter(vcert)) <= 0) {
		seterr(err, errlen, "verification certificate has expired");
		goto out_free_cn;
	}
	rc = 0;

out_free_cn:
	OPENSSL_free(cn);
	return rc;
}
