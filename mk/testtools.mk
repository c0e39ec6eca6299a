# mk/testtools.mk - test clients built from tests/lib (no daemon sources claimed).
# kg-mqttcheck: byte-exact MQTT through the gate in both directions, the pipelined /
# split switch stress, close_notify and KeyUpdate behaviour (docs/testing-tools.md).
# Plain C + OpenSSL + libkg's MQTT codec, so the VM guest (mk/ktls.mk) can run it too.
$(BUILD)/kg-mqttcheck: $(BUILD)/tests/lib/kg_mqttcheck.o $(BUILD)/libkg.a
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

# tests/integration/test-relay-exact.sh runs it.
check-integration: $(BUILD)/kg-mqttcheck
check-integration-asan: $(BUILD)/kg-mqttcheck

# kg-regtool: a registry at an older schema version, as an earlier build left it
# (tests/integration/test-upgrade.sh); a SAS token against stored keys, and the CONNECT
# credential check itself, auth-check (tests/integration/test-credentials.sh).
$(BUILD)/kg-regtool: $(BUILD)/tests/lib/kg_regtool.o $(BUILD)/libkg.a
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)
check-integration: $(BUILD)/kg-regtool
