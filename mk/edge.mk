# mk/edge.mk - the XDP gate (issue 5): BPF program -> skeleton -> daemon/edge/edge.c, the
# deny policy, and the netns tests. Included by the top Makefile.
#
# BPF objects follow libbpf-bootstrap: vmlinux.h is generated from the running
# kernel's BTF into $(BUILD)/bpf (CO-RE: libbpf relocates on other kernels), the
# program is built with clang -target bpf, and `bpftool gen skeleton` embeds it.
# daemon/edge/edge.o depends on the skeleton, so a parallel build generates it first.

EDGE_BPF_DIR   := $(BUILD)/bpf
EDGE_BTF       ?= /sys/kernel/btf/vmlinux
BPF_CLANG      ?= clang
BPFTOOL        ?= bpftool
EDGE_BPF_ARCH  := $(shell uname -m | sed 's/x86_64/x86/; s/aarch64/arm64/')
EDGE_BPF_FLAGS := -g -O2 -target bpf -D__TARGET_ARCH_$(EDGE_BPF_ARCH) -Wall -Werror \
                  -I$(EDGE_BPF_DIR) -Iinclude

$(EDGE_BPF_DIR)/vmlinux.h: $(EDGE_BTF)
	@mkdir -p $(dir $@)
	$(BPFTOOL) btf dump file $< format c > $@

$(EDGE_BPF_DIR)/%.bpf.o: bpf/%.bpf.c include/ktlsgate/xdp_gate_maps.h $(EDGE_BPF_DIR)/vmlinux.h
	@mkdir -p $(dir $@)
	$(BPF_CLANG) $(EDGE_BPF_FLAGS) -c $< -o $@

$(EDGE_BPF_DIR)/%.skel.h: $(EDGE_BPF_DIR)/%.bpf.o
	$(BPFTOOL) gen skeleton $< name $(subst .,_,$*)_bpf > $@

$(BUILD)/daemon/edge/edge.o: $(EDGE_BPF_DIR)/xdp_gate.skel.h
$(BUILD)/daemon/edge/steer.o: $(EDGE_BPF_DIR)/steer.skel.h
$(BUILD)/daemon/edge/edge.o $(BUILD)/daemon/edge/steer.o: ALL_CFLAGS += -I$(EDGE_BPF_DIR)
# The plain sessions' in-kernel relay (daemon/relay/sockmap.c, docs in bpf/README.md).
$(EDGE_BPF_DIR)/sockmap.bpf.o: include/ktlsgate/sockmap_maps.h
$(BUILD)/daemon/relay/sockmap.o: $(EDGE_BPF_DIR)/sockmap.skel.h
$(BUILD)/daemon/relay/sockmap.o: ALL_CFLAGS += -I$(EDGE_BPF_DIR)

# The fuzz targets compile LIB_SRCS (edge.c among them) straight from source in build/.
EDGE_FUZZ_BINS := $(patsubst tests/fuzz/%.c,build/fuzz/%,$(wildcard tests/fuzz/fuzz_*.c))
$(EDGE_FUZZ_BINS): build/bpf/xdp_gate.skel.h build/bpf/steer.skel.h build/bpf/sockmap.skel.h
build/fuzz/%: FUZZ_CFLAGS += -Ibuild/bpf
ifneq ($(BUILD),build)
build/bpf/%.skel.h: bpf/%.bpf.c include/ktlsgate/xdp_gate_maps.h include/ktlsgate/sockmap_maps.h
	$(MAKE) BUILD=build $@
endif

# Test helpers: a raw-socket SYN sender (hping3 is not installed) and the SYN flood.
$(BUILD)/kg-synflood: tests/edge/kg_synflood.c
	@mkdir -p $(dir $@)
	$(CC) -std=c17 -D_GNU_SOURCE $(WARN) -O2 -o $@ $<

# Worker steering on the real kernel (links libkg for steer.c).
$(BUILD)/kg-steer-check: $(BUILD)/tests/edge/steer_check.o $(BUILD)/libkg.a
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

# Passed every run so far (about 25 s, root): part of make check.
FRAG_CHECKS += check-edge

.PHONY: check-edge bench-edge
check-edge: all $(BUILD)/kg-synflood $(BUILD)/kg-steer-check asan-build
	BUILD=$(BUILD) tests/edge/run.sh

bench-edge: all $(BUILD)/kg-synflood
	BUILD=$(BUILD) tests/edge/bench.sh

# Keep the object between the skeleton and its source (make would delete it as an
# intermediate and rebuild the skeleton on the next run).
.SECONDARY: $(EDGE_BPF_DIR)/xdp_gate.bpf.o $(EDGE_BPF_DIR)/steer.bpf.o $(EDGE_BPF_DIR)/sockmap.bpf.o
