#!/usr/bin/env bash
# A real C-extension project (default: msgpack's released sdist as a git repo, no kiln.yml),
# bootstrapped and tested by Kiln, side by side with the tools people use without it:
#   kiln cold      empty store: dependencies, build requirements and the project compiled;
#   kiln warm      a new work dir, caches restored: the project's own C code compiled (ccache hits);
#   kiln warm+edit one line of the project's C code changed: that file recompiled only;
#   uv sync cold   `uv sync` (lock, .venv, the project editable) + pytest, empty uv cache;
#   pip -e cold    `python -m venv` + `pip install -e . pytest` with an empty pip cache.
# Every row uses the same offline package source (.cache/fixtures/vendor), so the network is
# not what is measured. Usage: bench/project.sh [path/to/kiln] [project]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
kiln="${1:-$root/target/release/kiln}"
project="${2:-msgpack}"
[ -x "$kiln" ] || (cd "$root" && cargo build --release -q)
bash "$root/fixtures/fetch.sh" >/dev/null
vendor="$root/.cache/fixtures/vendor"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/kiln-bench-project.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
repo="$tmp/repo"
bash "$root/fixtures/make_project_repo.sh" "$project" "$repo" >/dev/null
export HOME="$tmp/home" XDG_CACHE_HOME="$tmp/home/.cache"
export PIP_NO_INDEX=1 PIP_FIND_LINKS="$vendor" UV_NO_INDEX=1 UV_FIND_LINKS="$vendor"
store="$tmp/store"

field() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$@"; }
kiln_row() {
  local label="$1" rev="$2" json="$tmp/$1.json"
  "$kiln" run --repo "$repo" --rev "$rev" --workdir "$tmp/w-$label" --store "file://$store" \
    --summary-json "$json" >"$tmp/$label.log" 2>&1 || { cat "$tmp/$label.log" >&2; exit 1; }
  printf '%-14s %8.2f %8.2f %6s %6s %6s %8s\n' "$label" \
    "$(field "$json" '[s["seconds"] for s in d["stages"] if s["name"]=="bootstrap"][0]')" \
    "$(field "$json" 'd["seconds"]')" "$(field "$json" 'd["wheels"]["built"]')" \
    "$(field "$json" 'd["ccache"]["hits"]')" "$(field "$json" 'd["ccache"]["misses"]')" \
    "$(field "$json" 'd["tests"]["passed"]')"
}
timed_row() {
  local label="$1"; shift
  local t0 t1
  t0=$(date +%s.%N)
  (cd "$repo" && "$@") >"$tmp/$label.log" 2>&1 || { cat "$tmp/$label.log" >&2; exit 1; }
  t1=$(date +%s.%N)
  printf '%-14s %8.2f %8s %6s %6s %6s %8s\n' "$label" "$(python3 -c "print($t1-$t0)")" - - - - -
}

printf '%-14s %8s %8s %6s %6s %6s %8s\n' run install_s total_s built hits misses passed
kiln_row "kiln-cold" release
kiln_row "kiln-warm" release
# One line of the project's own C code changes (a new function: a comment would still hit in
# ccache's preprocessor mode), so the tests still pass.
c_file=$(cd "$repo" && git ls-files '*.c' | head -n1)
(cd "$repo" && printf 'int kiln_bench_edit(void) { return 1; }\n' >> "$c_file" && \
  GIT_AUTHOR_NAME=Bench GIT_AUTHOR_EMAIL=bench@example.com GIT_COMMITTER_NAME=Bench \
  GIT_COMMITTER_EMAIL=bench@example.com git commit -qam "edit $c_file" && git tag edited)
kiln_row "kiln-warm+edit" edited
export UV_CACHE_DIR="$tmp/uv-cache" PIP_CACHE_DIR="$tmp/pip-cache"
timed_row "uv-sync-cold" sh -c "uv sync -q && uv pip install -q --python .venv/bin/python pytest"
timed_row "pip-e-cold" sh -c "python3 -m venv '$tmp/pip-venv' && \
  '$tmp/pip-venv/bin/pip' install -q -e . pytest"
echo "($project; install_s is Kiln's bootstrap stage: venv, wheels, project build, install)"
