# mk/bench-restart.mk - `make bench-restart` (issue 14, docs/benchmarks.md "Issue 14:
# restart"): what devices connecting 200 times a second, one live session and a QoS 1
# publisher see while the terminator in front of mosquitto restarts: ktlsgated plain
# restart and `--takeover` (reported "not available in this build" until the binary has
# it; exit 3), HAProxy 2.6 reload (master-worker, expose-fd listeners) and nginx -s reload,
# in the tests/edge network namespaces (tests/bench/restart.sh; knobs in its header).
# Needs root, haproxy, nginx + libnginx-mod-stream, mosquitto (+ clients). About 4 min
# with BENCH_REPEAT=3; not part of `make bench` (root and namespaces, which `make bench`
# does not need) nor of `make check`.

.PHONY: bench-restart
bench-restart: all $(BUILD)/kg-synflood
	BUILD=$(BUILD) tests/bench/restart.sh

# `make bench-handover` (issue 14, docs/benchmarks.md "Issue 14: live sessions at a
# takeover"): how long BENCH_SESSIONS (default "1000 4000") live sessions take to move to
# the new process at `ktlsgated --takeover`, BENCH_REPEAT (3) rounds each, medians, and
# that every one relays afterwards (tests/bench/live-handover.sh). Loopback only, no root
# beyond the fd limit; about 2 min.
.PHONY: bench-handover
bench-handover: all
	BUILD=$(BUILD) tests/bench/live-handover.sh
