/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * kg_regtool.c - makes the registries an upgrade meets, for tests: an SQLite registry
 * created at an older schema version (what an earlier build left), through the
 * store's own migration steps, so the file is exactly what that build wrote.
 *   kg-regtool create PATH VERSION    create PATH at schema VERSION (1..latest)
 *   kg-regtool version PATH           print PATH's schema version
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/err.h"
#include "registry/registry.h"

static int usage(void)
{
	fprintf(stderr, "usage: kg-regtool create PATH VERSION | kg-regtool version PATH\n");
	return 2;
}

int main(int argc, char **argv)
{
	char err[512] = "";
	int version = 0;

	if (argc == 4 && strcmp(argv[1], "create") == 0) {
		char *end;
		long v = strtol(argv[3], &end, 10);

		if (*end != '\0' || v < 1 || v > kg_registry_sqlite_schema_latest())
			return usage();
		if (kg_registry_sqlite_migrate(argv[2], (int)v, err, sizeof(err)) != 0) {
			fprintf(stderr, "kg-regtool: %s\n", err);
			return 1;
		}
		return 0;
	}
	if (argc == 3 && strcmp(argv[1], "version") == 0) {
		if (kg_registry_sqlite_version(argv[2], &version, err, sizeof(err)) != 0) {
			fprintf(stderr, "kg-regtool: %s\n", err);
			return 1;
		}
		printf("%d\n", version);
		return 0;
	}
	return usage();
}
