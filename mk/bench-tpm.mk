# mk/bench-tpm.mk - `make bench-tpm` (issue 13, docs/benchmarks.md "Issue 13: TPM
# reconnect storm"): full and resumed handshakes/s, server CPU per handshake and the time
# for a storm of 5000 devices to all be connected, for a file key, the TPM key in direct
# mode and in certified-leaf mode (swtpm behind tests/tpm/tpmproxy.py adding 50 ms per
# TPM2_Sign), resumed sessions, and nginx 1.22 for the full-handshake CPU
# (tests/bench/tpm.sh; knobs in tests/bench/README.md). A variant this ktlsgated does not
# support yet is reported NOT RUN (exit 3). swtpm, nginx (+ libnginx-mod-stream),
# mosquitto and python3-cryptography installed. Not part of `make check`. The gnutls-*
# variants use $(BUILD)/kg-gtls-bench (GnuTLS's client: a resumption offering psk_ke
# alone, which kg-bench's OpenSSL cannot send; libgnutls28-dev).

.PHONY: bench-tpm
bench-tpm:
	@scripts/deps.sh check
	$(MAKE) all $(BUILD)/kg-bench $(BUILD)/kg-gtls-bench
	BUILD=$(BUILD) tests/bench/tpm.sh

$(BUILD)/kg-gtls-bench: tests/bench/gnutls/kg_gtls_bench.c
	@mkdir -p $(@D)
	$(CC) -std=c17 -D_GNU_SOURCE $(WARN) $(CFLAGS) $(shell pkg-config --cflags gnutls) \
	  -fstack-protector-strong -D_FORTIFY_SOURCE=2 -fPIE $(ALL_LDFLAGS) -o $@ $< \
	  $(shell pkg-config --libs gnutls) -lpthread
