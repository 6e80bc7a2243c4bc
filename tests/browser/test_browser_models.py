"""Every workflow a model, in a real browser: shipped workflows tagged through a real n8n 2.41.3's API are in
Open WebUI 0.12.4's model picker under their n8n names, after the `models` lines; the one a `models` line already
calls is listed once; picked by its name, a tagged workflow's answer streams in. Run with scripts/e2e-browser.sh
(--screenshots also writes docs/screenshots/model-picker.png)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import requests
from chat_page import DONE, ChatPage, shown
from chat_scripts import SHIFT_HANDOVER, SHIFT_HANDOVER_ANSWER
from n8n_harness import STOP_SCOPES, shipped
from owui_host import PIPE_ID
from stack import MODELS

TAGGING_SCOPES = ("tag:create", "workflowTags:update")  # the admin's key that tags the workflows
LIST_SCOPES = (*STOP_SCOPES, "workflow:list")  # the pipe's key: Stop, recovery, and the workflows
TAGGED = {"claude": "claude-streaming", "classic": "classic-last-node", "ollama": "ollama-streaming"}
CLAUDE = shipped(TAGGED["claude"])["name"]
CLASSIC = shipped(TAGGED["classic"])["name"]
OLLAMA = shipped(TAGGED["ollama"])["name"]  # its URL is Ollama Agent's `models` line: not listed again


@pytest.fixture
def tagged(stack: Any) -> Iterator[str]:
    """TAGGED's workflows get a new tag in n8n (as an admin does in the editor), and the pipe's valves get that
    tag, a key with `workflow:list` and n8n's API URL; the stack's valves are put back after."""
    api = requests.Session()
    api.headers["X-N8N-API-KEY"] = stack.n8n.api_key(TAGGING_SCOPES)
    tag = f"open-webui-{uuid.uuid4().hex[:6]}"
    made = api.post(f"{stack.n8n.base_url}/api/v1/tags", json={"name": tag}, timeout=30)
    made.raise_for_status()
    for name in TAGGED:
        url = f"{stack.n8n.base_url}/api/v1/workflows/{stack.n8n.webhooks[name].workflow_id}/tags"
        api.put(url, json=[{"id": made.json()["id"]}], timeout=30).raise_for_status()
    valves = stack.admin.call("GET", f"/api/v1/functions/id/{PIPE_ID}/valves")
    # The stack has `models` lines and no n8n_url: n8n_api_url gives the base the workflows' URLs are built on.
    listing = {"workflow_tag": tag, "n8n_api_key": stack.n8n.api_key(LIST_SCOPES), "n8n_api_url": api_url(stack)}
    stack.admin.set_valves(PIPE_ID, **{**valves, **listing})
    try:
        yield tag
    finally:
        stack.admin.set_valves(PIPE_ID, **valves)


def api_url(stack: Any) -> str:
    assert stack.n8n.webhook_base_url == stack.n8n.base_url, "n8n's webhooks and API on one address (no queue mode)"
    return f"{stack.n8n.base_url}/api/v1"


def picker_options(chat: ChatPage) -> list[str]:
    """The model picker opened: the names of the models it offers, top to bottom."""
    chat.page.locator("#model-selector-model-button").click()
    options = chat.page.get_by_role("option")
    options.first.wait_for()
    labels = options.evaluate_all("(items) => items.map((item) => item.getAttribute('aria-label'))")
    return [str(label).removeprefix("Select ").removesuffix(" model") for label in labels]


def test_the_model_picker_offers_the_tagged_workflows_by_their_n8n_names(
    tagged: str, chat: ChatPage, screenshots: Path | None
):
    """model-picker.png: the picker open, the `models` lines' six, then the two tagged workflows."""
    offered = picker_options(chat)

    configured = [name for name, _ in MODELS]
    assert offered[: len(configured)] == configured, offered
    assert sorted(offered[len(configured) :]) == sorted([CLAUDE, CLASSIC]), offered  # in n8n's order
    assert OLLAMA not in offered, "a workflow a `models` line already calls is listed again"
    chat.screenshot(screenshots, "model-picker.png")
    assert chat.page.get_by_role("option", name=f"Select {CLAUDE} model").is_visible(), "the picker closed"


def test_a_tagged_workflow_picked_by_its_n8n_name_streams_its_answer(tagged: str, chat: ChatPage, stack: Any):
    chat.pick_model(CLAUDE)
    chat.send(SHIFT_HANDOVER)
    chat.wait_done()

    assert shown(chat.reply_text()) == shown(SHIFT_HANDOVER_ANSWER)
    assert DONE.fullmatch(chat.status()), chat.status()
    texts = [shown(o.text) for o in chat.observations if o.text.strip()]
    assert len(texts) >= 3, f"the answer appeared in {len(texts)} step(s), not as a stream: {texts}"
    assert all(later.startswith(earlier) for earlier, later in pairwise(texts)), texts
    [call] = stack.n8n.models.calls_for(SHIFT_HANDOVER)
    assert call.api == "anthropic", "the chat reached another workflow than the Claude one"
