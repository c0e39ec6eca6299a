# mk/bench-tpm.mk - `make bench-tpm` (issue 13, docs/benchmarks.md "Issue 13: TPM
# reconnect storm"): full and resumed handshakes/s, server CPU per handshake and the time
# for a storm of 5000 devices to all be connected, for a file key, the TPM key in direct
# mode and in certified-leaf mode (swtpm behind tests/tpm/tpmproxy.py adding 50 ms per
# TPM2_Sign), resumed sessions, and nginx 1.22 for the full-handshake CPU
# (tests/bench/tpm.sh; knobs in tests/bench/README.md). A variant this ktlsgated does not
# support yet is reported NOT RUN (exit 3). swtpm, nginx (+ libnginx-mod-stream),
# mosquitto and python3-cryptography installed. Not part of `make check`.

.PHONY: bench-tpm
bench-tpm:
	@scripts/deps.sh check
	$(MAKE) all $(BUILD)/kg-bench
	BUILD=$(BUILD) tests/bench/tpm.sh
