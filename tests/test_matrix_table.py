"""The compatibility table (docs/compatibility.md) says what the matrix runs showed (scripts/matrix_table.py).

Real pytest runs write the JUnit files, as the e2e scripts do under scripts/e2e-matrix.sh.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

RUN = """
import pytest

@pytest.mark.parametrize("workflow", ["ollama", "claude"])
def test_streamed_text_is_what_the_model_sent(workflow):
    pass

def test_stop_ends_the_read_at_once_and_n8n_finishes_on_its_own():
    assert FAILS

@pytest.mark.xfail(strict=True, reason="n8n 1.101.1 has no API to stop a run")
def test_stop_cancels_the_n8n_execution_and_the_model_call():
    raise AssertionError("404")

def test_background_tasks_do_not_run_the_workflow():
    pass
"""

README = "# Title\n\n<!-- matrix:begin -->\nan old table\n<!-- matrix:end -->\n\nthe rest\n"


def run_suite(folder: Path, junit_name: str, fails: bool) -> None:
    test_file = folder / f"test_{junit_name.replace('-', '_').replace('.', '_')}.py"
    test_file.write_text(RUN.replace("FAILS", "False" if fails else "True"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            f"--junitxml={folder / junit_name}",
            str(test_file),
        ],
        capture_output=True,
        check=False,
        cwd=folder,
    )


def test_the_table_has_one_row_per_run_with_what_it_showed(tmp_path: Path) -> None:
    run_suite(tmp_path, "n8n-1.101.1.xml", fails=True)
    run_suite(tmp_path, "owui-0.12.4-2workers.xml", fails=False)
    readme = tmp_path / "README.md"
    readme.write_text(README)

    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "matrix_table.py"), str(tmp_path), str(readme)],
        capture_output=True,
        text=True,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    text = readme.read_text()
    assert "an old table" not in text and text.endswith("<!-- matrix:end -->\n\nthe rest\n")
    rows = [line.strip("| ").split(" | ") for line in text.splitlines() if line.startswith("| ")]
    assert rows[0][:6] == [
        "set-up",
        "version",
        "streams",
        "Stop ends the reply",
        "Stop cancels the n8n run",
        "background tasks kept from the workflow",
    ]
    no_test = ["—"] * (len(rows[0]) - 7)
    assert rows[1:] == [
        [
            "n8n, one process",
            "1.101.1",
            "yes",
            "**FAILED**",
            "no [1]",
            "yes",
            *no_test,
            "**FAILED** (3 passed, 1 failed, 1 xfailed)",
        ],
        [
            "Open WebUI, two workers + Redis",
            "0.12.4",
            "yes",
            "yes",
            "no [1]",
            "yes",
            *no_test,
            "passed (4 passed, 1 xfailed)",
        ],
    ]
    assert "1. n8n 1.101.1 has no API to stop a run" in text
