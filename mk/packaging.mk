# mk/packaging.mk - the Debian packages (issue 12), one per release:
#   make deb         build/deb/ktlsgate_*~debN_*.deb, built on this host for its release
#   make deb-trixie  build/deb-trixie/ktlsgate_*~deb13_*.deb, built in a debootstrapped
#                    trixie root (root only), with trixie's lintian in lintian.log
# Both are scripts/build-deb.sh (the tree copied to a scratch directory with
# packaging/debian as its debian/, a per-release changelog entry, dpkg-buildpackage -b;
# the how and why are in its header and docs/packaging.md, "Two releases").
# `make check-packages` tests both: tests/packaging/test-deb.sh for bookworm, then again
# with KG_PKG_SUITE=trixie (build, lint, install into a fresh trixie root).
DEB_DIR   ?= $(BUILD)/deb
DEB_TRIXIE_DIR ?= $(BUILD)/deb-trixie
DEB_JOBS  ?= 2
DEB_WORK_BASE ?= /var/tmp

.PHONY: deb deb-trixie check-packages
deb:
	DEB_JOBS=$(DEB_JOBS) DEB_WORK_BASE=$(DEB_WORK_BASE) scripts/build-deb.sh $(DEB_DIR)

deb-trixie:
	DEB_JOBS=$(DEB_JOBS) DEB_WORK_BASE=$(DEB_WORK_BASE) scripts/build-deb.sh $(DEB_TRIXIE_DIR) trixie

# Root and qemu only (chroots, namespaces, the boot): part of make check. Both releases
# run, even when the first fails; the target fails if either does. Bookworm: `make deb`
# on the host, then its root; trixie: `make deb-trixie` in the cached trixie build root,
# then a fresh trixie root; then `make check-boot` (mk/boot.mk) boots both .debs under
# qemu with systemd as PID 1. Warm: 143-200 s for the roots, 4-6 min for the boots, by
# load (docs/packaging.md). Without root or qemu it says NOT RUN and why, and passes,
# except under CI (CI set), where it fails: the CI machine must run it.
FRAG_CHECKS += check-packages
check-packages:
	@why=""; [ "$$(id -u)" = 0 ] || why="not root (chroots, namespaces, dpkg in a root)"; \
	command -v qemu-system-x86_64 >/dev/null || why="$${why:+$$why; }no qemu-system-x86_64 (the boot test)"; \
	if [ -n "$$why" ]; then \
	  echo "check-packages: NOT RUN: $$why"; \
	  if [ -n "$${CI:-}" ]; then echo "check-packages: CI must run it: failing"; exit 1; fi; \
	  exit 0; \
	fi; \
	rc=0; sum=""; \
	for suite in bookworm trixie; do \
	  if BUILD=$(BUILD) KG_PKG_SUITE=$$suite tests/packaging/test-deb.sh; then sum="$$sum $$suite passed;"; \
	  else sum="$$sum $$suite FAILED;"; rc=1; fi; \
	done; \
	if $(MAKE) --no-print-directory check-boot BUILD=$(BUILD); then sum="$$sum boot passed;"; \
	else sum="$$sum boot FAILED;"; rc=1; fi; \
	echo "check-packages:$$sum"; exit $$rc
