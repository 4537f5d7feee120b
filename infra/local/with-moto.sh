#!/usr/bin/env bash
# Runs a command against a throwaway moto_server (S3, SQS, SNS, Secrets Manager on 127.0.0.1).
#
#   infra/local/with-moto.sh cargo test -p lambda-tests
#
# moto comes from PyPI, pinned in infra/requirements-moto.txt, in a venv under
# ${TOOLS_DIR:-$HOME/.cache/nerm-employee-sync/tools}/moto, created on the first run and reused while the pin
# file (and the Python version) stay the same. The server listens on a free port of 127.0.0.1; the command
# gets its address as MOTO_URL (e.g. http://127.0.0.1:40123). When the command ends (or this script is
# interrupted) the server is stopped, and the script exits with the command's status.
#
# Environment: TOOLS_DIR (where the venv lives), PYTHON (default python3, >= 3.9),
# MOTO_START_TIMEOUT (seconds to wait for the server, default 60), MOTO_LOG (server log, default a temp file,
# printed if the server does not come up).
set -euo pipefail

if [[ $# -eq 0 ]]; then
    echo "usage: $0 COMMAND [ARG...]   (runs COMMAND with MOTO_URL pointing at a fresh moto_server)" >&2
    exit 2
fi

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TOOLS_DIR="${TOOLS_DIR:-$HOME/.cache/nerm-employee-sync/tools}"
PYTHON="${PYTHON:-python3}"
REQ="$ROOT/infra/requirements-moto.txt"
VENV="$TOOLS_DIR/moto"
START_TIMEOUT="${MOTO_START_TIMEOUT:-60}"
export PIP_DISABLE_PIP_VERSION_CHECK=1

say() { echo "with-moto: $*" >&2; }

[[ -f "$REQ" ]] || { say "$REQ not found"; exit 1; }
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 9))' 2>/dev/null || {
    say "needs Python >= 3.9 as \$PYTHON; got: $("$PYTHON" --version 2>&1 || echo "no $PYTHON")"
    exit 1
}

# --- the venv: (re)built only when the pin file or the Python version changed ---------------------------
mkdir -p "$TOOLS_DIR"
want="$("$PYTHON" - "$REQ" <<'PY'
import hashlib, sys
print(sys.version.split()[0], hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())
PY
)"
if [[ "$want" != "$(cat "$VENV/.nerm-requirements" 2>/dev/null || true)" ]]; then
    # Two runs at once (parallel CI jobs, two worktrees) must not build the venv together: the second waits,
    # then finds the stamp written by the first.
    exec 8>"$TOOLS_DIR/.moto.lock"
    command -v flock >/dev/null 2>&1 && flock 8
    if [[ "$want" != "$(cat "$VENV/.nerm-requirements" 2>/dev/null || true)" ]]; then
        say "installing moto from infra/requirements-moto.txt into $VENV (first run only) ..."
        rm -rf "$VENV"
        "$PYTHON" -m venv "$VENV" || { say "'$PYTHON -m venv' failed (Debian/Ubuntu: apt-get install python3-venv)"; exit 1; }
        if ! "$VENV/bin/python" -m pip install --quiet --require-virtualenv -r "$REQ" >"$TOOLS_DIR/moto-install.log" 2>&1; then
            cat "$TOOLS_DIR/moto-install.log" >&2
            say "pip install failed (log: $TOOLS_DIR/moto-install.log)"
            exit 1
        fi
        # Written last: an interrupted install leaves no stamp and is redone next time.
        echo "$want" >"$VENV/.nerm-requirements"
    fi
    exec 8>&-
fi

# --- the server --------------------------------------------------------------------------------------------
LOG="${MOTO_LOG:-}"
own_log=0
if [[ -z "$LOG" ]]; then
    LOG="$(mktemp "${TMPDIR:-/tmp}/moto-server.XXXXXX")"
    own_log=1
fi
moto_pid=""

cleanup() {
    if [[ -n "$moto_pid" ]] && kill -0 "$moto_pid" 2>/dev/null; then
        kill -TERM "$moto_pid" 2>/dev/null || true
        # Give it a moment, then make sure it is gone.
        for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$moto_pid" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$moto_pid" 2>/dev/null || true
        wait "$moto_pid" 2>/dev/null || true
    fi
    [[ $own_log == 1 ]] && rm -f "$LOG"
    return 0
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM

free_port() {
    "$VENV/bin/python" -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# answers URL -> 0 once moto serves HTTP there (its own API, which every service shares).
answers() {
    "$VENV/bin/python" - "$1" <<'PY' >/dev/null 2>&1
import sys, urllib.request
urllib.request.urlopen(sys.argv[1] + "/moto-api/data.json", timeout=2).read()
PY
}

# A port picked free can be taken before moto binds it: try a few.
up=0
for attempt in 1 2 3; do
    port="$(free_port)"
    url="http://127.0.0.1:$port"
    "$VENV/bin/moto_server" -H 127.0.0.1 -p "$port" >"$LOG" 2>&1 &
    moto_pid=$!
    deadline=$((SECONDS + START_TIMEOUT))
    while ((SECONDS < deadline)); do
        if ! kill -0 "$moto_pid" 2>/dev/null; then
            wait "$moto_pid" 2>/dev/null || true
            moto_pid=""
            break
        fi
        if answers "$url"; then up=1; break; fi
        sleep 0.3
    done
    [[ $up == 1 ]] && break
    if [[ -n "$moto_pid" ]]; then
        say "moto_server did not answer on $url within ${START_TIMEOUT}s (MOTO_START_TIMEOUT); its log:"
        sed 's/^/    /' "$LOG" >&2
        exit 1
    fi
    say "moto_server exited at start on port $port (attempt $attempt); its log:"
    sed 's/^/    /' "$LOG" >&2
done
if [[ $up != 1 ]]; then
    say "moto_server could not be started"
    exit 1
fi
say "moto_server $("$VENV/bin/python" -c 'import moto; print(moto.__version__)') on $url (pid $moto_pid)"

# --- the command -------------------------------------------------------------------------------------------
export MOTO_URL="$url"
# In the foreground, so it keeps the terminal and Ctrl-C reaches it (and its children) directly; the traps
# stop the server whichever way it ends.
rc=0
"$@" || rc=$?
exit "$rc"
