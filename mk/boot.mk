# mk/boot.mk - `make check-boot`: each release's .deb installed into a root of that
# release and booted under qemu (TCG) with systemd as PID 1 and Debian's kernel of the
# release (tests/packaging/test-boot.sh; docs/packaging.md, "Boot test"). One boot per
# suite runs all of its checks. Root only; not in FRAG_CHECKS: check-packages calls it.
#
# The .deb of each suite: bookworm's $(BUILD)/deb/ktlsgate_*_amd64.deb (`make deb`),
# trixie's $(BUILD)/deb-trixie/ktlsgate_*_amd64.deb (`make deb-trixie`); the one there is
# used as it is (check-packages has just built it), and built with that target when
# there is none. KG_BOOT_FLAGS adds test-boot.sh flags (--verbose, --keep).
KG_BOOT_SUITES ?= bookworm trixie
KG_BOOT_FLAGS  ?=

.PHONY: check-boot
check-boot:
	@rc=0; for s in $(KG_BOOT_SUITES); do \
	  case $$s in \
	  bookworm) t=deb; d=$(BUILD)/deb ;; \
	  trixie) t=deb-trixie; d=$(BUILD)/deb-trixie ;; \
	  *) echo "FAIL boot_$$s: unknown suite (bookworm | trixie)"; rc=1; continue ;; \
	  esac; \
	  deb=$$(ls $$d/ktlsgate_*_amd64.deb 2>/dev/null | head -1); \
	  if [ -z "$$deb" ]; then \
	    echo "check-boot: no $$d/ktlsgate_*_amd64.deb: make $$t"; \
	    $(MAKE) --no-print-directory $$t BUILD=$(BUILD) >$(BUILD)/check-boot-$$t.log 2>&1 || \
	      { echo "FAIL boot_$$s: make $$t failed (see $(BUILD)/check-boot-$$t.log)"; rc=1; continue; }; \
	    deb=$$(ls $$d/ktlsgate_*_amd64.deb 2>/dev/null | head -1); \
	  fi; \
	  BUILD=$(BUILD) tests/packaging/test-boot.sh --suite $$s --deb $$deb $(KG_BOOT_FLAGS) || rc=1; \
	done; exit $$rc
