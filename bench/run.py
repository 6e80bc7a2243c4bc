"""Benchmarks: this pipe next to the usual ways of reading a stream, on one loopback server.

    python bench/run.py            # the full run (about 3 minutes), writes bench/results.json
    python bench/run.py --quick    # a tiny run for the test suite (figures, no verdicts worth quoting)

Seven workloads: added latency per chunk, time to first chunk, throughput and CPU, memory,
concurrency on one event loop, Stop, and many replies at once (with the CPU one reply costs). The
server runs in its own process and stamps every token with its monotonic clock at the moment of the write.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import multiprocessing
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import readers  # noqa: E402
import requests  # noqa: E402
import wire  # noqa: E402
from readers import PIPE, REFERENCES, THREAD_REFERENCE  # noqa: E402

STAMP = re.compile(r"<(\d+)>")
MB = 1_000_000
TICK = 0.005
EXECUTOR_WARMUP = 32  # more than asyncio's default executor ever has (min(32, CPUs + 4))
SETTLE = 0.1  # before a Stop: long enough for the reader to be blocked in its read
CPU_BAR = 1.2  # the goal: the pipe's CPU per 5-byte token within this factor of THREAD_REFERENCE's


@dataclass
class Config:
    quick: bool = False
    latency_tokens: int = 200
    latency_interval: float = 0.005
    first_delay: float = 2.0
    throughput_bytes: dict[int, int] = field(default_factory=lambda: {5: 8 * MB, 1024: 24 * MB})
    throughput_repeats: int = 3
    memory_bytes: int = 100 * MB
    memory_cap: float = 5.0  # the newline-free body: a reader still at it by then never stops
    memory_lines_cap: float = 60.0  # the 1 KB-lines body ends: only a safety net, so a slow reader still counts
    streams: tuple[int, ...] = (1, 20, 100)
    stream_tokens: int = 21
    stream_interval: float = 0.05
    concurrency_repeats: int = 3
    stop_cap: float = 1.5
    scale_replies: tuple[int, ...] = (300, 1000)
    scale_tokens: int = 20  # 4.75 s a reply: longer than they take to start, so all are open at once
    scale_interval: float = 0.25
    scale_cap: float = 60.0  # a reply not finished by then counts as incomplete
    reply_cpu_replies: int = 100
    reply_cpu_rounds: int = 3
    reply_cpu_tokens: int = 3

    @classmethod
    def tiny(cls) -> Config:
        return cls(
            quick=True,
            latency_tokens=8,
            latency_interval=0.005,
            first_delay=0.2,
            throughput_bytes={5: 300_000, 1024: 1 * MB},
            throughput_repeats=1,
            memory_bytes=3 * MB,
            memory_cap=1.0,
            memory_lines_cap=20.0,
            streams=(1, 4, 8),
            stream_tokens=4,
            stream_interval=0.02,
            concurrency_repeats=1,
            stop_cap=0.5,
            scale_replies=(10, 20),
            scale_tokens=3,
            scale_interval=0.02,
            scale_cap=20.0,
            reply_cpu_replies=10,
            reply_cpu_rounds=1,
        )


# ---------------------------------------------------------------------------
# Helpers.


def now_ns() -> int:
    return time.monotonic_ns()


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (p99 of 100 samples is the 99th smallest)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def delays_ms(samples: list[tuple[int, str]]) -> list[float]:
    """Each stamped token's delay: when the consumer got it minus when the server wrote it."""
    return [(seen - int(stamp)) / 1e6 for seen, text in samples for stamp in STAMP.findall(text)]


def collect(reader: str, url: str, fmt: str) -> tuple[int, list[tuple[int, str]]]:
    """Read a whole reply, noting when each token reached the consumer; returns (start, samples)."""
    if reader in readers.SYNC_READERS:
        started = now_ns()
        samples = [(now_ns(), text) for text in readers.SYNC_READERS[reader](url, fmt)]
        return started, samples

    async def run() -> tuple[int, list[tuple[int, str]]]:
        started = now_ns()
        chunks = await readers.async_chunks(reader, url, fmt)
        return started, [(now_ns(), text) async for text in chunks]

    return asyncio.run(run())


def fmt_ms(value: float | None) -> str:
    if value is None:
        return "—"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def fmt_ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}×"


def table(head: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(c)) for c in column) for column in zip(head, *rows, strict=True)]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"  # noqa: E731
    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(head), rule, *(line(r) for r in rows)])


def readers_in_run(thread_reference: bool = False) -> list[str]:
    """The pipe and the references; with the thread reference (the pipe's shape) for latency and CPU."""
    return [PIPE, *(r for r in REFERENCES if readers.available(r)), *([THREAD_REFERENCE] * thread_reference)]


# The thread reference's twin that wakes the loop once per text: what a wake per drain saves.
PER_TEXT_THREAD = "iter_lines in a thread per reply"


def throughput_readers() -> list[str]:
    return [*readers_in_run(thread_reference=True), PER_TEXT_THREAD]


def say(text: str = "") -> None:
    print(text, flush=True)


class Ticker:
    """A task that sleeps TICK over and over and notes its own oversleep (ms): how long the loop kept a
    ready task waiting. `sample` runs after every tick, on the loop, so measuring adds no thread."""

    def __init__(self, sample: Callable[[], None] | None = None) -> None:
        self.lags: list[float] = []
        self._sample = sample
        self._running = True
        self._task = asyncio.create_task(self._tick())

    async def _tick(self) -> None:
        while self._running:
            started = time.perf_counter()
            await asyncio.sleep(TICK)
            self.lags.append((time.perf_counter() - started - TICK) * 1000)
            if self._sample:
                self._sample()

    async def stop(self) -> None:
        self._running = False
        await self._task


async def warm_default_executor() -> None:
    """A server's loop has been running a while: its default executor's threads exist already."""
    await asyncio.gather(*(asyncio.to_thread(time.sleep, 0.01) for _ in range(EXECUTOR_WARMUP)))


# ---------------------------------------------------------------------------
# 1. Added latency per chunk.

BODIES = {"chunked": "chunked", "segmented": "segmented", "close": "close-delimited"}
FORMATS = {"n8n": "n8n NDJSON", "sse": "SSE"}
ROWS = [(fmt, body) for fmt in FORMATS for body in BODIES]
ROW_NAMES = {(fmt, body): f"{FORMATS[fmt]}, {BODIES[body]}" for fmt, body in ROWS}


def bench_latency(server: wire.Server, cfg: Config) -> list[dict[str, Any]]:
    results = []
    for fmt, body in ROWS:
        for reader in readers_in_run(thread_reference=True):
            url = server.url(kind="timed", fmt=fmt, body=body, n=cfg.latency_tokens, interval=cfg.latency_interval)
            _, samples = collect(reader, url, fmt)
            delays = delays_ms(samples)
            results.append(
                {
                    "format": fmt,
                    "body": body,
                    "reader": reader,
                    "tokens": len(delays),
                    "expected_tokens": cfg.latency_tokens,
                    "median_ms": statistics.median(delays) if delays else None,
                    "p99_ms": percentile(delays, 99),
                    "max_ms": max(delays) if delays else None,
                }
            )
    return results


def show_latency(results: list[dict[str, Any]], cfg: Config) -> str:
    names = readers_in_run(thread_reference=True)
    rows = []
    for fmt, body in ROWS:
        cells = {r["reader"]: r for r in results if (r["format"], r["body"]) == (fmt, body)}
        refs = [cells[n]["median_ms"] for n in names[1:] if cells[n]["median_ms"] is not None]
        best = min(refs) if refs else None
        ratio = cells[PIPE]["median_ms"] / best if best else None
        row = [ROW_NAMES[fmt, body]]
        row += [f"{fmt_ms(cells[n]['median_ms'])} / {fmt_ms(cells[n]['p99_ms'])}" for n in names]
        versus = f"{fmt_ratio(ratio)} ({cells[PIPE]['median_ms'] - best:+.2f} ms)" if best else "—"
        rows.append([*row, versus])
    head = ["stream", *names, "pipe ÷ best reference (median)"]
    note = (
        f"{cfg.latency_tokens} tokens {cfg.latency_interval * 1000:.0f} ms apart per cell; "
        "delay from the server's write to the consumer, median / p99 in ms. Segmented: each HTTP chunk "
        f"in 2 or 3 TCP writes {wire.SEGMENT_GAP * 1000:g} ms apart, in turn size line | data + CRLF, "
        "size line | data | CRLF, size line + data | CRLF; the delay counts from the write that completes "
        "the token's data"
    )
    return f"{table(head, rows)}\n\n{note}"


# ---------------------------------------------------------------------------
# 2. Time to first chunk.


def bench_first_chunk(server: wire.Server, cfg: Config) -> list[dict[str, Any]]:
    results = []
    for body in ("chunked", "close"):
        for reader in readers_in_run():
            url = server.url(kind="timed", fmt="n8n", body=body, n=5, interval=0.01, first_delay=cfg.first_delay)
            started, samples = collect(reader, url, "n8n")
            first = samples[0] if samples else None
            stamps = STAMP.findall(first[1]) if first else []
            results.append(
                {
                    "body": body,
                    "reader": reader,
                    "first_delay_s": cfg.first_delay,
                    "first_chunk_ms": (first[0] - started) / 1e6 if first else None,
                    "added_ms": (first[0] - int(stamps[0])) / 1e6 if stamps else None,
                }
            )
    return results


def show_first_chunk(results: list[dict[str, Any]], cfg: Config) -> str:
    names = readers_in_run()
    rows = []
    for body in ("chunked", "close"):
        cells = {r["reader"]: r for r in results if r["body"] == body}
        row = [f"n8n NDJSON, {'chunked' if body == 'chunked' else 'close-delimited'}"]
        row += [f"{fmt_ms(cells[n]['first_chunk_ms'])} (+{fmt_ms(cells[n]['added_ms'])})" for n in names]
        rows.append(row)
    note = (
        f"first token written {cfg.first_delay:g} s after the headers; ms from the request to the first text, "
        "(+ms after the server wrote it)"
    )
    return f"{table(['stream', *names], rows)}\n\n{note}"


# ---------------------------------------------------------------------------
# 3. Throughput and CPU.


def bench_throughput(server: wire.Server, cfg: Config) -> list[dict[str, Any]]:
    results = []
    for token_bytes, size in cfg.throughput_bytes.items():
        plan = wire.bulk_plan("n8n", token_bytes, size)
        names = throughput_readers()
        runs: dict[str, list[dict[str, float]]] = {reader: [] for reader in names}
        for _ in range(cfg.throughput_repeats):
            for reader in names:
                url = server.url(kind="bulk", fmt="n8n", body="chunked", token=token_bytes, size=size)
                cpu, wall = time.process_time(), time.perf_counter()
                chars, _ = readers.drain(reader, url, "n8n", max_reply_mb=2 * plan["body_bytes"] / MB)
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                runs[reader].append({"wall": wall, "cpu": cpu, "chars": chars})
        for reader, measured in runs.items():
            megabytes = plan["body_bytes"] / MB
            results.append(
                {
                    "token_bytes": token_bytes,
                    "reader": reader,
                    "body_mb": megabytes,
                    "tokens": plan["tokens"],
                    "complete": all(m["chars"] == plan["text_chars"] for m in measured),
                    "mb_per_s": megabytes / min(m["wall"] for m in measured),
                    "cpu_s_per_mb": min(m["cpu"] for m in measured) / megabytes,
                    "cpu_us_per_token": min(m["cpu"] for m in measured) / plan["tokens"] * 1e6,
                    "tokens_per_s": plan["tokens"] / min(m["wall"] for m in measured),
                    "runs": measured,
                }
            )
    return results


def show_throughput(results: list[dict[str, Any]], cfg: Config) -> str:
    names = throughput_readers()
    rows = []
    for token_bytes in cfg.throughput_bytes:
        cells = {r["reader"]: r for r in results if r["token_bytes"] == token_bytes}
        fastest = max(cells[n]["mb_per_s"] for n in names[1:]) if len(names) > 1 else None
        leanest = min(cells[n]["cpu_s_per_mb"] for n in names[1:]) if len(names) > 1 else None
        label = "5-byte tokens" if token_bytes == 5 else f"{token_bytes // 1024} KB chunks"
        row = [f"n8n NDJSON, {label}"]
        row += [
            f"{cells[n]['mb_per_s']:.1f} MB/s, {cells[n]['cpu_s_per_mb'] * 1000:.1f} ms CPU/MB"
            + ("" if cells[n]["complete"] else " (text lost!)")
            for n in names
        ]
        speed = cells[PIPE]["mb_per_s"] / fastest if fastest else None
        cpu = cells[PIPE]["cpu_s_per_mb"] / leanest if leanest else None
        rows.append([*row, f"{fmt_ratio(speed)} speed, {fmt_ratio(cpu)} CPU"])
    head = ["stream", *names, "pipe ÷ fastest reference"]
    sizes = ", ".join(f"{size / MB:g} MB" for size in cfg.throughput_bytes.values())
    note = f"bodies of {sizes} as fast as the server can write; best of {cfg.throughput_repeats} runs, interleaved"
    per_token = "; ".join(
        f"{token_bytes}-byte tokens: "
        + ", ".join(
            f"{r['reader']} {r['cpu_us_per_token']:.2f}"
            for r in results
            if r["token_bytes"] == token_bytes and r["reader"] in (PIPE, THREAD_REFERENCE, PER_TEXT_THREAD)
        )
        for token_bytes in cfg.throughput_bytes
    )
    return f"{table(head, rows)}\n\n{note}. CPU per token (µs, whole process): {per_token}"


# ---------------------------------------------------------------------------
# 4. Memory.


def bench_memory(server: wire.Server, cfg: Config) -> list[dict[str, Any]]:
    """One fresh process per reader; in it the 1 KB-lines body, then the newline-free one."""
    context = multiprocessing.get_context("spawn")
    warm = server.url(kind="bulk", fmt="n8n", body="chunked", token=1024, size=MB)
    bodies = [
        ("lines", server.url(kind="bulk", fmt="n8n", body="chunked", token=1024, size=cfg.memory_bytes)),
        ("newline-free", server.url(kind="nonl", fmt="n8n", body="chunked", size=cfg.memory_bytes)),
    ]
    caps = {"lines": cfg.memory_lines_cap, "newline-free": cfg.memory_cap}
    results = []
    for reader in readers_in_run():
        parent, child = context.Pipe()
        process = context.Process(
            target=readers.memory_child, args=(reader, warm, bodies, caps, "n8n", child), daemon=True
        )
        process.start()
        child.close()
        reports = {}
        while len(reports) < len(bodies) and parent.poll(max(caps.values()) + 60):
            try:
                report = parent.recv()
            except EOFError:
                break
            reports[report["body"]] = report
        process.join(10)
        if process.is_alive():
            process.kill()
        for body, _ in bodies:
            report = reports.get(body, {"error": "no report"})
            growth = (report["peak_kb"] - report["baseline_kb"]) / 1024 if "peak_kb" in report else None
            results.append({**report, "body": body, "reader": reader, "growth_mb": growth, "cap_s": caps[body]})
    return results


def pipe_reply_limit_mb() -> float:
    """The pipe's `max_reply_mb` valve default in MB (1 MiB lines for a pipe from before the valve)."""
    mib = getattr(readers.Pipe.Valves(), "max_reply_mb", 1.0)
    return float(mib) * 1024 * 1024 / MB


def show_memory(results: list[dict[str, Any]], cfg: Config) -> str:
    names = readers_in_run()
    rows = []
    for body in ("lines", "newline-free"):
        cells = {r["reader"]: r for r in results if r["body"] == body}
        label = "1 KB n8n lines" if body == "lines" else "one line, no newline"
        row = [f"{cfg.memory_bytes / MB:g} MB, {label}"]
        for name in names:
            cell = cells[name]
            text = "—" if cell["growth_mb"] is None else f"+{cell['growth_mb']:.1f} MB"
            if cell.get("error"):
                text += f" (read it all, then {cell['error'].split(':')[0]})"
            elif not cell.get("finished"):
                text += f" (still reading after {cell['cap_s']:g} s)"
            elif name == PIPE and body == "newline-free":
                text += f" (stopped at the {pipe_reply_limit_mb():.1f} MB reply limit)"
            row.append(text)
        rows.append(row)
    note = "peak RSS growth of a fresh process over its RSS after a warm-up reply; the consumer keeps no text"
    return f"{table(['body', *names], rows)}\n\n{note}"


# ---------------------------------------------------------------------------
# 5. Concurrency on one event loop.

CONCURRENT_READERS = [
    PIPE,
    "iter_lines in a thread per reply",
    "httpx AsyncClient aiter_lines",
    "iter_lines via asyncio.to_thread",
]


def bench_concurrency(server: wire.Server, cfg: Config) -> list[dict[str, Any]]:
    """Every reader at every count, `concurrency_repeats` times, interleaved; the median run is reported."""
    names = [n for n in CONCURRENT_READERS if readers.available(n)]
    runs: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for _ in range(cfg.concurrency_repeats):
        for reader in names:
            for streams in cfg.streams:
                runs.setdefault((reader, streams), []).append(
                    asyncio.run(concurrent_streams(server, reader, streams, cfg))
                )
    sync = asyncio.run(concurrent_streams(server, "iter_lines on the loop (sync pipe)", 1, cfg))
    runs[sync["reader"], 1] = [sync]
    results = []
    for measured in runs.values():
        ordered = sorted(measured, key=lambda r: r["worst_lag_ms"])
        median = dict(ordered[len(ordered) // 2])
        median["runs"] = [{k: r[k] for k in ("worst_lag_ms", "total_s", "tokens")} for r in measured]
        results.append(median)
    return results


async def concurrent_streams(server: wire.Server, reader: str, streams: int, cfg: Config) -> dict[str, Any]:
    async def one() -> list[tuple[int, str]]:
        url = server.url(kind="timed", fmt="n8n", body="chunked", n=cfg.stream_tokens, interval=cfg.stream_interval)
        chunks = await readers.async_chunks(reader, url, "n8n")
        return [(now_ns(), text) async for text in chunks]

    await warm_default_executor()
    ticker = Ticker()
    await asyncio.sleep(0.05)
    started = time.perf_counter()
    replies = await asyncio.gather(*(one() for _ in range(streams)))
    total = time.perf_counter() - started
    await ticker.stop()
    lags = ticker.lags
    delays = [d for samples in replies for d in delays_ms(samples)]
    return {
        "reader": reader,
        "streams": streams,
        "tokens": len(delays),
        "expected_tokens": streams * cfg.stream_tokens,
        "total_s": total,
        "worst_lag_ms": max(lags),
        "median_lag_ms": statistics.median(lags),
        "median_delay_ms": statistics.median(delays) if delays else None,
        "p99_delay_ms": percentile(delays, 99),
    }


def show_concurrency(results: list[dict[str, Any]], cfg: Config) -> str:
    rows = []
    for r in results:
        one = next(x for x in results if x["reader"] == r["reader"] and x["streams"] == 1)
        rows.append(
            [
                r["reader"],
                str(r["streams"]),
                fmt_ms(r["worst_lag_ms"]) + f" (runs: {', '.join(fmt_ms(x['worst_lag_ms']) for x in r['runs'])})",
                f"{r['total_s']:.2f} s ({fmt_ratio(r['total_s'] / one['total_s'])})",
                f"{fmt_ms(r['median_delay_ms'])} / {fmt_ms(r['p99_delay_ms'])}",
                f"{r['tokens']}/{r['expected_tokens']}",
            ]
        )
    head = ["reader", "streams", "worst loop lag ms", "total (÷ 1 stream)", "token delay median / p99 ms", "tokens"]
    note = (
        f"each stream: {cfg.stream_tokens} tokens {cfg.stream_interval * 1000:.0f} ms apart "
        f"(one stream ≈ {(cfg.stream_tokens - 1) * cfg.stream_interval:.2f} s), all started in the same loop "
        f"iteration of a loop whose default executor is warm; a ticker task sleeping {TICK * 1000:.0f} ms "
        "measures its own oversleep. "
        f"Median of {cfg.concurrency_repeats} interleaved runs (by worst lag); every run's worst lag in brackets"
    )
    return f"{table(head, rows)}\n\n{note}"


# ---------------------------------------------------------------------------
# 6. Stop.


def bench_stop(server: wire.Server, cfg: Config) -> list[dict[str, Any]]:
    results = [
        stop_pipe(server, cfg, "aclose() while blocked mid-body", "hang", "aclose"),
        stop_pipe(server, cfg, "task cancelled while blocked mid-body (Open WebUI's Stop)", "hang", "cancel"),
        stop_pipe(server, cfg, "task cancelled while waiting for headers", "silent", "cancel"),
    ]
    for reader in REFERENCES:
        if readers.available(reader):
            results.append(stop_sync_reference(server, cfg, reader))
    if readers.available("httpx AsyncClient aiter_lines"):
        results.append(stop_httpx_async(server, cfg))
    return results


def stop_result(reader: str, how: str, stopped_at: int, seen: int | None, cap: float) -> dict[str, Any]:
    if seen is not None and seen - stopped_at > cap * 1e9:
        seen = None  # the server gave up first: what it saw was its own timeout
    return {
        "reader": reader,
        "how": how,
        "stop_ms": (seen - stopped_at) / 1e6 if seen is not None else None,
        "seen": seen is not None,
        "cap_s": cap,
    }


def stop_pipe(server: wire.Server, cfg: Config, how: str, kind: str, method: str) -> dict[str, Any]:
    request_id = server.new_id()
    settle = SETTLE if kind == "hang" else 2 * SETTLE
    url = server.url(kind=kind, fmt="n8n", body="chunked", id=request_id, cap=cfg.stop_cap + settle + 0.05)

    async def run() -> int:
        chunks = await readers.pipe_chunks(url)
        first = asyncio.Event()

        async def consume() -> None:
            async for _ in chunks:
                first.set()

        if method == "aclose":
            await chunks.__anext__()
            await asyncio.sleep(settle)  # the worker is now blocked in read1()
            stopped_at = now_ns()
            await chunks.aclose()
            return stopped_at
        task = asyncio.create_task(consume())
        if kind == "hang":
            await asyncio.wait_for(first.wait(), 10)
        await asyncio.sleep(settle)
        stopped_at = now_ns()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return stopped_at

    stopped_at = asyncio.run(run())
    seen = server.disconnect_seen(request_id, cfg.stop_cap + settle + 2)
    return stop_result(PIPE, how, stopped_at, seen, cfg.stop_cap)


def stop_sync_reference(server: wire.Server, cfg: Config, reader: str) -> dict[str, Any]:
    """A sync generator blocked in a read cannot be closed (ValueError: generator already executing):
    the only handle is response.close(), from another thread, as an async wrapper would do."""
    request_id = server.new_id()
    url = server.url(kind="hang", fmt="n8n", body="chunked", id=request_id, cap=cfg.stop_cap + SETTLE + 0.05)
    hold: list[Any] = []
    first = threading.Event()

    def consume() -> None:
        try:
            for _ in readers.SYNC_READERS[reader](url, "n8n", hold):
                first.set()
        except Exception:  # the close breaks the read, or the server's cap ends it
            pass

    worker = threading.Thread(target=consume, daemon=True)
    worker.start()
    first.wait(10)
    time.sleep(SETTLE)
    stopped_at = now_ns()
    threading.Thread(target=hold[0].close, daemon=True).start()
    seen = server.disconnect_seen(request_id, cfg.stop_cap + SETTLE + 2)
    worker.join(cfg.stop_cap + 3)
    how = "response.close() from another thread while blocked mid-body"
    return stop_result(reader, how, stopped_at, seen, cfg.stop_cap)


def stop_httpx_async(server: wire.Server, cfg: Config) -> dict[str, Any]:
    request_id = server.new_id()
    url = server.url(kind="hang", fmt="n8n", body="chunked", id=request_id, cap=cfg.stop_cap + SETTLE + 0.05)

    async def run() -> int:
        first = asyncio.Event()

        async def consume() -> None:
            async for _ in readers.httpx_aiter_lines(url, "n8n"):
                first.set()

        task = asyncio.create_task(consume())
        await asyncio.wait_for(first.wait(), 10)
        await asyncio.sleep(SETTLE)
        stopped_at = now_ns()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return stopped_at

    stopped_at = asyncio.run(run())
    seen = server.disconnect_seen(request_id, cfg.stop_cap + SETTLE + 2)
    how = "task cancelled while blocked mid-body"
    return stop_result("httpx AsyncClient aiter_lines", how, stopped_at, seen, cfg.stop_cap)


def show_stop(results: list[dict[str, Any]], cfg: Config) -> str:
    rows = [
        [r["reader"], r["how"], fmt_ms(r["stop_ms"]) if r["seen"] else f"not seen within {r['cap_s']:g} s"]
        for r in results
    ]
    note = "ms from the stop to the server seeing the connection close"
    return f"{table(['reader', 'stop', 'server sees the disconnect after (ms)'], rows)}\n\n{note}"


# ---------------------------------------------------------------------------
# 7. Many replies at once, and the CPU one reply costs.

SCALE_WARM_TOKENS = 3
REPLY_CPU_READERS = [PIPE, PER_TEXT_THREAD]


def bench_scale(server: wire.Server, cfg: Config) -> list[dict[str, Any]]:
    """Each count of replies in a fresh process (its peaks are its own), then the CPU per short reply."""
    return [*(scale_row(server, cfg, replies) for replies in cfg.scale_replies), *bench_reply_cpu(server, cfg)]


def scale_row(server: wire.Server, cfg: Config, replies: int) -> dict[str, Any]:
    """One count of replies in a spawned process; a child that dies or hangs still gives a row (no figures)."""
    url = server.url(kind="timed", fmt="n8n", body="chunked", n=cfg.scale_tokens, interval=cfg.scale_interval)
    warm = server.url(kind="timed", fmt="n8n", body="chunked", n=SCALE_WARM_TOKENS, interval=0)
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=scale_child, args=(url, warm, replies, cfg.scale_cap, child), daemon=True)
    process.start()
    child.close()
    report: dict[str, Any] = {"error": "no report"}
    try:
        if parent.poll(cfg.scale_cap + 60):
            report = parent.recv()
    except EOFError:
        pass
    process.join(10)
    if process.is_alive():
        process.kill()
    firsts = report.get("first_ms", [])
    counts = report.get("tokens", [])
    return {
        "kind": "at once",
        "reader": PIPE,
        "replies": replies,
        "expected_tokens": cfg.scale_tokens,
        "complete": sum(count == cfg.scale_tokens for count in counts),
        "first_text_p50_ms": percentile(firsts, 50),
        "first_text_p99_ms": percentile(firsts, 99),
        **{key: value for key, value in report.items() if key not in ("first_ms", "tokens")},
    }


def scale_child(url: str, warm_url: str, replies: int, cap: float, conn: Any) -> None:
    """Runs in a spawned process: one warm-up reply, then every reply at once; reports its peaks."""
    wire.raise_open_files(replies + 256)
    report = asyncio.run(many_replies(url, warm_url, replies, cap))
    peak_kb = readers.status_kb("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    conn.send({**report, "peak_rss_kb": peak_kb})
    conn.close()


def threads_now() -> int:
    """The process's OS threads, or Python's count of its own where there is no /proc."""
    return readers.status_kb("Threads") or threading.active_count()


class ThreadPeak:
    """The most threads seen in the process, one look per call."""

    def __init__(self) -> None:
        self.before = self.peak = threads_now()

    def sample(self) -> None:
        self.peak = max(self.peak, threads_now())


async def first_and_tokens(url: str, started: int) -> tuple[float | None, int]:
    """One reply through the pipe: ms from `started` to its first text, and how many tokens came."""
    first, tokens = None, 0
    async for text in await readers.pipe_chunks(url):
        if first is None:
            first = (now_ns() - started) / 1e6
        tokens += len(STAMP.findall(text))
    return first, tokens


async def many_replies(url: str, warm_url: str, replies: int, cap: float) -> dict[str, Any]:
    """All replies created in one loop iteration, as Open WebUI's chats would start them."""
    await first_and_tokens(warm_url, now_ns())
    await warm_default_executor()
    rss_before_kb = readers.status_kb("VmRSS")
    threads = ThreadPeak()
    ticker = Ticker(threads.sample)
    await asyncio.sleep(0.05)
    started = now_ns()
    tasks = [asyncio.create_task(first_and_tokens(url, started)) for _ in range(replies)]
    done, pending = await asyncio.wait(tasks, timeout=cap)
    total_s = (now_ns() - started) / 1e9
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    await ticker.stop()
    outcomes = [task.result() for task in done if task.exception() is None]
    errors = [f"{type(exc).__name__}: {str(exc)[:120]}" for task in done if (exc := task.exception())]
    return {
        "first_ms": [first for first, _ in outcomes if first is not None],
        "tokens": [tokens for _, tokens in outcomes],
        "unfinished": len(pending),
        "errors": errors[:5],
        "total_s": total_s,
        "worst_lag_ms": max(ticker.lags, default=None),
        "median_lag_ms": statistics.median(ticker.lags) if ticker.lags else None,
        "threads_before": threads.before,
        "peak_threads": threads.peak,
        "rss_before_kb": rss_before_kb,
    }


def bench_reply_cpu(server: wire.Server, cfg: Config) -> list[dict[str, Any]]:
    """Short replies one after another on one loop, rounds interleaved: what setting up and finishing one
    reply costs the process, with next to no text to read. The best round is reported."""
    url = server.url(kind="timed", fmt="n8n", body="chunked", n=cfg.reply_cpu_tokens, interval=0)
    runs: dict[str, list[dict[str, Any]]] = {reader: [] for reader in REPLY_CPU_READERS}
    for _ in range(cfg.reply_cpu_rounds):
        for reader in REPLY_CPU_READERS:
            runs[reader].append(
                asyncio.run(sequential_replies(reader, url, cfg.reply_cpu_replies, cfg.reply_cpu_tokens))
            )
    return [
        {
            "kind": "reply cpu",
            "reader": reader,
            "replies": cfg.reply_cpu_replies,
            "expected_tokens": cfg.reply_cpu_tokens,
            "complete": min(m["complete"] for m in measured),  # the fewest replies with every token, any round
            "cpu_ms_per_reply": min(m["cpu_ms"] for m in measured),
            "wall_ms_per_reply": min(m["wall_ms"] for m in measured),
            "runs": measured,
        }
        for reader, measured in runs.items()
    ]


async def sequential_replies(reader: str, url: str, replies: int, expected: int) -> dict[str, Any]:
    """A warm-up reply (first imports and connections are no reply's cost), then `replies` timed ones."""

    async def tokens() -> int:
        return sum([len(STAMP.findall(text)) async for text in await readers.async_chunks(reader, url, "n8n")])

    await tokens()
    cpu, wall = time.process_time(), time.perf_counter()
    complete = sum([await tokens() == expected for _ in range(replies)])
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"cpu_ms": cpu / replies * 1000, "wall_ms": wall / replies * 1000, "complete": complete}


def show_scale(results: list[dict[str, Any]], cfg: Config) -> str:
    rows = []
    for r in (r for r in results if r["kind"] == "at once"):
        growth = (r["peak_rss_kb"] - r["rss_before_kb"]) / 1024 if r.get("rss_before_kb") else None
        rows.append(
            [
                str(r["replies"]),
                f"{fmt_ms(r['first_text_p50_ms'])} / {fmt_ms(r['first_text_p99_ms'])}",
                fmt_ms(r.get("worst_lag_ms")),
                f"{r['peak_threads']} ({r['threads_before']} before)" if "peak_threads" in r else "—",
                f"{r['peak_rss_kb'] / 1024:.0f} MB (+{growth:.0f})" if growth is not None else "—",
                f"{r['total_s']:.2f} s" if "total_s" in r else r.get("error", "—"),
                f"{r['complete']}/{r['replies']}",
            ]
        )
    head = [
        "replies at once",
        "first text p50 / p99 ms",
        "worst loop lag ms",
        "peak threads",
        "peak RSS",
        "all done after",
        "complete",
    ]
    backlog = wire.somaxconn()
    note = (
        f"each reply: {cfg.scale_tokens} tokens {cfg.scale_interval * 1000:.0f} ms apart through `Pipe().pipe()`, all "
        "created in one loop iteration of a fresh process per row (one warm-up reply first, default executor warm); "
        "first text: ms from the start of all to each reply's first text chunk; loop lag: a ticker task sleeping "
        f"{TICK * 1000:.0f} ms; threads: /proc/self/status Threads, looked at on every tick; RSS: the row's VmHWM "
        "(+MB over its RSS just before the start). Complete: replies with every token within "
        f"{cfg.scale_cap:g} s. The server: its own process, one thread per connection started by its accept loop, "
        f"listen backlog {wire.BACKLOG}" + (f" (net.core.somaxconn {backlog})" if backlog else "")
    )
    cpu_rows = [r for r in results if r["kind"] == "reply cpu"]
    cpu = {r["reader"]: r for r in cpu_rows}
    per_reply = [
        [
            r["reader"],
            f"{r['cpu_ms_per_reply']:.2f}",
            f"{r['wall_ms_per_reply']:.2f}",
            fmt_ratio(r["cpu_ms_per_reply"] / cpu[PIPE]["cpu_ms_per_reply"]) if cpu[PIPE]["cpu_ms_per_reply"] else "—",
            f"{r['complete']}/{r['replies']}",
        ]
        for r in cpu_rows
    ]
    cpu_note = (
        f"CPU one reply costs: {cfg.reply_cpu_rounds} interleaved rounds of {cfg.reply_cpu_replies} replies of "
        f"{cfg.reply_cpu_tokens} tokens, one after another on one loop; process CPU time (every thread) ÷ replies, "
        f"best round. {PER_TEXT_THREAD}: requests.post(stream=True) + iter_lines in a threading.Thread started per "
        "reply, each text handed to the loop with call_soon_threadsafe"
    )
    cpu_head = ["reader", "CPU ms per reply", "wall ms per reply", "÷ pipe", "complete"]
    return f"{table(head, rows)}\n\n{note}\n\n{table(cpu_head, per_reply)}\n\n{cpu_note}"


# ---------------------------------------------------------------------------
# Goals.


def goals(results: dict[str, Any], cfg: Config) -> list[dict[str, Any]]:
    verdicts: list[dict[str, Any]] = []

    def goal(name: str, met: bool, figure: str) -> None:
        verdicts.append({"goal": name, "met": bool(met), "figure": figure})

    pipe_rows = [r for r in results["latency"] if r["reader"] == PIPE]
    worst_median = max(r["median_ms"] or math.inf for r in pipe_rows)
    worst_p99 = max(r["p99_ms"] or math.inf for r in pipe_rows)
    complete = all(r["tokens"] == r["expected_tokens"] for r in pipe_rows)
    worst_row = max(pipe_rows, key=lambda r: r["p99_ms"] or math.inf)
    floor = min(
        (r["p99_ms"] for r in results["latency"] if r["reader"] != PIPE and r["format"] == worst_row["format"]),
        default=None,
    )
    goal(
        "1. pipe latency: median < 1 ms and p99 < 5 ms on every row",
        worst_median < 1 and worst_p99 < 5 and complete,
        f"worst median {fmt_ms(worst_median)} ms, worst p99 {fmt_ms(worst_p99)} ms "
        f"(best reference p99 for that format: {fmt_ms(floor)} ms)",
    )
    firsts = [r for r in results["first_chunk"] if r["reader"] == PIPE]
    worst_added = max(r["added_ms"] or math.inf for r in firsts)
    goal(
        "2. first chunk after a 2 s wait: shown as soon as written (< 5 ms, workload 1's p99 bar)",
        worst_added < 5,
        f"+{fmt_ms(worst_added)} ms after the write",
    )
    names = throughput_readers()
    for token_bytes in cfg.throughput_bytes:
        cells = {r["reader"]: r for r in results["throughput"] if r["token_bytes"] == token_bytes}
        if len(names) < 2:
            continue
        fastest = max(cells[n]["mb_per_s"] for n in names[1:])
        ratio = cells[PIPE]["mb_per_s"] / fastest
        leanest = min(cells[n]["cpu_s_per_mb"] for n in names[1:])
        goal(
            f"3. throughput ({token_bytes}-byte tokens) ≥ fastest reference",
            ratio >= 1 and cells[PIPE]["complete"],
            f"{cells[PIPE]['mb_per_s']:.1f} MB/s = {fmt_ratio(ratio)} the fastest reference; "
            f"CPU/MB {fmt_ratio(cells[PIPE]['cpu_s_per_mb'] / leanest)} the leanest",
        )
    smallest = {r["reader"]: r for r in results["throughput"] if r["token_bytes"] == min(cfg.throughput_bytes)}
    pipe_cpu, bar_cpu = smallest[PIPE]["cpu_us_per_token"], smallest[THREAD_REFERENCE]["cpu_us_per_token"]
    goal(
        f"3. CPU per {min(cfg.throughput_bytes)}-byte token ≤ {CPU_BAR:g}× {THREAD_REFERENCE}",
        pipe_cpu <= CPU_BAR * bar_cpu and smallest[PIPE]["complete"],
        f"pipe {pipe_cpu:.2f} µs/token, reference {bar_cpu:.2f} µs/token = {fmt_ratio(pipe_cpu / bar_cpu)}",
    )
    memory = {r["body"]: r for r in results["memory"] if r["reader"] == PIPE}
    # One line may be as long as the reply limit (a complete answer with an image is one JSON line), so the
    # newline-free body may hold that much before it is cut: its bar is that limit plus the same 10 MB.
    limit = pipe_reply_limit_mb()
    bars = {"lines": ("flat", 10.0), "newline-free": (f"bounded by the {limit:.1f} MB reply limit", limit + 10)}
    for body, (label, bar) in bars.items():
        growth = memory[body]["growth_mb"]
        goal(
            f"4. memory {label}: < {bar:.1f} MB growth over {cfg.memory_bytes / MB:g} MB",
            growth is not None and growth < bar and memory[body].get("finished", False),
            f"+{growth:.1f} MB" if growth is not None else "no figure",
        )
    pipe_streams = {r["streams"]: r for r in results["concurrency"] if r["reader"] == PIPE}
    most = max(cfg.streams)
    lag = pipe_streams[most]["worst_lag_ms"]
    ratio = pipe_streams[most]["total_s"] / pipe_streams[1]["total_s"]
    others = [r for r in results["concurrency"] if r["reader"] != PIPE and r["streams"] == most]
    best = min(others, key=lambda r: r["worst_lag_ms"], default=None)
    versus = (
        f"; lowest reference: {best['reader']} {fmt_ms(best['worst_lag_ms'])} ms "
        f"(token delay p99 {fmt_ms(best['p99_delay_ms'])} ms, the pipe's {fmt_ms(pipe_streams[most]['p99_delay_ms'])})"
        if best
        else ""
    )
    goal(f"5. loop lag < 20 ms at {most} streams", lag < 20, f"{fmt_ms(lag)} ms{versus}")
    goal(
        f"5. total time at {most} streams close to one stream's (≤ 1.2×)",
        ratio <= 1.2 and pipe_streams[most]["tokens"] == pipe_streams[most]["expected_tokens"],
        f"{fmt_ratio(ratio)}",
    )
    stops = [r for r in results["stop"] if r["reader"] == PIPE]
    worst_stop = max((r["stop_ms"] if r["seen"] else math.inf) for r in stops)
    goal("6. Stop: server sees the disconnect < 100 ms", worst_stop < 100, f"worst {fmt_ms(worst_stop)} ms")
    return verdicts


def show_goals(verdicts: list[dict[str, Any]]) -> str:
    rows = [[v["goal"], "met" if v["met"] else "MISSED", v["figure"]] for v in verdicts]
    return table(["goal", "verdict", "measured"], rows)


# ---------------------------------------------------------------------------

SECTIONS: list[tuple[str, str, Callable[..., Any], Callable[..., str]]] = [
    ("latency", "1. Added latency per chunk", bench_latency, show_latency),
    ("first_chunk", "2. Time to first chunk", bench_first_chunk, show_first_chunk),
    ("throughput", "3. Throughput and CPU", bench_throughput, show_throughput),
    ("memory", "4. Memory", bench_memory, show_memory),
    ("concurrency", "5. Concurrency on one event loop", bench_concurrency, show_concurrency),
    ("stop", "6. Stop", bench_stop, show_stop),
    ("scale", "7. Many replies at once", bench_scale, show_scale),
]


def pipe_version() -> str:
    """Which pipe was measured: the file, its git commit and whether it differs from it, a hash of its
    text. The pipe may change between runs (or during one), so a figure must say what it is of."""
    path = readers.PIPE_FILE
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    try:
        git = ["git", "-C", str(path.parent)]
        commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10)
        changed = subprocess.run([*git, "diff", "--quiet", "HEAD", "--", path.name], capture_output=True, timeout=10)
        where = f"HEAD {commit.stdout.strip()}{' + uncommitted changes' if changed.returncode else ''}"
        if commit.returncode:
            where = "not in a git work tree"
    except (OSError, subprocess.SubprocessError):
        where = "git not available"
    return f"{path} ({where}, sha256 {digest})"


def environment() -> dict[str, Any]:
    try:
        import httpx

        httpx_version = httpx.__version__
    except ImportError:
        httpx_version = None
    import urllib3

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "requests": requests.__version__,
        "urllib3": urllib3.__version__,
        "httpx": httpx_version,
        "pipe": pipe_version(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, a few seconds (the test suite's smoke run)")
    parser.add_argument("--json", help="where to write the results (default: bench/results.json; none with --quick)")
    parser.add_argument("--only", nargs="*", choices=[s[0] for s in SECTIONS], help="run only these sections")
    args = parser.parse_args(argv)
    cfg = Config.tiny() if args.quick else Config()
    output = args.json or (None if args.quick else str(HERE / "results.json"))

    command = "python bench/run.py" + (" --quick" if args.quick else "")
    env = environment()
    say(f"# pipe_n8n_stream benchmarks ({command})")
    say(
        f"Python {env['python']}, {env['cpus']} CPUs, requests {env['requests']}, urllib3 {env['urllib3']}, "
        f"httpx {env['httpx'] or 'not installed'}"
    )
    say(f"pipe: {env['pipe']}")
    if env["httpx"] is None:
        say(f"note: {readers.HTTPX_MISSING}")
    started = time.perf_counter()
    results: dict[str, Any] = {"command": command, "environment": env, "config": asdict(cfg)}
    server = wire.Server()
    try:
        for key, title, bench, show in SECTIONS:
            if args.only and key not in args.only:
                continue
            began = time.perf_counter()
            results[key] = bench(server, cfg)
            say(f"\n## {title}  ({time.perf_counter() - began:.1f} s)\n")
            say(show(results[key], cfg))
    finally:
        server.close()
    if not args.only:
        results["goals"] = goals(results, cfg)
        say("\n## Goals (this pipe)\n")
        say(show_goals(results["goals"]))
    results["seconds"] = time.perf_counter() - started
    say(f"\nwhole run: {results['seconds']:.0f} s")
    if output:
        Path(output).write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
        say(f"results: {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
