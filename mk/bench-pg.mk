# mk/bench-pg.mk - `make bench-pg` (issue 16, docs/benchmarks.md "Issue 16: the
# PostgreSQL registry"): handshakes/s with the PostgreSQL registry against SQLite, and
# the time from `ktlsgate device set ID --status disabled` to the last of three
# appliances' sessions closed, with the benchmark's own devices and again with
# PG_DEVICES (100 000) in the registry (tests/bench/pg.sh; knobs in tests/bench/README.md).
# Starts its own throwaway PostgreSQL cluster (tests/lib/pg.sh): root, postgresql,
# mosquitto and python3-cryptography installed. Not part of `make check`.

.PHONY: bench-pg
bench-pg: all $(BUILD)/kg-bench
	BUILD=$(BUILD) tests/bench/pg.sh
