"""What n8n receives: the payload, the headers and the URL of one chat turn (no sockets: `responses`)."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest
import responses

from pipe_n8n_stream import Pipe

URL = "https://n8n.example.com/webhook/agent"
ANY_URL = re.compile(r"https?://.*")
N8N_STREAM = (
    b'{"type":"begin","metadata":{"nodeName":"AI Agent"}}\n'
    b'{"type":"item","content":"Hi","metadata":{"nodeName":"AI Agent"}}\n'
    b'{"type":"end","metadata":{"nodeName":"AI Agent"}}\n'
)
USER = {"id": "u1", "name": "Ada", "email": "ada@example.com", "role": "user", "profile_image_url": "/ada.png"}


def user_says(text: Any) -> dict[str, Any]:
    return {"role": "user", "content": text}


def turn_body(*messages: dict[str, Any], model: str = "n8n_stream.n8n") -> dict[str, Any]:
    return {"model": model, "stream": True, "messages": list(messages)}


def take_turn(chat: Any, body: dict[str, Any], **valves: Any) -> tuple[list[str], list[Any]]:
    """One chat turn as Open WebUI runs it: (what the chat shows, the requests that left)."""
    turn = chat(**{"n8n_url": URL, **valves})
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.post(ANY_URL, body=N8N_STREAM, content_type="application/json; charset=utf-8")
        shown, _ = turn.run(body=body, __user__=USER, __metadata__={"chat_id": "chat-42"})
        return shown, [call.request for call in mock.calls]


def sent_payload(chat: Any, body: dict[str, Any], **valves: Any) -> dict[str, Any]:
    """The payload but its `turnId` (a fresh random id, checked on its own below)."""
    shown, requests = take_turn(chat, body, **valves)
    assert shown == ["Hi"]
    assert len(requests) == 1
    payload = json.loads(requests[0].body)
    assert re.fullmatch(r"[0-9a-f]{32}", payload.pop("turnId"))
    return payload


def test_each_turn_sends_its_own_turn_id_so_stop_can_find_its_execution(chat):
    ids = [json.loads(take_turn(chat, turn_body(user_says("hello")))[1][0].body)["turnId"] for _ in range(2)]

    assert ids[0] != ids[1]
    assert all(re.fullmatch(r"[0-9a-f]{32}", turn_id) for turn_id in ids)


def sent_headers(chat: Any, **valves: Any) -> dict[str, str]:
    shown, requests = take_turn(chat, turn_body(user_says("hello")), **valves)
    assert shown == ["Hi"]
    return dict(requests[0].headers)


def test_payload_is_the_last_user_message_the_chat_id_and_stream(chat):
    body = turn_body(user_says("first question"), {"role": "assistant", "content": "an answer"}, user_says("second"))

    assert sent_payload(chat, body) == {"chatInput": "second", "sessionId": "chat-42", "stream": True}


def test_a_message_with_an_image_sends_its_text_parts_as_the_words(chat):
    content = [
        {"type": "text", "text": "What is in"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "text", "text": "this picture?"},
    ]

    assert (
        sent_payload(chat, turn_body(user_says(content)), send_files="text")["chatInput"] == "What is in\nthis picture?"
    )


def test_a_text_part_whose_text_is_null_is_skipped(chat):
    content = [{"type": "text", "text": None}, {"type": "text", "text": "still here"}, {"type": "text"}]

    assert sent_payload(chat, turn_body(user_says(content)))["chatInput"] == "still here"


def test_an_image_only_message_sends_empty_words_and_the_image(chat):
    content = [{"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]

    assert sent_payload(chat, turn_body(user_says(content)), send_files="text") == {
        "chatInput": "",
        "sessionId": "chat-42",
        "stream": True,
        "files": [{"name": "image-1.png", "type": "image/png", "size": 8, "text": ""}],
    }


def test_continue_sends_the_last_user_message_not_the_unfinished_answer(chat):
    # Open WebUI's Continue asks again with the assistant's unfinished answer as the last message.
    body = turn_body(user_says("tell me a story"), {"role": "assistant", "content": "Once upon a"})

    assert sent_payload(chat, body)["chatInput"] == "tell me a story"


def test_custom_input_and_session_fields_rename_the_payload_keys(chat):
    payload = sent_payload(chat, turn_body(user_says("hello")), input_field="question", session_field="conversation")

    assert payload == {"question": "hello", "conversation": "chat-42", "stream": True}


def test_send_history_adds_every_message_as_role_and_text(chat):
    picture = [{"type": "text", "text": "and this?"}, {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]
    body = turn_body(
        {"role": "system", "content": "Be brief."},
        user_says("hi"),
        {"role": "assistant", "content": "Hello!"},
        user_says(picture),
    )

    assert sent_payload(chat, body, send_history=True)["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "and this?"},
    ]


def test_send_user_info_adds_id_name_email_and_role_only(chat):
    payload = sent_payload(chat, turn_body(user_says("hello")), send_user_info=True)

    assert payload["user"] == {"id": "u1", "name": "Ada", "email": "ada@example.com", "role": "user"}


def test_user_info_and_history_stay_home_by_default(chat):
    payload = sent_payload(chat, turn_body(user_says("hello")))

    assert "user" not in payload
    assert "messages" not in payload


def test_headers_ask_for_a_stream_without_compression(chat):
    headers = sent_headers(chat)

    assert headers["Accept"] == "text/event-stream, application/x-ndjson, application/json"
    assert headers["Accept-Encoding"] == "identity"
    assert headers["Content-Type"] == "application/json"


def test_token_goes_in_authorization_as_bearer_by_default(chat):
    headers = sent_headers(chat, n8n_bearer_token="s3cret")

    assert headers["Authorization"] == "Bearer s3cret"


def test_a_custom_auth_header_carries_the_raw_token(chat):
    headers = sent_headers(chat, n8n_bearer_token="s3cret", auth_header_name="X-Api-Key")

    assert headers["X-Api-Key"] == "s3cret"
    assert "Authorization" not in headers


@pytest.mark.parametrize("auth_header_name", ["Authorization", "X-Api-Key"])
def test_no_token_sends_no_auth_header(chat, auth_header_name):
    headers = sent_headers(chat, auth_header_name=auth_header_name)

    assert auth_header_name not in headers


@pytest.mark.parametrize("url", [URL + "/chat", "https://n8n.example.com/webhook/0b7c1f2e-aa51-4d3b-9c1e/chat/"])
def test_a_chat_trigger_url_gets_the_send_message_action(chat, url):
    assert sent_payload(chat, turn_body(user_says("hello")), n8n_url=url) == {
        "chatInput": "hello",
        "sessionId": "chat-42",
        "stream": True,
        "action": "sendMessage",
    }


MODELS = """Support = https://n8n.example.com/webhook/support
# Old = https://n8n.example.com/webhook/old
Sales bot = https://n8n.example.com/webhook/sales
"""


def test_models_valve_lists_one_model_per_workflow():
    pipe = Pipe()
    pipe.valves.models = MODELS

    assert asyncio.run(pipe.pipes()) == [{"id": "support", "name": "Support"}, {"id": "sales-bot", "name": "Sales bot"}]


def test_the_picked_model_posts_to_its_workflow_url(chat):
    body = turn_body(user_says("hello"), model="n8n_stream.sales-bot")

    shown, requests = take_turn(chat, body, models=MODELS)

    assert shown == ["Hi"]
    assert [r.url for r in requests] == ["https://n8n.example.com/webhook/sales"]


def test_without_a_url_the_chat_names_the_valve_and_nothing_is_sent(chat):
    turn = chat()

    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.post(ANY_URL, body=N8N_STREAM)
        shown, _ = turn.run(body=turn_body(user_says("hello")), __user__=None, __metadata__=None)
        calls = len(mock.calls)

    message = "No n8n webhook is set: fill in the `n8n_url` valve (Admin Panel > Functions > this pipe)."
    assert shown == [f"⚠️ {message}"]
    assert calls == 0
    assert turn.statuses == [{"type": "status", "data": {"description": message, "done": True}}]
