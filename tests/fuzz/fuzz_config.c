/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * fuzz_config.c - libFuzzer target for the config parser: any bytes, as a
 * NUL-terminated string, through kg_config_parse_string. It must return 0 or -1
 * and never crash, overrun or leak; on failure the message must be NUL-terminated
 * and name the file.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ops/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* 300 KB: a fresh heap copy per run costs an mmap and page faults, which
	 * made the target ~50x slower; the parser overwrites it whole every time. */
	static struct kg_config cfg_storage;
	struct kg_config *cfg = &cfg_storage;
	char err[KG_ERRBUF];
	char *text;
	int rc;

	text = malloc(size + 1);
	if (text == NULL)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	rc = kg_config_parse_string(text, "fuzz.conf", cfg, err, sizeof(err));
	if (rc != 0 && (rc != -1 || memchr(err, '\0', sizeof(err)) == NULL ||
			strncmp(err, "fuzz.conf:", 10) != 0))
		abort();
	if (rc == 0 && (cfg->n_listen == 0 || cfg->n_listen > KG_MAX_LISTEN ||
			cfg->n_backends > KG_MAX_BACKENDS || cfg->n_crls > KG_MAX_CRLS ||
			cfg->max_handshakes > cfg->max_connections))
		abort();
	free(text);
	return 0;
}
