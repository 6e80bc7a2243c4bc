#!/usr/bin/env bash
# The pipe against a real n8n 2.41.3 in queue mode, as production runs it:
# Redis + Postgres + `n8n start` (main) + `n8n worker` + `n8n webhook` with EXECUTIONS_MODE=queue.
#
#   bash scripts/e2e-n8n-queue.sh               Redis and Postgres (Debian packages, installed once when
#                                               missing, as root), then tests/e2e in queue mode
#   bash scripts/e2e-n8n-queue.sh -- -k stop    extra arguments after -- go to pytest
#
# Redis and a Postgres cluster are started here on free ports of 127.0.0.1, with their data in a
# throwaway folder, and stopped (folder removed) when the script ends, however it ends. n8n itself
# is the cached install of scripts/e2e-n8n.sh (installed by it if missing); tests/e2e/n8n_harness.py
# starts the three n8n processes (N8N_E2E_QUEUE=1) and the tests call the webhook processor.
# Run 1 (webhook processor): the streaming, Stop, error and complete-JSON tests, and the answers recovered
# from the main's API after the reply broke (harness's api_valves: n8n_api_url is the main's).
# Run 2 (no webhook processor, the main takes the webhooks, the worker runs them): the Stop tests,
# since n8n 2.41.1 and 2.41.3 stop a queued run only when the process that queued it is asked (see docs/n8n-setup.md, Queue mode).
# Fails loudly, never skips.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib/debs.sh
source scripts/lib/debs.sh
# shellcheck source=lib/redis.sh
source scripts/lib/redis.sh
# shellcheck source=lib/banner.sh
source scripts/lib/banner.sh
banner_for e2e-n8n-queue "The end-to-end tests against n8n in queue mode did NOT pass."

pytest_args=()
[[ "${1:-}" == "--" ]] && shift
pytest_args+=("$@")

started=$SECONDS
bash scripts/e2e-n8n.sh --install-only || { loud "no n8n install"; exit 1; }
ensure_debs redis-server:redis-server pg_ctl:postgresql ||
    { loud "redis-server or postgresql is missing and could not be installed (Debian packages)."; exit 1; }
echo "e2e-n8n-queue: n8n, Redis and Postgres installed ($((SECONDS - started)) s)"

PG_BIN="$(dirname "$(ls -d /usr/lib/postgresql/*/bin/pg_ctl 2>/dev/null | sort -V | tail -n 1)")"
[[ -x "$PG_BIN/pg_ctl" ]] || { loud "no pg_ctl under /usr/lib/postgresql"; exit 1; }
PYTHON="${PYTHON:-$(command -v python || command -v python3)}"
free_port() { "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

WORK="$(mktemp -d /tmp/pipe-n8n-queue.XXXXXX)"
chmod 755 "$WORK"
PG_PORT="$(free_port)"
# Postgres refuses to run as root: as root it runs as the `postgres` user the package made.
if [[ "$(id -u)" == 0 ]]; then
    as_pg() { runuser -u postgres -- "$@"; }
    PG_USER=postgres
else
    as_pg() { "$@"; }
    PG_USER="$(id -un)"
fi
mkdir -p "$WORK/pg"
[[ "$(id -u)" == 0 ]] && chown postgres: "$WORK/pg"

cleanup() {
    local status=$?
    as_pg "$PG_BIN/pg_ctl" -D "$WORK/pg/data" -m fast -w stop >/dev/null 2>&1 || true
    stop_redis
    if ((status)) && [[ -d "$WORK" ]]; then
        echo "e2e-n8n-queue: Redis log:" >&2; tail -n 20 "$WORK/redis.log" >&2 2>/dev/null || true
        echo "e2e-n8n-queue: Postgres log:" >&2; tail -n 20 "$WORK/pg/postgres.log" >&2 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start_redis "$WORK" || { loud "Redis did not start"; exit 1; }

as_pg "$PG_BIN/initdb" -D "$WORK/pg/data" -U "$PG_USER" --auth=trust -E UTF8 --locale=C.UTF-8 >"$WORK/initdb.log" 2>&1 ||
    { cat "$WORK/initdb.log" >&2; loud "initdb failed"; exit 1; }
as_pg "$PG_BIN/pg_ctl" -D "$WORK/pg/data" -l "$WORK/pg/postgres.log" -w -t 60 \
    -o "-p $PG_PORT -h 127.0.0.1 -k $WORK/pg -c fsync=off -c full_page_writes=off" start >/dev/null ||
    { loud "Postgres did not start"; exit 1; }
for db in n8n n8n_main; do
    as_pg "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" "$db" || { loud "createdb $db failed"; exit 1; }
done
echo "e2e-n8n-queue: Redis $(redis-server --version | grep -o 'v=[0-9.]*' | cut -c3-) on :$REDIS_PORT," \
    "Postgres $("$PG_BIN/postgres" --version | awk '{print $3}') on :$PG_PORT ($((SECONDS - started)) s)"

# The streaming, Stop, error and complete-JSON tests (the proxy and doctor tests run in e2e-n8n.sh), and the
# files a workflow answers with (tests/e2e/test_e2e_files.py: a binary reply passes from the worker to the webhook).
SELECTED="streamed or first_chunk or two_chats or stop or stopped or error or failing or classic or complete_reply"
SELECTED="$SELECTED or stream_valve_off or non_streaming or tool or remembers or header_auth or loopback or recovers"
SELECTED="$SELECTED or test_e2e_files"
export N8N_E2E_QUEUE=1 N8N_E2E_REDIS_PORT="$REDIS_PORT" N8N_E2E_PG_PORT="$PG_PORT" N8N_E2E_PG_USER="$PG_USER"
status=0
echo "e2e-n8n-queue: run 1: main + worker + webhook processor"
N8N_E2E_PG_DB=n8n N8N_E2E_QUEUE_WEBHOOKS=processor \
    bash scripts/e2e-n8n.sh -- -k "$SELECTED" "${pytest_args[@]}" || status=$?
((status == 0)) || { loud "run 1 (webhook processor): pytest exited with $status"; exit "$status"; }
echo "e2e-n8n-queue: run 1 passed ($((SECONDS - started)) s); run 2: main (takes the webhooks) + worker"
N8N_E2E_PG_DB=n8n_main N8N_E2E_QUEUE_WEBHOOKS=main \
    bash scripts/e2e-n8n.sh -- -k "stop or stopped or streamed" "${pytest_args[@]}" || status=$?
((status == 0)) || { loud "run 2 (main takes the webhooks): pytest exited with $status"; exit "$status"; }
echo "e2e-n8n-queue: passed in $((SECONDS - started)) s"
