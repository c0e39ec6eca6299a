/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * cli_verify.c - `ktlsgate verify CERT`: would the daemon let this device in? Runs the
 * daemon's own checks offline: kg_verify_peer() against the registry's CAs (plus the
 * config's CRLs) with the registry's thumbprint pins, then kg_policy_decide() on the
 * device and CA rows, exactly as the connection path does (conn.c st_policy). With
 * --ca FILE only that file's certificates are trusted and no registry is read.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509_vfy.h>

#include "cli/cli.h"
#include "ops/err.h"
#include "cli/pki.h"
#include "policy/policy.h"
#include "tls/verify.h"

/* --ca mode: nothing is pinned. */
static int no_thumb_lookup(void *arg, const char *thumb_hex, struct kg_device *dev)
{
	(void)arg;
	(void)thumb_hex;
	(void)dev;
	return KG_E_NOTFOUND;
}

/* Trust exactly the certificates of `file`, as verified CAs "cli-ca-1", ... */
static int trust_from_file(struct kg_trust *t, const char *file)
{
	char err[KG_ERRBUF] = "";
	STACK_OF(X509) *certs;
	int i, rc = KG_EXIT_OK;

	certs = kg_pem_read_chain(file, err, sizeof(err));
	if (certs == NULL || sk_X509_num(certs) == 0) {
		kg_cli_err("verify: --ca %s: %s", file, err[0] != '\0' ? err : "no certificate");
		sk_X509_pop_free(certs, X509_free);
		return KG_EXIT_RUNTIME;
	}
	for (i = 0; i < sk_X509_num(certs) && rc == KG_EXIT_OK; i++) {
		struct kg_ca ca = { .verified = true };

		snprintf(ca.name, sizeof(ca.name), "cli-ca-%d", i + 1);
		if (kg_cli_ca_from_cert(sk_X509_value(certs, i), &ca) != 0) {
			kg_cli_err("verify: --ca %s: cannot read certificate %d", file, i + 1);
			rc = KG_EXIT_RUNTIME;
		} else if (kg_trust_add_ca(t, &ca, err, sizeof(err)) != 0) {
			kg_cli_err("verify: --ca %s: %s", file, err);
			rc = KG_EXIT_RUNTIME;
		}
		kg_ca_fini(&ca);
	}
	sk_X509_pop_free(certs, X509_free);
	return rc;
}

static void chain_detail(enum kg_reason r, int xerr, const struct kg_identity *id, char *buf,
			 size_t cap)
{
	switch (r) {
	case KG_REASON_BAD_IDENTITY:
		snprintf(buf, cap, "leaf CN is not a valid device id");
		break;
	case KG_REASON_THUMBPRINT_MISMATCH:
		snprintf(buf, cap, "sha256 %s pins no device named %s", id->thumbprint,
			 id->device_id[0] != '\0' ? id->device_id : "?");
		break;
	case KG_REASON_UNKNOWN_CA:
		snprintf(buf, cap, "chain reaches no registered CA");
		break;
	case KG_REASON_UNPROVEN_CA:
		snprintf(buf, cap, "CA %s has not proven possession",
			 id->ca_name[0] != '\0' ? id->ca_name : "?");
		break;
	case KG_REASON_CRL_EXPIRED:
		snprintf(buf, cap, "%s: CRL of CA %s, nextUpdate %lld, past crl_grace",
			 X509_verify_cert_error_string(xerr), id->ca_name[0] != '\0' ? id->ca_name : "?",
			 (long long)id->crl_next_update);
		break;
	default:
		/* Chain failures: OpenSSL's words for the X509_V_ERR_* the alert carries. */
		snprintf(buf, cap, "%s",
			 xerr != X509_V_OK ? X509_verify_cert_error_string(xerr) : kg_reason_str(r));
		break;
	}
}

static void policy_detail(const struct kg_verdict *v, const struct kg_identity *id,
			  const struct kg_device *dev, const struct kg_ca *ca, char *buf, size_t cap)
{
	switch (v->reason) {
	case KG_REASON_UNKNOWN_DEVICE:
		snprintf(buf, cap, "device %s is not registered", id->device_id);
		break;
	case KG_REASON_DISABLED:
	case KG_REASON_SUSPENDED:
	case KG_REASON_QUARANTINED:
	case KG_REASON_DECOMMISSIONED:
		snprintf(buf, cap, "device %s status %s", id->device_id,
			 dev != NULL ? kg_device_status_str(dev->status) : "?");
		break;
	case KG_REASON_ATTESTATION_MISMATCH:
		snprintf(buf, cap, "device %s enrolled by %s%s%s, certificate authenticated by %s%s%s",
			 id->device_id, dev != NULL ? kg_attestation_str(dev->attestation) : "?",
			 dev != NULL && dev->ca_name[0] != '\0' ? " " : "",
			 dev != NULL ? dev->ca_name : "", kg_attestation_str(id->method),
			 id->ca_name[0] != '\0' ? " " : "", id->ca_name);
		break;
	case KG_REASON_CA_DISABLED:
		/* The status is the effective one: a CA above this one may be the cause. */
		snprintf(buf, cap, "CA %s (or a registered CA above it) is %s", id->ca_name,
			 ca != NULL ? kg_ca_status_str(ca->status) : "not enabled");
		break;
	case KG_REASON_NO_BACKEND:
		snprintf(buf, cap, "backend %s is not configured",
			 v->backend[0] != '\0' ? v->backend : "(none)");
		break;
	default:
		snprintf(buf, cap, "%s", kg_reason_str(v->reason));
		break;
	}
}

static void print_accepted(const struct kg_identity *id, const char *backend, const char *note)
{
	printf("accepted: device=%s method=%s ca=%s backend=%s%s\n", id->device_id,
	       kg_attestation_str(id->method), id->ca_name[0] != '\0' ? id->ca_name : "-",
	       backend != NULL && backend[0] != '\0' ? backend : "-", note);
}

/* The registry half: device row, the CA row from the trust (its status folded down the
 * registered CA chain), then the policy, as conn.c st_policy(). */
static int decide(struct kg_cli *cli, struct kg_registry *reg, const struct kg_trust *trust,
		  const struct kg_identity *id)
{
	struct kg_policy_input in = { .id = id, .cfg = cli->cfg };
	struct kg_verdict v;
	struct kg_device dev;
	char detail[512];
	int rc;

	rc = kg_registry_device_get(reg, id->device_id, &dev);
	if (rc == 0) {
		in.device = &dev;
	} else if (rc != KG_E_NOTFOUND) {
		kg_cli_err("registry %s: device %s: %s", cli->registry_shown, id->device_id, kg_err_str(rc));
		return KG_EXIT_RUNTIME;
	}
	if (id->method == KG_ATT_CA && id->ca_name[0] != '\0')
		in.ca = kg_trust_get0_ca(trust, id->ca_name);
	kg_policy_decide(&in, &v);
	if (v.allow) {
		print_accepted(id, v.backend, v.enroll ? " (would be enrolled)" : "");
		rc = KG_EXIT_OK;
	} else if (v.reason == KG_REASON_NO_BACKEND && !cli->cfg_from_file) {
		/* Backends live in the config; without one, that last check cannot be made.
		 * Everything before it passed (policy.c: backend resolution is last). */
		print_accepted(id, v.backend,
			       in.device == NULL ? " (would be enrolled; backend not checked: no config)"
						 : " (backend not checked: no config)");
		rc = KG_EXIT_OK;
	} else {
		policy_detail(&v, id, in.device, in.ca, detail, sizeof(detail));
		printf("refused: %s (%s)\n", kg_reason_str(v.reason), detail);
		rc = KG_EXIT_REFUSED;
	}
	return rc;
}

int kg_cli_verify(struct kg_cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "chain", required_argument, NULL, 'C' },
		{ "ca", required_argument, NULL, 'a' },
		{ "at", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *chain_file = NULL, *ca_file = NULL, *cert_file;
	STACK_OF(X509) *untrusted = NULL, *extra = NULL;
	struct kg_registry *reg = NULL;
	struct kg_trust *trust = NULL;
	struct kg_identity id;
	char err[KG_ERRBUF] = "", detail[512];
	enum kg_reason r;
	int64_t at = 0;
	X509 *leaf = NULL;
	int c, rc, xerr = X509_V_OK;

	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		switch (c) {
		case 'C':
			chain_file = optarg;
			break;
		case 'a':
			ca_file = optarg;
			break;
		case 't':
			if (kg_cli_parse_i64(optarg, 1, INT64_MAX, &at) != 0)
				return kg_cli_usage_err("verify: --at wants unix seconds > 0, not '%s'",
							optarg);
			break;
		case 'h':
			fputs(kg_cli_usage_verify, stdout);
			return KG_EXIT_OK;
		default:
			return kg_cli_bad_option(c, argv, "verify");
		}
	}
	if (argc - optind != 1)
		return kg_cli_usage_err("verify: expected one CERT file");
	cert_file = argv[optind];
	if ((rc = kg_cli_setup(cli, ca_file == NULL)) != KG_EXIT_OK)
		return rc;

	/* CERT is the leaf, optionally followed by the chain it would send. */
	untrusted = kg_pem_read_chain(cert_file, err, sizeof(err));
	if (untrusted == NULL || sk_X509_num(untrusted) == 0) {
		kg_cli_err("verify: %s: %s", cert_file, err[0] != '\0' ? err : "no certificate");
		rc = KG_EXIT_RUNTIME;
		goto out;
	}
	leaf = sk_X509_shift(untrusted);
	if (chain_file != NULL) {
		extra = kg_pem_read_chain(chain_file, err, sizeof(err));
		if (extra == NULL) {
			kg_cli_err("verify: --chain %s: %s", chain_file, err[0] != '\0' ? err : "unreadable");
			rc = KG_EXIT_RUNTIME;
			goto out;
		}
		while (sk_X509_num(extra) > 0) {
			X509 *x = sk_X509_shift(extra);

			if (!sk_X509_push(untrusted, x)) {
				X509_free(x);
				kg_cli_err("out of memory");
				rc = KG_EXIT_RUNTIME;
				goto out;
			}
		}
	}

	trust = kg_trust_new();
	if (trust == NULL) {
		kg_cli_err("out of memory");
		rc = KG_EXIT_RUNTIME;
		goto out;
	}
	if (ca_file != NULL) {
		/* Same floor as the daemon's: the config's level (or the default). */
		kg_trust_set_policy(trust, (int)cli->cfg->security_level, (int64_t)cli->cfg->crl_grace);
		if ((rc = trust_from_file(trust, ca_file)) != KG_EXIT_OK)
			goto out;
	} else {
		if ((rc = kg_cli_open_registry(cli, KG_REG_READONLY, true, &reg)) != KG_EXIT_OK)
			goto out;
		if (kg_trust_load(trust, reg, cli->cfg, err, sizeof(err)) != 0) {
			kg_cli_err("verify: %s", err[0] != '\0' ? err : "cannot load trust");
			rc = KG_EXIT_RUNTIME;
			goto out;
		}
	}

	memset(&id, 0, sizeof(id));
	r = kg_verify_peer(trust, leaf, untrusted, (time_t)at,
			   reg != NULL ? kg_verify_registry_thumb_lookup : no_thumb_lookup, reg, &id,
			   &xerr);
	ERR_clear_error();
	if (r == KG_REASON_OK && id.crl_grace_ca[0] != '\0')
		printf("warning: the CRL of CA %s expired (nextUpdate %lld): accepted within "
		       "crl_grace only\n", id.crl_grace_ca, (long long)id.crl_next_update);
	if (r != KG_REASON_OK) {
		chain_detail(r, xerr, &id, detail, sizeof(detail));
		printf("refused: %s (%s)\n", kg_reason_str(r), detail);
		rc = KG_EXIT_REFUSED;
	} else if (reg == NULL) {
		print_accepted(&id, NULL, "");
		rc = KG_EXIT_OK;
	} else {
		rc = decide(cli, reg, trust, &id);
	}

out:
	kg_registry_close(reg);
	kg_trust_free(trust);
	sk_X509_pop_free(extra, X509_free);
	sk_X509_pop_free(untrusted, X509_free);
	X509_free(leaf);
	return rc;
}
