# shellcheck shell=bash
# Sourced by the e2e scripts: the n8n release they run unless N8N_E2E_VERSION names another, so that
# scripts/e2e-n8n.sh installs the same release that scripts/e2e-browser.sh runs.
# shellcheck disable=SC2034  # used by the scripts that source this
N8N_DEFAULT_VERSION=2.41.3
