# mk/fresh.mk - a fresh machine (issue 10 section 1): the first `make demo` on a bare
# Debian root (debootstrap minbase, a clean clone of HEAD, only `make demo` inside).
# scripts/check-fresh.sh bounds each stage; this bounds the whole (a cold run, with
# debootstrap and every download, took 4-7 min on the loaded 2-core host, a cached one
# about 4 min: installing the build packages and compiling inside dominate).
KG_FRESH_TIMEOUT ?= 2700

.PHONY: check-fresh
check-fresh:
	timeout -k 60 $(KG_FRESH_TIMEOUT) scripts/check-fresh.sh
FRAG_CHECKS += check-fresh
