"""The hand-over from the reply's worker thread to Open WebUI's event loop: every read's pieces go at
once, the loop is woken once per drain (not once per token), and a stalled chat pauses the worker
instead of growing memory."""

from __future__ import annotations

import asyncio
import threading

import pytest

from pipe_n8n_stream import QUEUED_CHARS, Handover, Stopped, Text


def counting_wakes(loop: asyncio.AbstractEventLoop, monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Record every callback scheduled on the loop from outside it: each one is a wake."""
    wakes: list[object] = []
    schedule = loop.call_soon_threadsafe

    def counted(callback, *args):
        wakes.append(callback)
        return schedule(callback, *args)

    monkeypatch.setattr(loop, "call_soon_threadsafe", counted)
    return wakes


def test_pieces_handed_over_before_a_drain_wake_the_loop_once(monkeypatch):
    async def scenario():
        loop = asyncio.get_running_loop()
        wakes = counting_wakes(loop, monkeypatch)
        handover = Handover(loop)
        for i in range(50):
            handover.put([Text(str(i))])
        first, finished_then = await handover.drain()
        handover.put([Text("last")])
        handover.finish()
        second, finished = await handover.drain()
        return wakes, first, finished_then, second, finished

    wakes, first, finished_then, second, finished = asyncio.run(scenario())
    assert [p.text for p in first] == [str(i) for i in range(50)]
    assert not finished_then
    assert second == [Text("last")]
    assert finished
    assert len(wakes) == 2


def test_an_empty_read_wakes_nobody(monkeypatch):
    async def scenario():
        loop = asyncio.get_running_loop()
        wakes = counting_wakes(loop, monkeypatch)
        Handover(loop).put([])
        return wakes

    assert asyncio.run(scenario()) == []


def test_a_stalled_chat_pauses_the_worker_until_it_drains():
    async def scenario():
        handover = Handover(asyncio.get_running_loop())
        big = Text("x" * (QUEUED_CHARS + 1))
        handover.put([big])  # more than the limit is queued now: the next put must wait
        second_put_done = threading.Event()

        def worker():
            handover.put([Text("after the drain")])
            second_put_done.set()

        thread = threading.Thread(target=worker)
        thread.start()
        waited = await asyncio.to_thread(second_put_done.wait, 0.3)
        first, _ = await handover.drain()
        await asyncio.to_thread(thread.join, 5)
        second, _ = await handover.drain()
        return waited, first, second, second_put_done.is_set()

    waited, first, second, done = asyncio.run(scenario())
    assert not waited
    assert len(first) == 1
    assert second == [Text("after the drain")]
    assert done


def test_stop_releases_a_paused_worker_with_stopped():
    async def scenario():
        handover = Handover(asyncio.get_running_loop())
        handover.put([Text("x" * (QUEUED_CHARS + 1))])
        raised: list[BaseException] = []

        def worker():
            try:
                handover.put([Text("never shown")])
            except Stopped as exc:
                raised.append(exc)

        thread = threading.Thread(target=worker)
        thread.start()
        handover.abandon()
        await asyncio.to_thread(thread.join, 5)
        return raised, thread.is_alive()

    raised, alive = asyncio.run(scenario())
    assert len(raised) == 1
    assert not alive
