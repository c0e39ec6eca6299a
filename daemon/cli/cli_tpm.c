/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * cli_tpm.c - `ktlsgate tpm info|keygen|csr|flush`: the server key in the TPM.
 * keygen and info talk ESAPI (tpm.h); csr signs through the tpm2 OpenSSL provider in
 * its own libctx (tpm_key.h), exactly as the daemon will. The TCTI comes from --tcti,
 * else the config's [tpm] tcti, else tpm2-tss's default search.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "ops/err.h"
#include "tpm/tpm.h"
#include "tpm/tpm_conf.h"
#include "tpm/tpm_key.h"

const char kg_cli_usage_tpm[] =
	"ktlsgate tpm info [--tcti TCTI] [--json]\n"
	"ktlsgate tpm keygen [--ecdsa|--rsa] (--handle 0x81000101 | --out FILE) [--tcti TCTI]\n"
	"ktlsgate tpm csr --key (handle:0x81000101|FILE) --cn HOST [--out FILE] [--tcti TCTI]\n"
	"ktlsgate tpm flush [--tcti TCTI]\n"
	"  TCTI: e.g. swtpm:host=127.0.0.1,port=2321, device:/dev/tpmrm0, tabrmd\n"
	"        (default: the config's [tpm] tcti, else tpm2-tss's default search)\n";

/* --tcti, else the config file's (a missing config file is fine: defaults). */
static int resolve_tcti(struct kg_cli *cli, const char *opt, const char **tcti)
{
	int rc;

	/* tpm2-tss logs each failed TCTI probe on stderr; our contract is one line per
	 * error. TSS2_LOG from the caller's environment still wins (debugging). */
	(void)setenv("TSS2_LOG", "all+none", 0);
	if (opt != NULL) {
		if (opt[0] != '\0' && !kg_tpm_tcti_valid(opt))
			return kg_cli_usage_err("tpm: --tcti '%s' is not NAME or NAME:CONF", opt);
		*tcti = opt;
		return KG_EXIT_OK;
	}
	rc = kg_cli_setup(cli, false);
	if (rc != KG_EXIT_OK)
		return rc;
	*tcti = cli->cfg->tpm.tcti;
	return KG_EXIT_OK;
}

static const char *tcti_name(const char *tcti)
{
	return tcti[0] ? tcti : "(default)";
}

static int tpm_info(struct kg_cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "tcti", required_argument, NULL, 't' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *topt = NULL, *tcti;
	struct kg_tpm_info info;
	struct kg_tpm *t = NULL;
	char err[KG_ERRBUF] = "";
	bool json = false;
	int c, rc;

	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		switch (c) {
		case 't': topt = optarg; break;
		case 'j': json = true; break;
		case 'h': fputs(kg_cli_usage_tpm, stdout); return KG_EXIT_OK;
		default: return kg_cli_bad_option(c, argv, "tpm info");
		}
	}
	if (optind < argc)
		return kg_cli_usage_err("tpm info: unexpected argument '%s'", argv[optind]);
	rc = resolve_tcti(cli, topt, &tcti);
	if (rc != KG_EXIT_OK)
		return rc;
	if (kg_tpm_open(tcti, &t, err, sizeof(err)) != 0) {
		kg_cli_err("tpm info: %s", err);
		return KG_EXIT_RUNTIME;
	}
	if (kg_tpm_get_info(t, &info, err, sizeof(err)) != 0) {
		kg_tpm_close(t);
		kg_cli_err("tpm info: %s", err);
		return KG_EXIT_RUNTIME;
	}
	kg_tpm_close(t);
	if (json) {
		struct json_object *o = json_object_new_object(), *arr = json_object_new_array();
		char h[16];

		json_object_object_add(o, "tcti", json_object_new_string(tcti));
		json_object_object_add(o, "manufacturer", json_object_new_string(info.manufacturer));
		json_object_object_add(o, "vendor", json_object_new_string(info.vendor));
		snprintf(err, sizeof(err), "%u.%u.%u.%u", info.fw1 >> 16, info.fw1 & 0xffff,
			 info.fw2 >> 16, info.fw2 & 0xffff);
		json_object_object_add(o, "firmware", json_object_new_string(err));
		snprintf(err, sizeof(err), "2.0 level %u revision %u.%02u", info.spec_level,
			 info.spec_rev / 100, info.spec_rev % 100);
		json_object_object_add(o, "spec", json_object_new_string(err));
		for (size_t i = 0; i < info.n_persistent; i++) {
			snprintf(h, sizeof(h), "0x%08x", info.persistent[i]);
			json_object_array_add(arr, json_object_new_string(h));
		}
		json_object_object_add(o, "persistent", arr);
		json_object_object_add(o, "persistent_free",
				       json_object_new_int64(info.persistent_free));
		json_object_object_add(o, "transient_loaded",
				       json_object_new_int64((int64_t)info.n_transient));
		json_object_object_add(o, "transient_free",
				       json_object_new_int64(info.transient_free));
		kg_cli_json_print(o);
		return KG_EXIT_OK;
	}
	printf("tcti: %s\n", tcti_name(tcti));
	printf("manufacturer: %s\n", info.manufacturer);
	printf("vendor: %s\n", info.vendor);
	printf("firmware: %u.%u.%u.%u\n", info.fw1 >> 16, info.fw1 & 0xffff, info.fw2 >> 16,
	       info.fw2 & 0xffff);
	printf("spec: 2.0 level %u revision %u.%02u\n", info.spec_level, info.spec_rev / 100,
	       info.spec_rev % 100);
	printf("persistent handles:");
	for (size_t i = 0; i < info.n_persistent; i++)
		printf(" 0x%08x", info.persistent[i]);
	printf("%s\n", info.n_persistent ? "" : " none");
	printf("persistent slots free: %u\n", info.persistent_free);
	printf("transient objects loaded: %zu\n", info.n_transient);
	printf("transient slots free: %u\n", info.transient_free);
	return KG_EXIT_OK;
}

/* Write text to a new file (0600, never over an existing one). */
static int write_new_file(const char *path, const char *text, char *err, size_t errlen)
{
	size_t len = strlen(text), off = 0;
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);

	if (fd < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return errno == EEXIST ? KG_EXIT_REFUSED : KG_EXIT_RUNTIME;
	}
	while (off < len) {
		ssize_t n = write(fd, text + off, len - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			snprintf(err, errlen, "%s: %s", path, strerror(errno));
			close(fd);
			(void)unlink(path);
			return KG_EXIT_RUNTIME;
		}
		off += (size_t)n;
	}
	if (close(fd) != 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		(void)unlink(path);
		return KG_EXIT_RUNTIME;
	}
	return KG_EXIT_OK;
}

static int tpm_keygen(struct kg_cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "ecdsa", no_argument, NULL, 'e' },
		{ "rsa", no_argument, NULL, 'r' },
		{ "handle", required_argument, NULL, 'H' },
		{ "out", required_argument, NULL, 'o' },
		{ "tcti", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *topt = NULL, *tcti, *hopt = NULL, *out = NULL, *algname;
	enum kg_tpm_alg alg = KG_TPM_ECDSA_P256;
	bool ecdsa = false, rsa = false;
	struct kg_tss2_key key;
	struct kg_tpm *t = NULL;
	char err[KG_ERRBUF] = "", *pem;
	uint32_t handle = 0;
	int c, rc;

	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		switch (c) {
		case 'e': ecdsa = true; break;
		case 'r': rsa = true; break;
		case 'H': hopt = optarg; break;
		case 'o': out = optarg; break;
		case 't': topt = optarg; break;
		case 'h': fputs(kg_cli_usage_tpm, stdout); return KG_EXIT_OK;
		default: return kg_cli_bad_option(c, argv, "tpm keygen");
		}
	}
	if (optind < argc)
		return kg_cli_usage_err("tpm keygen: unexpected argument '%s'", argv[optind]);
	if (ecdsa && rsa)
		return kg_cli_usage_err("tpm keygen: --ecdsa and --rsa exclude each other");
	if ((hopt == NULL) == (out == NULL))
		return kg_cli_usage_err("tpm keygen: give exactly one of --handle and --out");
	if (hopt != NULL && kg_tpm_parse_handle(hopt, &handle) != 0)
		return kg_cli_usage_err("tpm keygen: --handle '%s' is not a persistent handle "
					"(0x81000000..0x81ffffff)", hopt);
	if (out != NULL && access(out, F_OK) == 0) {
		kg_cli_err("tpm keygen: %s already exists (not overwritten)", out);
		return KG_EXIT_REFUSED;
	}
	if (rsa)
		alg = KG_TPM_RSA2048;
	algname = rsa ? "RSA-2048" : "ECDSA P-256";
	rc = resolve_tcti(cli, topt, &tcti);
	if (rc != KG_EXIT_OK)
		return rc;
	if (kg_tpm_open(tcti, &t, err, sizeof(err)) != 0) {
		kg_cli_err("tpm keygen: %s", err);
		return KG_EXIT_RUNTIME;
	}
	if (hopt != NULL) {
		rc = kg_tpm_keygen_persistent(t, alg, handle, err, sizeof(err));
		kg_tpm_close(t);
		if (rc != 0) {
			kg_cli_err("tpm keygen: %s", err);
			return rc == KG_E_EXISTS ? KG_EXIT_REFUSED : KG_EXIT_RUNTIME;
		}
		printf("created %s key at handle:0x%08x\n", algname, handle);
		return KG_EXIT_OK;
	}
	rc = kg_tpm_keygen_blob(t, alg, &key, err, sizeof(err));
	kg_tpm_close(t);
	if (rc != 0) {
		kg_cli_err("tpm keygen: %s", err);
		return KG_EXIT_RUNTIME;
	}
	pem = kg_tss2_key_to_pem(&key);
	if (pem == NULL) {
		kg_cli_err("tpm keygen: cannot encode the key blob");
		return KG_EXIT_RUNTIME;
	}
	rc = write_new_file(out, pem, err, sizeof(err));
	free(pem);
	if (rc != KG_EXIT_OK) {
		kg_cli_err("tpm keygen: %s", err);
		return rc;
	}
	printf("created %s key in %s (TSS2 key blob, usable only with this TPM)\n", algname, out);
	return KG_EXIT_OK;
}

static int tpm_csr(struct kg_cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "key", required_argument, NULL, 'k' },
		{ "cn", required_argument, NULL, 'n' },
		{ "out", required_argument, NULL, 'o' },
		{ "tcti", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *topt = NULL, *tcti, *keyref = NULL, *cn = NULL, *out = NULL;
	struct kg_tpm_ossl *o = NULL;
	EVP_PKEY *key = NULL;
	char err[KG_ERRBUF] = "";
	FILE *f = stdout;
	uint32_t h;
	int c, rc;

	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		switch (c) {
		case 'k': keyref = optarg; break;
		case 'n': cn = optarg; break;
		case 'o': out = optarg; break;
		case 't': topt = optarg; break;
		case 'h': fputs(kg_cli_usage_tpm, stdout); return KG_EXIT_OK;
		default: return kg_cli_bad_option(c, argv, "tpm csr");
		}
	}
	if (optind < argc)
		return kg_cli_usage_err("tpm csr: unexpected argument '%s'", argv[optind]);
	if (keyref == NULL || cn == NULL || cn[0] == '\0')
		return kg_cli_usage_err("tpm csr: --key and --cn are required");
	if (strlen(cn) > 64)
		return kg_cli_usage_err("tpm csr: --cn longer than 64 characters");
	if (strncmp(keyref, KG_TPM_HANDLE_PREFIX, strlen(KG_TPM_HANDLE_PREFIX)) == 0) {
		if (kg_tpm_parse_keyref(keyref, &h) != 0)
			return kg_cli_usage_err("tpm csr: --key '%s' is not handle:0x81000000.."
						"0x81ffffff", keyref);
	} else if (!kg_tss2_file_is_key(keyref)) {
		kg_cli_err("tpm csr: %s: %s", keyref,
			   access(keyref, R_OK) == 0 ? "not a TSS2 PRIVATE KEY file" : strerror(errno));
		return access(keyref, R_OK) == 0 ? KG_EXIT_REFUSED : KG_EXIT_RUNTIME;
	}
	rc = resolve_tcti(cli, topt, &tcti);
	if (rc != KG_EXIT_OK)
		return rc;
	o = kg_tpm_ossl_new(tcti, err, sizeof(err));
	if (o == NULL) {
		kg_cli_err("tpm csr: %s", err);
		return KG_EXIT_RUNTIME;
	}
	rc = KG_EXIT_RUNTIME;
	key = kg_tpm_ossl_load_key(o, keyref, err, sizeof(err));
	if (key == NULL) {
		kg_cli_err("tpm csr: %s", err);
		goto out;
	}
	if (out != NULL) {
		f = fopen(out, "wxe");
		if (f == NULL) {
			kg_cli_err("tpm csr: %s: %s", out, strerror(errno));
			rc = errno == EEXIST ? KG_EXIT_REFUSED : KG_EXIT_RUNTIME;
			goto out;
		}
	}
	if (kg_tpm_csr_write(o, key, cn, f, err, sizeof(err)) != 0) {
		kg_cli_err("tpm csr: %s", err);
		if (out != NULL) {
			fclose(f);
			(void)unlink(out);
		}
		goto out;
	}
	if (out != NULL) {
		if (fclose(f) != 0) {
			kg_cli_err("tpm csr: %s: %s", out, strerror(errno));
			goto out;
		}
		printf("wrote %s\n", out);
	}
	rc = KG_EXIT_OK;
out:
	EVP_PKEY_free(key);   /* flushes the key's transient object, if it had one */
	kg_tpm_ossl_free(o);
	return rc;
}

static int tpm_flush(struct kg_cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "tcti", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *topt = NULL, *tcti;
	struct kg_tpm *t = NULL;
	char err[KG_ERRBUF] = "";
	unsigned n = 0;
	int c, rc;

	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		switch (c) {
		case 't': topt = optarg; break;
		case 'h': fputs(kg_cli_usage_tpm, stdout); return KG_EXIT_OK;
		default: return kg_cli_bad_option(c, argv, "tpm flush");
		}
	}
	if (optind < argc)
		return kg_cli_usage_err("tpm flush: unexpected argument '%s'", argv[optind]);
	rc = resolve_tcti(cli, topt, &tcti);
	if (rc != KG_EXIT_OK)
		return rc;
	if (kg_tpm_open(tcti, &t, err, sizeof(err)) != 0) {
		kg_cli_err("tpm flush: %s", err);
		return KG_EXIT_RUNTIME;
	}
	rc = kg_tpm_flush_transients(t, &n, err, sizeof(err));
	kg_tpm_close(t);
	if (rc != 0) {
		kg_cli_err("tpm flush: %s", err);
		return KG_EXIT_RUNTIME;
	}
	printf("flushed %u transient object(s)/session(s)\n", n);
	return KG_EXIT_OK;
}

int kg_cli_tpm(struct kg_cli *cli, int argc, char **argv)
{
	static const struct kg_cli_verb verbs[] = {
		{ "info", tpm_info },
		{ "keygen", tpm_keygen },
		{ "csr", tpm_csr },
		{ "flush", tpm_flush },
		{ NULL, NULL },
	};

	return kg_cli_dispatch(cli, argc, argv, verbs, kg_cli_usage_tpm);
}
