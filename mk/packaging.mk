# mk/packaging.mk - the Debian package (issue 12): `make deb` builds build/deb/ktlsgate_*.deb
# with debhelper from packaging/debian/; `make check-packages` builds it, lints it and
# installs it into a fresh bookworm root (tests/packaging/test-deb.sh).
#
# debhelper wants debian/ at the top of the source tree, and the repository keeps none
# there: the tree (git's tracked and untracked-but-not-ignored files, so uncommitted
# work is packaged as it stands, and build/ never is) is copied to a scratch directory
# (DEB_WORK), with packaging/debian as its debian/ and the sysusers/tmpfiles files in it
# under the names dh_installsysusers and dh_installtmpfiles look for. The copy is not
# under build/: the top Makefile includes every `find build -name '*.d'`, and the
# package tree's usr/lib/tmpfiles.d and sysusers.d directories (and the copy's own
# dependency files) would be read as makefiles by every later make. dpkg-buildpackage
# builds in the copy with its own build/ (the worktree's objects, built with other
# CFLAGS, are never reused); the .deb, .changes and .buildinfo are moved to $(DEB_DIR)
# and the copy is removed, or kept (and named) when the build fails.
DEB_DIR   ?= $(BUILD)/deb
DEB_JOBS  ?= 2
DEB_WORK_BASE ?= /var/tmp

.PHONY: deb check-packages
deb:
	@command -v dh >/dev/null || { echo "make deb: debhelper is missing (scripts/deps.sh check installs it)" >&2; exit 1; }
	@set -e; rm -rf $(DEB_DIR); mkdir -p $(DEB_DIR); \
	work=$$(mktemp -d $(DEB_WORK_BASE)/ktlsgate-deb.XXXXXX); mkdir $$work/src; \
	echo "make deb: copying the tree to $$work/src"; \
	git ls-files -z --cached --others --exclude-standard | \
	  xargs -0 sh -c 'for f; do case $$f in build/*) continue;; esac; \
	    if [ -e "$$f" ] || [ -L "$$f" ]; then printf "%s\0" "$$f"; fi; done' sh | \
	  tar --null -T - -cf - | tar -C $$work/src -xf -; \
	cp -a packaging/debian $$work/src/debian; \
	cp packaging/ktlsgate.sysusers $$work/src/debian/ktlsgate.sysusers; \
	cp packaging/ktlsgate.tmpfiles $$work/src/debian/ktlsgate.tmpfiles; \
	if ! (cd $$work/src && dpkg-buildpackage -b -us -uc -j$(DEB_JOBS)); then \
	  echo "make deb: dpkg-buildpackage failed; the build tree is kept in $$work/src" >&2; exit 1; \
	fi; \
	mv $$work/*.deb $$work/*.changes $$work/*.buildinfo $(DEB_DIR)/; \
	rm -rf $$work; \
	ls -l $(DEB_DIR)

# Root only (chroot, namespaces). Passed every run, twice in a row from a clean build/deb
# in 36 s each with the base tarball and the .debs cached (a cold run adds debootstrap
# and the downloads, a few minutes): part of make check.
FRAG_CHECKS += check-packages
check-packages:
	BUILD=$(BUILD) tests/packaging/test-deb.sh
