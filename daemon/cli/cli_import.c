/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * cli_import.c - `ktlsgate device import FILE|- [--format csv|jsonl]`: bulk enrolment.
 *
 * Parse the whole input first (pure: text -> devices, each with its line number), with
 * the checks `device add` makes on its options; then write every device in ONE registry
 * transaction (kg_registry_device_add_many). Any bad line, a duplicate id or a taken
 * thumbprint: nothing is written, exit 2, one error line naming the line and the
 * problem. After the commit the daemon hears "device-changed ID" for each device, as
 * after `device add`, so a running daemon treats them exactly the same.
 *
 * Formats: CSV with a header line naming the columns (RFC 4180 quoting), or JSON lines
 * (one object per line). Columns / keys: id (required), thumbprint, secondary, cert,
 * backend, status; empty or null = not given. cert is `device add --cert`: a PEM file
 * (relative to FILE's directory; to the current one for stdin) whose CN must be the id.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "ops/control.h"
#include "ops/err.h"
#include "cli/pki.h"
#include "tls/verify.h"

#define IMPORT_LINE_MAX 4096      /* longest accepted input line */
#define IMPORT_MAX_DEVICES 1000000

enum import_format { FMT_AUTO, FMT_CSV, FMT_JSONL };

enum field { F_ID, F_THUMB, F_SECONDARY, F_CERT, F_BACKEND, F_STATUS, F_MAX };

static const char *const field_names[F_MAX] = {
	[F_ID] = "id", [F_THUMB] = "thumbprint", [F_SECONDARY] = "secondary", [F_CERT] = "cert",
	[F_BACKEND] = "backend", [F_STATUS] = "status",
};
#define FIELD_LIST "id, thumbprint, secondary, cert, backend, status"

struct import {
	const char *name;            /* FILE, or "-" */
	char dir[PATH_MAX];          /* FILE's directory: anchors relative cert paths; "" = cwd */
	enum import_format fmt;
	int col[F_MAX + 8];          /* CSV: field of each column, -1 before the header */
	size_t n_cols;
	bool have_header;
	struct kg_device *devs;
	unsigned long *lines;        /* input line of devs[i] */
	size_t n, cap;
	char why[256];               /* the problem with the current line */
};

static int field_by_name(const char *s)
{
	for (int f = 0; f < F_MAX; f++)
		if (strcmp(field_names[f], s) == 0)
			return f;
	return -1;
}

/* The cert column: the pin (and notAfter) from the device's own certificate, whose CN
 * must be the id, as `device add --cert` does. */
static int thumb_from_cert(struct import *im, const char *file, struct kg_device *dev)
{
	char err[KG_ERRBUF] = "", cn[KG_DEVICE_ID_MAX + 1], path[PATH_MAX];
	size_t module_off;
	int rc = -1, n;
	X509 *x;

	if (file[0] != '/' && im->dir[0] != '\0')
		n = snprintf(path, sizeof(path), "%s/%s", im->dir, file);
	else
		n = snprintf(path, sizeof(path), "%s", file);
	if (n < 0 || (size_t)n >= sizeof(path)) {
		snprintf(im->why, sizeof(im->why), "cert path too long");
		return -1;
	}
	x = kg_pem_read_cert(path, err, sizeof(err));
	if (x == NULL) {
		snprintf(im->why, sizeof(im->why), "cert %.100s: %.120s", file, err[0] != '\0' ? err : "unreadable");
		return -1;
	}
	if (kg_identity_from_cert(x, cn, sizeof(cn), &module_off) != KG_REASON_OK ||
	    strcmp(cn, dev->id) != 0)
		snprintf(im->why, sizeof(im->why), "cert %.100s: certificate CN is not the device id", file);
	else if (kg_cert_sha256_hex(x, dev->thumb_primary) != 0)
		snprintf(im->why, sizeof(im->why), "cert %.100s: cannot hash the certificate", file);
	else {
		dev->cert_not_after = kg_cli_asn1_time(X509_get0_notAfter(x));
		rc = 0;
	}
	X509_free(x);
	return rc;
}

/* One device from its field values (NULL = not given): the checks of `device add`. */
static int build_device(struct import *im, char *const val[F_MAX], struct kg_device *dev)
{
	size_t module_off;

	memset(dev, 0, sizeof(*dev));
	dev->status = KG_DEV_ENABLED;
	dev->attestation = KG_ATT_CA;
	if (val[F_ID] == NULL) {
		snprintf(im->why, sizeof(im->why), "no id");
		return -1;
	}
	if (!kg_identity_valid(val[F_ID], strlen(val[F_ID]), &module_off)) {
		snprintf(im->why, sizeof(im->why), "bad device id '%.140s'", val[F_ID]);
		return -1;
	}
	(void)kg_strlcpy(dev->id, val[F_ID], sizeof(dev->id));
	if (val[F_THUMB] != NULL && kg_cli_parse_thumb(val[F_THUMB], dev->thumb_primary) != 0) {
		snprintf(im->why, sizeof(im->why),
			 "thumbprint wants 64 hex digits (or AB:CD:... pairs), not '%.100s'", val[F_THUMB]);
		return -1;
	}
	if (val[F_THUMB] != NULL && val[F_CERT] != NULL) {
		snprintf(im->why, sizeof(im->why), "give thumbprint or cert, not both");
		return -1;
	}
	if (val[F_CERT] != NULL && thumb_from_cert(im, val[F_CERT], dev) != 0)
		return -1;
	if (val[F_SECONDARY] != NULL) {
		if (val[F_THUMB] == NULL && val[F_CERT] == NULL) {
			snprintf(im->why, sizeof(im->why), "secondary needs a thumbprint or a cert");
			return -1;
		}
		if (kg_cli_parse_thumb(val[F_SECONDARY], dev->thumb_secondary) != 0) {
			snprintf(im->why, sizeof(im->why),
				 "secondary wants 64 hex digits (or AB:CD:... pairs), not '%.100s'",
				 val[F_SECONDARY]);
			return -1;
		}
	}
	if (dev->thumb_primary[0] != '\0')
		dev->attestation = KG_ATT_THUMBPRINT;
	if (val[F_BACKEND] != NULL) {
		if (!kg_cli_name_valid(val[F_BACKEND])) {
			snprintf(im->why, sizeof(im->why), "bad backend name '%.80s' (1..63 of A-Z a-z 0-9 . _ -)",
				 val[F_BACKEND]);
			return -1;
		}
		(void)kg_strlcpy(dev->backend, val[F_BACKEND], sizeof(dev->backend));
	}
	if (val[F_STATUS] != NULL && kg_device_status_parse(val[F_STATUS], &dev->status) != 0) {
		snprintf(im->why, sizeof(im->why),
			 "bad status '%.40s' (enabled|disabled|suspended|quarantined|decommissioned)",
			 val[F_STATUS]);
		return -1;
	}
	return 0;
}

static int push(struct import *im, const struct kg_device *dev, unsigned long line)
{
	if (im->n == im->cap) {
		size_t cap = im->cap != 0 ? im->cap * 2 : 256;
		struct kg_device *d;
		unsigned long *l;

		if (cap > IMPORT_MAX_DEVICES) {
			snprintf(im->why, sizeof(im->why), "more than %d devices in one import",
				 IMPORT_MAX_DEVICES);
			return -1;
		}
		d = realloc(im->devs, cap * sizeof(*d));
		if (d == NULL)
			goto oom;
		im->devs = d;
		l = realloc(im->lines, cap * sizeof(*l));
		if (l == NULL)
			goto oom;
		im->lines = l;
		im->cap = cap;
	}
	im->devs[im->n] = *dev;
	im->lines[im->n++] = line;
	return 0;
oom:
	snprintf(im->why, sizeof(im->why), "out of memory");
	return -1;
}

/*
 * Split one CSV record in place (RFC 4180: "..." quotes a field, "" is a quote inside
 * it; no newline inside a field). Fields point into line. Returns the count, or -1.
 */
static int csv_split(struct import *im, char *line, char **fields, size_t max)
{
	size_t n = 0;
	char *r = line, *w;

	for (;;) {
		if (n == max) {
			snprintf(im->why, sizeof(im->why), "more than %zu columns", max);
			return -1;
		}
		fields[n++] = w = r;
		if (*r == '"') {
			r++;
			for (;;) {
				if (*r == '\0') {
					snprintf(im->why, sizeof(im->why), "unterminated quote in column %zu", n);
					return -1;
				}
				if (*r == '"' && r[1] == '"') {
					*w++ = '"';
					r += 2;
				} else if (*r == '"') {
					r++;
					break;
				} else {
					*w++ = *r++;
				}
			}
			if (*r != ',' && *r != '\0') {
				snprintf(im->why, sizeof(im->why), "text after a closing quote in column %zu", n);
				return -1;
			}
		} else {
			while (*r != ',' && *r != '\0') {
				if (*r == '"') {
					snprintf(im->why, sizeof(im->why), "quote inside unquoted column %zu", n);
					return -1;
				}
				*w++ = *r++;
			}
		}
		if (*r == '\0') {
			*w = '\0';
			return (int)n;
		}
		*w = '\0';   /* w <= r: writing here never clobbers unread input beyond r */
		r++;
	}
}

static int csv_header(struct import *im, char *line)
{
	char *fields[F_MAX + 8];
	bool seen[F_MAX] = { false };
	int n, f;

	if ((n = csv_split(im, line, fields, KG_NITEMS(fields))) < 0)
		return -1;
	for (int i = 0; i < n; i++) {
		f = field_by_name(fields[i]);
		if (f < 0) {
			snprintf(im->why, sizeof(im->why),
				 "header: unknown column '%.40s' (" FIELD_LIST ")",
				 fields[i]);
			return -1;
		}
		if (seen[f]) {
			snprintf(im->why, sizeof(im->why), "header: column '%s' twice", field_names[f]);
			return -1;
		}
		seen[f] = true;
		im->col[i] = f;
	}
	if (!seen[F_ID]) {
		snprintf(im->why, sizeof(im->why), "header: no 'id' column");
		return -1;
	}
	im->n_cols = (size_t)n;
	im->have_header = true;
	return 0;
}

static int csv_record(struct import *im, char *line, struct kg_device *dev)
{
	char *fields[F_MAX + 8], *val[F_MAX] = { NULL };
	int n;

	if ((n = csv_split(im, line, fields, KG_NITEMS(fields))) < 0)
		return -1;
	if ((size_t)n != im->n_cols) {
		snprintf(im->why, sizeof(im->why), "%d columns, the header has %zu", n, im->n_cols);
		return -1;
	}
	for (int i = 0; i < n; i++)
		if (fields[i][0] != '\0')
			val[im->col[i]] = fields[i];
	return build_device(im, val, dev);
}

static int jsonl_record(struct import *im, const char *line, struct kg_device *dev)
{
	struct json_tokener *tok = json_tokener_new();
	struct json_object *o = NULL;
	char *val[F_MAX] = { NULL };
	size_t len = strlen(line);
	int rc = -1, f;

	if (tok == NULL) {
		snprintf(im->why, sizeof(im->why), "out of memory");
		return -1;
	}
	o = json_tokener_parse_ex(tok, line, (int)len);
	if (o == NULL || json_tokener_get_error(tok) != json_tokener_success) {
		snprintf(im->why, sizeof(im->why), "not JSON: %s",
			 json_tokener_error_desc(json_tokener_get_error(tok)));
		goto out;
	}
	/* Only blanks may follow the object. */
	for (size_t i = json_tokener_get_parse_end(tok); i < len; i++) {
		if (line[i] != ' ' && line[i] != '\t') {
			snprintf(im->why, sizeof(im->why), "text after the JSON object");
			goto out;
		}
	}
	if (!json_object_is_type(o, json_type_object)) {
		snprintf(im->why, sizeof(im->why), "not a JSON object");
		goto out;
	}
	json_object_object_foreach(o, key, v) {
		f = field_by_name(key);
		if (f < 0) {
			snprintf(im->why, sizeof(im->why),
				 "unknown key '%.40s' (" FIELD_LIST ")", key);
			goto out;
		}
		if (v == NULL)
			continue;
		if (!json_object_is_type(v, json_type_string)) {
			snprintf(im->why, sizeof(im->why), "'%s' is not a string", key);
			goto out;
		}
		/* Strings live as long as o; "" means not given, as an empty CSV column. */
		if (json_object_get_string_len(v) != 0)
			val[f] = (char *)json_object_get_string(v);
		if (strlen(json_object_get_string(v)) != (size_t)json_object_get_string_len(v)) {
			snprintf(im->why, sizeof(im->why), "'%s' holds a NUL byte", key);
			goto out;
		}
	}
	rc = build_device(im, val, dev);
out:
	json_object_put(o);
	json_tokener_free(tok);
	return rc;
}

static bool blank(const char *s)
{
	return s[strspn(s, " \t")] == '\0';
}

/* Parse the whole input into im->devs. 0, or -1 with *bad_line and im->why set. */
static int parse_input(struct import *im, FILE *in, unsigned long *bad_line)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	unsigned long no = 0;
	struct kg_device dev;
	int rc = 0;

	while ((len = getline(&line, &cap, in)) >= 0) {
		no++;
		*bad_line = no;
		if (len > 0 && line[len - 1] == '\n')
			line[--len] = '\0';
		if (len > 0 && line[len - 1] == '\r')
			line[--len] = '\0';
		if ((size_t)len != strlen(line)) {
			snprintf(im->why, sizeof(im->why), "NUL byte in the line");
			rc = -1;
			break;
		}
		if (len > IMPORT_LINE_MAX) {
			snprintf(im->why, sizeof(im->why), "line longer than %d bytes", IMPORT_LINE_MAX);
			rc = -1;
			break;
		}
		if (no == 1 && strncmp(line, "\xef\xbb\xbf", 3) == 0)   /* UTF-8 BOM */
			memmove(line, line + 3, (size_t)len - 2);
		if (blank(line))
			continue;
		if (im->fmt == FMT_AUTO)
			im->fmt = line[strspn(line, " \t")] == '{' ? FMT_JSONL : FMT_CSV;
		if (im->fmt == FMT_CSV && !im->have_header) {
			if (csv_header(im, line) != 0) {
				rc = -1;
				break;
			}
			continue;
		}
		if ((im->fmt == FMT_CSV ? csv_record(im, line, &dev) : jsonl_record(im, line, &dev)) != 0 ||
		    push(im, &dev, no) != 0) {
			rc = -1;
			break;
		}
	}
	if (rc == 0 && ferror(in)) {
		snprintf(im->why, sizeof(im->why), "read error: %s", strerror(errno));
		rc = -1;
	}
	if (rc == 0 && im->fmt == FMT_CSV && !im->have_header) {
		*bad_line = no;
		snprintf(im->why, sizeof(im->why), "no header line");
		rc = -1;
	}
	free(line);
	return rc;
}

/* "device-changed ID" for every device, as `device add` does; stops at the first
 * failure so a dead or refusing daemon costs one line, not one per device. */
static int notify_all(const struct kg_cli *cli, const struct import *im, char *text, size_t cap)
{
	char req[KG_CONTROL_LINE_MAX], final[KG_CONTROL_LINE_MAX];
	size_t i;
	int rc;

	snprintf(text, cap, im->n != 0 ? "daemon notified" : "nothing to notify");
	for (i = 0; i < im->n; i++) {
		snprintf(req, sizeof(req), "device-changed %s", im->devs[i].id);
		final[0] = '\0';
		rc = kg_control_call(cli->control_socket, req, NULL, NULL, final, sizeof(final),
				     KG_CLI_CONTROL_TIMEOUT_MS);
		if (rc == KG_E_NOTFOUND && i == 0) {
			snprintf(text, cap, "daemon not running");
			return 0;
		}
		if (rc != 0) {
			snprintf(text, cap, "daemon not notified");
			kg_cli_err("registry updated, but the daemon did not apply \"%s\" (and %zu more): %s",
				   req, im->n - i - 1,
				   rc == KG_E_DENIED && final[0] != '\0' ? final : kg_err_str(rc));
			return KG_EXIT_RUNTIME;
		}
	}
	return 0;
}

int kg_cli_device_import(struct kg_cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "format", required_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *cmd = "device import";
	struct import im = { .fmt = FMT_AUTO };
	struct kg_registry *reg = NULL;
	unsigned long bad_line = 0;
	char text[128];
	size_t bad = 0;
	FILE *in;
	int c, rc, nrc;

	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		switch (c) {
		case 'f':
			if (strcmp(optarg, "csv") == 0)
				im.fmt = FMT_CSV;
			else if (strcmp(optarg, "jsonl") == 0)
				im.fmt = FMT_JSONL;
			else
				return kg_cli_usage_err("%s: --format wants csv or jsonl, not '%s'", cmd, optarg);
			break;
		case 'h':
			fputs(kg_cli_usage_device, stdout);
			return KG_EXIT_OK;
		default:
			return kg_cli_bad_option(c, argv, cmd);
		}
	}
	if (argc - optind != 1)
		return kg_cli_usage_err("%s: expected one FILE (or - for stdin)", cmd);
	im.name = argv[optind];
	if (strcmp(im.name, "-") != 0 && strchr(im.name, '/') != NULL) {
		if (kg_strlcpy(im.dir, im.name, sizeof(im.dir)) != 0)
			return kg_cli_usage_err("%s: path too long", cmd);
		*strrchr(im.dir, '/') = '\0';
		if (im.dir[0] == '\0')
			(void)kg_strlcpy(im.dir, "/", sizeof(im.dir));
	}
	if ((rc = kg_cli_setup(cli, true)) != KG_EXIT_OK)
		return rc;

	if (strcmp(im.name, "-") == 0) {
		in = stdin;
	} else {
		in = fopen(im.name, "r");
		if (in == NULL) {
			kg_cli_err("%s: %s: %s", cmd, im.name, strerror(errno));
			return KG_EXIT_RUNTIME;
		}
	}
	rc = parse_input(&im, in, &bad_line);
	if (in != stdin)
		fclose(in);
	if (rc != 0) {
		kg_cli_err("%s: %s:%lu: %s; nothing imported", cmd, im.name, bad_line, im.why);
		rc = KG_EXIT_REFUSED;
		goto out;
	}

	if ((rc = kg_cli_open_registry(cli, KG_REG_READWRITE, false, &reg)) != KG_EXIT_OK)
		goto out;
	rc = kg_registry_device_add_many(reg, im.devs, im.n, &bad);
	kg_registry_close(reg);
	if (rc != 0) {
		if (im.n > 0 && (rc == KG_E_EXISTS || rc == KG_E_INVALID))
			kg_cli_err("%s: %s:%lu: device %s: %s; nothing imported", cmd, im.name,
				   im.lines[bad], im.devs[bad].id,
				   rc == KG_E_EXISTS ? "already exists (in the registry or on an earlier line), or its thumbprint is taken"
						     : "refused by the registry");
		else
			kg_cli_err("%s: cannot write the registry: %s; nothing imported", cmd,
				   kg_err_str(rc));
		rc = rc == KG_E_EXISTS || rc == KG_E_INVALID ? KG_EXIT_REFUSED : kg_cli_exit_for(rc);
		goto out;
	}
	nrc = notify_all(cli, &im, text, sizeof(text));
	printf("imported %zu devices (%s)\n", im.n, text);
	rc = nrc == KG_EXIT_RUNTIME ? KG_EXIT_RUNTIME : KG_EXIT_OK;
out:
	free(im.devs);
	free(im.lines);
	return rc;
}
