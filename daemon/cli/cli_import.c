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
 * backend, status, auth, username, secret, secondary_secret; empty or null = not
 * given. cert is `device add --cert`: a PEM file (relative to FILE's directory; to the
 * current one for stdin) whose CN must be the id. auth/username are `device add`'s
 * options, checked by the same code (kg_cli_auth_resolve, kg_cli_cred_check).
 *
 * Secrets (issue 15): a given secret is checked while parsing (its line is known) and
 * stored in its stored form; an empty one is generated. The stored forms are made after
 * the parse, in --kdf-threads threads (scrypt is the cost), and go into the same
 * transaction as the devices (kg_registry_device_add_many_cred). Generated secrets are
 * printed once after the commit (a table, or JSON lines with --json), or written before
 * it to a new 0600 --secrets-out file, removed again if the commit fails. Given secrets
 * are never printed.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <search.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "cli/cli.h"
#include "cli/cli_credentials.h"
#include "ops/control.h"
#include "ops/err.h"
#include "cli/pki.h"
#include "tls/verify.h"

#define IMPORT_LINE_MAX 4096      /* longest accepted input line */
#define IMPORT_MAX_DEVICES 1000000
#define KDF_THREADS_MAX 64
#define KDF_THREADS_DEFAULT_MAX 4   /* 32 MiB of scrypt memory each */
#define SHOWN_MAX 48                /* a generated secret: 44 base64 chars at most */

enum import_format { FMT_AUTO, FMT_CSV, FMT_JSONL };

enum field {
	F_ID, F_THUMB, F_SECONDARY, F_CERT, F_BACKEND, F_STATUS,
	F_AUTH, F_USERNAME, F_SECRET, F_SECRET2, F_MAX
};

static const char *const field_names[F_MAX] = {
	[F_ID] = "id", [F_THUMB] = "thumbprint", [F_SECONDARY] = "secondary", [F_CERT] = "cert",
	[F_BACKEND] = "backend", [F_STATUS] = "status", [F_AUTH] = "auth",
	[F_USERNAME] = "username", [F_SECRET] = "secret", [F_SECRET2] = "secondary_secret",
};
#define FIELD_LIST "id, thumbprint, secondary, cert, backend, status, auth, username, secret, secondary_secret"

/* A sas, token or basic device's credentials, to be made after the parse. */
struct row_sec {
	size_t dev;                              /* index in devs */
	size_t first;                            /* its first credential in creds[] */
	int n;                                   /* slots: sas 2 (1 with a lone given key), else 1 */
	char username[KG_CRED_USERNAME_MAX + 1]; /* basic */
	char *given[KG_CRED_SLOT_MAX];           /* from the file (owned, wiped); NULL: generate */
	char shown[KG_CRED_SLOT_MAX][SHOWN_MAX]; /* generated secrets, to print once; "" if given */
	int rc;                                  /* making them: KG_EXIT_OK or an exit code */
	char why[160];
};

/* A basic user name seen in the file (tsearch tree): a second use is a line error. */
struct user_seen {
	unsigned long line;
	char name[KG_CRED_USERNAME_MAX + 1];
};

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
	struct row_sec *secs;        /* devices with secrets, in input order */
	size_t n_secs, cap_secs;
	size_t n_creds;              /* credentials the secs will make */
	void *users;                 /* tsearch root of struct user_seen */
	struct kg_credential *creds; /* made after the parse: n_creds */
	size_t *cred_dev;            /* creds[j] belongs to devs[cred_dev[j]] */
	_Atomic size_t next;         /* the next secs[] row a KDF thread takes */
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

static void sec_wipe(struct row_sec *sec)
{
	for (int k = 0; k < KG_CRED_SLOT_MAX; k++) {
		if (sec->given[k] != NULL) {
			OPENSSL_cleanse(sec->given[k], strlen(sec->given[k]));
			free(sec->given[k]);
			sec->given[k] = NULL;
		}
	}
	OPENSSL_cleanse(sec->shown, sizeof(sec->shown));
}

/*
 * The auth, username, secret and secondary_secret columns: the device's kind, by the
 * rules of `device add --auth` (kg_cli_auth_resolve), and for a secret kind the
 * credentials to make in *sec (sec->n = 0 for none), each given secret checked as
 * the CLI checks its options (kg_cli_cred_check). 0, or -1 with im->why set.
 */
static int build_auth(struct import *im, char *const val[F_MAX], struct kg_device *dev,
		      struct row_sec *sec)
{
	struct kg_cli_auth_req q = {
		.has_auth = val[F_AUTH] != NULL,
		.pinned = dev->thumb_primary[0] != '\0',
		.username = val[F_USERNAME] != NULL,
		.secret = val[F_SECRET] != NULL,
		.secondary_secret = val[F_SECRET2] != NULL,
	};
	char why[200];

	memset(sec, 0, sizeof(*sec));
	if (q.has_auth && kg_cli_auth_parse(val[F_AUTH], &q.auth) != 0) {
		snprintf(im->why, sizeof(im->why), "bad auth '%.40s' (x509|thumbprint|sas|token|basic)",
			 val[F_AUTH]);
		return -1;
	}
	if (kg_cli_auth_resolve(&q, "", &dev->attestation, why, sizeof(why)) != 0) {
		snprintf(im->why, sizeof(im->why), "%s", why);
		return -1;
	}
	if (!kg_attestation_has_secret(dev->attestation))
		return 0;
	/* As device add: a basic user name defaults to the device id. */
	if (dev->attestation == KG_ATT_BASIC)
		(void)kg_strlcpy(sec->username, val[F_USERNAME] != NULL ? val[F_USERNAME] : dev->id,
				 sizeof(sec->username));
	if (kg_cli_cred_check(dev->attestation, sec->username, val[F_SECRET], "", why, sizeof(why)) != 0 ||
	    (val[F_SECRET2] != NULL &&
	     kg_cli_cred_check(dev->attestation, sec->username, val[F_SECRET2], "secondary_", why,
			       sizeof(why)) != 0)) {
		snprintf(im->why, sizeof(im->why), "%s", why);
		return -1;
	}
	/* sas: two keys, as device add makes them, unless the file gives only a primary
	 * (a later `device credentials --rotate` fills the secondary, Azure's way). */
	sec->n = dev->attestation == KG_ATT_SAS && (val[F_SECRET] == NULL || val[F_SECRET2] != NULL) ? 2 : 1;
	for (int k = 0; k < sec->n; k++) {
		const char *g = val[k == 0 ? F_SECRET : F_SECRET2];

		if (g != NULL && (sec->given[k] = strdup(g)) == NULL) {
			sec_wipe(sec);
			snprintf(im->why, sizeof(im->why), "out of memory");
			return -1;
		}
	}
	return 0;
}

/* One device from its field values (NULL = not given): the checks of `device add`. */
static int build_device(struct import *im, char *const val[F_MAX], struct kg_device *dev,
			struct row_sec *sec)
{
	size_t module_off;

	sec->n = 0;
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
	if (build_auth(im, val, dev, sec) != 0)
		return -1;
	if (val[F_BACKEND] != NULL) {
		if (!kg_cli_name_valid(val[F_BACKEND])) {
			snprintf(im->why, sizeof(im->why), "bad backend name '%.80s' (1..63 of A-Z a-z 0-9 . _ -)",
				 val[F_BACKEND]);
			sec_wipe(sec);
			sec->n = 0;
			return -1;
		}
		(void)kg_strlcpy(dev->backend, val[F_BACKEND], sizeof(dev->backend));
	}
	if (val[F_STATUS] != NULL && kg_device_status_parse(val[F_STATUS], &dev->status) != 0) {
		snprintf(im->why, sizeof(im->why),
			 "bad status '%.40s' (enabled|disabled|suspended|quarantined|decommissioned)",
			 val[F_STATUS]);
		sec_wipe(sec);
		sec->n = 0;
		return -1;
	}
	return 0;
}

static int user_cmp(const void *a, const void *b)
{
	return strcmp(((const struct user_seen *)a)->name, ((const struct user_seen *)b)->name);
}

/* A basic user name must name one device: a second use in the file is this line's
 * error (one already in the registry is the store's, inside the transaction). */
static int user_once(struct import *im, const char *name, unsigned long line)
{
	struct user_seen *u = malloc(sizeof(*u)), **found;

	if (u == NULL) {
		snprintf(im->why, sizeof(im->why), "out of memory");
		return -1;
	}
	u->line = line;
	(void)kg_strlcpy(u->name, name, sizeof(u->name));
	found = tsearch(u, &im->users, user_cmp);
	if (found == NULL) {
		free(u);
		snprintf(im->why, sizeof(im->why), "out of memory");
		return -1;
	}
	if (*found != u) {
		snprintf(im->why, sizeof(im->why), "username '%.128s' is also on line %lu", name,
			 (*found)->line);
		free(u);
		return -1;
	}
	return 0;
}

/* Keep the device (and its pending secrets: sec is taken over, or wiped on failure). */
static int push(struct import *im, const struct kg_device *dev, struct row_sec *sec,
		unsigned long line)
{
	if (sec->n > 0 && dev->attestation == KG_ATT_BASIC && user_once(im, sec->username, line) != 0)
		goto fail;
	if (im->n == im->cap) {
		size_t cap = im->cap != 0 ? im->cap * 2 : 256;
		struct kg_device *d;
		unsigned long *l;

		if (cap > IMPORT_MAX_DEVICES) {
			snprintf(im->why, sizeof(im->why), "more than %d devices in one import",
				 IMPORT_MAX_DEVICES);
			goto fail;
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
	if (sec->n > 0 && im->n_secs == im->cap_secs) {
		size_t cap = im->cap_secs != 0 ? im->cap_secs * 2 : 64;
		struct row_sec *r = realloc(im->secs, cap * sizeof(*r));

		if (r == NULL)
			goto oom;
		im->secs = r;
		im->cap_secs = cap;
	}
	if (sec->n > 0) {
		sec->dev = im->n;
		sec->first = im->n_creds;
		im->n_creds += (size_t)sec->n;
		im->secs[im->n_secs++] = *sec;
	}
	im->devs[im->n] = *dev;
	im->lines[im->n++] = line;
	return 0;
oom:
	snprintf(im->why, sizeof(im->why), "out of memory");
fail:
	sec_wipe(sec);
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

static int csv_record(struct import *im, char *line, struct kg_device *dev, struct row_sec *sec)
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
	return build_device(im, val, dev, sec);
}

static int jsonl_record(struct import *im, const char *line, struct kg_device *dev,
			struct row_sec *sec)
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
	rc = build_device(im, val, dev, sec);
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
	struct row_sec sec;
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
		sec.n = 0;
		if ((im->fmt == FMT_CSV ? csv_record(im, line, &dev, &sec)
					: jsonl_record(im, line, &dev, &sec)) != 0 ||
		    push(im, &dev, &sec, no) != 0) {
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
	if (line != NULL)   /* it held secrets */
		OPENSSL_cleanse(line, cap);
	free(line);
	return rc;
}

/*
 * Before the slow part: a device id or a basic user name the registry already holds is
 * refused now, not after minutes of scrypt (the transaction checks both again, so a
 * writer in between changes nothing). Only when there are secrets to make. 0, or an
 * exit code after one error line.
 */
static int precheck(const struct import *im, struct kg_registry *reg, const char *cmd)
{
	char owner[KG_DEVICE_ID_MAX + 1];
	struct kg_device d;
	int rc;

	if (im->n_creds == 0)
		return 0;
	for (size_t i = 0; i < im->n; i++) {
		if ((rc = kg_registry_device_get(reg, im->devs[i].id, &d)) == 0) {
			kg_cli_err("%s: %s:%lu: device %s: already exists (in the registry or on an earlier line), or its thumbprint is taken; nothing imported",
				   cmd, im->name, im->lines[i], im->devs[i].id);
			return KG_EXIT_REFUSED;
		}
		if (rc != KG_E_NOTFOUND)
			goto fail;
	}
	for (size_t j = 0; j < im->n_secs; j++) {
		const struct row_sec *sec = &im->secs[j];

		if (sec->username[0] == '\0')
			continue;
		if ((rc = kg_registry_cred_find(reg, KG_ATT_BASIC, sec->username, owner)) == 0) {
			kg_cli_err("%s: %s:%lu: device %s: user name %s belongs to another device; nothing imported",
				   cmd, im->name, im->lines[sec->dev], im->devs[sec->dev].id, sec->username);
			return KG_EXIT_REFUSED;
		}
		if (rc != KG_E_NOTFOUND)
			goto fail;
	}
	return 0;
fail:
	kg_cli_err("%s: cannot read the registry: %s; nothing imported", cmd, kg_registry_strerror(reg, rc));
	return kg_cli_exit_for(rc);
}

/* A KDF thread: take the next row with secrets, make its credentials into creds[]. */
static void *make_rows(void *arg)
{
	struct import *im = arg;
	struct kg_cli_secret shown;
	size_t i;

	while ((i = atomic_fetch_add(&im->next, 1)) < im->n_secs) {
		struct row_sec *sec = &im->secs[i];
		const struct kg_device *dev = &im->devs[sec->dev];

		for (int k = 0; k < sec->n && sec->rc == KG_EXIT_OK; k++) {
			struct kg_credential *c = &im->creds[sec->first + (size_t)k];

			im->cred_dev[sec->first + (size_t)k] = sec->dev;
			sec->rc = kg_cli_cred_build(dev->attestation, (enum kg_cred_slot)k, sec->username,
						    sec->given[k], c, &shown, sec->why, sizeof(sec->why));
			if (sec->rc == KG_EXIT_OK && sec->given[k] == NULL)
				(void)kg_strlcpy(sec->shown[k], shown.value, sizeof(sec->shown[k]));
		}
		kg_cli_secret_wipe(&shown);
	}
	return NULL;
}

/*
 * Make every credential (stored forms into im->creds) in `threads` threads: scrypt is
 * the cost, about 0.2 s of one core per basic row. 0, or -1 with *bad the secs index
 * of the first row that failed (its rc and why set).
 */
static int make_all(struct import *im, unsigned threads, size_t *bad)
{
	pthread_t tid[KDF_THREADS_MAX];
	unsigned started = 0;

	if (im->n_creds == 0)
		return 0;
	im->creds = calloc(im->n_creds, sizeof(*im->creds));
	im->cred_dev = calloc(im->n_creds, sizeof(*im->cred_dev));
	if (im->creds == NULL || im->cred_dev == NULL) {
		*bad = 0;
		im->secs[0].rc = KG_EXIT_RUNTIME;
		snprintf(im->secs[0].why, sizeof(im->secs[0].why), "out of memory");
		return -1;
	}
	atomic_store(&im->next, 0);
	if (threads > im->n_secs)
		threads = (unsigned)im->n_secs;
	/* This thread works too; a thread that cannot start just leaves more for the rest. */
	for (unsigned t = 1; t < threads; t++)
		if (pthread_create(&tid[started], NULL, make_rows, im) == 0)
			started++;
	(void)make_rows(im);
	for (unsigned t = 0; t < started; t++)
		(void)pthread_join(tid[t], NULL);
	for (size_t i = 0; i < im->n_secs; i++) {
		if (im->secs[i].rc != KG_EXIT_OK) {
			*bad = i;
			return -1;
		}
	}
	return 0;
}

static bool has_shown(const struct row_sec *sec)
{
	return sec->shown[0][0] != '\0' || sec->shown[1][0] != '\0';
}

/*
 * The generated secrets, once, to out: JSON lines {id, auth, username (basic only),
 * primary, secondary (when generated)}, or a table with a header. Given secrets are
 * not written. Returns how many devices had one, or -1 on a write error.
 */
static long write_secrets(const struct import *im, FILE *out, bool json)
{
	size_t wid = 2, wuser = 8;
	long count = 0;

	for (size_t i = 0; i < im->n_secs; i++) {
		const struct row_sec *sec = &im->secs[i];

		if (!has_shown(sec))
			continue;
		count++;
		if (strlen(im->devs[sec->dev].id) > wid)
			wid = strlen(im->devs[sec->dev].id);
		if (strlen(sec->username) > wuser)
			wuser = strlen(sec->username);
	}
	if (count > 0 && !json)
		fprintf(out, "%-*s %-6s %-*s %-44s %s\n", (int)wid, "ID", "AUTH", (int)wuser, "USERNAME",
			"PRIMARY", "SECONDARY");
	for (size_t i = 0; i < im->n_secs; i++) {
		const struct row_sec *sec = &im->secs[i];
		const struct kg_device *dev = &im->devs[sec->dev];

		if (!has_shown(sec))
			continue;
		if (json) {
			struct json_object *o = json_object_new_object();

			if (o == NULL)
				return -1;
			json_object_object_add(o, "id", json_object_new_string(dev->id));
			json_object_object_add(o, "auth", json_object_new_string(kg_cli_auth_str(dev->attestation)));
			if (sec->username[0] != '\0')
				json_object_object_add(o, "username", json_object_new_string(sec->username));
			for (int k = 0; k < KG_CRED_SLOT_MAX; k++)
				if (sec->shown[k][0] != '\0')
					json_object_object_add(o, kg_cred_slot_str((enum kg_cred_slot)k),
							       json_object_new_string(sec->shown[k]));
			fprintf(out, "%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
									    JSON_C_TO_STRING_NOSLASHESCAPE));
			json_object_put(o);
		} else {
			fprintf(out, "%-*s %-6s %-*s %-44s %s\n", (int)wid, dev->id,
				kg_cli_auth_str(dev->attestation), (int)wuser,
				sec->username[0] != '\0' ? sec->username : "-",
				sec->shown[0][0] != '\0' ? sec->shown[0] : "-",
				sec->shown[1][0] != '\0' ? sec->shown[1] : "-");
		}
	}
	return fflush(out) == 0 && !ferror(out) ? count : -1;
}

/* --secrets-out: a new file, 0600 whatever the umask; an existing one is refused (it
 * may be another run's secrets). */
static int secrets_open(const char *cmd, const char *path, FILE **out)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);

	if (fd < 0) {
		kg_cli_err("%s: --secrets-out %s: %s%s; nothing imported", cmd, path, strerror(errno),
			   errno == EEXIST ? " (it is never overwritten)" : "");
		return errno == EEXIST ? KG_EXIT_REFUSED : KG_EXIT_RUNTIME;
	}
	if (fchmod(fd, 0600) != 0 || (*out = fdopen(fd, "w")) == NULL) {
		kg_cli_err("%s: --secrets-out %s: %s; nothing imported", cmd, path, strerror(errno));
		close(fd);
		(void)unlink(path);
		return KG_EXIT_RUNTIME;
	}
	return KG_EXIT_OK;
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

/* Wipe and free everything the import holds. */
static void import_free(struct import *im)
{
	for (size_t i = 0; i < im->n_secs; i++)
		sec_wipe(&im->secs[i]);
	if (im->creds != NULL)
		OPENSSL_cleanse(im->creds, im->n_creds * sizeof(*im->creds));
	free(im->creds);
	free(im->cred_dev);
	free(im->secs);
	tdestroy(im->users, free);
	free(im->devs);
	free(im->lines);
}

static unsigned kdf_threads_default(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	return n < 1 ? 1 : n > KDF_THREADS_DEFAULT_MAX ? KDF_THREADS_DEFAULT_MAX : (unsigned)n;
}

int kg_cli_device_import(struct kg_cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "format", required_argument, NULL, 'f' },
		{ "json", no_argument, NULL, 'j' },
		{ "secrets-out", required_argument, NULL, 'o' },
		{ "kdf-threads", required_argument, NULL, 'k' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *cmd = "device import", *secrets_path = NULL;
	struct import im = { .fmt = FMT_AUTO };
	struct kg_registry *reg = NULL;
	unsigned long bad_line = 0;
	unsigned threads = kdf_threads_default();
	bool json = false, file_made = false;
	FILE *in, *sout = NULL;
	char text[128], *end;
	size_t bad = 0;
	long shown = 0;
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
		case 'j':
			json = true;
			break;
		case 'o':
			secrets_path = optarg;
			break;
		case 'k': {
			unsigned long v;

			errno = 0;
			v = strtoul(optarg, &end, 10);
			if (errno != 0 || end == optarg || *end != '\0' || optarg[0] == '-' || v < 1 ||
			    v > KDF_THREADS_MAX)
				return kg_cli_usage_err("%s: --kdf-threads wants 1..%d, not '%s'", cmd,
							KDF_THREADS_MAX, optarg);
			threads = (unsigned)v;
			break;
		}
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
	if ((rc = kg_cli_open_registry(cli, KG_REG_READWRITE, false, &reg)) != KG_EXIT_OK ||
	    (rc = precheck(&im, reg, cmd)) != KG_EXIT_OK)
		goto out;
	/* The secrets file before the slow part: a name already taken costs nothing. */
	if (secrets_path != NULL) {
		if ((rc = secrets_open(cmd, secrets_path, &sout)) != KG_EXIT_OK)
			goto out;
		file_made = true;
	}
	if (make_all(&im, threads, &bad) != 0) {
		kg_cli_err("%s: %s:%lu: device %s: %s; nothing imported", cmd, im.name,
			   im.lines[im.secs[bad].dev], im.devs[im.secs[bad].dev].id, im.secs[bad].why);
		rc = im.secs[bad].rc;
		goto out;
	}
	/* Written and on disk before the commit: after it, a failed write would lose them. */
	if (sout != NULL &&
	    ((shown = write_secrets(&im, sout, json)) < 0 || fsync(fileno(sout)) != 0)) {
		kg_cli_err("%s: --secrets-out %s: %s; nothing imported", cmd, secrets_path, strerror(errno));
		rc = KG_EXIT_RUNTIME;
		goto out;
	}

	rc = kg_registry_device_add_many_cred(reg, im.devs, im.n, im.creds, im.cred_dev, im.n_creds, &bad);
	if (rc != 0) {
		if (im.n > 0 && bad >= im.n && bad - im.n < im.n_creds && (rc == KG_E_EXISTS || rc == KG_E_INVALID)) {
			size_t d = im.cred_dev[bad - im.n];

			kg_cli_err("%s: %s:%lu: device %s: %s; nothing imported", cmd, im.name, im.lines[d],
				   im.devs[d].id, rc == KG_E_EXISTS ? reg->errmsg : "credential refused by the registry");
		} else if (im.n > 0 && bad < im.n && (rc == KG_E_EXISTS || rc == KG_E_INVALID)) {
			kg_cli_err("%s: %s:%lu: device %s: %s; nothing imported", cmd, im.name,
				   im.lines[bad], im.devs[bad].id,
				   rc == KG_E_EXISTS ? "already exists (in the registry or on an earlier line), or its thumbprint is taken"
						     : "refused by the registry");
		} else {
			kg_cli_err("%s: cannot write the registry: %s; nothing imported", cmd,
				   kg_registry_strerror(reg, rc));
		}
		rc = rc == KG_E_EXISTS || rc == KG_E_INVALID ? KG_EXIT_REFUSED : kg_cli_exit_for(rc);
		goto out;
	}
	kg_registry_close(reg);
	reg = NULL;
	file_made = false;   /* committed: the file is the only copy of the new secrets */
	if (sout != NULL) {
		if (shown > 0)
			fprintf(stderr, "ktlsgate: %ld devices' new secrets are in %s (0600), written once:"
				" give them to the devices, then delete it\n", shown, secrets_path);
	} else if ((shown = write_secrets(&im, stdout, json)) > 0) {
		fprintf(stderr, "ktlsgate: the secrets above are shown once: give them to the devices now\n");
	} else if (shown < 0) {
		kg_cli_err("%s: imported, but the new secrets could not be written to stdout: rotate them"
			   " (device credentials ID --rotate)", cmd);
	}
	nrc = notify_all(cli, &im, text, sizeof(text));
	/* With --json stdout holds only the secrets' JSON lines. */
	fprintf(json && sout == NULL ? stderr : stdout, "imported %zu devices (%s)\n", im.n, text);
	rc = nrc == KG_EXIT_RUNTIME ? KG_EXIT_RUNTIME : KG_EXIT_OK;
out:
	kg_registry_close(reg);
	if (sout != NULL)
		fclose(sout);
	if (file_made)   /* nothing imported: its secrets name nothing */
		(void)unlink(secrets_path);
	import_free(&im);
	return rc;
}
