/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * cli_registry.c - `ktlsgate registry migrate|copy`: the registry as a whole.
 *   migrate  read the version (kg_registry_version: nothing written), open the
 *            configured registry read-write (created, or migrated forward) and print
 *            "registry LOCATION: schema FROM -> TO" or "schema N, current".
 *   copy     every CA, device and credential of --from into an empty --to, through the
 *            generic interface only (so any store to any store), every field as it is
 *            (kg_registry_import: one transaction, times and challenges kept), then both
 *            re-read and compared field by field; "copied N CAs, M devices, K credentials".
 * Locations are shown with their password redacted.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "ops/err.h"

const char kg_cli_usage_registry[] =
	"ktlsgate registry migrate\n"
	"ktlsgate registry copy --from LOCATION --to LOCATION\n"
	"  LOCATION: a file path or sqlite:PATH (SQLite), or postgresql://... (PostgreSQL)\n";

/* ---- migrate ------------------------------------------------------------------ */

/*
 * The schema version before opening read-write, read without writing (0: no registry
 * yet). -1 when it cannot be read (unreachable, foreign, newer): the read-write open
 * that follows refuses the same registry and says why in the store's words.
 */
static int version_before(const char *loc)
{
	char err[KG_ERRBUF];
	int v = -1;

	return kg_registry_version(loc, &v, err, sizeof(err)) == 0 ? v : -1;
}

static int registry_migrate(struct kg_cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct kg_registry *reg = NULL;
	int c, rc, from, to;

	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		switch (c) {
		case 'h':
			fputs(kg_cli_usage_registry, stdout);
			return KG_EXIT_OK;
		default:
			return kg_cli_bad_option(c, argv, "registry migrate");
		}
	}
	if (optind < argc)
		return kg_cli_usage_err("registry migrate: unexpected argument '%s'", argv[optind]);
	if ((rc = kg_cli_setup(cli, true)) != KG_EXIT_OK)
		return rc;
	from = version_before(cli->registry);
	if ((rc = kg_cli_open_registry(cli, KG_REG_READWRITE, false, &reg)) != KG_EXIT_OK)
		return rc;
	to = kg_registry_schema_version(reg);
	kg_registry_close(reg);
	if (to < 0) {
		kg_cli_err("registry %s: cannot read the schema version: %s", cli->registry_shown,
			   kg_err_str(to));
		return KG_EXIT_RUNTIME;
	}
	if (from == to)
		printf("registry %s: schema %d, current\n", cli->registry_shown, to);
	else if (from < 0)   /* unreadable before, yet the open worked: a race, say so */
		printf("registry %s: schema ? -> %d\n", cli->registry_shown, to);
	else
		printf("registry %s: schema %d -> %d\n", cli->registry_shown, from, to);
	return KG_EXIT_OK;
}

/* ---- copy --------------------------------------------------------------------- */

/* One registry's contents in memory, ordered as the lists return them. */
struct contents {
	struct kg_ca *cas;
	size_t n_cas, cap_cas;
	struct kg_device *devs;
	size_t n_devs, cap_devs;
	struct kg_credential *creds;   /* creds[j] belongs to devs[cred_dev[j]] */
	size_t *cred_dev;
	size_t n_creds, cap_creds;
};

static void contents_free(struct contents *c)
{
	for (size_t i = 0; i < c->n_cas; i++)
		kg_ca_fini(&c->cas[i]);
	free(c->cas);
	free(c->devs);
	free(c->creds);
	free(c->cred_dev);
	memset(c, 0, sizeof(*c));
}

/* Grow *arr (elements of size sz) to hold one more; 0 or KG_E_RESOURCE. */
static int grow(void **arr, size_t *cap, size_t n, size_t sz)
{
	void *p;
	size_t ncap;

	if (n < *cap)
		return 0;
	ncap = *cap ? *cap * 2 : 64;
	p = realloc(*arr, ncap * sz);
	if (p == NULL)
		return KG_E_RESOURCE;
	*arr = p;
	*cap = ncap;
	return 0;
}

static int collect_ca(const struct kg_ca *ca, void *arg)
{
	struct contents *c = arg;
	struct kg_ca *dst;

	if (grow((void **)&c->cas, &c->cap_cas, c->n_cas, sizeof(*c->cas)) != 0)
		return KG_E_RESOURCE;
	dst = &c->cas[c->n_cas];
	*dst = *ca;
	dst->pem = strdup(ca->pem != NULL ? ca->pem : "");
	if (dst->pem == NULL)
		return KG_E_RESOURCE;
	c->n_cas++;
	return 0;
}

static int collect_dev(const struct kg_device *dev, void *arg)
{
	struct contents *c = arg;

	if (grow((void **)&c->devs, &c->cap_devs, c->n_devs, sizeof(*c->devs)) != 0)
		return KG_E_RESOURCE;
	c->devs[c->n_devs++] = *dev;
	return 0;
}

/* Read everything: CAs, devices, then each device's credentials (a point query per
 * device after the list, not inside its callback: no store has to allow nesting). */
static int read_all(struct kg_registry *reg, struct contents *c, const char **what)
{
	struct kg_credential got[KG_CRED_PER_DEVICE];
	size_t n;
	int rc;

	*what = "cannot list CAs";
	if ((rc = kg_registry_ca_list(reg, collect_ca, c)) != 0)
		return rc;
	*what = "cannot list devices";
	if ((rc = kg_registry_device_list(reg, -1, collect_dev, c)) != 0)
		return rc;
	*what = "cannot read credentials";
	for (size_t i = 0; i < c->n_devs; i++) {
		if ((rc = kg_registry_cred_get(reg, c->devs[i].id, got, &n)) != 0)
			return rc;
		for (size_t k = 0; k < n; k++) {
			if (grow((void **)&c->creds, &c->cap_creds, c->n_creds, sizeof(*c->creds)) != 0)
				return KG_E_RESOURCE;
			/* cred_dev grows with creds: the same capacity, kept in step */
			size_t *p = realloc(c->cred_dev, c->cap_creds * sizeof(*p));

			if (p == NULL)
				return KG_E_RESOURCE;
			c->cred_dev = p;
			c->creds[c->n_creds] = got[k];
			c->cred_dev[c->n_creds++] = i;
		}
	}
	return 0;
}

/* Compare what the copy must preserve, every field of the row structs; *field names
 * the first difference. */
static bool same_ca(const struct kg_ca *a, const struct kg_ca *b, const char **field)
{
	*field = strcmp(a->name, b->name) != 0			   ? "name"
		 : strcmp(a->sha256, b->sha256) != 0		   ? "sha256"
		 : strcmp(a->subject, b->subject) != 0		   ? "subject"
		 : a->verified != b->verified			   ? "verified"
		 : strcmp(a->challenge, b->challenge) != 0	   ? "challenge"
		 : strcmp(a->backend, b->backend) != 0		   ? "backend"
		 : a->auto_enroll != b->auto_enroll		   ? "auto_enroll"
		 : a->status != b->status			   ? "status"
		 : a->has_username_check != b->has_username_check ||
				   (a->has_username_check && a->username_check != b->username_check)
			 ? "username_check"
		 : a->added_at != b->added_at			   ? "added_at"
		 : a->not_after != b->not_after			   ? "not_after"
		 : strcmp(a->pem, b->pem) != 0			   ? "pem"
								   : NULL;
	return *field == NULL;
}

static bool same_dev(const struct kg_device *a, const struct kg_device *b, const char **field)
{
	*field = strcmp(a->id, b->id) != 0			     ? "id"
		 : a->status != b->status			     ? "status"
		 : a->attestation != b->attestation		     ? "attestation"
		 : strcmp(a->thumb_primary, b->thumb_primary) != 0   ? "thumbprint"
		 : strcmp(a->thumb_secondary, b->thumb_secondary) != 0 ? "secondary thumbprint"
		 : strcmp(a->backend, b->backend) != 0		     ? "backend"
		 : strcmp(a->ca_name, b->ca_name) != 0		     ? "ca"
		 : a->created_at != b->created_at		     ? "created_at"
		 : a->updated_at != b->updated_at		     ? "updated_at"
		 : a->last_seen != b->last_seen			     ? "last_seen"
		 : a->cert_not_after != b->cert_not_after	     ? "cert_not_after"
								     : NULL;
	return *field == NULL;
}

static bool same_cred(const struct kg_credential *a, const struct kg_credential *b,
		      const char **field)
{
	*field = a->kind != b->kind			      ? "kind"
		 : a->slot != b->slot			      ? "slot"
		 : strcmp(a->username, b->username) != 0      ? "username"
		 : strcmp(a->secret, b->secret) != 0	      ? "secret"
		 : a->created_at != b->created_at	      ? "created_at"
							      : NULL;
	return *field == NULL;
}

/* Source and destination re-read: the same rows? One line saying the first
 * difference (never a secret's value) and false otherwise. */
static bool same_contents(const struct contents *s, const struct contents *d)
{
	const char *field;

	if (s->n_cas != d->n_cas || s->n_devs != d->n_devs || s->n_creds != d->n_creds) {
		kg_cli_err("registry copy: verification failed: source has %zu CAs, %zu devices, %zu "
			   "credentials; destination %zu, %zu, %zu", s->n_cas, s->n_devs, s->n_creds,
			   d->n_cas, d->n_devs, d->n_creds);
		return false;
	}
	for (size_t i = 0; i < s->n_cas; i++)
		if (!same_ca(&s->cas[i], &d->cas[i], &field)) {
			kg_cli_err("registry copy: verification failed: CA %s: %s differs",
				   s->cas[i].name, field);
			return false;
		}
	for (size_t i = 0; i < s->n_devs; i++)
		if (!same_dev(&s->devs[i], &d->devs[i], &field)) {
			kg_cli_err("registry copy: verification failed: device %s: %s differs",
				   s->devs[i].id, field);
			return false;
		}
	for (size_t j = 0; j < s->n_creds; j++)
		if (s->cred_dev[j] != d->cred_dev[j] || !same_cred(&s->creds[j], &d->creds[j], &field)) {
			kg_cli_err("registry copy: verification failed: device %s: credential %s %s: %s "
				   "differs", s->devs[s->cred_dev[j]].id,
				   kg_attestation_str(s->creds[j].kind), kg_cred_slot_str(s->creds[j].slot),
				   s->cred_dev[j] != d->cred_dev[j] ? "owner" : field);
			return false;
		}
	return true;
}

static int count_one(const void *row, void *arg)
{
	(void)row;
	(*(size_t *)arg)++;
	return 0;
}

static int count_ca(const struct kg_ca *ca, void *arg)
{
	return count_one(ca, arg);
}

static int count_dev(const struct kg_device *dev, void *arg)
{
	return count_one(dev, arg);
}

/*
 * Open the destination read-write, refusing anything but an empty registry without
 * writing to it: an existing one is looked at read-only first (a read-write open could
 * migrate it). A missing file or a database without our schema is created.
 */
static int open_empty_dest(const char *loc, const char *shown, struct kg_registry **out)
{
	struct kg_registry *ro = NULL;
	char err[KG_ERRBUF];
	size_t cas = 0, devs = 0;
	int rc, v = 0, latest;

	*out = NULL;
	latest = kg_registry_location_is_uri(loc) ? kg_registry_pg_schema_latest()
						  : kg_registry_sqlite_schema_latest();
	if (kg_registry_version(loc, &v, err, sizeof(err)) != 0) {
		kg_cli_err("registry copy: destination %s", err);
		return KG_EXIT_RUNTIME;
	}
	if (v > 0 && v < latest) {
		kg_cli_err("registry copy: destination %s has schema %d, older than this build "
			   "(%d): not an empty registry; nothing copied", shown, v, latest);
		return KG_EXIT_USAGE;
	}
	if (v > 0) {
		rc = kg_registry_open(loc, KG_REG_READONLY, &ro, err, sizeof(err));
		if (rc == 0) {
			rc = kg_registry_ca_list(ro, count_ca, &cas);
			if (rc == 0)
				rc = kg_registry_device_list(ro, -1, count_dev, &devs);
			if (rc != 0) {
				kg_cli_err("registry copy: destination %s: %s", shown,
					   kg_registry_strerror(ro, rc));
				kg_registry_close(ro);
				return KG_EXIT_RUNTIME;
			}
			kg_registry_close(ro);
			if (cas > 0 || devs > 0) {
				kg_cli_err("registry copy: destination %s is not empty (%zu CAs, %zu "
					   "devices); nothing copied", shown, cas, devs);
				return KG_EXIT_USAGE;
			}
		}
		/* A read-only open that fails on a current schema: the read-write open
		 * below says why (its error is the store's). */
	}
	return kg_cli_open_location(loc, KG_REG_READWRITE, out) == 0 ? KG_EXIT_OK : KG_EXIT_RUNTIME;
}

/* Write src into the empty registry dst, every row as it is, in one transaction
 * (kg_registry_import: all or nothing, so a refused row leaves dst as empty as it
 * was). Returns an exit code after one line on failure. */
static int write_all(struct kg_registry *dst, const struct contents *src)
{
	size_t bad = 0, nc = src->n_cas, nd = src->n_devs;
	const char *why;
	int rc;

	dst->errmsg[0] = '\0';   /* below, the store's words for this call only */
	rc = kg_registry_import(dst, src->cas, nc, src->devs, nd, src->creds, src->cred_dev,
				src->n_creds, &bad);
	if (rc == 0)
		return KG_EXIT_OK;
	/* Even for a conflict: which column the destination found taken is the news. */
	why = dst->errmsg[0] != '\0' ? dst->errmsg : kg_err_str(rc);
	if (bad < nc)
		kg_cli_err("registry copy: CA %s refused by the destination: %s; nothing copied",
			   src->cas[bad].name, why);
	else if (bad - nc < nd)
		kg_cli_err("registry copy: device %s refused by the destination: %s; nothing copied",
			   src->devs[bad - nc].id, why);
	else if (bad - nc - nd < src->n_creds)
		kg_cli_err("registry copy: device %s: credential %s %s refused by the destination: %s; "
			   "nothing copied", src->devs[src->cred_dev[bad - nc - nd]].id,
			   kg_attestation_str(src->creds[bad - nc - nd].kind),
			   kg_cred_slot_str(src->creds[bad - nc - nd].slot), why);
	else
		kg_cli_err("registry copy: not written: %s; nothing copied", why);
	/* Exit 3 whatever the row's error: the destination was empty, so a conflict is the
	 * source's own inconsistency or another writer, not the operator's usage. */
	return KG_EXIT_RUNTIME;
}

static int registry_copy(struct kg_cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "from", required_argument, NULL, 'f' },
		{ "to", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	char from[PATH_MAX], to[PATH_MAX], from_shown[PATH_MAX], to_shown[PATH_MAX];
	const char *from_arg = NULL, *to_arg = NULL, *what = "";
	struct contents src = { 0 }, dst = { 0 }, again = { 0 };
	struct kg_registry *in = NULL, *out = NULL;
	int c, rc;

	(void)cli;   /* the locations are the arguments: no config, no -r */
	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		switch (c) {
		case 'f':
			from_arg = optarg;
			break;
		case 't':
			to_arg = optarg;
			break;
		case 'h':
			fputs(kg_cli_usage_registry, stdout);
			return KG_EXIT_OK;
		default:
			return kg_cli_bad_option(c, argv, "registry copy");
		}
	}
	if (optind < argc)
		return kg_cli_usage_err("registry copy: unexpected argument '%s'", argv[optind]);
	if (from_arg == NULL || to_arg == NULL)
		return kg_cli_usage_err("registry copy: needs --from LOCATION and --to LOCATION");
	if ((rc = kg_cli_location("registry copy: --from", from_arg, from, sizeof(from))) != 0 ||
	    (rc = kg_cli_location("registry copy: --to", to_arg, to, sizeof(to))) != 0)
		return rc;
	(void)kg_registry_location_redact(from, from_shown, sizeof(from_shown));
	(void)kg_registry_location_redact(to, to_shown, sizeof(to_shown));
	if (strcmp(from, to) == 0)
		return kg_cli_usage_err("registry copy: --from and --to are the same registry");

	/* The source is only read: a missing file is an error, never created. */
	if (!kg_registry_location_is_uri(from) && access(from, F_OK) != 0) {
		kg_cli_err("registry %s: %s", from_shown, strerror(errno));
		return KG_EXIT_RUNTIME;
	}
	if (kg_cli_open_location(from, KG_REG_READONLY, &in) != 0)
		return KG_EXIT_RUNTIME;
	if ((rc = read_all(in, &src, &what)) != 0) {
		kg_cli_err("registry %s: %s: %s", from_shown, what, kg_registry_strerror(in, rc));
		rc = KG_EXIT_RUNTIME;
		goto out;
	}
	if ((rc = open_empty_dest(to, to_shown, &out)) != KG_EXIT_OK)
		goto out;
	if ((rc = write_all(out, &src)) != KG_EXIT_OK)
		goto out;

	/* Both re-read from their stores, not from what was sent (freed first: three
	 * copies of a large fleet in memory at once would be one too many). */
	contents_free(&src);
	if ((rc = read_all(in, &again, &what)) != 0) {
		kg_cli_err("registry %s: %s: %s", from_shown, what, kg_registry_strerror(in, rc));
		rc = KG_EXIT_RUNTIME;
		goto out;
	}
	if ((rc = read_all(out, &dst, &what)) != 0) {
		kg_cli_err("registry %s: %s: %s", to_shown, what, kg_registry_strerror(out, rc));
		rc = KG_EXIT_RUNTIME;
		goto out;
	}
	if (!same_contents(&again, &dst)) {
		rc = KG_EXIT_RUNTIME;
		goto out;
	}
	printf("copied %zu CAs, %zu devices, %zu credentials\n", dst.n_cas, dst.n_devs, dst.n_creds);
	rc = KG_EXIT_OK;
out:
	contents_free(&src);
	contents_free(&again);
	contents_free(&dst);
	kg_registry_close(in);
	kg_registry_close(out);
	return rc;
}

int kg_cli_registry(struct kg_cli *cli, int argc, char **argv)
{
	static const struct kg_cli_verb verbs[] = {
		{ "migrate", registry_migrate },
		{ "copy", registry_copy },
		{ NULL, NULL },
	};

	return kg_cli_dispatch(cli, argc, argv, verbs, kg_cli_usage_registry);
}
