"""The benchmark script must not rot: a tiny run (`python bench/run.py --quick`) prints all seven
sections and measures every one of them, the segmented-chunk rows, the threaded decoding reference and
the many-replies rows (each in a process of its own) included. Figures vary from run to run and machine
to machine, so only their presence (and that no text went missing) is checked, never a speed or latency
goal."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = [
    "1. Added latency per chunk",
    "2. Time to first chunk",
    "3. Throughput and CPU",
    "4. Memory",
    "5. Concurrency on one event loop",
    "6. Stop",
    "7. Many replies at once",
    "Goals (this pipe)",
]


def number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value >= 0


def test_quick_benchmark_prints_and_measures_every_section(tmp_path):
    out = tmp_path / "results.json"
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    for title in SECTIONS:
        assert f"## {title}" in run.stdout

    results = json.loads(out.read_text())

    def pipe(section: str) -> list[dict]:
        rows = [r for r in results[section] if r["reader"] == "pipe"]
        assert rows, f"no figures for the pipe in {section}"
        return rows

    thread_reference = "requests iter_lines + json.loads (thread)"
    rows = {(r["format"], r["body"]) for r in pipe("latency")}  # n8n and SSE: chunked, segmented, close-delimited
    assert rows == {(fmt, body) for fmt in ("n8n", "sse") for body in ("chunked", "segmented", "close")}
    for row in pipe("latency") + [r for r in results["latency"] if r["reader"] == thread_reference]:
        assert row["tokens"] == row["expected_tokens"], row
        assert number(row["median_ms"]) and number(row["p99_ms"])
    for row in pipe("first_chunk"):
        assert number(row["first_chunk_ms"]) and number(row["added_ms"])
    bar = [r for r in results["throughput"] if r["reader"] == thread_reference]
    assert len(bar) == len(results["config"]["throughput_bytes"])
    for row in pipe("throughput") + bar:
        assert row["complete"], f"{row['reader']} lost text"
        assert number(row["mb_per_s"]) and number(row["cpu_s_per_mb"]) and number(row["cpu_us_per_token"])
    for row in pipe("memory"):
        assert number(row["growth_mb"])
    assert {r["streams"] for r in pipe("concurrency")} == set(results["config"]["streams"])
    for row in pipe("concurrency"):
        assert row["tokens"] == row["expected_tokens"]
        assert number(row["worst_lag_ms"]) and number(row["total_s"])
    for row in results["stop"]:
        assert row["stop_ms"] is None or number(row["stop_ms"])
    assert len(pipe("stop")) == 3
    at_once = [r for r in pipe("scale") if r["kind"] == "at once"]
    assert [r["replies"] for r in at_once] == results["config"]["scale_replies"]
    for row in at_once:
        assert row["complete"] == row["replies"], row
        assert number(row["first_text_p50_ms"]) and number(row["first_text_p99_ms"]) and number(row["worst_lag_ms"])
        assert row["peak_threads"] > row["threads_before"] and row["peak_rss_kb"] > row["rss_before_kb"] > 0
    reply_cpu = {r["reader"]: r for r in results["scale"] if r["kind"] == "reply cpu"}
    assert set(reply_cpu) == {"pipe", "iter_lines in a thread per reply"}
    for row in reply_cpu.values():
        assert row["complete"] == row["replies"], row
        assert number(row["cpu_ms_per_reply"]) and number(row["wall_ms_per_reply"])
    assert {g["goal"][:2] for g in results["goals"]} == {"1.", "2.", "3.", "4.", "5.", "6."}
    assert all(isinstance(g["met"], bool) and g["figure"] for g in results["goals"])
    assert any("CPU per 5-byte token" in g["goal"] and "µs/token" in g["figure"] for g in results["goals"])
    # references: present and measured too (httpx only when installed)
    readers = {r["reader"] for r in results["latency"]}
    assert {"requests iter_lines", "requests iter_content(None)"} <= readers
    assert ("httpx iter_lines" in readers) == (results["environment"]["httpx"] is not None)
