"""A person's chat in a real browser: Chromium on Open WebUI 0.12.4's page, the pipe calling a real n8n 2.41.3
running the shipped Ollama workflow, a fake model behind it. Every assertion is read off the page.

Run with scripts/e2e-browser.sh (--screenshots also writes the README's pictures to docs/).
"""

from __future__ import annotations

import re
import time
from itertools import pairwise
from pathlib import Path
from typing import Any

from chat_page import ChatPage
from fake_models import LONG_TOKENS, SLOW_DELAY, TOKENS
from stack import OLLAMA_AGENT, TYPO_WEBHOOK

FULL_TEXT = "".join(TOKENS)


def shown(text: str) -> str:
    """Text as the page shows it: markdown turns newlines and tabs into plain spaces."""
    return " ".join(text.split())


def screenshot(chat: ChatPage, folder: Path | None, name: str) -> None:
    """The README's pictures, taken only when asked for; the pointer is moved aside so no tooltip shows."""
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        chat.page.mouse.move(0, 0)
        chat.settle()
        chat.page.screenshot(path=str(folder / name))


def growing(observations: list[str]) -> bool:
    return all(later.startswith(earlier) for earlier, later in pairwise(observations))


def test_the_answer_streams_in_with_the_node_in_the_status_line(chat: ChatPage, stack: Any, screenshots: Path | None):
    chat.pick_model(OLLAMA_AGENT)
    chat.send("SLOW HOLD:browser Say hello")
    held_back = shown("".join(TOKENS[:-1]))
    chat.wait(lambda: shown(chat.reply_text()) == held_back, 30, "every token but the last (the model holds it)")
    assert chat.status() == "AI Agent is answering"
    screenshot(chat, screenshots, "chat-streaming.png")
    stack.n8n.models.gate("browser").set()
    chat.wait_done()

    assert shown(chat.reply_text()) == shown(FULL_TEXT)
    texts = [shown(o.text) for o in chat.observations if o.text.strip()]
    assert len(texts) >= 3, f"the answer appeared in {len(texts)} step(s), not as a stream: {texts}"
    assert growing(texts), texts
    streamed_for = chat.observations[-1].at - next(o.at for o in chat.observations if o.text.strip())
    assert streamed_for >= SLOW_DELAY * 3, f"all text arrived within {streamed_for:.2f} s"
    assert re.fullmatch(r"Done: first text after \d+\.\d s, \d+\.\d s in all", chat.status()), chat.status()
    screenshot(chat, screenshots, "chat-done.png")


def test_reasoning_is_a_collapsed_thinking_block(chat: ChatPage, screenshots: Path | None):
    chat.pick_model(OLLAMA_AGENT)
    chat.send("THINK please")
    chat.wait_done()

    assert shown(chat.reply_text()).endswith("Hello after thinking.")
    thought = chat.reply().get_by_role("button", name=re.compile(r"^Thought for"))
    assert thought.count() == 1, chat.reply().inner_html()[:3000]
    reasoning = chat.reply().get_by_text("The user wants a greeting.")
    assert not reasoning.is_visible(), "the thinking should start collapsed"
    thought.click()
    reasoning.wait_for(state="visible")
    screenshot(chat, screenshots, "chat-thinking.png")


def test_stop_mid_stream_stops_the_text_and_n8n_hangs_up_on_the_model(
    chat: ChatPage, stack: Any, screenshots: Path | None
):
    chat.pick_model(OLLAMA_AGENT)
    chat.send("LONG stop from the browser")
    chat.wait(lambda: len(chat.reply_text().split()) >= 5, 30, "a few tokens of the long answer")
    chat.stop()
    stopped = time.monotonic()

    [call] = stack.n8n.models.calls_for("LONG stop from the browser")
    chat.wait(lambda: call.closed_at is not None, 10, "n8n to close the fake model's connection")
    final = chat.wait(lambda: re.fullmatch(r"Stopped; n8n execution \d+ cancelled", chat.status()), 10, "Stopped")
    text = shown(chat.reply_text())
    assert text and shown("".join(LONG_TOKENS)).startswith(text), text
    assert len(text.split()) < len(LONG_TOKENS), "the whole answer arrived: Stop did not stop it"
    assert call.closed_at is not None and call.closed_at - stopped < 5
    chat.wait(lambda: not chat.generating(), 10, "the Stop button to go")
    grew_later = [o.text for o in chat.observations if o.at > call.closed_at + 0.5]
    assert grew_later == [], f"the text still grew after n8n hung up: {grew_later}"
    assert final
    screenshot(chat, screenshots, "chat-stopped.png")


def test_a_wrong_webhook_url_shows_advice_in_the_message(chat: ChatPage, screenshots: Path | None):
    chat.pick_model(TYPO_WEBHOOK)
    chat.send("Hello?")
    advice = chat.wait(lambda: "⚠️" in chat.reply_text() and chat.reply_text(), 30, "the ⚠️ notice")

    assert shown(advice).startswith("⚠️ n8n: webhook not found (HTTP 404)."), advice
    assert "Check the n8n_url valve." in advice, advice
    screenshot(chat, screenshots, "chat-error.png")
