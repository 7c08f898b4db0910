#!/usr/bin/env bash
# Where a warm `kiln run` of the fixture spends its time, process by process: one cold run to fill
# a store, then a warm run under `strace -f -e trace=execve,exit_group -tt`, printed as a table of
# every process that ran (start offset, duration, command), followed by Kiln's own stage times.
# Gaps between processes are Kiln's own work (restore, save, …) or waiting.
# Usage: bench/profile.sh [path/to/kiln] [min_seconds]   (default: target/release/kiln; 0.02)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
kiln="${1:-$root/target/release/kiln}"
min="${2:-0.02}"
[ -x "$kiln" ] || (cd "$root" && cargo build --release -q)
command -v strace >/dev/null || { echo "bench/profile.sh needs strace" >&2; exit 2; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/kiln-profile.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
export HOME="$tmp/home" XDG_CACHE_HOME="$tmp/home/.cache" KILN_NO_PROGRESS=1 RUST_LOG=warn
mkdir -p "$HOME"
bash "$root/fixtures/make_repo.sh" "$tmp/repo" >/dev/null
run() { "$kiln" run --repo "$tmp/repo" --rev green --store "file://$tmp/store" "$@"; }
run --workdir "$tmp/cold" >/dev/null 2>&1
strace -f -qq -e trace=execve,exit_group -tt -s 160 -o "$tmp/warm.strace" \
  "$kiln" run --repo "$tmp/repo" --rev green --store "file://$tmp/store" --workdir "$tmp/warm" \
  --summary-json "$tmp/warm.json" >/dev/null 2>&1
python3 - "$tmp/warm.strace" "$tmp/warm.json" "$min" <<'PY'
import json, re, sys
trace, summary, least = sys.argv[1], sys.argv[2], float(sys.argv[3])
def secs(hms):
    h, m, s = hms.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)
started, rows, t0 = {}, [], None
for line in open(trace):
    m = re.match(r"(\d+)\s+(\S+) (.*)", line)  # strace pads short pids with spaces
    if not m:
        continue
    pid, t, rest = m.group(1), secs(m.group(2)), m.group(3)
    t0 = t if t0 is None else t0
    if rest.startswith("execve(") and rest.rstrip().endswith("= 0"):
        argv = re.search(r"\[(.*?)\]", rest)
        started[pid] = (t, argv.group(1).replace('", "', " ").strip('"') if argv else rest)
    elif rest.startswith(("exit_group", "+++ exited")) and pid in started:
        s, cmd = started.pop(pid)
        rows.append((s - t0, t - s, cmd))
rows.sort()
print(f"{len(rows)} processes; those over {least}s:")
print(f"{'start':>7} {'secs':>6}  command")
for s, d, cmd in rows:
    if d >= least:
        print(f"{s:7.2f} {d:6.2f}  {cmd[:150]}")
d = json.load(open(summary))
print("stages: " + "  ".join(f"{s['name']} {s['seconds']:.2f}" for s in d["stages"]) + f"  total {d['seconds']:.2f}")
PY
