# mk/ktls.mk - kernel TLS (issue 3): guest-only tools and the guest suite.
# tests/vm/run.sh (mk/vm.mk) boots Debian's kernels under qemu; the suite in
# tests/vm/suite drives ktlsgated in each data path inside the guest.

# A finding tool: OpenSSL 3.0's answer to a requested KeyUpdate under kTLS TX.
$(BUILD)/kg-rekey-server: tests/vm/tools/kg_rekey_server.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $< $(LIBS)
