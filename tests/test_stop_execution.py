"""Stop stops n8n's execution too: after the socket is closed, a thread asks n8n's public API to stop
this turn's execution and the final status says what happened. A fake n8n API on 127.0.0.1 records
every call; a slow or failing API never delays the chat's end nor stalls the event loop."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import pytest
from chat_helpers import STOP_WITHIN, reply_threads, stop_after_first_chunk, threads_left_after
from fake_n8n_api import FakeN8nApi, execution
from loopback import CAPTURE_HEADERS, Gate, LoopbackServer, Reply, n8n_line, n8n_reply

from pipe_n8n_stream import (
    API_KEY_WORKS,
    RECOVERY_WORKS,
    STOP_UNSUPPORTED,
    Pipe,
    Settings,
    Turn,
    api_check,
    api_words,
    recovery_check,
    webhook_request,
)

N8N_STREAM = CAPTURE_HEADERS["n8n-stream"]
API_KEY = "n8n_api_4f1c9e7d-KEY-secret"
STOPPING = "Stopped; stopping the n8n execution…"
STATUS_WITHIN = 10  # seconds a test waits for the stop thread's final status before failing


def turn_id_of(webhook: LoopbackServer) -> str:
    return str(webhook.requests[0].json()["turnId"])


def lists_this_turn_as_1234(webhook: LoopbackServer) -> Callable[[], list[dict[str, Any]]]:
    """Another chat's run first (same workflow), then this turn's."""
    return lambda: [execution("1233", "0" * 32), execution("1234", turn_id_of(webhook))]


def stalled_after_hello() -> Reply:
    return Reply(headers=N8N_STREAM, steps=[*n8n_reply(["Hello"])[:2], "hang"])


async def final_status(chat: Any, prefix: str) -> str:
    """The status that follows the first one starting with `prefix`: the stop thread's report."""
    deadline = time.monotonic() + STATUS_WITHIN
    while time.monotonic() < deadline:
        said = chat.descriptions
        if prefix in said and said.index(prefix) < len(said) - 1:
            return str(said[-1])
        await asyncio.sleep(0.01)
    raise AssertionError(f"no final status after {prefix!r}: {chat.descriptions}")


async def stop_mid_reply(turn: Any) -> tuple[list[str], float]:
    """Open WebUI's Stop after the first chunk: (what the chat showed, how long the cancelled task took to end)."""
    shown, stopped_at = await stop_after_first_chunk(turn)
    return shown, time.monotonic() - stopped_at


def test_stop_cancels_this_turns_execution_and_says_so(chat, caplog):
    caplog.set_level(logging.DEBUG)
    with LoopbackServer([stalled_after_hello()]) as webhook:
        api = FakeN8nApi(running=lists_this_turn_as_1234(webhook))
        turn = chat(n8n_url=webhook.url, n8n_api_key=API_KEY, n8n_api_url=api.url)

        async def scenario() -> tuple[list[str], float, str]:
            shown, took = await stop_mid_reply(turn)
            return shown, took, await final_status(turn, STOPPING)

        try:
            shown, took, final = asyncio.run(scenario())
        finally:
            api.close()
        assert webhook.client_gone.wait(5)
        assert len(webhook.requests) == 1

    assert shown == ["Hello"]
    assert took < STOP_WITHIN
    assert final == "Stopped; n8n execution 1234 cancelled"
    assert turn.statuses[-1]["data"]["done"] is True
    assert [(c.method, c.path) for c in api.calls] == [
        ("GET", "/api/v1/executions"),
        ("POST", "/api/v1/executions/1234/stop"),
    ]
    assert api.calls[0].query == {"status": ["running"], "includeData": ["true"], "limit": ["100"]}
    assert {c.key for c in api.calls} == {API_KEY}
    assert API_KEY not in caplog.text
    assert all(API_KEY not in d for d in turn.descriptions)


def test_closing_the_stream_stops_the_execution_too(chat):
    with LoopbackServer([stalled_after_hello()]) as webhook:
        api = FakeN8nApi(running=lists_this_turn_as_1234(webhook))
        turn = chat(n8n_url=webhook.url, n8n_api_key=API_KEY, n8n_api_url=api.url)

        async def scenario() -> str:
            chunks = await turn.start()
            assert await chunks.__anext__() == "Hello"
            await chunks.aclose()
            return await final_status(turn, STOPPING)

        try:
            assert asyncio.run(scenario()) == "Stopped; n8n execution 1234 cancelled"
        finally:
            api.close()
    assert [c.path for c in api.calls][-1] == "/api/v1/executions/1234/stop"


def test_an_execution_id_the_workflow_streams_is_used_and_never_shown(chat):
    execution_id_block = [
        n8n_line("begin", node="Execution id"),
        n8n_line("item", '{"executionId":"77"}', node="Execution id"),
        n8n_line("end", node="Execution id"),
    ]
    reply = Reply(headers=N8N_STREAM, steps=[*execution_id_block, *n8n_reply(["Hello"])[:2], "hang"])
    with LoopbackServer([reply]) as webhook:
        api = FakeN8nApi()
        turn = chat(n8n_url=webhook.url, n8n_api_key=API_KEY, n8n_api_url=api.url)

        async def scenario() -> tuple[list[str], str]:
            shown, _ = await stop_mid_reply(turn)
            return shown, await final_status(turn, STOPPING)

        try:
            shown, final = asyncio.run(scenario())
        finally:
            api.close()

    assert shown == ["Hello"]
    assert final == "Stopped; n8n execution 77 cancelled"
    assert [(c.method, c.path) for c in api.calls] == [("POST", "/api/v1/executions/77/stop")]


def test_a_slow_api_never_delays_the_chat_nor_stalls_the_event_loop(chat):
    before = reply_threads()
    hold = Gate()
    with LoopbackServer([stalled_after_hello()]) as webhook:
        api = FakeN8nApi(running=lists_this_turn_as_1234(webhook), hold=hold)
        turn = chat(n8n_url=webhook.url, n8n_api_key=API_KEY, n8n_api_url=api.url)

        async def scenario() -> tuple[float, float, str]:
            _, took = await stop_mid_reply(turn)
            # The API holds its answer: the loop keeps ticking every 10 ms meanwhile.
            worst, last = 0.0, time.monotonic()
            while not api.calls:
                await asyncio.sleep(0.01)
            for _ in range(30):
                await asyncio.sleep(0.01)
                now = time.monotonic()
                worst, last = max(worst, now - last), now
            assert turn.descriptions[-1] == STOPPING  # nothing final while n8n's API is silent
            hold.open()
            return took, worst, await final_status(turn, STOPPING)

        try:
            took, worst, final = asyncio.run(scenario())
        finally:
            api.close()

    assert took < STOP_WITHIN
    assert worst < 0.1
    assert final == "Stopped; n8n execution 1234 cancelled"
    assert threads_left_after(before) == set()


@pytest.mark.parametrize(
    ("api_says", "final"),
    [
        (
            {"list_status": 401},
            "Stopped; n8n rejected the `n8n_api_key` (HTTP 401): create a new API key in n8n (Settings > n8n API)",
        ),
        (
            {"list_status": 403},
            "Stopped; the `n8n_api_key` may not do this (HTTP 403): "
            "give it the execution:list and execution:read scopes",
        ),
        (
            {"stop_status": 403},
            "Stopped; the `n8n_api_key` may not do this (HTTP 403): give it the execution:stop scopes",
        ),
        ({"stop_status": 409}, "Stopped; n8n execution 1234 had already finished"),
        (  # n8n before 2.10: no such route, its request validator answers
            {"stop_status": 404, "error_body": {"message": "not found"}},
            "Stopped; this n8n cannot stop executions through its API (that needs n8n 2.10 or later)",
        ),
        (  # n8n 1.104.2 lists no running executions
            {
                "list_status": 400,
                "error_body": {
                    "message": "request/query/status must be equal to one of the allowed values: "
                    "error, success, waiting"
                },
            },
            "Stopped; this n8n cannot stop executions through its API (that needs n8n 2.10 or later)",
        ),
        (  # n8n 2.11.2: the run ended between the lookup and the stop
            {"stop_status": 404, "error_body": {"message": "Not Found"}},
            "Stopped; n8n execution 1234 had already finished",
        ),
    ],
)
def test_why_the_execution_could_not_be_stopped(chat, api_says, final):
    with LoopbackServer([stalled_after_hello()]) as webhook:
        api = FakeN8nApi(running=lists_this_turn_as_1234(webhook), **api_says)
        turn = chat(n8n_url=webhook.url, n8n_api_key=API_KEY, n8n_api_url=api.url)

        async def scenario() -> str:
            await stop_mid_reply(turn)
            return await final_status(turn, STOPPING)

        try:
            assert asyncio.run(scenario()) == final
        finally:
            api.close()


def test_an_execution_that_already_finished_is_not_found(chat):
    with LoopbackServer([stalled_after_hello()]) as webhook:
        api = FakeN8nApi(running=lambda: [execution("1233", "0" * 32)])  # only another chat's run
        turn = chat(n8n_url=webhook.url, n8n_api_key=API_KEY, n8n_api_url=api.url)

        async def scenario() -> str:
            await stop_mid_reply(turn)
            return await final_status(turn, STOPPING)

        try:
            final = asyncio.run(scenario())
        finally:
            api.close()

    assert final == "Stopped; no running n8n execution of this message was found (it had already finished)"
    assert {c.method for c in api.calls} == {"GET"}  # never another chat's run


def test_an_unreachable_api_is_named_by_host_and_port(chat):
    with LoopbackServer([stalled_after_hello()]) as webhook:
        api = FakeN8nApi()
        api.close()  # nothing listens there any more
        turn = chat(n8n_url=webhook.url, n8n_api_key=API_KEY, n8n_api_url=api.url)

        async def scenario() -> str:
            await stop_mid_reply(turn)
            return await final_status(turn, STOPPING)

        final = asyncio.run(scenario())

    where = api.url.removeprefix("http://").removesuffix("/api/v1")
    assert final == (
        f"Stopped; n8n's API at {where} could not be reached (connection refused): the workflow may still be running"
    )


def test_a_reply_the_pipe_gives_up_on_is_stopped_in_n8n_too(chat):
    """With `recover_answers` off, silence past read_timeout lets the reply go: its execution is stopped."""
    with LoopbackServer([stalled_after_hello()]) as webhook:
        api = FakeN8nApi(running=lists_this_turn_as_1234(webhook))
        turn = chat(
            n8n_url=webhook.url, n8n_api_key=API_KEY, n8n_api_url=api.url, read_timeout=0.5, recover_answers=False
        )

        async def scenario() -> tuple[list[str], str]:
            shown = await turn.reply()
            timed_out = "n8n sent nothing for 0.5 s (read_timeout)"
            return shown, await final_status(turn, f"{timed_out}; stopping the n8n execution…")

        try:
            shown, final = asyncio.run(scenario())
        finally:
            api.close()

    assert shown == ["Hello", "\n\n[stream interrupted after 1 chunk: n8n sent nothing for 0.5 s (read_timeout)]"]
    assert final == "n8n sent nothing for 0.5 s (read_timeout); n8n execution 1234 cancelled"


@pytest.mark.parametrize(
    ("webhook", "api_url"),
    [
        ("https://n8n.example.com:8443/webhook/agent", "https://n8n.example.com:8443/api/v1"),
        ("https://user:pw@n8n.example.com/webhook/agent", "https://n8n.example.com/api/v1"),
    ],
)
def test_the_api_url_defaults_to_the_webhooks_origin(webhook, api_url):
    pipe = Pipe()
    pipe.valves.n8n_api_key = API_KEY
    turn = Turn([{"role": "user", "content": "hi"}], wants_stream=True, chat_id="c")

    api = webhook_request(Settings.of(pipe.valves), webhook, turn).execution_api

    assert api is not None
    assert (api.url, api.key, api.turn_id) == (api_url, API_KEY, turn.turn_id)


# ---------------------------------------------------------------------------
# After an n8n error item n8n may send nothing at all, not even the body's end (a stopped run does that).


def test_silence_after_an_error_item_ends_the_reply_within_seconds(chat):
    error = b'{"type":"error","content":"Original error: AbortError","metadata":{"nodeName":"AI Agent"}}\n'
    reply = Reply(headers=N8N_STREAM, steps=[*n8n_reply(["Hello"])[:2], error, "hang"])

    with LoopbackServer([reply]) as webhook:
        turn = chat(n8n_url=webhook.url)
        started = time.monotonic()
        shown, final = turn.run()
        took = time.monotonic() - started
        assert len(webhook.requests) == 1

    stopped = (
        "n8n error in AI Agent: Original error: AbortError. "
        "The workflow's execution was stopped in n8n (from its editor, its API or the pipe's Stop)."
    )
    assert "".join(shown) == f"Hello\n\n⚠️ {stopped}"
    assert final == {
        "description": stopped,
        "done": True,
    }
    assert 2.5 < took < 10  # ERROR_GRACE_SECONDS (3 s), not read_timeout's 300 s


def test_text_after_an_error_item_is_still_shown(chat):
    error = n8n_line("error", "tool failed")
    more = Gate()
    reply = Reply(headers=N8N_STREAM, steps=[*n8n_reply(["Hello"])[:2], error, more, *n8n_reply([" again"])])

    async def scenario(turn: Any) -> list[str]:
        chunks = await turn.start()
        shown = [await chunks.__anext__()]
        while "tool failed" not in "".join(shown):
            shown.append(await chunks.__anext__())
        more.open()
        return shown + [chunk async for chunk in chunks]

    with LoopbackServer([reply]) as webhook:
        shown = asyncio.run(scenario(chat(n8n_url=webhook.url)))

    assert "".join(shown) == "Hello\n\n⚠️ n8n error in AI Agent: tool failed\n\n again"


@pytest.mark.parametrize(
    ("stop_answer", "said"),
    [
        ({"message": "Failed to find execution to stop"}, API_KEY_WORKS),  # n8n 2.41.1
        ({"message": "Not Found"}, API_KEY_WORKS),  # n8n 2.11.2
        ({"message": "not found"}, STOP_UNSUPPORTED),  # n8n 1.104.2: no stop route
    ],
)
def test_the_doctor_tells_an_unknown_execution_from_a_missing_stop_route(stop_answer, said):
    """The doctor stops an id no execution has: each n8n's 404 for it says whether the route exists."""
    api = FakeN8nApi(stop_status=404, error_body=stop_answer)
    try:
        assert api_words(api_check("http://127.0.0.1:1/webhook/x", api.url, API_KEY)) == said
    finally:
        api.close()


@pytest.mark.parametrize(
    ("list_status", "said"),
    [
        (200, RECOVERY_WORKS),
        (403, "the `n8n_api_key` may not do this (HTTP 403): give it the execution:list and execution:read scopes"),
        (401, "n8n rejected the `n8n_api_key` (HTTP 401): create a new API key in n8n (Settings > n8n API)"),
    ],
)
def test_the_doctor_says_whether_a_broken_reply_would_be_recovered(list_status, said):
    """Recovery reads executions with their data: the doctor reads the newest one so."""
    api = FakeN8nApi(list_status=list_status)
    try:
        assert api_words(recovery_check("http://127.0.0.1:1/webhook/x", api.url, API_KEY)) == said
        assert [(c.method, c.path, c.query) for c in api.calls] == [
            ("GET", "/api/v1/executions", {"limit": ["1"], "includeData": ["true"]})
        ]
    finally:
        api.close()
