# mk/bench-plain.mk - `make bench-plain` (issue 15, docs/benchmarks.md "Issue 15: plain
# sessions in the kernel"): QoS 1 publishing through a `plain` ktlsgated listener with the
# sockmap relay, with the user-space relay, and through HAProxy 2.6 `mode tcp`, one run
# (tests/bench/plain.sh; knobs in tests/bench/README.md). PLAIN_BACKEND=sink puts
# build/kg-sink (tests/bench/sink/kg_sink.c, an MQTT stand-in that drops payloads
# unread) behind them instead of mosquitto, to show the relays' own ceiling. Root (the
# sockmap relay loads BPF), haproxy and mosquitto installed. Not part of `make check`.
$(BUILD)/kg-sink: $(BUILD)/tests/bench/sink/kg_sink.o
	$(CC) $(ALL_LDFLAGS) -o $@ $^

.PHONY: bench-plain
bench-plain:
	@scripts/deps.sh check
	$(MAKE) all $(BUILD)/kg-bench $(BUILD)/kg-sink
	BUILD=$(BUILD) tests/bench/plain.sh
