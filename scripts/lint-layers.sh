#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# lint-layers.sh [ROOT] - the parts include each other only down the layers (issue 11).
#
# Every .c and .h under ROOT/daemon/PART/ (ROOT: this script's tree unless given) is
# read for its #include lines that name a part's folder ("PART/name.h" or
# <PART/name.h>). Each must be of the file's own part or allowed by LAYERS below;
# include/ktlsgate/ and system headers are everyone's. A relative include
# ("../core/conn.h") is refused: it would slip past the table. One line per
# violation on stderr, for example:
#   lint-layers: daemon/tls/tls.c includes core/conn.h (line 27): tls may include only policy, registry, tpm, ops
# The table is checked too: a part without a line, a line without a folder, a circle
# between parts, or a header granted by name that is not a plain-type header (one
# that includes no part's header) is an error.
# Exit 0: every include goes down; 1: a violation; 2: usage.
# make lint-layers (run by make lint and make check) runs it; tests/lint/ tests it.
set -u -f

if [ $# -gt 1 ]; then
	echo "usage: $0 [ROOT]" >&2
	exit 2
fi
root=${1:-"$(dirname "$0")/.."}
if [ ! -d "$root/daemon" ]; then
	echo "lint-layers: $root/daemon: no such folder" >&2
	exit 2
fi

# The layers, top to bottom: what each part may include besides itself. A word is a
# whole part, or one header of another part (PART/name.h) when only that header may
# be used: ops is the ground floor and takes only the plain types each part's config
# section and the reason table are written in. "-": nothing. core and cli are the
# tops of the two binaries (daemon and CLI): anything below them, not each other.
LAYERS=(
	'core      auth relay tls tpm policy registry mqtt proxy edge ops'
	'cli       relay tls tpm policy registry mqtt proxy edge ops'
	'relay     tls policy mqtt proxy ops'
	'tls       policy registry tpm ops'
	'auth      policy registry mqtt ops'
	'edge      policy ops'
	'policy    registry mqtt ops'
	'registry  ops'
	'tpm       ops'
	'mqtt      -'
	'proxy     -'
	'ops       edge/edge_conf.h tpm/tpm_conf.h auth/auth_conf.h policy/reason.h'
)

declare -A allow=() known=() is_part=()
order=()
status=0
bad() { echo "lint-layers: $*" >&2; status=1; }

for line in "${LAYERS[@]}"; do
	read -r part deps <<<"$line"
	known[$part]=1
	order+=("$part")
	[ "$deps" = "-" ] && deps=""
	allow[$part]=$deps
done

# The parts are the folders: each needs a line, each line a folder.
mapfile -t parts < <(find "$root/daemon" -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | sort)
for p in "${parts[@]}"; do
	is_part[$p]=1
	[ -n "${known[$p]:-}" ] || bad "daemon/$p/ is a part the layer table does not know: give it a line in LAYERS ($0)"
done
for p in "${order[@]}"; do
	[ -n "${is_part[$p]:-}" ] || bad "the layer table names $p, which has no folder daemon/$p/"
done

# includes_of FILE...: "FILE LINE HEADER" for each #include that names a folder
# ("PART/name.h", <sys/socket.h>, "../x.h"), the header as written. One grep for all.
includes_of() {
	local rec file lineno text hdr
	while IFS= read -r rec; do
		file=${rec#"$root"/}
		text=${file#*:*:}
		lineno=${file#*:}
		lineno=${lineno%%:*}
		file=${file%%:*}
		hdr=${text#*include}
		hdr=${hdr#"${hdr%%[<\"]*}"}
		hdr=${hdr:1}
		hdr=${hdr%%[>\"]*}
		case $hdr in */*) echo "$file $lineno $hdr" ;; esac
	done < <(grep -nHE '^[[:space:]]*#[[:space:]]*include[[:space:]]*[<"]' "$@")
}

# The table is a DAG: no two parts may use each other, however indirectly (tsort
# names the circle). A header granted by name must be a leaf, plain types including
# no part's header, or it would bring its whole part in with it.
edges=""
for p in "${order[@]}"; do
	for dep in ${allow[$p]}; do
		case $dep in
		*/*)
			if [ ! -f "$root/daemon/$dep" ]; then
				bad "the layer table lets $p include $dep, which does not exist"
				continue
			fi
			while read -r _ lineno hdr; do
				[ -n "${is_part[${hdr%%/*}]:-}" ] || [ "${hdr#*../}" != "$hdr" ] || continue
				bad "the layer table lets $p include $dep by name, but it is no plain-type header: it includes $hdr (line $lineno)"
				break
			done < <(includes_of "$root/daemon/$dep")
			;;
		*) edges+="$p $dep"$'\n' ;;
		esac
	done
done
if ! loop=$(tsort <<<"$edges" 2>&1 >/dev/null) || [ -n "$loop" ]; then
	loop=$(sed -n '/input contains a loop/d; s/^tsort: //p' <<<"$loop" | awk '!seen[$0]++' | tr '\n' ' ')
	bad "the layer table has a circle between ${loop% }: no layer may include one above it"
fi

# What a part may include, for the message.
say_allowed() {
	local deps=${allow[$1]}
	if [ -z "$deps" ]; then
		echo "$1 may include no other part"
	else
		echo "$1 may include only ${deps// /, }"
	fi
}

# may PART HEADER: may PART include HEADER ("PART2/name.h")?
may() {
	local part=$1 hdr=$2 dep
	[ "${hdr%%/*}" = "$part" ] && return 0
	for dep in ${allow[$part]}; do
		if [ "$dep" = "${hdr%%/*}" ] || [ "$dep" = "$hdr" ]; then
			return 0
		fi
	done
	return 1
}

mapfile -d '' -t srcs < <(find "$root/daemon" -mindepth 2 -type f \( -name '*.c' -o -name '*.h' \) -print0 | sort -z)
files=${#srcs[@]}
includes=0
while read -r rel lineno hdr; do
	part=${rel#daemon/}
	part=${part%%/*}
	[ -n "${known[$part]:-}" ] || continue   # reported above
	if [ "${hdr#*../}" != "$hdr" ]; then
		bad "$rel includes $hdr (line $lineno): name the part's folder (PART/name.h), not a relative path"
		continue
	fi
	[ -n "${is_part[${hdr%%/*}]:-}" ] || continue
	includes=$((includes + 1))
	may "$part" "$hdr" || bad "$rel includes $hdr (line $lineno): $(say_allowed "$part")"
done < <([ "$files" -eq 0 ] || includes_of "${srcs[@]}")

if [ $status -eq 0 ]; then
	echo "lint-layers: $files files of ${#parts[@]} parts, $includes includes of a part: every one goes down the layers"
fi
exit $status
