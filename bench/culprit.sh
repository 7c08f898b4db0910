#!/usr/bin/env bash
# The cost of culprit finding on the fixture project, beside one cold build, in one run:
# five commits by five authors after a green build, the third breaks a test. Kiln builds the
# green commit cold (the branch's baseline), then the failing head with --bisect: each step is
# a warm build of one commit running only the failing test.
# Usage: bench/culprit.sh [path/to/kiln]   (default: target/release/kiln, built if missing)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
kiln="${1:-$root/target/release/kiln}"
[ -x "$kiln" ] || (cd "$root" && cargo build --release -q)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/kiln-bench-culprit.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
repo="$tmp/repo"
bash "$root/fixtures/make_repo.sh" "$repo" >/dev/null
export HOME="$tmp/home" XDG_CACHE_HOME="$tmp/home/.cache"
cd "$repo"
git reset -q --hard green
commit() { # author-name file-content message
  GIT_AUTHOR_NAME="$1" GIT_AUTHOR_EMAIL="$1@example.com" GIT_COMMITTER_NAME="$1" \
    GIT_COMMITTER_EMAIL="$1@example.com" git commit -qam "$3" --allow-empty
}
echo one >> README.md 2>/dev/null || echo one > README.md; git add -A; commit bob x "Docs"
echo two >> README.md; commit carol x "More docs"
sed -i 's/"total": fastsum.total(values),/"total": fastsum.total(values) + 1,/' app/report.py
commit dan x "Off-by-one in totals"
echo three >> README.md; commit eve x "Docs again"
echo four >> README.md; commit frank x "Last docs"
cd "$root"
store="file://$tmp/store"
run() { "$kiln" run --repo "$repo" --branch main --store "$store" --workdir "$tmp/work" "$@" >/dev/null 2>&1 || true; }
run --rev green --summary-json "$tmp/cold.json"
run --rev main --bisect --summary-json "$tmp/head.json"
python3 - "$tmp/cold.json" "$tmp/head.json" <<'PY'
import json, sys
cold = json.load(open(sys.argv[1]))
head = json.load(open(sys.argv[2]))
c = head.get("culprit")
if not c:
    sys.exit("no culprit found: " + json.dumps(head.get("error")))
print(f"{'cold build':<28} {cold['seconds']:8.1f} s")
print(f"{'failing head build':<28} {head['seconds']:8.1f} s (bisection included)")
print(f"{'bisection steps':<28} {c['steps']:8d}   (skipped {c['skipped']}, {c['others']} other commits)")
print(f"{'seconds per step':<28} {c['seconds'] / max(c['steps'], 1):8.1f} s")
print(f"{'bisection total':<28} {c['seconds']:8.1f} s = {c['seconds'] / cold['seconds']:.2f}x one cold build")
print(f"{'culprit':<28} {c['sha'][:12]} by {c['author']}: {c['subject']}")
PY
