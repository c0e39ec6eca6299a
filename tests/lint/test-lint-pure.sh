#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# test-lint-pure.sh - the purity guard (scripts/lint-pure.sh) fails on what it must:
# a copy of a pure source with one forbidden include injected (OpenSSL, the
# connection header, epoll, tls/, the event loop, or a header that reaches OpenSSL
# and tls/) makes it exit 1 naming that header; the same copy without the injection
# passes (so the failure is the include's, not the copy's); a missing header is an
# error, not a pass; the real pure sources pass.
# Run by make lint-pure (make lint, make check), which passes CC, PURE_CFLAGS and
# PURE_SRCS; alone: CC=cc PURE_CFLAGS="-Iinclude -Idaemon" PURE_SRCS=... bash $0
set -u
cd "$(dirname "$0")/../.." || exit 3
root=$PWD
cc=${CC:-cc}
cflags=${PURE_CFLAGS:--std=c17 -D_GNU_SOURCE -Iinclude -Idaemon}
srcs=${PURE_SRCS:-daemon/policy/policy.c daemon/mqtt/mqtt.c}
# The copies live outside the tree: include paths must reach it from anywhere.
cflags_abs="${cflags//-Iinclude/-I$root/include}"
cflags_abs="${cflags_abs//-Idaemon/-I$root/daemon}"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0
failed=0
pass() { echo "PASS $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1: $2"; failed=$((failed + 1)); }

# copy SRC NAME [INCLUDE]: SRC copied to $tmp/NAME.c with INCLUDE right after its
# first #include line (so it sits among the real ones).
copy() {
	local src=$1 name=$2 inc=${3:-}
	if [ -n "$inc" ]; then
		awk -v inc="$inc" '{ print } /^#include/ && !done { print inc; done = 1 }' "$src" >"$tmp/$name.c"
	else
		cp "$src" "$tmp/$name.c"
	fi
	grep -c '^#include' "$tmp/$name.c" >/dev/null || return 1
}

# expect_violation NAME SRC INCLUDE WANT: the guard exits 1 and prints the line
# "lint-pure: <copy> includes WANT (...)".
expect_violation() {
	local name=$1 src=$2 inc=$3 want=$4 out rc
	copy "$src" "$name" "$inc" || { fail "$name" "cannot copy $src"; return; }
	grep -qxF "$inc" "$tmp/$name.c" || { fail "$name" "include not injected"; return; }
	out=$(scripts/lint-pure.sh "$cc" "$cflags_abs" "$tmp/$name.c" 2>&1)
	rc=$?
	if [ $rc -ne 1 ]; then
		fail "$name" "exit $rc, want 1; output: $out"
	elif ! grep -qF "lint-pure: $tmp/$name.c includes $want (" <<<"$out"; then
		fail "$name" "no line naming $want; output: $out"
	else
		pass "$name"
	fi
}

# 1-4: one forbidden include each, into different pure parts.
expect_violation t_lint_pure_openssl daemon/policy/policy.c '#include <openssl/ssl.h>' openssl/ssl.h
expect_violation t_lint_pure_conn daemon/mqtt/mqtt.c '#include "core/conn.h"' core/conn.h
expect_violation t_lint_pure_epoll daemon/core/srclimit.c '#include <sys/epoll.h>' sys/epoll.h
expect_violation t_lint_pure_tls daemon/policy/identity.c '#include "tls/verify.h"' tls/verify.h
expect_violation t_lint_pure_event_loop daemon/policy/reason.c '#include "core/daemon.h"' core/daemon.h
# The exact line, as make lint prints it.
out=$(scripts/lint-pure.sh "$cc" "$cflags_abs" "$tmp/t_lint_pure_openssl.c" 2>&1)
if grep -qxF "lint-pure: $tmp/t_lint_pure_openssl.c includes openssl/ssl.h (OpenSSL), forbidden in a pure part" <<<"$out"; then
	pass t_lint_pure_message
else
	fail t_lint_pure_message "unexpected message: $out"
fi
# Through a header that is not itself forbidden (as policy.h once reached OpenSSL
# through tls/verify.h): each forbidden header it pulls is named with the chain.
copy daemon/ops/ratelimit.c t_lint_pure_chain '#include "relay/record.h"'
out=$(scripts/lint-pure.sh "$cc" "$cflags_abs" "$tmp/t_lint_pure_chain.c" 2>&1)
rc=$?
if [ $rc -eq 1 ] &&
   grep -qxF "lint-pure: $tmp/t_lint_pure_chain.c includes openssl/types.h (OpenSSL), forbidden in a pure part (via relay/record.h)" <<<"$out" &&
   grep -qxF "lint-pure: $tmp/t_lint_pure_chain.c includes tls/tls_keys.h (tls), forbidden in a pure part (via relay/record.h)" <<<"$out"; then
	pass t_lint_pure_chain
else
	fail t_lint_pure_chain "exit $rc; output: $out"
fi

# The same copies without the injection pass: the failures above are the include's.
for src in daemon/policy/policy.c daemon/mqtt/mqtt.c daemon/core/srclimit.c daemon/policy/identity.c \
	   daemon/policy/reason.c daemon/ops/ratelimit.c; do
	copy "$src" "clean_$(basename "$src" .c)"
done
out=$(scripts/lint-pure.sh "$cc" "$cflags_abs" "$tmp"/clean_*.c 2>&1)
rc=$?
if [ $rc -eq 0 ] && grep -qF "lint-pure: 6 pure sources include no" <<<"$out"; then
	pass t_lint_pure_clean_copy
else
	fail t_lint_pure_clean_copy "exit $rc; output: $out"
fi

# A missing header is an error (2), never a pass.
copy daemon/mqtt/mqtt.c t_lint_pure_missing '#include "no/such_header.h"'
out=$(scripts/lint-pure.sh "$cc" "$cflags_abs" "$tmp/t_lint_pure_missing.c" 2>&1)
rc=$?
if [ $rc -eq 2 ] && grep -qF "cannot preprocess" <<<"$out"; then
	pass t_lint_pure_missing_header
else
	fail t_lint_pure_missing_header "exit $rc, want 2; output: $out"
fi

# The real tree passes, every pure source counted.
# shellcheck disable=SC2086  # srcs is a list of files
set -- $srcs
out=$(scripts/lint-pure.sh "$cc" "$cflags" "$@" 2>&1)
rc=$?
if [ $rc -eq 0 ] && grep -qF "lint-pure: $# pure sources include no" <<<"$out"; then
	pass t_lint_pure_tree
else
	fail t_lint_pure_tree "exit $rc; output: $out"
fi

echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
