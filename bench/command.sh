#!/usr/bin/env bash
# A `bootstrap.command` project: what its venv costs, side by side.
#   ensurepip: `python -m venv` (what a bootstrap.command venv used to be);
#   kiln:      `python -m venv --without-pip` + pip from the interpreter's bundled wheel by uv
#              (what Kiln does now, see agent/run/bootstrap/command_venv.rs);
# medians of KILN_BENCH_RUNS runs, interleaved. Then the fixture project with a
# bootstrap.command (`pip wheel` into the wheelhouse, `pip install` from it), cold and warm.
# Usage: bench/command.sh [path/to/kiln]   (default: target/release/kiln, built if missing)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
kiln="${1:-$root/target/release/kiln}"
[ -x "$kiln" ] || (cd "$root" && cargo build --release -q)
runs="${KILN_BENCH_RUNS:-5}"
py="${PYTHON:-python3}"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/kiln-bench-command.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
wheel=$("$py" -c "import glob, os, ensurepip; print(glob.glob(os.path.join(os.path.dirname(ensurepip.__file__), '_bundled', 'pip-*.whl'))[0])")

secs() { python3 -c "import time,subprocess,sys; t=time.monotonic(); subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); print(time.monotonic()-t)" "$@"; }
: > "$tmp/ensurepip.txt"; : > "$tmp/kiln.txt"
for i in $(seq "$runs"); do
  secs "$py" -m venv "$tmp/e$i" >> "$tmp/ensurepip.txt"
  secs sh -c "'$py' -m venv --without-pip '$tmp/k$i' && uv pip install -q --offline --no-deps --python '$tmp/k$i/bin/python' '$wheel'" >> "$tmp/kiln.txt"
done
median() { sort -n "$1" | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
e=$(median "$tmp/ensurepip.txt"); k=$(median "$tmp/kiln.txt")
printf '%-44s %8s\n' "venv with pip (median of $runs)" seconds
printf '%-44s %8.2f\n' "python -m venv (ensurepip)" "$e" "--without-pip + bundled pip wheel by uv" "$k"
printf 'bootstrap.command venv: %.1fx faster than ensurepip\n' "$(python3 -c "print($e/max($k,1e-9))")"

# The fixture project with its own bootstrap command, cold then warm.
bash "$root/fixtures/make_repo.sh" "$tmp/repo" >/dev/null
(cd "$tmp/repo" && printf 'bootstrap:\n  command: python -m pip wheel -q -r requirements.txt && python -m pip install -q -r requirements.txt\n' >> kiln.yml \
  && git add -A && GIT_AUTHOR_NAME=b GIT_AUTHOR_EMAIL=b@b GIT_COMMITTER_NAME=b GIT_COMMITTER_EMAIL=b@b git commit -qm command)
export HOME="$tmp/home" XDG_CACHE_HOME="$tmp/home/.cache"
field() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$@"; }
printf '%-6s %12s %7s %14s\n' run bootstrap_s built ccache_misses
for run in cold warm; do
  "$kiln" run --repo "$tmp/repo" --rev main --workdir "$tmp/w-$run" --store "file://$tmp/store" \
    --summary-json "$tmp/$run.json" >/dev/null 2>&1 || true
  printf '%-6s %12.2f %7s %14s\n' "$run" \
    "$(field "$tmp/$run.json" '[s["seconds"] for s in d["stages"] if s["name"]=="bootstrap"][0]')" \
    "$(field "$tmp/$run.json" 'd["wheels"]["built"]')" "$(field "$tmp/$run.json" 'd["ccache"]["misses"]')"
done
