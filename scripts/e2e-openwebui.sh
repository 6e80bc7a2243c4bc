#!/usr/bin/env bash
# The pipe inside a real Open WebUI (0.12.4 unless OWUI_E2E_VERSION says another), end to end (tests/owui/).
#
#   bash scripts/e2e-openwebui.sh                 install Open WebUI (once, cached), then run tests/owui
#   bash scripts/e2e-openwebui.sh --install-only  only make sure the cached install exists
#   bash scripts/e2e-openwebui.sh -- -k stop      extra arguments after -- go to pytest
#   OWUI_E2E_VERSION=0.6.43 bash scripts/e2e-openwebui.sh   the same suite in an older Open WebUI
#
# Open WebUI comes from the package registry, pinned in tests/owui/requirements.txt (0.12.4) or
# tests/owui/requirements-<version>.txt (any other version) and installed with --no-deps into a
# virtual environment cached OUTSIDE the repository, so every checkout on this machine reuses it:
# ${PIPE_N8N_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pipe_n8n_stream}/owui-<version>
# (0.12.4: first install ~1-2 minutes, ~0.8 GB; OWUI_VENV overrides the place). The tests start it offline
# on 127.0.0.1 with a throwaway data folder, install the pipe through the REST API and chat over
# socket.io as the browser does. If Open WebUI cannot be installed or started this script fails
# loudly: it never reports success without having run the end-to-end tests.
# Two runs: tests/owui with one worker, then tests/owui/test_two_workers.py with UVICORN_WORKERS=2
# coordinated through a throwaway Redis (Debian's redis-server, installed once when missing, as root).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib/debs.sh
source scripts/lib/debs.sh
# shellcheck source=lib/redis.sh
source scripts/lib/redis.sh
# shellcheck source=lib/banner.sh
source scripts/lib/banner.sh
banner_for e2e-openwebui "The end-to-end tests inside Open WebUI did NOT pass."

OWUI_VERSION="${OWUI_E2E_VERSION:-0.12.4}"
if [[ "$OWUI_VERSION" == "0.12.4" ]]; then
    REQUIREMENTS=tests/owui/requirements.txt
else
    REQUIREMENTS="tests/owui/requirements-$OWUI_VERSION.txt"
fi
[[ -f "$REQUIREMENTS" ]] || {
    echo "e2e-openwebui: no pinned requirements for Open WebUI $OWUI_VERSION ($REQUIREMENTS)" >&2
    exit 1
}
CACHE_ROOT="${PIPE_N8N_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pipe_n8n_stream}"
VENV="${OWUI_VENV:-$CACHE_ROOT/owui-$OWUI_VERSION}"
STAMP="$VENV/.installed-$(sha256sum "$REQUIREMENTS" | cut -c1-16)"
INSTALL_LOG="$VENV.install.log"
WORK=.cache/e2e-openwebui

find_python() {
    local candidate
    for candidate in ${OWUI_PYTHON:-} python3.12 python3.11 python3; do
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(not ((3, 11) <= sys.version_info[:2] < (3, 13)))' 2>/dev/null; then
            command -v "$candidate"
            return 0
        fi
    done
    return 1
}

check_install() {
    OWUI_VERSION="$OWUI_VERSION" "$VENV/bin/python" - <<'EOF'
import importlib.metadata as md
import importlib.util
import os

assert md.version("open-webui") == os.environ["OWUI_VERSION"], md.version("open-webui")
for module in ("open_webui", "uvicorn", "websockets", "fastapi", "socketio", "websocket", "pytest", "requests"):
    assert importlib.util.find_spec(module), f"missing {module}"
EOF
}

install_open_webui() {
    local python
    python="$(find_python)" || fail "Open WebUI $OWUI_VERSION needs Python 3.11 or 3.12 and none was found (set OWUI_PYTHON)"
    echo "e2e-openwebui: installing Open WebUI $OWUI_VERSION into $VENV (first run only: 0.12.4 a minute or two, a full set like 0.6.43's about 6 minutes)"
    rm -rf "$VENV"
    "$python" -m venv "$VENV" >"$INSTALL_LOG" 2>&1 || fail "cannot create a virtual environment at $VENV"
    if ! "$VENV/bin/python" -m pip install --disable-pip-version-check --no-deps -r "$REQUIREMENTS" \
        >>"$INSTALL_LOG" 2>&1; then
        grep -v "is ignored: it is neither a file nor a directory" "$INSTALL_LOG" | tail -n 30 >&2
        fail "cannot install $REQUIREMENTS from the package registry (log: $INSTALL_LOG)"
    fi
    check_install || fail "the installed environment at $VENV is incomplete"
    touch "$STAMP"
    echo "e2e-openwebui: installed ($(du -sh "$VENV" | cut -f1))"
}

install_only=false
if [[ "${1:-}" == "--install-only" ]]; then
    install_only=true
    shift
fi
[[ "${1:-}" == "--" ]] && shift

started=$SECONDS
mkdir -p "$(dirname "$VENV")"
exec 9>"$VENV.lock"
flock 9 # one install at a time into the shared cache
if [[ -f "$STAMP" ]] && check_install 2>/dev/null; then
    echo "e2e-openwebui: reusing $VENV"
else
    install_open_webui
fi
flock -u 9
echo "e2e-openwebui: environment ready in $((SECONDS - started)) s"
$install_only && exit 0

# The test session stops the server; this also stops it if pytest itself is killed.
PIDFILE="$(mktemp)"
cleanup() {
    local pid
    pid="$(cat "$PIDFILE" 2>/dev/null || true)"
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM -- "-$pid" 2>/dev/null || true
    fi
    rm -f "$PIDFILE"
    stop_redis
    [[ -n "${REDIS_DIR:-}" ]] && rm -rf "$REDIS_DIR"
}
trap cleanup EXIT

# E2E_JUNIT_DIR (set by scripts/e2e-matrix.sh) keeps each run's outcomes for the compatibility table (docs/compatibility.md).
one_worker_report=() two_workers_report=()
if [[ -n "${E2E_JUNIT_DIR:-}" ]]; then
    one_worker_report=(--junitxml="$E2E_JUNIT_DIR/owui-$OWUI_VERSION.xml")
    two_workers_report=(--junitxml="$E2E_JUNIT_DIR/owui-$OWUI_VERSION-2workers.xml")
fi

mkdir -p "$(dirname "$WORK")"
status=0
OWUI_E2E=1 OWUI_E2E_VERSION="$OWUI_VERSION" OWUI_VENV="$VENV" OWUI_PIDFILE="$PIDFILE" timeout -s INT -k 60 1500 \
    "$VENV/bin/python" -m pytest -c tests/owui/pytest.ini --rootdir tests/owui -p no:cacheprovider \
    --basetemp="$WORK" -v -rfEs --ignore tests/owui/test_two_workers.py tests/owui "$@" ${one_worker_report[@]+"${one_worker_report[@]}"} || status=$?
if [[ "$status" -ne 0 ]]; then
    fail "pytest exited with $status (Open WebUI's log: $WORK/owui0/open-webui.log)"
fi
echo "e2e-openwebui: one worker passed in $((SECONDS - started)) s"

# Two workers, as production runs Open WebUI: websocket manager, tasks and Stop through Redis.
ensure_debs redis-server:redis-server || fail "redis-server is missing and could not be installed (Debian package)"
REDIS_DIR="$(mktemp -d /tmp/pipe-owui-redis.XXXXXX)"
start_redis "$REDIS_DIR" || fail "Redis did not start"
OWUI_E2E=1 OWUI_E2E_VERSION="$OWUI_VERSION" OWUI_VENV="$VENV" OWUI_PIDFILE="$PIDFILE" OWUI_WORKERS=2 OWUI_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0" \
    timeout -s INT -k 60 900 \
    "$VENV/bin/python" -m pytest -c tests/owui/pytest.ini --rootdir tests/owui -p no:cacheprovider \
    --basetemp="$WORK-2w" -v -rfEs tests/owui/test_two_workers.py "$@" ${two_workers_report[@]+"${two_workers_report[@]}"} || status=$?
if [[ "$status" -ne 0 ]]; then
    fail "two workers: pytest exited with $status (Open WebUI's log: $WORK-2w/owui0/open-webui.log)"
fi
echo "e2e-openwebui: passed in $((SECONDS - started)) s"
