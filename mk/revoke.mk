# mk/revoke.mk - revocation reaching live sessions (issue 10, part 6).
# `make bench-revoke`: N live mTLS sessions under one CA (default 5000), then
# `ktlsgate ca set CA --status disabled`; the time until the daemon holds none, median
# of REVOKE_RUNS runs (tests/bench/revoke-ca.sh; figures in docs/benchmarks.md).

.PHONY: bench-revoke
bench-revoke: all $(BUILD)/kg-bench
	BUILD=$(BUILD) tests/bench/revoke-ca.sh
