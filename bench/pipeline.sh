#!/usr/bin/env bash
# `kiln run` side by side with the same work done by hand, interleaved, median of N runs (in
# three phases: cold, warm, partial):
#   cold     Kiln's cold bootstrap stage (empty store) vs `uv venv` + `uv pip install` of the same
#            requirements from the same sdists with an empty uv cache;
#   warm     a warm `kiln run` (new work dir, caches in the store), everything but its test stage,
#            vs the floor by hand: `git clone` + `zstd -d | tar x` of the wheelhouse archive Kiln
#            stored + `uv venv` + `uv pip install --no-index --find-links` (empty uv cache);
#            and the warm run's total vs the floor + the bare test command;
#   partial  one requirement bumped (vecmath 1.0 -> 1.1, its C source changed) with the store of a
#            green run: Kiln without its test stage vs that wheel's build alone (`uv build
#            --wheel`, empty uv cache) + the warm floor;
#   cpu      Kiln's own CPU time (user + system of the kiln process, not its children) / the
#            warm run's wall time.
# The hand-made side calls uv and python by their real paths (no version-manager shims).
# Prints a table of medians; with KILN_BENCH_RATIOS=FILE also appends "name measured goal" lines
# for bench/run.sh. With KILN_BENCH_KEEP=DIR the first cold run's wheelhouse/ and ccache/ are
# copied there (bench/cache.sh times the archive code on them).
# Usage: bench/pipeline.sh [path/to/kiln] [runs]   (default: target/release/kiln; 5 runs)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
. "$root/bench/lib.sh"
kiln="${1:-$root/target/release/kiln}"
runs="${2:-${KILN_BENCH_RUNS:-5}}"
[ -x "$kiln" ] || (cd "$root" && cargo build --release -q)
real() { # the executable behind a pyenv/asdf shim, else the one on PATH
  { command -v pyenv >/dev/null && pyenv which "$1" 2>/dev/null; } || command -v "$1"
}
PY=$(real python3)
UV=$(real uv)
GIT=$(command -v git)
export GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0=advice.detachedHead GIT_CONFIG_VALUE_0=false
tmp=$(mktemp -d "${TMPDIR:-/tmp}/kiln-bench-pipeline.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
export HOME="$tmp/home" XDG_CACHE_HOME="$tmp/home/.cache" KILN_NO_PROGRESS=1 RUST_LOG=warn
mkdir -p "$HOME" "$tmp/t"

# --- the project: the fixture, plus a branch `bump` where one requirement changed -------------
repo="$tmp/repo"
bash "$root/fixtures/make_repo.sh" "$repo" >/dev/null
(
  cd "$repo"
  git checkout -q -b bump green
  src=$(mktemp -d)
  cp -r "$root/fixtures/packages/vecmath" "$src/vecmath-1.1"
  sed -i 's/^version = "1.0"/version = "1.1"/' "$src/vecmath-1.1/pyproject.toml"
  printf '\n/* 1.1 */\nstatic const char *vecmath_release = "1.1";\n' >>"$src/vecmath-1.1/src/vecmath.c"
  printf 'Metadata-Version: 2.1\nName: vecmath\nVersion: 1.1\n' >"$src/vecmath-1.1/PKG-INFO"
  tar -C "$src" -czf vendor/vecmath-1.1.tar.gz vecmath-1.1
  rm -rf "$src"
  sed -i 's/^vecmath==1.0$/vecmath==1.1/' requirements.txt
  git add -A
  git -c user.name=Bench -c user.email=bench@example.com commit -q -m "vecmath 1.1"
  git checkout -q main
)
git -C "$repo" show bump:vendor/vecmath-1.1.tar.gz >"$tmp/vecmath-1.1.tar.gz"
sdist_bump="$tmp/vecmath-1.1.tar.gz"

# --- measuring -------------------------------------------------------------------------------
record() { echo "$2" >>"$tmp/t/$1"; } # record SERIES SECONDS
field() { "$PY" -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$@"; }
stage='lambda n: sum(s["seconds"] for s in d["stages"] if s["name"] == n)'

kiln_run() { # kiln_run NAME REV WORKDIR STORE: one timed `kiln run`; records NAME.* series
  local name=$1 rev=$2 wd=$3 store=$4
  "$PY" "$root/bench/timed.py" "$tmp/$name.time" -- "$kiln" run --repo "$repo" --rev "$rev" \
    --workdir "$wd" --store "file://$store" --summary-json "$tmp/$name.json" \
    >"$tmp/$name.log" 2>&1 || { echo "kiln run ($name) failed:" >&2; tail -20 "$tmp/$name.log" >&2; exit 1; }
  local wall cpu test
  wall=$(field "$tmp/$name.time" 'd["wall"]')
  cpu=$(field "$tmp/$name.time" 'd["self_cpu"]')
  test=$(field "$tmp/$name.json" "($stage)('test')")
  record "$name.total" "$wall"
  record "$name.notest" "$("$PY" -c "print($wall - $test)")"
  record "$name.cpu" "$("$PY" -c "print($cpu / $wall)")"
  record "$name.test" "$test"
  for s in checkout restore bootstrap save report; do
    record "$name.$s" "$(field "$tmp/$name.json" "($stage)('$s')")"
  done
}

uv_cold() { # uv venv + uv pip install from sdists, empty uv cache, in a fresh clone (not timed)
  local d=$1 t e
  "$GIT" clone -q --branch green "$repo" "$d/src"
  t=$EPOCHREALTIME
  (
    cd "$d/src"
    export UV_CACHE_DIR="$d/uv-cache"
    "$UV" venv -q --python "$PY" "$d/venv"
    "$UV" pip install -q --python "$d/venv/bin/python" -r requirements.txt
  )
  e=$EPOCHREALTIME
  record uv_cold "$(seconds "$t" "$e")"
}

floor() { # floor DIR: the warm run by hand, step by step; then the bare test command
  local d=$1 archive t0 t1 t2 t3 t4 t5
  archive=$(ls "$store_base"/caches/*wheels*.tar.zst | head -1)
  mkdir -p "$d/wheelhouse"
  # The clock is read in place between the steps and the seconds computed at the end: nothing
  # but the steps is on it (see bench/lib.sh).
  t0=$EPOCHREALTIME
  "$GIT" clone -q --branch green "$repo" "$d/src"
  t1=$EPOCHREALTIME
  zstd -d -q -c "$archive" | tar -xf - -C "$d/wheelhouse"
  t2=$EPOCHREALTIME
  "$UV" venv -q --python "$PY" "$d/venv"
  t3=$EPOCHREALTIME
  (cd "$d/src" && UV_CACHE_DIR="$d/uv-cache" "$UV" pip install -q --python "$d/venv/bin/python" \
    --no-index --find-links "$d/wheelhouse/0" -r requirements.txt) # the archive's directory #0
  t4=$EPOCHREALTIME
  (cd "$d/src" && PATH="$d/venv/bin:$PATH" VIRTUAL_ENV="$d/venv" python -m pytest -q >/dev/null)
  t5=$EPOCHREALTIME
  record floor.clone "$(seconds "$t0" "$t1")"
  record floor.extract "$(seconds "$t1" "$t2")"
  record floor.venv "$(seconds "$t2" "$t3")"
  record floor.install "$(seconds "$t3" "$t4")"
  record floor "$(seconds "$t0" "$t4")"
  record floor.test "$(seconds "$t4" "$t5")"
}

wheel_alone() { # the bumped requirement's wheel, built on its own with uv (empty uv cache)
  local d=$1 t e
  mkdir -p "$d"
  t=$EPOCHREALTIME
  UV_CACHE_DIR="$d/uv-cache" "$UV" build -q --wheel --no-index --find-links "$repo/vendor" \
    --python "$PY" -o "$d/dist" "$sdist_bump" >/dev/null 2>&1
  e=$EPOCHREALTIME
  record wheel_alone "$(seconds "$t" "$e")"
}

# The store every warm and partial run starts from: one cold run's.
kiln_run cold0 green "$tmp/w-cold0" "$tmp/store-cold0"
store_base="$tmp/store-base"
cp -a "$tmp/store-cold0" "$store_base"
if [ -n "${KILN_BENCH_KEEP:-}" ]; then
  mkdir -p "$KILN_BENCH_KEEP"
  rm -rf "$KILN_BENCH_KEEP/wheelhouse" "$KILN_BENCH_KEEP/ccache"
  cp -a "$tmp/w-cold0/wheelhouse" "$tmp/w-cold0/ccache" "$KILN_BENCH_KEEP/"
fi
rm -rf "$tmp/t"/*
put_aside "$tmp/aside" round-0 1 "$tmp/w-cold0"
settle "$tmp"

# Three phases, each interleaving Kiln with its comparison. The warm phase starts after a
# settle (bench/lib.sh): the cold builds delete their build trees, and on a journal-less ext4 the
# warm runs' file creation would pay for those deletions.
for i in $(seq "$runs"); do
  # Odd rounds Kiln first, even rounds uv first: each cold build deletes its build trees, and
  # whichever runs next creates its files past them (bench/lib.sh).
  if [ $((i % 2)) -eq 1 ]; then kiln_run cold green "$tmp/w-cold-$i" "$tmp/store-cold-$i"; fi
  uv_cold "$tmp/uvcold-$i"
  if [ $((i % 2)) -eq 0 ]; then kiln_run cold green "$tmp/w-cold-$i" "$tmp/store-cold-$i"; fi
  put_aside "$tmp/aside" "cold-$i" $((runs - i + 1)) "$tmp/w-cold-$i" "$tmp/store-cold-$i" \
    "$tmp/uvcold-$i"
done
settle "$tmp"
for i in $(seq "$runs"); do
  # Odd rounds Kiln first, even rounds the floor first.
  if [ $((i % 2)) -eq 1 ]; then kiln_run warm green "$tmp/w-warm-$i" "$store_base"; fi
  floor "$tmp/floor-$i"
  if [ $((i % 2)) -eq 0 ]; then kiln_run warm green "$tmp/w-warm-$i" "$store_base"; fi
  built=$(field "$tmp/warm.json" 'd["wheels"]["built"]')
  [ "$built" = 0 ] || echo "warning: the warm run built $built wheel(s)" >&2
  put_aside "$tmp/aside" "warm-$i" $((runs - i + 1)) "$tmp/w-warm-$i" "$tmp/floor-$i"
done
for i in $(seq "$runs"); do
  cp -a "$store_base" "$tmp/store-partial-$i"
  kiln_run partial bump "$tmp/w-partial-$i" "$tmp/store-partial-$i"
  wheel_alone "$tmp/alone-$i"
  built=$(field "$tmp/partial.json" 'd["wheels"]["built"]')
  [ "$built" = 1 ] || echo "warning: the partial run built $built wheel(s), not 1" >&2
  put_aside "$tmp/aside" "partial-$i" $((runs - i + 1)) "$tmp/w-partial-$i" \
    "$tmp/store-partial-$i" "$tmp/alone-$i"
done

"$PY" - "$tmp/t" "$runs" "${KILN_BENCH_RATIOS:-}" <<'PY'
import os, statistics, sys
d, runs, ratios = sys.argv[1], int(sys.argv[2]), sys.argv[3]
m = {n: statistics.median(float(x) for x in open(os.path.join(d, n)).read().split())
     for n in os.listdir(d)}
print(f"fixture project, median of {runs} interleaved runs (seconds)")
print(f"  kiln warm run:  " + "  ".join(f"{s} {m['warm.' + s]:.2f}" for s in
      ["checkout", "restore", "bootstrap", "test", "save", "report", "total"]))
print(f"  floor by hand:  " + "  ".join(f"{s} {m['floor.' + s]:.2f}" for s in
      ["clone", "extract", "venv", "install", "test"]) + f"  total {m['floor'] + m['floor.test']:.2f}")
print(f"  cold bootstrap: kiln {m['cold.bootstrap']:.2f}  uv pip install {m['uv_cold']:.2f}")
print(f"  partial hit:    kiln {m['partial.notest']:.2f} (w/o test)  wheel alone {m['wheel_alone']:.2f}"
      f" + floor {m['floor']:.2f}")
print(f"  kiln's own CPU: {m['warm.cpu'] * 100:.1f} % of the warm run")
rows = [
    ("cold bootstrap / uv pip install (fixture)", m["cold.bootstrap"] / m["uv_cold"], "<=1.00"),
    ("warm run w/o test / floor", m["warm.notest"] / m["floor"], "<=1.50"),
    ("warm run total / (floor + test)", m["warm.total"] / (m["floor"] + m["floor.test"]), "<=1.30"),
    ("partial hit w/o test / (wheel + floor)", m["partial.notest"] / (m["wheel_alone"] + m["floor"]), "<=1.20"),
    ("kiln's own CPU, % of the warm run's wall time", m["warm.cpu"] * 100, "<=3.00"),
]
out = open(ratios, "a") if ratios else None
for name, value, goal in rows:
    print(f"  {name:<44} {value:6.2f}  goal {goal}")
    if out:
        out.write(f"{name}\t{value:.3f}\t{goal}\n")
PY
