/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * cli.c - `ktlsgate`, the admin CLI: global options, noun dispatch, usage text and
 * the helpers the command files (cli_pki.c, cli_ca.c, cli_device.c, cli_import.c,
 * cli_verify.c, cli_session.c, cli_block.c, ...) share. Scripts drive this program, so its output formats and exit
 * codes are a contract (docs/cli.md): every error is one "ktlsgate: ..." line on
 * stderr, results go to stdout, exit 0/1/2/3 = ok/usage/refused/runtime.
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/asn1.h>

#include "cli/cli.h"
#include "ops/control.h"
#include "ops/err.h"
#include "ops/log.h"
#include "policy/identity.h"

#ifndef KG_VERSION
#define KG_VERSION "0.1.0"
#endif

static const char usage_global[] =
	"usage: ktlsgate [-c FILE] [-r REGISTRY] [-h|--help] [--version] <noun> <verb> [args]\n"
	"  -c, --config FILE      config file (default " KG_CLI_DEFAULT_CONFIG ")\n"
	"  -r, --registry LOC     registry (overrides the config's): a file path, sqlite:PATH,\n"
	"                         or a postgresql:// URI\n"
	"exit codes: 0 ok, 1 usage error, 2 not found/refused/verification failed,\n"
	"            3 runtime error (I/O, corrupt registry, daemon unreachable)\n"
	"\n";

const char kg_cli_usage_pki[] =
	"ktlsgate pki root|intermediate|device|server|self-signed --cn CN --out DIR [--ca DIR]\n"
	"             [--days N] [--not-before UNIX_TIME] [--eku client|server|none] [--rsa]\n"
	"             [--not-ca] [--san LIST]\n"
	"ktlsgate pki verification-cert --ca DIR --challenge CODE --out FILE\n"
	"ktlsgate pki crl --ca DIR --out FILE [CERT...]\n";

const char kg_cli_usage_ca[] =
	"ktlsgate ca add FILE [--name NAME] [--backend B] [--auto-enroll] [--username-check U]\n"
	"ktlsgate ca verify NAME CERT\n"
	"ktlsgate ca list [--json]\n"
	"ktlsgate ca set NAME [--backend B] [--auto-enroll on|off] [--status S]\n"
	"             [--username-check U]\n"
	"ktlsgate ca remove NAME\n"
	"  S: enabled|disabled|revoked (revoked is final)\n"
	"  U: strict|rewrite|pass, or default ([daemon] username_check)\n";

const char kg_cli_usage_device[] =
	"ktlsgate device add ID [--thumbprint HEX [--secondary HEX] | --cert FILE] [--backend B]\n"
	"             [--status S] [--auth x509|thumbprint|sas|token|basic]\n"
	"             [--username U] [--password-stdin] [--json]\n"
	"ktlsgate device set ID [--status S] [--backend B] [--thumbprint HEX] [--secondary HEX]\n"
	"             [--cert FILE]\n"
	"ktlsgate device show ID [--json]\n"
	"ktlsgate device list [--status S] [--json]\n"
	"ktlsgate device expiring --days N [--json]\n"
	"ktlsgate device remove ID\n"
	"ktlsgate device credentials ID [--json]\n"
	"ktlsgate device credentials ID --rotate [--slot primary|secondary] [--password-stdin]\n"
	"             [--json]\n"
	"ktlsgate device import FILE|- [--format csv|jsonl] [--json] [--secrets-out FILE]\n"
	"             [--kdf-threads N]\n"
	"             (CSV header or JSON keys: id thumbprint secondary cert backend status\n"
	"              auth username secret secondary_secret)\n"
	"  S: enabled|disabled|suspended|quarantined|decommissioned\n";

const char kg_cli_usage_verify[] =
	"ktlsgate verify CERT [--chain FILE] [--ca FILE] [--at UNIX_TIME]\n";

const char kg_cli_usage_session[] =
	"ktlsgate session list [--json]\n"
	"ktlsgate session kill DEVICE_ID\n";

const char kg_cli_usage_status[] =
	"ktlsgate status [--json]\n";

const char kg_cli_usage_reload[] =
	"ktlsgate reload\n";

const char kg_cli_usage_upgrade[] =
	"ktlsgate upgrade [--timeout SECONDS]\n";

static void print_usage(FILE *f)
{
	fputs(usage_global, f);
	fputs(kg_cli_usage_pki, f);
	fputs(kg_cli_usage_ca, f);
	fputs(kg_cli_usage_device, f);
	fputs(kg_cli_usage_verify, f);
	fputs(kg_cli_usage_session, f);
	fputs(kg_cli_usage_status, f);
	fputs(kg_cli_usage_reload, f);
	fputs(kg_cli_usage_upgrade, f);
	fputs(kg_cli_usage_tpm, f);
	fputs(kg_cli_usage_block, f);
	fputs(kg_cli_usage_reasons, f);
	fputs(kg_cli_usage_registry, f);
}

static void verr(const char *fmt, va_list ap)
{
	char line[1024];
	size_t i;

	vsnprintf(line, sizeof(line), fmt, ap);
	/* Library messages may carry newlines; the contract is one line per error. */
	for (i = 0; line[i] != '\0'; i++)
		if ((unsigned char)line[i] < 0x20 || line[i] == 0x7f)
			line[i] = ' ';
	fprintf(stderr, "ktlsgate: %s\n", line);
}

void kg_cli_err(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	verr(fmt, ap);
	va_end(ap);
}

int kg_cli_usage_err(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	verr(fmt, ap);
	va_end(ap);
	return KG_EXIT_USAGE;
}

int kg_cli_check_device_id(const char *cmd, const char *id)
{
	size_t module_off;

	if (!kg_identity_valid(id, strlen(id), &module_off))
		return kg_cli_usage_err("%s: bad device id '%s'", cmd, id);
	return KG_EXIT_OK;
}

int kg_cli_location(const char *what, const char *arg, char *out, size_t cap)
{
	char shown[PATH_MAX];

	if (strncmp(arg, "sqlite:", 7) == 0)
		arg += 7;
	(void)kg_registry_location_redact(arg, shown, sizeof(shown));
	if (arg[0] == '\0')
		return kg_cli_usage_err("%s: empty registry location", what);
	if (kg_registry_location_has_scheme(arg) && !kg_registry_location_is_uri(arg))
		return kg_cli_usage_err("%s: '%s' is neither a file path (or sqlite:PATH) nor a "
					"PostgreSQL URI (postgresql://... or postgres://...)", what, shown);
	if (kg_strlcpy(out, arg, cap) != 0)
		return kg_cli_usage_err("%s: registry location too long", what);
	return KG_EXIT_OK;
}

int kg_cli_exit_for(int err)
{
	switch (err) {
	case KG_OK:
		return KG_EXIT_OK;
	case KG_E_NOTFOUND:
	case KG_E_DENIED:
	case KG_E_EXISTS:
		return KG_EXIT_REFUSED;
	case KG_E_INVALID:
		return KG_EXIT_USAGE;
	default:
		return KG_EXIT_RUNTIME;
	}
}

int kg_cli_bad_option(int c, char **argv, const char *cmd)
{
	const char *what = optind > 0 ? argv[optind - 1] : "?";

	if (c == ':')
		return kg_cli_usage_err("%s: option %s needs a value", cmd, what);
	if (optopt != 0 && optopt != '?')
		return kg_cli_usage_err("%s: unknown option -%c", cmd, optopt);
	return kg_cli_usage_err("%s: unknown option %s", cmd, what);
}

int kg_cli_setup(struct kg_cli *cli, bool need_registry)
{
	bool required = need_registry && cli->registry_override == NULL;
	char err[KG_ERRBUF] = "";
	const char *reg;

	if (cli->cfg != NULL)
		return KG_EXIT_OK;
	cli->cfg = calloc(1, sizeof(*cli->cfg));
	if (cli->cfg == NULL) {
		kg_cli_err("out of memory");
		return KG_EXIT_RUNTIME;
	}
	if (access(cli->config_path, F_OK) != 0 && errno == ENOENT) {
		if (required) {
			kg_cli_err("config %s: %s (give -c FILE or -r REGISTRY)", cli->config_path,
				   strerror(ENOENT));
			return KG_EXIT_RUNTIME;
		}
		kg_config_defaults(cli->cfg);
	} else if (kg_config_load(cli->config_path, cli->cfg, err, sizeof(err)) != 0) {
		kg_cli_err("%s", err[0] != '\0' ? err : cli->config_path);
		return KG_EXIT_RUNTIME;
	} else {
		cli->cfg_from_file = true;
	}

	reg = cli->registry_override != NULL ? cli->registry_override : cli->cfg->registry;
	if (need_registry && reg[0] == '\0') {
		kg_cli_err("config %s names no registry (give -r REGISTRY)", cli->config_path);
		return KG_EXIT_RUNTIME;
	}
	if (cli->registry_override != NULL) {
		int rc = kg_cli_location("-r", reg, cli->registry, sizeof(cli->registry));

		if (rc != KG_EXIT_OK)
			return rc;
	} else if (kg_strlcpy(cli->registry, reg, sizeof(cli->registry)) != 0) {
		kg_cli_err("registry path too long");
		return KG_EXIT_USAGE;
	}
	(void)kg_registry_location_redact(cli->registry, cli->registry_shown,
					  sizeof(cli->registry_shown));
	if (kg_strlcpy(cli->control_socket,
		       cli->cfg->control_socket[0] != '\0' ? cli->cfg->control_socket
							    : KG_CLI_DEFAULT_CONTROL,
		       sizeof(cli->control_socket)) != 0) {
		kg_cli_err("control socket path too long");
		return KG_EXIT_RUNTIME;
	}
	return KG_EXIT_OK;
}

int kg_cli_check_backend_configured(const struct kg_cli *cli, const char *cmd, const char *b)
{
	char list[512] = "";
	size_t off = 0;

	if (b == NULL || b[0] == '\0')
		return KG_EXIT_OK;
	if (!cli->cfg_from_file) {
		fprintf(stderr, "ktlsgate: warning: %s: no config file: backend '%s' not checked\n", cmd, b);
		return KG_EXIT_OK;
	}
	if (kg_config_get0_backend(cli->cfg, b) != NULL)
		return KG_EXIT_OK;
	/* A typo here used to mean CONNACK "server unavailable" forever: say what exists. */
	for (size_t i = 0; i < cli->cfg->n_backends && off < sizeof(list); i++)
		off += (size_t)snprintf(list + off, sizeof(list) - off, "%s%s", i ? ", " : "",
					cli->cfg->backends[i].name);
	kg_cli_err("%s: backend '%s' is not configured in %s (configured: %s)", cmd, b,
		   cli->config_path, cli->cfg->n_backends ? list : "none");
	return KG_EXIT_REFUSED;
}

int kg_cli_open_registry(struct kg_cli *cli, enum kg_registry_mode mode, bool must_exist,
			 struct kg_registry **out)
{
	*out = NULL;
	/* A read, or a change to an existing row, must not create an empty registry as a
	 * side effect of a typo in the path. URIs (postgresql://) are not files. */
	if ((must_exist || mode == KG_REG_READONLY) && !kg_registry_location_is_uri(cli->registry) &&
	    access(cli->registry, F_OK) != 0) {
		kg_cli_err("registry %s: %s", cli->registry_shown, strerror(errno));
		return KG_EXIT_RUNTIME;
	}
	return kg_cli_open_location(cli->registry, mode, out) == 0 ? KG_EXIT_OK : KG_EXIT_RUNTIME;
}

int kg_cli_open_location(const char *loc, enum kg_registry_mode mode, struct kg_registry **out)
{
	char err[KG_ERRBUF] = "", msg[KG_ERRBUF + PATH_MAX], shown[PATH_MAX];
	int rc;

	*out = NULL;
	rc = kg_registry_open(loc, mode, out, err, sizeof(err));
	if (rc == 0)
		return 0;
	*out = NULL;
	/* The store's message may quote the location: never with its password. */
	kg_registry_location_redact_in(err, loc, msg, sizeof(msg));
	(void)kg_registry_location_redact(loc, shown, sizeof(shown));
	/* The store's message already names the registry ("registry PATH: ..."). */
	if (strncmp(msg, "registry ", 9) == 0)
		kg_cli_err("%s", msg);
	else
		kg_cli_err("registry %s: %s", shown, msg[0] != '\0' ? msg : kg_err_str(rc));
	return rc;
}

static void ignore_line(const char *line, void *arg)
{
	(void)line;
	(void)arg;
}

int kg_cli_notify(const struct kg_cli *cli, const char *verb, const char *arg, char *text,
		  size_t cap)
{
	char req[KG_CONTROL_LINE_MAX];
	char final[KG_CONTROL_LINE_MAX] = "";
	const char *closed;
	unsigned long n;
	int rc;

	snprintf(req, sizeof(req), "%s %s", verb, arg);
	rc = kg_control_call(cli->control_socket, req, ignore_line, NULL, final, sizeof(final),
			     KG_CLI_CONTROL_TIMEOUT_MS);
	if (rc == KG_E_NOTFOUND) {
		snprintf(text, cap, "daemon not running");
		return 1;
	}
	if (rc != 0) {
		snprintf(text, cap, "daemon not notified");
		kg_cli_err("registry updated, but the daemon did not apply \"%s\": %s", req,
			   rc == KG_E_DENIED && final[0] != '\0' ? final : kg_err_str(rc));
		return KG_EXIT_RUNTIME;
	}
	closed = strstr(final, "closed=");
	if (closed != NULL) {
		n = strtoul(closed + strlen("closed="), NULL, 10);
		snprintf(text, cap, "closed %lu live sessions", n);
	} else {
		snprintf(text, cap, "daemon notified");
	}
	return 0;
}

int kg_cli_parse_i64(const char *s, int64_t min, int64_t max, int64_t *out)
{
	char *end;
	long long v;

	if (s == NULL || *s == '\0' || isspace((unsigned char)*s))
		return -1;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

int kg_cli_parse_thumb(const char *s, char out[KG_SHA256_HEX_LEN + 1])
{
	size_t len = strlen(s), i, o = 0;

	if (len == KG_SHA256_HEX_LEN) {
		for (i = 0; i < len; i++) {
			if (!isxdigit((unsigned char)s[i]))
				return -1;
			out[o++] = (char)tolower((unsigned char)s[i]);
		}
	} else if (len == KG_SHA256_HEX_LEN / 2 * 3 - 1) {
		/* "AB:CD:...": a hex pair, then a colon between pairs. */
		for (i = 0; i < len; i++) {
			if (i % 3 == 2) {
				if (s[i] != ':')
					return -1;
				continue;
			}
			if (!isxdigit((unsigned char)s[i]))
				return -1;
			out[o++] = (char)tolower((unsigned char)s[i]);
		}
	} else {
		return -1;
	}
	out[o] = '\0';
	return 0;
}

bool kg_cli_name_valid(const char *s)
{
	size_t i;

	for (i = 0; s[i] != '\0'; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '.' && s[i] != '_' && s[i] != '-')
			return false;
	return i > 0 && i < KG_NAME_MAX;
}

void kg_cli_fmt_time(int64_t t, char *buf, size_t cap)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (t == 0 || gmtime_r(&tt, &tm) == NULL ||
	    strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(buf, cap, "%s", t == 0 ? "never" : "?");
}

int64_t kg_cli_asn1_time(const ASN1_TIME *t)
{
	struct tm tm;

	if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1)
		return 0;
	return (int64_t)timegm(&tm);
}

void kg_cli_json_print(struct json_object *o)
{
	puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
						       JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(o);
}

struct json_object *kg_cli_json_str_or_null(const char *s)
{
	return s != NULL && s[0] != '\0' ? json_object_new_string(s) : NULL;
}

bool kg_cli_is_help(const char *arg)
{
	return strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0 || strcmp(arg, "help") == 0;
}

int kg_cli_dispatch(struct kg_cli *cli, int argc, char **argv, const struct kg_cli_verb *verbs,
		    const char *usage)
{
	const struct kg_cli_verb *v;

	if (argc < 2)
		return kg_cli_usage_err("%s: missing verb (see ktlsgate %s --help)", argv[0], argv[0]);
	if (kg_cli_is_help(argv[1])) {
		fputs(usage, stdout);
		return KG_EXIT_OK;
	}
	for (v = verbs; v->name != NULL; v++)
		if (strcmp(v->name, argv[1]) == 0)
			return v->fn(cli, argc - 1, argv + 1);
	return kg_cli_usage_err("%s: unknown verb '%s' (see ktlsgate %s --help)", argv[0], argv[1],
				argv[0]);
}

static const struct {
	const char *name;
	int (*fn)(struct kg_cli *cli, int argc, char **argv);
} nouns[] = {
	{ "pki", kg_cli_pki },         { "ca", kg_cli_ca },
	{ "device", kg_cli_device },   { "verify", kg_cli_verify },
	{ "session", kg_cli_session }, { "status", kg_cli_status },
	{ "tpm", kg_cli_tpm },         { "block", kg_cli_block },
	{ "reasons", kg_cli_reasons }, { "reload", kg_cli_reload },
	{ "upgrade", kg_cli_upgrade },
	{ "registry", kg_cli_registry },
};

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "registry", required_argument, NULL, 'r' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	struct kg_cli cli = { .config_path = KG_CLI_DEFAULT_CONFIG };
	int c, rc = -1;
	size_t i;

	/* Library warnings would add lines to our one-line-per-error stderr. */
	kg_log_set_ident("ktlsgate");
	kg_log_set_level(KG_LOG_ERR);
	opterr = 0;
	/* '+': stop at the noun; its own options are parsed by the command. */
	while ((c = getopt_long(argc, argv, "+:c:r:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			cli.config_path = optarg;
			break;
		case 'r':
			cli.registry_override = optarg;
			break;
		case 'h':
			print_usage(stdout);
			return KG_EXIT_OK;
		case 'V':
			printf("ktlsgate %s\n", KG_VERSION);
			return KG_EXIT_OK;
		default:
			return kg_cli_bad_option(c, argv, "ktlsgate");
		}
	}
	if (optind >= argc)
		return kg_cli_usage_err("missing command (see ktlsgate --help)");
	if (strcmp(argv[optind], "help") == 0) {
		print_usage(stdout);
		return KG_EXIT_OK;
	}
	for (i = 0; i < KG_NITEMS(nouns); i++) {
		if (strcmp(nouns[i].name, argv[optind]) == 0) {
			/* Each command restarts getopt on its own argv. */
			int sub_argc = argc - optind;
			char **sub_argv = argv + optind;

			optind = 0;
			rc = nouns[i].fn(&cli, sub_argc, sub_argv);
			break;
		}
	}
	if (rc < 0)
		rc = kg_cli_usage_err("unknown command '%s' (see ktlsgate --help)", argv[optind]);
	free(cli.cfg);
	return rc;
}
