#!/usr/bin/env bash
# Cache archive save/restore speed: Kiln (`kiln cache save|restore`, file:// store) vs
# `tar | zstd -T0` vs `tar czf`/`tar xzf`, side by side, on two trees:
#   (a) wheels+ccache: a wheelhouse (zip-compressed wheels, mostly incompressible) and a ccache
#       directory (hundreds of small object files, compressible), generated;
#   (b) mixed-1GiB: 1 GiB of mixed content (incompressible blobs + compressible text/objects)
#       in many files, generated once under .cache/bench-cache/ (git-ignored) and reused.
# Same zstd level (3) for Kiln and zstd. MB/s = uncompressed content MB / wall seconds.
# Kiln and tar+zstd: best of KILN_BENCH_RUNS (default 3) interleaved runs; tar+gzip: one run.
# Kiln's restore includes what tar does not do: sha256 of the archive, the safety checks, the
# staging directory and the swap.
# Usage: bench/cache.sh [path/to/kiln]   (default: target/release/kiln, built if missing)
#        KILN_BENCH_SIZE_MB=256 bench/cache.sh   (smaller mixed tree)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
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
if [ ! -f "$data/wheels.done" ]; then rm -rf "$data/wheels"; gen "$data/wheels" wheels 0; touch "$data/wheels.done"; fi
if [ ! -f "$data/mixed-$size_mb.done" ]; then
  rm -rf "$data/mixed-$size_mb"; gen "$data/mixed-$size_mb" mixed "$size_mb"; touch "$data/mixed-$size_mb.done"
fi

# --- timing ------------------------------------------------------------------------------
now() { date +%s.%N; }
secs() { python3 -c "print(f'{$2-$1:.3f}')"; }
best() { python3 -c "print(min($1, $2))"; }
runs="${KILN_BENCH_RUNS:-3}"
fsize() { du -sb "$1" | cut -f1; }

# bench NAME SRC...   (Kiln archives every SRC dir; tar archives their common parent's entries)
results=()
bench() {
  local name="$1" parent="$2"; shift 2
  local dirs=("$@") paths=() d
  for d in "${dirs[@]}"; do paths+=(--path "$parent/$d"); done
  local content; content=$(du -sb "${dirs[@]/#/$parent/}" | awk '{s+=$1} END {print s}')
  local mb; mb=$(python3 -c "print($content/1e6)")
  cat "${dirs[@]/#/$parent/}"/* >/dev/null 2>&1 || true
  find "${dirs[@]/#/$parent/}" -type f -exec cat {} + >/dev/null   # warm the page cache for all

  # Kiln and tar+zstd: best of $runs, interleaved (the machine may be shared); gzip: one run.
  local ks=999 kr=999 zs=999 zr=999 gs gr ka za ga t0 t1 i store key kp
  for i in $(seq "$runs"); do
    store="$work/store-$name-$i" key="bench-$name-$i-$$"
    t0=$(now); "$kiln" cache save --key "$key" "${paths[@]}" --store "file://$store" >/dev/null; t1=$(now)
    ks=$(best "$ks" "$(secs "$t0" "$t1")")
    kp=()
    for d in "${dirs[@]}"; do kp+=(--path "$work/out-kiln-$name/$d"); done
    t0=$(now); "$kiln" cache restore --key "$key" "${kp[@]}" --store "file://$store" | grep -q '^exact'; t1=$(now)
    kr=$(best "$kr" "$(secs "$t0" "$t1")")
    ka=$(find "$store/caches" -name '*.tar.zst' -printf '%s\n' | head -1)
    rm -rf "$work/out-kiln-$name" "$store"

    t0=$(now); tar -cf - -C "$parent" "${dirs[@]}" | zstd -T0 -3 -q -f -o "$work/$name.tar.zst"; t1=$(now)
    zs=$(best "$zs" "$(secs "$t0" "$t1")")
    mkdir -p "$work/out-zstd-$name"
    t0=$(now); zstd -d -q -c "$work/$name.tar.zst" | tar -xf - -C "$work/out-zstd-$name"; t1=$(now)
    zr=$(best "$zr" "$(secs "$t0" "$t1")")
    za=$(fsize "$work/$name.tar.zst")
    rm -rf "$work/out-zstd-$name" "$work/$name.tar.zst"
  done

  t0=$(now); tar -czf "$work/$name.tgz" -C "$parent" "${dirs[@]}"; t1=$(now)
  gs=$(secs "$t0" "$t1")
  mkdir -p "$work/out-gz-$name"
  t0=$(now); tar -xzf "$work/$name.tgz" -C "$work/out-gz-$name"; t1=$(now)
  gr=$(secs "$t0" "$t1")
  ga=$(fsize "$work/$name.tgz")
  rm -rf "$work/out-gz-$name" "$work/$name.tgz"

  results+=("$name $mb kiln $ks $kr $ka" "$name $mb tar+zstd $zs $zr $za" "$name $mb tar+gzip $gs $gr $ga")
}

bench wheels+ccache "$data/wheels" wheelhouse ccache
bench "mixed-${size_mb}MiB" "$data" "mixed-$size_mb"

python3 - "${results[@]}" <<'PY'
import sys
rows = [r.split() for r in sys.argv[1:]]
print(f"{'tree':<16} {'tool':<9} {'MB':>7} {'save_s':>7} {'save_MB/s':>9} {'restore_s':>9} {'rest_MB/s':>9} {'archive_MB':>10} {'save_vs_kiln':>12} {'rest_vs_kiln':>12}")
by = {}
for tree, mb, tool, s, r, a in rows:
    by.setdefault(tree, {})[tool] = (float(mb), float(s), float(r), int(a))
for tree, tools in by.items():
    k = tools['kiln']
    for tool, (mb, s, r, a) in tools.items():
        print(f"{tree:<16} {tool:<9} {mb:7.0f} {s:7.2f} {mb/s:9.0f} {r:9.2f} {mb/r:9.0f} {a/1e6:10.1f} {s/k[1]:11.2f}x {r/k[2]:11.2f}x")
print("(x_vs_kiln = that tool's time / Kiln's time: above 1.00x means Kiln is faster)")
PY
