#!/usr/bin/env bash
# kiln agent accept-path benchmark: signed push deliveries on loopback into a real agent
# (--workers 0, fsync'd queue), 1 client vs 50 concurrent clients; prints accepted/s and
# p50/p99 accept latency side by side. Bounded: KILN_AGENT_LOAD_N deliveries (default 2000)
# per pass, each pass capped at 300 s. Uses the debug build like the test suite (set
# CARGO_PROFILE=release to measure an optimised agent).
set -euo pipefail
cd "$(dirname "$0")/.."
n="${KILN_AGENT_LOAD_N:-2000}"
profile=()
[ "${CARGO_PROFILE:-}" = release ] && profile=(--release)
KILN_AGENT_BENCH=1 KILN_AGENT_LOAD_N="$n" KILN_AGENT_LOAD_CLIENTS="${KILN_AGENT_LOAD_CLIENTS:-50}" \
  cargo test -q "${profile[@]}" --test e2e -- agent_load:: --nocapture 2>&1 \
  | sed -n '/^kiln agent accept path/,/^max accept ms/p'
