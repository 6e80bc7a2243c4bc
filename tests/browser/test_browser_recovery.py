"""Nothing lost, in a real browser: the Remote Agent is the shipped Ollama workflow behind a proxy that cuts the
connection in the middle of the answer (tests/e2e's CuttingProxy); with the `n8n_api_key` valve and
`recover_answers` on, the pipe follows the execution through n8n's API and the chat gets the rest of the answer.

Run with scripts/e2e-browser.sh (--screenshots also writes chat-recovered.png to docs/).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from chat_page import DONE, ChatPage, shown
from chat_scripts import BUG_REPORT, BUG_REPORT_ANSWER, CUT_AFTER, RECOVERY_GATE, SCRIPTS
from stack import REMOTE_AGENT

LOST = re.compile(r"Connection to n8n lost after \d+\.\d s; n8n is still running the workflow…")
RECOVERED = re.compile(DONE.pattern + r"; the answer came from n8n execution (\d+)")


def test_an_answer_cut_off_on_the_way_comes_from_the_n8n_execution(
    chat: ChatPage, stack: Any, screenshots: Path | None
):
    """chat-recovered.png: the words that passed before the cut, the status history unfolded (the connection
    lost, then the answer read from the execution), and the whole answer, its words once each."""
    cuts = stack.cutting_proxy.cuts
    chat.pick_model(REMOTE_AGENT)
    chat.send(BUG_REPORT)
    chat.wait(lambda: LOST.fullmatch(chat.status()), 30, "the status to say the connection was lost")
    before_cut = shown("".join(SCRIPTS[BUG_REPORT].tokens[:CUT_AFTER]))
    assert shown(chat.reply_text()) == before_cut == "Here are three tips for a clear bug"
    assert stack.cutting_proxy.cuts == cuts + 1
    stack.n8n.models.gate(RECOVERY_GATE).set()  # the model, slower than the cut, finishes its answer
    chat.wait_done()

    assert shown(chat.reply_text()) == shown(BUG_REPORT_ANSWER)
    recovered = RECOVERED.fullmatch(chat.status())
    assert recovered, chat.status()
    [execution] = stack.n8n.executions_holding(stack.api_key, "ollama", BUG_REPORT)
    assert (str(execution["id"]), execution["status"]) == (recovered[1], "success")
    assert len(stack.n8n.models.calls_for(BUG_REPORT)) == 1, "the message was sent to n8n once"
    history = chat.status_history()
    assert history[0] == "Waiting for n8n…" and history[-1] == chat.status(), history
    assert [line for line in history if LOST.fullmatch(line)] == [history[-2]], history
    chat.screenshot(screenshots, "chat-recovered.png")
