"""Every workflow a model: with `n8n_api_key`, the published workflows tagged `workflow_tag` are listed by n8n's
API (a fake one on 127.0.0.1, answering as n8n 2.41.3) and each that a chat can call is a model. The model
list answers within 2 s whatever the API does, lists n8n's workflows at most once per 10 s, never stalls the
event loop, and a chat with a listed workflow reaches that workflow's live URL on the configured base."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from fake_n8n_api import (
    FakeN8nApi,
    chat_trigger_node,
    schedule_node,
    webhook_node,
    workflow,
)
from loopback import CAPTURE_HEADERS, Gate, LoopbackServer, Reply, n8n_reply

import pipe_n8n_stream
from pipe_n8n_stream import (
    WORKFLOWS_SCOPE_MISSING,
    Pipe,
    Settings,
    WorkflowListing,
    WorkflowModel,
    list_workflows,
    main,
    workflow_source,
)

API_KEY = "n8n_api_3c5e-WORKFLOW-LIST-secret"
BASE = "https://n8n.example.com"
N8N_URL = f"{BASE}/webhook/main-bot"
ANSWER_WITHIN = 2.0  # seconds: Open WebUI's model list, whatever n8n's API does (issue 30)
MAX_LAG = 0.1  # seconds the event loop may be kept from running anything else
N8N_MODEL = {"id": "n8n", "name": "n8n"}

CHAT_STREAM = workflow("wfChatStream0001", "chat-stream", chat_trigger_node("chat-stream-0000-0000-000000000011"))
STREAM_TOOL = workflow("wfStreamTool0001", "stream-openai-tool", webhook_node("stream-openai-tool"))
LISTED = [CHAT_STREAM, STREAM_TOOL]
SHOWN = [
    {"id": "workflow-wfChatStream0001", "name": "chat-stream"},
    {"id": "workflow-wfStreamTool0001", "name": "stream-openai-tool"},
]
# Tagged and published, but no chat can call them: each with what the log says of it.
NOT_CALLABLE = [
    (workflow("wfSchedule000001", "nightly report", schedule_node()), "no Webhook node taking POST"),
    (workflow("wfPrivateChat001", "private chat", chat_trigger_node("private-1", public=False)), "is not public"),
    (workflow("wfGetHook0000001", "status page", webhook_node("status", method=None)), "does not take POST"),
    (workflow("wfDisabled000001", "paused bot", webhook_node("paused", disabled=True)), "'Webhook' is disabled"),
    (workflow("wfParams00000001", "per user", webhook_node("user/:id")), "has a :parameter"),
]
# Not listed by n8n at all: not published, archived, another tag.
NOT_TAGGED_OR_PUBLISHED = [
    workflow("wfDraft000000001", "draft bot", webhook_node("draft"), active=False),
    workflow("wfArchived000001", "old bot", webhook_node("old"), active=False, archived=True),
    workflow("wfOtherTag000001", "internal bot", webhook_node("internal"), tags=("internal",)),
]


@pytest.fixture(autouse=True)
def fresh_catalogs() -> Iterator[None]:
    """Each test starts as a freshly started Open WebUI: no listing had yet."""
    pipe_n8n_stream.WORKFLOW_CATALOGS.clear()
    yield
    pipe_n8n_stream.WORKFLOW_CATALOGS.clear()


@pytest.fixture
def n8n_api() -> Iterator[FakeN8nApi]:
    api = FakeN8nApi(workflows=list(LISTED))
    yield api
    api.close()


def pipe_for(api_url: str, **valves: Any) -> Pipe:
    pipe = Pipe()
    for name, value in {"n8n_url": N8N_URL, "n8n_api_key": API_KEY, "n8n_api_url": api_url, **valves}.items():
        setattr(pipe.valves, name, value)
    return pipe


def models_of(pipe: Pipe) -> list[dict[str, str]]:
    return asyncio.run(pipe.pipes())


def listing_of(pipe: Pipe) -> WorkflowListing:
    source = workflow_source(Settings.of(pipe.valves))
    assert source is not None
    listing = list_workflows(source)
    assert isinstance(listing, WorkflowListing)
    return listing


def workflow_calls(api: FakeN8nApi) -> list[Any]:
    return [call for call in api.calls if call.path == "/api/v1/workflows"]


def tag_listings(api: FakeN8nApi) -> list[Any]:
    """The doctor's listings by tag (its check of the agent's work lists the workflows too, untagged)."""
    return [call for call in workflow_calls(api) if "tags" in call.query]


def timed_models(pipe: Pipe) -> tuple[list[dict[str, str]], float, list[float]]:
    """pipes() as Open WebUI awaits it: (the models, how long it took, how late each 5 ms tick of the loop was)."""

    async def ticker(lags: list[float]) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(0.005)
            lags.append(time.monotonic() - before - 0.005)

    async def scenario() -> tuple[list[dict[str, str]], float, list[float]]:
        lags: list[float] = []
        ticking = asyncio.create_task(ticker(lags))
        await asyncio.sleep(0)
        started = time.monotonic()
        models = await pipe.pipes()
        took = time.monotonic() - started
        ticking.cancel()
        return models, took, lags

    return asyncio.run(scenario())


def refused_port() -> int:
    """A port on 127.0.0.1 nobody listens on: connecting is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# What is listed


def test_the_tagged_published_workflows_are_models_named_as_in_n8n(n8n_api):
    n8n_api.workflows += [w for w, _ in NOT_CALLABLE] + NOT_TAGGED_OR_PUBLISHED
    pipe = pipe_for(n8n_api.url)

    assert models_of(pipe) == [N8N_MODEL, *SHOWN]
    [call] = workflow_calls(n8n_api)
    assert call.query == {"tags": ["open-webui"], "active": ["true"], "limit": ["250"]}
    assert call.key == API_KEY
    assert listing_of(pipe).models == (
        WorkflowModel("wfChatStream0001", "chat-stream", f"{BASE}/webhook/chat-stream-0000-0000-000000000011/chat"),
        WorkflowModel("wfStreamTool0001", "stream-openai-tool", f"{BASE}/webhook/stream-openai-tool"),
    )


def test_each_tagged_workflow_a_chat_cannot_call_is_said_once_in_the_log_with_why(n8n_api, caplog, monkeypatch):
    caplog.set_level(logging.WARNING, "pipe_n8n_stream")
    monkeypatch.setattr(pipe_n8n_stream, "WORKFLOWS_FRESH_SECONDS", 0)
    n8n_api.workflows += [w for w, _ in NOT_CALLABLE]
    pipe = pipe_for(n8n_api.url)

    lists = [models_of(pipe) for _ in range(3)]

    assert lists == [[N8N_MODEL, *SHOWN]] * 3
    assert len(workflow_calls(n8n_api)) == 3
    said = [record.getMessage() for record in caplog.records]
    assert len(said) == len(NOT_CALLABLE)
    for (item, why), line in zip(NOT_CALLABLE, said, strict=True):
        assert line.startswith(f"n8n workflow '{item['name']}' has the tag 'open-webui' but is no model: ")
        assert why in line


def test_a_webhook_taking_get_and_post_is_a_model():
    api = FakeN8nApi(workflows=[workflow("wfBoth0000000001", "both", webhook_node("both", method=["GET", "POST"]))])
    try:
        assert models_of(pipe_for(api.url)) == [N8N_MODEL, {"id": "workflow-wfBoth0000000001", "name": "both"}]
    finally:
        api.close()


def test_the_published_path_is_called_not_the_unpublished_draft(n8n_api):
    n8n_api.workflows = [workflow("wfEdited00000001", "edited", webhook_node("live-path"), draft=webhook_node("new"))]

    [model] = listing_of(pipe_for(n8n_api.url)).models

    assert model.url == f"{BASE}/webhook/live-path"


def test_a_renamed_workflow_keeps_its_model_id_and_url(n8n_api, monkeypatch):
    monkeypatch.setattr(pipe_n8n_stream, "WORKFLOWS_FRESH_SECONDS", 0)
    pipe = pipe_for(n8n_api.url)
    before = models_of(pipe)
    n8n_api.workflows = [CHAT_STREAM, {**STREAM_TOOL, "name": "Calculator bot"}]

    after = models_of(pipe)

    assert before == [N8N_MODEL, *SHOWN]
    assert after == [N8N_MODEL, SHOWN[0], {"id": "workflow-wfStreamTool0001", "name": "Calculator bot"}]
    url = pipe_n8n_stream.webhook_url(Settings.of(pipe.valves), "n8n_stream.workflow-wfStreamTool0001")
    assert url == f"{BASE}/webhook/stream-openai-tool"


def test_230_workflows_are_read_over_several_pages(n8n_api):
    n8n_api.page_limit = 100  # fewer than the pipe asks for: the cursor must be followed
    n8n_api.workflows = [workflow(f"wf{n:014d}", f"bot {n}", webhook_node(f"bot-{n}")) for n in range(230)]

    models = models_of(pipe_for(n8n_api.url))

    assert models == [N8N_MODEL, *({"id": f"workflow-wf{n:014d}", "name": f"bot {n}"} for n in range(230))]
    calls = workflow_calls(n8n_api)
    assert len(calls) == -(-230 // n8n_api.page_limit)
    assert [call.query.get("cursor") is None for call in calls] == [True] + [False] * (len(calls) - 1)
    assert {call.query["limit"][0] for call in calls} == {"250"}


def test_an_n8n_that_ignores_the_filters_still_lists_only_tagged_published_workflows(n8n_api):
    n8n_api.ignores_filters = True
    n8n_api.workflows += NOT_TAGGED_OR_PUBLISHED

    assert models_of(pipe_for(n8n_api.url)) == [N8N_MODEL, *SHOWN]


def test_the_same_url_is_listed_once(n8n_api):
    n8n_api.workflows = [*LISTED, workflow("wfMain0000000001", "main bot", webhook_node("main-bot"))]
    lines = f"Calculator = {BASE}/webhook/stream-openai-tool/\nSupport = {BASE}/webhook/support"

    by_models = models_of(pipe_for(n8n_api.url, models=lines))
    by_n8n_url = models_of(pipe_for(n8n_api.url))

    assert by_models == [
        {"id": "calculator", "name": "Calculator"},
        {"id": "support", "name": "Support"},
        SHOWN[0],
        {"id": "workflow-wfMain0000000001", "name": "main bot"},
    ]
    assert by_n8n_url == [N8N_MODEL, *SHOWN]


def test_without_n8n_url_the_base_is_the_api_urls_and_no_empty_n8n_model_is_listed(n8n_api):
    pipe = pipe_for(n8n_api.url, n8n_url="")

    assert models_of(pipe) == SHOWN
    api_origin = urlsplit(n8n_api.url)._replace(path="").geturl()
    assert listing_of(pipe).models[1].url == f"{api_origin}/webhook/stream-openai-tool"


def test_with_models_lines_alone_the_base_and_the_api_are_the_first_lines(n8n_api):
    origin = urlsplit(n8n_api.url)._replace(path="").geturl()
    pipe = pipe_for("", n8n_url="", models=f"Support = {origin}/webhook/support")

    assert models_of(pipe) == [{"id": "support", "name": "Support"}, *SHOWN]
    assert listing_of(pipe).models[1].url == f"{origin}/webhook/stream-openai-tool"


def test_n8n_served_under_a_path_keeps_that_path_in_the_urls(n8n_api):
    pipe = pipe_for(n8n_api.url, n8n_url="https://example.com/n8n/webhook/main-bot")

    assert [model.url for model in listing_of(pipe).models] == [
        "https://example.com/n8n/webhook/chat-stream-0000-0000-000000000011/chat",
        "https://example.com/n8n/webhook/stream-openai-tool",
    ]


@pytest.mark.parametrize(
    ("trigger", "url"),
    [
        (webhook_node("//evil.example/steal"), f"{BASE}/webhook/evil.example/steal"),
        (webhook_node("http:/evil.example/steal"), f"{BASE}/webhook/http%3A/evil.example/steal"),
        (webhook_node("x?next=evil.example#top"), f"{BASE}/webhook/x%3Fnext%3Devil.example%23top"),
        (webhook_node("http://evil.example/steal"), None),
        (webhook_node("@evil.example/x"), f"{BASE}/webhook/%40evil.example/x"),
        (chat_trigger_node("../../api/v1/workflows"), f"{BASE}/webhook/..%2F..%2Fapi%2Fv1%2Fworkflows/chat"),
        (webhook_node("../api/v1/workflows"), None),
    ],
)
def test_the_credentials_go_only_to_the_configured_base_whatever_n8n_answers(n8n_api, trigger, url):
    n8n_api.workflows = [workflow("wfOdd00000000001", "odd", trigger)]

    models = listing_of(pipe_for(n8n_api.url)).models

    assert [model.url for model in models] == ([url] if url else [])
    for model in models:
        parts = urlsplit(model.url)
        assert (parts.scheme, parts.netloc, parts.query, parts.fragment) == ("https", "n8n.example.com", "", "")
        assert parts.path.startswith("/webhook/")


@pytest.mark.parametrize("valves", [{"workflow_tag": ""}, {"workflow_tag": "  "}, {"n8n_api_key": ""}])
def test_no_tag_or_no_key_means_no_call_to_n8n(n8n_api, valves):
    assert models_of(pipe_for(n8n_api.url, **valves)) == [N8N_MODEL]
    assert n8n_api.calls == []


def test_another_tag_lists_its_own_workflows(n8n_api):
    n8n_api.workflows += NOT_TAGGED_OR_PUBLISHED

    models = models_of(pipe_for(n8n_api.url, workflow_tag="internal"))

    assert models == [N8N_MODEL, {"id": "workflow-wfOtherTag000001", "name": "internal bot"}]
    assert workflow_calls(n8n_api)[0].query["tags"] == ["internal"]


# The cache, and an API that is slow, refuses or is gone


def test_ten_model_lists_in_a_row_list_n8n_workflows_once(n8n_api):
    pipe = pipe_for(n8n_api.url)

    lists = [models_of(pipe) for _ in range(10)]

    assert lists == [[N8N_MODEL, *SHOWN]] * 10
    assert len(workflow_calls(n8n_api)) == 1


def test_a_list_older_than_the_cache_is_listed_again(n8n_api, monkeypatch):
    pipe = pipe_for(n8n_api.url)
    models_of(pipe)
    monkeypatch.setattr(pipe_n8n_stream, "WORKFLOWS_FRESH_SECONDS", 0)
    n8n_api.workflows = [STREAM_TOOL]

    assert models_of(pipe) == [N8N_MODEL, SHOWN[1]]
    assert len(workflow_calls(n8n_api)) == 2


def test_a_slow_api_never_holds_the_model_list_nor_the_event_loop():
    hold = Gate()
    api = FakeN8nApi(workflows=list(LISTED), hold=hold)
    pipe = pipe_for(api.url)
    try:
        first, took, lags = timed_models(pipe)
        hold.open()
        later = models_of(pipe)  # the listing under way ends now: this list waits for it, not for a new one
    finally:
        api.close()

    assert first == [N8N_MODEL]  # never had a list: the configured models
    assert took < ANSWER_WITHIN
    assert len(lags) > 20 and max(lags) < MAX_LAG
    assert later == [N8N_MODEL, *SHOWN]
    assert len(workflow_calls(api)) == 1


def test_a_slow_api_after_a_listing_gives_the_last_list_in_time(n8n_api, monkeypatch):
    pipe = pipe_for(n8n_api.url)
    models_of(pipe)
    monkeypatch.setattr(pipe_n8n_stream, "WORKFLOWS_FRESH_SECONDS", 0)
    n8n_api.hold = Gate()

    models, took, _ = timed_models(pipe)

    assert models == [N8N_MODEL, *SHOWN]
    assert took < ANSWER_WITHIN


def test_a_key_without_the_workflow_list_scope_is_said_once_with_the_scope_to_add(caplog, monkeypatch):
    caplog.set_level(logging.DEBUG, "pipe_n8n_stream")
    monkeypatch.setattr(pipe_n8n_stream, "WORKFLOWS_FRESH_SECONDS", 0)
    api = FakeN8nApi(workflows=list(LISTED), workflows_status=403, error_body={"message": "Forbidden"})
    try:
        lists = [models_of(pipe_for(api.url)) for _ in range(3)]
    finally:
        api.close()

    assert lists == [[N8N_MODEL]] * 3
    assert len(workflow_calls(api)) == 3
    assert [record.getMessage() for record in caplog.records] == [
        f"n8n's workflows tagged 'open-webui' are not listed as models: {WORKFLOWS_SCOPE_MISSING}"
    ]
    assert "workflow:list" in WORKFLOWS_SCOPE_MISSING
    assert API_KEY not in caplog.text


@pytest.mark.parametrize(
    ("status", "said"),
    [(500, "n8n's API answered HTTP 500: Internal error"), (401, "n8n rejected the `n8n_api_key` (HTTP 401)")],
)
def test_a_failing_api_keeps_the_last_list_and_says_why_once(n8n_api, caplog, monkeypatch, status, said):
    caplog.set_level(logging.WARNING, "pipe_n8n_stream")
    pipe = pipe_for(n8n_api.url)
    models_of(pipe)
    monkeypatch.setattr(pipe_n8n_stream, "WORKFLOWS_FRESH_SECONDS", 0)
    n8n_api.workflows_status, n8n_api.error_body = status, {"message": "Internal error"}

    lists = [models_of(pipe) for _ in range(2)]

    assert lists == [[N8N_MODEL, *SHOWN]] * 2
    assert len(caplog.records) == 1
    assert said in caplog.records[0].getMessage()
    assert API_KEY not in caplog.text


def test_an_unreachable_api_gives_the_configured_models_then_the_last_list(n8n_api, caplog, monkeypatch):
    caplog.set_level(logging.WARNING, "pipe_n8n_stream")
    gone = f"http://127.0.0.1:{refused_port()}/api/v1"
    assert models_of(pipe_for(gone)) == [N8N_MODEL]
    pipe = pipe_for(n8n_api.url)
    models_of(pipe)
    monkeypatch.setattr(pipe_n8n_stream, "WORKFLOWS_FRESH_SECONDS", 0)
    n8n_api.close()

    assert models_of(pipe) == [N8N_MODEL, *SHOWN]
    assert [record.getMessage().rpartition(": ")[2] for record in caplog.records] == [
        f"n8n's API at 127.0.0.1:{urlsplit(gone).port} could not be reached (connection refused)",
        f"n8n's API at 127.0.0.1:{urlsplit(n8n_api.url).port} could not be reached (connection refused)",
    ]


def test_an_api_answering_no_json_keeps_the_configured_models(monkeypatch):
    with LoopbackServer([Reply(headers=[("Content-Type", "text/html")], steps=[b"<html>login</html>"])]) as server:
        models = models_of(pipe_for(f"http://127.0.0.1:{server.port}/api/v1"))

    assert models == [N8N_MODEL]


# Chatting with a listed workflow


N8N_STREAM = CAPTURE_HEADERS["n8n-stream"]


def test_a_chat_with_a_listed_workflow_reaches_its_live_url(n8n_api, chat):
    n8n_api.workflows = [
        workflow("wfSupport0000001", "Support", webhook_node("support-bot"), draft=webhook_node("unpublished")),
        workflow("wfChat0000000001", "Chat", chat_trigger_node("0b7c1f2e-chat")),
    ]
    with LoopbackServer(lambda seen: Reply(headers=N8N_STREAM, steps=n8n_reply(["Hi"]))) as n8n:
        valves = {"n8n_url": n8n.url, "n8n_api_key": API_KEY, "n8n_api_url": n8n_api.url, "n8n_bearer_token": "tok"}
        support, _ = chat(**valves).run(body=chat_body("n8n_stream.workflow-wfSupport0000001"))
        chat_trigger, _ = chat(**valves).run(body=chat_body("n8n_stream.workflow-wfChat0000000001"))

    assert support == ["Hi"] and chat_trigger == ["Hi"]
    assert [seen.path for seen in n8n.requests] == ["/webhook/support-bot", "/webhook/0b7c1f2e-chat/chat"]
    assert [seen.headers.get("authorization") for seen in n8n.requests] == ["Bearer tok"] * 2
    assert "action" not in n8n.requests[0].json()
    assert n8n.requests[1].json()["action"] == "sendMessage"
    assert len(workflow_calls(n8n_api)) == 1  # the first chat listed the workflows; the second used that list


def chat_body(model: str) -> dict[str, Any]:
    return {"model": model, "stream": True, "messages": [{"role": "user", "content": "hello"}]}


def test_a_chat_with_a_workflow_no_longer_listed_says_so_and_sends_nothing(n8n_api, chat):
    n8n_api.workflows = []
    with LoopbackServer([Reply(headers=N8N_STREAM, steps=n8n_reply(["Hi"]))]) as n8n:
        turn = chat(n8n_url=n8n.url, n8n_api_key=API_KEY, n8n_api_url=n8n_api.url)
        shown, status = turn.run(body=chat_body("n8n_stream.workflow-wfGone0000000001"))

    message = (
        "This model's n8n workflow ('workflow-wfGone0000000001') is no longer listed: it lost the tag "
        "'open-webui', was unpublished or archived, or its Webhook no longer takes POST; or n8n's API could not "
        "list it (Open WebUI's log says why). Pick another model for this chat, or tag and publish the workflow "
        "again in n8n."
    )
    assert shown == [f"⚠️ {message}"]
    assert status == {"description": message, "done": True}
    assert n8n.requests == []


def test_a_chat_with_a_listed_workflow_after_the_tag_was_emptied_names_the_valves(chat):
    turn = chat(n8n_url=N8N_URL, n8n_api_key=API_KEY, workflow_tag="")
    shown, _ = turn.run(body=chat_body("n8n_stream.workflow-wfSupport0000001"))

    assert shown == [
        "⚠️ This model ('workflow-wfSupport0000001') is an n8n workflow listed through n8n's API, but the "
        "`workflow_tag` or `n8n_api_key` valve is now empty: set it again, or pick another model for this chat "
        "(Admin Panel > Functions > the pipe's gear)."
    ]


# The doctor: `check --api-key` lists what the tag finds


def doctor_lines(api: FakeN8nApi, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[str, list[str]]:
    """The doctor run against a streaming webhook: (the webhook's origin, its lines about workflows)."""
    with LoopbackServer(lambda seen: Reply(headers=N8N_STREAM, steps=n8n_reply(["Hi"]))) as n8n:
        main(["check", n8n.url, "--api-key", API_KEY, "--api-url", api.url, *args])
        origin = f"http://127.0.0.1:{n8n.port}"
    out = capsys.readouterr().out
    assert API_KEY not in out
    return origin, [line for line in out.splitlines() if line.startswith(("workflows", "  "))]


def test_the_doctor_lists_the_tagged_workflows_with_their_urls_and_why_others_are_not(n8n_api, capsys):
    n8n_api.workflows += [NOT_CALLABLE[0][0], *NOT_TAGGED_OR_PUBLISHED]

    origin, lines = doctor_lines(n8n_api, capsys)

    assert lines == [
        "workflows tagged 'open-webui': 2 listed as models",
        f"  chat-stream: {origin}/webhook/chat-stream-0000-0000-000000000011/chat",
        f"  stream-openai-tool: {origin}/webhook/stream-openai-tool",
        f"  not listed: nightly report: {pipe_n8n_stream.NO_TRIGGER}",
        "  not listed: draft bot: it is not published: publish it in n8n (Publish, top right)",
        "  not listed: old bot: it is archived",
    ]
    assert [call.query.get("active") for call in tag_listings(n8n_api)] == [None]  # unpublished ones are named too


def test_the_doctor_says_when_no_workflow_has_the_tag(n8n_api, capsys):
    _, lines = doctor_lines(n8n_api, capsys, "--tag", "chatbots")

    assert lines == [
        "workflows: no workflow has the tag 'chatbots' in n8n: add it to each workflow to list (the tags next to "
        "the workflow's name in the editor), or pass their tag with --tag (the `workflow_tag` valve)"
    ]


def test_the_doctor_names_the_scope_a_key_lacks(capsys):
    api = FakeN8nApi(workflows=list(LISTED), workflows_status=403, error_body={"message": "Forbidden"})
    try:
        _, lines = doctor_lines(api, capsys)
    finally:
        api.close()

    said = f"n8n's workflows tagged 'open-webui' are not listed as models: {WORKFLOWS_SCOPE_MISSING}"
    assert lines == [f"workflows: {said}"]


def test_the_doctor_with_an_empty_tag_lists_nothing(n8n_api, capsys):
    _, lines = doctor_lines(n8n_api, capsys, "--tag", "")

    assert lines == ["workflows: the tag is empty (--tag, the `workflow_tag` valve): no workflow is listed as a model"]
    assert tag_listings(n8n_api) == []
