/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * cli_device.c - `ktlsgate device ...`: provision devices (by CA or by pinned
 * thumbprint), change their status / backend / thumbprints, show, list, find those
 * whose certificate expires soon, remove; devices with a secret instead (--auth
 * sas|token|basic, made and shown by cli_credentials.c). Every write is followed by "device-changed
 * ID" to the daemon so that live sessions of a device that may no longer connect are
 * closed at once; the daemon's answer is reported on the same output line.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "cli/cli.h"
#include "cli/cli_credentials.h"
#include "ops/err.h"
#include "cli/pki.h"
#include "tls/verify.h"

static int parse_status(const char *cmd, const char *s, enum kg_device_status *out)
{
	if (kg_device_status_parse(s, out) != 0)
		return kg_cli_usage_err("%s: bad status '%s' (enabled|disabled|suspended|quarantined|decommissioned)",
					cmd, s);
	return KG_EXIT_OK;
}

static int parse_thumb(const char *cmd, const char *opt, const char *s, char *out)
{
	if (kg_cli_parse_thumb(s, out) != 0)
		return kg_cli_usage_err("%s: %s wants 64 hex digits (or AB:CD:... pairs), not '%s'", cmd,
					opt, s);
	return KG_EXIT_OK;
}

static int check_backend(const char *cmd, const char *b)
{
	if (b[0] != '\0' && !kg_cli_name_valid(b))
		return kg_cli_usage_err("%s: bad backend name '%s' (1..63 of A-Z a-z 0-9 . _ -)", cmd, b);
	return KG_EXIT_OK;
}

/* Thumbprint (and notAfter) of a device's own certificate; its CN must be the id,
 * since the daemon only honours a pin for the device the certificate names. */
static int thumb_from_cert(const char *cmd, const char *file, const char *id, char *thumb,
			   int64_t *not_after)
{
	char err[KG_ERRBUF] = "", cn[KG_DEVICE_ID_MAX + 1];
	size_t module_off;
	X509 *x;
	int rc = KG_EXIT_OK;

	x = kg_pem_read_cert(file, err, sizeof(err));
	if (x == NULL) {
		kg_cli_err("%s: %s", cmd, err[0] != '\0' ? err : file);
		return KG_EXIT_RUNTIME;
	}
	if (kg_identity_from_cert(x, cn, sizeof(cn), &module_off) != KG_REASON_OK ||
	    strcmp(cn, id) != 0) {
		kg_cli_err("%s: %s: certificate CN is not the device id '%s'", cmd, file, id);
		rc = KG_EXIT_REFUSED;
	} else if (kg_cert_sha256_hex(x, thumb) != 0) {
		kg_cli_err("%s: %s: cannot hash the certificate", cmd, file);
		rc = KG_EXIT_RUNTIME;
	} else {
		*not_after = kg_cli_asn1_time(X509_get0_notAfter(x));
	}
	X509_free(x);
	return rc;
}

/* Print the secrets `device add` made, once: text lines "LABEL: VALUE" (sas:
 * "primary-key", "secondary-key"), or one JSON object with --json. */
static void print_secrets(const struct kg_device *dev, const struct kg_credential *c,
			  const struct kg_cli_secret *shown, size_t n, bool json)
{
	if (json) {
		struct json_object *o = json_object_new_object(), *arr = json_object_new_array();

		if (o == NULL || arr == NULL) {
			json_object_put(o);
			json_object_put(arr);
			kg_cli_err("out of memory (device %s is stored: rotate its credentials)", dev->id);
			return;
		}
		json_object_object_add(o, "id", json_object_new_string(dev->id));
		json_object_object_add(o, "attestation",
				       json_object_new_string(kg_attestation_str(dev->attestation)));
		for (size_t i = 0; i < n; i++) {
			struct json_object *e = json_object_new_object();

			if (e == NULL || json_object_array_add(arr, e) != 0) {
				json_object_put(e);
				continue;
			}
			kg_cli_secret_json_add(e, &c[i], &shown[i]);
		}
		json_object_object_add(o, "secrets", arr);
		kg_cli_json_print(o);
		return;
	}
	printf("device %s added (attestation %s)\n", dev->id, kg_attestation_str(dev->attestation));
	for (size_t i = 0; i < n; i++)
		kg_cli_secret_print(&c[i], &shown[i]);
}

/*
 * The secrets of a new sas (primary and secondary key), token or basic device (one,
 * in the primary slot). Returns how many, or -exit code after one error line.
 */
static int make_secrets(const char *cmd, const struct kg_device *dev, const char *username,
			bool pw_stdin, struct kg_credential c[2], struct kg_cli_secret shown[2])
{
	char pw[KG_CLI_PASSWORD_MAX + 1] = "";
	int n = dev->attestation == KG_ATT_SAS ? 2 : 1, rc = KG_EXIT_OK;

	if (pw_stdin && (rc = kg_cli_read_password(cmd, pw)) != KG_EXIT_OK)
		return -rc;
	for (int i = 0; i < n && rc == KG_EXIT_OK; i++)
		rc = kg_cli_cred_make(cmd, dev->attestation, (enum kg_cred_slot)i,
				      username != NULL ? username : dev->id, pw_stdin ? pw : NULL, &c[i],
				      &shown[i]);
	OPENSSL_cleanse(pw, sizeof(pw));
	return rc == KG_EXIT_OK ? n : -rc;
}

/* Store a new device's credentials; on failure remove the device again (its
 * credentials go with it), so `device add` is all or nothing. */
static int store_secrets(struct kg_registry *reg, const struct kg_device *dev,
			 const struct kg_credential *c, int n)
{
	int rc = 0;

	for (int i = 0; i < n && rc == 0; i++)
		rc = kg_registry_cred_set(reg, dev->id, &c[i]);
	if (rc == 0)
		return 0;
	kg_cli_err("device %s: cannot store its credentials: %s", dev->id,
		   rc == KG_E_EXISTS ? reg->errmsg : kg_registry_strerror(reg, rc));
	if (kg_registry_device_remove(reg, dev->id) != 0)
		kg_cli_err("device %s: added without credentials, and could not be removed again: remove it",
			   dev->id);
	return rc;
}

static int device_add(struct kg_cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "thumbprint", required_argument, NULL, 't' },
		{ "secondary", required_argument, NULL, 's' },
		{ "cert", required_argument, NULL, 'C' },
		{ "backend", required_argument, NULL, 'b' },
		{ "status", required_argument, NULL, 'S' },
		{ "auth", required_argument, NULL, 'a' },
		{ "username", required_argument, NULL, 'u' },
		{ "password-stdin", no_argument, NULL, 'P' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct kg_device dev = { .status = KG_DEV_ENABLED, .attestation = KG_ATT_CA };
	const char *cert = NULL, *cmd = "device add", *username = NULL;
	struct kg_credential creds[2] = { 0 };
	struct kg_cli_secret shown[2] = { 0 };
	struct kg_registry *reg = NULL;
	bool has_auth = false, pw_stdin = false, json = false;
	enum kg_attestation auth = KG_ATT_CA;
	char text[128];
	int c, rc, nsec = 0;

	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		switch (c) {
		case 't':
			if ((rc = parse_thumb(cmd, "--thumbprint", optarg, dev.thumb_primary)) != 0)
				return rc;
			break;
		case 's':
			if ((rc = parse_thumb(cmd, "--secondary", optarg, dev.thumb_secondary)) != 0)
				return rc;
			break;
		case 'C':
			cert = optarg;
			break;
		case 'b':
			if ((rc = check_backend(cmd, optarg)) != 0)
				return rc;
			(void)kg_strlcpy(dev.backend, optarg, sizeof(dev.backend));
			break;
		case 'S':
			if ((rc = parse_status(cmd, optarg, &dev.status)) != 0)
				return rc;
			break;
		case 'a':
			if (kg_cli_auth_parse(optarg, &auth) != 0)
				return kg_cli_usage_err("%s: bad --auth '%s' (x509|thumbprint|sas|token|basic)",
							cmd, optarg);
			has_auth = true;
			break;
		case 'u':
			username = optarg;
			break;
		case 'P':
			pw_stdin = true;
			break;
		case 'j':
			json = true;
			break;
		case 'h':
			fputs(kg_cli_usage_device, stdout);
			return KG_EXIT_OK;
		default:
			return kg_cli_bad_option(c, argv, cmd);
		}
	}
	if (argc - optind != 1)
		return kg_cli_usage_err("%s: expected one device ID", cmd);
	if ((rc = kg_cli_check_device_id(cmd, argv[optind])) != 0)
		return rc;
	(void)kg_strlcpy(dev.id, argv[optind], sizeof(dev.id));
	if (cert != NULL && dev.thumb_primary[0] != '\0')
		return kg_cli_usage_err("%s: give --thumbprint or --cert, not both", cmd);
	if (dev.thumb_secondary[0] != '\0' && cert == NULL && dev.thumb_primary[0] == '\0')
		return kg_cli_usage_err("%s: --secondary needs --thumbprint or --cert", cmd);
	{
		const struct kg_cli_auth_req q = {
			.has_auth = has_auth, .auth = auth,
			.pinned = cert != NULL || dev.thumb_primary[0] != '\0',
			.username = username != NULL, .password = pw_stdin,
		};
		char why[256];

		if (kg_cli_auth_resolve(&q, "--", &dev.attestation, why, sizeof(why)) != 0)
			return kg_cli_usage_err("%s: %s", cmd, why);
	}
	if (json && !kg_attestation_has_secret(dev.attestation))
		return kg_cli_usage_err("%s: --json prints new secrets: it goes with --auth sas|token|basic", cmd);
	if ((rc = kg_cli_setup(cli, true)) != KG_EXIT_OK)
		return rc;
	if ((rc = kg_cli_check_backend_configured(cli, cmd, dev.backend)) != KG_EXIT_OK)
		return rc;
	if (cert != NULL &&
	    (rc = thumb_from_cert(cmd, cert, dev.id, dev.thumb_primary, &dev.cert_not_after)) != 0)
		return rc;
	if (dev.thumb_primary[0] != '\0')
		dev.attestation = KG_ATT_THUMBPRINT;
	/* Secrets before the registry opens: a bad password on stdin writes nothing. */
	if (kg_attestation_has_secret(dev.attestation) &&
	    (nsec = make_secrets(cmd, &dev, username, pw_stdin, creds, shown)) < 0) {
		rc = -nsec;
		nsec = 0;
		goto out_wipe;
	}

	if ((rc = kg_cli_open_registry(cli, KG_REG_READWRITE, false, &reg)) != KG_EXIT_OK)
		goto out_wipe;
	rc = kg_registry_device_add(reg, &dev);
	if (rc == KG_E_EXISTS)
		kg_cli_err("device %s: already exists (or its thumbprint is taken)", dev.id);
	else if (rc != 0)   /* SQLite's words: locked, read-only, disk full, corrupt */
		kg_cli_err("device %s: cannot add: %s", dev.id, kg_registry_strerror(reg, rc));
	else
		rc = store_secrets(reg, &dev, creds, nsec);
	kg_registry_close(reg);
	if (rc != 0) {
		rc = kg_cli_exit_for(rc);
		goto out_wipe;
	}
	if (nsec > 0) {
		print_secrets(&dev, creds, shown, (size_t)nsec, json);
		fflush(stdout);
		fprintf(stderr, "ktlsgate: the secret(s) above are shown once: give them to the device now\n");
	} else {
		printf("device %s added (attestation %s)\n", dev.id, kg_attestation_str(dev.attestation));
	}
	fflush(stdout);
	rc = kg_cli_notify(cli, "device-changed", dev.id, text, sizeof(text));
	rc = rc == KG_EXIT_RUNTIME ? KG_EXIT_RUNTIME : KG_EXIT_OK;
out_wipe:
	/* all of both: a failed second secret may leave the first one made */
	OPENSSL_cleanse(shown, sizeof(shown));
	OPENSSL_cleanse(creds, sizeof(creds));
	return rc;
}

/* Append "what value" to a comma-separated change list. */
static void add_change(char *buf, size_t cap, const char *what, const char *value)
{
	size_t n = strlen(buf);

	snprintf(buf + n, cap - n, "%s%s %s", n != 0 ? ", " : "", what,
		 value[0] != '\0' ? value : "-");
}

static int device_set(struct kg_cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "status", required_argument, NULL, 'S' },
		{ "backend", required_argument, NULL, 'b' },
		{ "thumbprint", required_argument, NULL, 't' },
		{ "secondary", required_argument, NULL, 's' },
		{ "cert", required_argument, NULL, 'C' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *cmd = "device set", *backend = NULL, *cert = NULL, *id;
	char primary[KG_SHA256_HEX_LEN + 1] = "", secondary[KG_SHA256_HEX_LEN + 1] = "";
	bool set_status = false, set_secondary = false;
	enum kg_device_status status = KG_DEV_ENABLED;
	struct kg_registry *reg = NULL;
	char text[128], changes[512] = "";
	int64_t not_after = 0;
	struct kg_device dev;
	int c, rc;

	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		switch (c) {
		case 'S':
			if ((rc = parse_status(cmd, optarg, &status)) != 0)
				return rc;
			set_status = true;
			break;
		case 'b':
			if ((rc = check_backend(cmd, optarg)) != 0)
				return rc;
			backend = optarg;
			break;
		case 't':
			if ((rc = parse_thumb(cmd, "--thumbprint", optarg, primary)) != 0)
				return rc;
			break;
		case 's':
			/* "none" or "" drops the secondary (end of a rotation). */
			if (strcmp(optarg, "none") != 0 && optarg[0] != '\0' &&
			    (rc = parse_thumb(cmd, "--secondary", optarg, secondary)) != 0)
				return rc;
			set_secondary = true;
			break;
		case 'C':
			cert = optarg;
			break;
		case 'h':
			fputs(kg_cli_usage_device, stdout);
			return KG_EXIT_OK;
		default:
			return kg_cli_bad_option(c, argv, cmd);
		}
	}
	if (argc - optind != 1)
		return kg_cli_usage_err("%s: expected one device ID", cmd);
	id = argv[optind];
	if ((rc = kg_cli_check_device_id(cmd, id)) != 0)
		return rc;
	if (cert != NULL && primary[0] != '\0')
		return kg_cli_usage_err("%s: give --thumbprint or --cert, not both", cmd);
	if (!set_status && backend == NULL && primary[0] == '\0' && cert == NULL && !set_secondary)
		return kg_cli_usage_err("%s: nothing to change (give --status, --backend, --thumbprint, --secondary or --cert)",
					cmd);
	if ((rc = kg_cli_setup(cli, true)) != KG_EXIT_OK)
		return rc;
	if (cert != NULL && (rc = thumb_from_cert(cmd, cert, id, primary, &not_after)) != 0)
		return rc;
	if ((rc = kg_cli_check_backend_configured(cli, cmd, backend)) != KG_EXIT_OK)
		return rc;

	if ((rc = kg_cli_open_registry(cli, KG_REG_READWRITE, true, &reg)) != KG_EXIT_OK)
		return rc;
	rc = kg_registry_device_get(reg, id, &dev);
	if (rc != 0) {
		kg_cli_err("device %s: %s", id, rc == KG_E_NOTFOUND ? "no such device" : kg_registry_strerror(reg, rc));
		rc = kg_cli_exit_for(rc);
		goto out_close;
	}
	if (set_status) {
		dev.status = status;
		add_change(changes, sizeof(changes), "status", kg_device_status_str(status));
	}
	if (backend != NULL) {
		(void)kg_strlcpy(dev.backend, backend, sizeof(dev.backend));
		add_change(changes, sizeof(changes), "backend", backend);
	}
	if (primary[0] != '\0') {
		/* Pinning a thumbprint makes it a thumbprint device. */
		memcpy(dev.thumb_primary, primary, sizeof(primary));
		dev.attestation = KG_ATT_THUMBPRINT;
		if (not_after != 0)
			dev.cert_not_after = not_after;
		add_change(changes, sizeof(changes), "thumbprint", primary);
	}
	if (set_secondary) {
		if (secondary[0] != '\0' && dev.thumb_primary[0] == '\0') {
			kg_cli_err("device %s: no primary thumbprint; set --thumbprint first", id);
			rc = KG_EXIT_REFUSED;
			goto out_close;
		}
		memcpy(dev.thumb_secondary, secondary, sizeof(secondary));
		add_change(changes, sizeof(changes), "secondary", secondary);
	}
	rc = kg_registry_device_update(reg, &dev);
	if (rc != 0) {
		kg_cli_err("device %s: cannot update: %s", id,
			   rc == KG_E_EXISTS ? "thumbprint belongs to another device" : kg_registry_strerror(reg, rc));
		rc = kg_cli_exit_for(rc);
		goto out_close;
	}
	kg_registry_close(reg);
	reg = NULL;
	rc = kg_cli_notify(cli, "device-changed", id, text, sizeof(text));
	printf("device %s: %s (%s)\n", id, changes, text);
	rc = rc == KG_EXIT_RUNTIME ? KG_EXIT_RUNTIME : KG_EXIT_OK;
out_close:
	kg_registry_close(reg);
	return rc;
}

/* A device as JSON; with its credentials' kinds, slots and times (never a secret)
 * when reg is not NULL. */
static struct json_object *device_json(const struct kg_device *d, struct kg_registry *reg)
{
	struct kg_credential creds[KG_CRED_PER_DEVICE];
	struct json_object *o = json_object_new_object(), *arr = NULL;
	size_t n = 0;

	if (o == NULL)
		return NULL;
	if (reg != NULL) {
		if (kg_registry_cred_get(reg, d->id, creds, &n) != 0 ||
		    (arr = kg_cli_cred_summary_json(creds, n)) == NULL) {
			OPENSSL_cleanse(creds, sizeof(creds));
			json_object_put(o);
			return NULL;
		}
		OPENSSL_cleanse(creds, sizeof(creds));
	}
	json_object_object_add(o, "id", json_object_new_string(d->id));
	json_object_object_add(o, "status", json_object_new_string(kg_device_status_str(d->status)));
	json_object_object_add(o, "attestation",
			       json_object_new_string(kg_attestation_str(d->attestation)));
	json_object_object_add(o, "thumbprint", kg_cli_json_str_or_null(d->thumb_primary));
	json_object_object_add(o, "secondary", kg_cli_json_str_or_null(d->thumb_secondary));
	json_object_object_add(o, "backend", kg_cli_json_str_or_null(d->backend));
	json_object_object_add(o, "ca", kg_cli_json_str_or_null(d->ca_name));
	json_object_object_add(o, "created_at", json_object_new_int64(d->created_at));
	json_object_object_add(o, "updated_at", json_object_new_int64(d->updated_at));
	json_object_object_add(o, "last_seen", json_object_new_int64(d->last_seen));
	json_object_object_add(o, "cert_not_after", json_object_new_int64(d->cert_not_after));
	if (arr != NULL)
		json_object_object_add(o, "credentials", arr);
	return o;
}

static const char *dash(const char *s)
{
	return s[0] != '\0' ? s : "-";
}

/* Parse "[--json]" plus `want` positionals; returns -1 after printing help. */
static int parse_json_only(int argc, char **argv, const char *cmd, int want, bool *json)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		switch (c) {
		case 'j':
			*json = true;
			break;
		case 'h':
			fputs(kg_cli_usage_device, stdout);
			return -1;
		default:
			return kg_cli_bad_option(c, argv, cmd);
		}
	}
	if (argc - optind != want)
		return kg_cli_usage_err("%s: expected %s", cmd, want == 1 ? "one device ID" : "no argument");
	return KG_EXIT_OK;
}

/* "sas/primary 2026-12-03T11:00:00Z, sas/secondary ..." or "-": kinds, slots, times. */
static void cred_line(const struct kg_credential *c, size_t n, char *buf, size_t cap)
{
	size_t len = 0;
	char t[32];

	(void)kg_strlcpy(buf, "-", cap);
	for (size_t i = 0; i < n && len < cap; i++) {
		kg_cli_fmt_time(c[i].created_at, t, sizeof(t));
		len += (size_t)snprintf(buf + len, cap - len, "%s%s/%s %s", i != 0 ? ", " : "",
					kg_attestation_str(c[i].kind), kg_cred_slot_str(c[i].slot), t);
	}
}

static int device_show(struct kg_cli *cli, int argc, char **argv)
{
	struct kg_credential creds[KG_CRED_PER_DEVICE];
	struct json_object *o = NULL;
	struct kg_registry *reg = NULL;
	char t1[32], t2[32], t3[32], t4[32], cl[512];
	struct kg_device d;
	bool json = false;
	size_t n = 0;
	const char *id;
	int rc;

	rc = parse_json_only(argc, argv, "device show", 1, &json);
	if (rc != KG_EXIT_OK)
		return rc < 0 ? KG_EXIT_OK : rc;
	id = argv[optind];
	if ((rc = kg_cli_check_device_id("device show", id)) != 0)
		return rc;
	if ((rc = kg_cli_setup(cli, true)) != KG_EXIT_OK)
		return rc;
	if ((rc = kg_cli_open_registry(cli, KG_REG_READONLY, true, &reg)) != KG_EXIT_OK)
		return rc;
	rc = kg_registry_device_get(reg, id, &d);
	if (rc == 0)
		rc = kg_registry_cred_get(reg, id, creds, &n);
	if (rc != 0)
		kg_cli_err("device %s: %s", id, rc == KG_E_NOTFOUND ? "no such device" : kg_registry_strerror(reg, rc));
	else if (json && (o = device_json(&d, reg)) == NULL)
		rc = KG_E_RESOURCE;
	kg_registry_close(reg);
	cred_line(creds, n, cl, sizeof(cl));
	OPENSSL_cleanse(creds, sizeof(creds));
	if (rc != 0)
		return kg_cli_exit_for(rc);
	if (json) {
		kg_cli_json_print(o);
		return KG_EXIT_OK;
	}
	kg_cli_fmt_time(d.created_at, t1, sizeof(t1));
	kg_cli_fmt_time(d.updated_at, t2, sizeof(t2));
	kg_cli_fmt_time(d.last_seen, t3, sizeof(t3));
	kg_cli_fmt_time(d.cert_not_after, t4, sizeof(t4));
	printf("id: %s\nstatus: %s\nattestation: %s\nthumbprint: %s\nsecondary: %s\n"
	       "backend: %s\nca: %s\ncreated: %s\nupdated: %s\nlast-seen: %s\ncert-not-after: %s\n"
	       "credentials: %s\n",
	       d.id, kg_device_status_str(d.status), kg_attestation_str(d.attestation),
	       dash(d.thumb_primary), dash(d.thumb_secondary), dash(d.backend), dash(d.ca_name), t1,
	       t2, t3, t4, cl);
	return KG_EXIT_OK;
}

struct list_ctx {
	struct json_object *arr;  /* --json, else a table */
	struct kg_registry *reg;  /* for each device's credentials in --json */
	int64_t before;           /* expiring: cert_not_after < before; 0 = list all */
	int64_t now;
	bool oom;
};

static int list_one(const struct kg_device *d, void *arg)
{
	struct list_ctx *lc = arg;
	struct json_object *o;
	char t[32];

	if (lc->before != 0 && (d->cert_not_after == 0 || d->cert_not_after >= lc->before))
		return 0;
	if (lc->arr != NULL) {
		o = device_json(d, lc->reg);
		if (o == NULL || json_object_array_add(lc->arr, o) != 0) {
			json_object_put(o);
			lc->oom = true;
			return 1;
		}
		return 0;
	}
	if (lc->before != 0) {
		kg_cli_fmt_time(d->cert_not_after, t, sizeof(t));
		printf("%-32s %-14s %-20s %lld\n", d->id, kg_device_status_str(d->status), t,
		       (long long)((d->cert_not_after - lc->now) / 86400));
	} else {
		kg_cli_fmt_time(d->last_seen, t, sizeof(t));
		printf("%-32s %-14s %-11s %-16s %s\n", d->id, kg_device_status_str(d->status),
		       kg_attestation_str(d->attestation), dash(d->backend), t);
	}
	return 0;
}

static int run_list(struct kg_cli *cli, int status, bool json, struct list_ctx *lc)
{
	struct kg_registry *reg = NULL;
	int rc;

	if ((rc = kg_cli_setup(cli, true)) != KG_EXIT_OK)
		return rc;
	if ((rc = kg_cli_open_registry(cli, KG_REG_READONLY, true, &reg)) != KG_EXIT_OK)
		return rc;
	if (json) {
		lc->arr = json_object_new_array();
		if (lc->arr == NULL) {
			kg_cli_err("out of memory");
			rc = KG_EXIT_RUNTIME;
			goto out_close;
		}
	} else if (lc->before != 0) {
		printf("%-32s %-14s %-20s %s\n", "ID", "STATUS", "NOT-AFTER", "DAYS-LEFT");
	} else {
		printf("%-32s %-14s %-11s %-16s %s\n", "ID", "STATUS", "ATTESTATION", "BACKEND",
		       "LAST-SEEN");
	}
	lc->reg = reg;
	rc = kg_registry_device_list(reg, status, list_one, lc);
	if (rc != 0 || lc->oom) {
		kg_cli_err("registry %s: cannot list devices: %s", cli->registry_shown,
			   rc != 0 ? kg_registry_strerror(reg, rc) : "out of memory");
		json_object_put(lc->arr);
		rc = KG_EXIT_RUNTIME;
		goto out_close;
	}
	if (json)
		kg_cli_json_print(lc->arr);
	rc = KG_EXIT_OK;
out_close:
	kg_registry_close(reg);
	return rc;
}

static int device_list(struct kg_cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "status", required_argument, NULL, 'S' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	enum kg_device_status st;
	struct list_ctx lc = { 0 };
	bool json = false;
	int status = -1, c, rc;

	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		switch (c) {
		case 'S':
			if ((rc = parse_status("device list", optarg, &st)) != 0)
				return rc;
			status = (int)st;
			break;
		case 'j':
			json = true;
			break;
		case 'h':
			fputs(kg_cli_usage_device, stdout);
			return KG_EXIT_OK;
		default:
			return kg_cli_bad_option(c, argv, "device list");
		}
	}
	if (optind < argc)
		return kg_cli_usage_err("device list: unexpected argument '%s'", argv[optind]);
	return run_list(cli, status, json, &lc);
}

static int device_expiring(struct kg_cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "days", required_argument, NULL, 'd' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct list_ctx lc = { 0 };
	int64_t days = -1;
	bool json = false;
	int c;

	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		switch (c) {
		case 'd':
			if (kg_cli_parse_i64(optarg, 0, 36500, &days) != 0)
				return kg_cli_usage_err("device expiring: --days wants 0..36500, not '%s'",
							optarg);
			break;
		case 'j':
			json = true;
			break;
		case 'h':
			fputs(kg_cli_usage_device, stdout);
			return KG_EXIT_OK;
		default:
			return kg_cli_bad_option(c, argv, "device expiring");
		}
	}
	if (optind < argc)
		return kg_cli_usage_err("device expiring: unexpected argument '%s'", argv[optind]);
	if (days < 0)
		return kg_cli_usage_err("device expiring: --days N is required");
	lc.now = (int64_t)time(NULL);
	lc.before = lc.now + days * 86400;
	return run_list(cli, -1, json, &lc);
}

static int device_remove(struct kg_cli *cli, int argc, char **argv)
{
	struct kg_registry *reg = NULL;
	bool json = false;
	const char *id;
	char text[128];
	int rc;

	rc = parse_json_only(argc, argv, "device remove", 1, &json);
	if (rc != KG_EXIT_OK)
		return rc < 0 ? KG_EXIT_OK : rc;
	if (json)
		return kg_cli_usage_err("device remove: --json does not apply");
	id = argv[optind];
	if ((rc = kg_cli_check_device_id("device remove", id)) != 0)
		return rc;
	if ((rc = kg_cli_setup(cli, true)) != KG_EXIT_OK)
		return rc;
	if ((rc = kg_cli_open_registry(cli, KG_REG_READWRITE, true, &reg)) != KG_EXIT_OK)
		return rc;
	rc = kg_registry_device_remove(reg, id);
	if (rc != 0)
		kg_cli_err("device %s: %s", id, rc == KG_E_NOTFOUND ? "no such device" : kg_registry_strerror(reg, rc));
	kg_registry_close(reg);
	if (rc != 0)
		return kg_cli_exit_for(rc);
	rc = kg_cli_notify(cli, "device-changed", id, text, sizeof(text));
	printf("device %s removed (%s)\n", id, text);
	return rc == KG_EXIT_RUNTIME ? KG_EXIT_RUNTIME : KG_EXIT_OK;
}

int kg_cli_device(struct kg_cli *cli, int argc, char **argv)
{
	static const struct kg_cli_verb verbs[] = {
		{ "add", device_add },         { "set", device_set },
		{ "show", device_show },       { "list", device_list },
		{ "expiring", device_expiring }, { "remove", device_remove },
		{ "import", kg_cli_device_import },   /* cli_import.c */
		{ "credentials", kg_cli_device_credentials },   /* cli_credentials.c */
		{ NULL, NULL },
	};

	return kg_cli_dispatch(cli, argc, argv, verbs, kg_cli_usage_device);
}
