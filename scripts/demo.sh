#!/usr/bin/env bash
# Kiln's main job on the bundled fixture: a cold run, then a warm run in a new work dir, with the
# bootstrap times and the speed-up. Installs what it needs first (scripts/setup.sh).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
[ "${KILN_SETUP_DONE:-}" = 1 ] || bash scripts/setup.sh
cargo build --release -q
kiln="$root/target/release/kiln"
demo="$root/.cache/demo"
rm -rf "$demo" && mkdir -p "$demo"
bash fixtures/make_repo.sh "$demo/repo" >/dev/null
store="file://$demo/store"
echo "== cold run (empty store: every C extension is compiled)"
"$kiln" run --repo "$demo/repo" --rev green --workdir "$demo/work-cold" --store "$store" \
  --summary-json "$demo/cold.json"
echo
echo "== warm run (new work dir; wheelhouse and ccache restored from the store)"
"$kiln" run --repo "$demo/repo" --rev green --workdir "$demo/work-warm" --store "$store" \
  --summary-json "$demo/warm.json"
echo
python3 - "$demo/cold.json" "$demo/warm.json" <<'PY'
import json, sys
cold, warm = (json.load(open(p)) for p in sys.argv[1:3])
boot = lambda d: next(s["seconds"] for s in d["stages"] if s["name"] == "bootstrap")
c, w = boot(cold), boot(warm)
print(f"bootstrap: cold {c:.2f}s ({cold['wheels']['built']} wheels built), "
      f"warm {w:.2f}s ({warm['wheels']['built']} built, installer {warm['installer']}): "
      f"{c / max(w, 1e-9):.1f}x faster")
PY
