/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * reason.c - the one table for enum kg_reason: the word audit lines and metric labels
 * use, and the sentence docs/reasons.md is generated from.
 */
#include <stddef.h>

#include "policy/reason.h"

struct reason_row {
	const char *name;
	const char *desc;
};

static const struct reason_row reasons[KG_REASON_MAX] = {
	[KG_REASON_OK] = { "ok", "Allowed: a known, enabled device." },
	[KG_REASON_ENROLLED] = { "enrolled",
		"Allowed: the device was created in the registry by an auto-enrol CA on this "
		"connection (never written for an enrolment that failed to commit)." },
	[KG_REASON_ENROLL_FAILED] = { "enroll_failed",
		"Allowed by an auto-enrol CA, but the registry write did not commit (locked by "
		"another process past the retries, disk full, read-only): the device is not in "
		"the registry and is enrolled again on its next connection; the detail says why." },
	[KG_REASON_NO_CERT] = { "no_cert",
		"Refused in the handshake: the client sent no certificate (TLS alert)." },
	[KG_REASON_UNKNOWN_CA] = { "unknown_ca",
		"Refused in the handshake: the chain reaches no registered CA and no pinned "
		"thumbprint matches (TLS alert unknown_ca)." },
	[KG_REASON_UNPROVEN_CA] = { "unproven_ca",
		"Refused in the handshake: the chain reaches a CA whose proof of possession was "
		"never given (`ca verify`)." },
	[KG_REASON_CERT_EXPIRED] = { "cert_expired",
		"Refused in the handshake: a certificate in the chain is past its notAfter." },
	[KG_REASON_CERT_NOT_YET_VALID] = { "cert_not_yet_valid",
		"Refused in the handshake: a certificate in the chain is before its notBefore." },
	[KG_REASON_CERT_REVOKED] = { "cert_revoked",
		"Refused in the handshake, or a live session closed: a certificate in the chain "
		"is listed in its CA's CRL." },
	[KG_REASON_BAD_EKU] = { "bad_eku",
		"Refused in the handshake: the leaf lacks the clientAuth extended key usage." },
	[KG_REASON_BAD_CHAIN] = { "bad_chain",
		"Refused in the handshake: another chain failure (bad signature, issuer not a "
		"CA, keyCertSign on a leaf, key identifier mismatch, malformed extension)." },
	[KG_REASON_THUMBPRINT_MISMATCH] = { "thumbprint_mismatch",
		"Refused in the handshake: a self-signed or pinned certificate matches no "
		"device's SHA-256 thumbprint." },
	[KG_REASON_BAD_IDENTITY] = { "bad_identity",
		"Refused in the handshake: the leaf's CN is missing, too long, or holds NUL or "
		"control bytes." },
	[KG_REASON_TLS_FAILED] = { "tls_failed",
		"The TLS handshake failed for a reason other than the certificate (protocol "
		"version, cipher, malformed record)." },
	[KG_REASON_WEAK_KEY] = { "weak_key",
		"Refused in the handshake: a key in the chain is below the configured security "
		"level (RSA/DSA/DH under 2048 bits, EC under 224 bits at level 2)." },
	[KG_REASON_WEAK_SIGNATURE] = { "weak_signature",
		"Refused in the handshake: a certificate in the chain is signed with a digest "
		"below the security level (MD5, SHA-1 at level 2)." },
	[KG_REASON_CRL_EXPIRED] = { "crl_expired",
		"Refused in the handshake: the CA's CRL is past its nextUpdate (and past the "
		"configured grace), so revocation cannot be checked." },
	[KG_REASON_CA_DISABLED] = { "ca_disabled",
		"Refused by policy right after the handshake (CONNACK not authorised; banned for "
		"a revoked CA), or a live session closed: the chain's registered CA, or one above "
		"it, is disabled or revoked (`ca set NAME --status`)." },
	[KG_REASON_UNKNOWN_DEVICE] = { "unknown_device",
		"Refused by policy (CONNACK not authorised): no such device and the CA does not "
		"auto-enrol." },
	[KG_REASON_DISABLED] = { "disabled",
		"Refused by policy (CONNACK not authorised), or a live session closed: the device "
		"is disabled." },
	[KG_REASON_SUSPENDED] = { "suspended",
		"Refused by policy (CONNACK not authorised), or a live session closed: the device "
		"is suspended." },
	[KG_REASON_QUARANTINED] = { "quarantined",
		"Refused by policy (CONNACK banned), or a live session closed: the device is "
		"quarantined." },
	[KG_REASON_DECOMMISSIONED] = { "decommissioned",
		"Refused by policy (CONNACK banned), or a live session closed: the device is "
		"decommissioned." },
	[KG_REASON_ATTESTATION_MISMATCH] = { "attestation_mismatch",
		"Refused by policy: a device enrolled by thumbprint came through a CA chain, or "
		"one bound to a CA came through another CA or a pinned certificate." },
	[KG_REASON_NO_BACKEND] = { "no_backend",
		"Refused (CONNACK server unavailable): the device's backend is not configured." },
	[KG_REASON_CLIENT_ID_MISMATCH] = { "client_id_mismatch",
		"Refused (CONNACK identifier rejected): the CONNECT's client id is not the "
		"device id." },
	[KG_REASON_BACKEND_DOWN] = { "backend_down",
		"Refused (CONNACK server unavailable): the broker did not accept the connection "
		"in time." },
	[KG_REASON_USERNAME_MISMATCH] = { "username_mismatch",
		"Refused (CONNACK not authorised): an X.509 device put a username other than its "
		"own device id in the CONNECT." },
	[KG_REASON_BAD_MQTT] = { "bad_mqtt",
		"Closed: the first packet was not a well-formed MQTT CONNECT, or too big." },
	[KG_REASON_TIMEOUT] = { "timeout",
		"Closed: a state's deadline passed (handshake, CONNECT, broker connect, "
		"linger)." },
	[KG_REASON_REVOKED] = { "revoked",
		"A live session closed because the registry changed (device or CA status)." },
	[KG_REASON_KILLED] = { "killed", "A live session closed by `ktlsgate session kill`." },
	[KG_REASON_PEER_CLOSED] = { "peer_closed",
		"The device closed the connection (a normal end after relaying)." },
	[KG_REASON_BACKEND_CLOSED] = { "backend_closed", "The broker closed the connection." },
	[KG_REASON_IO_ERROR] = { "io_error",
		"Closed on a socket error (reset, broken pipe) or an allocation failure." },
	[KG_REASON_OVERLOAD] = { "overload",
		"Closed at accept: the daemon's connection or handshake cap was reached." },
	[KG_REASON_SHUTDOWN] = { "shutdown", "Closed because the daemon is stopping." },
	[KG_REASON_KEY_UPDATE] = { "tls_key_update",
		"Closed with an alert: a TLS 1.3 KeyUpdate the data path cannot follow." },
	[KG_REASON_SOURCE_LIMIT] = { "source_limit",
		"Closed at accept: the source (IPv4 /32, IPv6 /64) is over its concurrent "
		"handshake or new-connection rate limit." },
	[KG_REASON_IDLE_TIMEOUT] = { "idle_timeout",
		"A relayed session closed after no traffic for its idle timeout (MQTT "
		"keep-alive x 1.5, or the configured default)." },
	[KG_REASON_BACKEND_MOVED] = { "backend_moved",
		"A live session closed because the device's (or its CA's) backend changed, so "
		"it reconnects to the new broker." },
	[KG_REASON_PROXY_UNTRUSTED] = { "proxy_untrusted",
		"Closed at once: a connection to a `proxy` listener from an address outside its "
		"proxy_sources (only the TLS fronts named there may speak for devices)." },
	[KG_REASON_BAD_PROXY_HEADER] = { "bad_proxy_header",
		"Closed: a `proxy` listener's connection did not open with a valid PROXY v2 "
		"header (v1 text, bad signature or length, a TLV past its end, a CRC32C that does "
		"not match or is missing under proxy_require_crc); the detail says which." },
	[KG_REASON_BAD_CREDENTIALS] = { "bad_credentials",
		"Refused (CONNACK bad user name or password: 3.1.1 code 4, 5.0 0x86): the "
		"CONNECT's SAS token, access token or user name and password did not verify "
		"(malformed, wrong signature or key, wrong resource, unknown token or user name, "
		"SAS valid longer than sas_max_ttl); the detail says which." },
	[KG_REASON_CREDENTIAL_EXPIRED] = { "credential_expired",
		"Refused (CONNACK bad user name or password): a SAS token whose signature "
		"verified is past its expiry (se)." },
	[KG_REASON_AUTH_RATE_LIMITED] = { "auth_rate_limited",
		"Refused without checking the credential (CONNACK not authorised): too many "
		"failed attempts for this device id, or, for credentials naming no device, from "
		"this source prefix ([auth] failure_burst, failure_refill_ms)." },
	[KG_REASON_X509_REQUIRED] = { "x509_required",
		"Refused (CONNACK not authorised): the listener or [auth] x509_only allows only "
		"client certificates, and the device sent credentials in its CONNECT." },
	[KG_REASON_AUTH_OVERLOAD] = { "auth_overload",
		"Refused (CONNACK server unavailable): the password-hash queue ([auth] "
		"kdf_queue) was full, so the user name and password were not checked." },
	[KG_REASON_REGISTRY_UNAVAILABLE] = { "registry_unavailable",
		"Refused (CONNACK server unavailable: 3.1.1 code 3, 5.0 0x88): the shared "
		"PostgreSQL registry is down (its change watcher is disconnected, or a read "
		"failed) and `registry_down` is fail-closed, or fail-open and the device was "
		"not admitted here within `registry_down_seen` seconds. Live sessions keep "
		"running." },
	[KG_REASON_TPM_UNAVAILABLE] = { "tpm_unavailable",
		"The TLS handshake failed (alert internal_error) because the server key's TPM "
		"gave no signature: it is down or reconnecting, stalled past `[tpm] "
		"sign_timeout_ms`, or the signer's queue (`sign_queue`) was full. Live "
		"sessions are not affected; the daemon reconnects to the TPM by itself." },
};

const char *kg_reason_str(enum kg_reason r)
{
	if ((unsigned)r >= KG_REASON_MAX || reasons[r].name == NULL)
		return "unknown";
	return reasons[r].name;
}

const char *kg_reason_desc(enum kg_reason r)
{
	if ((unsigned)r >= KG_REASON_MAX || reasons[r].desc == NULL)
		return "";
	return reasons[r].desc;
}
