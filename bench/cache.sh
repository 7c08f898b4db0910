#!/usr/bin/env bash
# Cache archive save/restore speed: Kiln (`kiln cache save|restore`, file:// store) vs
# `tar | zstd -T0` / `zstd -d | tar x` vs `tar czf` / `tar xzf`, side by side, on two trees:
#   (a) the fixture's caches: the wheelhouse/ and ccache/ of a cold fixture run, taken from
#       KILN_BENCH_FIXTURE=DIR (bench/pipeline.sh leaves them there); without it, a generated
#       look-alike (zip-compressed wheels, hundreds of small compressible object files);
#   (b) mixed-1GiB: 1 GiB of mixed content (incompressible blobs + compressible text/objects)
#       in many files, generated once under .cache/bench-cache/ (git-ignored) and reused.
# Same zstd level (3) for Kiln and zstd. MB/s = uncompressed content MB / wall seconds.
# Median of KILN_BENCH_RUNS (default 5) interleaved rounds, KILN_BENCH_SMALL_RUNS (default 15) on
# the fixture's caches: each round times Kiln's save, tar|zstd, Kiln's restore, zstd|tar and
# tar xzf (the .tgz is made once), Kiln first in odd rounds and second in even ones, the sources
# re-read into the page cache before each save, and a `sync` before every timed step (off the
# clock), so no step waits on another's writeback. Kiln's restore includes what tar does not
# do: the archive's checksum, the safety checks, the staging directory and the swap.
# With KILN_BENCH_RATIOS=FILE, appends "name measured goal" lines for bench/run.sh.
# Usage: bench/cache.sh [path/to/kiln]   (default: target/release/kiln, built if missing)
#        KILN_BENCH_SIZE_MB=256 bench/cache.sh   (smaller mixed tree)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
. "$root/bench/lib.sh"
kiln="${1:-$root/target/release/kiln}"
[ -x "$kiln" ] || (cd "$root" && cargo build --release -q --bin kiln)
for tool in tar zstd gzip python3; do
  command -v "$tool" >/dev/null || { echo "bench/cache.sh needs $tool" >&2; exit 2; }
done
size_mb="${KILN_BENCH_SIZE_MB:-1024}"
data="$root/.cache/bench-cache"
mkdir -p "$data"
work=$(mktemp -d "$root/.cache/bench-cache/run.XXXXXX")
trap 'rm -rf "$work"' EXIT
export KILN_NO_PROGRESS=1 KILN_LOG_FORMAT=text RUST_LOG=warn

# --- trees -------------------------------------------------------------------------------
gen() { # gen DIR KIND SIZE_MB
  python3 - "$@" <<'PY'
import os, random, sys, zipfile, io
out, kind, size_mb = sys.argv[1], sys.argv[2], int(sys.argv[3])
rnd = random.Random(42)
words = [''.join(rnd.choice('abcdefghijklmnopqrstuvwxyz_') for _ in range(rnd.randint(2, 12)))
         for _ in range(5000)]
def text(n):
    parts, total = [], 0
    while total < n:
        line = ' '.join(rnd.choice(words) for _ in range(rnd.randint(3, 14))) + '\n'
        parts.append(line); total += len(line)
    return ''.join(parts).encode()[:n]
corpus = text(4 << 20)
def objfile(n):
    # object-file-like: compressible text with binary noise sprinkled in
    off = rnd.randrange(0, len(corpus) - n) if n < len(corpus) else 0
    b = bytearray(corpus[off:off + n])
    for _ in range(n // 64):
        i = rnd.randrange(0, len(b)); b[i] = rnd.randrange(256)
    return bytes(b)
def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'wb') as f: f.write(data)
if kind == 'wheels':
    wh = os.path.join(out, 'wheelhouse'); cc = os.path.join(out, 'ccache')
    for i in range(40):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, 'w', zipfile.ZIP_DEFLATED) as z:
            for j in range(rnd.randint(3, 20)):
                z.writestr(f'pkg{i}/mod{j}.py', text(rnd.randint(2000, 60000)))
            if i % 3 == 0:
                z.writestr(f'pkg{i}/_ext.so', os.urandom(rnd.randint(200_000, 3_000_000)))
        write(os.path.join(wh, f'pkg{i}-1.{i}.0-cp311-cp311-linux_x86_64.whl'), buf.getvalue())
    for i in range(600):
        d = os.path.join(cc, format(i % 16, 'x'), format(i % 256, '02x'))
        write(os.path.join(d, f'{i:06x}R.o'), objfile(rnd.randint(2000, 120_000)))
    write(os.path.join(cc, 'ccache.conf'), b'max_size = 1G\n')
else:
    total, target, i = 0, size_mb << 20, 0
    while total < target:
        i += 1
        r = rnd.random()
        if r < 0.01:                       # big incompressible blob (1-16 MiB)
            n, data = rnd.randint(1 << 20, 16 << 20), None
            data = os.urandom(n)
        elif r < 0.5:                      # object-ish, 4-400 KiB
            n = rnd.randint(4 << 10, 400 << 10); data = objfile(n)
        else:                              # source/text, 1-64 KiB
            n = rnd.randint(1 << 10, 64 << 10)
            off = rnd.randrange(0, len(corpus) - n); data = corpus[off:off + n]
        n = min(n, target - total); data = data[:n]
        write(os.path.join(out, f'd{i % 37:02d}', f'e{i % 11}', f'f{i:06d}.bin'), data)
        total += n
PY
}
fixture="${KILN_BENCH_FIXTURE:-}"
if [ -z "$fixture" ]; then
  fixture="$data/wheels"
  if [ ! -f "$data/wheels.done" ]; then rm -rf "$data/wheels"; gen "$data/wheels" wheels 0; touch "$data/wheels.done"; fi
fi
if [ ! -f "$data/mixed-$size_mb.done" ]; then
  rm -rf "$data/mixed-$size_mb"; gen "$data/mixed-$size_mb" mixed "$size_mb"; touch "$data/mixed-$size_mb.done"
fi

# --- timing ------------------------------------------------------------------------------
runs="${KILN_BENCH_RUNS:-5}"
fsize() { du -sb "$1" | cut -f1; }
series="$work/series"
mkdir -p "$series"
rec() { echo "$3" >>"$series/$1 $2"; } # rec TREE TOOL.OP SECONDS

# bench NAME ROUNDS PARENT DIR...   (Kiln archives every PARENT/DIR; tar archives PARENT's DIRs)
bench() {
  local name="$1" runs="$2" parent="$3"; shift 3
  local dirs=("$@") paths=() kp=() d i t e store key order tool
  for d in "${dirs[@]}"; do paths+=(--path "$parent/$d"); kp+=(--path "$work/out-kiln/$d"); done
  du -sb "${dirs[@]/#/$parent/}" | awk '{s+=$1} END {print s}' >"$series/$name mb"
  echo "$runs" >"$series/$name rounds"
  local files=()
  mapfile -d '' files < <(find "${dirs[@]/#/$parent/}" -type f -print0)
  cat "${files[@]}" >/dev/null   # warm the page cache for all

  t=$EPOCHREALTIME; tar -czf "$work/$name.tgz" -C "$parent" "${dirs[@]}"; e=$EPOCHREALTIME
  rec "$name" gzip.save "$(seconds "$t" "$e")"
  fsize "$work/$name.tgz" >"$series/$name gzip.size"
  for i in $(seq "$runs"); do
    store="$work/store-$i" key="bench-$name-$i-$$"
    # Odd rounds Kiln first, even rounds tar first: whichever runs second would otherwise
    # always find the page cache and the inode tables as the first one left them.
    if [ $((i % 2)) -eq 1 ]; then order="kiln zstd"; else order="zstd kiln"; fi
    for tool in $order; do
      cat "${files[@]}" >/dev/null   # the sources warm in the page cache before every save
      sync                           # and no other step's dirty pages (see below)
      if [ "$tool" = kiln ]; then
        t=$EPOCHREALTIME; "$kiln" cache save --key "$key" "${paths[@]}" --store "file://$store" >/dev/null
        e=$EPOCHREALTIME; rec "$name" kiln.save "$(seconds "$t" "$e")"
      else
        t=$EPOCHREALTIME; tar -cf - -C "$parent" "${dirs[@]}" | zstd -T0 -3 -q -f -o "$work/$name.tar.zst"
        e=$EPOCHREALTIME; rec "$name" zstd.save "$(seconds "$t" "$e")"
      fi
    done
    mkdir -p "$work/out-zstd" "$work/out-gz"
    for tool in $order gzip; do
      # Each restore starts with nothing left to write back: after a round's saves and
      # restores, gigabytes wait, and the kernel throttles whichever step writes when they
      # pass its dirty limit (tar xzf, last, most of all), as a CI job's one restore never is.
      sync
      case $tool in
        kiln)
          # Checked after the clock stops: a `| grep` would be a third process on the clock.
          t=$EPOCHREALTIME; "$kiln" cache restore --key "$key" "${kp[@]}" --store "file://$store" >"$work/said"
          e=$EPOCHREALTIME; rec "$name" kiln.restore "$(seconds "$t" "$e")"
          grep -q '^exact' "$work/said" || { echo "kiln restore missed:" >&2; cat "$work/said" >&2; exit 1; } ;;
        zstd)
          t=$EPOCHREALTIME; zstd -d -q -c "$work/$name.tar.zst" | tar -xf - -C "$work/out-zstd"
          e=$EPOCHREALTIME; rec "$name" zstd.restore "$(seconds "$t" "$e")" ;;
        gzip)
          t=$EPOCHREALTIME; tar -xzf "$work/$name.tgz" -C "$work/out-gz"
          e=$EPOCHREALTIME; rec "$name" gzip.restore "$(seconds "$t" "$e")" ;;
      esac
    done
    find "$store/caches" -name '*.tar.zst' -printf '%s\n' | head -1 >"$series/$name kiln.size"
    fsize "$work/$name.tar.zst" >"$series/$name zstd.size"
    rm -rf "$store" "$work/$name.tar.zst"   # a few big files: no inode churn
    # kept until the end, see bench/lib.sh
    put_aside "$work/aside" "$name-$i" $((runs - i + 1)) "$work/out-kiln" "$work/out-zstd" "$work/out-gz"
  done
  rm -f "$work/$name.tgz"
}

settle "$work"

# A few MB take milliseconds, where one slow file creation moves a round by 10 %: more rounds
# for the median (KILN_BENCH_SMALL_RUNS, never fewer than KILN_BENCH_RUNS).
small_runs="${KILN_BENCH_SMALL_RUNS:-15}"
[ "$small_runs" -ge "$runs" ] || small_runs=$runs
bench fixture-caches "$small_runs" "$fixture" wheelhouse ccache
bench "mixed-${size_mb}MiB" "$runs" "$data" "mixed-$size_mb"

python3 - "$series" "${KILN_BENCH_RATIOS:-}" <<'PY'
import os, statistics, sys
d, ratios = sys.argv[1], sys.argv[2]
m = {}
for f in os.listdir(d):
    tree, what = f.split(" ")
    m.setdefault(tree, {})[what] = statistics.median(float(x) for x in open(os.path.join(d, f)).read().split())
rounds = ", ".join(f"{tree} {int(v['rounds'])}" for tree, v in m.items())
print(f"medians of interleaved rounds ({rounds}; tar+gzip save: one run)")
print(f"{'tree':<16} {'tool':<9} {'MB':>7} {'save_s':>7} {'save_MB/s':>9} {'restore_s':>9} {'rest_MB/s':>9} {'archive_MB':>10}")
rows = []
for tree, v in m.items():
    mb = v["mb"] / 1e6
    for tool in ("kiln", "zstd", "gzip"):
        s, r, a = v[tool + ".save"], v[tool + ".restore"], v[tool + ".size"]
        label = {"kiln": "kiln", "zstd": "tar+zstd", "gzip": "tar+gzip"}[tool]
        print(f"{tree:<16} {label:<9} {mb:7.0f} {s:7.2f} {mb/s:9.0f} {r:9.2f} {mb/r:9.0f} {a/1e6:10.1f}")
    rows += [
        (f"archive save / tar|zstd -T0 ({tree})", v["kiln.save"] / v["zstd.save"], "<=0.90"),
        (f"archive restore / zstd -d|tar x ({tree})", v["kiln.restore"] / v["zstd.restore"], "<=0.90"),
    ]
    if tree.startswith("mixed"):  # on a few MB, tar xzf is done before any archive tool starts
        rows.append((f"tar xzf / archive restore ({tree})", v["gzip.restore"] / v["kiln.restore"], ">=3.00"))
out = open(ratios, "a") if ratios else None
for name, value, goal in rows:
    print(f"  {name:<52} {value:6.2f}  goal {goal}")
    if out:
        out.write(f"{name}\t{value:.3f}\t{goal}\n")
PY
