#!/usr/bin/env bash
# What sharing saves a second machine ("B", its own home and empty store) once CI ("A") has built
# the fixture project, side by side:
#   alone      B builds everything itself (cold ccache, no shared anything);
#   redis      B shares A's compile cache through ccache remote storage (a local redis-server);
#   offline    B installs the wheels A exported (`kiln wheelhouse export/import`, `run --offline`);
# and for a developer's venv: `pip install` of the C packages from sdists vs from `kiln index serve`.
# Usage: bench/sharing.sh [path/to/kiln]   (default: target/release/kiln, built if missing)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
kiln="${1:-$root/target/release/kiln}"
[ -x "$kiln" ] || (cd "$root" && cargo build --release -q)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/kiln-bench-sharing.XXXXXX")
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT
bash "$root/fixtures/make_repo.sh" "$tmp/repo" >/dev/null
free_port() { python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])"; }
field() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$@"; }
boot='[s["seconds"] for s in d["stages"] if s["name"]=="bootstrap"][0]'

port=$(free_port)
redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no --dir "$tmp" >/dev/null &
pids+=($!)
for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.05; done
{ cat "$tmp/repo/kiln.yml"; printf 'cache:\n  ccache:\n    remote: redis://127.0.0.1:%s\n' "$port"; } > "$tmp/remote.yml"

run() { # name home store extra-args...
  local name=$1 home=$2 store=$3; shift 3
  HOME="$home" XDG_CACHE_HOME="$home/.cache" "$kiln" run --repo "$tmp/repo" --rev green \
    --installer uv --workdir "$tmp/w-$name" --store "file://$store" \
    --summary-json "$tmp/$name.json" "$@" >"$tmp/$name.log" 2>&1 \
    || { echo "run $name failed; log:" >&2; tail -20 "$tmp/$name.log" >&2; exit 1; }
}

# A: CI, with the shared compile cache; its save stage publishes the wheels.
run a "$tmp/home-a" "$tmp/store-a" --config "$tmp/remote.yml"
HOME="$tmp/home-a" "$kiln" wheelhouse export --store "file://$tmp/store-a" \
  --output "$tmp/wheels.tar.zst" >/dev/null
# B, three ways.
run alone "$tmp/home-b1" "$tmp/store-b1"
run redis "$tmp/home-b2" "$tmp/store-b2" --config "$tmp/remote.yml"
HOME="$tmp/home-b3" "$kiln" wheelhouse import "$tmp/wheels.tar.zst" >/dev/null
run offline "$tmp/home-b3" "$tmp/store-b3" --offline

alone=$(field "$tmp/alone.json" "$boot")
printf '%-22s %8s %9s %7s %12s\n' "machine B bootstrap" seconds vs_alone built remote_hits
for name in alone redis offline; do
  s=$(field "$tmp/$name.json" "$boot")
  printf '%-22s %8.2f %8.1fx %7s %12s\n' "$name" "$s" "$(python3 -c "print($alone/max($s,1e-9))")" \
    "$(field "$tmp/$name.json" 'd["wheels"]["built"]')" "$(field "$tmp/$name.json" 'd["ccache"]["remote_hits"]')"
done

# A developer's venv: the C packages from sdists (compiling) vs from A's index.
iport=$(free_port)
"$kiln" index serve --store "file://$tmp/store-a" --listen "127.0.0.1:$iport" >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$iport/healthz" >/dev/null 2>&1 && break; sleep 0.05; done
pkgs="fastsum==1.0 vecmath==1.0 markupsafe==3.0.2 simplejson==4.3.0 wrapt==2.5.2"
dev() { # name pip-args...
  local name=$1; shift
  python3 -m venv --without-pip "$tmp/dev-$name"
  local t0; t0=$(date +%s.%N)
  PIP_CONFIG_FILE=/dev/null CCACHE_DISABLE=1 python3 -m pip --python "$tmp/dev-$name/bin/python" \
    install -q --disable-pip-version-check --no-cache-dir "$@" $pkgs >/dev/null 2>&1
  python3 -c "import time; print(f'{time.time()-$t0:.2f}')"
}
src=$(dev sdist --no-index --find-links "$tmp/repo/vendor")
idx=$(dev index --index-url "http://127.0.0.1:$iport/simple/")
printf '%-22s %8s %9s\n' "developer pip install" seconds speedup
printf '%-22s %8.2f %8.1fx\n' "from sdists" "$src" 1
printf '%-22s %8.2f %8.1fx\n' "from kiln index" "$idx" "$(python3 -c "print($src/max($idx,1e-9))")"
