# mk/tpm.mk - the TPM-held server key (issue 4): tpm.c (ESAPI), tpm_pem.c (TSS2 key
# file format), tpm_key.c (the tpm2 OpenSSL provider in its own libctx).
# cli_tpm.c and tpm_conf.c are built by the top Makefile's wildcards.
TPM_SRCS := daemon/tpm.c daemon/tpm_pem.c daemon/tpm_key.c daemon/tpm_foreign.c
FRAG_OWNED    += $(TPM_SRCS)
FRAG_LIB_SRCS += $(TPM_SRCS)
# tpm.c flushes other processes' leftovers through SAPI (ESAPI cannot name them).
LIBS          += $(shell pkg-config --libs tss2-sys 2>/dev/null)

.PHONY: check-tpm
# swtpm-backed tests: keygen, CSR, TLS 1.3 + 1.2 mTLS through ktlsgated with the key
# in the TPM, absence at start, fallback, transient cleanup.
check-tpm: all
	GATED=$(abspath $(BUILD))/ktlsgated KGCLI=$(abspath $(BUILD))/ktlsgate \
	  KG_WORK_BASE=$(abspath $(BUILD))/itest-tpm tests/tpm/run.sh
# passes reliably from scratch (two consecutive runs, 8/8 each): part of `make check`
FRAG_CHECKS += check-tpm
