"""The agent's work in a real browser: the shipped n8n/agent-tools-sources.json on a real n8n 2.41.3 (an AI Agent
with n8n's real Calculator tool, Return Intermediate Steps on, and an *Add sources* node), the fake model calling
the tool; Open WebUI 0.12.4 shows the pipe's tool-step block and the sources as citations. A streaming agent with
the Calculator: its step and the turn's token usage, read from n8n's execution with the pipe's n8n_api_key.

Run with scripts/e2e-browser.sh (--screenshots also writes chat-tools.png, chat-sources.png and chat-usage.png to
docs/).
"""

from __future__ import annotations

import re
from itertools import pairwise
from pathlib import Path
from typing import Any

from chat_page import DONE, ChatPage, shown
from chat_scripts import (
    AGENT_MATHS,
    AGENT_MATHS_ANSWER,
    PRICING,
    PRICING_ANSWER,
    PRICING_RESULT,
    PRICING_TOOL_INPUT,
    REVENUE,
    REVENUE_ANSWER,
    REVENUE_RESULT,
    REVENUE_TOOL_INPUT,
)
from n8n_harness import usage_recorded
from stack import AGENT_WITH_TOOLS, PRICING_AGENT

# The sources the workflow's *Add sources* node lists, in its order: [1] and [2] in the answer.
SOURCES = [
    (
        "n8n docs: AI Agent node",
        "https://docs.n8n.io/integrations/builtin/cluster-nodes/root-nodes/n8n-nodes-langchain.agent/",
    ),
    (
        "n8n docs: Calculator tool",
        "https://docs.n8n.io/integrations/builtin/cluster-nodes/sub-nodes/n8n-nodes-langchain.toolcalculator/",
    ),
]
TOOL_STEP = "View Result from Calculator"  # Open WebUI's words for a tool call block named after the tool node


def cited(answer: str) -> str:
    """The answer as the page shows it: each [n] becomes a chip with the nth source's title."""
    return re.sub(r"\[(\d)\]", lambda n: f" {SOURCES[int(n[1]) - 1][0]} ", answer)


def sources_button(chat: ChatPage) -> Any:
    return chat.reply().get_by_role("button", name=f"Toggle {len(SOURCES)} sources")


def test_the_agents_tool_step_shows_what_it_asked_and_got(chat: ChatPage, stack: Any, screenshots: Path | None):
    """chat-tools.png: the model asked for the Calculator; the tool-step block above the answer, unfolded, shows
    the expression n8n's Calculator node got and what it returned."""
    chat.pick_model(AGENT_WITH_TOOLS)
    chat.send(REVENUE)
    chat.wait_done()

    assert re.fullmatch(DONE.pattern + ", 1 tool step", chat.status()), chat.status()
    step = chat.reply().get_by_role("button", name=TOOL_STEP)
    assert step.count() == 1, chat.reply().inner_html()[:3000]
    assert shown(chat.reply_text()) == shown(f"{TOOL_STEP} {REVENUE_ANSWER} 2 Sources")
    step.click()
    chat.wait(lambda: "OUTPUT" in chat.reply_text(), 5, "the tool step to unfold")
    output = f'[ {{ "response": "{REVENUE_RESULT}" }} ]'  # the Calculator node's output items, as JSON
    unfolded = f"{TOOL_STEP} INPUT input {REVENUE_TOOL_INPUT} OUTPUT {output} {REVENUE_ANSWER} 2 Sources"
    assert shown(chat.reply_text()) == unfolded
    [asked, answered] = stack.n8n.models.calls_for(REVENUE)  # asked for the tool, then answered with its result
    assert not [m for m in asked.body["messages"] if m.get("role") == "tool"]
    tool_messages = [m for m in answered.body["messages"] if m.get("role") == "tool"]
    assert [REVENUE_RESULT in str(m.get("content")) for m in tool_messages] == [True], answered.body["messages"]
    chat.screenshot(screenshots, "chat-tools.png")


def test_the_workflows_sources_are_citations_under_the_answer(chat: ChatPage, screenshots: Path | None):
    """chat-sources.png: the workflow's `sources` as Open WebUI's citations: chips where the answer cites them,
    and the list under the answer, unfolded."""
    chat.pick_model(AGENT_WITH_TOOLS)
    chat.send(AGENT_MATHS)
    chat.wait_done()

    assert DONE.fullmatch(chat.status()), chat.status()
    assert shown(chat.reply_text()) == shown(f"{cited(AGENT_MATHS_ANSWER)} 2 Sources")
    for title, _ in SOURCES:
        assert chat.reply().get_by_role("button", name=f"View source: {title}").count() == 1, title
    sources_button(chat).click()
    listed = chat.reply().get_by_role("button", name=re.compile(r"^View source: \d "))
    chat.wait(lambda: listed.count() == len(SOURCES), 5, "the sources to unfold")
    assert [shown(text) for text in listed.all_inner_texts()] == [f"{n} {url}" for n, (_, url) in enumerate(SOURCES, 1)]
    chat.screenshot(screenshots, "chat-sources.png")


def test_a_streamed_agents_tool_step_and_token_usage_come_from_its_execution(
    chat: ChatPage, stack: Any, screenshots: Path | None
):
    """chat-usage.png: a streaming agent (n8n's default settings: the execution is saved at its end) and the
    pipe's n8n_api_key: the answer streams in, the Calculator's step read from the turn's execution follows it as
    Open WebUI's tool-call block (on a line of its own: a block, not text), and the (i) info under the answer shows
    the turn's token usage, the sum of n8n's counts for its two model calls."""
    chat.pick_model(PRICING_AGENT)
    chat.send(PRICING)
    chat.wait_done(timeout=120)

    assert re.fullmatch(DONE.pattern + ", 1 tool step", chat.status()), chat.status()
    texts = [shown(o.text) for o in chat.observations if o.text.strip()]
    assert len(texts) >= 3, f"the answer appeared in {len(texts)} step(s), not as a stream: {texts}"
    assert all(later.startswith(earlier) for earlier, later in pairwise(texts)), texts
    step = chat.reply().get_by_role("button", name=TOOL_STEP)
    assert step.count() == 1, chat.reply().inner_html()[:3000]
    assert shown(chat.reply_text()) == shown(f"{PRICING_ANSWER} {TOOL_STEP}")

    [execution] = stack.n8n.executions_holding(stack.api_key, "ollama-calculator", PRICING)
    usage = usage_recorded(execution)
    # Open WebUI keeps the counts the pipe sent and adds its own names for two of them
    counts = {**usage, "input_tokens": usage["prompt_tokens"], "output_tokens": usage["completion_tokens"]}
    info = chat.message().get_by_role("button", name="Info", exact=True)
    chat.wait(lambda: info.count() == 1, 30, "the (i) info under the answer")
    assert chat.tooltip_of(info).splitlines() == [f"{name}: {count}" for name, count in counts.items()]

    step.click()
    chat.wait(lambda: "OUTPUT" in chat.reply_text(), 15, "the tool step to unfold")
    output = f'{{ "response": "{PRICING_RESULT}" }}'  # the Calculator's output as n8n's execution keeps it
    unfolded = f"{PRICING_ANSWER} {TOOL_STEP} INPUT input {PRICING_TOOL_INPUT} OUTPUT {output}"
    assert shown(chat.reply_text()) == shown(unfolded)
    chat.screenshot(screenshots, "chat-usage.png", pointer_on=info)
