# ktlsgate - one non-recursive Makefile; everything is built in build/.
#   make            build/ktlsgated (daemon) and build/ktlsgate (CLI)
#   make check      install deps, build, unit + ASan/UBSan + integration + short fuzz
#   make check-unit the Check suites alone
#   make demo       PKI, registry, mosquitto + ktlsgated, a simulated fleet
#   make fuzz       libFuzzer targets (FUZZ_SECONDS per target)
#   make lint       the purity guard (lint-pure: pure parts reach no OpenSSL), the layering
#                   guard (lint-layers: parts include only down the layers), shellcheck
#                   of the qemu harnesses (lint-shell) + cppcheck
#   make bench      side-by-side load test against HAProxy and nginx
#   make bench-import  bulk enrolment: device import vs device add calls
.DEFAULT_GOAL := all
.DELETE_ON_ERROR:
.SUFFIXES:

CC      ?= cc
BUILD   ?= build
PKGS    := openssl sqlite3 inih libmicrohttpd json-c tss2-esys tss2-mu tss2-rc tss2-tctildr \
           libbpf libnl-route-3.0 libsystemd libpq
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CHECK_LIBS := $(shell pkg-config --libs check 2>/dev/null)

WARN    := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
           -Wformat=2 -Wno-format-nonliteral -Wvla
CFLAGS  ?= -O2 -g
ALL_CFLAGS := -std=c17 -D_GNU_SOURCE $(WARN) $(CFLAGS) -Iinclude -Idaemon $(PKG_CFLAGS) \
              -fstack-protector-strong -D_FORTIFY_SOURCE=2 -fPIE -MMD -MP
LDFLAGS ?=
ALL_LDFLAGS := -pie -Wl,-z,relro,-z,now $(LDFLAGS)
LIBS    := $(PKG_LIBS) -lpthread

# Each area's fragment (mk/*.mk) defines its own check-* targets (FRAG_CHECKS, run by
# make check) and the build steps its part needs beyond compiling C (BPF skeletons).
FRAG_CHECKS   :=
include $(sort $(wildcard mk/*.mk))

# The tree is the build: daemon/PART/*.c, one folder per part (docs/architecture.md).
# Everything but the two mains goes into libkg.a, shared by the daemon, the CLI and
# the tests.
LIB_SRCS    := $(filter-out daemon/core/main.c daemon/cli/cli%.c,$(wildcard daemon/*/*.c))
CLI_SRCS    := $(wildcard daemon/cli/cli*.c)
UNIT_SRCS   := $(wildcard tests/unit/*.c)
BENCH_SRCS  := $(wildcard tests/bench/*.c)

LIB_OBJS  := $(LIB_SRCS:%.c=$(BUILD)/%.o)
CLI_OBJS  := $(CLI_SRCS:%.c=$(BUILD)/%.o)
UNIT_OBJS := $(UNIT_SRCS:%.c=$(BUILD)/%.o)

.PHONY: docs-check all clean check check-unit check-asan check-integration check-integration-asan asan-build fuzz fuzz-build demo bench deps lint lint-pure lint-layers lint-shell

all: $(BUILD)/ktlsgated $(BUILD)/ktlsgate

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(BUILD)/libkg.a: $(LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/ktlsgated: $(BUILD)/daemon/core/main.o $(BUILD)/libkg.a
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/ktlsgate: $(CLI_OBJS) $(BUILD)/libkg.a
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/check_unit: $(UNIT_OBJS) $(BUILD)/libkg.a
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS) $(CHECK_LIBS)

$(BUILD)/kg-bench: $(BENCH_SRCS:%.c=$(BUILD)/%.o) $(BUILD)/libkg.a
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

# Test client for TLS behaviour Python cannot drive (KeyUpdate).
$(BUILD)/kg-tlsprobe: $(BUILD)/tests/lib/kg_tlsprobe.o $(BUILD)/libkg.a
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

# --- tests -----------------------------------------------------------------
# pkg-config's flags (PKG_CFLAGS, PKG_LIBS, CHECK_LIBS, mk/tpm.mk's LIBS) are read when
# this file is parsed, so a make that installs the libraries cannot also build with
# them: check, demo and bench run scripts/deps.sh first and build in a fresh $(MAKE)
# (issue 10 section 1; make check-fresh proves it on a bare Debian root).
deps:
	@scripts/deps.sh check

check-unit: $(BUILD)/check_unit
	cd tests/unit && CK_FORK=yes ../../$(BUILD)/check_unit

# The same suites, built in build/asan with ASan + UBSan (clang and gcc both work).
ASAN_FLAGS := CFLAGS="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" \
              LDFLAGS="-fsanitize=address,undefined"
asan-build:
	$(MAKE) BUILD=build/asan $(ASAN_FLAGS) build/asan/check_unit build/asan/ktlsgated build/asan/ktlsgate

check-asan: asan-build
	cd tests/unit && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 CK_FORK=yes ../../build/asan/check_unit

# The gateway integration suite against the ASan+UBSan daemon: a memory error aborts
# the daemon, and the suite blames the test that was running. Then the listeners'
# suites (credentials through the scrypt pool, PROXY headers, plain sessions in the
# kernel), the live handover and the fd store (sessions adopted by a second daemon)
# against the same daemon.
# Each run pins the relay (KG_RELAY): the plain suite the record relay, the ASan run
# the OpenSSL relay, so neither depends on whether the host kernel has kTLS.
check-integration-asan: asan-build all $(BUILD)/kg-tlsprobe
	ASAN_OPTIONS=abort_on_error=1:detect_leaks=0 UBSAN_OPTIONS=print_stacktrace=1 \
	  KG_RELAY=openssl GATED=$(CURDIR)/build/asan/ktlsgated bash tests/integration/test-gateway.sh
	set -e; for t in test-auth test-proxy-in test-listeners test-live-handover test-fdstore; do \
	  ASAN_OPTIONS=abort_on_error=1:detect_leaks=0 UBSAN_OPTIONS=print_stacktrace=1 \
	  GATED=$(CURDIR)/build/asan/ktlsgated bash tests/integration/$$t.sh; done

check-integration: all $(BUILD)/kg-tlsprobe
	KG_RELAY=$${KG_RELAY:-userspace} tests/integration/run.sh

# Each stage runs through scripts/stage.sh, which prints "check: stage NAME took N s":
# the CI log says where the time goes. The stages run one after another, in this order.
check:
	@scripts/deps.sh check
	@t0=$$(date +%s); set -e; \
	scripts/stage.sh build $(MAKE) all build/check_unit; \
	for s in check-unit docs-check lint-pure lint-layers check-asan check-integration \
	  check-integration-asan $(FRAG_CHECKS); do scripts/stage.sh $$s $(MAKE) $$s; done; \
	scripts/stage.sh fuzz $(MAKE) fuzz FUZZ_SECONDS=$${FUZZ_SECONDS:-20}; \
	echo "make check: all stages passed in $$(($$(date +%s) - t0)) s"

# --- fuzzing (clang + libFuzzer) --------------------------------------------
FUZZ_SECONDS ?= 60
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BINS := $(FUZZ_SRCS:tests/fuzz/%.c=build/fuzz/%)
FUZZ_CFLAGS := -std=c17 -D_GNU_SOURCE -g -O1 -Iinclude -Idaemon $(PKG_CFLAGS) -fsanitize=fuzzer,address,undefined

build/fuzz/%: tests/fuzz/%.c $(LIB_SRCS)
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -o $@ $< $(LIB_SRCS) $(LIBS)

# The pure parts' targets link their part alone: no $(LIBS), no OpenSSL. A pure part
# that starts to need the rest of the tree fails here at link time, not only in lint.
# (mk/edge.mk makes every fuzz binary wait for the BPF skeletons: only the .c are used.)
FUZZ_PURE_CFLAGS := -std=c17 -D_GNU_SOURCE -g -O1 -Iinclude -Idaemon -fsanitize=fuzzer,address,undefined
build/fuzz/fuzz_policy: tests/fuzz/fuzz_policy.c $(wildcard daemon/policy/*.c)
	@mkdir -p $(dir $@)
	clang $(FUZZ_PURE_CFLAGS) -o $@ $(filter %.c,$^)

build/fuzz/fuzz_mqtt: tests/fuzz/fuzz_mqtt.c daemon/mqtt/mqtt.c
	@mkdir -p $(dir $@)
	clang $(FUZZ_PURE_CFLAGS) -o $@ $(filter %.c,$^)

build/fuzz/fuzz_proxy: tests/fuzz/fuzz_proxy.c $(wildcard daemon/proxy/*.c)
	@mkdir -p $(dir $@)
	clang $(FUZZ_PURE_CFLAGS) -o $@ $(filter %.c,$^)

build/fuzz/fuzz_credential: tests/fuzz/fuzz_credential.c $(wildcard daemon/policy/*.c)
	@mkdir -p $(dir $@)
	clang $(FUZZ_PURE_CFLAGS) -o $@ $(filter %.c,$^)

build/fuzz/fuzz_handover: tests/fuzz/fuzz_handover.c daemon/core/handover_msg.c
	@mkdir -p $(dir $@)
	clang $(FUZZ_PURE_CFLAGS) -o $@ $(filter %.c,$^)

fuzz-build: $(FUZZ_BINS)

fuzz: fuzz-build
	@for f in $(FUZZ_BINS); do \
	  name=$$(basename $$f); corpus=build/fuzz/corpus-$$name; mkdir -p $$corpus; \
	  echo "fuzz: $$name for $(FUZZ_SECONDS)s"; \
	  $$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 $$corpus tests/fuzz/seeds/$$name 2>build/fuzz/$$name.log \
	    || { tail -40 build/fuzz/$$name.log; exit 1; }; \
	  grep -E 'stat::number_of_executed_units' build/fuzz/$$name.log; \
	done

# --- demo and bench ---------------------------------------------------------
demo:
	@scripts/deps.sh demo
	$(MAKE) all
	scripts/demo.sh

bench:
	@scripts/deps.sh check
	$(MAKE) all $(BUILD)/kg-bench
	tests/bench/run.sh

# 2000 `ktlsgate device add` calls vs one `ktlsgate device import` (docs/benchmarks.md).
.PHONY: bench-import
bench-import: all
	BUILD=$(BUILD) tests/bench/import.sh

# Generated docs must match the code they are generated from.
docs-check: $(BUILD)/ktlsgate
	$(BUILD)/ktlsgate reasons --markdown | diff -u docs/reasons.md - \
	  || { echo "docs/reasons.md is stale: $(BUILD)/ktlsgate reasons --markdown > docs/reasons.md" >&2; exit 1; }

# The pure parts, listed once: no I/O, no clock, no OpenSSL, nothing of the connection
# or the event loop (docs/architecture.md). The policy, MQTT and proxy parts whole, and the
# files whose header says "Pure" (relay/record.c says so but is AEAD on OpenSSL's EVP,
# and tpm/tpm_pem.c encodes PEM with OpenSSL: not listed). make lint-pure (run by make
# lint and make check) proves from the compiler's own include list that none of them,
# nor the fuzz targets of the pure parts, reaches OpenSSL, epoll, tls/ or the
# connection (scripts/lint-pure.sh); tests/lint/test-lint-pure.sh proves the guard
# fails on each kind of include (docs/testing-tools.md).
PURE_SRCS   := $(wildcard daemon/policy/*.c daemon/mqtt/*.c daemon/proxy/*.c) daemon/core/srclimit.c \
               daemon/core/handover_msg.c \
               daemon/ops/ratelimit.c daemon/ops/balance.c daemon/edge/edge_policy.c daemon/tpm/tpm_conf.c
PURE_CFLAGS := -std=c17 -D_GNU_SOURCE -Iinclude -Idaemon $(PKG_CFLAGS)
lint-pure:
	scripts/lint-pure.sh '$(CC)' '$(PURE_CFLAGS)' $(PURE_SRCS) tests/fuzz/fuzz_policy.c tests/fuzz/fuzz_mqtt.c \
	  tests/fuzz/fuzz_proxy.c tests/fuzz/fuzz_credential.c tests/fuzz/fuzz_handover.c
	CC='$(CC)' PURE_CFLAGS='$(PURE_CFLAGS)' PURE_SRCS='$(PURE_SRCS)' bash tests/lint/test-lint-pure.sh

# The parts include each other only down the layers, core at the top, ops at the bottom
# (docs/architecture.md): scripts/lint-layers.sh holds the table of which part may
# include which and checks every #include "PART/..." of daemon/ against it;
# tests/lint/test-lint-layers.sh proves it fails on an include that goes up.
lint-layers:
	scripts/lint-layers.sh
	bash tests/lint/test-lint-layers.sh

# The qemu guest harnesses and the launcher they share, at shellcheck's default level
# (-x: what they source is read too, for the names it defines).
SHELLCHECK_SRCS := tests/lib/qemu-boot.sh tests/vm/run.sh tests/packaging/test-boot.sh
lint-shell:
	@command -v shellcheck >/dev/null || { echo "lint-shell: needs shellcheck (apt-get install shellcheck)"; exit 1; }
	shellcheck -x $(SHELLCHECK_SRCS)

lint: lint-pure lint-layers lint-shell
	cppcheck --quiet --error-exitcode=1 --enable=warning,performance,portability \
	  --inline-suppr -Iinclude -Idaemon --suppress=missingIncludeSystem daemon tests/unit

clean:
	rm -rf build

-include $(shell find $(BUILD) -name '*.d' -type f 2>/dev/null)
