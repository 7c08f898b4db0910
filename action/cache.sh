#!/usr/bin/env bash
# The restore and save sub-actions' main step: turn their inputs (IN_* variables, set by
# restore/action.yml and save/action.yml) into `kiln cache restore|save` flags. Multi-line inputs
# (paths, restore keys) become one flag per non-empty line, as in actions/cache.
set -euo pipefail

kiln="${KILN_BIN:-}"
[ -n "$kiln" ] || kiln="$(command -v kiln || true)"
if [ -z "$kiln" ] || [ ! -x "$kiln" ]; then
  echo "::error title=Kiln cache::kiln is not installed (the install step did not run or failed)"
  exit 3
fi

is_true() {
  case "${1:-}" in
    true | True | TRUE | yes | 1) return 0 ;;
    *) return 1 ;;
  esac
}

# Append one `flag value` pair per non-empty, trimmed line of $2.
# shellcheck disable=SC2088 # a literal "~/", compared with the input
tilde_slash="~/"
lines_to_flags() {
  local flag="$1" line
  while IFS= read -r line || [ -n "$line" ]; do
    line="${line#"${line%%[![:space:]]*}"}"
    line="${line%"${line##*[![:space:]]}"}"
    # A leading ~ means the home directory, as in actions/cache.
    if [ "$flag" = --path ] && [ "${line:0:2}" = "$tilde_slash" ]; then line="$HOME/${line:2}"; fi
    if [ -n "$line" ]; then args+=("$flag" "$line"); fi
  done <<<"$2"
}

op="${KILN_CACHE_OP:?KILN_CACHE_OP must be restore or save}"

# A pull request whose head is in another repository (a fork), or whose head repository is gone,
# runs untrusted code: it must not write to the cache every later build restores.
if [ "$op" = save ] && [ -n "${PR_NUMBER:-}" ] &&
  [ "${PR_HEAD_REPOSITORY:-}" != "${GITHUB_REPOSITORY:-}" ]; then
  echo "::notice title=Kiln cache::pull request #$PR_NUMBER comes from a fork (${PR_HEAD_REPOSITORY:-deleted repository}): not saving"
  exit 0
fi
[ -n "${IN_KEY:-}" ] || { echo "::error title=Kiln cache::the key input is empty"; exit 2; }
args=(cache "$op" --key "$IN_KEY")
lines_to_flags --path "${IN_PATH:-}"
[ -n "${IN_STORE:-}" ] && args+=(--store "$IN_STORE")
if [ "$op" = restore ]; then
  lines_to_flags --restore-key "${IN_RESTORE_KEYS:-}"
  if is_true "${IN_FAIL_ON_CACHE_MISS:-}"; then args+=(--fail-on-miss); fi
  if is_true "${IN_LOOKUP_ONLY:-}"; then args+=(--lookup-only); fi
  echo "cache-primary-key=$IN_KEY" >>"$GITHUB_OUTPUT"
fi

for v in ACTIONS_RUNTIME_TOKEN ACTIONS_CACHE_URL ACTIONS_RESULTS_URL ACTIONS_CACHE_SERVICE_V2; do
  if [ -z "${!v:-}" ]; then unset "$v"; fi
done

exec "$kiln" "${args[@]}"
