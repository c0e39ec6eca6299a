#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# lint-pure.sh CC CFLAGS FILE... - the pure parts stay pure (issue 11).
#
# For each FILE, ask the compiler which headers it really includes, transitively and
# system headers too (`CC CFLAGS -M`: what the preprocessor opens, not what a grep of
# #include lines guesses), and fail when one is forbidden in a pure part:
#   OpenSSL        any header under openssl/
#   epoll          <sys/epoll.h>
#   event loop     daemon/core/conn.h, worker.h, daemon.h, listener.h
#   tls            anything under daemon/tls/
#   relay          daemon/relay/relay.h
# Every violation is one line on stderr, naming the file, the forbidden header and
# the chain of includes that reached it; what a forbidden header includes in turn is
# only counted:
#   lint-pure: daemon/policy/policy.c includes tls/verify.h (tls), forbidden in a pure part (via policy/policy.h)
#   lint-pure: daemon/policy/policy.c: 47 more forbidden headers behind those
# Exit 0: all pure; 1: a violation; 2: usage, or a file the compiler cannot
# preprocess (a missing header is an error, never a pass).
# make lint and make lint-pure run it on PURE_SRCS (Makefile); tests/lint/ tests it.
set -u -f

if [ $# -lt 3 ]; then
	echo "usage: $0 CC CFLAGS FILE..." >&2
	exit 2
fi
cc=$1
cflags=$2
shift 2

# The rules: a shell pattern matched against the header's canonical path, and what it
# stands for. Patterns start with */ so they match wherever the tree or /usr is.
rules=(
	'*/openssl/*|OpenSSL'
	'*/sys/epoll.h|epoll'
	'*/daemon/core/conn.h|the connection'
	'*/daemon/core/worker.h|the event loop'
	'*/daemon/core/daemon.h|the event loop'
	'*/daemon/core/listener.h|the event loop'
	'*/daemon/tls/*|tls'
	'*/daemon/relay/relay.h|the relay'
)

# The header as a reader knows it: from openssl/, sys/, or the part's folder.
short_name() {
	case $1 in
	*/openssl/*) echo "openssl/${1##*/openssl/}" ;;
	*/sys/*) echo "sys/${1##*/sys/}" ;;
	*/daemon/*) echo "${1##*/daemon/}" ;;
	*) echo "$1" ;;
	esac
}

# Canonical paths, one per line, for the paths given (one realpath call, not one per
# header: a source that reaches OpenSSL opens a hundred of them).
canon_all() {
	[ $# -eq 0 ] || realpath -m -- "$@"
}

# Which rule a canonical path breaks: its label, or nothing.
rule_of() {
	local rule
	for rule in "${rules[@]}"; do
		# shellcheck disable=SC2254  # the rule is a pattern
		case $1 in
		${rule%%|*}) echo "${rule#*|}"; return ;;
		esac
	done
}

# Check one source. The set of headers comes from -M; for the message, -H (every
# header the preprocessor opens, one dot per nesting level) gives the chain, and only
# the first forbidden header on each chain is reported: what openssl/ssl.h includes
# in turn is noise once openssl/ssl.h itself is named.
check_one() {
	local src=$1 out line n i d label
	local -a deps canon depth paths hcanon stack=()
	local -A bad=() seen=()

	# shellcheck disable=SC2086  # cflags is a list of flags
	if ! out=$($cc $cflags -M -MT lint-pure "$src" 2>&1); then
		echo "lint-pure: $src: the compiler cannot preprocess it:" >&2
		echo "  ${out//$'\n'/$'\n'  }" >&2
		return 2
	fi
	out=${out//\\$'\n'/ }
	out=${out#lint-pure:}
	read -r -a deps <<<"$out"
	mapfile -t canon < <(canon_all "${deps[@]}")
	for ((i = 0; i < ${#canon[@]}; i++)); do
		label=$(rule_of "${canon[i]}")
		[ -n "$label" ] && bad[${canon[i]}]=$label
	done
	[ ${#bad[@]} -eq 0 ] && return 0

	# shellcheck disable=SC2086
	while IFS= read -r line; do
		d=${line%%[! .]*}
		d=${d// /}
		[ -n "$d" ] || continue
		depth+=("${#d}")
		paths+=("${line#"${line%%[!. ]*}"}")
	done < <($cc $cflags -H -fsyntax-only -w "$src" 2>&1 >/dev/null)
	mapfile -t hcanon < <(canon_all "${paths[@]}")
	n=0
	for ((i = 0; i < ${#hcanon[@]}; i++)); do
		d=${depth[i]}
		stack=("${stack[@]:0:d-1}" "${hcanon[i]}")
		[ -n "${bad[${hcanon[i]}]:-}" ] || continue
		seen[${hcanon[i]}]=1
		local via="" blocked=0 j
		for ((j = 0; j < d - 1; j++)); do
			[ -n "${bad[${stack[j]}]:-}" ] && blocked=1
			via+="${via:+ > }$(short_name "${stack[j]}")"
		done
		[ $blocked -eq 1 ] && { n=$((n + 1)); continue; }
		echo "lint-pure: $src includes $(short_name "${hcanon[i]}") (${bad[${hcanon[i]}]}), forbidden in a pure part${via:+ (via $via)}" >&2
	done
	# Anything -M listed that -H did not show (should not happen): named, without chain.
	for label in "${!bad[@]}"; do
		[ -n "${seen[$label]:-}" ] && continue
		echo "lint-pure: $src includes $(short_name "$label") (${bad[$label]}), forbidden in a pure part" >&2
	done
	[ $n -gt 0 ] && echo "lint-pure: $src: $n more forbidden headers behind those" >&2
	return 1
}

status=0
for src in "$@"; do
	check_one "$src"
	rc=$?
	[ $rc -gt $status ] && status=$rc
done
if [ $status -eq 0 ]; then
	echo "lint-pure: $# pure sources include no OpenSSL, epoll, tls, connection or event-loop header"
fi
exit $status
