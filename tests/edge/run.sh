#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# run.sh - the XDP gate suite (make check-edge): each test-*.sh here, as root, with
# BUILD pointing at the build directory. Exit 0 only if every script passed; a script
# that skips (exit 77, e.g. not root) is reported as SKIP and fails the run, since
# make check-edge asked for these tests to run.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
export BUILD=${BUILD:-build}
rc=0
for t in "$HERE"/test-*.sh; do
	echo "=== $(basename "$t")"
	timeout 240 bash "$t"
	r=$?
	if [ $r = 77 ]; then
		echo "SKIP $(basename "$t") (counted as failure: check-edge needs root and XDP)"
		rc=1
	elif [ $r != 0 ]; then
		echo "FAIL $(basename "$t") (exit $r)"
		rc=1
	fi
done
[ $rc = 0 ] && echo "check-edge: all passed"
exit $rc
