#!/usr/bin/env bash
# The version matrix: the end-to-end suites against older n8n and Open WebUI releases as well as the
# newest, then the compatibility table (docs/compatibility.md) rewritten from what the runs showed.
#
#   bash scripts/e2e-matrix.sh            every version below, then docs/compatibility.md's table
#   N8N_MATRIX="2.41.3" OWUI_MATRIX="" bash scripts/e2e-matrix.sh    a part of it
#
# CI (scripts/test.sh) runs the newest versions only; this runs the rest, each version installed
# once and cached beside the newest (see scripts/e2e-n8n.sh, scripts/e2e-openwebui.sh). A version
# that fails does not stop the others: its row says FAILED, and the script exits 1 at the end.
set -uo pipefail
cd "$(dirname "$0")/.."

# n8n: the oldest release on the npm registry whose Webhook and AI Agent stream (1.104.2: 1.101.1's
# nodes cannot yet), the oldest with the API's stop that installs (2.11.2: 2.10.0's pinned packages are
# missing from the registry), the newest whose own packages all install as published (2.41.1), and the
# newest (2.41.3: 21 of the packages it pins are not on the registry, and scripts/e2e-n8n.sh overrides
# them with the releases 2.41.1 pins). Open WebUI: the pipe's required_open_webui_version and the newest.
N8N_MATRIX="${N8N_MATRIX-1.104.2 2.11.2 2.41.1 2.41.3}"
N8N_QUEUE_MATRIX="${N8N_QUEUE_MATRIX-1.104.2 2.41.1 2.41.3}"
OWUI_MATRIX="${OWUI_MATRIX-0.6.0 0.12.4}"
RESULTS=.cache/matrix
PYTHON="${PYTHON:-$(command -v python || command -v python3)}"

# Each run replaces its own reports; the other versions' reports of an earlier run stay, so a part of
# the matrix can be run again and the table still has every row.
mkdir -p "$RESULTS"
export E2E_JUNIT_DIR="$PWD/$RESULTS"
failed=()
for version in $N8N_MATRIX; do
    rm -f "$RESULTS/n8n-$version.xml"
    N8N_E2E_VERSION="$version" bash scripts/e2e-n8n.sh || failed+=("n8n $version")
done
for version in $N8N_QUEUE_MATRIX; do
    rm -f "$RESULTS/n8n-$version-queue-"*.xml
    N8N_E2E_VERSION="$version" bash scripts/e2e-n8n-queue.sh || failed+=("n8n $version in queue mode")
done
for version in $OWUI_MATRIX; do
    rm -f "$RESULTS/owui-$version.xml" "$RESULTS/owui-$version-"*.xml
    OWUI_E2E_VERSION="$version" bash scripts/e2e-openwebui.sh || failed+=("Open WebUI $version")
done

"$PYTHON" scripts/matrix_table.py "$RESULTS" docs/compatibility.md || exit 1
if ((${#failed[@]})); then
    echo "e2e-matrix: FAILED: ${failed[*]} (the table in docs/compatibility.md says which tests)" >&2
    exit 1
fi
echo "e2e-matrix: every version passed; the table in docs/compatibility.md is up to date"
