#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# test-lint-layers.sh - the layering guard (scripts/lint-layers.sh) fails on what it
# must: in a copy of daemon/, one include injected that goes up or across the layers
# (tls into core, relay into core, mqtt into anything, ops into a whole part, an
# <angle> or a ../ spelling) makes it exit 1 with the line naming the file, the header
# and what the part may include; a folder the table does not know, and a table with a
# circle or a granted header that is not plain types, fail too; the same copy without
# the injection passes (so each failure is the injection's); the real tree passes.
# Run by make lint-layers (make lint, make check); alone: bash $0
set -u
cd "$(dirname "$0")/../.." || exit 3

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0
failed=0
pass() { echo "PASS $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1: $2"; failed=$((failed + 1)); }

# fresh NAME: a clean copy of the tree's daemon/ in $tmp/NAME; prints its root.
fresh() {
	rm -rf "${tmp:?}/$1"
	mkdir -p "$tmp/$1" && cp -r daemon "$tmp/$1/" && echo "$tmp/$1"
}

# inject ROOT FILE INCLUDE: INCLUDE right after FILE's first #include line (among the
# real ones); prints the line number it landed on.
inject() {
	local f=$1/$2 inc=$3 first
	first=$(grep -n -m1 '^#include' "$f" | cut -d: -f1)
	[ -n "$first" ] || return 1
	awk -v inc="$inc" -v at="$first" '{ print } NR == at { print inc }' "$f" >"$f.new" &&
		mv "$f.new" "$f" && grep -qxF "$inc" "$f" && echo $((first + 1))
}

# expect_violation NAME FILE INCLUDE MESSAGE: the guard exits 1 and prints exactly
# "lint-layers: FILE includes HDR (line N): MESSAGE" (HDR as written in INCLUDE).
expect_violation() {
	local name=$1 file=$2 inc=$3 msg=$4 root line hdr out rc
	root=$(fresh "$name") || { fail "$name" "cannot copy daemon/"; return; }
	line=$(inject "$root" "$file" "$inc") || { fail "$name" "include not injected"; return; }
	hdr=${inc#*[<\"]}
	hdr=${hdr%[>\"]*}
	out=$(scripts/lint-layers.sh "$root" 2>&1)
	rc=$?
	if [ $rc -ne 1 ]; then
		fail "$name" "exit $rc, want 1; output: $out"
	elif ! grep -qxF "lint-layers: $file includes $hdr (line $line): $msg" <<<"$out"; then
		fail "$name" "no line naming $file, $hdr and line $line; output: $out"
	elif [ "$(wc -l <<<"$out")" -ne 1 ]; then
		fail "$name" "more than the one violation; output: $out"
	else
		pass "$name"
	fi
}

# The crossing this guard was written for, and its neighbours.
expect_violation t_lint_layers_tls_core daemon/tls/tls.c '#include "core/conn.h"' \
	'tls may include only policy, registry, tpm, ops'
expect_violation t_lint_layers_tls_relay daemon/tls/tls.h '#include "relay/relay.h"' \
	'tls may include only policy, registry, tpm, ops'
expect_violation t_lint_layers_relay_core daemon/relay/relay.c '#include "core/worker.h"' \
	'relay may include only tls, policy, mqtt, proxy, ops'
expect_violation t_lint_layers_core_cli daemon/core/conn.c '#include "cli/pki.h"' \
	'core may include only auth, relay, tls, tpm, policy, registry, mqtt, proxy, edge, ops'
expect_violation t_lint_layers_mqtt daemon/mqtt/mqtt.c '#include "ops/err.h"' \
	'mqtt may include no other part'
# ops gets single plain-type headers, not their parts.
expect_violation t_lint_layers_ops_part daemon/ops/log.c '#include "policy/policy.h"' \
	'ops may include only edge/edge_conf.h, tpm/tpm_conf.h, auth/auth_conf.h, policy/reason.h'
# Other spellings of the same include.
expect_violation t_lint_layers_angle daemon/policy/policy.c '#include <tls/verify.h>' \
	'policy may include only registry, mqtt, ops'
expect_violation t_lint_layers_relative daemon/registry/registry.c '#include "../core/conn.h"' \
	"name the part's folder (PART/name.h), not a relative path"

# ops including a granted header passes: a copy of ops/log.c given policy/reason.h.
root=$(fresh t_lint_layers_ops_grant)
if inject "$root" daemon/ops/log.c '#include "policy/reason.h"' >/dev/null &&
   out=$(scripts/lint-layers.sh "$root" 2>&1); then
	pass t_lint_layers_ops_grant
else
	fail t_lint_layers_ops_grant "exit $?; output: $out"
fi

# A folder the table does not know is a part without rules: an error.
root=$(fresh t_lint_layers_unknown_part)
mkdir "$root/daemon/store" && echo '#include "core/conn.h"' >"$root/daemon/store/pg.c"
out=$(scripts/lint-layers.sh "$root" 2>&1)
rc=$?
if [ $rc -eq 1 ] && grep -qF "lint-layers: daemon/store/ is a part the layer table does not know" <<<"$out"; then
	pass t_lint_layers_unknown_part
else
	fail t_lint_layers_unknown_part "exit $rc; output: $out"
fi

# The table: a circle between parts, or a header granted by name that brings a part
# in, is refused (a copy of the script with its table changed).
root=$(fresh t_lint_layers_table)
sed "s/^\t'registry  ops'$/\t'registry  ops tls'/" scripts/lint-layers.sh >"$tmp/circle.sh"
out=$(bash "$tmp/circle.sh" "$root" 2>&1)
rc=$?
if ! grep -qF "'registry  ops tls'" "$tmp/circle.sh"; then
	fail t_lint_layers_circle "table not changed"
elif [ $rc -eq 1 ] && grep -qxF "lint-layers: the layer table has a circle between registry tls policy: no layer may include one above it" <<<"$out"; then
	pass t_lint_layers_circle
else
	fail t_lint_layers_circle "exit $rc; output: $out"
fi
sed "s|^\t'ops       edge/edge_conf.h|\t'ops       policy/policy.h edge/edge_conf.h|" scripts/lint-layers.sh >"$tmp/grant.sh"
out=$(bash "$tmp/grant.sh" "$root" 2>&1)
rc=$?
if ! grep -qF "'ops       policy/policy.h" "$tmp/grant.sh"; then
	fail t_lint_layers_grant_plain "table not changed"
elif [ $rc -eq 1 ] && grep -qF "lint-layers: the layer table lets ops include policy/policy.h by name, but it is no plain-type header: it includes " <<<"$out"; then
	pass t_lint_layers_grant_plain
else
	fail t_lint_layers_grant_plain "exit $rc; output: $out"
fi

# The copies without an injection pass: the failures above are the injections'.
root=$(fresh t_lint_layers_clean_copy)
out=$(scripts/lint-layers.sh "$root" 2>&1)
rc=$?
if [ $rc -eq 0 ] && grep -qE "^lint-layers: [0-9]+ files of [0-9]+ parts, [0-9]+ includes of a part: every one goes down the layers$" <<<"$out"; then
	pass t_lint_layers_clean_copy
else
	fail t_lint_layers_clean_copy "exit $rc; output: $out"
fi

# The real tree passes, every file and every part counted.
nfiles=$(find daemon -mindepth 2 -type f \( -name '*.c' -o -name '*.h' \) | wc -l)
nparts=$(find daemon -mindepth 1 -maxdepth 1 -type d | wc -l)
out=$(scripts/lint-layers.sh 2>&1)
rc=$?
if [ "$nfiles" -gt 0 ] && [ $rc -eq 0 ] &&
   grep -qE "^lint-layers: $nfiles files of $nparts parts, [1-9][0-9]* includes of a part: every one goes down the layers$" <<<"$out"; then
	pass t_lint_layers_tree
else
	fail t_lint_layers_tree "exit $rc, $nfiles files, $nparts parts; output: $out"
fi

echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
