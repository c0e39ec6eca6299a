/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * ec_decode.h - the device certificates' EC public keys decoded by OpenSSL's built-in EC
 * method rather than through a provider decoder, on OpenSSL 3.0 and 3.1 ([tls]
 * fast_ec_decode; docs/benchmarks.md, issue 13, "Full handshakes: the decoder").
 *
 * Why: OpenSSL before 3.2 builds a new OSSL_DECODER context for the public key of every
 * certificate it parses (d2i_X509 -> x509_pubkey_ex_d2i_ex ->
 * OSSL_DECODER_CTX_new_for_pkey, walking every provider's decoders under read locks;
 * openssl/openssl#17950, fixed by 3.2's decoder cache, #21426): about 100 us of the
 * ~20 us a P-256 certificate otherwise takes, twice a full handshake (the device's leaf
 * and intermediate) and once more for every session OpenSSL decodes.
 * How: that decoder asks the legacy ASN.1 method first when an ENGINE provides the key
 * type's EVP_PKEY_METHOD. This module registers an engine that provides, for
 * EVP_PKEY_EC only, OpenSSL's own built-in EC method: the same library code, through
 * its legacy EC_KEY interface, for decoding those keys and for verifying with them (the
 * device's chain and CertificateVerify). Keys that live in a provider (our server key
 * read from its file) are not legacy keys and sign as before; RSA and Ed25519 keys are
 * not EC keys.
 * The price, process-wide: an EC context made by name ("EC": the ECDHE shares of the
 * P-256/P-384 groups, EVP_PKEY_Q_keygen) takes the built-in method too, which knows
 * curves only by OpenSSL's names ("prime256v1", not "P-256") and cannot sign X509
 * structures with provider keys. Nothing of the handshakes does either; the daemon
 * keeps it away from the TPM: not registered beside a TPM key in direct mode (every
 * handshake signs there), and paused while the certified leaf is made (its key is made
 * by name and its certificate signed by the TPM key; core/leaf_timer.c).
 * Main thread; OpenSSL's engine table is locked, so workers decoding meanwhile see it or
 * not, and either way decode correctly.
 */
#ifndef KTLSGATE_EC_DECODE_H
#define KTLSGATE_EC_DECODE_H

#include <stdbool.h>
#include <stddef.h>

#include "ktlsgate/compiler.h"

/* Register the engine when `enabled` and the running libcrypto is older than 3.2.
 * 1: registered; 0: not needed (OpenSSL 3.2 or later, or not enabled); -1: OpenSSL
 * refused it, why in err (the daemon goes on with OpenSSL's decoders). */
int kg_tls_ec_decode_init(bool enabled, char *err, size_t errlen) KG_MUST_USE;

/* Take it out of the table (and put it back): around the certified leaf's making.
 * Nothing when it is not registered. */
void kg_tls_ec_decode_pause(void);
void kg_tls_ec_decode_resume(void);
/* Unregister it for good (the unit tests, which run both ways in one process; the
 * daemon keeps it for its life). */
void kg_tls_ec_decode_fini(void);

/* Does this libcrypto (the running one) need it? Pure on the version number. */
bool kg_tls_ec_decode_needed(unsigned long openssl_version_num);

#endif
