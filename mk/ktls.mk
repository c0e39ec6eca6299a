# mk/ktls.mk - kernel TLS (issue 3): guest-only tools and the guest suite.
# tests/vm/run.sh (mk/vm.mk) boots Debian's kernels under qemu; the suite in
# tests/vm/suite drives ktlsgated in each data path inside the guest.

# A finding tool: OpenSSL 3.0's answer to a requested KeyUpdate under kTLS TX.
$(BUILD)/kg-rekey-server: tests/vm/tools/kg_rekey_server.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $< $(LIBS)

# Which ciphers the kernel's TLS takes (setsockopt TLS_TX/TLS_RX): t-80-cipher-fallback.
$(BUILD)/kg-ktls-ciphers: tests/vm/tools/kg_ktls_ciphers.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $<

# The guest suite (tests/vm/suite) on each kernel of KG_VM_KERNELS (mk/vm.mk).
KTLS_VM_BINS     = $(BUILD)/ktlsgated $(BUILD)/ktlsgate $(BUILD)/kg-tlsprobe $(BUILD)/kg-rekey-server \
		   $(BUILD)/kg-ktls-ciphers
KTLS_VM_OPT_BINS = $(BUILD)/kg-mqttcheck
.PHONY: check-vm bench-vm
check-vm bench-vm: export KG_VM_BUILD = $(BUILD)
check-vm: all $(BUILD)/kg-tlsprobe $(BUILD)/kg-rekey-server $(BUILD)/kg-ktls-ciphers
	-@$(MAKE) --no-print-directory $(BUILD)/kg-mqttcheck 2>/dev/null
	$(call kg_vm_suite,tests/vm/suite,$(KTLS_VM_BINS),$(KTLS_VM_OPT_BINS),)
FRAG_CHECKS += check-vm

# The offload bench (tests/vm/bench): cost per GB and per message in each data path and
# in HAProxy, inside the guest. BENCH_* variables scale it (see t-bench.sh).
KG_VM_BENCH_KERNELS ?= bookworm
BENCH_VM_ENV = $(foreach v,BENCH_CONNS BENCH_SMALL_MSGS BENCH_BIG_MSGS BENCH_IDLE BENCH_REPEAT BENCH_TERMS,$(if $($(v)),--env '$(v)=$($(v))'))
bench-vm: all $(BUILD)/kg-bench
	@for k in $(KG_VM_BENCH_KERNELS); do \
	  tests/vm/run.sh --kernel $$k --suite tests/vm/bench --timeout 3300 \
	    --work $(BUILD)/vm/bench-$$k --out $(BUILD)/vm/bench-$$k/out \
	    --bins "$(BUILD)/ktlsgated $(BUILD)/ktlsgate $(BUILD)/kg-bench /usr/sbin/haproxy" \
	    $(BENCH_VM_ENV) || exit 1; \
	  echo "== $$k ($$(cat $(BUILD)/vm/bench-$$k/console.log | grep -a -m1 -o 'Linux version [^ ]*'))"; \
	  { echo "- stamp: ktlsgate $$(git describe --always --dirty 2>/dev/null || echo '?'), $$(date -u '+%Y-%m-%d %H:%M UTC'), guest $$(grep -a -m1 -o 'Linux version [^ ]*' $(BUILD)/vm/bench-$$k/console.log)"; echo; \
	    tests/vm/bench/report.sh $(BUILD)/vm/bench-$$k/out/results.tsv; } | tee $(BUILD)/vm/bench-$$k/results.md; \
	done

# Issue 14 counted exactly (tests/vm/bench-instr): the daemon's user-space instructions
# per GB in each data path, ktlsgated under valgrind's callgrind in the guest, two
# volumes apart (the slope). Not in `make check`. BENCH_* variables scale it (see
# t-instr.sh); the table: tests/vm/bench-instr/report.sh.
VALGRIND_LIB_DIR ?= /usr/libexec/valgrind
# libc's and ld.so's separate debug info, when installed (libc6-dbg), names their
# internal functions in the profiles
BENCH_INSTR_DEBUG = $(foreach f,/lib/x86_64-linux-gnu/libc.so.6 /lib64/ld-linux-x86-64.so.2,$(shell \
	id=$$(readelf -n $(f) 2>/dev/null | awk '/Build ID/ { print $$3 }'); \
	d=/usr/lib/debug/.build-id/$$(echo $$id | cut -c1-2)/$$(echo $$id | cut -c3-).debug; [ -n "$$id" ] && [ -f $$d ] && echo $$d))
BENCH_INSTR_ENV = $(foreach v,BENCH_CONNS BENCH_SIZE BENCH_VOLUMES BENCH_REPEAT BENCH_TERMS,$(if $($(v)),--env '$(v)=$($(v))'))
.PHONY: bench-vm-instr
bench-vm-instr: export KG_VM_BUILD = $(BUILD)
bench-vm-instr: all $(BUILD)/kg-bench
	@[ -x /usr/bin/valgrind.bin ] && [ -x $(VALGRIND_LIB_DIR)/callgrind-amd64-linux ] || { echo "bench-vm-instr: needs valgrind"; exit 1; }
	@for k in $(KG_VM_BENCH_KERNELS); do \
	  w=$(BUILD)/vm/bench-instr-$$k; \
	  tests/vm/run.sh --kernel $$k --suite tests/vm/bench-instr --timeout 3300 --work $$w --out $$w/out \
	    --bins "$(BUILD)/ktlsgated $(BUILD)/ktlsgate $(BUILD)/kg-bench" \
	    --file /usr/bin/valgrind.bin:/usr/bin/valgrind \
	    $(foreach f,callgrind-amd64-linux vgpreload_core-amd64-linux.so default.supp,--file $(VALGRIND_LIB_DIR)/$(f)) \
	    $(foreach f,$(BENCH_INSTR_DEBUG),--file $(f)) \
	    $(BENCH_INSTR_ENV) || exit 1; \
	  { echo "- stamp: ktlsgate $$(git describe --always --dirty 2>/dev/null || echo '?'), $$(date -u '+%Y-%m-%d %H:%M UTC'), guest Linux $$(sed -n 's/^KGVM: kernel //p' $$w/console.txt | head -1) (Debian $$k)"; echo; \
	    tests/vm/bench-instr/report.sh $$w/out; } | tee $$w/results.md; \
	done
