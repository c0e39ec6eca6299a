/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * ticket_store.c - the sealed ticket-key file (contract in ticket_store.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "tls/ticket_store.h"
#include "tls/tickets.h"
#include "tpm/tpm_signer.h"

#define HDR_FIXED 8   /* magic, version, reserved, u16 sealed_len */

/* ---- the format (pure) ---- */

int kg_ticket_file_encode(const struct kg_ticket_file *f, uint8_t *buf, size_t cap)
{
	size_t n = HDR_FIXED + f->sealed_len + KG_TICKET_FILE_NONCE + 2 + f->ct_len +
		   KG_TICKET_FILE_TAG;
	uint8_t *p = buf;

	if (f->sealed_len == 0 || f->sealed_len > KG_TICKET_FILE_SEALED_MAX || f->ct_len == 0 ||
	    f->ct_len > KG_TICKET_FILE_CT_MAX || n > cap)
		return -1;
	memcpy(p, "KGTS", 4);
	p[4] = KG_TICKET_FILE_VERSION;
	p[5] = 0;
	p[6] = (uint8_t)(f->sealed_len >> 8);
	p[7] = (uint8_t)f->sealed_len;
	p += HDR_FIXED;
	memcpy(p, f->sealed, f->sealed_len);
	p += f->sealed_len;
	memcpy(p, f->nonce, KG_TICKET_FILE_NONCE);
	p += KG_TICKET_FILE_NONCE;
	p[0] = (uint8_t)(f->ct_len >> 8);
	p[1] = (uint8_t)f->ct_len;
	p += 2;
	memcpy(p, f->ct, f->ct_len);
	p += f->ct_len;
	memcpy(p, f->tag, KG_TICKET_FILE_TAG);
	return (int)n;
}

int kg_ticket_file_decode(const uint8_t *buf, size_t len, struct kg_ticket_file *f,
			  size_t *aad_len)
{
	size_t sl, cl, off;

	memset(f, 0, sizeof(*f));
	if (len < HDR_FIXED || memcmp(buf, "KGTS", 4) != 0 || buf[4] != KG_TICKET_FILE_VERSION ||
	    buf[5] != 0)
		return -1;
	sl = (size_t)buf[6] << 8 | buf[7];
	if (sl == 0 || sl > KG_TICKET_FILE_SEALED_MAX ||
	    len < HDR_FIXED + sl + KG_TICKET_FILE_NONCE + 2)
		return -1;
	off = HDR_FIXED + sl + KG_TICKET_FILE_NONCE;
	cl = (size_t)buf[off] << 8 | buf[off + 1];
	off += 2;
	if (cl == 0 || cl > KG_TICKET_FILE_CT_MAX || len != off + cl + KG_TICKET_FILE_TAG)
		return -1;
	f->version = buf[4];
	memcpy(f->sealed, buf + HDR_FIXED, sl);
	f->sealed_len = sl;
	memcpy(f->nonce, buf + HDR_FIXED + sl, KG_TICKET_FILE_NONCE);
	memcpy(f->ct, buf + off, cl);
	f->ct_len = cl;
	memcpy(f->tag, buf + off + cl, KG_TICKET_FILE_TAG);
	*aad_len = off;
	return 0;
}

/* ---- AES-256-GCM under the wrapping key ---- */

/* enc: in -> out (same length), tag out; !enc: out from in, tag checked. 0 or -1. */
static int gcm(bool enc, const uint8_t key[32], const uint8_t *nonce, const uint8_t *aad,
	       size_t aad_len, const uint8_t *in, size_t len, uint8_t *out, uint8_t *tag)
{
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	int n, ok = 0;

	if (c == NULL)
		return -1;
	if (EVP_CipherInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL, enc ? 1 : 0) != 1 ||
	    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, KG_TICKET_FILE_NONCE, NULL) != 1 ||
	    EVP_CipherInit_ex(c, NULL, NULL, key, nonce, enc ? 1 : 0) != 1 ||
	    EVP_CipherUpdate(c, NULL, &n, aad, (int)aad_len) != 1 ||
	    EVP_CipherUpdate(c, out, &n, in, (int)len) != 1)
		goto out;
	if (!enc && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, KG_TICKET_FILE_TAG, tag) != 1)
		goto out;
	if (EVP_CipherFinal_ex(c, out + n, &n) != 1)
		goto out;
	if (enc && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, KG_TICKET_FILE_TAG, tag) != 1)
		goto out;
	ok = 1;
out:
	EVP_CIPHER_CTX_free(c);
	return ok ? 0 : -1;
}

/* ---- file I/O ---- */

static int write_atomic(const char *path, const uint8_t *buf, size_t len, char *err,
			size_t errlen)
{
	char tmp[PATH_MAX], dir[PATH_MAX];
	const char *slash;
	int fd, dfd;
	size_t done = 0;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp)) {
		snprintf(err, errlen, "%s: path too long", path);
		return -1;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
		return -1;
	}
	/* an umask or a pre-existing tmp file must not widen it */
	if (fchmod(fd, 0600) != 0)
		goto fail;
	while (done < len) {
		ssize_t w = write(fd, buf + done, len - done);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			goto fail;
		done += (size_t)w;
	}
	if (fsync(fd) != 0)
		goto fail;
	if (close(fd) != 0) {
		fd = -1;
		goto fail;
	}
	fd = -1;
	if (rename(tmp, path) != 0)
		goto fail;
	/* the rename itself durable: fsync the directory (best effort) */
	slash = strrchr(path, '/');
	if (slash != NULL && (size_t)(slash - path) < sizeof(dir)) {
		memcpy(dir, path, (size_t)(slash - path));
		dir[slash == path ? 1 : slash - path] = '\0';
		if (slash == path)
			dir[0] = '/';
		dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd >= 0) {
			(void)fsync(dfd);
			close(dfd);
		}
	}
	return 0;
fail:
	snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
	if (fd >= 0)
		close(fd);
	(void)unlink(tmp);
	return -1;
}

int kg_ticket_store_save(const char *path, struct kg_ticket_keys *k, const struct kg_ticket_trust *tr,
			 struct kg_tpm_signer *tpm, char *err, size_t errlen)
{
	struct kg_ticket_file f;
	uint8_t wrap[32], buf[KG_TICKET_FILE_MAX], hdr[HDR_FIXED + KG_TICKET_FILE_SEALED_MAX + 14];
	unsigned char *keys = NULL, *plain = NULL;
	size_t klen = 0, plen = 0, aad_len;
	int n, ret = -1;

	memset(&f, 0, sizeof(f));
	if (kg_ticket_keys_export(k, &keys, &klen) != 0) {
		snprintf(err, errlen, "export: out of memory");
		return -1;
	}
	plen = KG_TICKET_TRUST_LEN + klen;
	if (plen > KG_TICKET_FILE_CT_MAX || (plain = OPENSSL_secure_malloc(plen)) == NULL) {
		snprintf(err, errlen, "export: %zu bytes", plen);
		goto out;
	}
	for (int i = 0; i < 8; i++)
		plain[i] = (unsigned char)(tr->gen >> (56 - 8 * i));
	memcpy(plain + 8, tr->fp, 32);
	memcpy(plain + KG_TICKET_TRUST_LEN, keys, klen);
	if (RAND_priv_bytes(wrap, sizeof(wrap)) != 1 ||
	    RAND_bytes(f.nonce, sizeof(f.nonce)) != 1) {
		snprintf(err, errlen, "no randomness");
		goto out;
	}
	if (kg_tpm_signer_seal(tpm, wrap, sizeof(wrap), f.sealed, sizeof(f.sealed), &f.sealed_len,
			       err, errlen) != 0)
		goto out;
	f.ct_len = plen;
	/* the header is the additional data: encode once with a dummy ciphertext to get it */
	n = kg_ticket_file_encode(&f, buf, sizeof(buf));
	if (n < 0) {
		snprintf(err, errlen, "encode");
		goto out;
	}
	aad_len = HDR_FIXED + f.sealed_len + KG_TICKET_FILE_NONCE + 2;
	memcpy(hdr, buf, aad_len);
	if (gcm(true, wrap, f.nonce, hdr, aad_len, plain, plen, f.ct, f.tag) != 0) {
		snprintf(err, errlen, "AES-256-GCM failed");
		goto out;
	}
	n = kg_ticket_file_encode(&f, buf, sizeof(buf));
	if (n < 0) {
		snprintf(err, errlen, "encode");
		goto out;
	}
	ret = write_atomic(path, buf, (size_t)n, err, errlen);
out:
	OPENSSL_cleanse(wrap, sizeof(wrap));
	OPENSSL_cleanse(&f, sizeof(f));
	if (plain != NULL)
		OPENSSL_secure_clear_free(plain, plen);
	OPENSSL_secure_clear_free(keys, klen);
	return ret;
}

int kg_ticket_store_load(const char *path, struct kg_ticket_keys *k, struct kg_ticket_trust *tr,
			 struct kg_tpm_signer *tpm, char *err, size_t errlen)
{
	struct kg_ticket_file f;
	uint8_t buf[KG_TICKET_FILE_MAX + 1], wrap[KG_TPM_SEAL_MAX];
	unsigned char *plain = NULL;
	size_t len = 0, aad_len, wlen = 0;
	ssize_t r;
	int fd, ret = -1;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		if (errno == ENOENT)
			return 0;
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	while (len < sizeof(buf)) {
		r = read(fd, buf + len, sizeof(buf) - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			snprintf(err, errlen, "%s: %s", path, strerror(errno));
			close(fd);
			return -1;
		}
		if (r == 0)
			break;
		len += (size_t)r;
	}
	close(fd);
	if (kg_ticket_file_decode(buf, len, &f, &aad_len) != 0) {
		snprintf(err, errlen, "%s: not a sealed ticket key file (version %d)", path,
			 KG_TICKET_FILE_VERSION);
		return -1;
	}
	if (kg_tpm_signer_unseal(tpm, f.sealed, f.sealed_len, wrap, sizeof(wrap), &wlen, err,
				 errlen) != 0)
		goto out;
	if (wlen != 32) {
		snprintf(err, errlen, "%s: unsealed %zu bytes, not a 32-byte key", path, wlen);
		goto out;
	}
	plain = OPENSSL_secure_malloc(f.ct_len + 16);
	if (plain == NULL) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	if (gcm(false, wrap, f.nonce, buf, aad_len, f.ct, f.ct_len, plain, f.tag) != 0) {
		snprintf(err, errlen, "%s: authentication failed (altered file)", path);
		goto out;
	}
	if (f.ct_len < KG_TICKET_TRUST_LEN ||
	    kg_ticket_keys_import(k, plain + KG_TICKET_TRUST_LEN, f.ct_len - KG_TICKET_TRUST_LEN) != 0) {
		snprintf(err, errlen, "%s: the key set inside is malformed", path);
		goto out;
	}
	tr->gen = 0;
	for (int i = 0; i < 8; i++)
		tr->gen = tr->gen << 8 | plain[i];
	memcpy(tr->fp, plain + 8, 32);
	ret = 1;
out:
	OPENSSL_cleanse(wrap, sizeof(wrap));
	if (plain != NULL)
		OPENSSL_secure_clear_free(plain, f.ct_len + 16);
	return ret;
}
