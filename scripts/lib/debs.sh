# Sourced by the e2e scripts: install Debian packages the end-to-end runs need, only when missing.
#
#   ensure_debs nginx:nginx-light redis-server:redis-server
#
# Each argument is COMMAND:PACKAGE. When COMMAND is not found (on PATH or in /usr/sbin,
# /usr/lib/postgresql/*/bin), PACKAGE is installed with apt-get, which needs root; a package
# that cannot be installed is an error (the caller fails loudly, it does not skip).
# Services are never started by the install: the tests start their own on free ports.

_deb_command_present() {
    local cmd="$1"
    command -v "$cmd" >/dev/null 2>&1 && return 0
    [[ -x "/usr/sbin/$cmd" ]] && return 0
    compgen -G "/usr/lib/postgresql/*/bin/$cmd" >/dev/null 2>&1
}

ensure_debs() {
    local missing=() pair
    for pair in "$@"; do
        _deb_command_present "${pair%%:*}" || missing+=("${pair#*:}")
    done
    ((${#missing[@]})) || return 0
    if [[ "$(id -u)" != 0 ]]; then
        echo "debs: ${missing[*]} missing and not root: cannot apt-get install them" >&2
        return 1
    fi
    echo "debs: installing ${missing[*]} (Debian packages)"
    local apt=(apt-get -o DPkg::Lock::Timeout=600 -o Dpkg::Use-Pty=0 -y -q --no-install-recommends)
    # policy-rc.d answering 101 keeps the packages from starting their system services (port 80,
    # 5432, 6379) while they install; only made when the machine has none, and removed after.
    local policy=/usr/sbin/policy-rc.d made_policy=0
    if [[ ! -e "$policy" ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && made_policy=1
    fi
    local status=0
    DEBIAN_FRONTEND=noninteractive "${apt[@]}" install "${missing[@]}" >/tmp/debs-install.$$.log 2>&1 || {
        DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -q update >>/tmp/debs-install.$$.log 2>&1 &&
            DEBIAN_FRONTEND=noninteractive "${apt[@]}" install "${missing[@]}" >>/tmp/debs-install.$$.log 2>&1
    } || status=$?
    ((made_policy)) && rm -f "$policy"
    if ((status)); then
        tail -n 30 /tmp/debs-install.$$.log >&2
        rm -f /tmp/debs-install.$$.log
        echo "debs: apt-get install ${missing[*]} failed" >&2
        return 1
    fi
    rm -f /tmp/debs-install.$$.log
    for pair in "$@"; do
        _deb_command_present "${pair%%:*}" || { echo "debs: ${pair#*:} installed but ${pair%%:*} not found" >&2; return 1; }
    done
}
