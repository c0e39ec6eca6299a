/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * reason.h - why a connection was allowed, refused or closed.
 * One enum, one string table (reason.c): audit lines and metric labels use the same
 * words, so an operator can grep one and find the other.
 */
#ifndef KTLSGATE_REASON_H
#define KTLSGATE_REASON_H

enum kg_reason {
	KG_REASON_OK,                 /* allowed: known, enabled device */
	KG_REASON_ENROLLED,           /* allowed: created by an auto-enroll CA */
	KG_REASON_ENROLL_FAILED,      /* allowed, but its auto-enrolment did not commit */
	/* TLS / verification (a TLS alert is sent) */
	KG_REASON_NO_CERT,            /* client sent no certificate */
	KG_REASON_UNKNOWN_CA,         /* chain does not reach a registered CA */
	KG_REASON_UNPROVEN_CA,        /* chains to a CA whose possession is not proven */
	KG_REASON_CERT_EXPIRED,
	KG_REASON_CERT_NOT_YET_VALID,
	KG_REASON_CERT_REVOKED,       /* listed in a configured CRL */
	KG_REASON_BAD_EKU,            /* no clientAuth extended key usage */
	KG_REASON_BAD_CHAIN,          /* other chain failure (CA:FALSE issuer, signature...) */
	KG_REASON_THUMBPRINT_MISMATCH,/* self-signed / pinned cert matches no device */
	KG_REASON_BAD_IDENTITY,       /* CN missing, too long, NUL or control bytes */
	KG_REASON_TLS_FAILED,         /* handshake failed for a non-certificate reason */
	KG_REASON_WEAK_KEY,           /* a chain key below the security level (RSA < 2048...) */
	KG_REASON_WEAK_SIGNATURE,     /* a chain signature below the security level (MD5, SHA-1) */
	KG_REASON_CRL_EXPIRED,        /* the CA's CRL is past its nextUpdate (and grace) */
	KG_REASON_CA_DISABLED,        /* the chain's registered CA is disabled or revoked */
	/* policy (a CONNACK refusal is sent) */
	KG_REASON_UNKNOWN_DEVICE,
	KG_REASON_DISABLED,
	KG_REASON_SUSPENDED,
	KG_REASON_QUARANTINED,
	KG_REASON_DECOMMISSIONED,
	KG_REASON_ATTESTATION_MISMATCH,/* device enrolled by thumbprint came via a CA, or v.v. */
	KG_REASON_NO_BACKEND,         /* the device's backend is not configured */
	KG_REASON_CLIENT_ID_MISMATCH,
	KG_REASON_BACKEND_DOWN,
	KG_REASON_USERNAME_MISMATCH,  /* X.509 device put another name in the CONNECT username */
	/* connection life */
	KG_REASON_BAD_MQTT,           /* first packet garbage / not CONNECT / too big */
	KG_REASON_TIMEOUT,            /* a state deadline passed */
	KG_REASON_REVOKED,            /* closed because the registry changed */
	KG_REASON_KILLED,             /* closed by `ktlsgate session kill` */
	KG_REASON_PEER_CLOSED,
	KG_REASON_BACKEND_CLOSED,
	KG_REASON_IO_ERROR,
	KG_REASON_OVERLOAD,           /* connection or handshake cap reached */
	KG_REASON_SHUTDOWN,
	KG_REASON_KEY_UPDATE,         /* a TLS 1.3 KeyUpdate the data path cannot follow */
	KG_REASON_SOURCE_LIMIT,       /* the source address is over its handshake/rate limit */
	KG_REASON_IDLE_TIMEOUT,       /* no traffic for the idle timeout (keep-alive x 1.5) */
	KG_REASON_BACKEND_MOVED,      /* closed so the device reconnects to its new backend */
	KG_REASON_PROXY_UNTRUSTED,    /* a proxy listener's peer is not in its proxy_sources */
	KG_REASON_BAD_PROXY_HEADER,   /* no valid PROXY v2 header where one must come first */
	/* CONNECT credentials (issue 15, auth/auth_check.h; a CONNACK refusal is sent) */
	KG_REASON_BAD_CREDENTIALS,    /* SAS / token / user name + password did not verify */
	KG_REASON_CREDENTIAL_EXPIRED, /* a SAS token that verified, past its expiry */
	KG_REASON_AUTH_RATE_LIMITED,  /* too many failures for the device id or source */
	KG_REASON_X509_REQUIRED,      /* x509_only: credentials in the CONNECT are refused */
	KG_REASON_AUTH_OVERLOAD,      /* the password-hash queue is full */
	KG_REASON_REGISTRY_UNAVAILABLE, /* a shared registry is down: the down rule refused */
	KG_REASON_TPM_UNAVAILABLE,    /* the TPM did not sign in time (down, stalled, queue full) */
	KG_REASON_MAX
};

/* "ok", "unknown_ca", ... (snake case, stable: scripts and dashboards use them). */
const char *kg_reason_str(enum kg_reason r);
/* One sentence for operators: what happened and what the device saw (docs/reasons.md is
 * generated from it by `ktlsgate reasons --markdown`, so the two cannot drift). */
const char *kg_reason_desc(enum kg_reason r);

#endif
