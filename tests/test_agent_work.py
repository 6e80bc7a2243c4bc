"""Issue 28: the agent's work from n8n's execution, streaming too: each tool run as a tool-call block (live
when the workflow saves its progress, else right after the answer) and the turn's token usage, once, in the
keys Open WebUI reads; only this turn's execution; bounded whatever n8n's API does."""

from __future__ import annotations

import asyncio
import json
import time
from itertools import pairwise
from typing import Any

import pytest
from fake_agent_n8n import ANSWER, FIRST_BLOCK, AgentN8n
from fake_n8n import API_KEY, record
from loopback import LoopbackServer, Reply

from pipe_n8n_stream import (
    WATCH_AFTER_BODY,
    ToolStep,
    Usage,
    execution_usage,
    tool_call_block,
    tool_runs,
    usage_of,
)

STEP = tool_call_block(ToolStep("SlowCalc", {"input": "2+2"}, {"response": "hello"}))
USAGE = {"usage": {"prompt_tokens": 10, "completion_tokens": 12, "total_tokens": 22}}  # 5+5, 2+10, 7+15
LIVE_TEXT = f"{FIRST_BLOCK}\n{STEP}\n\n{ANSWER}"  # a step after text starts a line
AFTER_TEXT = f"{FIRST_BLOCK}\n\n{ANSWER}\n{STEP}"
RUNNING = 'SlowCalc is running: {"input": "2+2"}'


def text_of(shown: list[Any]) -> str:
    return "".join(chunk for chunk in shown if isinstance(chunk, str))


def usages_of(shown: list[Any]) -> list[Any]:
    return [chunk for chunk in shown if isinstance(chunk, dict)]


def turn(fake: AgentN8n, chat: Any, text: str = "hello", stream: bool = True, **valves: Any) -> tuple[Any, Any]:
    """(what the chat got, the chat) for one turn against `fake` with its API key."""
    session = chat(n8n_url=fake.url, **{"n8n_api_key": API_KEY, **valves})
    shown, _ = session.run(text, stream)
    return shown, session


# What n8n recorded, read as the pipe reads it


def test_a_tool_run_is_read_with_its_input_and_output_and_a_running_one_without():
    done = tool_runs(record("execution-slowtool-progress-3-tool-done"))
    running = tool_runs(record("execution-slowtool-progress-2-tool-running"))
    assert [(r.node, r.input, r.output, r.done) for r in done] == [
        ("SlowCalc", {"input": "2+2"}, {"response": "four"}, True)
    ]
    assert [(r.node, r.input, r.done) for r in running] == [("SlowCalc", {"input": "2+2"}, False)]
    assert tool_runs(record("execution-slowtool-default-running")) == []


def test_the_usage_is_the_sum_over_the_turns_model_calls():
    assert execution_usage(record("execution-slowtool-default-success")) == Usage(10, 12, 22)
    assert execution_usage(record("execution-slowtool-progress-2-tool-running")) == Usage(5, 2, 7)
    assert execution_usage(record("execution-slowtool-default-running")) is None


def test_anthropics_estimate_counts_as_its_usage():
    saved = record("execution-slowtool-default-success")
    for run in saved["data"]["resultData"]["runData"]["OpenAI Chat Model"]:
        output = run["data"]["ai_languageModel"][0][0]["json"]
        output["tokenUsageEstimate"] = output.pop("tokenUsage")
    assert execution_usage(saved) == Usage(10, 12, 22)


def test_usage_in_openais_and_n8ns_keys():
    assert usage_of({"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}) == Usage(3, 4, 7)
    assert usage_of({"promptTokens": 3, "completionTokens": 4}) == Usage(3, 4, 7)
    assert usage_of({"prompt_tokens": True}) is None
    assert usage_of("12") is None


# Streamed replies, n8n's API replaying the records over time


def test_progress_saved_the_step_is_shown_before_the_next_blocks_text_and_the_usage_once(chat):
    with AgentN8n(progress=True) as fake:
        shown, session = turn(fake, chat)
    assert text_of(shown) == LIVE_TEXT
    assert usages_of(shown) == [USAGE]
    assert shown[-1] == USAGE
    assert RUNNING in session.descriptions
    assert session.descriptions[-1].endswith(", 1 tool step")


def test_n8ns_default_settings_the_step_comes_right_after_the_answer(chat):
    with AgentN8n(progress=False) as fake:
        shown, session = turn(fake, chat)
        run = next(iter(fake.runs.values()))
        reads = fake.reads(run)
    assert text_of(shown) == AFTER_TEXT
    assert usages_of(shown) == [USAGE]
    assert RUNNING not in session.descriptions
    assert reads <= 6


def test_a_three_second_tool_costs_at_most_15_reads_one_at_a_time(chat):
    with AgentN8n(progress=True, tool_seconds=3.0) as fake:
        shown, _ = turn(fake, chat)
        calls = list(fake.api_calls)
    assert text_of(shown) == LIVE_TEXT
    assert len(calls) <= 15
    assert all(c.method == "GET" for c in calls)


def test_a_non_streamed_chat_gets_a_chat_completion_with_the_usage(chat):
    with AgentN8n(progress=False) as fake:
        answer, _ = turn(fake, chat, stream=False)
    assert answer["object"] == "chat.completion"
    assert answer["usage"] == USAGE["usage"]
    assert answer["choices"][0]["message"]["content"] == AFTER_TEXT


def test_without_an_api_key_nothing_is_asked_of_n8ns_api(chat):
    with AgentN8n(progress=True) as fake:
        shown, session = turn(fake, chat, n8n_api_key="")
        assert fake.api_calls == []
    assert text_of(shown) == f"{FIRST_BLOCK}\n\n{ANSWER}"
    assert usages_of(shown) == []
    assert session.descriptions[-1].endswith(", 1 tool step")


def test_with_both_valves_off_the_execution_is_never_read(chat):
    with AgentN8n(progress=True) as fake:
        shown, _ = turn(fake, chat, show_tool_steps=False, show_usage=False)
        assert fake.api_calls == []
    assert text_of(shown) == f"{FIRST_BLOCK}\n\n{ANSWER}"
    assert usages_of(shown) == []


def test_usage_alone_reads_the_execution_once_it_ended_and_shows_no_step(chat):
    with AgentN8n(progress=True) as fake:
        shown, _ = turn(fake, chat, show_tool_steps=False)
        started = next(iter(fake.runs.values())).body_end_at
        assert started is not None and all(c.at >= started for c in fake.api_calls)
    assert text_of(shown) == f"{FIRST_BLOCK}\n\n{ANSWER}"
    assert usages_of(shown) == [USAGE]


def test_two_chats_on_one_workflow_each_see_only_their_own_step(chat):
    with AgentN8n(progress=True) as fake:
        first, second = chat(n8n_url=fake.url, n8n_api_key=API_KEY), chat(n8n_url=fake.url, n8n_api_key=API_KEY)

        async def both() -> list[list[Any]]:
            async def one(session: Any, text: str) -> list[Any]:
                return [chunk async for chunk in await session.start(text)]

            return list(await asyncio.gather(one(first, "alpha"), one(second, "beta")))

        shown_first, shown_second = asyncio.run(both())
    own = [tool_call_block(ToolStep("SlowCalc", {"input": "2+2"}, {"response": q})) for q in ("alpha", "beta")]
    assert text_of(shown_first) == f"{FIRST_BLOCK}\n{own[0]}\n\n{ANSWER}"
    assert text_of(shown_second) == f"{FIRST_BLOCK}\n{own[1]}\n\n{ANSWER}"
    assert usages_of(shown_first) == usages_of(shown_second) == [USAGE]


def test_a_slow_api_never_holds_the_text_and_the_step_comes_after_the_answer(chat):
    with AgentN8n(progress=True, api_delay=0.4) as fake:
        session = chat(n8n_url=fake.url, n8n_api_key=API_KEY)
        shown, _ = session.run()
        ended = time.monotonic()
        run = next(iter(fake.runs.values()))
    assert text_of(shown) == AFTER_TEXT
    assert run.body_end_at is not None and ended - run.body_end_at <= WATCH_AFTER_BODY + 0.5


def test_a_silent_api_ends_the_reply_within_its_bound_without_step_or_usage(chat, caplog):
    with AgentN8n(progress=True, api_silent=True) as fake:
        session = chat(n8n_url=fake.url, n8n_api_key=API_KEY)
        shown, final = session.run()
        ended = time.monotonic()
        run = next(iter(fake.runs.values()))
        calls = list(fake.api_calls)
    # one call at a time: the next only once the one before gave up (API_TIMEOUT's 3 s)
    assert all(after.at - before.at >= 2.9 for before, after in pairwise(calls))
    assert text_of(shown) == f"{FIRST_BLOCK}\n\n{ANSWER}"
    assert usages_of(shown) == []
    assert run.body_end_at is not None and ended - run.body_end_at <= WATCH_AFTER_BODY + 0.5
    assert final["description"].startswith("Done")


def test_stop_during_the_tool_ends_every_read(chat):
    with AgentN8n(progress=True, tool_seconds=3.0) as fake:
        session = chat(n8n_url=fake.url, n8n_api_key=API_KEY)

        async def stopped_while_the_tool_runs() -> float:
            async def iterate() -> None:
                async for _ in await session.start():
                    pass

            task = asyncio.create_task(iterate())
            while RUNNING not in session.descriptions:  # the watch has read the running tool
                await asyncio.sleep(0.01)
            stopped_at = time.monotonic()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await asyncio.sleep(2.0)  # the reads the watch would have made while the tool runs on
            return stopped_at

        stopped_at = asyncio.run(stopped_while_the_tool_runs())
        assert fake.stopped.wait(5)
        reads = [c for c in fake.api_calls if c.method == "GET"]
    assert any(c.at < stopped_at for c in reads)
    assert [c for c in reads if c.at > stopped_at + 0.05] == []


# A complete reply's own usage, with or without a key


@pytest.mark.parametrize(
    "usage",
    [
        {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
        {"promptTokens": 3, "completionTokens": 4, "totalTokens": 7},
    ],
)
def test_a_complete_replys_own_usage_is_passed_on_in_open_webuis_keys(chat, usage):
    body = json.dumps({"output": "Hi", "tokenUsage" if "promptTokens" in usage else "usage": usage}).encode()
    reply = Reply(headers=[("Content-Type", "application/json")], steps=[body], body_mode="length")
    expected = {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
    with LoopbackServer([reply, reply]) as server:
        streamed, _ = chat(n8n_url=server.url, stream=False).run()
        answer, _ = chat(n8n_url=server.url, stream=False).run(stream=False)
    assert streamed == ["Hi", {"usage": expected}]
    assert answer["usage"] == expected and answer["choices"][0]["message"]["content"] == "Hi"


def test_show_usage_off_sends_none(chat):
    body = json.dumps({"output": "Hi", "usage": {"prompt_tokens": 3, "completion_tokens": 4}}).encode()
    reply = Reply(headers=[("Content-Type", "application/json")], steps=[body], body_mode="length")
    with LoopbackServer([reply, reply]) as server:
        streamed, _ = chat(n8n_url=server.url, show_usage=False).run()
        answer, _ = chat(n8n_url=server.url, show_usage=False).run(stream=False)
    assert streamed == ["Hi"]
    assert answer == "Hi"
