"""Every workflow a model, inside a real Open WebUI (0.12.4, or OWUI_E2E_VERSION): the workflows a fake n8n API
(shaped as n8n 2.41.3's, tests/fake_n8n_api.py) lists with the tag are in Open WebUI's `/api/models` under their
n8n names; a chat with one streams from that workflow's own webhook; a workflow tagged while Open WebUI runs
is in the model list within the pipe's 10 s cache. The test runs as the admin, who sees a new model before any
access is granted. (A real n8n's listing: tests/e2e/test_e2e_workflow_models.py.)

Run with scripts/e2e-openwebui.sh.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fake_n8n_api import FakeN8nApi, chat_trigger_node, webhook_node, workflow
from loopback import CAPTURE_HEADERS, Gate, LoopbackServer, Reply, Seen, n8n_reply
from owui_host import PIPE_ID, wait_for

API_KEY = "owui-e2e-workflow-list-key"
TAG = "open-webui"  # the workflow_tag valve's default
CACHE_SECONDS = 10.0  # issue 30: a workflow tagged in n8n is in the model picker within 10 s
POLL_SECONDS = 0.25
SUPPORT = workflow("wfSupportDesk001", "Support desk", webhook_node("support-desk"))
ONBOARDING = workflow("wfOnboarding0001", "Onboarding chat", chat_trigger_node("onboarding-chat-0001"))
SALES = workflow("wfSalesReport001", "Sales report", webhook_node("sales-report"))
INTERNAL = workflow("wfInternal000001", "Internal bot", webhook_node("internal"), tags=("internal",))
DRAFT = workflow("wfDraft000000001", "Draft bot", webhook_node("draft"), active=False)
ANSWERS = {  # the webhook path each workflow is served at -> what its model streams
    "/webhook/support-desk": ["Your order", " left the", " warehouse", " today."],
    "/webhook/onboarding-chat-0001/chat": ["Welcome", " aboard!"],
}


@dataclass
class N8nOnLoopback:
    webhooks: LoopbackServer  # n8n's webhooks: its base is the models' base (n8n_url's origin)
    api: FakeN8nApi
    gate: Gate  # each answer holds back all but its first token until the test opens it


@pytest.fixture
def n8n(admin: Any) -> Iterator[N8nOnLoopback]:
    """n8n's webhooks and its API, with the pipe's valves pointed at them, the key given, the tag the default."""
    gate = Gate()

    def answer(seen: Seen) -> Reply:
        if seen.path not in ANSWERS:
            return Reply(status=404, headers=[("Content-Type", "application/json")], steps=[b'{"code":404}'])
        lines = n8n_reply(ANSWERS[seen.path])
        return Reply(headers=CAPTURE_HEADERS["n8n-stream"], steps=[*lines[:2], gate, *lines[2:]])

    api = FakeN8nApi(workflows=[SUPPORT, ONBOARDING, INTERNAL, DRAFT])
    with LoopbackServer(answer) as webhooks:
        try:
            admin.set_valves(PIPE_ID, n8n_url=webhooks.url, n8n_api_key=API_KEY, n8n_api_url=api.url)
            yield N8nOnLoopback(webhooks, api, gate)
        finally:
            gate.open()
            admin.set_valves(PIPE_ID, n8n_url=webhooks.url)
            api.close()


def pipe_models(admin: Any) -> dict[str, str]:
    """The pipe's models in Open WebUI's model list (what the picker shows): id -> name."""
    return {m["id"]: m["name"] for m in admin.models() if m["id"].startswith(f"{PIPE_ID}.")}


def test_tagged_published_workflows_are_open_webui_models_named_as_in_n8n(admin: Any, n8n: N8nOnLoopback) -> None:
    models = pipe_models(admin)

    assert models == {
        f"{PIPE_ID}.n8n": "n8n",
        f"{PIPE_ID}.workflow-wfSupportDesk001": "Support desk",
        f"{PIPE_ID}.workflow-wfOnboarding0001": "Onboarding chat",
    }
    listings = [call for call in n8n.api.calls if call.path == "/api/v1/workflows"]
    assert listings, "Open WebUI's model list never asked n8n's API for the workflows"
    assert {(c.method, c.key, c.query["tags"][0], c.query["active"][0]) for c in listings} == {
        ("GET", API_KEY, TAG, "true")
    }


@pytest.mark.parametrize(
    ("model", "path"),
    [
        ("workflow-wfSupportDesk001", "/webhook/support-desk"),
        ("workflow-wfOnboarding0001", "/webhook/onboarding-chat-0001/chat"),
    ],
)
def test_a_chat_with_a_listed_workflow_streams_from_its_own_webhook(
    admin: Any, browser: Any, n8n: N8nOnLoopback, model: str, path: str
) -> None:
    assert f"{PIPE_ID}.{model}" in pipe_models(admin)

    turn = browser.send(f"{PIPE_ID}.{model}", "Where do I start?")
    first = turn.wait(turn.deltas, 15, "the first delta while n8n still holds back the rest")
    n8n.gate.open()
    turn.wait_done()

    tokens = ANSWERS[path]
    assert first[0].data["delta"] == tokens[0]
    assert turn.text_shown() == "".join(tokens)
    assert turn.saved()["content"] == "".join(tokens)
    assert [seen.path for seen in n8n.webhooks.requests] == [path]
    sent = n8n.webhooks.requests[0].json()
    assert sent["chatInput"] == "Where do I start?"
    assert sent.get("action") == ("sendMessage" if path.endswith("/chat") else None)


def test_a_workflow_tagged_while_open_webui_runs_is_a_model_within_ten_seconds(admin: Any, n8n: N8nOnLoopback) -> None:
    """The worst case: tagged right after a listing, so the pipe's cache holds the list without it. Every model
    list meanwhile is answered at once: the picker never waits for n8n."""
    sales = f"{PIPE_ID}.workflow-wfSalesReport001"
    assert sales not in pipe_models(admin)

    n8n.api.workflows.append(SALES)
    tagged_at = time.monotonic()
    list_times: list[float] = []

    def listed() -> bool:
        started = time.monotonic()
        models = pipe_models(admin)
        list_times.append(time.monotonic() - started)
        if sales in models:
            return True
        time.sleep(POLL_SECONDS)
        return False

    wait_for(listed, CACHE_SECONDS + 5, f"{sales} in /api/models")
    seen_after = time.monotonic() - tagged_at

    assert seen_after <= CACHE_SECONDS + POLL_SECONDS + max(list_times), f"listed {seen_after:.1f} s after tagging"
    assert max(list_times) < 2.0, f"a model list took {max(list_times):.2f} s"
    assert pipe_models(admin)[sales] == "Sales report"
