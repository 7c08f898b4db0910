#!/usr/bin/env bash
# Every Kiln benchmark, one after the other, each printing its own side-by-side table.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
cargo build --release -q
bash fixtures/fetch.sh >/dev/null
for b in bench/bootstrap.sh bench/cache.sh bench/agent.sh bench/sharing.sh bench/action.sh; do
  [ -f "$b" ] || continue
  echo "== $b"
  bash "$b" "$root/target/release/kiln"
  echo
done
