"""Nothing lost: when the reply breaks after n8n got the message, the answer still comes, from n8n's
API (the turn's execution), exactly once; the webhook is never asked twice."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import Any

import pytest
from chat_helpers import WITH_API_KEY
from fake_n8n import API_KEY, FakeN8n, ended, record, success
from loopback import CAPTURE_HEADERS, Reply, n8n_reply

N8N_STREAM = CAPTURE_HEADERS["n8n-stream"]
NGINX_504 = Reply(
    status=504,
    headers=[("Server", "nginx"), ("Content-Type", "text/html")],
    steps=[b"<html><head><title>504 Gateway Time-out</title></head></html>"],
    body_mode="length",
)
ANSWER = "n8n is a workflow automation tool."
LOST = re.compile(r"Connection to n8n lost after \d+\.\d s; n8n is still running the workflow…")


def streamed_then(tokens: list[str], end: str) -> Reply:
    """n8n's stream of the agent's first tokens, then `end`: "drop" (a reset) or "hang" (silence)."""
    return Reply(headers=N8N_STREAM, steps=[*n8n_reply(tokens)[:-1], end])


def recovered(fake: FakeN8n, chat: Any, **valves: Any) -> tuple[str, Any, list[str]]:
    """(the text the chat shows, the final status, every status) of one turn against `fake`."""
    valves = {"n8n_url": fake.url, "n8n_api_key": API_KEY, **valves}
    turn = chat(**valves)
    shown, final = turn.run()
    assert len(fake.webhook_requests) == 1  # the message is never sent again
    return "".join(shown), final, turn.descriptions


def test_a_proxys_504_is_followed_to_the_whole_answer(chat):
    with FakeN8n(NGINX_504, finished=success({"output": ANSWER})) as fake:
        text, final, statuses = recovered(fake, chat)
    assert text == ANSWER
    assert re.fullmatch(
        r"Done: first text after \d+\.\d s, \d+\.\d s in all; the answer came from n8n execution 41",
        final["description"],
    )
    assert re.fullmatch(
        r"The proxy in front of n8n answered 504 after \d+\.\d s; n8n is still running the workflow…", statuses[1]
    )
    assert fake.execution_reads == 2  # running, then ended: one call at a time


def test_a_reset_mid_stream_adds_only_the_rest_of_the_answer(chat):
    streamed = ["Hello", " world"]
    answer = "Hello world, streamed by the agent."
    agent = record("execution-success-streamed-agent")
    agent["data"]["resultData"]["runData"]["AI Agent"][0]["data"]["main"][0][0]["json"] = {"output": answer}
    with FakeN8n(streamed_then(streamed, "drop"), finished=agent) as fake:
        text, final, statuses = recovered(fake, chat)
    assert text == answer  # no text twice
    assert any(LOST.fullmatch(s) for s in statuses)
    assert final["description"].endswith("the answer came from n8n execution 41")


def test_an_answer_that_differs_from_what_was_shown_follows_it_and_both_stay(chat):
    with FakeN8n(streamed_then(["Hi there"], "drop"), finished=success({"output": "Hello world"})) as fake:
        text, _, _ = recovered(fake, chat)
    assert text == "Hi there\n\nHello world"


def test_a_reset_before_the_headers_is_followed(chat):
    with FakeN8n(Reply(reset_before_headers=True), finished=success({"output": ANSWER})) as fake:
        text, final, statuses = recovered(fake, chat)
    assert text == ANSWER
    assert any(LOST.fullmatch(s) for s in statuses)
    assert final["description"].endswith("the answer came from n8n execution 41")


def test_silence_past_read_timeout_is_followed_not_given_up(chat):
    with FakeN8n(streamed_then(["The"], "hang"), finished=success({"output": "The answer, in full."})) as fake:
        text, final, statuses = recovered(fake, chat, read_timeout=0.5)
        assert not fake.stopped.is_set()  # a run that answered is not stopped
    assert text == "The answer, in full."
    assert final["description"].endswith("the answer came from n8n execution 41")
    assert "n8n sent nothing for 0.5 s (read_timeout); n8n is still running the workflow…" in statuses


def test_a_webhook_that_responds_immediately_is_followed_to_its_answer(chat):
    started = Reply(
        headers=[("Content-Type", "application/json")],
        steps=[b'{"message":"Workflow was started"}'],
        body_mode="length",
    )
    with FakeN8n(started, finished=success({"output": ANSWER}), running_looks=2) as fake:
        text, final, statuses = recovered(fake, chat)
    assert text == ANSWER
    assert final["done"] is True and final["description"].endswith("the answer came from n8n execution 41")
    assert "n8n started the workflow (its Webhook responds immediately); n8n is still running the workflow…" in statuses


def test_tool_steps_and_sources_of_the_recovered_answer_are_shown_as_for_a_whole_reply(chat):
    steps = [{"action": {"tool": "calculator", "toolInput": {"input": "2+2"}, "log": ""}, "observation": "4"}]
    answer = {
        "output": "It is 4.",
        "intermediateSteps": steps,
        "sources": [{"title": "Docs", "url": "https://docs.n8n.io/"}],
    }
    with FakeN8n(NGINX_504, finished=success(answer)) as fake:
        turn = chat(n8n_url=fake.url, n8n_api_key=API_KEY)
        shown, final = turn.run()
    text = "".join(shown)
    assert text.startswith('<details type="tool_calls" done="true" name="calculator"') and text.endswith("It is 4.")
    assert [e["data"]["source"] for e in turn.statuses if e["type"] == "source"] == [
        {"name": "Docs", "url": "https://docs.n8n.io/"}
    ]
    assert final["description"].endswith(", 1 tool step; the answer came from n8n execution 41")


def test_a_failed_execution_shows_n8ns_error_with_the_advice(chat):
    with FakeN8n(streamed_then(["Hel"], "drop"), finished=record("execution-error-model")) as fake:
        text, final, _ = recovered(fake, chat)
    said = (
        "n8n error in AI Agent: Original error: ResponseError. The model behind the workflow failed (its credential, "
        "URL or model name, or the model server): open the workflow's Executions list in n8n to see which node "
        "failed and why."
    )
    assert text == f"Hel\n\n⚠️ {said}"
    assert final == {"description": said, "done": True}


@pytest.mark.parametrize(
    ("status", "said"),
    [
        ("canceled", "n8n execution 41 was cancelled before it finished, so it has no answer."),
        (
            "crashed",
            "n8n execution 41 crashed (n8n stopped or ran out of memory while running it): open it in the "
            "workflow's Executions list in n8n.",
        ),
    ],
)
def test_a_cancelled_or_crashed_execution_says_so(chat, status, said):
    with FakeN8n(NGINX_504, finished=ended(status)) as fake:
        text, final, _ = recovered(fake, chat)
    assert text == f"⚠️ {said}"
    assert final == {"description": said, "done": True}


def test_an_execution_whose_data_n8n_did_not_keep_names_the_setting(chat):
    with FakeN8n(NGINX_504, finished=None) as fake:
        text, _, _ = recovered(fake, chat)
    assert text == (
        "⚠️ n8n execution 41 ended, but n8n kept none of its data, so its answer cannot be shown: in the "
        "workflow's Settings set 'Save successful production executions' (and failed ones) to Save, or set "
        "EXECUTIONS_DATA_SAVE_ON_SUCCESS=all and EXECUTIONS_DATA_SAVE_ON_ERROR=all in n8n's environment "
        "(and check EXECUTIONS_DATA_MAX_AGE if n8n prunes executions)."
    )


def test_without_an_api_key_the_notice_says_the_answer_could_have_been_fetched(chat):
    with FakeN8n(streamed_then(["Hello"], "drop")) as fake:
        text, _, _ = recovered(fake, chat, n8n_api_key="")
        assert fake.api_calls == []
    assert text == f"Hello\n\n[stream interrupted after 1 chunk: connection reset; {WITH_API_KEY}]"


def test_with_recovery_off_the_reply_ends_as_before_and_nothing_is_fetched(chat):
    with FakeN8n(streamed_then(["Hello"], "drop")) as fake:
        text, _, _ = recovered(fake, chat, recover_answers=False)
        assert fake.execution_reads == 0
    assert text == "Hello\n\n[stream interrupted after 1 chunk: connection reset]"


def test_a_reply_that_did_not_fail_makes_no_api_call_with_tool_steps_and_usage_off(chat):
    with FakeN8n(Reply(headers=N8N_STREAM, steps=n8n_reply(["All", " good"]))) as fake:
        text, final, _ = recovered(fake, chat, show_tool_steps=False, show_usage=False)
        assert fake.api_calls == []
    assert text == "All good"
    assert not final["description"].endswith("execution 41")


def test_stop_while_following_ends_at_once_and_stops_the_execution(chat):
    with FakeN8n(NGINX_504, running_looks=10_000) as fake:
        turn = chat(n8n_url=fake.url, n8n_api_key=API_KEY)

        async def scenario() -> float:
            chunks = await turn.start()
            task = asyncio.ensure_future(anext(chunks))
            deadline = time.monotonic() + 10
            while fake.execution_reads < 2 and time.monotonic() < deadline:  # it follows: running, running
                await asyncio.sleep(0.02)
            stopped_at = time.monotonic()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await chunks.aclose()
            return time.monotonic() - stopped_at

        took = asyncio.run(scenario())
        assert fake.stopped.wait(5)  # n8n's execution is stopped too: the one being followed
        stops = [call.path for call in fake.api_calls if call.method == "POST"]
        assert stops == ["/api/v1/executions/41/stop"]
        reads = fake.execution_reads
        time.sleep(1.2)
        assert fake.execution_reads == reads  # and no more following
    assert took < 1
    assert len(fake.webhook_requests) == 1


def test_following_ends_at_max_reply_minutes_and_stops_the_run(chat):
    with FakeN8n(NGINX_504, running_looks=10_000) as fake:
        started = time.monotonic()
        text, _, _ = recovered(fake, chat, max_reply_minutes=0.1)
        took = time.monotonic() - started
        assert fake.stopped.wait(5)
    # 6 s from the turn's start: the last look is at the deadline, not one back-off step (4 s) before it
    assert 6 <= took < 7
    assert text == "⚠️ the reply went on for over 0.1 min, the limit set by the `max_reply_minutes` valve"


def test_a_slow_api_never_lags_open_webuis_loop(chat):
    with FakeN8n(NGINX_504, api_delay=0.4, running_looks=2) as fake:
        turn = chat(n8n_url=fake.url, n8n_api_key=API_KEY)

        async def scenario() -> tuple[str, float]:
            lag, done = 0.0, asyncio.Event()

            async def ticker() -> None:
                nonlocal lag
                while not done.is_set():
                    before = time.monotonic()
                    await asyncio.sleep(0.01)
                    lag = max(lag, time.monotonic() - before - 0.01)

            ticking = asyncio.ensure_future(ticker())
            chunks = await turn.start()
            text = "".join([chunk async for chunk in chunks])
            done.set()
            await ticking
            return text, lag

        text, lag = asyncio.run(scenario())
    assert text == "the answer"
    assert lag < 0.2  # each API call takes 0.4 s, in the worker thread


def test_the_api_key_is_never_in_the_chat_statuses_logs_or_webhook_request(chat, caplog):
    refusal = f'{{"message":"key {API_KEY} may not read executions"}}'.encode()
    caplog.set_level(logging.DEBUG)
    with FakeN8n(streamed_then(["Hello"], "drop"), api_status=403, api_body=refusal) as fake:
        turn = chat(n8n_url=fake.url, n8n_api_key=API_KEY)
        shown, _ = turn.run()
        webhook = fake.webhook_requests[0]
        assert all(call.key == API_KEY for call in fake.api_calls)  # the key goes to n8n's API only
    text = "".join(shown)
    assert text == (
        "Hello\n\n[stream interrupted after 1 chunk: connection reset; n8n's answer could not be fetched: the "
        "`n8n_api_key` may not do this (HTTP 403): give it the execution:list and execution:read scopes]"
    )
    everywhere = [text, *turn.descriptions, caplog.text, str(webhook.headers), webhook.body.decode()]
    assert not [place for place in everywhere if API_KEY in place]
