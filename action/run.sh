#!/usr/bin/env bash
# The Kiln action's main step: turn the action's inputs (IN_* variables, set by action.yml) into
# `kiln run` flags, run it, and make sure the step has an `outcome` output even if kiln could not
# start. kiln itself writes the job summary, annotations and the other outputs (see
# agent/report/actions.rs); its exit code is the step's (0 passed, 1 tests failed, 2 usage,
# 3 infrastructure).
set -euo pipefail

kiln="${KILN_BIN:-}"
if [ -z "$kiln" ]; then
  kiln="$(command -v kiln || true)"
fi
if [ -z "$kiln" ] || [ ! -x "$kiln" ]; then
  echo "::error title=Kiln::kiln is not installed (the install step did not run or failed)"
  echo "outcome=error" >>"$GITHUB_OUTPUT"
  exit 3
fi

is_true() {
  case "${1:-}" in
    true | True | TRUE | yes | 1) return 0 ;;
    *) return 1 ;;
  esac
}

tmp="${RUNNER_TEMP:-${TMPDIR:-/tmp}}/kiln"
mkdir -p "$tmp"

args=(run --repo "${IN_WORKING_DIRECTORY:-.}")
[ -n "${IN_REV:-}" ] && args+=(--rev "$IN_REV")
[ -n "${IN_CHECKOUT:-}" ] && args+=(--checkout "$IN_CHECKOUT")
[ -n "${IN_CONFIG:-}" ] && args+=(--config "$IN_CONFIG")
[ -n "${IN_STORE:-}" ] && args+=(--store "$IN_STORE")
[ -n "${IN_TEST_COMMAND:-}" ] && args+=(--test-command "$IN_TEST_COMMAND")
[ -n "${IN_INSTALLER:-}" ] && args+=(--installer "$IN_INSTALLER")
[ -n "${IN_REPORT_MODE:-}" ] && args+=(--report-mode "$IN_REPORT_MODE")
args+=(--workdir "${IN_WORKDIR:-$tmp/work}")
# One file per step ($$: this step's shell), so two kiln steps in a job keep both summaries.
args+=(--summary-json "${IN_SUMMARY_JSON:-$tmp/summary-${GITHUB_JOB:-job}-$$.json}")
if is_true "${IN_NO_SAVE:-}"; then args+=(--no-save); fi
if is_true "${IN_VERBOSE:-}"; then args+=(--verbose); fi

# The GitHub reporter reads GITHUB_TOKEN: the `token` input wins over a job-level GITHUB_TOKEN,
# and `token: ""` turns GitHub reporting off.
if [ -n "${KILN_GITHUB_TOKEN:-}" ]; then
  export GITHUB_TOKEN="$KILN_GITHUB_TOKEN"
else
  unset KILN_GITHUB_TOKEN GITHUB_TOKEN
fi
for v in ACTIONS_RUNTIME_TOKEN ACTIONS_CACHE_URL ACTIONS_RESULTS_URL ACTIONS_CACHE_SERVICE_V2; do
  if [ -z "${!v:-}" ]; then unset "$v"; fi
done

status=0
"$kiln" "${args[@]}" || status=$?

if ! grep -q '^outcome=' "$GITHUB_OUTPUT" 2>/dev/null; then
  # kiln stopped before reporting (bad flags or config): still give workflows an outcome.
  echo "outcome=error" >>"$GITHUB_OUTPUT"
fi
exit "$status"
