"""A person's chat in a real browser: Chromium on Open WebUI 0.12.4's page, the pipe calling a real n8n 2.41.3
running the shipped Ollama workflow, a fake model behind it answering the prompts of chat_scripts.py. Every
assertion is read off the page; each test is one of the README's pictures.

Run with scripts/e2e-browser.sh (--screenshots also writes the README's pictures to docs/).
"""

from __future__ import annotations

import re
import time
from itertools import pairwise
from pathlib import Path
from typing import Any

from chat_page import DONE, ChatPage, shown
from chat_scripts import (
    LEAP_YEAR,
    LEAP_YEAR_ANSWER,
    LEAP_YEAR_THINKING,
    ONBOARDING,
    ONBOARDING_ANSWER,
    ONBOARDING_DELAY,
    REFUND,
    REFUND_ANSWER,
    SCRIPTS,
    STREAMING_GATE,
    TICKETS,
    WELCOME,
    WELCOME_ANSWER,
    WELCOME_DELAY,
)
from stack import OLLAMA_AGENT, SUPPORT_AGENT

STOPPED = re.compile(r"Stopped; n8n execution (\d+) cancelled")


def growing(observations: list[str]) -> bool:
    return all(later.startswith(earlier) for earlier, later in pairwise(observations))


def test_the_answer_streams_in_with_the_node_in_the_status_line(chat: ChatPage, stack: Any, screenshots: Path | None):
    """chat-streaming.png: the model pauses in the middle of its second paragraph (its gate); the page shows the
    words so far and the node at work. Then the rest streams in."""
    chat.pick_model(OLLAMA_AGENT)
    chat.send(WELCOME)
    tokens = SCRIPTS[WELCOME].tokens
    so_far = shown("".join(tokens[: SCRIPTS[WELCOME].held_at]))
    chat.wait(lambda: shown(chat.reply_text()) == so_far, 30, "the words before the model's pause")
    assert so_far.endswith("meet the people you will work with most, and get your accounts and"), so_far
    assert chat.status() == "AI Agent is answering"
    assert chat.generating()
    chat.screenshot(screenshots, "chat-streaming.png")
    stack.n8n.models.gate(STREAMING_GATE).set()
    chat.wait_done()

    assert shown(chat.reply_text()) == shown(WELCOME_ANSWER)
    texts = [shown(o.text) for o in chat.observations if o.text.strip()]
    assert len(texts) >= 3, f"the answer appeared in {len(texts)} step(s), not as a stream: {texts}"
    assert growing(texts), texts
    after_pause = [o.at for o in chat.observations if len(shown(o.text)) > len(so_far)]
    assert after_pause[-1] - after_pause[0] >= WELCOME_DELAY * 3, "the rest came at once, not word by word"
    assert DONE.fullmatch(chat.status()), chat.status()


def test_a_finished_answer_says_done_and_how_long_it_took(chat: ChatPage, screenshots: Path | None):
    """chat-done.png: the whole answer, its paragraphs as the model wrote them, and the timing in the status."""
    chat.pick_model(OLLAMA_AGENT)
    chat.send(REFUND)
    chat.wait_done()

    assert shown(chat.reply_text()) == shown(REFUND_ANSWER)
    paragraphs = chat.reply().locator("#response-content-container p")
    assert paragraphs.count() == 4, paragraphs.all_inner_texts()
    assert DONE.fullmatch(chat.status()), chat.status()
    chat.screenshot(screenshots, "chat-done.png")


def test_reasoning_is_a_collapsed_thinking_block(chat: ChatPage, screenshots: Path | None):
    """chat-thinking.png: the model's <think> text as Open WebUI's thinking block, unfolded by a click."""
    chat.pick_model(OLLAMA_AGENT)
    chat.send(LEAP_YEAR)
    chat.wait_done()

    thought = chat.reply().get_by_role("button", name=re.compile(r"^Thought for"))
    assert thought.count() == 1, chat.reply().inner_html()[:3000]
    assert shown(chat.reply_text()) == shown(f"{thought.inner_text()} {LEAP_YEAR_ANSWER}")
    reasoning = chat.reply().get_by_text(LEAP_YEAR_THINKING)
    assert not reasoning.is_visible(), "the thinking should start collapsed"
    thought.click()
    reasoning.wait_for(state="visible")
    assert shown(chat.reply_text()) == shown(f"{thought.inner_text()} {LEAP_YEAR_THINKING} {LEAP_YEAR_ANSWER}")
    chat.screenshot(screenshots, "chat-thinking.png")


def test_stop_mid_stream_stops_the_text_and_cancels_the_n8n_execution(
    chat: ChatPage, stack: Any, screenshots: Path | None
):
    """chat-stopped.png: Stop pressed in the first week of a long plan; with the n8n_api_key valve the
    pipe stops the execution, and n8n hangs up on the model."""
    chat.pick_model(OLLAMA_AGENT)
    chat.send(ONBOARDING)
    chat.wait(lambda: "Meet the team and the people in" in chat.reply_text(), 30, "the first lines of the plan")
    chat.stop()
    stopped = time.monotonic()

    [call] = stack.n8n.models.calls_for(ONBOARDING)
    chat.wait(lambda: call.closed_at is not None, 10, "n8n to close the fake model's connection")
    final = chat.wait(lambda: STOPPED.fullmatch(chat.status()), 10, "the status to say the execution was stopped")
    assert stack.n8n.execution(stack.api_key, final.group(1))["status"] == "canceled"
    text = shown(chat.reply_text())
    assert text.startswith("Here is a four-week plan you can adapt. Week 1: settle in."), text
    assert shown(ONBOARDING_ANSWER).startswith(text), text
    assert len(text.split()) < len(ONBOARDING_ANSWER.split()), "the whole answer arrived: Stop did not stop it"
    assert call.closed_at is not None and call.closed_at - stopped < 5
    assert len(call.token_times) < len(SCRIPTS[ONBOARDING].tokens)
    chat.wait(lambda: not chat.generating(), 10, "the Stop button to go")
    time.sleep(ONBOARDING_DELAY * 3)  # a word the model had sent would have shown by now
    grew_later = [o.text for o in chat.observations if o.at > call.closed_at + 0.5]
    assert shown(chat.reply_text()) == text and grew_later == [], f"the text still grew after Stop: {grew_later}"
    chat.screenshot(screenshots, "chat-stopped.png")


def test_a_wrong_webhook_url_shows_advice_in_the_message(chat: ChatPage, stack: Any, screenshots: Path | None):
    """chat-error.png: the Support Agent's URL is the Ollama workflow's misspelt: n8n's 404, and what to check."""
    chat.pick_model(SUPPORT_AGENT)
    chat.send(TICKETS)
    advice = chat.wait(lambda: "⚠️" in chat.reply_text() and chat.reply_text(), 30, "the ⚠️ notice")
    chat.wait(lambda: not chat.generating(), 10, "the Stop button to go")

    assert shown(advice).startswith(
        '⚠️ n8n: webhook not found (HTTP 404). The requested webhook "POST openwebui-olama" is not registered.'
    ), advice
    assert "Check the n8n_url valve." in advice, advice
    assert chat.status() == shown(advice).removeprefix("⚠️ ").replace("n8n_url", "`n8n_url`")
    assert stack.n8n.models.calls_for(TICKETS) == [], "no workflow ran"
    chat.screenshot(screenshots, "chat-error.png")
