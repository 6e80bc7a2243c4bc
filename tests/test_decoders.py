"""The decoding stage, example by example: lines, server-sent events, sniffing, and the JSON shapes
each producer sends. Bytes in, pieces out; no socket."""

import json

import pytest
import urllib3
from reply_checks import MemoryBody, Shown, read_loop_events, said

from pipe_n8n_stream import (
    BOM,
    EMPTY_REPLY,
    END,
    MAX_LINE_BYTES,
    READ_SIZE,
    WORKFLOW_STARTED,
    BlockEnded,
    ChunkedFraming,
    LineSplitter,
    LineTooLong,
    NodeStarted,
    ReplyDecoder,
    ServerSentEvent,
    SSEDecoder,
    Text,
    Thinking,
    events_of_json,
    sniff,
)

MODEL_FAILED = (
    "The model behind the workflow failed (its credential, URL or model name, or the model server): "
    "open the workflow's Executions list in n8n to see which node failed and why."
)

N8N_JSON = "application/json; charset=utf-8"
META = {"nodeId": "171d4f55", "nodeName": "AI Agent", "itemIndex": 0, "runIndex": 0, "timestamp": 1795572226154}


def decode(*reads: bytes, content_type: str = "", response_field: str = "output") -> list[Shown]:
    decoder = ReplyDecoder(content_type, response_field)
    pieces = [piece for data in reads for piece in decoder.feed(data)]
    return said(pieces + decoder.finish())


def json_events(value: object, response_field: str) -> list[Shown]:
    return said(events_of_json(value, response_field))


# --- LineSplitter -------------------------------------------------------------------------------


def test_lines_end_at_lf_cr_or_crlf():
    assert LineSplitter().feed(b"a\nb\rc\r\nd\n") == ["a", "b", "c", "d"]


def test_crlf_split_across_two_reads_is_one_line_break():
    lines = LineSplitter()
    assert lines.feed(b"a\r") == ["a"]
    assert lines.feed(b"\nb\n") == ["b"]


def test_bare_cr_at_the_end_of_a_read_followed_by_text_is_a_line_break():
    lines = LineSplitter()
    assert lines.feed(b"a\r") == ["a"]
    assert lines.feed(b"b\n") == ["b"]


def test_blank_lines_are_kept():
    assert LineSplitter().feed(b"\n\r\n\r") == ["", "", ""]


def test_a_line_arrives_only_when_its_line_break_does():
    lines = LineSplitter()
    assert lines.feed(b"hel") == []
    assert lines.feed(b"lo") == []
    assert lines.feed(b"\n") == ["hello"]


def test_a_character_cut_between_reads_is_decoded_whole():
    data = "ü🎉\n".encode()
    lines = LineSplitter()
    assert lines.feed(data[:1]) == []
    assert lines.feed(data[1:4]) == []
    assert lines.feed(data[4:]) == ["ü🎉"]


def test_a_byte_that_is_no_utf8_becomes_a_replacement_character_and_the_lines_go_on():
    lines = LineSplitter()
    assert lines.feed(b"ok\r\nfine\na\xffb\nnext\n") == ["ok", "fine", "a\ufffdb", "next"]
    assert lines.feed(b"more\xc3") == []
    assert lines.finish() == "more\ufffd"


def test_control_bytes_are_left_in_the_lines_for_the_format_to_judge():
    lines = LineSplitter()
    assert lines.feed(b"a\tb\x7f\n" + b"\x00" * 5) == ["a\tb\x7f"]
    assert lines.finish() == "\x00" * 5


@pytest.mark.parametrize(
    ("body", "content_type", "shown"),
    [
        (b'{"output":"Gr\xfc\xdfe"}', "application/json", [Text("Gr\ufffd\ufffde")]),
        (
            b'{"message":{"content":"ok "}}\n{"message":{"content":"\xff"}}\n{"message":{"content":"!"}}\n',
            "application/x-ndjson",
            [Text("ok "), Text("\ufffd"), Text("!")],
        ),
        (
            b'data: {"choices":[{"delta":{"content":"ok"}}]}\n\ndata: a\x01\xffb\n\ndata: c\n\n',
            "text/event-stream",
            [Text("ok"), Text("a\ufffdb"), Text("c")],
        ),
    ],
    ids=["complete JSON", "NDJSON", "SSE"],
)
def test_in_json_and_event_streams_a_bad_byte_is_a_replacement_character_and_the_answer_goes_on(
    body, content_type, shown
):
    assert said(read_loop_events(MemoryBody([body]), content_type)[:-1]) == shown


def test_control_characters_a_json_escape_carries_are_dropped_and_the_rest_kept():
    body = b'{"message":{"content":"a\\u0000b\\u0007\\tc\x7f"}}\n{"message":{"content":"\\u001b"}}\n'
    assert said(read_loop_events(MemoryBody([body]), "application/x-ndjson")[:-1]) == [Text("ab\tc\x7f")]


def test_unicode_line_separators_are_not_line_breaks():
    assert LineSplitter().feed("a\u2028b\u0085c\n".encode()) == ["a\u2028b\u0085c"]


def test_a_line_over_the_limit_raises_line_too_long():
    with pytest.raises(LineTooLong):
        LineSplitter(max_line_bytes=8).feed(b"123456789\n")


def test_a_line_growing_over_the_limit_across_reads_raises_before_its_end():
    lines = LineSplitter(max_line_bytes=8)
    assert lines.feed(b"12345") == []
    with pytest.raises(LineTooLong):
        lines.feed(b"6789")


def test_a_line_of_exactly_the_limit_is_fine():
    assert LineSplitter(max_line_bytes=8).feed(b"12345678\n") == ["12345678"]


def test_finish_returns_the_unterminated_last_line_once():
    lines = LineSplitter()
    lines.feed(b"a\nlast")
    assert lines.finish() == "last"
    assert lines.finish() is None


def test_finish_without_a_partial_line_is_none():
    lines = LineSplitter()
    lines.feed(b"a\n")
    assert lines.finish() is None


# --- SSEDecoder (WHATWG event-stream rules) ------------------------------------------------------


def events(*lines: str) -> list[ServerSentEvent]:
    decoder = SSEDecoder()
    return [event for line in lines if (event := decoder.feed(line)) is not None]


def test_one_space_after_the_colon_is_dropped_and_no_more():
    assert [e.data for e in events("data: a", "", "data:b", "", "data:  c", "")] == ["a", "b", " c"]


def test_data_lines_are_joined_with_lf():
    assert events("data: one", "data:", "data: three", "") == [ServerSentEvent("message", "one\n\nthree")]


def test_an_empty_data_line_is_an_event_with_empty_data():
    assert events("data", "") == [ServerSentEvent("message", "")]
    assert events("data:", "") == [ServerSentEvent("message", "")]


def test_event_names_the_next_event_only():
    assert [e.event for e in events("event: add", "data: x", "", "data: y", "")] == ["add", "message"]


def test_id_is_kept_for_later_events_unless_it_holds_nul():
    found = events("id: 7", "data: x", "", "data: y", "", "id: 8\0", "data: z", "")
    assert [e.id for e in found] == ["7", "7", "7"]


def test_retry_comments_and_unknown_fields_make_no_event():
    assert events("retry: 3000", ": keep-alive", "foo: bar", "") == []


def test_comments_and_unknown_fields_do_not_touch_the_data():
    assert events("data: a", ": comment", "foo: bar", "data: b", "") == [ServerSentEvent("message", "a\nb")]


def test_an_event_is_dispatched_on_a_blank_line_only():
    decoder = SSEDecoder()
    assert decoder.feed("data: a") is None
    assert decoder.feed("data: b") is None
    assert decoder.feed("") == ServerSentEvent("message", "a\nb")


def test_a_blank_line_without_data_dispatches_nothing_and_forgets_the_event_name():
    assert events("event: add", "", "data: x", "") == [ServerSentEvent("message", "x")]


def test_the_unterminated_last_event_is_discarded():
    body = b'data: {"text":"kept"}\n\ndata: {"text":"lost"}\n'
    assert decode(body, content_type="text/event-stream") == [Text("kept")]


# --- sniff ---------------------------------------------------------------------------------------


def test_n8n_stream_labelled_application_json_is_read_as_json_lines():
    assert sniff(b'{"type":"begin","metadata":{}}\n', N8N_JSON, at_end=False) == "json"


def test_sse_is_recognised_from_its_fields_without_a_content_type():
    for head in (b"data: x", b"event: y", b"id: 1", b"retry: 5", b": comment"):
        assert sniff(head, "", at_end=False) == "sse", head


def test_event_stream_content_type_wins_over_the_bytes():
    assert sniff(b'{"a": 1}', "text/event-stream", at_end=False) == "sse"


def test_a_bom_is_looked_through():
    assert sniff(BOM + b"data: x", "", at_end=False) == "sse"
    assert sniff(BOM + b"  {", N8N_JSON, at_end=False) == "json"


def test_waits_while_the_head_could_still_be_a_bom():
    assert sniff(BOM[:1], "", at_end=False) is None
    assert sniff(BOM[:2], "", at_end=False) is None
    assert sniff(BOM[:2], "", at_end=True) == "text"


def test_waits_while_the_head_could_still_be_an_sse_field():
    assert sniff(b"da", "", at_end=False) is None
    assert sniff(b"retry", "", at_end=False) is None
    assert sniff(b"da", "", at_end=True) == "text"
    assert sniff(b"dx", "", at_end=False) == "text"


def test_waits_through_leading_whitespace_and_an_empty_body_is_empty():
    assert sniff(b" \r\n\t", N8N_JSON, at_end=False) is None
    assert sniff(b" \r\n\t", N8N_JSON, at_end=True) == "empty"
    assert sniff(b"", N8N_JSON, at_end=True) == "empty"


def test_anything_else_is_plain_text():
    assert sniff(b"Authorization data is wrong!", "", at_end=False) == "text"


def test_a_bom_cut_between_reads_is_still_dropped():
    assert decode(BOM[:1], BOM[1:] + b"data: hi\n\n") == [Text("hi")]


# --- events_of_json: n8n ----------------------------------------------------------------------


def n8n(kind: str, **fields: object) -> dict:
    return {"type": kind, **fields, "metadata": META}


def test_n8n_begin_names_the_node():
    assert json_events(n8n("begin"), "output") == [NodeStarted("AI Agent")]


def test_n8n_item_is_text():
    assert json_events(n8n("item", content='tab\tquote" ünï'), "output") == [Text('tab\tquote" ünï')]


def test_n8n_end_marks_the_block_end_and_keepalive_is_nothing():
    assert json_events(n8n("end"), "output") == [BlockEnded("AI Agent")]
    assert json_events({"type": "keepalive"}, "output") == []


def test_n8n_error_names_the_node_and_the_reason():
    value = {"type": "error", "content": "Original error: TypeError", "metadata": {"nodeName": "AI Agent"}}
    assert json_events(value, "output") == ["n8n error in AI Agent: Original error: TypeError. " + MODEL_FAILED]


def test_n8n_error_without_content_still_says_the_workflow_failed():
    assert json_events({"type": "error", "metadata": {}}, "output") == ["n8n error: the workflow failed"]


def n8n_block(*contents: str) -> bytes:
    """One begin/item.../end block as n8n streams it."""
    lines = [n8n("begin"), *(n8n("item", content=c) for c in contents), n8n("end")]
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def texts(body: bytes) -> list[str]:
    return [p.text for p in decode(body, content_type=N8N_JSON) if isinstance(p, Text)]


def test_respond_to_webhook_item_is_a_json_string_read_at_the_response_field():
    # tests/data/n8n-wire/stream-rtw.txt: a block whose one item is the whole body as a JSON string.
    assert texts(n8n_block('{"output":"Hello\\ntab\\tquote\\" END"}')) == ['Hello\ntab\tquote" END']


def test_respond_to_webhook_item_holding_a_list_is_read_in_its_first_entry():
    assert texts(n8n_block('[{"output":"first"}]')) == ["first"]


def test_a_json_document_without_the_response_field_is_shown_as_it_is():
    for content in ('{"other": 1}', "[1, 2]"):
        assert texts(n8n_block(content)) == [content]


def test_a_model_streaming_json_looking_text_is_shown_byte_for_byte():
    # A model's words are never unwrapped: only a block whose one item is a JSON document is a body.
    streamed = ['{"output": "inner", "score": 0.9}', ' and [{"output":"a"}]']
    assert texts(n8n_block(*streamed)) == streamed
    assert texts(n8n_block("{not json", '{"output":"x"}')) == ["{not json", '{"output":"x"}']


@pytest.mark.parametrize(
    "item", ['{"output": "inner", "score": 0.9}', '[{"output": "a"}, {"output": "b"}]', '{\n  "output": "x"\n}']
)
def test_a_models_json_as_the_one_item_of_its_block_is_shown_byte_for_byte(item):
    """An AI Agent whose model streamed a whole JSON document as one token: models write JSON with
    spaces, n8n's JSON.stringify never does, so these are the model's words, not a Respond to Webhook body."""
    assert texts(n8n_block(item)) == [item]


@pytest.mark.parametrize(
    ("item", "shown"),
    [
        ('{"output":"inner","score":0.9}', "inner"),
        ('[{"output":"a"},{"output":"b"}]', "a"),
        ('{"output":"two words, a\\tand a quote \\" inside"}', 'two words, a\tand a quote " inside'),
    ],
)
def test_a_compact_json_item_alone_in_its_block_is_respond_to_webhooks_body(item, shown):
    """As n8n writes it (tests/data/n8n-wire/stream-rtw.txt): no blank outside strings; blanks inside
    its strings are the answer's own."""
    assert texts(n8n_block(item)) == [shown]


def test_a_held_first_item_is_shown_as_it_came_when_the_stream_stops_after_it():
    body = b"".join(json.dumps(line).encode() + b"\n" for line in (n8n("begin"), n8n("item", content='{"output":"x"}')))
    assert texts(body) == ['{"output":"x"}']


def test_a_held_first_item_is_shown_as_it_came_before_an_error():
    lines = (n8n("begin"), n8n("item", content='{"output":"x"}'), n8n("error", content="boom"))
    pieces = decode(b"".join(json.dumps(line).encode() + b"\n" for line in lines), content_type=N8N_JSON)
    assert pieces == [
        NodeStarted("AI Agent"),
        Text('{"output":"x"}'),
        "n8n error in AI Agent: boom",
    ]


# --- events_of_json: model APIs ----------------------------------------------------------------


def test_openai_delta_with_reasoning_content_is_thinking_then_text():
    value = {"choices": [{"delta": {"reasoning_content": "hmm", "content": "Hi"}}]}
    assert json_events(value, "output") == [Thinking("hmm"), Text("Hi")]


def test_openai_reasoning_field_and_complete_message():
    assert json_events({"choices": [{"delta": {"reasoning": "r"}}]}, "output") == [Thinking("r")]
    assert json_events({"choices": [{"message": {"content": "whole"}}]}, "output") == [Text("whole")]


def test_ollama_chat_message_with_thinking_and_done():
    value = {"model": "m", "message": {"role": "assistant", "thinking": "t", "content": "c"}, "done": True}
    assert json_events(value, "output") == [Thinking("t"), Text("c"), END]


def test_ollama_generate_response_not_done():
    value = {"model": "m", "response": "word", "done": False}
    assert json_events(value, "output") == [Text("word")]


def test_anthropic_text_and_thinking_deltas():
    text = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}}
    thinking = {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "t"}}
    assert json_events(text, "output") == [Text("Hi")]
    assert json_events(thinking, "output") == [Thinking("t")]


def test_anthropic_bookkeeping_events_are_nothing_and_message_stop_ends():
    for kind in ("ping", "message_start", "content_block_start", "content_block_stop", "message_delta"):
        assert json_events({"type": kind}, "output") == [], kind
    assert json_events({"type": "message_stop"}, "output") == [END]


def test_anthropic_error_event_is_an_error_not_an_n8n_line():
    value = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    assert json_events(value, "output") == ["overloaded_error: Overloaded"]


# --- errors, complete replies, response_field ----------------------------------------------------


@pytest.mark.parametrize(
    ("error", "message"),
    [
        ("boom", "boom"),
        ({"message": "Bad key", "type": "invalid_request_error"}, "invalid_request_error: Bad key"),
        ({"detail": "nope"}, "nope"),
    ],
)
def test_an_error_object_is_an_error_in_every_format(error, message):
    line = json.dumps({"error": error}).encode()
    for body, content_type in (
        (line, N8N_JSON),
        (line + b"\n" + line + b"\n", "application/x-ndjson"),
        (b"data: " + line + b"\n\n", "text/event-stream"),
    ):
        assert message in decode(body, content_type=content_type), content_type


def test_workflow_was_started_is_explained():
    assert decode(b'{"message":"Workflow was started"}', content_type=N8N_JSON) == [WORKFLOW_STARTED]


@pytest.mark.parametrize(
    ("value", "field", "text"),
    [
        ({"output": "o"}, "output", "o"),
        ([{"output": "first"}, {"output": "second"}], "0.output", "first"),
        ([{"output": "a"}, {"output": "b"}], "output", "a\n\nb"),
        ({"data": {"answer": "deep"}}, "data.answer", "deep"),
        ({"data": [{"x": "in list"}]}, "data.0.x", "in list"),
        ({"text": "fallback"}, "data.answer", "fallback"),
        ({"choices": [{"message": {"content": "oai"}}]}, "output", "oai"),
    ],
)
def test_response_field_dotted_paths(value, field, text):
    assert json_events(value, field) == [Text(text)]


def test_a_complete_reply_without_text_says_which_valve_to_set():
    pieces = decode(b'{"result": 42}', content_type=N8N_JSON)
    assert len(pieces) == 1 and isinstance(pieces[0], str)
    assert "response_field" in pieces[0] and '{"result": 42}' in pieces[0]


def test_a_pretty_printed_complete_reply_is_read_whole():
    body = b'{\n  "output": "pretty\\nprinted"\n}\n'
    assert decode(body[:7], body[7:], content_type=N8N_JSON) == [Text("pretty\nprinted")]


def test_an_empty_body_is_empty_and_says_why():
    decoder = ReplyDecoder(N8N_JSON)
    assert said(decoder.finish()) == [EMPTY_REPLY]
    assert decoder.format == "empty"
    assert decoder.empty
    assert decoder.ended


def test_plain_text_comes_out_as_sent():
    body = "Authorization data is wrong!\r\nünï 🎉".encode()
    pieces = decode(body[:30], body[30:33], body[33:])
    assert "".join(p.text for p in pieces) == body.decode()
    assert {type(p) for p in pieces} == {Text}


# --- Regressions caught by the property tests and the fuzzer ------------------------------------


def test_lf_alone_in_a_read_after_a_cr_does_not_swallow_the_next_blank_line():
    """CR | LF | LF in three reads is a line break and a blank line; the second LF was dropped, so
    an SSE event was not dispatched and merged with the next one."""
    lines = LineSplitter()
    assert lines.feed(b"a\r") == ["a"]
    assert lines.feed(b"\n") == []
    assert lines.feed(b"\n") == [""]
    reads = [b"data: x\r", b"\n", b"\n", b"data: y\n\n"]
    assert decode(*reads, content_type="text/event-stream") == [Text("x"), Text("y")]


def test_nothing_after_the_end_marker_counts_even_in_the_same_read():
    """The reader stops at the read that carries the end: text after it showed only when it came
    in the same read."""
    body = b'data: {"text":"a"}\n\ndata: [DONE]\n\ndata: {"text":"after"}\n\n'
    expected = [Text("a"), END]
    assert decode(body, content_type="text/event-stream") == expected
    assert decode(body[:40], body[40:], content_type="text/event-stream") == expected


def test_a_list_or_object_as_type_is_no_type_not_a_crash():
    """{"type": []} raised TypeError (unhashable) in is_n8n_chunk."""
    assert json_events({"type": []}, "output") == []
    assert json_events({"type": {"a": 1}, "metadata": {}}, "output") == []
    assert json_events({"type": ["item"], "content": "x"}, "output") == [Text("x")]


@pytest.mark.parametrize(
    "value",
    [
        {"type": "content_block_delta", "delta": "x"},
        {"type": "content_block_delta", "delta": ["x"]},
        {"choices": 5},
        {"choices": {"a": 1}},
        {"choices": [{"delta": "x"}]},
        {"choices": [{"delta": {}, "message": "x"}]},
        {"type": "begin", "metadata": "x"},
        {"type": "error", "metadata": ["x"]},
    ],
)
def test_odd_shapes_in_producer_fields_read_as_nothing_not_a_crash(value):
    """A string or list where an object belongs raised AttributeError/TypeError/KeyError."""
    assert all(isinstance(p, str | Text) for p in json_events(value, "output"))


def test_non_string_thinking_or_node_name_is_ignored():
    """A number as Anthropic's thinking became Thinking(5) and broke the renderer's str +;
    a number as nodeName became a node piece that is no name."""
    thinking = {"type": "content_block_delta", "delta": {"type": "thinking_delta", "thinking": 5}}
    assert json_events(thinking, "output") == []
    assert json_events({"type": "begin", "metadata": {"nodeName": 5}}, "output") == []


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"[" * 100_000 + b"\n", N8N_JSON),
        (b"data: " + b"[" * 100_000 + b"\n\n", "text/event-stream"),
        (b'{"type":"item","content":"' + b"[" * 100_000 + b'"}\n', N8N_JSON),
    ],
    ids=["json-line", "sse-data", "n8n-item-content"],
)
def test_deeply_nested_json_is_not_json_rather_than_a_recursion_error(body, content_type):
    """json.loads raises RecursionError (not ValueError) on deep nesting: it escaped the decoder."""
    pieces = decode(body, content_type=content_type)
    assert pieces and all(isinstance(p, Text | str) for p in pieces)


def test_a_superscript_digit_in_response_field_is_a_key_not_a_crash():
    """`²`.isdigit() is True but int('²') raises: the path walk used isdigit."""
    assert json_events([{"output": "x"}], "²") == [Text("x")]
    assert json_events({"²": "y"}, "²") == [Text("y")]


def test_data_lines_that_never_meet_a_blank_line_stop_at_the_limit_instead_of_piling_up():
    """SSEDecoder kept every data line until a blank line: an endless event grew without bound."""
    decoder = SSEDecoder(max_event_bytes=16)
    assert decoder.feed("data: 12345678") is None
    with pytest.raises(LineTooLong):
        decoder.feed("data: 12345678")


def test_an_event_under_the_limit_resets_the_count_when_dispatched():
    decoder = SSEDecoder(max_event_bytes=16)
    for _ in range(3):
        assert decoder.feed("data: 12345678") is None
        assert decoder.feed("") == ServerSentEvent("message", "12345678")


def test_a_long_blank_head_before_json_reads_the_same_in_one_read_or_many():
    """Past MAX_LINE_BYTES of blank space the format was decided from what had come so far: JSON
    when `{` came in the same read, plain text when the blank space came in reads of its own."""
    body = b"\n" * (MAX_LINE_BYTES + READ_SIZE) + b'{"output":"hi"}\n'
    one_read = decode(body, content_type=N8N_JSON)
    many_reads = decode(*(body[i : i + READ_SIZE] for i in range(0, len(body), READ_SIZE)), content_type=N8N_JSON)
    joined = "".join(p.text for p in many_reads)
    assert [type(p) for p in one_read] == [Text] and one_read[0].text == joined


@pytest.mark.parametrize("data", ['"Rate limited"', "429", "true"])
def test_an_sse_error_event_whose_data_is_a_json_number_or_string_is_still_an_error(data):
    """A JSON scalar in an `event: error` came out as plain text: only non-JSON data kept the kind."""
    body = f"event: error\ndata: {data}\n\n".encode()
    assert decode(body, content_type="text/event-stream") == [data]
    assert decode(f"data: {data}\n\n".encode(), content_type="text/event-stream") == [Text(data)]


def test_a_lone_surrogate_from_a_json_escape_becomes_a_replacement_character():
    # json.loads turns "\ud800" into a lone surrogate, which Open WebUI could not encode as UTF-8.
    item = b'{"type":"item","content":"a\\ud800b \\ud83d\\ude00","metadata":{"nodeName":"AI Agent"}}\n'
    pieces = decode(item, content_type=N8N_JSON)
    assert pieces == [Text("a\ufffdb \U0001f600")]
    pieces[0].text.encode("utf-8")


# --- ChunkedFraming (HTTP/1.1 chunked transfer coding, read straight from the socket) ---------------


def chunked(*chunks: bytes, trailer: bytes = b"") -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n" + trailer + b"\r\n"


def test_chunked_framing_gives_the_body_whatever_the_reads():
    wire = chunked(b'{"type":"item"}\n', b"\r\n", b"x" * 300, trailer=b"X-Trailer: 1\r\n")
    body = b'{"type":"item"}\n\r\n' + b"x" * 300
    for cut in range(len(wire) + 1):
        framing = ChunkedFraming()
        got = framing.feed(wire[:cut]) + framing.feed(wire[cut:])
        assert got == body, cut
        assert framing.ended, cut


def test_chunked_framing_hands_over_a_chunks_data_before_the_chunk_is_complete():
    framing = ChunkedFraming()
    assert framing.feed(b"a\r\nHello") == b"Hello"
    assert framing.feed(b" wor") == b" wor"
    assert framing.feed(b"l\r\n") == b"l"
    assert not framing.ended


def test_chunked_framing_takes_extensions_and_upper_case_hex():
    framing = ChunkedFraming()
    assert framing.feed(b"1A;name=value\r\n" + b"z" * 26 + b"\r\n0\r\n\r\n") == b"z" * 26
    assert framing.ended


def test_chunked_framing_ignores_what_follows_the_end():
    framing = ChunkedFraming()
    assert framing.feed(chunked(b"done") + b"HTTP/1.1 200 OK\r\n") == b"done"
    assert framing.ended


@pytest.mark.parametrize(
    "wire",
    [b"zz\r\nabc\r\n", b"-1\r\n", b"0x5\r\nhello\r\n", b"1_0\r\n", b"\r\n", b"3\r\nabcdef\r\n", b"1" * 5000],
    ids=["not-hex", "negative", "0x-prefix", "underscore", "empty-size", "data-longer-than-size", "endless-size"],
)
def test_broken_chunked_framing_is_a_protocol_error(wire):
    with pytest.raises(urllib3.exceptions.ProtocolError):
        ChunkedFraming().feed(wire)


def test_a_value_that_is_no_n8n_line_inside_n8n_s_stream_is_read_on_its_own():
    """Found by the property tests: a JSON string after a `begin` line was taken for an n8n line (AttributeError)."""
    body = b'{"type":"begin","metadata":{"nodeName":"A"}}\r""'
    assert decode(body) == [NodeStarted("A"), "The workflow's reply (n8n stream) contained no text."]
    held = b'{"type":"begin","metadata":{"nodeName":"A"}}\n{"type":"item","content":"{}"}\n"after"\n'
    assert [p for p in decode(held) if isinstance(p, Text)] == [Text("{}"), Text("after")]
