#!/usr/bin/env bash
# The whole test suite: installs what it needs first (see scripts/setup.sh), then cargo test.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "${KILN_SETUP_DONE:-}" = 1 ] || bash scripts/setup.sh
cargo test --all-targets -- --test-threads="${KILN_TEST_THREADS:-2}"
