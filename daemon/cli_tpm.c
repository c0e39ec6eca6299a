/* SPDX-License-Identifier: BSD-2-Clause */
/* cli_tpm.c - `ktlsgate tpm ...` (being written; see its issue). */
#include "ktlsgate/cli.h"

int kg_cli_tpm(struct kg_cli *cli, int argc, char **argv)
{
	(void)cli;
	(void)argc;
	kg_cli_err("%s: not available in this build", argv[0]);
	return KG_EXIT_RUNTIME;
}
