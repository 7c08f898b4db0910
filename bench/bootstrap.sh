#!/usr/bin/env bash
# Cold vs warm bootstrap of the fixture project, for each installer, side by side.
#   cold: empty store, every C extension compiled (through ccache, cold);
#   warm: a new work dir, caches restored from the store, nothing compiled.
# Also prints Kiln's own overhead: wall time of the warm run not spent in child processes.
# Usage: bench/bootstrap.sh [path/to/kiln]   (default: target/release/kiln, built if missing)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
kiln="${1:-$root/target/release/kiln}"
[ -x "$kiln" ] || (cd "$root" && cargo build --release -q)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/kiln-bench.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
bash "$root/fixtures/make_repo.sh" "$tmp/repo" >/dev/null
export HOME="$tmp/home" XDG_CACHE_HOME="$tmp/home/.cache"

field() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$@"; }

printf '%-9s %12s %12s %9s %14s %12s %10s\n' installer cold_boot_s warm_boot_s speedup warm_restore_s warm_total_s overhead_s
for inst in pip uv; do
  store="$tmp/store-$inst"
  "$kiln" run --repo "$tmp/repo" --rev green --installer "$inst" --workdir "$tmp/w-$inst-cold" \
    --store "file://$store" --summary-json "$tmp/$inst-cold.json" >/dev/null 2>&1
  "$kiln" run --repo "$tmp/repo" --rev green --installer "$inst" --workdir "$tmp/w-$inst-warm" \
    --store "file://$store" --summary-json "$tmp/$inst-warm.json" >/dev/null 2>&1
  boot='[s["seconds"] for s in d["stages"] if s["name"]=="bootstrap"][0]'
  rest='[s["seconds"] for s in d["stages"] if s["name"]=="restore"][0]'
  cold=$(field "$tmp/$inst-cold.json" "$boot")
  warm=$(field "$tmp/$inst-warm.json" "$boot")
  wrest=$(field "$tmp/$inst-warm.json" "$rest")
  wtotal=$(field "$tmp/$inst-warm.json" 'd["seconds"]')
  over=$(field "$tmp/$inst-warm.json" 'd["overhead_seconds"]')
  built=$(field "$tmp/$inst-warm.json" 'd["wheels"]["built"]')
  [ "$built" = 0 ] || echo "warning: warm $inst run built $built wheel(s)" >&2
  printf '%-9s %12.2f %12.2f %8.1fx %14.2f %12.2f %10.2f\n' "$inst" "$cold" "$warm" \
    "$(python3 -c "print($cold/max($warm,1e-9))")" "$wrest" "$wtotal" "$over"
  echo "$inst $warm" >> "$tmp/warm.txt"
done
pipw=$(awk '$1=="pip"{print $2}' "$tmp/warm.txt"); uvw=$(awk '$1=="uv"{print $2}' "$tmp/warm.txt")
printf 'warm bootstrap, pip vs uv: %.2fs vs %.2fs (uv %.1fx faster)\n' "$pipw" "$uvw" "$(python3 -c "print($pipw/max($uvw,1e-9))")"
