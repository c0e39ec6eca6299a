# mk/pg.mk - the PostgreSQL registry store against a real cluster (issue 16, slice 1).
# `make check-registry-pg`: tests/unit/run-registry-pg.sh starts a throwaway cluster
# (tests/lib/pg.sh, under /var/tmp so the postgres user can reach it), runs the registry
# suite's PostgreSQL cases with the plain and the ASan+UBSan unit binaries (case pg: the
# store-generic cases again; case pg_store: schema, change feed, busy, outages,
# passwords; case pg_race: several processes creating the schema / enrolling at once),
# checks each ran exactly the number of cases below (a case that was never registered
# must not pass as zero failures), and stops the cluster whatever happens.
PG_GENERIC_CASES := 14
PG_STORE_CASES := 8
PG_RACE_CASES := 2

.PHONY: check-registry-pg
check-registry-pg: $(BUILD)/check_unit asan-build
	PG_GENERIC_CASES=$(PG_GENERIC_CASES) PG_STORE_CASES=$(PG_STORE_CASES) PG_RACE_CASES=$(PG_RACE_CASES) \
	  bash tests/unit/run-registry-pg.sh $(CURDIR)/$(BUILD)/check_unit $(CURDIR)/build/asan/check_unit
FRAG_CHECKS += check-registry-pg
