"""README's Open WebUI compatibility table, from the JUnit reports of the version-matrix runs.

    OWUI_E2E_VERSION=<v> bash scripts/e2e-openwebui.sh -- --junitxml=/tmp/matrix/owui-<v>.xml   (per version)
    python scripts/owui_matrix_table.py /tmp/matrix                                          (prints the table)

Each run leaves owui-<v>.xml (one worker) and owui-<v>-2w.xml (two workers). A cell says what the tests in
its column did: `yes` (all passed), `no: <test>` (a failure), `expected failure: <reason>` (a strict xfail or
a skip, with its reason), `—` (not run).
"""

from __future__ import annotations

import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

COLUMNS = {
    "streams": ["test_reply_streams_as_deltas_and_is_saved_exactly", "test_a_slow_chat_does_not_block_the_server"],
    "Stop": ["test_stop_mid_stream", "test_stop_cancels", "test_stop_before"],
    "status events": ["test_status_events_", "test_the_status_says_"],
    "background tasks": ["test_background_tasks_do_not_run_the_workflow"],
    "files": ["test_an_uploaded_png_and_pdf_reach_the_workflow", "test_with_a_document_the_workflow_gets"],
    "reasoning": ["test_thinking_becomes_open_webuis_reasoning_block"],
    "tool steps, sources": ["test_saved_message_has_the_tool_step_block_and_the_sources"],
    "two workers": ["test_both_workers_answer", "test_reply_streams_over_socketio", "test_stop_sent_to_the_other"],
}


def outcomes(report: Path) -> dict[str, tuple[str, str]]:
    """{test name: (passed | failed | xfailed | skipped, message)}"""
    found: dict[str, tuple[str, str]] = {}
    for case in ET.parse(report).iter("testcase"):
        name = case.get("name", "")
        failure = case.find("failure")
        error = case.find("error")
        skipped = case.find("skipped")
        if failure is not None or error is not None:
            found[name] = ("failed", "")
        elif skipped is not None:
            kind = "xfailed" if skipped.get("type") == "pytest.xfail" else "skipped"
            found[name] = (kind, skipped.get("message", ""))
        else:
            found[name] = ("passed", "")
    return found


def cell(results: dict[str, tuple[str, str]], prefixes: list[str]) -> str:
    picked = {name: result for name, result in results.items() if any(name.startswith(p) for p in prefixes)}
    if not picked:
        return "—"
    failed = [name for name, (kind, _) in picked.items() if kind == "failed"]
    if failed:
        return "no: " + ", ".join(failed)
    missing = sorted({re.sub(r"^reason: ", "", message) for kind, message in picked.values() if kind != "passed"})
    return "expected failure: " + "; ".join(missing) if missing else "yes"


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".") if part.isdigit())


def main(folder: Path) -> None:
    versions = sorted(
        {m.group(1) for p in folder.glob("owui-*.xml") if (m := re.fullmatch(r"owui-([\d.]+)(?:-2w)?\.xml", p.name))},
        key=version_key,
    )
    print(f"| Open WebUI | {' | '.join(COLUMNS)} | result |")
    print(f"|---|{'---|' * len(COLUMNS)}---|")
    for version in versions:
        results: dict[str, tuple[str, str]] = {}
        for report in (folder / f"owui-{version}.xml", folder / f"owui-{version}-2w.xml"):
            if report.exists():
                results.update(outcomes(report))
        counts: dict[str, int] = {}
        for kind, _ in results.values():
            counts[kind] = counts.get(kind, 0) + 1
        result = ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items()))
        cells = " | ".join(cell(results, prefixes) for prefixes in COLUMNS.values())
        print(f"| {version} | {cells} | {result} |")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/matrix"))
