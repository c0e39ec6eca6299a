/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * verify.h - who is this device? Chain verification against the registry's proven
 * CAs (plus per-CA CRL files), or an exact SHA-256 thumbprint pin; then the leaf's CN
 * becomes the device id, validated before any use.
 *
 * The daemon calls kg_verify_peer() from OpenSSL's cert-verify callback; the CLI's
 * `ktlsgate verify` calls the very same function offline. A struct kg_trust is built
 * once (start, reload), then read-only and shared by all workers.
 */
#ifndef KTLSGATE_VERIFY_H
#define KTLSGATE_VERIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include <openssl/x509.h>

#include "ktlsgate/compiler.h"
#include "policy/identity.h"   /* struct kg_identity, kg_identity_valid() */
#include "policy/reason.h"
#include "registry/registry.h"

/* Read the single CN of `cert` into out (validated). KG_REASON_OK or BAD_IDENTITY. */
enum kg_reason kg_identity_from_cert(X509 *cert, char *out, size_t cap, size_t *module_off);

/* Lowercase hex SHA-256 of the DER encoding. Returns 0 or -1. */
int kg_cert_sha256_hex(X509 *cert, char out[KG_SHA256_HEX_LEN + 1]) KG_MUST_USE;

struct kg_trust;

/* OpenSSL security level the trust starts with (config.h: [tls] security_level). */
#define KG_SECURITY_LEVEL_DEFAULT 2

struct kg_trust *kg_trust_new(void);
/* Which trust this is: every kg_trust_new() makes a new one, and a CA, CRL or reload
 * change always builds a new trust (daemon.h snapshots). A session ticket made under
 * one generation does not resume under another (tls/tickets.h). Never 0. */
uint64_t kg_trust_generation(const struct kg_trust *t);
/* Restarts (core/ticket_persist.c): a digest of what t accepts (policy, CAs and their
 * registry settings, CRL files' bytes), 0 or -1; and, for a trust not yet published
 * whose fingerprint equals the one saved with the sealed ticket keys, take the
 * generation saved with them, so tickets from before the restart resume (gen 0:
 * ignored). A reload still makes a new generation. */
int kg_trust_fingerprint(const struct kg_trust *t, uint8_t out[32]) KG_MUST_USE;
void kg_trust_adopt_generation(struct kg_trust *t, uint64_t gen);
/*
 * What the chain must satisfy: OpenSSL security level (0..5; keys and signatures of every
 * certificate, as X509_VERIFY_PARAM_set_auth_level) and the grace, in seconds, during
 * which a CRL past its nextUpdate is still honoured (0: refused at once as
 * KG_REASON_CRL_EXPIRED). kg_trust_load() takes both from the config.
 */
void kg_trust_set_policy(struct kg_trust *t, int security_level, int64_t crl_grace);
void kg_trust_free(struct kg_trust *t);
/*
 * Add a registry CA. Only a verified CA authenticates devices; an unverified one is
 * remembered so a chain that reaches it is refused as KG_REASON_UNPROVEN_CA rather
 * than UNKNOWN_CA. Returns 0 or -1 with a message in err.
 */
int kg_trust_add_ca(struct kg_trust *t, const struct kg_ca *ca, char *err, size_t errlen) KG_MUST_USE;
/* Load a CRL file (PEM or DER) for the registered CA `ca_name`; the CRL's issuer must
 * be that CA. Returns 0 or -1 with a message. */
int kg_trust_add_crl_file(struct kg_trust *t, const char *ca_name, const char *path,
			  char *err, size_t errlen) KG_MUST_USE;
/* Load every CA from the registry, every [crl] of cfg, and cfg's [tls] security_level
 * and crl_grace (kg_trust_set_policy). A [crl] line naming a CA that is not registered
 * is skipped (kg_trust_crl_report() warns), never an error: a removed CA must leave. */
int kg_trust_load(struct kg_trust *t, struct kg_registry *reg, const struct kg_config *cfg,
		  char *err, size_t errlen) KG_MUST_USE;
size_t kg_trust_count(const struct kg_trust *t, bool verified_only);
/* The registry row of CA `name` as it was when t was built (pem is NULL), or NULL.
 * Its status is the effective one: the worst of its own and of every registered CA
 * above it (issuer by name and signature), so disabling a root reaches the devices
 * of every intermediate registered under it. Its username_check likewise: its own, else
 * the one of the nearest registered CA above it that has one (the strictest if several).
 * The daemon's policy step reads CA settings from here instead of the registry: a CA
 * change reaches the daemon as `ca-changed`, which rebuilds the trust. */
const struct kg_ca *kg_trust_get0_ca(const struct kg_trust *t, const char *name);

/* The CRLs of t, one line per CA with a CRL, plus a WARNING line per skipped [crl]: for `ktlsgated -t` (report) and /metrics
 * (ktlsgate_crl_next_update_timestamp_seconds, ktlsgate_crl_expired). now: judge time.
 * kg_trust_crl_report() returns how many are past nextUpdate + grace (refusing). */
size_t kg_trust_crl_report(const struct kg_trust *t, FILE *f, time_t now);
int kg_trust_crl_metrics_write(const struct kg_trust *t, FILE *f, time_t now);
/* ktlsgate_ca_not_after_timestamp_seconds{ca}: the notAfter of every CA registered in t
 * (verified or not, enabled or not: the trust holds what the registry holds). 0 or -1. */
int kg_trust_ca_metrics_write(const struct kg_trust *t, FILE *f);
/* notAfter of cert as unix seconds (UTC); 0 when cert is NULL or the time unreadable.
 * For /metrics (the server certificate's expiry, main.c). */
int64_t kg_cert_not_after(const X509 *cert);
/* A device of CA `ca_name` was accepted within the CRL grace: should that be logged
 * now? True at most once per CA per `interval` seconds (thread-safe, lock-free). */
bool kg_trust_crl_warn_due(const struct kg_trust *t, const char *ca_name, time_t now,
			   int64_t interval);
/*
 * What a live session keeps of its leaf so a new CRL can reach it without holding the
 * X509 (about 50 bytes instead of a parsed certificate per session).
 */
struct kg_leaf_ref {
	unsigned char issuer_md[16];  /* SHA-256 of the issuer name's DER, truncated */
	unsigned char serial[32];     /* serial magnitude (RFC 5280: at most 20 octets) */
	uint8_t serial_len;           /* 0: not recorded */
	bool serial_neg;
};
/* Record leaf's issuer and serial, hashing with t's pre-fetched SHA-256 (t NULL:
 * EVP_sha256()). Returns 0, or -1 (ref cleared: nothing to match). */
int kg_leaf_ref_from_cert(const struct kg_trust *t, X509 *leaf, struct kg_leaf_ref *ref);
/* Is the leaf listed in one of t's CRLs issued by the leaf's issuer? */
bool kg_trust_leaf_revoked(const struct kg_trust *t, const struct kg_leaf_ref *ref);

/* How a thumbprint-enrolled device is looked up: fill *dev and return 0, or
 * KG_E_NOTFOUND. The daemon passes its per-worker registry handle. */
typedef int (*kg_thumb_lookup_fn)(void *arg, const char *thumb_hex, struct kg_device *dev);
int kg_verify_registry_thumb_lookup(void *reg, const char *thumb_hex, struct kg_device *dev);

/*
 * Verify a peer: leaf + the intermediates it sent (may be NULL). at = 0: now.
 * Order: identity (CN) must be valid; a leaf whose thumbprint pins a device enrolled by
 * thumbprint, with that device's id as CN, is accepted (time validity still checked);
 * otherwise the chain must reach a verified CA in t, with time validity, clientAuth
 * purpose, CA constraints, OpenSSL's RFC 5280 strict checks (X509_V_FLAG_X509_STRICT:
 * basicConstraints, keyUsage, key identifiers) plus well-formed extensions, keys and
 * signatures at t's security level (also a pinned leaf's key), and CRLs (for CAs that
 * have one; an expired CRL refuses with KG_REASON_CRL_EXPIRED past the grace).
 * Returns KG_REASON_OK and fills *id, or the refusal reason; *x509_err (may be NULL)
 * gets the X509_V_ERR_* to put in the TLS alert.
 */
enum kg_reason kg_verify_peer(const struct kg_trust *t, X509 *leaf, STACK_OF(X509) *untrusted,
			      time_t at, kg_thumb_lookup_fn lookup, void *lookup_arg,
			      struct kg_identity *id, int *x509_err);

/*
 * The intermediates cache of t (tls/chain_cache.h): a chain that passed the full
 * verification leaves its leaf's issuer behind, so the next leaf under that issuer is
 * verified alone under it. What it did for one verification:
 */
enum kg_chain_use {
	KG_CHAIN_UNCACHED,   /* not looked up: pinned, refused early, or no issuer sent */
	KG_CHAIN_CACHE_HIT,  /* accepted under a cached issuer: the rest of the chain skipped */
	KG_CHAIN_CACHE_MISS, /* the leaf's issuer was sent but not cached (or its entry was
			      * out of its window, or the leaf failed under it): full chain */
};
/* kg_verify_peer(), also telling what the cache did in *use (may be NULL). */
enum kg_reason kg_verify_peer_ex(const struct kg_trust *t, X509 *leaf, STACK_OF(X509) *untrusted,
				 time_t at, kg_thumb_lookup_fn lookup, void *lookup_arg,
				 struct kg_identity *id, int *x509_err, enum kg_chain_use *use);
/* Issuers t's cache holds now. */
size_t kg_trust_chain_cache_size(const struct kg_trust *t);

#endif
