"""Helpers the chat tests share: a turn answered by a loopback n8n, Stop pressed mid-reply, the reply
threads a test leaves behind, and the sentences several modules expect."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from loopback import LoopbackServer, Reply

STOP_WITHIN = 0.1
KEEPS_RUNNING = "n8n keeps running the workflow to its end (set the `n8n_api_key` valve to stop it too)"
# Said after a failure n8n's API could have recovered from, when no `n8n_api_key` is set.
WITH_API_KEY = (
    "with the `n8n_api_key` valve set (scopes execution:read, execution:list), the pipe would have fetched the "
    "answer from n8n's execution"
)


def answered_with(reply: Reply, chat: Any, path: str = "/webhook/test", **valves: Any) -> tuple[list[str], Any]:
    """(what the chat shows, the final status) when n8n answers `reply`; n8n is asked exactly once."""
    with LoopbackServer([reply]) as server:
        shown, final = chat(n8n_url=f"http://127.0.0.1:{server.port}{path}", **valves).run()
        assert len(server.requests) == 1
    return shown, final


def reply_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == "n8n-reply"}


def threads_left_after(before: set[threading.Thread], deadline: float = 2) -> set[threading.Thread]:
    """The worker threads this test started that are still alive once the deadline passes."""
    end = time.monotonic() + deadline
    while (left := reply_threads() - before) and time.monotonic() < end:
        time.sleep(0.01)
    return left


async def stop_after_first_chunk(turn: Any) -> tuple[list[str], float]:
    """Open WebUI's Stop: the task iterating the reply is cancelled once the first chunk is shown.
    (What the chat showed, when Stop was pressed); returns after the task has ended."""
    shown: list[str] = []
    first = asyncio.Event()

    async def iterate() -> None:
        async for chunk in await turn.start():
            shown.append(chunk)
            first.set()

    task = asyncio.create_task(iterate())
    await asyncio.wait_for(first.wait(), 5)
    stopped_at = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    return shown, stopped_at
