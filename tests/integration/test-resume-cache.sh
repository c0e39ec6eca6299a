#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# test-resume-cache.sh - test-resume.sh again with [tls] session_cache = 1000: the sessions
# kept in memory (tls/session_cache.h) instead of stateless tickets. Every resumption
# test must hold the same (the registry and policy on each resumption, a trust change
# or a reload forcing a full handshake, TLS 1.2 never resumed, ticket_reuse, the
# workers sharing it), and t_session_store checks the cache itself (its size, eviction
# of the oldest, the metrics).
exec env KG_SESSION_CACHE=1000 bash "$(dirname "$0")/test-resume.sh"
