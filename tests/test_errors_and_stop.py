"""Failures and Stop over real sockets: what the chat shows, and that the pipe lets go of n8n at once."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from typing import Any

import pytest
from chat_helpers import (
    KEEPS_RUNNING,
    STOP_WITHIN,
    WITH_API_KEY,
    answered_with,
    reply_threads,
    stop_after_first_chunk,
    threads_left_after,
)
from loopback import CAPTURE_HEADERS, Gate, LoopbackServer, Reply, Seen, n8n_line, n8n_reply

N8N_STREAM = CAPTURE_HEADERS["n8n-stream"]
KEEP_ALIVE = [("Connection", "keep-alive"), ("Keep-Alive", "timeout=5")]
AUTH_CHALLENGE = [("WWW-Authenticate", 'Basic realm="Webhook"'), *KEEP_ALIVE]
N8N_JSON = [("Content-Type", "application/json; charset=utf-8"), ("Vary", "Accept-Encoding"), *KEEP_ALIVE]

NOT_REGISTERED_TEST = (
    b'{"code":404,"message":"The requested webhook \\"stream-ollama\\" is not registered.",'
    b'"hint":"Click the \'Execute workflow\' button on the canvas, then try again. '
    b'(In test mode, the webhook only works for one call after you click this button)"}'
)
NOT_REGISTERED_PRODUCTION = (
    b'{"code":404,"message":"The requested webhook \\"POST does-not-exist\\" is not registered.",'
    b'"hint":"The workflow must be active for a production URL to run successfully. You can activate the '
    b"workflow using the toggle in the top-right of the editor. Note that unlike test URL calls, production "
    b"URL calls aren't shown on the canvas (only in the executions list)\"}"
)
AUTH_ADVICE = "Check the `n8n_bearer_token` and `auth_header_name` valves against the webhook's credential."


# ---------------------------------------------------------------------------
# HTTP errors, answered byte for byte as n8n 2.41.1 answers them (tests/data/n8n-wire, file named per test).


@pytest.mark.parametrize(
    ("status", "said"),
    [
        (401, "Authorization is required!"),  # basicauth-missing.txt
        (401, "Authentication data is wrong!"),  # basicauth-wrong.txt
        (403, "Authorization data is wrong!"),  # headerauth-missing.txt, headerauth-wrong.txt
    ],
)
def test_auth_failure_names_the_auth_valves_and_quotes_n8n(chat, status, said):
    reply = Reply(status=status, headers=AUTH_CHALLENGE, steps=[said.encode()])

    shown, final = answered_with(reply, chat, n8n_bearer_token="wrong-token")

    message = f"n8n rejected the request (HTTP {status}: {said}). {AUTH_ADVICE}"
    assert shown == [f"⚠️ {message}"]
    assert final == {"description": message, "done": True}


def test_404_on_a_test_url_says_the_editor_must_be_listening(chat):
    # tests/data/n8n-wire/404-test-url.txt
    reply = Reply(status=404, headers=N8N_JSON, steps=[NOT_REGISTERED_TEST], body_mode="length")

    shown, final = answered_with(reply, chat, path="/webhook-test/stream-ollama")

    message = (
        'n8n: webhook not found (HTTP 404). The requested webhook "stream-ollama" is not registered. '
        "Click the 'Execute workflow' button on the canvas, then try again. (In test mode, the webhook only "
        "works for one call after you click this button). Check the `n8n_url` valve. "
        "Test URLs (/webhook-test/) answer only while the n8n editor is listening ('Execute workflow')."
    )
    assert shown == [f"⚠️ {message}"]
    assert final == {"description": message, "done": True}


def test_404_on_a_production_url_says_the_workflow_must_be_active(chat):
    # tests/data/n8n-wire/404-unregistered.txt
    reply = Reply(status=404, headers=N8N_JSON, steps=[NOT_REGISTERED_PRODUCTION], body_mode="length")

    shown, final = answered_with(reply, chat, path="/webhook/does-not-exist")

    message = (
        'n8n: webhook not found (HTTP 404). The requested webhook "POST does-not-exist" is not registered. '
        "The workflow must be active for a production URL to run successfully. You can activate the workflow "
        "using the toggle in the top-right of the editor. Note that unlike test URL calls, production URL calls "
        "aren't shown on the canvas (only in the executions list). Check the `n8n_url` valve. "
        "Production URLs (/webhook/) need the workflow to be active (published) in n8n."
    )
    assert shown == [f"⚠️ {message}"]
    assert final == {"description": message, "done": True}


def test_workflow_error_500_shows_the_code_and_n8n_message(chat):
    # tests/data/n8n-wire/lastnode-error-model500.txt
    reply = Reply(status=500, headers=N8N_JSON, steps=[b'{"message":"Error in workflow"}'], body_mode="length")

    shown, final = answered_with(reply, chat)

    assert shown == ["⚠️ n8n answered HTTP 500: Error in workflow"]
    assert final == {"description": "n8n answered HTTP 500: Error in workflow", "done": True}


def test_a_huge_error_body_is_cut_to_a_readable_length(chat):
    reply = Reply(status=500, headers=[("Content-Type", "text/plain")], steps=[b"E" * 4_000_000], body_mode="length")

    shown, final = answered_with(reply, chat)

    assert shown == ["⚠️ n8n answered HTTP 500: " + "E" * 300 + "…"]
    assert final["done"] is True


# ---------------------------------------------------------------------------
# n8n cannot be reached at all.


def closed_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        return sock.getsockname()[1]


def test_connection_refused_names_host_and_port(chat):
    port = closed_port()

    shown, final = chat(n8n_url=f"http://127.0.0.1:{port}/webhook/test").run()

    message = f"Cannot reach n8n at 127.0.0.1:{port}: connection refused. Is n8n running, and is `n8n_url` right?"
    assert shown == [f"⚠️ {message}"]
    assert final == {"description": message, "done": True}


def test_unknown_host_says_the_name_was_not_found(chat):
    shown, final = chat(n8n_url="http://nonexistent.invalid:5678/webhook/test").run()

    message = "Cannot reach n8n at nonexistent.invalid:5678: host name not found. Check the `n8n_url` valve."
    assert shown == [f"⚠️ {message}"]
    assert final == {"description": message, "done": True}


@pytest.mark.parametrize(
    "url",
    [
        "not a url",
        "localhost:5678/webhook/test",
        "ftp://n8n.example.com/webhook/test",
        "http://127.0.0.1:99999/webhook/test",
        "http://[::1/webhook/test",
    ],
)
def test_an_invalid_url_names_the_url_valve(chat, url):
    shown, final = chat(n8n_url=url).run()

    assert shown == ["⚠️ The `n8n_url` valve is not a valid http(s) URL."]
    assert final == {"description": "The `n8n_url` valve is not a valid http(s) URL.", "done": True}


# ---------------------------------------------------------------------------
# n8n goes silent, drops the connection, or sends a line without end.


def test_silence_mid_stream_keeps_the_text_and_says_read_timeout(chat):
    reply = Reply(headers=N8N_STREAM, steps=[*n8n_reply(["Hello"])[:2], "hang"])

    started = time.monotonic()
    shown, final = answered_with(reply, chat, read_timeout=0.5)

    timed_out = f"n8n sent nothing for 0.5 s (read_timeout); {WITH_API_KEY}"
    assert shown == ["Hello", f"\n\n[stream interrupted after 1 chunk: {timed_out}]"]
    assert final == {"description": f"{timed_out}; {KEEPS_RUNNING}", "done": True}
    assert time.monotonic() - started < 5  # the valve's 0.5 s, not the default 300 s


def test_silence_before_the_headers_says_read_timeout(chat):
    reply = Reply(headers=N8N_STREAM, steps=n8n_reply(["late"]), head_gate=Gate())

    shown, final = answered_with(reply, chat, read_timeout=0.5)

    timed_out = f"n8n sent nothing for 0.5 s (read_timeout). W{WITH_API_KEY[1:]}."
    assert shown == [f"⚠️ {timed_out}"]
    assert final == {"description": f"{timed_out.removesuffix('.')}; {KEEPS_RUNNING}", "done": True}


def test_a_dropped_connection_keeps_every_chunk_and_is_never_resent(chat):
    gate = Gate()
    lines = n8n_reply(["Hello", " world"])
    reply = Reply(headers=N8N_STREAM, steps=[*lines[:3], gate, "drop"])

    with LoopbackServer([reply]) as server:
        shown, _ = chat(n8n_url=server.url).run(gates=[gate])  # the connection drops only after text was shown
        assert len(server.requests) == 1

    assert "".join(shown) == f"Hello world\n\n[stream interrupted after 2 chunks: connection reset; {WITH_API_KEY}]"


def test_a_line_without_end_stops_the_reading_at_the_reply_limit(chat):
    endless = [b"x" * 65536] * 128  # 8 MiB without a line break
    reply = Reply(headers=N8N_STREAM, steps=[*n8n_reply(["Hi"])[:2], *endless, "hang"])

    with LoopbackServer([reply]) as server:
        shown, final = chat(n8n_url=server.url, read_timeout=10, max_reply_mb=1).run()
        assert server.client_gone.wait(5)
        assert len(server.requests) == 1

    too_long = "the reply passed 1 MB, the limit set by the `max_reply_mb` valve"
    assert "".join(shown) == f"Hi\n\n[stream interrupted after 1 chunk: {too_long}]"
    assert final == {"description": f"{too_long}; {KEEPS_RUNNING}", "done": True}


# ---------------------------------------------------------------------------
# Stop: the chat lets go, the pipe hangs up on n8n at once and leaves no thread behind.


async def hang_up_delay(server: LoopbackServer, stopped_at: float) -> float:
    assert await asyncio.to_thread(server.client_gone.wait, 5)
    disconnected_at = server.requests[0].disconnected_at
    assert disconnected_at is not None
    return disconnected_at - stopped_at


def stalled_after_hello() -> Reply:
    return Reply(headers=N8N_STREAM, steps=[*n8n_reply(["Hello"])[:2], "hang"])


def test_closing_the_stream_mid_reply_hangs_up_at_once(chat):
    before = reply_threads()

    async def scenario(server: LoopbackServer) -> float:
        chunks = await chat(n8n_url=server.url).start()
        assert await chunks.__anext__() == "Hello"
        stopped_at = time.monotonic()
        await chunks.aclose()
        return await hang_up_delay(server, stopped_at)

    with LoopbackServer([stalled_after_hello()]) as server:
        assert asyncio.run(scenario(server)) < STOP_WITHIN

    assert threads_left_after(before) == set()


def test_cancelling_the_chat_task_mid_reply_hangs_up_at_once(chat):
    before = reply_threads()

    turns = []

    async def scenario(server: LoopbackServer) -> tuple[float, list[str]]:
        turns.append(turn := chat(n8n_url=server.url))
        shown, stopped_at = await stop_after_first_chunk(turn)
        return await hang_up_delay(server, stopped_at), shown

    with LoopbackServer([stalled_after_hello()]) as server:
        delay, shown = asyncio.run(scenario(server))

    assert shown == ["Hello"]
    assert delay < STOP_WITHIN
    assert threads_left_after(before) == set()
    # The status under the message stops spinning: the last one says the reply was stopped.
    assert turns[0].statuses[-1]["data"] == {"description": f"Stopped; {KEEPS_RUNNING}", "done": True}


def test_stop_before_n8n_sent_its_headers_hangs_up_at_once(chat):
    before = reply_threads()
    reply = Reply(headers=N8N_STREAM, steps=n8n_reply(["never"]), head_gate=Gate())

    async def scenario(server: LoopbackServer) -> float:
        chunks = await chat(n8n_url=server.url).start()
        waiting = asyncio.create_task(anext(chunks))
        assert await asyncio.to_thread(server.request_seen.wait, 5)
        stopped_at = time.monotonic()
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await chunks.aclose()
        return await hang_up_delay(server, stopped_at)

    with LoopbackServer([reply]) as server:
        assert asyncio.run(scenario(server)) < STOP_WITHIN

    assert threads_left_after(before) == set()


# ---------------------------------------------------------------------------
# The token never leaves the pipe, even when n8n echoes it back.

TOKEN = "tok-9f1c7e2a-SECRET-b84d"


def headers_echo(seen: Seen) -> str:
    return "; ".join(f"{name}: {value}" for name, value in seen.headers.items())


def echo_in_401(seen: Seen) -> Reply:
    return Reply(
        status=401, headers=AUTH_CHALLENGE, steps=[f"Authorization is required! {headers_echo(seen)}".encode()]
    )


def echo_in_500(seen: Seen) -> Reply:
    body = json.dumps({"message": f"Error in workflow: {headers_echo(seen)}"}).encode()
    return Reply(status=500, headers=N8N_JSON, steps=[body], body_mode="length")


def echo_in_stream_error(seen: Seen) -> Reply:
    lines = [n8n_line("begin"), n8n_line("item", "Hi"), n8n_line("error", f"bad request: {headers_echo(seen)}")]
    return Reply(headers=N8N_STREAM, steps=lines)


@pytest.mark.parametrize("echo", [echo_in_401, echo_in_500, echo_in_stream_error])
def test_the_token_is_never_shown_or_logged(chat, caplog, echo):
    caplog.set_level(logging.DEBUG, logger="pipe_n8n_stream")
    turn = chat(n8n_bearer_token=TOKEN)

    with LoopbackServer(echo) as server:
        turn.pipe.valves.n8n_url = server.url
        shown, _ = turn.run()
        assert server.requests[0].headers["authorization"] == f"Bearer {TOKEN}"

    logged = [record.getMessage() + (record.exc_text or "") for record in caplog.records]
    assert "Bearer ***" in "".join(shown)
    assert TOKEN not in "".join(shown)
    assert TOKEN not in json.dumps(turn.statuses)
    assert logged
    assert not [line for line in logged if TOKEN in line]


def test_a_token_cut_short_in_an_error_is_hidden_too(chat):
    said = "Authorization is required! You sent: "
    padding = "x" * (300 - len(said) - len(" Bearer ") - 11)  # n8n's text is cut 11 characters into the token
    reply = Reply(status=401, headers=AUTH_CHALLENGE, steps=[f"{said}{padding} Bearer {TOKEN}".encode()])

    shown, final = answered_with(reply, chat, n8n_bearer_token=TOKEN)

    message = f"n8n rejected the request (HTTP 401: {said}{padding} Bearer ***…). {AUTH_ADVICE}"
    assert shown == [f"⚠️ {message}"]
    assert final == {"description": message, "done": True}


# ---------------------------------------------------------------------------
# Many chats at once: one event loop, twenty streams, no stall.

STREAMS = 20
TOKENS = 5
PACE = 0.15  # seconds between two tokens of one stream: longer than MAX_LAG, so a read that blocks the loop shows
MAX_LAG = 0.1


def paced_reply(seen: Seen, everyone_started: Gate) -> Reply:
    """The first token at once; after every stream has shown it, one token per PACE, the streams out of step."""
    n = int(seen.json()["chatInput"])
    lines = n8n_reply([f"s{n}.{i} " for i in range(TOKENS)])
    steps: list[Any] = [*lines[:2], everyone_started, n * PACE / STREAMS]
    for line in lines[2:]:
        steps += [line, PACE]
    return Reply(headers=N8N_STREAM, steps=steps)


def test_twenty_streams_at_once_never_stall_the_event_loop(chat):
    everyone_started = Gate()

    async def one_chat(server: LoopbackServer, n: int, started: asyncio.Queue[int]) -> str:
        chunks = await chat(n8n_url=server.url).start(str(n))
        shown = [await chunks.__anext__()]
        started.put_nowait(n)
        return "".join(shown + [chunk async for chunk in chunks])

    async def ticker(lags: list[float]) -> None:
        """Oversleep of a 5 ms sleep: how long the loop was kept from running anything else."""
        while True:
            before = time.monotonic()
            await asyncio.sleep(0.005)
            lags.append(time.monotonic() - before - 0.005)

    async def scenario(server: LoopbackServer) -> tuple[list[str], list[float]]:
        started: asyncio.Queue[int] = asyncio.Queue()
        chats = asyncio.gather(*(one_chat(server, n, started) for n in range(STREAMS)))
        for _ in range(STREAMS):  # every stream is open and showing text at the same time
            await asyncio.wait_for(started.get(), 10)
        lags: list[float] = []  # measured from here: it is the streaming that must leave the loop free
        ticking = asyncio.create_task(ticker(lags))
        everyone_started.open()
        texts = await asyncio.wait_for(chats, 20)
        ticking.cancel()
        return texts, lags

    with LoopbackServer(lambda seen: paced_reply(seen, everyone_started)) as server:
        texts, lags = asyncio.run(scenario(server))

    assert texts == ["".join(f"s{n}.{i} " for i in range(TOKENS)) for n in range(STREAMS)]
    assert len(lags) > 20  # the ticker ran all along
    assert max(lags) < MAX_LAG
