#!/usr/bin/env bash
# How long the GitHub Action's install step takes, side by side:
#   asset:      download the release asset from a loopback server, verify its sha256, extract,
#               put it in the tool cache (a fresh hosted runner, every job);
#   tool-cache: the same version again on the same runner (self-hosted runners, from job 2 on).
# Usage: bench/action.sh [path/to/kiln] [runs]   (default: target/release/kiln, built if missing; 5)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
kiln="${1:-$root/target/release/kiln}"
runs="${2:-5}"
[ -x "$kiln" ] || (cd "$root" && cargo build --release -q)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/kiln-bench-action.XXXXXX")
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

version="$("$kiln" --version | awk '{print $NF}')"
target="$(uname -m)-unknown-linux-gnu"
[ "$(uname -s)" = Darwin ] && target="$(uname -m | sed 's/arm64/aarch64/')-apple-darwin"
rel="$tmp/srv/releases/download/v$version"
mkdir -p "$rel" "$tmp/stage"
cp "$kiln" "$tmp/stage/kiln"
tar -czf "$rel/kiln-$target.tar.gz" -C "$tmp/stage" kiln
(cd "$rel" && shasum -a 256 "kiln-$target.tar.gz" >"kiln-$target.tar.gz.sha256")
size=$(wc -c <"$rel/kiln-$target.tar.gz")

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
python3 -m http.server "$port" --bind 127.0.0.1 --directory "$tmp/srv" >/dev/null 2>&1 &
pid=$!
for _ in $(seq 50); do curl -fs "http://127.0.0.1:$port/" >/dev/null && break; sleep 0.1; done

export RUNNER_TEMP="$tmp/temp" GITHUB_OUTPUT=/dev/null KILN_INSTALL_VERSION="$version" \
  KILN_DOWNLOAD_URL="http://127.0.0.1:$port/releases"
mkdir -p "$RUNNER_TEMP"
now() { python3 -c 'import time; print(time.time())'; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

for i in $(seq "$runs"); do
  export RUNNER_TOOL_CACHE="$tmp/tools-$i"
  t0=$(now); bash "$root/action/install.sh" 2>/dev/null; t1=$(now)
  bash "$root/action/install.sh" 2>/dev/null; t2=$(now)
  python3 -c "print($t1-$t0)" >>"$tmp/asset.txt"
  python3 -c "print($t2-$t1)" >>"$tmp/cache.txt"
done
asset=$(median <"$tmp/asset.txt")
cache=$(median <"$tmp/cache.txt")
printf 'kiln %s, asset %s (%.1f MB), median of %s runs\n' "$version" "kiln-$target.tar.gz" \
  "$(python3 -c "print($size/1e6)")" "$runs"
printf '%-34s %10s\n' step seconds
printf '%-34s %10.3f\n' "asset: download + sha256 + extract" "$asset"
printf '%-34s %10.3f\n' "tool-cache hit" "$cache"
printf 'tool-cache hit is %.0fx faster\n' "$(python3 -c "print($asset/max($cache,1e-9))")"
