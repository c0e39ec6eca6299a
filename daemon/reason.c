/* SPDX-License-Identifier: BSD-2-Clause */
/* reason.c - the one string table for enum kg_reason (audit lines, metric labels). */
#include <stddef.h>

#include "ktlsgate/reason.h"

static const char *const reason_names[KG_REASON_MAX] = {
	[KG_REASON_OK] = "ok",
	[KG_REASON_ENROLLED] = "enrolled",
	[KG_REASON_NO_CERT] = "no_cert",
	[KG_REASON_UNKNOWN_CA] = "unknown_ca",
	[KG_REASON_UNPROVEN_CA] = "unproven_ca",
	[KG_REASON_CERT_EXPIRED] = "cert_expired",
	[KG_REASON_CERT_NOT_YET_VALID] = "cert_not_yet_valid",
	[KG_REASON_CERT_REVOKED] = "cert_revoked",
	[KG_REASON_BAD_EKU] = "bad_eku",
	[KG_REASON_BAD_CHAIN] = "bad_chain",
	[KG_REASON_THUMBPRINT_MISMATCH] = "thumbprint_mismatch",
	[KG_REASON_BAD_IDENTITY] = "bad_identity",
	[KG_REASON_TLS_FAILED] = "tls_failed",
	[KG_REASON_UNKNOWN_DEVICE] = "unknown_device",
	[KG_REASON_DISABLED] = "disabled",
	[KG_REASON_SUSPENDED] = "suspended",
	[KG_REASON_QUARANTINED] = "quarantined",
	[KG_REASON_DECOMMISSIONED] = "decommissioned",
	[KG_REASON_ATTESTATION_MISMATCH] = "attestation_mismatch",
	[KG_REASON_NO_BACKEND] = "no_backend",
	[KG_REASON_CLIENT_ID_MISMATCH] = "client_id_mismatch",
	[KG_REASON_BACKEND_DOWN] = "backend_down",
	[KG_REASON_BAD_MQTT] = "bad_mqtt",
	[KG_REASON_TIMEOUT] = "timeout",
	[KG_REASON_REVOKED] = "revoked",
	[KG_REASON_KILLED] = "killed",
	[KG_REASON_PEER_CLOSED] = "peer_closed",
	[KG_REASON_BACKEND_CLOSED] = "backend_closed",
	[KG_REASON_IO_ERROR] = "io_error",
	[KG_REASON_OVERLOAD] = "overload",
	[KG_REASON_SHUTDOWN] = "shutdown",
	[KG_REASON_KEY_UPDATE] = "tls_key_update",
};

const char *kg_reason_str(enum kg_reason r)
{
	if ((unsigned)r >= KG_REASON_MAX || reason_names[r] == NULL)
		return "unknown";
	return reason_names[r];
}
