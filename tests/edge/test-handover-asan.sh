#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# test-handover-asan.sh - test-handover.sh against the ASan+UBSan daemon (build/asan,
# `make asan-build`, which check-edge depends on): the takeover under load, the drain,
# the forwarded revocation and the two kill cases pass descriptors between processes
# and free them on both sides; a memory error aborts the daemon and fails its test, a
# leak at a clean exit aborts it too (detect_leaks=1).
TOP=$(cd "$(dirname "$0")/../.." && pwd)
ASAN_GATED=${ASAN_GATED:-$TOP/build/asan/ktlsgated}
if [ ! -x "$ASAN_GATED" ]; then
	echo "FAIL test-handover-asan: $ASAN_GATED not built (make asan-build)"
	exit 1
fi
exec env ASAN_OPTIONS=abort_on_error=1:detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	GATED="$ASAN_GATED" bash "$TOP/tests/edge/test-handover.sh"
