#!/usr/bin/env bash
# The whole test run, as the README gives it and as CI runs it:
# install, lint, type-check the pipe, the suite (unit + real sockets + properties), a 60 s fuzz run,
# then end to end against a real n8n 2.41.3 (one process behind nginx, then queue mode: Redis, Postgres,
# main, worker, webhook processor), inside a real Open WebUI 0.12.4 (one worker, then two with Redis),
# and in a real browser.
set -euo pipefail
cd "$(dirname "$0")/.."

pip install -e '.[test]'
ruff check .
ruff format --check .
mypy
python -m pytest -rs

if pip install atheris; then
    bash scripts/fuzz.sh 60
else
    echo "atheris did not install here: the fuzz run is skipped (the property tests above still ran)" >&2
fi

bash scripts/e2e-n8n.sh
bash scripts/e2e-n8n-queue.sh
bash scripts/e2e-openwebui.sh
bash scripts/e2e-browser.sh
