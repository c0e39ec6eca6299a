/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * ticket_store.h - the session-ticket keys (tickets.h) persisted across restarts,
 * sealed to the TPM that holds the server key ([tls] ticket_key_file).
 *
 * A TPM seals at most 128 bytes and the exported key set is up to 294, so the TPM
 * seals a fresh random 32-byte wrapping key and the export is AES-256-GCM encrypted
 * under it here; the file holds the sealed object and the ciphertext. Without that TPM
 * (a copied disk image) the wrapping key cannot be unsealed and the file is noise.
 *
 * File (all integers big-endian):
 *   "KGTS" | version (1) | 0 | u16 sealed_len | sealed | 12-byte nonce |
 *   u16 ct_len | ct | 16-byte GCM tag
 * the header (everything before the ciphertext) is the GCM additional data.
 * kg_ticket_file_encode/_decode are pure (no TPM, no OpenSSL); decode refuses
 * anything short, long, of another version or with an impossible length.
 * kg_ticket_store_save/_load do the I/O (main thread only: they block on the TPM
 * signer up to its deadline). Save writes tmp + fsync + rename, 0600, then fsyncs the
 * directory.
 */
#ifndef KTLSGATE_TICKET_STORE_H
#define KTLSGATE_TICKET_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "ktlsgate/compiler.h"

#define KG_TICKET_FILE_VERSION 1
#define KG_TICKET_FILE_SEALED_MAX 520   /* tpm_signer.h KG_TPM_REQ_BUF */
#define KG_TICKET_FILE_CT_MAX 512
#define KG_TICKET_FILE_NONCE 12
#define KG_TICKET_FILE_TAG 16
#define KG_TICKET_FILE_MAX                                                                \
	(10 + KG_TICKET_FILE_SEALED_MAX + KG_TICKET_FILE_NONCE + KG_TICKET_FILE_CT_MAX +  \
	 KG_TICKET_FILE_TAG)

struct kg_ticket_file {
	unsigned version;
	uint8_t sealed[KG_TICKET_FILE_SEALED_MAX];
	size_t sealed_len;
	uint8_t nonce[KG_TICKET_FILE_NONCE];
	uint8_t ct[KG_TICKET_FILE_CT_MAX];
	size_t ct_len;
	uint8_t tag[KG_TICKET_FILE_TAG];
};

/* The bytes of f into buf: their length, or -1 (does not fit, or a length out of range). */
int kg_ticket_file_encode(const struct kg_ticket_file *f, uint8_t *buf, size_t cap) KG_MUST_USE;
/* Exactly len bytes into f; -1 on anything malformed. *aad_len: the header's length
 * (buf[0..aad_len) is the GCM additional data). */
int kg_ticket_file_decode(const uint8_t *buf, size_t len, struct kg_ticket_file *f,
			  size_t *aad_len) KG_MUST_USE;

struct kg_ticket_keys;
struct kg_tpm_signer;

/* The trust the tickets were made under (verify.h kg_trust_generation/_fingerprint):
 * encrypted with the keys, so a restart whose trust is the same one resumes them. */
struct kg_ticket_trust {
	uint64_t gen;
	uint8_t fp[32];
};
#define KG_TICKET_TRUST_LEN 40   /* in the plaintext, before the key set export */

/* Seal and write the current key set (and tr) to path. 0, or -1 with err (the file
 * unchanged). */
int kg_ticket_store_save(const char *path, struct kg_ticket_keys *k, const struct kg_ticket_trust *tr,
			 struct kg_tpm_signer *tpm, char *err, size_t errlen) KG_MUST_USE;
/* Read, unseal and import path into k, tr. 1 imported, 0 no such file, -1 with err (k
 * unchanged: the caller goes on with fresh keys). */
int kg_ticket_store_load(const char *path, struct kg_ticket_keys *k, struct kg_ticket_trust *tr,
			 struct kg_tpm_signer *tpm, char *err, size_t errlen) KG_MUST_USE;

#endif
