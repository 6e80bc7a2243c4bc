"""The readers under comparison: this pipe, driven as Open WebUI drives it, and the usual pipe code.

Every reader turns one reply into the text of its tokens, one string per token. The references are
the code most Open WebUI pipes use (`iter_lines()` + `startswith("data: ")` + `json.loads`), written
plainly and correctly so they are a fair bar, not a straw man.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import os
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]
# BENCH_PIPE=path/to/pipe_n8n_stream.py benches another version of the pipe (say, `git show HEAD:...`)
# against the same references; spawned processes inherit it.
PIPE_FILE = Path(os.environ.get("BENCH_PIPE") or ROOT / "pipe_n8n_stream.py").resolve()


def load_pipe() -> type:
    """Import the pipe from PIPE_FILE under its own module name, as Open WebUI loads a function file."""
    spec = importlib.util.spec_from_file_location("pipe_n8n_stream", PIPE_FILE)
    assert spec is not None and spec.loader is not None, PIPE_FILE
    module = importlib.util.module_from_spec(spec)
    sys.modules["pipe_n8n_stream"] = module
    spec.loader.exec_module(module)
    return module.Pipe


Pipe = load_pipe()

logging.getLogger("pipe_n8n_stream").setLevel(logging.ERROR)  # the bench's bad bodies are meant to fail

try:
    import httpx
except ImportError:  # a bench-only dependency: `pip install -e '.[bench]'`
    httpx = None

PAYLOAD = {"chatInput": "benchmark", "sessionId": "bench", "stream": True}
TIMEOUT = (10, 300)
PIPE = "pipe"
REFERENCES = ["requests iter_lines", "requests iter_content(None)", "httpx iter_lines"]
# The pipe's own shape (a reading thread handing texts to the event loop) at its leanest: the CPU bar.
THREAD_REFERENCE = "requests iter_lines + json.loads (thread)"
HTTPX_MISSING = "httpx is not installed (pip install -e '.[bench]'): its rows are skipped"


def available(reader: str) -> bool:
    return httpx is not None or not reader.startswith("httpx")


# ---------------------------------------------------------------------------
# This pipe.


async def pipe_chunks(url: str, chat_id: str = "bench", max_reply_mb: float | None = None) -> AsyncIterator[str]:
    """`await pipe.pipe(...)` exactly as Open WebUI calls it; returns the async generator to iterate.
    `max_reply_mb`: a reply limit above the body's size, so a large body is read whole (a pipe from before
    the valve has no limit to raise)."""
    pipe = Pipe()
    pipe.valves.n8n_url = url
    if max_reply_mb is not None and hasattr(pipe.valves, "max_reply_mb"):
        pipe.valves.max_reply_mb = max_reply_mb
    body = {"model": "n8n_stream.n8n", "stream": True, "messages": [{"role": "user", "content": "benchmark"}]}

    async def emit(event: dict[str, Any]) -> None:
        """Open WebUI's emitter sends a socket event; here it only has to be awaitable."""

    return await pipe.pipe(
        body,
        __user__={"id": "u1", "name": "Bench", "email": "bench@example.com", "role": "user"},
        __event_emitter__=emit,
        __metadata__={"chat_id": chat_id, "message_id": "m1", "session_id": "s1"},
    )


# ---------------------------------------------------------------------------
# The usual pipe code.


class Done(Exception):
    """`data: [DONE]`: the usual SSE code stops reading there."""


def usual_text(line: str, fmt: str) -> str | None:
    """What a typical pipe does with one line: SSE `data: ` + JSON, or one n8n JSON object per line."""
    if fmt == "sse":
        if not line.startswith("data: "):
            return None
        data = line[6:]
        if data.strip() == "[DONE]":
            raise Done
        return json.loads(data)["choices"][0]["delta"].get("content")
    chunk = json.loads(line)
    return chunk.get("content") if chunk.get("type") == "item" else None


def texts(lines: Iterator[str], fmt: str) -> Iterator[str]:
    try:
        for line in lines:
            if line and (text := usual_text(line, fmt)):
                yield text
    except Done:
        return


def requests_iter_lines(url: str, fmt: str, hold: list[Any] | None = None) -> Iterator[str]:
    with requests.post(url, json=PAYLOAD, stream=True, timeout=TIMEOUT) as response:
        if hold is not None:
            hold.append(response)
        yield from texts((raw.decode("utf-8") for raw in response.iter_lines()), fmt)


def requests_iter_content(url: str, fmt: str, hold: list[Any] | None = None) -> Iterator[str]:
    def lines(response: requests.Response) -> Iterator[str]:
        pending = b""
        for chunk in response.iter_content(None):
            parts = (pending + chunk).split(b"\n")
            pending = parts.pop()
            for part in parts:
                yield part.rstrip(b"\r").decode("utf-8")
        if pending:
            yield pending.decode("utf-8")

    with requests.post(url, json=PAYLOAD, stream=True, timeout=TIMEOUT) as response:
        if hold is not None:
            hold.append(response)
        yield from texts(lines(response), fmt)


def httpx_iter_lines(url: str, fmt: str, hold: list[Any] | None = None) -> Iterator[str]:
    timeout = httpx.Timeout(TIMEOUT[1], connect=TIMEOUT[0])
    with httpx.Client(timeout=timeout) as client, client.stream("POST", url, json=PAYLOAD) as response:
        if hold is not None:
            hold.append(response)
        yield from texts(response.iter_lines(), fmt)


SYNC_READERS = {
    "requests iter_lines": requests_iter_lines,
    "requests iter_content(None)": requests_iter_content,
    "httpx iter_lines": httpx_iter_lines,
}


async def httpx_aiter_lines(url: str, fmt: str) -> AsyncIterator[str]:
    """The event-loop-native reference: httpx.AsyncClient, one client per reply."""
    timeout = httpx.Timeout(TIMEOUT[1], connect=TIMEOUT[0])
    async with httpx.AsyncClient(timeout=timeout) as client, client.stream("POST", url, json=PAYLOAD) as response:
        try:
            async for line in response.aiter_lines():
                if line and (text := usual_text(line, fmt)):
                    yield text
        except Done:
            return


async def sync_on_loop(url: str, fmt: str) -> AsyncIterator[str]:
    """The usual sync pipe as Open WebUI runs it: the generator is iterated on the event loop itself."""
    for text in requests_iter_lines(url, fmt):
        yield text
        await asyncio.sleep(0)


async def sync_in_to_thread(url: str, fmt: str) -> AsyncIterator[str]:
    """The common fix: each next() of the usual generator in asyncio.to_thread (the shared executor)."""
    lines = requests_iter_lines(url, fmt)
    end = object()
    try:
        while (text := await asyncio.to_thread(next, lines, end)) is not end:
            yield text
    finally:
        lines.close()


async def thread_per_reply(url: str, fmt: str) -> AsyncIterator[str]:
    """The pipe's transport stripped to the bone: the usual iter_lines loop in a thread of its own,
    each text handed to the event loop. What a thread per reply costs with nothing else in it."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[str | None] = asyncio.Queue()

    def work() -> None:
        try:
            for text in requests_iter_lines(url, fmt):
                loop.call_soon_threadsafe(queue.put_nowait, text)
        finally:
            loop.call_soon_threadsafe(queue.put_nowait, None)

    threading.Thread(target=work, daemon=True).start()
    while (text := await queue.get()) is not None:
        yield text


async def decoding_thread(url: str, fmt: str) -> AsyncIterator[str]:
    """The least any correct threaded pipe does, as a bar for the pipe's CPU: a thread of its own runs
    the usual iter_lines + json.loads + field lookup and hands the texts to the event loop, waking it
    only when no wake-up is pending (once per drain, as the pipe does) so no text waits for another."""
    loop = asyncio.get_running_loop()
    ready = asyncio.Event()
    lock = threading.Lock()
    waiting: list[str | None] = []

    def hand_over(text: str | None) -> None:
        with lock:
            waiting.append(text)
            if len(waiting) > 1:  # the loop has been woken for this batch already
                return
        loop.call_soon_threadsafe(ready.set)

    def work() -> None:
        try:
            for text in requests_iter_lines(url, fmt):
                hand_over(text)
        finally:
            hand_over(None)

    threading.Thread(target=work, daemon=True).start()
    while True:
        await ready.wait()
        ready.clear()
        with lock:
            batch = waiting[:]
            waiting.clear()
        for text in batch:
            if text is None:
                return
            yield text


async def async_chunks(reader: str, url: str, fmt: str, max_reply_mb: float | None = None) -> AsyncIterator[str]:
    """Any reader as an async iterator of token texts (the pipe's own generator for the pipe)."""
    if reader == PIPE:
        return await pipe_chunks(url, max_reply_mb=max_reply_mb)
    return ASYNC_READERS[reader](url, fmt)


ASYNC_READERS = {
    "httpx AsyncClient aiter_lines": httpx_aiter_lines,
    "iter_lines on the loop (sync pipe)": sync_on_loop,
    "iter_lines via asyncio.to_thread": sync_in_to_thread,
    "iter_lines in a thread per reply": thread_per_reply,
    THREAD_REFERENCE: decoding_thread,
}


# ---------------------------------------------------------------------------
# Memory: one reader in a fresh process, its peak RSS measured from /proc.


def status_kb(key: str) -> int | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False when the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        return False
    return True


class PeakSampler:
    """Fallback where VmHWM cannot be reset: sample VmRSS every 2 ms."""

    def __init__(self) -> None:
        self.peak = status_kb("VmRSS") or 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, status_kb("VmRSS") or 0)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return max(self.peak, status_kb("VmRSS") or 0)


def drain(reader: str, url: str, fmt: str, max_reply_mb: float | None = None) -> tuple[int, str]:
    """Read a whole reply, keeping only the count of characters and the last text (the consumer's share is nil)."""
    chars, last = 0, ""
    if reader in SYNC_READERS:
        for text in SYNC_READERS[reader](url, fmt):
            chars += len(text)
            last = text
        return chars, last

    async def run() -> tuple[int, str]:
        count, tail = 0, ""
        chunks = await async_chunks(reader, url, fmt, max_reply_mb)
        async for text in chunks:
            count += len(text)
            tail = text
        return count, tail

    return asyncio.run(run())


def memory_child(
    reader: str, warm_url: str, bodies: list[tuple[str, str]], caps: dict[str, float], fmt: str, conn: Any
) -> None:
    """Runs in a spawned process: warm up, then for each body note RSS, stream it, report the peak growth.
    A body still being read after its cap (seconds) is reported as unfinished and ends the process."""
    import gc
    import os
    import time

    drain(reader, warm_url, fmt)
    lock = threading.Lock()
    for body, url in bodies:
        gc.collect()
        baseline = status_kb("VmRSS") or 0
        sampler = None if reset_peak() else PeakSampler()
        started = time.monotonic()
        done = threading.Event()

        def report(
            finished: bool,
            chars: int = 0,
            last: str = "",
            error: str = "",
            *,
            body=body,
            baseline=baseline,
            sampler=sampler,
            started=started,
            done=done,
        ) -> None:
            with lock:
                if done.is_set():
                    return
                done.set()
                peak = sampler.stop() if sampler else (status_kb("VmHWM") or 0)
                conn.send(
                    {
                        "body": body,
                        "baseline_kb": baseline,
                        "peak_kb": peak,
                        "finished": finished,
                        "seconds": time.monotonic() - started,
                        "chars": chars,
                        "last": last[-160:],
                        "error": error,
                        "peak_source": "VmHWM" if sampler is None else "VmRSS sampled every 2 ms",
                    }
                )
                if not finished:  # the reader is stuck inside its own loop: only leaving stops it
                    conn.close()
                    os._exit(0)

        watchdog = threading.Timer(caps[body], report, kwargs={"finished": False})
        watchdog.start()
        try:
            chars, last = drain(reader, url, fmt)
        except Exception as exc:  # a reference that breaks on the body is a result too
            report(True, error=f"{type(exc).__name__}: {str(exc)[:120]}")
        else:
            report(True, chars, last)
        watchdog.cancel()
    conn.close()
