"""Write the compatibility table of docs/compatibility.md from the JUnit files of a matrix run (e2e-matrix.sh).

    python scripts/matrix_table.py RESULTS_DIR docs/compatibility.md

Each file is one pytest run, named by the e2e scripts: `n8n-<version>[-queue-<webhooks>].xml`,
`owui-<version>[-2workers].xml` (E2E_JUNIT_DIR). A column is the outcome of the tests that prove it, so the table
says only what a run showed: "yes" when they all passed, the expected-failure reason when the
version lacks the feature (strict xfail), "FAILED" when one failed, "—" when the run has no such test.
The table replaces the lines between the file's `<!-- matrix:begin -->` and `<!-- matrix:end -->`.
"""

from __future__ import annotations

import re
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

BEGIN, END = "<!-- matrix:begin -->", "<!-- matrix:end -->"
RUN_NAME = re.compile(r"^(?P<product>n8n|owui)-(?P<version>\d[\w.]*?)(?:-(?P<variant>[\w-]+))?\.xml$")

SETUPS = {
    ("n8n", None): "n8n, one process",
    ("n8n", "queue-processor"): "n8n queue mode, webhook processor",
    ("n8n", "queue-main"): "n8n queue mode, main takes webhooks",
    ("owui", None): "Open WebUI, one worker",
    ("owui", "2workers"): "Open WebUI, two workers + Redis",
}

# Column -> the tests (name prefixes) whose outcomes make the cell.
COLUMNS = {
    "streams": (
        "test_streamed_text_is_what_the_model_sent",
        "test_first_chunk_arrives_before_the_model_sends_its_last_token",
        "test_reply_streams_as_deltas_and_is_saved_exactly",
        "test_reply_streams_over_socketio_from_either_worker",
    ),
    "Stop ends the reply": (
        "test_stop_ends_the_read_at_once_and_n8n_finishes_on_its_own",
        "test_stop_mid_stream_closes_the_webhook_and_keeps_the_text",
        "test_stop_sent_to_the_other_worker_closes_the_webhook_within_1s",
    ),
    "Stop cancels the n8n run": (
        "test_stop_cancels_the_n8n_execution_and_the_model_call",
        "test_stop_cancels_the_n8n_execution",
    ),
    "background tasks kept from the workflow": ("test_background_tasks_do_not_run_the_workflow",),
    "files and images": (
        "test_an_attached_png_reaches_the_model_as_an_image",
        "test_an_attached_pdf_reaches_the_workflow_as_a_binary_property",
        "test_an_uploaded_png_and_pdf_reach_the_workflow",
        "test_with_a_document_the_workflow_gets_the_users_words_not_the_rag_prompt",
    ),
    "tool steps, sources": (
        "test_complete_reply_shows_the_agents_tool_step_and_its_sources",
        "test_streamed_agent_is_seen_using_a_tool_while_the_tool_runs",
        "test_saved_message_has_the_tool_step_block_and_the_sources",
        "test_the_status_says_the_agent_is_using_a_tool_between_blocks",
    ),
    "thinking block": ("test_thinking_becomes_open_webuis_reasoning_block",),
}


@dataclass(frozen=True)
class Outcome:
    test: str
    kind: str  # passed, failed, xfailed, skipped
    reason: str = ""


@dataclass(frozen=True)
class Run:
    product: str
    version: str
    variant: str | None
    outcomes: tuple[Outcome, ...]
    timestamp: str


def outcome_of(case: ET.Element) -> Outcome:
    name = case.get("name", "")
    if case.find("failure") is not None or case.find("error") is not None:
        return Outcome(name, "failed")
    skipped = case.find("skipped")
    if skipped is None:
        return Outcome(name, "passed")
    kind = "xfailed" if skipped.get("type") == "pytest.xfail" else "skipped"
    return Outcome(name, kind, skipped.get("message", ""))


def read_run(path: Path) -> Run | None:
    match = RUN_NAME.match(path.name)
    if not match:
        return None
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    outcomes = tuple(outcome_of(case) for suite in suites for case in suite.iter("testcase"))
    stamps = [suite.get("timestamp", "") for suite in suites]
    return Run(match["product"], match["version"], match["variant"], outcomes, max(stamps, default=""))


def cell(run: Run, prefixes: tuple[str, ...], notes: list[str]) -> str:
    """The cell for one column; an expected failure's reason becomes a numbered note under the table."""
    chosen = [o for o in run.outcomes if o.test.split("[")[0] in prefixes]
    if not chosen:
        return "—"
    if any(o.kind == "failed" for o in chosen):
        return "**FAILED**"
    if all(o.kind == "passed" for o in chosen):
        return "yes"
    marks = []
    for reason in sorted({o.reason or o.kind for o in chosen if o.kind != "passed"}):
        if reason not in notes:
            notes.append(reason)
        marks.append(f"[{notes.index(reason) + 1}]")
    return "no " + " ".join(marks)


def result(run: Run) -> str:
    counts = {kind: sum(o.kind == kind for o in run.outcomes) for kind in ("passed", "failed", "xfailed", "skipped")}
    words = ", ".join(f"{n} {kind}" for kind, n in counts.items() if n)
    return f"**FAILED** ({words})" if counts["failed"] else f"passed ({words})"


def version_key(run: Run) -> tuple[str, tuple[int, ...], str]:
    numbers = tuple(int(part) for part in re.findall(r"\d+", run.version))
    return (run.product, numbers, run.variant or "")


def table(runs: list[Run]) -> str:
    header = ["set-up", "version", *COLUMNS, "result"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    notes: list[str] = []
    for run in sorted(runs, key=version_key):
        setup = SETUPS.get((run.product, run.variant), f"{run.product} {run.variant}")
        cells = [setup, run.version, *(cell(run, prefixes, notes) for prefixes in COLUMNS.values()), result(run)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", *(f"{n}. {note}" for n, note in enumerate(notes, 1))] if notes else []
    last = max(run.timestamp for run in runs)[:10]
    return f"Last matrix run: {last} (`bash scripts/e2e-matrix.sh`).\n\n" + "\n".join(lines)


def replace_between_markers(text: str, body: str) -> str:
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    return f"{text[:start]}\n{body}\n{text[end:]}"


def main(results: str, readme: str) -> int:
    runs = [run for path in sorted(Path(results).glob("*.xml")) if (run := read_run(path))]
    if not runs:
        print(f"matrix_table: no runs in {results}", file=sys.stderr)
        return 1
    path = Path(readme)
    path.write_text(replace_between_markers(path.read_text(encoding="utf-8"), table(runs)), encoding="utf-8")
    print(f"matrix_table: {len(runs)} runs written to {readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
