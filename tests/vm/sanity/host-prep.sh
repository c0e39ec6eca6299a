#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# host-prep.sh DATA_DIR - run on the host by run.sh before the initramfs is built: the
# sanity suite's PKI and OpenSSL kTLS config.
set -euo pipefail
"$(dirname "$0")/../mkpki.sh" "$1/pki"
