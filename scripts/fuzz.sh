#!/usr/bin/env bash
# Fuzz the reply decoder with atheris for a fixed time: scripts/fuzz.sh [seconds, default 60].
# Random bytes are cut into random reads; any exception other than LineTooLong, or an answer that
# changes with where the reads fall, is a finding: libFuzzer stops and writes the input to
# .cache/fuzz/crash-* (replay it with: python tests/fuzz/fuzz_decoder.py .cache/fuzz/crash-...).
# The corpus grows in .cache/fuzz/corpus across runs; tests/fuzz/seeds holds real reply shapes.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
python -c "import atheris" 2>/dev/null || { echo "atheris is not installed: pip install atheris" >&2; exit 2; }
mkdir -p .cache/fuzz/corpus

exec python tests/fuzz/fuzz_decoder.py \
  -max_total_time="$seconds" \
  -timeout=10 \
  -rss_limit_mb=2048 \
  -max_len=8192 \
  -print_final_stats=1 \
  -artifact_prefix=.cache/fuzz/ \
  .cache/fuzz/corpus tests/fuzz/seeds
