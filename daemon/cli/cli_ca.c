/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * cli_ca.c - `ktlsgate ca ...`: register device-issuing CAs, prove possession of
 * their keys (challenge + verification certificate, as Azure DPS does), list, change
 * and remove them. A CA is stored unverified and authenticates nobody until `ca
 * verify` succeeds; every change is announced to the daemon ("ca-changed NAME").
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "cli/cli.h"
#include "ops/err.h"
#include "cli/pki.h"
#include "tls/verify.h"

int kg_cli_ca_from_cert(X509 *x, struct kg_ca *ca)
{
	BIO *bio = BIO_new(BIO_s_mem());
	char *data;
	long len;
	int rc = -1;

	if (bio == NULL)
		return -1;
	if (kg_cert_sha256_hex(x, ca->sha256) != 0)
		goto out_free_bio;
	if (X509_NAME_print_ex(bio, X509_get_subject_name(x), 0, XN_FLAG_RFC2253) < 0)
		goto out_free_bio;
	len = BIO_get_mem_data(bio, &data);
	snprintf(ca->subject, sizeof(ca->subject), "%.*s", (int)len, data);
	ca->not_after = kg_cli_asn1_time(X509_get0_notAfter(x));
	if (ca->pem == NULL) {
		(void)BIO_reset(bio);
		if (!PEM_write_bio_X509(bio, x))
			goto out_free_bio;
		len = BIO_get_mem_data(bio, &data);
		ca->pem = malloc((size_t)len + 1);
		if (ca->pem == NULL)
			goto out_free_bio;
		memcpy(ca->pem, data, (size_t)len);
		ca->pem[len] = '\0';
	}
	rc = 0;
out_free_bio:
	BIO_free(bio);
	ERR_clear_error();
	return rc;
}

/* Default CA name: the subject CN with everything outside [A-Za-z0-9._-] made '-'. */
static int name_from_cn(X509 *x, char out[KG_NAME_MAX])
{
	X509_NAME *subj = X509_get_subject_name(x);
	const unsigned char *s;
	const ASN1_STRING *cn;
	int idx, i, len;

	idx = X509_NAME_get_index_by_NID(subj, NID_commonName, -1);
	if (idx < 0)
		return -1;
	cn = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, idx));
	s = ASN1_STRING_get0_data(cn);
	len = ASN1_STRING_length(cn);
	if (len <= 0)
		return -1;
	if (len > KG_NAME_MAX - 1)
		len = KG_NAME_MAX - 1;
	for (i = 0; i < len; i++) {
		unsigned char ch = s[i];

		out[i] = (char)((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
						(ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-'
					? ch
					: '-');
	}
	out[i] = '\0';
	return 0;
}

static int check_backend_arg(const char *cmd, const char *b)
{
	if (b != NULL && b[0] != '\0' && !kg_cli_name_valid(b))
		return kg_cli_usage_err("%s: bad backend name '%s' (1..63 of A-Z a-z 0-9 . _ -)", cmd, b);
	return KG_EXIT_OK;
}

/*
 * --username-check WORD: a rule of its own for the CA (*set true) or `default`, back
 * to [daemon] username_check (*set false). A usage error names the words.
 */
static int username_check_arg(const char *cmd, const char *arg, bool *set,
			      enum kg_username_check *mode)
{
	if (strcmp(arg, "default") == 0) {
		*set = false;
		*mode = KG_USERNAME_STRICT;
		return KG_EXIT_OK;
	}
	if (kg_username_check_parse(arg, mode) != 0)
		return kg_cli_usage_err("%s: --username-check wants strict|rewrite|pass|default,"
					" not '%s'", cmd, arg);
	*set = true;
	return KG_EXIT_OK;
}

/* What a list shows for a CA's rule: its own, or "default" (the config's). */
static const char *ca_username_check_str(const struct kg_ca *ca)
{
	return ca->has_username_check ? kg_username_check_str(ca->username_check) : "default";
}

static int ca_add(struct kg_cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "name", required_argument, NULL, 'n' },
		{ "backend", required_argument, NULL, 'b' },
		{ "auto-enroll", no_argument, NULL, 'A' },
		{ "username-check", required_argument, NULL, 'U' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *name = NULL, *backend = NULL, *file;
	struct kg_registry *reg = NULL;
	struct kg_ca ca = { 0 };
	char err[KG_ERRBUF] = "", text[128];
	X509 *cert = NULL;
	int c, rc;

	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		switch (c) {
		case 'n':
			name = optarg;
			break;
		case 'b':
			backend = optarg;
			break;
		case 'A':
			ca.auto_enroll = true;
			break;
		case 'U':
			if ((rc = username_check_arg("ca add", optarg, &ca.has_username_check,
						     &ca.username_check)) != KG_EXIT_OK)
				return rc;
			break;
		case 'h':
			fputs(kg_cli_usage_ca, stdout);
			return KG_EXIT_OK;
		default:
			return kg_cli_bad_option(c, argv, "ca add");
		}
	}
	if (argc - optind != 1)
		return kg_cli_usage_err("ca add: exactly one certificate FILE expected");
	file = argv[optind];
	if (name != NULL && !kg_cli_name_valid(name))
		return kg_cli_usage_err("ca add: bad name '%s' (1..63 of A-Z a-z 0-9 . _ -)", name);
	if ((rc = check_backend_arg("ca add", backend)) != KG_EXIT_OK)
		return rc;
	if ((rc = kg_cli_setup(cli, true)) != KG_EXIT_OK)
		return rc;
	if ((rc = kg_cli_check_backend_configured(cli, "ca add", backend)) != KG_EXIT_OK)
		return rc;

	if (access(file, R_OK) != 0) {
		kg_cli_err("ca add: %s: %s", file, strerror(errno));
		return KG_EXIT_RUNTIME;
	}
	/* Refuses a file holding a private key: it must never reach the registry. */
	if (kg_pem_read_cert_only(file, &cert, &ca.pem, err, sizeof(err)) != 0) {
		kg_cli_err("ca add: %s", err[0] != '\0' ? err : file);
		rc = KG_EXIT_REFUSED;
		goto out;
	}
	if (X509_check_ca(cert) == 0) {
		kg_cli_err("ca add: %s is not a CA certificate", file);
		rc = KG_EXIT_REFUSED;
		goto out_free_cert;
	}
	if (name != NULL)
		(void)kg_strlcpy(ca.name, name, sizeof(ca.name));
	else if (name_from_cn(cert, ca.name) != 0) {
		rc = kg_cli_usage_err("ca add: %s has no subject CN; give --name", file);
		goto out_free_cert;
	}
	if (backend != NULL)
		(void)kg_strlcpy(ca.backend, backend, sizeof(ca.backend));
	ca.added_at = (int64_t)time(NULL);
	if (kg_cli_ca_from_cert(cert, &ca) != 0) {
		kg_cli_err("ca add: %s: cannot read the certificate", file);
		rc = KG_EXIT_RUNTIME;
		goto out_free_cert;
	}

	if ((rc = kg_cli_open_registry(cli, KG_REG_READWRITE, false, &reg)) != KG_EXIT_OK)
		goto out_free_cert;
	rc = kg_registry_ca_add(reg, &ca);
	if (rc == KG_E_EXISTS) {
		kg_cli_err("ca %s: a CA with this name or certificate is already registered", ca.name);
		rc = KG_EXIT_REFUSED;
		goto out_close;
	}
	if (rc != 0) {
		kg_cli_err("ca %s: cannot add: %s", ca.name, kg_registry_strerror(reg, rc));
		rc = kg_cli_exit_for(rc);
		goto out_close;
	}
	printf("ca %s added (unverified)\nchallenge: %s\n", ca.name, ca.challenge);
	fflush(stdout);
	/* An unverified CA authenticates nobody, but the daemon learns it so that its
	 * devices are refused as unproven_ca rather than unknown_ca. */
	rc = kg_cli_notify(cli, "ca-changed", ca.name, text, sizeof(text));
	rc = rc == KG_EXIT_RUNTIME ? KG_EXIT_RUNTIME : KG_EXIT_OK;

out_close:
	kg_registry_close(reg);
out_free_cert:
	X509_free(cert);
out:
	kg_ca_fini(&ca);
	return rc;
}

static X509 *pem_to_x509(const char *pem)
{
	BIO *bio = BIO_new_mem_buf(pem, -1);
	X509 *x = NULL;

	if (bio != NULL)
		x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
	BIO_free(bio);
	ERR_clear_error();
	return x;
}

/* One positional NAME and only --help: shared by verify (plus CERT) and remove. */
static int positional_only(int argc, char **argv, const char *cmd, int want)
{
	static const struct option opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		if (c == 'h') {
			fputs(kg_cli_usage_ca, stdout);
			return -1;
		}
		return kg_cli_bad_option(c, argv, cmd);
	}
	if (argc - optind != want)
		return kg_cli_usage_err("%s: expected %s", cmd, want == 1 ? "NAME" : "NAME CERT");
	return KG_EXIT_OK;
}

static int ca_verify(struct kg_cli *cli, int argc, char **argv)
{
	struct kg_registry *reg = NULL;
	const char *name, *file;
	struct kg_ca ca = { 0 };
	char err[KG_ERRBUF] = "", text[128];
	X509 *cax = NULL, *vcert = NULL;
	int rc;

	rc = positional_only(argc, argv, "ca verify", 2);
	if (rc != KG_EXIT_OK)
		return rc < 0 ? KG_EXIT_OK : rc;
	name = argv[optind];
	file = argv[optind + 1];
	if (!kg_cli_name_valid(name))
		return kg_cli_usage_err("ca verify: bad CA name '%s'", name);
	if ((rc = kg_cli_setup(cli, true)) != KG_EXIT_OK)
		return rc;
	if ((rc = kg_cli_open_registry(cli, KG_REG_READWRITE, true, &reg)) != KG_EXIT_OK)
		return rc;
	rc = kg_registry_ca_get(reg, name, &ca);
	if (rc != 0) {
		kg_cli_err("ca %s: %s", name, rc == KG_E_NOTFOUND ? "no such CA" : kg_registry_strerror(reg, rc));
		rc = kg_cli_exit_for(rc);
		goto out_close;
	}
	if (ca.verified) {
		printf("ca %s verified\n", ca.name);
		rc = KG_EXIT_OK;
		goto out_fini;
	}
	cax = pem_to_x509(ca.pem);
	if (cax == NULL) {
		kg_cli_err("ca %s: stored certificate does not parse", name);
		rc = KG_EXIT_RUNTIME;
		goto out_fini;
	}
	vcert = kg_pem_read_cert(file, err, sizeof(err));
	if (vcert == NULL) {
		kg_cli_err("ca %s: %s", name, err[0] != '\0' ? err : file);
		rc = access(file, R_OK) != 0 ? KG_EXIT_RUNTIME : KG_EXIT_REFUSED;
		goto out_free_ca;
	}
	if (kg_pki_check_verification(cax, vcert, ca.challenge, err, sizeof(err)) != 0) {
		kg_cli_err("ca %s: verification failed: %s", name, err[0] != '\0' ? err : "rejected");
		rc = KG_EXIT_REFUSED;
		goto out_free_vcert;
	}
	rc = kg_registry_ca_set_verified(reg, name);
	if (rc != 0) {
		kg_cli_err("ca %s: cannot mark verified: %s", name, kg_registry_strerror(reg, rc));
		rc = kg_cli_exit_for(rc);
		goto out_free_vcert;
	}
	printf("ca %s verified\n", name);
	fflush(stdout);
	rc = kg_cli_notify(cli, "ca-changed", name, text, sizeof(text));
	rc = rc == KG_EXIT_RUNTIME ? KG_EXIT_RUNTIME : KG_EXIT_OK;

out_free_vcert:
	X509_free(vcert);
out_free_ca:
	X509_free(cax);
out_fini:
	kg_ca_fini(&ca);
out_close:
	kg_registry_close(reg);
	return rc;
}

struct list_ctx {
	struct json_object *arr;  /* --json, else a table */
	int err;
};

static int list_one(const struct kg_ca *ca, void *arg)
{
	struct list_ctx *lc = arg;
	char na[32];
	struct json_object *o;

	if (lc->arr == NULL) {
		kg_cli_fmt_time(ca->not_after, na, sizeof(na));
		printf("%-20s %-8s %-8s %-12s %-11s %-14s %-20s %s %s\n", ca->name,
		       ca->verified ? "yes" : "no", kg_ca_status_str(ca->status),
		       ca->backend[0] != '\0' ? ca->backend : "-", ca->auto_enroll ? "on" : "off",
		       ca_username_check_str(ca), na, ca->sha256, ca->subject);
		return 0;
	}
	o = json_object_new_object();
	if (o == NULL) {
		lc->err = 1;
		return 1;
	}
	json_object_object_add(o, "name", json_object_new_string(ca->name));
	json_object_object_add(o, "verified", json_object_new_boolean(ca->verified));
	json_object_object_add(o, "status", json_object_new_string(kg_ca_status_str(ca->status)));
	json_object_object_add(o, "backend", kg_cli_json_str_or_null(ca->backend));
	json_object_object_add(o, "auto_enroll", json_object_new_boolean(ca->auto_enroll));
	/* null: the CA follows [daemon] username_check. */
	json_object_object_add(o, "username_check",
			       ca->has_username_check
				       ? json_object_new_string(kg_username_check_str(ca->username_check))
				       : NULL);
	json_object_object_add(o, "subject", json_object_new_string(ca->subject));
	json_object_object_add(o, "not_after", json_object_new_int64(ca->not_after));
	json_object_object_add(o, "sha256", json_object_new_string(ca->sha256));
	json_object_object_add(o, "added_at", json_object_new_int64(ca->added_at));
	/* The pending challenge, so a lost `ca add` output can be recovered. */
	json_object_object_add(o, "challenge",
			       ca->verified ? NULL : kg_cli_json_str_or_null(ca->challenge));
	json_object_array_add(lc->arr, o);
	return 0;
}

static int ca_list(struct kg_cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct list_ctx lc = { 0 };
	struct kg_registry *reg = NULL;
	bool json = false;
	int c, rc;

	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		switch (c) {
		case 'j':
			json = true;
			break;
		case 'h':
			fputs(kg_cli_usage_ca, stdout);
			return KG_EXIT_OK;
		default:
			return kg_cli_bad_option(c, argv, "ca list");
		}
	}
	if (optind < argc)
		return kg_cli_usage_err("ca list: unexpected argument '%s'", argv[optind]);
	if ((rc = kg_cli_setup(cli, true)) != KG_EXIT_OK)
		return rc;
	if ((rc = kg_cli_open_registry(cli, KG_REG_READONLY, true, &reg)) != KG_EXIT_OK)
		return rc;
	if (json) {
		lc.arr = json_object_new_array();
		if (lc.arr == NULL) {
			kg_cli_err("out of memory");
			rc = KG_EXIT_RUNTIME;
			goto out_close;
		}
	} else {
		printf("%-20s %-8s %-8s %-12s %-11s %-14s %-20s %-64s %s\n", "NAME", "VERIFIED",
		       "STATUS", "BACKEND", "AUTO-ENROLL", "USERNAME-CHECK", "NOT-AFTER", "SHA256",
		       "SUBJECT");
	}
	rc = kg_registry_ca_list(reg, list_one, &lc);
	if (rc != 0 || lc.err != 0) {
		kg_cli_err("registry %s: cannot list CAs: %s", cli->registry_shown,
			   rc != 0 ? kg_registry_strerror(reg, rc) : "out of memory");
		json_object_put(lc.arr);
		rc = KG_EXIT_RUNTIME;
		goto out_close;
	}
	if (json)
		kg_cli_json_print(lc.arr);
	rc = KG_EXIT_OK;
out_close:
	kg_registry_close(reg);
	return rc;
}

static int ca_set(struct kg_cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "backend", required_argument, NULL, 'b' },
		{ "auto-enroll", required_argument, NULL, 'A' },
		{ "status", required_argument, NULL, 'S' },
		{ "username-check", required_argument, NULL, 'U' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *backend = NULL, *name;
	struct kg_registry *reg = NULL;
	struct kg_ca ca = { 0 };
	enum kg_ca_status status = KG_CA_ENABLED;
	enum kg_username_check uc = KG_USERNAME_STRICT;
	bool set_status = false, set_uc = false, has_uc = false;
	char text[128], changes[256] = "";
	int auto_enroll = -1, c, rc;

	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		switch (c) {
		case 'b':
			backend = optarg;
			break;
		case 'A':
			if (strcmp(optarg, "on") == 0)
				auto_enroll = 1;
			else if (strcmp(optarg, "off") == 0)
				auto_enroll = 0;
			else
				return kg_cli_usage_err("ca set: --auto-enroll wants on|off, not '%s'",
							optarg);
			break;
		case 'S':
			if (kg_ca_status_parse(optarg, &status) != 0)
				return kg_cli_usage_err("ca set: --status wants enabled|disabled|revoked,"
							" not '%s'", optarg);
			set_status = true;
			break;
		case 'U':
			if ((rc = username_check_arg("ca set", optarg, &has_uc, &uc)) != KG_EXIT_OK)
				return rc;
			set_uc = true;
			break;
		case 'h':
			fputs(kg_cli_usage_ca, stdout);
			return KG_EXIT_OK;
		default:
			return kg_cli_bad_option(c, argv, "ca set");
		}
	}
	if (argc - optind != 1)
		return kg_cli_usage_err("ca set: expected NAME");
	name = argv[optind];
	if (!kg_cli_name_valid(name))
		return kg_cli_usage_err("ca set: bad CA name '%s'", name);
	if (backend == NULL && auto_enroll < 0 && !set_status && !set_uc)
		return kg_cli_usage_err("ca set: nothing to change (give --backend, --auto-enroll,"
					" --status or --username-check)");
	if ((rc = check_backend_arg("ca set", backend)) != KG_EXIT_OK)
		return rc;
	if ((rc = kg_cli_setup(cli, true)) != KG_EXIT_OK)
		return rc;
	if ((rc = kg_cli_check_backend_configured(cli, "ca set", backend)) != KG_EXIT_OK)
		return rc;
	if ((rc = kg_cli_open_registry(cli, KG_REG_READWRITE, true, &reg)) != KG_EXIT_OK)
		return rc;
	rc = kg_registry_ca_get(reg, name, &ca);
	if (rc != 0) {
		kg_cli_err("ca %s: %s", name, rc == KG_E_NOTFOUND ? "no such CA" : kg_registry_strerror(reg, rc));
		rc = kg_cli_exit_for(rc);
		goto out_close;
	}
	if (backend != NULL) {
		(void)kg_strlcpy(ca.backend, backend, sizeof(ca.backend));
		snprintf(changes, sizeof(changes), "backend %s", backend[0] != '\0' ? backend : "-");
	}
	if (auto_enroll >= 0) {
		ca.auto_enroll = auto_enroll == 1;
		snprintf(changes + strlen(changes), sizeof(changes) - strlen(changes),
			 "%sauto-enroll %s", changes[0] != '\0' ? ", " : "", ca.auto_enroll ? "on" : "off");
	}
	if (set_status) {
		/* A revoked CA's key is presumed compromised: no way back (AWS IoT's REVOKED).
		 * Re-adding the certificate under a new name is a deliberate act. */
		if (ca.status == KG_CA_REVOKED && status != KG_CA_REVOKED) {
			kg_cli_err("ca %s: revoked is final (remove it and add it again to trust it)",
				   name);
			rc = KG_EXIT_REFUSED;
			goto out_fini;
		}
		ca.status = status;
		snprintf(changes + strlen(changes), sizeof(changes) - strlen(changes), "%sstatus %s",
			 changes[0] != '\0' ? ", " : "", kg_ca_status_str(status));
	}
	if (set_uc) {
		ca.has_username_check = has_uc;
		ca.username_check = uc;
		snprintf(changes + strlen(changes), sizeof(changes) - strlen(changes),
			 "%susername-check %s", changes[0] != '\0' ? ", " : "",
			 ca_username_check_str(&ca));
	}
	rc = kg_registry_ca_update(reg, &ca);
	if (rc != 0) {
		kg_cli_err("ca %s: cannot update: %s", name, kg_registry_strerror(reg, rc));
		rc = kg_cli_exit_for(rc);
		goto out_fini;
	}
	rc = kg_cli_notify(cli, "ca-changed", name, text, sizeof(text));
	printf("ca %s: %s (%s)\n", name, changes, text);
	rc = rc == KG_EXIT_RUNTIME ? KG_EXIT_RUNTIME : KG_EXIT_OK;
out_fini:
	kg_ca_fini(&ca);
out_close:
	kg_registry_close(reg);
	return rc;
}

static int ca_remove(struct kg_cli *cli, int argc, char **argv)
{
	struct kg_registry *reg = NULL;
	const char *name;
	char text[128];
	int rc;

	rc = positional_only(argc, argv, "ca remove", 1);
	if (rc != KG_EXIT_OK)
		return rc < 0 ? KG_EXIT_OK : rc;
	name = argv[optind];
	if (!kg_cli_name_valid(name))
		return kg_cli_usage_err("ca remove: bad CA name '%s'", name);
	if ((rc = kg_cli_setup(cli, true)) != KG_EXIT_OK)
		return rc;
	if ((rc = kg_cli_open_registry(cli, KG_REG_READWRITE, true, &reg)) != KG_EXIT_OK)
		return rc;
	rc = kg_registry_ca_remove(reg, name);
	if (rc != 0)
		kg_cli_err("ca %s: %s", name,
			   rc == KG_E_NOTFOUND ? "no such CA"
			   : rc == KG_E_EXISTS ? "devices are enrolled under it: remove them first"
					       : kg_registry_strerror(reg, rc));
	kg_registry_close(reg);
	if (rc != 0)
		return kg_cli_exit_for(rc);
	rc = kg_cli_notify(cli, "ca-changed", name, text, sizeof(text));
	printf("ca %s removed (%s)\n", name, text);
	return rc == KG_EXIT_RUNTIME ? KG_EXIT_RUNTIME : KG_EXIT_OK;
}

int kg_cli_ca(struct kg_cli *cli, int argc, char **argv)
{
	static const struct kg_cli_verb verbs[] = {
		{ "add", ca_add },       { "verify", ca_verify }, { "list", ca_list },
		{ "set", ca_set },       { "remove", ca_remove }, { NULL, NULL },
	};

	return kg_cli_dispatch(cli, argc, argv, verbs, kg_cli_usage_ca);
}
