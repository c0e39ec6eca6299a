# mk/rpm.mk - the RPM (issue 12): `make rpm` builds build/rpm/ktlsgate-*.rpm with rpmbuild
# from packaging/rpm/ktlsgate.spec; `make check-rpm` builds it, runs rpmlint, checks its
# file list, scriptlets and conffile, and installs and erases it in a scratch root
# (tests/packaging/test-rpm.sh).
#
# The tree is copied as mk/packaging.mk copies it for the deb (git's tracked and
# untracked-but-not-ignored files, never build/) into a tarball ktlsgate-VERSION.tar.gz,
# the spec's Source0, in a private _topdir under /var/tmp (RPM_WORK_BASE), not under
# build/: the top Makefile includes every `find build -name '*.d'`, and the buildroot's
# usr/lib/sysusers.d and tmpfiles.d would be read as makefiles. The version comes from
# packaging/debian/changelog, the one source of truth for both packages: its upstream
# part is the RPM's Version (kg_version), its Debian revision the Release (kg_release).
# Debian's rpm cannot see the build dependencies (they are dpkg's), so rpmbuild runs
# with --nodeps; scripts/deps.sh installs them. The .rpm is moved to $(RPM_DIR) and the
# _topdir removed, or kept (and named) when the build fails.
RPM_DIR       ?= $(BUILD)/rpm
RPM_WORK_BASE ?= /var/tmp
RPM_CHANGELOG := packaging/debian/changelog
RPM_VERSION   := ${shell sed -n '1s/^ktlsgate (\([^)]*\)-[^)-]*).*/\1/p' $(RPM_CHANGELOG)}
RPM_RELEASE   := ${shell sed -n '1s/^ktlsgate ([^)]*-\([^)-]*\)).*/\1/p' $(RPM_CHANGELOG)}

# What Fedora's rpm does by default and Debian's rpm 4.18 does not: brp-compress (man
# pages) is a bash script (`read -d`) started as /bin/sh, which is dash on Debian; the
# license directory is /usr/share/licenses/NAME, not NAME-VERSION; the -debuginfo
# package (find-debuginfo strips the binaries into it) is added to the spec.
RPM_DEBIAN_DEFINES := --define "__brp_compress /bin/bash %{_rpmconfigdir}/brp-compress %{?_prefix}" \
	--define "_docdir_fmt %%{NAME}" --define "kg_debug_package %{debug_package}"

.PHONY: rpm check-rpm
rpm:
	@command -v rpmbuild >/dev/null || { echo "make rpm: rpmbuild is missing (scripts/deps.sh check installs rpm)" >&2; exit 1; }
	@[ -n "$(RPM_VERSION)" ] && [ -n "$(RPM_RELEASE)" ] || { echo "make rpm: no version in $(RPM_CHANGELOG)" >&2; exit 1; }
	@set -e; rm -rf $(RPM_DIR); mkdir -p $(RPM_DIR); \
	top=$$(mktemp -d $(RPM_WORK_BASE)/ktlsgate-rpm.XXXXXX); \
	mkdir -p $$top/SOURCES $$top/SPECS $$top/src/ktlsgate-$(RPM_VERSION); \
	echo "make rpm: ktlsgate $(RPM_VERSION)-$(RPM_RELEASE), _topdir $$top"; \
	git ls-files -z --cached --others --exclude-standard | \
	  xargs -0 sh -c 'for f; do case $$f in build/*) continue;; esac; \
	    if [ -e "$$f" ] || [ -L "$$f" ]; then printf "%s\0" "$$f"; fi; done' sh | \
	  tar --null -T - -cf - | tar -C $$top/src/ktlsgate-$(RPM_VERSION) -xf -; \
	tar -C $$top/src -czf $$top/SOURCES/ktlsgate-$(RPM_VERSION).tar.gz ktlsgate-$(RPM_VERSION); \
	rm -rf $$top/src; \
	cp packaging/ktlsgate.sysusers $$top/SOURCES/; \
	cp packaging/rpm/ktlsgate.spec $$top/SPECS/; \
	if ! rpmbuild -bb --nodeps --define "_topdir $$top" $(RPM_DEBIAN_DEFINES) \
	    --define "kg_version $(RPM_VERSION)" --define "kg_release $(RPM_RELEASE)" \
	    $$top/SPECS/ktlsgate.spec >$$top/rpmbuild.log 2>&1; then \
	  tail -30 $$top/rpmbuild.log >&2; \
	  echo "make rpm: rpmbuild failed; the _topdir is kept in $$top (rpmbuild.log)" >&2; exit 1; \
	fi; \
	mv $$top/RPMS/*/ktlsgate-*.rpm $(RPM_DIR)/; \
	cp $$top/rpmbuild.log $(RPM_DIR)/; \
	rm -rf $$top; \
	ls -l $(RPM_DIR)

# Root only (rpm --root runs the scriptlets in a chroot). 25-80 s with the minbase
# tarball cached (two rpm builds, the install, upgrade and erase; passed 4 runs in a row
# on a loaded 2-core machine, 68, 81, 26 and 27 s): part of make check.
FRAG_CHECKS += check-rpm
check-rpm:
	BUILD=$(BUILD) tests/packaging/test-rpm.sh
