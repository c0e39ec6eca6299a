#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# host-prep.sh DATA - the instruction-count bench's data: the offload bench's
# (tests/vm/bench/host-prep.sh: PKI, registry, ktlsgated config), with only as many
# device certificates as connections.
set -euo pipefail
BENCH_DEVICES=${BENCH_DEVICES:-${BENCH_CONNS:-10}} exec "$(dirname "$0")/../bench/host-prep.sh" "$@"
