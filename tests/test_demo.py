"""`python pipe_n8n_stream.py demo`, as the README tells a newcomer to run it: the first thing anyone
sees of the pipe, so its exact output is checked, through a real process and a real socket."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUMMARY = re.compile(r"-- (\d+) chunks; first after \d+ ms; all in \d+\.\d\d s")


def test_demo_streams_the_fake_answer_and_sums_it_up():
    run = subprocess.run(
        [sys.executable, "pipe_n8n_stream.py", "demo", "Hi there", "--delay", "0"],
        cwd=ROOT,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
        capture_output=True,
        encoding="utf-8",
        timeout=60,
        check=False,
    )

    assert run.returncode == 0, run.stderr
    assert run.stdout == (
        'You said: Hi there. This answer streams token by token from a fake n8n webhook (ünïcødé, "quotes", tabs\t).\n'
    )
    # stderr: a blank line after the answer, then the summary; 16 tokens, fewer chunks if some came together.
    assert run.stderr.startswith("\n"), run.stderr
    summary = SUMMARY.fullmatch(run.stderr.strip())
    assert summary, run.stderr
    assert 1 <= int(summary[1]) <= 16
