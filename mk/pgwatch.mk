# mk/pgwatch.mk - the change watcher of a shared PostgreSQL registry (issue 16):
# daemon/registry/watch_pg.c (libpq) and its suites.
# libpq's flags come with the top Makefile's PKGS.

.PHONY: check-watch-pg
# check_watch_pg.c against a real cluster (tests/lib/pg.sh), plain and under
# ASan + UBSan: tests/unit/run-watch-pg.sh starts the cluster, runs only that suite
# (KG_TEST_PG registers it), requires that its tests ran, and always stops the cluster.
check-watch-pg: $(BUILD)/check_unit
	$(MAKE) BUILD=build/asan $(ASAN_FLAGS) build/asan/check_unit
	bash tests/unit/run-watch-pg.sh $(abspath $(BUILD))/check_unit $(abspath build/asan)/check_unit
FRAG_CHECKS += check-watch-pg

.PHONY: check-pg-revoke
# Three ktlsgated sharing one PostgreSQL registry (tests/integration/test-pg-revoke.sh):
# a revocation by one appliance's CLI, or by SQL, cuts a session held by another within
# 1 s, and one made while an appliance is cut off reaches it at reconnect. Until the
# PostgreSQL store is built it prints "NOT RUN: PostgreSQL store not built" and fails.
check-pg-revoke: all
	GATED=$(abspath $(BUILD))/ktlsgated KGCLI=$(abspath $(BUILD))/ktlsgate bash tests/integration/test-pg-revoke.sh
# Not in FRAG_CHECKS: check-integration runs every tests/integration/test-*.sh already.

.PHONY: check-pg-ha
# Two ktlsgated sharing one PostgreSQL registry (tests/integration/test-pg-ha.sh): the
# same new device auto-enrolled by both at once gives one row and both sessions (one
# `enrolled`, one `ok`), the same id from another auto-enrol CA loses to the first
# (`attestation_mismatch`, its session cut), and live sessions relay through a stop and
# start of the database and stay revocable. Until the PostgreSQL store is built it
# prints "NOT RUN: PostgreSQL store not built" and fails.
check-pg-ha: all
	GATED=$(abspath $(BUILD))/ktlsgated KGCLI=$(abspath $(BUILD))/ktlsgate bash tests/integration/test-pg-ha.sh
# Not in FRAG_CHECKS either (check-integration runs it).

.PHONY: check-pg-cache
# The hot-path view of a shared PostgreSQL registry and the database-down rule
# (tests/integration/test-pg-cache.sh): warm handshakes with no database round trip;
# the database stopped: fail-closed refuses (CONNACK server unavailable,
# registry_unavailable), fail-open admits only devices admitted here recently, live
# sessions keep running; back (one appliance kept out by pg_hba meanwhile): a device
# disabled while it was out is cut and refused, the others served, no restart.
check-pg-cache: all
	GATED=$(abspath $(BUILD))/ktlsgated KGCLI=$(abspath $(BUILD))/ktlsgate bash tests/integration/test-pg-cache.sh
# Not in FRAG_CHECKS either (check-integration runs it).
