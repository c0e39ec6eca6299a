# mk/vm.mk - the kTLS guest harness (tests/vm/, see tests/vm/README.md): Debian's own
# kernels boot under qemu TCG with an initramfs holding a guest suite, because this
# host's kernel has no kTLS. Kernels are cached in $KG_VM_CACHE (/var/tmp/ktlsgate-vm).
#   make check-vm-sanity   the harness's own suite (kernel, OpenSSL kTLS, mosquitto)
#   make vm-kernels        fetch the kernels only (e.g. a CI cache step)
# Not in FRAG_CHECKS: the lead decides what `make check` runs.

KG_VM_KERNELS ?= bookworm trixie
KG_VM_TIMEOUT ?= 900
# More run.sh flags for every suite, e.g. --verbose, --allow-skip, --env K=V.
KG_VM_FLAGS   ?=

# $(call kg_vm_suite,SUITE_DIR,BINS,OPTIONAL_BINS,RUN_SH_FLAGS): a recipe line that runs
# SUITE_DIR on every kernel of KG_VM_KERNELS with BINS (must exist) and those of
# OPTIONAL_BINS that exist when it runs, each kernel's work dir in
# $(BUILD)/vm/SUITE-KERNEL (console.log, exported files in out/). All kernels run even
# after a failure; the line fails if any did. Example:
#   check-vm: all $(BUILD)/kg-tlsprobe
#   	$(call kg_vm_suite,tests/vm/suite,$(BUILD)/ktlsgated $(BUILD)/ktlsgate,$(BUILD)/kg-tlsprobe $(BUILD)/kg-mqttcheck)
kg_vm_suite = @bins="$(strip $(2))"; for b in $(3); do [ -x "$$b" ] && bins="$$bins $$b"; done; \
	fail=""; for k in $(KG_VM_KERNELS); do \
	  tests/vm/run.sh --kernel $$k --suite $(1) --timeout $(KG_VM_TIMEOUT) \
	    --work $(BUILD)/vm/$(notdir $(1))-$$k --bins "$$bins" $(4) $(KG_VM_FLAGS) || fail="$$fail $$k"; \
	done; \
	if [ -n "$$fail" ]; then echo "$(1): FAILED on:$$fail"; exit 1; fi; \
	echo "$(1): passed on $(KG_VM_KERNELS)"

.PHONY: check-vm-sanity vm-kernels

check-vm-sanity:
	$(call kg_vm_suite,tests/vm/sanity,,,)

vm-kernels:
	@for k in $(KG_VM_KERNELS); do tests/vm/fetch-kernel.sh $$k || exit 1; done
