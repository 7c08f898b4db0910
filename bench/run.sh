#!/usr/bin/env bash
# Every Kiln benchmark in one run. First the speed goals (issue 16), each ratio with its goal
# beside it, medians of interleaved runs:
#   bench/pipeline.sh  cold / warm / partial-hit runs vs uv and the hand-made floor, Kiln's own CPU
#   bench/cold_project.sh  a real C-extension project's (msgpack) cold bootstrap vs uv
#   bench/cache.sh     archive save/restore vs tar|zstd and tar xzf, on the fixture's caches and
#                      a 1 GiB mixed tree
# then the other benches (bootstrap per installer, a bootstrap.command venv, agent, sharing, action),
# each printing its own table.
# Usage: bench/run.sh [speed|all]   (default all; `speed` stops after the ratio table)
#        KILN_BENCH_RUNS=5 (runs per median; at least 5 for figures you quote)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
what="${1:-all}"
cargo build --release -q
bash fixtures/fetch.sh >/dev/null
kiln="$root/target/release/kiln"
export KILN_BENCH_RUNS="${KILN_BENCH_RUNS:-5}"
scratch=$(mktemp -d "${TMPDIR:-/tmp}/kiln-bench-run.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
export KILN_BENCH_RATIOS="$scratch/ratios.tsv"

echo "== bench/pipeline.sh"
KILN_BENCH_KEEP="$scratch/fixture" bash bench/pipeline.sh "$kiln"
echo
echo "== bench/cold_project.sh"
bash bench/cold_project.sh "$kiln" msgpack
echo
echo "== bench/cache.sh"
KILN_BENCH_FIXTURE="$scratch/fixture" bash bench/cache.sh "$kiln"
echo

echo "== speed goals (issue 16), median of $KILN_BENCH_RUNS interleaved runs, $(nproc) cores, $(date -u +%FT%TZ)"
python3 - "$KILN_BENCH_RATIOS" <<'PY'
import sys
print(f"{'ratio':<62} {'measured':>8}  {'goal':>7}  met")
for line in open(sys.argv[1]):
    name, value, goal = line.rstrip("\n").split("\t")
    v, g = float(value), float(goal[2:])
    met = v <= g if goal.startswith("<=") else v >= g
    print(f"{name:<62} {v:8.2f}  {goal:>7}  {'yes' if met else 'NO'}")
PY
[ "$what" = speed ] && exit 0

for b in bench/bootstrap.sh bench/command.sh bench/culprit.sh bench/agent.sh bench/sharing.sh bench/action.sh; do
  [ -f "$b" ] || continue
  echo
  echo "== $b"
  bash "$b" "$kiln"
done
