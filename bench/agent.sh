#!/usr/bin/env bash
# kiln agent benchmarks, side by side in one run:
# 1. accept path: signed push deliveries on loopback into a real agent (--workers 0, fsync'd
#    queue), 1 client vs 50 concurrent clients: accepted/s and p50/p99 accept latency.
# 2. queues: the embedded queue (one agent) beside PostgreSQL (two agents on one database, a real
#    server started by the test): accepted deliveries/s and accept latency from 50 clients, and
#    job-claim latency p50/p99 (enqueue to claim by one of 2 idle workers per agent).
# Bounded: KILN_AGENT_LOAD_N deliveries (default 2000) per accept pass, KILN_AGENT_FLEET_N (default
# 2000) per queue, KILN_AGENT_CLAIMS claims (default 500), each pass capped. Uses the debug build
# like the test suite (set CARGO_PROFILE=release to measure an optimised agent).
set -euo pipefail
cd "$(dirname "$0")/.."
n="${KILN_AGENT_LOAD_N:-2000}"
profile=()
[ "${CARGO_PROFILE:-}" = release ] && profile=(--release)
KILN_AGENT_BENCH=1 KILN_AGENT_LOAD_N="$n" KILN_AGENT_LOAD_CLIENTS="${KILN_AGENT_LOAD_CLIENTS:-50}" \
  KILN_AGENT_FLEET_N="${KILN_AGENT_FLEET_N:-2000}" KILN_AGENT_CLAIMS="${KILN_AGENT_CLAIMS:-500}" \
  cargo test -q "${profile[@]}" --test e2e -- agent_load:: --nocapture --test-threads=1 2>&1 \
  | sed -n '/^kiln agent /,/^p99 claim ms/p' | grep -Ev '^(test |running|$)'
