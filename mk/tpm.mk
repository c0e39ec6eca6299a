# mk/tpm.mk - the TPM-held server key (issue 4): tpm.c (ESAPI), tpm_pem.c (TSS2 key
# file format), tpm_key.c (the tpm2 OpenSSL provider in its own libctx).
# All of daemon/tpm/ (and daemon/cli/cli_tpm.c) is built by the top Makefile's folder
# wildcards; this fragment adds the SAPI library and the swtpm suite.
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
