/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * cli_pki.c - `ktlsgate pki ...`: the test PKI (root, intermediate, device, server and
 * self-signed certificates, proof-of-possession verification certs, CRLs). Option
 * parsing and checks only; the certificates are made by pki.c. Needs neither the
 * config nor the registry.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/pki.h"

static const struct {
	const char *name;
	enum kg_pki_kind kind;
} kinds[] = {
	{ "root", KG_PKI_ROOT },
	{ "intermediate", KG_PKI_INTERMEDIATE },
	{ "device", KG_PKI_DEVICE },
	{ "server", KG_PKI_SERVER },
	{ "self-signed", KG_PKI_SELF_SIGNED },
};

static int pki_make(struct kg_cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "cn", required_argument, NULL, 'n' },
		{ "out", required_argument, NULL, 'o' },
		{ "ca", required_argument, NULL, 'a' },
		{ "days", required_argument, NULL, 'd' },
		{ "not-before", required_argument, NULL, 'b' },
		{ "eku", required_argument, NULL, 'e' },
		{ "rsa", no_argument, NULL, 'R' },
		{ "not-ca", no_argument, NULL, 'N' },
		{ "san", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct kg_pki_req req = { .eku = KG_EKU_DEFAULT, .key = KG_KEY_EC_P256 };
	const char *cmd = argv[0];
	char err[KG_ERRBUF] = "";
	bool found = false;
	size_t i;
	int c;

	(void)cli;
	for (i = 0; i < KG_NITEMS(kinds); i++) {
		if (strcmp(kinds[i].name, cmd) == 0) {
			req.kind = kinds[i].kind;
			found = true;
		}
	}
	if (!found)
		return kg_cli_usage_err("pki: unknown verb '%s'", cmd);

	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		switch (c) {
		case 'n':
			req.cn = optarg;
			break;
		case 'o':
			req.out_dir = optarg;
			break;
		case 'a':
			req.issuer_dir = optarg;
			break;
		case 'd':
			if (kg_cli_parse_i64(optarg, 1, 36500, &req.days) != 0)
				return kg_cli_usage_err("pki %s: --days wants 1..36500, not '%s'", cmd,
							optarg);
			break;
		case 'b':
			if (kg_cli_parse_i64(optarg, 1, INT64_MAX, &req.not_before) != 0)
				return kg_cli_usage_err("pki %s: --not-before wants unix seconds > 0, not '%s'",
							cmd, optarg);
			break;
		case 'e':
			if (strcmp(optarg, "client") == 0)
				req.eku = KG_EKU_CLIENT;
			else if (strcmp(optarg, "server") == 0)
				req.eku = KG_EKU_SERVER;
			else if (strcmp(optarg, "none") == 0)
				req.eku = KG_EKU_NONE;
			else
				return kg_cli_usage_err("pki %s: --eku wants client|server|none, not '%s'",
							cmd, optarg);
			break;
		case 'R':
			req.key = KG_KEY_RSA2048;
			break;
		case 'N':
			req.not_ca = true;
			break;
		case 's':
			req.san = optarg;
			break;
		case 'h':
			fputs(kg_cli_usage_pki, stdout);
			return KG_EXIT_OK;
		default:
			return kg_cli_bad_option(c, argv, "pki");
		}
	}
	if (optind < argc)
		return kg_cli_usage_err("pki %s: unexpected argument '%s'", cmd, argv[optind]);
	if (req.cn == NULL || req.cn[0] == '\0')
		return kg_cli_usage_err("pki %s: --cn is required", cmd);
	if (req.out_dir == NULL || req.out_dir[0] == '\0')
		return kg_cli_usage_err("pki %s: --out is required", cmd);
	if (req.kind == KG_PKI_ROOT || req.kind == KG_PKI_SELF_SIGNED) {
		if (req.issuer_dir != NULL)
			return kg_cli_usage_err("pki %s: --ca does not apply (self-signed)", cmd);
	} else if (req.issuer_dir == NULL || req.issuer_dir[0] == '\0') {
		return kg_cli_usage_err("pki %s: --ca DIR (the issuer) is required", cmd);
	}
	if (req.not_ca && req.kind != KG_PKI_INTERMEDIATE)
		return kg_cli_usage_err("pki %s: --not-ca applies to intermediate only", cmd);
	if (req.san != NULL && req.kind != KG_PKI_SERVER)
		return kg_cli_usage_err("pki %s: --san applies to server only", cmd);

	if (kg_pki_make(&req, err, sizeof(err)) != 0) {
		kg_cli_err("pki %s: %s", cmd, err[0] != '\0' ? err : "failed");
		return KG_EXIT_RUNTIME;
	}
	printf("wrote %s/cert.pem %s/key.pem %s/chain.pem\n", req.out_dir, req.out_dir,
	       req.out_dir);
	return KG_EXIT_OK;
}

static int pki_verification_cert(struct kg_cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "ca", required_argument, NULL, 'a' },
		{ "challenge", required_argument, NULL, 'C' },
		{ "out", required_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *ca = NULL, *challenge = NULL, *out = NULL;
	char err[KG_ERRBUF] = "";
	int c;

	(void)cli;
	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		switch (c) {
		case 'a':
			ca = optarg;
			break;
		case 'C':
			challenge = optarg;
			break;
		case 'o':
			out = optarg;
			break;
		case 'h':
			fputs(kg_cli_usage_pki, stdout);
			return KG_EXIT_OK;
		default:
			return kg_cli_bad_option(c, argv, "pki verification-cert");
		}
	}
	if (optind < argc)
		return kg_cli_usage_err("pki verification-cert: unexpected argument '%s'",
					argv[optind]);
	if (ca == NULL || challenge == NULL || challenge[0] == '\0' || out == NULL)
		return kg_cli_usage_err("pki verification-cert: --ca, --challenge and --out are required");
	if (kg_pki_verification_cert(ca, challenge, out, err, sizeof(err)) != 0) {
		kg_cli_err("pki verification-cert: %s", err[0] != '\0' ? err : "failed");
		return KG_EXIT_RUNTIME;
	}
	printf("wrote %s\n", out);
	return KG_EXIT_OK;
}

static int pki_crl(struct kg_cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "ca", required_argument, NULL, 'a' },
		{ "out", required_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *ca = NULL, *out = NULL;
	char err[KG_ERRBUF] = "";
	int c;

	(void)cli;
	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		switch (c) {
		case 'a':
			ca = optarg;
			break;
		case 'o':
			out = optarg;
			break;
		case 'h':
			fputs(kg_cli_usage_pki, stdout);
			return KG_EXIT_OK;
		default:
			return kg_cli_bad_option(c, argv, "pki crl");
		}
	}
	if (ca == NULL || out == NULL)
		return kg_cli_usage_err("pki crl: --ca and --out are required");
	/* getopt_long() permuted the certificate files to argv[optind..]. */
	if (kg_pki_crl(ca, (const char *const *)(argv + optind), (size_t)(argc - optind), out, err,
		       sizeof(err)) != 0) {
		kg_cli_err("pki crl: %s", err[0] != '\0' ? err : "failed");
		return KG_EXIT_RUNTIME;
	}
	printf("wrote %s\n", out);
	return KG_EXIT_OK;
}

int kg_cli_pki(struct kg_cli *cli, int argc, char **argv)
{
	static const struct kg_cli_verb verbs[] = {
		{ "root", pki_make },
		{ "intermediate", pki_make },
		{ "device", pki_make },
		{ "server", pki_make },
		{ "self-signed", pki_make },
		{ "verification-cert", pki_verification_cert },
		{ "crl", pki_crl },
		{ NULL, NULL },
	};

	return kg_cli_dispatch(cli, argc, argv, verbs, kg_cli_usage_pki);
}
