#!/usr/bin/env bash
# Static checks of the SAM stack: sam validate --lint, cfn-lint and checkov on template.yaml.
#
#   infra/template-checks.sh            # from anywhere; exits non-zero if any check fails
#
# The tools live in two virtualenvs under ${TOOLS_DIR:-$HOME/.cache/nerm-employee-sync/tools}, created on
# the first run from the pinned infra/requirements-*.txt and reused afterwards (a venv is rebuilt only
# when its requirements file or the Python version changes). Two venvs because checkov pins an old boto3
# that breaks aws-sam-cli when they share one. Needs python3 (>= 3.10) and PyPI on the first run only;
# the checks themselves run offline: no AWS credentials, checkov with --skip-download, no telemetry.
#
# Prints one line per tool (PASS/FAIL); the full output of a failing tool follows its line. Set
# VERBOSE=1 to print every tool's output.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS_DIR="${TOOLS_DIR:-$HOME/.cache/nerm-employee-sync/tools}"
PYTHON="${PYTHON:-python3}"
TEMPLATE="${TEMPLATE:-template.yaml}"
REGION="${AWS_REGION:-${AWS_DEFAULT_REGION:-us-east-1}}"

export SAM_CLI_TELEMETRY=0
export PIP_DISABLE_PIP_VERSION_CHECK=1
export BC_SKIP_MAPPING=TRUE          # checkov: no download of the Bridgecrew guideline mapping

cd "$ROOT"
[[ -f "$TEMPLATE" ]] || { echo "template-checks: $ROOT/$TEMPLATE not found" >&2; exit 1; }
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null || {
    echo "template-checks: needs Python >= 3.10 as \$PYTHON (aws-sam-cli requires it); got: $("$PYTHON" --version 2>&1)" >&2
    exit 1
}
mkdir -p "$TOOLS_DIR"
# Two runs at once (CI and a developer, two worktrees) must not build the same venv together.
if command -v flock >/dev/null 2>&1; then
    exec 9>"$TOOLS_DIR/.lock"
    flock 9
fi

# ensure_venv NAME REQUIREMENTS -> prints the venv path; (re)creates it when the stamp is stale.
ensure_venv() {
    local name="$1" req="$ROOT/$2" venv="$TOOLS_DIR/$1" want have
    want="$("$PYTHON" - "$req" <<'PY'
import hashlib, sys
print(sys.version.split()[0], hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())
PY
)"
    have="$(cat "$venv/.nerm-requirements" 2>/dev/null || true)"
    if [[ "$want" != "$have" ]]; then
        echo "template-checks: installing $name tools from $2 into $venv (first run only) ..." >&2
        rm -rf "$venv"
        "$PYTHON" -m venv "$venv" || {
            echo "template-checks: '$PYTHON -m venv' failed (on Debian/Ubuntu: apt-get install python3-venv)" >&2
            exit 1
        }
        if ! "$venv/bin/python" -m pip install --quiet --require-virtualenv -r "$req" >"$TOOLS_DIR/$name-install.log" 2>&1; then
            cat "$TOOLS_DIR/$name-install.log" >&2
            echo "template-checks: pip install for $name failed (log: $TOOLS_DIR/$name-install.log)" >&2
            exit 1
        fi
        # Written last: an interrupted install leaves no stamp and is redone next time.
        echo "$want" >"$venv/.nerm-requirements"
    fi
    echo "$venv"
}

SAM_VENV="$(ensure_venv sam infra/requirements-sam.txt)"
CHECKOV_VENV="$(ensure_venv checkov infra/requirements-checkov.txt)"

LOG_DIR="$(mktemp -d)"
trap 'rm -rf "$LOG_DIR"' EXIT
failed=0

# run_check LABEL COMMAND... : one PASS/FAIL line, the output on failure (or with VERBOSE=1).
run_check() {
    local label="$1" log="$LOG_DIR/$1.log" start rc=0
    shift
    start=$SECONDS
    "$@" >"$log" 2>&1 || rc=$?
    if [[ $rc -eq 0 ]]; then
        printf '%-22s PASS  (%ds)\n' "$label" $((SECONDS - start))
        [[ "${VERBOSE:-0}" == 1 ]] && sed 's/^/    /' "$log"
    else
        printf '%-22s FAIL  (exit %d, %ds)\n' "$label" "$rc" $((SECONDS - start))
        sed 's/^/    /' "$log"
        failed=1
    fi
    return 0
}

run_check "sam validate --lint" "$SAM_VENV/bin/sam" validate --lint --template "$TEMPLATE" --region "$REGION"
run_check "cfn-lint" "$SAM_VENV/bin/cfn-lint" --regions "$REGION" -- "$TEMPLATE"
run_check "checkov" "$CHECKOV_VENV/bin/checkov" -f "$TEMPLATE" --framework cloudformation \
    --skip-download --compact --quiet

exit $failed
