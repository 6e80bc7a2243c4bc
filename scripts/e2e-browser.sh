#!/usr/bin/env bash
# The chat as a person sees it: headless Chromium on a real Open WebUI 0.12.4 page, the pipe calling a real
# n8n 2.41.3 that runs the shipped workflows, a fake model behind it (tests/browser/).
#
#   bash scripts/e2e-browser.sh                  install what is missing, then run tests/browser
#   bash scripts/e2e-browser.sh --screenshots    the same, and write the screenshots of the README and docs/ to docs/screenshots/
#   bash scripts/e2e-browser.sh -- -k stop       extra arguments after -- go to pytest
#
# Installs, once: Debian's chromium and chromium-driver (apt-get, as root; ~490 MB), Playwright from PyPI into
# Open WebUI's cached virtual environment (~165 MB; it drives the system Chromium, never downloads a browser),
# and n8n and Open WebUI through scripts/e2e-n8n.sh and scripts/e2e-openwebui.sh (--install-only).
# When something cannot be installed this script fails loudly: it never passes without having run the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib/banner.sh
source scripts/lib/banner.sh
# shellcheck source=lib/n8n-version.sh
source scripts/lib/n8n-version.sh
banner_for e2e-browser "The browser tests did NOT pass."

PLAYWRIGHT_VERSION=1.65.2
APT_PACKAGES=(chromium chromium-driver fonts-noto-color-emoji)
CACHE_ROOT="${PIPE_N8N_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pipe_n8n_stream}"
# The n8n that scripts/e2e-n8n.sh installs below (N8N_E2E_VERSION picks another, for both).
N8N_VERSION="${N8N_E2E_VERSION:-$N8N_DEFAULT_VERSION}"
VENV="${OWUI_VENV:-$CACHE_ROOT/owui-0.12.4}"
WORK=.cache/e2e-browser
SCREENSHOTS=docs/screenshots

missing_apt_packages() {
    local package
    for package in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || echo "$package"
    done
}

ensure_chromium() {
    local missing
    missing="$(missing_apt_packages | tr '\n' ' ')"
    if [[ -z "${missing// /}" ]]; then
        echo "e2e-browser: using $(/usr/bin/chromium --version 2>/dev/null)"
        return 0
    fi
    [[ "$(id -u)" == 0 ]] || fail "Debian packages missing: $missing; install them as root: apt-get install -y $missing"
    command -v apt-get >/dev/null || fail "Debian packages missing ($missing) and there is no apt-get to install them"
    echo "e2e-browser: installing $missing with apt-get"
    # shellcheck disable=SC2086
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing >"$WORK/apt.log" 2>&1; then
        apt-get update -q >>"$WORK/apt.log" 2>&1 || true
        # shellcheck disable=SC2086
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing >>"$WORK/apt.log" 2>&1 ||
            { tail -n 20 "$WORK/apt.log" >&2; fail "apt-get install $missing failed (log: $WORK/apt.log)"; }
    fi
    [[ -x /usr/bin/chromium ]] || fail "apt-get installed $missing but /usr/bin/chromium is not there"
}

ensure_playwright() {
    exec 9>"$VENV.lock"
    flock 9 # the same lock as scripts/e2e-openwebui.sh: one install at a time into the shared environment
    if [[ "$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("playwright"))' 2>/dev/null)" \
        != "$PLAYWRIGHT_VERSION" ]]; then
        echo "e2e-browser: installing playwright==$PLAYWRIGHT_VERSION into $VENV"
        "$VENV/bin/python" -m pip install --disable-pip-version-check -q "playwright==$PLAYWRIGHT_VERSION" ||
            fail "cannot install playwright==$PLAYWRIGHT_VERSION from the package registry into $VENV"
    fi
    flock -u 9
}

screenshots=false
pytest_args=()
while (($#)); do
    case "$1" in
        --screenshots) screenshots=true ;;
        --) shift; pytest_args+=("$@"); break ;;
        *) pytest_args+=("$1") ;;
    esac
    shift
done

started=$SECONDS
mkdir -p "$WORK"
ensure_chromium
bash scripts/e2e-n8n.sh --install-only || fail "n8n could not be installed (see above)"
bash scripts/e2e-openwebui.sh --install-only || fail "Open WebUI could not be installed (see above)"
ensure_playwright
echo "e2e-browser: environment ready in $((SECONDS - started)) s"

# The test session stops Open WebUI and n8n; this also stops Open WebUI if pytest itself is killed.
PIDFILE="$(mktemp)"
cleanup() {
    local pid
    pid="$(cat "$PIDFILE" 2>/dev/null || true)"
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM -- "-$pid" 2>/dev/null || true
    fi
    rm -f "$PIDFILE"
}
trap cleanup EXIT

if $screenshots; then
    export BROWSER_SCREENSHOTS="$PWD/$SCREENSHOTS"
fi
status=0
BROWSER_E2E=1 N8N_E2E=1 N8N_E2E_HOME="$CACHE_ROOT/n8n-$N8N_VERSION" N8N_E2E_VERSION="$N8N_VERSION" \
    OWUI_VENV="$VENV" OWUI_PIDFILE="$PIDFILE" \
    timeout -s INT -k 60 900 \
    "$VENV/bin/python" -m pytest -c tests/browser/pytest.ini --rootdir tests/browser -p no:cacheprovider \
    --basetemp="$WORK/pytest" -v -rfEs tests/browser "${pytest_args[@]}" || status=$?
[[ "$status" -eq 0 ]] || fail "pytest exited with $status"
$screenshots && echo "e2e-browser: screenshots written to $SCREENSHOTS/"
echo "e2e-browser: passed in $((SECONDS - started)) s"
