"""Every reply format n8n (or what sits behind it) puts on the wire, over a real socket, driven as
Open WebUI drives the pipe: the exact chunks the user sees, in order, and the status line.

Where a test says a chunk arrived "before the next was sent", the server waits at a Gate the
test opens only after it holds that chunk; a chunk held back until the next write would make
the test time out (CHUNK_WAIT is well under the Gate's own 10 s).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from chat_helpers import WITH_API_KEY
from loopback import CAPTURE_HEADERS, Gate, LoopbackServer, Reply, Seen, n8n_line, n8n_reply
from n8n_wire import n8n_json

from pipe_n8n_stream import ACCEPT_COMPLETE

MODEL_FAILED = (
    "The model behind the workflow failed (its credential, URL or model name, or the model server): "
    "open the workflow's Executions list in n8n to see which node failed and why."
)

CHUNK_WAIT = 5.0
N8N_HEADERS = CAPTURE_HEADERS["n8n-stream"]
N8N_CLOSE_HEADERS = [h for h in N8N_HEADERS if h[0] != "Connection"]
JSON_HEADERS = [("Content-Type", "application/json; charset=utf-8"), ("Vary", "Accept-Encoding")]
SSE_HEADERS = [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache")]
NDJSON_HEADERS = [("Content-Type", "application/x-ndjson")]
TEXT_HEADERS = [("Content-Type", "text/plain; charset=utf-8")]

# tests/data/n8n-wire/stream-ollama.txt, token by token, and the same answer as lastnode-ollama.txt.
CAPTURED_TOKENS = ["Hello", " from", " the", " fake", " model", "!", " Line2\n", 'tab\tquote"', " ünïcødé", " END"]
CAPTURED_TEXT = "".join(CAPTURED_TOKENS)
CAPTURED_JSON = json.dumps({"output": CAPTURED_TEXT}, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass
class Outcome:
    """What one chat turn looked like: to the user, on the status line, and to the server."""

    answer: list[str] | str
    descriptions: list[str]
    statuses: list[dict[str, Any]]
    requests: list[Seen]
    final_status: dict[str, Any]

    @property
    def text(self) -> str:
        """The whole answer. Lines written together may reach the chat as one chunk or several, as the
        reads fall: only tests that gate each write assert the chunks themselves."""
        return self.answer if isinstance(self.answer, str) else "".join(self.answer)


def gated(*groups: list[Any]) -> tuple[list[Any], list[Gate]]:
    """Script steps writing each group, then waiting at a gate: one gate per group."""
    steps: list[Any] = []
    gates: list[Gate] = []
    for group in groups:
        gate = Gate()
        steps += [*group, gate]
        gates.append(gate)
    return steps, gates


def talk(
    chat: Any, replies: list[Reply], gates: Sequence[Gate] = (), chat_streams: bool = True, **valves: Any
) -> Outcome:
    """One chat turn against a loopback n8n answering with `replies` (one per request); one chunk per gate, each
    taken while the server still waits at that gate, then the rest, each within CHUNK_WAIT."""
    with LoopbackServer(replies) as server:
        turn = chat(n8n_url=server.url, **valves)
        answer, final = turn.run(stream=chat_streams, gates=gates, within=CHUNK_WAIT)
        return Outcome(answer, turn.descriptions, turn.statuses, server.requests, final)


def assert_done(outcome: Outcome, description: str) -> None:
    """The status line ends on `description` (a prefix for the timed summary), marked done, once."""
    assert outcome.final_status["description"].startswith(description), outcome.final_status
    assert outcome.final_status["done"] is True
    assert [s["data"]["done"] for s in outcome.statuses[:-1]] == [False] * (len(outcome.statuses) - 1)


def sse(data: Any, event: str = "") -> bytes:
    """One server-sent event; `data` is sent as JSON unless it is already a string."""
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    lines = [f"event: {event}"] if event else []
    return ("\n".join([*lines, f"data: {text}"]) + "\n\n").encode()


def openai_delta(content: str) -> bytes:
    return sse({"id": "chatcmpl-1", "object": "chat.completion.chunk", "choices": [{"delta": {"content": content}}]})


def anthropic(event: str, **fields: Any) -> bytes:
    return sse({"type": event, **fields}, event=event)


def ollama_line(content: str = "", thinking: str = "", done: bool = False) -> bytes:
    message: dict[str, str] = {"role": "assistant", "content": content}
    if thinking:
        message["thinking"] = thinking
    return json.dumps({"model": "qwen3", "message": message, "done": done}).encode() + b"\n"


# ---------------------------------------------------------------------------
# n8n's own stream (Webhook "Streaming" + AI Agent)


@pytest.mark.parametrize(("body_mode", "headers"), [("chunked", N8N_HEADERS), ("close", N8N_CLOSE_HEADERS)])
def test_captured_n8n_stream_shows_each_token_before_the_next_is_sent(chat, body_mode, headers):
    begin, *items, end = n8n_reply(CAPTURED_TOKENS)
    steps, gates = gated([begin, items[0]], *([item] for item in items[1:]))
    reply = Reply(headers=headers, steps=[*steps, end], body_mode=body_mode)

    outcome = talk(chat, [reply], gates)

    assert outcome.answer == CAPTURED_TOKENS
    assert outcome.descriptions[:2] == ["Waiting for n8n…", "AI Agent is answering"]
    assert len(outcome.descriptions) == 3
    assert_done(outcome, "Done: first text after")
    assert len(outcome.requests) == 1


def test_chat_that_does_not_stream_gets_the_n8n_stream_as_one_text(chat):
    # A streaming webhook streams whatever the payload says; the pipe then returns the whole text.
    begin, *items, _ = n8n_reply(["Hello", " there"])
    reply = Reply(headers=N8N_HEADERS, steps=[begin, *items, n8n_line("error", "Original error: TypeError")])

    outcome = talk(chat, [reply], chat_streams=False)

    assert outcome.answer == "Hello there\n\n⚠️ n8n error in AI Agent: Original error: TypeError. " + MODEL_FAILED
    (request,) = outcome.requests
    assert request.json()["stream"] is False
    assert request.headers["accept"] == ACCEPT_COMPLETE
    assert_done(outcome, "n8n error in AI Agent: Original error: TypeError. " + MODEL_FAILED)


def test_agent_with_a_tool_shows_every_begin_end_block(chat):
    # tests/data/n8n-wire/stream-openai-tool.txt: the first `end` is not the end of the reply.
    first = n8n_reply(["Let me", " calculate."])
    steps, gates = gated(first[:2], [first[2]], [*first[3:], n8n_line("begin"), n8n_line("item", "Hello")])
    second = [n8n_line("item", t) for t in CAPTURED_TOKENS[1:]]
    reply = Reply(headers=N8N_HEADERS, steps=[*steps, *second, n8n_line("end")])

    outcome = talk(chat, [reply], gates)

    # The answer after the tool call starts a new paragraph instead of running on: "calculate.Hello".
    assert outcome.answer[:3] == ["Let me", " calculate.", "\n\n" + CAPTURED_TOKENS[0]]
    assert outcome.text == "Let me calculate.\n\n" + CAPTURED_TEXT
    assert outcome.descriptions[:3] == ["Waiting for n8n…", "AI Agent is answering", "AI Agent is answering"]
    assert_done(outcome, "Done: first text after")


def test_respond_to_webhook_stream_shows_only_the_output_text(chat):
    # tests/data/n8n-wire/stream-rtw.txt: the whole body as ONE item whose content is a JSON string.
    lines = n8n_reply([n8n_json({"output": CAPTURED_TEXT})], node="Respond to Webhook")
    outcome = talk(chat, [Reply(headers=N8N_HEADERS, steps=lines)])

    assert outcome.answer == [CAPTURED_TEXT]
    assert outcome.descriptions[1] == "Respond to Webhook is answering"
    assert_done(outcome, "Done: first text after")


def test_n8n_error_mid_stream_keeps_the_text_and_shows_the_error(chat):
    # tests/data/n8n-wire/stream-error-midstream.txt: HTTP 200, no `end` after the error.
    begin, *items, _ = n8n_reply(["Hello", " from", " the"])
    error = n8n_line("error", "Original error: TypeError")
    reply = Reply(headers=N8N_HEADERS, steps=[begin, *items, error])

    outcome = talk(chat, [reply])

    assert outcome.text == "Hello from the\n\n⚠️ n8n error in AI Agent: Original error: TypeError. " + MODEL_FAILED
    assert_done(outcome, "n8n error in AI Agent: Original error: TypeError. " + MODEL_FAILED)
    assert outcome.descriptions == [
        "Waiting for n8n…",
        "AI Agent is answering",
        "n8n error in AI Agent: Original error: TypeError. " + MODEL_FAILED,
    ]


def test_n8n_error_without_content_after_the_end_is_shown(chat):
    # tests/data/n8n-wire/stream-then-fail.txt: a later node fails after the agent's `end`; no `content`.
    error = json.dumps({"type": "error", "metadata": {"nodeName": "Stop and Error", "runIndex": 0, "itemIndex": 0}})
    reply = Reply(headers=N8N_HEADERS, steps=[*n8n_reply(CAPTURED_TOKENS), error.encode() + b"\n"])

    outcome = talk(chat, [reply])

    assert outcome.text == CAPTURED_TEXT + "\n\n⚠️ n8n error in Stop and Error: the workflow failed"
    assert_done(outcome, "n8n error in Stop and Error: the workflow failed")


def test_n8n_error_before_any_text_is_the_whole_message(chat):
    # tests/data/n8n-wire/stream-error-model500.txt
    reply = Reply(headers=N8N_HEADERS, steps=[n8n_line("begin"), n8n_line("error", "Original error: ResponseError")])

    outcome = talk(chat, [reply])

    assert outcome.answer == ["⚠️ n8n error in AI Agent: Original error: ResponseError. " + MODEL_FAILED]
    assert_done(outcome, "n8n error in AI Agent: Original error: ResponseError. " + MODEL_FAILED)
    assert len(outcome.requests) == 1


def test_keepalive_lines_show_nothing_and_keep_a_quiet_stream_alive(chat):
    # tests/data/n8n-wire/stream-keepalive-hang.txt with 0.5 s instead of 30 s: four keepalives span
    # 2 s without text, longer than read_timeout; no single silence comes near it.
    keepalive = b'{"type":"keepalive"}\n'
    begin, hello, there, end = n8n_reply(["Hello", " there"])
    quiet = [step for _ in range(4) for step in (0.5, keepalive)]
    reply = Reply(headers=N8N_HEADERS, steps=[begin, hello, *quiet, there, end])

    outcome = talk(chat, [reply], read_timeout=1.5)

    assert outcome.answer == ["Hello", " there"]
    assert_done(outcome, "Done: first text after")


def test_empty_streaming_reply_explains_how_to_turn_streaming_on(chat):
    # tests/data/n8n-wire/stream-no-streaming-node.txt: 200, chunked, no body at all.
    outcome = talk(chat, [Reply(headers=N8N_HEADERS, steps=[])])

    advice = (
        "n8n answered with an empty body: a Webhook set to respond 'Streaming' does that when no node streams. "
        "Turn on 'Enable Streaming' in the AI Agent's options, or set the Webhook to respond "
        "'When Last Node Finishes'."
    )
    assert outcome.answer == [f"⚠️ {advice}"]
    assert_done(outcome, advice)
    assert len(outcome.requests) == 1


# ---------------------------------------------------------------------------
# Server-sent events (an OpenAI- or Anthropic-style API relayed, or a custom Respond to Webhook)


def test_openai_sse_deltas_arrive_one_by_one_until_done(chat):
    steps, gates = gated(
        [b": connected\n\n", openai_delta("Hi")],
        [b'data:{"choices":[{"delta":{"content":" there"}}]}\n\n'],  # no space after the colon
        [b":\n", openai_delta(" ünï")],
    )
    # [DONE] ends the reply although the server keeps the connection open.
    reply = Reply(headers=SSE_HEADERS, steps=[*steps, b"data: [DONE]\n\n", "hang"])

    outcome = talk(chat, [reply], gates)

    assert outcome.answer == ["Hi", " there", " ünï"]
    assert outcome.descriptions[0] == "Waiting for n8n…"
    assert_done(outcome, "Done: first text after")


def test_sse_multi_line_data_is_joined_with_newlines(chat):
    steps = [
        b"data: first line\ndata: second line\n\n",
        b'data: {"choices": [{"delta":\ndata: {"content": " and JSON"}}]}\n\n',
    ]
    outcome = talk(chat, [Reply(headers=SSE_HEADERS, steps=steps)])

    assert outcome.text == "first line\nsecond line and JSON"


def test_sse_crlf_and_bare_cr_line_endings(chat):
    steps = [
        b'data: {"choices":[{"delta":{"content":"crlf"}}]}\r\n\r\n',
        b'data: {"choices":[{"delta":{"content":" cr"}}]}\r\r',
        b"data: two\r\ndata: lines\r\rdata: [DONE]\r\n\r\n",
    ]
    outcome = talk(chat, [Reply(headers=SSE_HEADERS, steps=steps)])

    assert outcome.text == "crlf crtwo\nlines"


def test_sse_crlf_split_across_two_writes_is_one_line_break(chat):
    # The "first" event reaches the chat before the server writes the "\n" that completes "\r".
    steps, gates = gated([b"data: first\n\ndata: a\r"], [b"\ndata: b\r\n\r\n"])

    outcome = talk(chat, [Reply(headers=SSE_HEADERS, steps=steps)], gates)

    assert outcome.answer == ["first", "a\nb"]


def test_sse_blank_line_right_after_a_split_crlf_still_ends_the_event(chat):
    # "\r" | "\n" | "\n": the second LF is the blank line that ends the event, not part of the CRLF.
    steps, gates = gated([b"data: first\n\ndata: a\r"], [b"\n", b"\n"], [b"data: b\n\n"])

    outcome = talk(chat, [Reply(headers=SSE_HEADERS, steps=steps)], gates)

    assert outcome.answer == ["first", "a", "b"]


def test_sse_utf8_character_split_across_two_writes(chat):
    cafe = 'data: {"choices":[{"delta":{"content":" café"}}]}\n\n'.encode()
    cut = cafe.index("é".encode()) + 1
    steps, gates = gated([openai_delta("first"), cafe[:cut]], [cafe[cut:]])

    outcome = talk(chat, [Reply(headers=SSE_HEADERS, steps=steps)], gates)

    assert outcome.answer == ["first", " café"]


def test_sse_leading_bom_is_not_part_of_the_text(chat):
    reply = Reply(headers=SSE_HEADERS, steps=[b"\xef\xbb\xbfdata: Hello\n\n", b"data: world\n\n"])

    outcome = talk(chat, [reply])

    assert outcome.text == "Helloworld"


def test_sse_without_json_shows_the_data_as_text(chat):
    steps, gates = gated([b"data: Hello\n\n"], [b"data:  world, \n\n"], ['data: "quoted" ünï\n\n'.encode()])

    outcome = talk(chat, [Reply(headers=SSE_HEADERS, steps=steps)], gates)

    assert outcome.answer == ["Hello", " world, ", '"quoted" ünï']
    assert_done(outcome, "Done: first text after")


ANTHROPIC_START = [
    anthropic("message_start", message={"id": "msg_1", "role": "assistant", "content": []}),
    anthropic("content_block_start", index=0, content_block={"type": "thinking", "thinking": ""}),
    anthropic("ping"),
]


def test_anthropic_events_show_thinking_then_text(chat):
    steps, gates = gated(
        [
            *ANTHROPIC_START,
            anthropic("content_block_delta", index=0, delta={"type": "thinking_delta", "thinking": "Hmm"}),
        ],
        [anthropic("content_block_delta", index=0, delta={"type": "thinking_delta", "thinking": ", 2+2"})],
        [
            anthropic("content_block_delta", index=0, delta={"type": "signature_delta", "signature": "c2ln"}),
            anthropic("content_block_stop", index=0),
            anthropic("content_block_start", index=1, content_block={"type": "text", "text": ""}),
            anthropic("content_block_delta", index=1, delta={"type": "text_delta", "text": "It is"}),
        ],
        [anthropic("content_block_delta", index=1, delta={"type": "text_delta", "text": " 4."})],
    )
    tail = [
        anthropic("content_block_stop", index=1),
        anthropic("message_delta", delta={"stop_reason": "end_turn"}, usage={"output_tokens": 9}),
        anthropic("message_stop"),
        "hang",  # message_stop is the end; the reply must not wait for the connection to close
    ]
    reply = Reply(headers=SSE_HEADERS, steps=[*steps, *tail])

    outcome = talk(chat, [reply], gates)

    assert outcome.answer == ["<think>\nHmm", ", 2+2", "\n</think>\n\nIt is", " 4."]
    assert_done(outcome, "Done: first text after")


def test_anthropic_error_event_is_shown_after_the_text(chat):
    delta = anthropic("content_block_delta", index=0, delta={"type": "text_delta", "text": "Partial"})
    error = sse({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}, event="error")
    reply = Reply(headers=SSE_HEADERS, steps=[*ANTHROPIC_START[:2], delta, error])

    outcome = talk(chat, [reply])

    assert outcome.text == "Partial\n\n⚠️ overloaded_error: Overloaded"
    assert_done(outcome, "overloaded_error: Overloaded")


# ---------------------------------------------------------------------------
# NDJSON (Ollama-style)


@pytest.mark.parametrize(
    ("show_thinking", "groups", "expected"),
    [
        (
            True,
            [[ollama_line(thinking="Let me")], [ollama_line(thinking=" think.")], [ollama_line("Hi")]],
            ["<think>\nLet me", " think.", "\n</think>\n\nHi", " there"],
        ),
        (
            False,
            [[ollama_line(thinking="Let me"), ollama_line(thinking=" think."), ollama_line("Hi")]],
            ["Hi", " there"],
        ),
    ],
    ids=["thinking-shown", "thinking-hidden"],
)
def test_ollama_ndjson_streams_text_and_thinking(chat, show_thinking, groups, expected):
    steps, gates = gated(*groups, [ollama_line(" there")])
    # {"done": true} ends the reply although the server keeps the connection open.
    reply = Reply(headers=NDJSON_HEADERS, steps=[*steps, b'{"done":true}\n', "hang"])

    outcome = talk(chat, [reply], gates, show_thinking=show_thinking)

    assert outcome.answer == expected
    assert_done(outcome, "Done: first text after")


# ---------------------------------------------------------------------------
# Complete JSON replies ("When Last Node Finishes", Respond to Webhook)

WORKFLOW_STARTED_ADVICE = (
    "n8n answered 'Workflow was started': the webhook replies before the workflow runs. "
    "In the Webhook node set Respond to 'Streaming' (or 'When Last Node Finishes')."
)


@pytest.mark.parametrize("chat_streams", [True, False], ids=["chat-streams", "chat-waits"])
@pytest.mark.parametrize(
    ("body", "response_field", "text"),
    [
        (CAPTURED_JSON, "output", CAPTURED_TEXT),  # lastnode-ollama.txt
        (b"[" + CAPTURED_JSON + b"]", "output", CAPTURED_TEXT),  # lastnode-allentries.txt
        (b'{"data": {"answer": "42", "output": "not this"}}', "data.answer", "42"),
        (b'{\n  "output": "pretty\\nprinted"\n}\n', "output", "pretty\nprinted"),
    ],
    ids=["lastnode", "all-entries", "dotted-field", "pretty-printed"],
)
def test_complete_json_reply_is_the_answer(chat, chat_streams, body, response_field, text):
    reply = Reply(headers=JSON_HEADERS, steps=[body], body_mode="length")

    outcome = talk(chat, [reply], chat_streams=chat_streams, response_field=response_field)

    assert outcome.answer == ([text] if chat_streams else text)
    assert_done(outcome, "Done: first text after")
    assert len(outcome.requests) == 1


@pytest.mark.parametrize("chat_streams", [True, False], ids=["chat-streams", "chat-waits"])
@pytest.mark.parametrize(
    ("body", "response_field", "notice"),
    [
        (b'{"message":"Workflow was started"}', "output", WORKFLOW_STARTED_ADVICE),  # onreceived.txt
        (
            b'{"result": {"answer": "42"}}',
            "data.answer",
            'n8n\'s reply has no text at `data.answer`: {"result": {"answer": "42"}}. '
            "Set the `response_field` valve to the field that holds the answer.",
        ),
    ],
    ids=["workflow-was-started", "no-such-field"],
)
def test_complete_json_reply_without_an_answer_says_what_to_change(chat, chat_streams, body, response_field, notice):
    reply = Reply(headers=JSON_HEADERS, steps=[body], body_mode="length")

    outcome = talk(chat, [reply], chat_streams=chat_streams, response_field=response_field)

    assert outcome.answer == ([f"⚠️ {notice}"] if chat_streams else f"⚠️ {notice}")
    assert_done(outcome, notice)


# ---------------------------------------------------------------------------
# Plain text


def test_plain_text_is_shown_as_it_arrives(chat):
    steps, gates = gated([b"Hello "], [b"wor"], [b"ld, caf\xc3"], [b"\xa9\n"])

    outcome = talk(chat, [Reply(headers=TEXT_HEADERS, steps=steps)], gates)

    assert outcome.answer == ["Hello ", "wor", "ld, caf", "é\n"]
    assert_done(outcome, "Done: first text after")


# ---------------------------------------------------------------------------
# Once per message: a request that may have reached n8n is never sent again


def complete_reply() -> Reply:
    return Reply(headers=JSON_HEADERS, steps=[CAPTURED_JSON], body_mode="length")


GZIP_HEADERS = [*N8N_HEADERS, ("Content-Encoding", "gzip")]
MAY_HAVE_RUN = {
    "proxy 502": Reply(status=502, headers=TEXT_HEADERS, steps=[b"Bad Gateway"], body_mode="length"),
    "proxy 503": Reply(status=503, headers=TEXT_HEADERS, steps=[b"Service Unavailable"], body_mode="length"),
    "proxy 504": Reply(status=504, headers=TEXT_HEADERS, steps=[b"Gateway Time-out"], body_mode="length"),
    "406": Reply(status=406, headers=TEXT_HEADERS, steps=[b"Not Acceptable"], body_mode="length"),
    "415": Reply(status=415, headers=TEXT_HEADERS, steps=[b"Unsupported Media Type"], body_mode="length"),
    "reset after the request": Reply(reset_before_headers=True),
    "200 then reset": Reply(headers=N8N_HEADERS, steps=["drop"]),
    "broken gzip body": Reply(headers=GZIP_HEADERS, steps=[b"\x1f\x8b\x08\x00not gzip at all"]),
    "malformed header block": Reply(raw_head=b"HTTP/1.1 2x0 OK\r\nContent-Type: application/json\r\n\r\n{}"),
}


@pytest.mark.parametrize("failure", sorted(MAY_HAVE_RUN))
def test_a_failure_after_the_request_left_is_shown_and_never_sent_again(chat, failure):
    outcome = talk(chat, [MAY_HAVE_RUN[failure], complete_reply()])

    assert len(outcome.requests) == 1
    assert outcome.text.startswith("⚠️ "), outcome.text
    assert CAPTURED_TEXT not in outcome.text
    assert outcome.final_status["done"] is True


def test_connection_reset_after_text_keeps_it_and_is_not_retried(chat):
    begin, hello, *_ = n8n_reply(["Hello", " never"])
    steps, gates = gated([begin, hello])
    reply = Reply(headers=N8N_HEADERS, steps=[*steps, "drop"])

    outcome = talk(chat, [reply, complete_reply()], gates)

    assert outcome.answer == ["Hello", f"\n\n[stream interrupted after 1 chunk: connection reset; {WITH_API_KEY}]"]
    assert len(outcome.requests) == 1
    assert_done(outcome, "connection reset")


def test_stream_valve_off_asks_once_for_complete_json(chat):
    outcome = talk(chat, [complete_reply()], stream=False)

    assert outcome.answer == [CAPTURED_TEXT]
    (request,) = outcome.requests
    assert request.json()["stream"] is False
    assert request.headers["accept"] == ACCEPT_COMPLETE
    assert_done(outcome, "Done: first text after")


# ---------------------------------------------------------------------------
# Open WebUI passes a yielded string that starts with "data:" through as a raw SSE line


def data_prefixed_reply(kind: str) -> tuple[Reply, list[Gate], str]:
    """(reply, gates, the text the user must see) for each format that can carry such text."""
    if kind == "n8n":
        steps, gates = gated([n8n_line("begin"), n8n_line("item", "data: one")])
        steps += [n8n_line("item", " and"), n8n_line("item", "data:two"), n8n_line("end")]
        return Reply(headers=N8N_HEADERS, steps=steps), gates, "data: one anddata:two"
    if kind == "plain-text":
        steps, gates = gated([b"Text:\n"])
        return Reply(headers=TEXT_HEADERS, steps=[*steps, b"data: plain"]), gates, "Text:\ndata: plain"
    steps = [b"data: data: [DONE] is text here\n\n", openai_delta("data: {}")]
    return Reply(headers=SSE_HEADERS, steps=steps), [], "data: [DONE] is text heredata: {}"


@pytest.mark.parametrize("kind", ["n8n", "plain-text", "sse"])
def test_text_starting_with_data_prefix_reaches_the_chat_as_text(chat, kind):
    reply, gates, text = data_prefixed_reply(kind)

    outcome = talk(chat, [reply], gates)

    assert "".join(outcome.answer) == text
    assert [chunk for chunk in outcome.answer if chunk.startswith("data:") or not chunk] == []
    assert_done(outcome, "Done: first text after")


def test_thinking_and_its_answer_in_one_read_still_end_the_think_block_in_a_chunk_of_its_own(chat):
    """Open WebUI 0.6.0 ends its reasoning block only when </think> comes in a later chunk than <think>."""
    events = [
        sse({"choices": [{"index": 0, "delta": {"reasoning_content": "Hmm, 2+2"}}]}),
        sse({"choices": [{"index": 0, "delta": {"content": "It is 4."}}]}),
        b"data: [DONE]\n\n",
    ]
    outcome = talk(chat, [Reply(headers=SSE_HEADERS, steps=[b"".join(events)])])

    assert "".join(outcome.answer) == "<think>\nHmm, 2+2\n</think>\n\nIt is 4."
    opened = next(i for i, chunk in enumerate(outcome.answer) if "<think>" in chunk)
    closed = next(i for i, chunk in enumerate(outcome.answer) if "</think>" in chunk)
    assert closed > opened, outcome.answer
