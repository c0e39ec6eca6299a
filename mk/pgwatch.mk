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
FRAG_CHECKS += check-pg-revoke

.PHONY: check-pg-cache
# The hot-path view of a shared PostgreSQL registry and the database-down rule
# (tests/integration/test-pg-cache.sh): warm handshakes with no database round trip;
# the database stopped: fail-closed refuses (CONNACK server unavailable,
# registry_unavailable), fail-open admits only devices admitted here recently, live
# sessions keep running; back (one appliance kept out by pg_hba meanwhile): a device
# disabled while it was out is cut and refused, the others served, no restart.
check-pg-cache: all
	GATED=$(abspath $(BUILD))/ktlsgated KGCLI=$(abspath $(BUILD))/ktlsgate bash tests/integration/test-pg-cache.sh
FRAG_CHECKS += check-pg-cache
