# mk/sockmap.mk - the plain sessions' relays (issue 15): sockmap (bpf/sockmap.bpf.c via
# daemon/relay/sockmap.c, skeleton rules in mk/edge.mk), splice and plain
# (daemon/relay/relay_plain.c), run on the host kernel as the daemon runs them.
# kg-sockmap-check drives them (tests/relay/kg_sockmap_check.c, links libkg).
$(BUILD)/kg-sockmap-check: $(BUILD)/tests/relay/kg_sockmap_check.o $(BUILD)/libkg.a
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

# Root (CAP_BPF) and a kernel with sockmap; under a minute warm.
FRAG_CHECKS += check-sockmap

.PHONY: check-sockmap
check-sockmap: all $(BUILD)/kg-sockmap-check
	BUILD=$(BUILD) tests/relay/run.sh
