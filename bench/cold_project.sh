#!/usr/bin/env bash
# A real C-extension project's cold bootstrap (default: msgpack's released sdist as a git repo,
# no kiln.yml), interleaved, median of N runs:
#   kiln   the bootstrap stage of a cold `kiln run` (empty store, new work dir): the venv, the
#          build requirements and pytest into the wheelhouse, the project built (editable,
#          through ccache) and its compiled modules checked;
#   uv     `uv venv` + `uv pip install -e . pytest` in a fresh clone with an empty uv cache.
# Both take every package from the same offline source (.cache/fixtures/vendor), so the network
# is not what is measured. Prints the medians; with KILN_BENCH_RATIOS=FILE also appends the
# ratio line for bench/run.sh.
# Usage: bench/cold_project.sh [path/to/kiln] [project] [runs]   (msgpack; KILN_BENCH_RUNS or 5)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
. "$root/bench/lib.sh"
kiln="${1:-$root/target/release/kiln}"
project="${2:-msgpack}"
runs="${3:-${KILN_BENCH_RUNS:-5}}"
[ -x "$kiln" ] || (cd "$root" && cargo build --release -q)
bash "$root/fixtures/fetch.sh" >/dev/null
real() { { command -v pyenv >/dev/null && pyenv which "$1" 2>/dev/null; } || command -v "$1"; }
PY=$(real python3)
UV=$(real uv)
vendor="$root/.cache/fixtures/vendor"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/kiln-bench-cold-project.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
repo="$tmp/repo"
bash "$root/fixtures/make_project_repo.sh" "$project" "$repo" >/dev/null
export HOME="$tmp/home" XDG_CACHE_HOME="$tmp/home/.cache" KILN_NO_PROGRESS=1 RUST_LOG=warn
# uv 0.13 does not read UV_NO_INDEX: UV_OFFLINE keeps both sides (and the build environments'
# resolution) off the network.
export PIP_NO_INDEX=1 PIP_FIND_LINKS="$vendor" UV_NO_INDEX=1 UV_FIND_LINKS="$vendor" UV_OFFLINE=1
mkdir -p "$HOME" "$tmp/t"

settle "$tmp"
kiln_cold() { # kiln_cold I: one cold `kiln run`; records its bootstrap stage
  "$kiln" run --repo "$repo" --rev release --workdir "$tmp/w-$1" --store "file://$tmp/store-$1" \
    --summary-json "$tmp/kiln.json" >"$tmp/kiln.log" 2>&1 || { tail -20 "$tmp/kiln.log" >&2; exit 1; }
  "$PY" -c 'import json,sys; d=json.load(open(sys.argv[1]))
print(sum(s["seconds"] for s in d["stages"] if s["name"] == "bootstrap"))' "$tmp/kiln.json" >>"$tmp/t/kiln"
}
uv_cold() { # uv_cold I: uv venv + uv pip install in a fresh clone (the clone not timed)
  git -c advice.detachedHead=false clone -q --branch release "$repo" "$tmp/uv-$1/src"
  t=$EPOCHREALTIME
  (
    cd "$tmp/uv-$1/src"
    export UV_CACHE_DIR="$tmp/uv-$1/cache"
    "$UV" venv -q --python "$PY" "$tmp/uv-$1/venv"
    "$UV" pip install -q --python "$tmp/uv-$1/venv/bin/python" -e . pytest
  )
  e=$EPOCHREALTIME
  seconds "$t" "$e" >>"$tmp/t/uv"
}
for i in $(seq "$runs"); do
  # Odd rounds Kiln first, even rounds uv first: each cold build deletes its build trees, and
  # whichever runs next creates its files past them (bench/lib.sh).
  if [ $((i % 2)) -eq 1 ]; then kiln_cold "$i"; uv_cold "$i"; else uv_cold "$i"; kiln_cold "$i"; fi
  put_aside "$tmp/aside" "round-$i" $((runs - i + 1)) "$tmp/w-$i" "$tmp/store-$i" "$tmp/uv-$i" # see bench/lib.sh
done

"$PY" - "$tmp/t" "$runs" "$project" "${KILN_BENCH_RATIOS:-}" <<'PY'
import os, statistics, sys
d, runs, project, ratios = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
m = {n: statistics.median(float(x) for x in open(os.path.join(d, n)).read().split())
     for n in ("kiln", "uv")}
print(f"{project}, median of {runs} interleaved runs (seconds)")
print(f"  cold bootstrap: kiln {m['kiln']:.2f}  uv venv + uv pip install -e . pytest {m['uv']:.2f}")
name, value = f"cold bootstrap / uv pip install ({project})", m["kiln"] / m["uv"]
print(f"  {name:<44} {value:6.2f}  goal <=1.00")
if ratios:
    with open(ratios, "a") as out:
        out.write(f"{name}\t{value:.3f}\t<=1.00\n")
PY
