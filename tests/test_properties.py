"""Properties of the decoding stage: the answer never depends on where the network cuts the bytes.

For each wire format the pipe reads (n8n stream, SSE, NDJSON, complete JSON, plain text), a
generated reply is read in one go, in random reads, in reads cut where naive readers break (inside
CRLF, a UTF-8 character, the BOM, a JSON string) and one byte at a time: the pieces must be the
same, and exactly the tokens that went in. Arbitrary bytes must never raise (but LineTooLong),
never hang, and never make the decoder hold more than the line limit.

How many cases run is set by the hypothesis profile (tests/conftest.py): `ci` by default,
HYPOTHESIS_PROFILE=dev for a quick look, =deep for a long hunt.
"""

from __future__ import annotations

import json
import operator
import random
import re
import time
import tracemalloc
from dataclasses import dataclass

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from reply_checks import (
    Answer,
    MemoryBody,
    Shown,
    check_split_invariance,
    chunk_encoded,
    meaning,
    one_byte_reads,
    read_reply,
    reads,
    run_read_loop,
)

from pipe_n8n_stream import (
    BOM,
    END,
    MAX_LINE_BYTES,
    NOT_TEXT,
    READ_SIZE,
    BlockEnded,
    File,
    LineTooLong,
    NodeStarted,
    ReplyDecoder,
    Text,
    Thinking,
    shorten,
)

# --- generated content ---------------------------------------------------------------------------

# Characters that break weaker parsers, mixed in so they show up often; openings that do too.
AWKWARD_CHARS = '{}"\\\n\r\u2028\u2029\x85\x00\t🎉ü\ufeff:'
AWKWARD_STARTS = ["data: ", "data:", "[DONE]", '{"output":', "\r\n", "👩‍👩‍👧", "event: x", " ", "0", "null", '"q"']
AWKWARD_STARTS += ['{"output": "inner", "score": 0.9}', '[{"output":"a"}]', "{}", "[]"]
# Two plain alphabets, concatenated: a text() over a one_of() alphabet is ten times slower to draw.
unicode_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=8)
awkward_text = st.text(AWKWARD_CHARS + "a ", max_size=6)
token = st.one_of(
    unicode_text,
    st.builds(operator.add, awkward_text, unicode_text),
    st.builds(operator.add, unicode_text, awkward_text),
    st.builds(operator.add, st.sampled_from(AWKWARD_STARTS), st.builds(operator.add, unicode_text, awkward_text)),
)
node_name = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=12)


def is_json_document(text: str) -> bool:
    """A whole JSON object or list: as the ONE item of an n8n block it is Respond to Webhook's body and
    unwrapped by design (tests/test_decoders.py); anywhere else a model's words, shown as they are."""
    if not text.lstrip().startswith(("{", "[")):
        return False
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


item_token = token.filter(lambda t: not is_json_document(t))


def as_shown(text: str) -> str:
    """A model's words as the chat shows them: without the C0 control characters but tab, LF and CR
    (a JSON escape can carry them, an event stream's data too); DEL and the rest are kept."""
    return re.sub("[\x00-\x08\x0b\x0c\x0e-\x1f]", "", text)


def text_pieces(text: str | None, kind: type[Text | Thinking] = Text) -> list[Shown]:
    shown = as_shown(text or "")
    return [kind(shown)] if shown else []


maybe_token = st.one_of(st.none(), token)


@dataclass(frozen=True)
class Reply:
    """A generated reply: its bytes, how it is labelled, and what the chat must get from it."""

    wire: bytes
    content_type: str
    expected: tuple[Shown, ...]
    format: str
    response_field: str = "output"


def as_json(value: object, ascii_only: bool) -> str:
    return json.dumps(value, ensure_ascii=ascii_only, separators=(",", ":"))


# One line ending for the whole reply, or LF and CRLF mixed line by line (bit i of the number: CRLF).
# CR alone does not mix: a CR line end followed by an LF blank line is one CRLF.
line_endings = st.one_of(st.sampled_from(("\n", "\r\n", "\r")), st.integers(1, 2**32 - 1))


def lines_to_wire(lines: list[str], endings: str | int, bom: bool, last_eol: bool = True) -> bytes:
    if isinstance(endings, str):
        ends = [endings] * len(lines)
    else:
        ends = ["\r\n" if endings >> (i % 32) & 1 else "\n" for i in range(len(lines))]
    ends[-1] = ends[-1] if last_eol else ""
    return (BOM if bom else b"") + "".join(line + end for line, end in zip(lines, ends, strict=True)).encode()


# --- n8n stream ----------------------------------------------------------------------------------


@st.composite
def n8n_replies(draw: st.DrawFn) -> Reply:
    """Webhook 'Streaming' + AI Agent: begin/item/end blocks (several with tools), keepalives, and
    maybe an error with no end after it, as in the captures. Items are any text, JSON-looking text
    included: a model's words come out exactly as it streamed them."""
    ascii_only = draw(st.booleans())
    lines: list[str] = []
    expected: list[Shown] = []
    for _ in range(draw(st.integers(1, 2))):
        node = draw(node_name)
        meta = {"nodeId": "171d4f55", "nodeName": node, "itemIndex": 0, "runIndex": 0, "timestamp": 1795572226154}
        lines.append(as_json({"type": "begin", "metadata": meta}, ascii_only))
        expected.append(NodeStarted(node))
        contents = draw(st.lists(token, max_size=5))
        if len(contents) == 1 and is_json_document(contents[0]):
            contents = [draw(item_token)]
        for content in contents:
            if draw(st.integers(0, 5)) == 0:
                lines.append('{"type":"keepalive"}')
            lines.append(as_json({"type": "item", "content": content, "metadata": meta}, ascii_only))
            expected += text_pieces(content)
        lines.append(as_json({"type": "end", "metadata": meta}, ascii_only))
        expected.append(BlockEnded(node))
    if draw(st.booleans()):
        reason = draw(maybe_token)
        lines.append(as_json({"type": "error", "content": reason, "metadata": {"nodeName": node}}, ascii_only))
        shown = shorten(reason) if reason and reason.strip() else "the workflow failed"  # error reasons are shortened
        expected.append(f"n8n error in {node}: {shown}")
    wire = lines_to_wire(lines, draw(line_endings), draw(st.booleans()), draw(st.booleans()))
    content_type = draw(st.sampled_from(("application/json; charset=utf-8", "")))
    return Reply(wire, content_type, tuple(expected), "n8n stream")


# --- SSE -----------------------------------------------------------------------------------------

SSE_EXTRAS = (": keep-alive", "retry: 3000", "id: 42", "foo: bar", ":", "event: ping")
AFTER_END = st.sampled_from(((), ('data: {"choices":[{"delta":{"content":"after end"}}]}', "")))
UNTERMINATED = st.sampled_from(((), ("data: unterminated",)))


def sse_raw_tokens(text: str) -> bool:
    """A raw (non-JSON) data payload that reads back as itself, less the characters the chat leaves out:
    no line breaks (they split it into data lines), not [DONE], not a JSON object or list (those go
    through the JSON rules)."""
    return not any(c in text for c in "\r\n") and text.strip() != "[DONE]" and not is_json_document(text)


sse_raw_token = token.filter(sse_raw_tokens)


@st.composite
def sse_events(draw: st.DrawFn, ascii_only: bool) -> tuple[list[str], list[Shown]]:
    kind = draw(st.sampled_from(("openai", "openai-thinking", "anthropic", "anthropic-thinking", "raw", "error")))
    if kind in ("raw", "error"):
        text = draw(sse_raw_token)
        lines = (["event: error"] if kind == "error" else []) + [f"data: {text}"]
        shown = as_shown(text)
        return lines, [shown if kind == "error" else Text(shown)] if shown else []
    text = draw(token)
    if kind.startswith("openai"):
        field = "reasoning_content" if kind.endswith("thinking") else "content"
        data = {"id": "c1", "choices": [{"index": 0, "delta": {field: text}}]}
        lines = [f"data: {as_json(data, ascii_only)}"]
    else:
        delta = {"type": "thinking_delta", "thinking": text} if kind.endswith("thinking") else {"text": text}
        delta.setdefault("type", "text_delta")
        data = {"type": "content_block_delta", "index": 0, "delta": delta}
        lines = ["event: content_block_delta", f"data: {as_json(data, ascii_only)}"]
    return lines, text_pieces(text, Thinking if kind.endswith("thinking") else Text)


@st.composite
def sse_replies(draw: st.DrawFn) -> Reply:
    """OpenAI and Anthropic streams, raw data and error events, with comments, id, retry and unknown
    fields between events; any line ending (one per stream); maybe [DONE] or message_stop, maybe
    followed by bytes that must not count."""
    ascii_only = draw(st.booleans())
    content_type = draw(st.sampled_from(("text/event-stream", "text/event-stream; charset=utf-8", "")))
    lines: list[str] = []
    expected: list[Shown] = []
    for index in range(draw(st.integers(1, 6))):
        extras = draw(st.lists(st.sampled_from(SSE_EXTRAS), max_size=2))
        if index == 0 and not content_type:
            extras = [e for e in extras if not e.startswith("foo")]  # the bytes must still say SSE
        event_lines, pieces = draw(sse_events(ascii_only))
        lines += [*extras, *event_lines, ""]
        expected += pieces
    end = draw(st.sampled_from(("", "data: [DONE]", 'event: message_stop\ndata: {"type":"message_stop"}')))
    if end:
        lines += [*end.split("\n"), ""]
        expected.append(END)
        lines += draw(AFTER_END)
    lines += draw(UNTERMINATED)  # discarded: no blank line after it
    wire = lines_to_wire(lines, draw(line_endings), draw(st.booleans()), last_eol=lines[-1] == "")
    return Reply(wire, content_type, tuple(expected), "SSE")


# --- NDJSON (Ollama) -----------------------------------------------------------------------------


@st.composite
def ndjson_replies(draw: st.DrawFn) -> Reply:
    """Ollama's /api/chat stream: message content and thinking per line, done:true at the end."""
    ascii_only = draw(st.booleans())
    lines: list[str] = []
    expected: list[Shown] = []
    for content, thinking in draw(st.lists(st.tuples(token, maybe_token), min_size=2, max_size=6)):
        message = {"role": "assistant", "content": content, **({"thinking": thinking} if thinking is not None else {})}
        lines.append(as_json({"model": "llama3", "message": message, "done": False}, ascii_only))
        expected += text_pieces(thinking, Thinking)
        expected += text_pieces(content)
        if draw(st.integers(0, 5)) == 0:
            lines.append("")
    if draw(st.booleans()):
        lines.append(as_json({"model": "llama3", "message": {"role": "assistant", "content": ""}, "done": True}, False))
        expected.append(END)
    wire = lines_to_wire(lines, draw(line_endings), draw(st.booleans()), draw(st.booleans()))
    content_type = draw(st.sampled_from(("application/x-ndjson", "application/json", "")))
    return Reply(wire, content_type, tuple(expected), "NDJSON")


# --- complete JSON -------------------------------------------------------------------------------


nonempty_token = token.filter(as_shown)


@st.composite
def complete_json_replies(draw: st.DrawFn) -> Reply:
    """'When Last Node Finishes' and Respond to Webhook: {"output": ...} or [{"output": ...}], on
    one line or pretty-printed, with or without a final line break."""
    text = draw(nonempty_token)
    shape = draw(st.sampled_from(("object", "list", "list-first", "nested")))
    value, field = {
        "object": ({"output": text}, "output"),
        "list": ([{"output": text}], "output"),
        "list-first": ([{"output": text}, {"output": "second"}], "0.output"),
        "nested": ({"data": {"answer": text}, "meta": [1, 2]}, "data.answer"),
    }[shape]
    indent = draw(st.sampled_from((None, 2)))
    body = json.dumps(value, ensure_ascii=draw(st.booleans()), indent=indent)
    if indent and draw(st.booleans()):
        body = body.replace("\n", "\r\n")
    wire = (BOM if draw(st.booleans()) else b"") + body.encode() + draw(st.sampled_from((b"", b"\n")))
    content_type = draw(st.sampled_from(("application/json; charset=utf-8", "")))
    return Reply(wire, content_type, (Text(as_shown(text)),), "complete JSON", field)


# --- plain text ----------------------------------------------------------------------------------


@st.composite
def text_replies(draw: st.DrawFn) -> Reply:
    """A plain-text body, arbitrary from its first character when labelled text/plain. Unlabelled
    (or text/html), the first bytes decide, so it starts with one the sniffer cannot take for JSON
    or SSE; after that anything goes, `data:` and `{` at line starts included."""
    content_type = draw(st.sampled_from(("text/plain; charset=utf-8", "text/html; charset=utf-8", "")))
    text = NOT_TEXT.sub("", "".join(draw(st.lists(token, max_size=8))))  # no text: tests below
    if "text/plain" in content_type:
        assume(text.strip(" \t\r\n") and not text.startswith("\ufeff"))  # blank is empty; a BOM is no text
    else:
        text = draw(first_plain_char) + text
    return Reply(text.encode(), content_type, (Text(text),), "text")


first_plain_char = st.characters(exclude_categories=["Cs", "Zs", "Cc"], exclude_characters="{[:deir\ufeff")


# --- how the reads fall ----------------------------------------------------------------------------


def awkward_cuts(wire: bytes) -> list[int]:
    """Where naive readers break: between CR and LF, inside a UTF-8 character, inside the BOM, just
    after a quote or backslash (inside a JSON string)."""
    cuts = [1, 2] if wire.startswith(BOM) else []
    for i in range(1, len(wire)):
        if wire[i - 1 : i + 1] == b"\r\n" or 0x80 <= wire[i] < 0xC0 or wire[i - 1] in b'"\\':
            cuts.append(i)
    return cuts


seeds = st.integers(0, 2**32 - 1)


def random_reads(seed: int, wire: bytes) -> list[bytes]:
    """Up to 24 cuts, about half of them awkward ones. From one drawn seed rather than one draw per
    cut: generating a case stays cheap, and a failure prints its reads anyway."""
    rng = random.Random(seed)
    awkward = awkward_cuts(wire)
    last = max(1, len(wire) - 1)
    cuts = [rng.choice(awkward) if awkward and rng.random() < 0.5 else rng.randint(1, last) for _ in range(24)]
    return reads(wire, cuts[: rng.randint(1, 24)])


def shown_by_the_chat(reply: Reply) -> tuple[Shown, ...]:
    """What went in, and the pipe's verdict when none of it is text or an error: a reply the user can
    read, never an empty message."""
    if any(isinstance(p, Text | str) for p in reply.expected):
        return reply.expected
    return (*reply.expected, f"The workflow's reply ({reply.format}) contained no text.")


def check_reply(reply: Reply, seed: int) -> None:
    """Same answer in one read, in random reads and byte by byte, and in HTTP chunks cut anywhere read
    in random reads; and it is exactly what went in."""
    args = (reply.content_type, reply.response_field)
    whole = check_split_invariance(reply.wire, random_reads(seed, reply.wire), *args)
    check_split_invariance(reply.wire, one_byte_reads(reply.wire), *args)
    assert meaning(whole) == meaning(Answer(shown_by_the_chat(reply), reply.format))
    rng = random.Random(seed)
    framed = chunk_encoded(reply.wire, [rng.randint(1, max(1, len(reply.wire))) for _ in range(8)])
    assert meaning(read_reply(random_reads(seed + 1, framed), *args, framed=True)) == meaning(whole)


@given(reply=n8n_replies(), seed=seeds)
def test_n8n_stream_comes_out_as_sent_whatever_the_reads(reply, seed):
    check_reply(reply, seed)


@given(reply=sse_replies(), seed=seeds)
def test_sse_comes_out_as_sent_whatever_the_reads(reply, seed):
    check_reply(reply, seed)


@given(reply=ndjson_replies(), seed=seeds)
def test_ndjson_comes_out_as_sent_whatever_the_reads(reply, seed):
    check_reply(reply, seed)


@given(reply=complete_json_replies(), seed=seeds)
def test_complete_json_comes_out_as_sent_whatever_the_reads(reply, seed):
    check_reply(reply, seed)


@given(reply=text_replies(), seed=seeds)
def test_plain_text_comes_out_as_sent_whatever_the_reads(reply, seed):
    check_reply(reply, seed)


# --- arbitrary bytes -----------------------------------------------------------------------------

WIRE_BITS = [b"data:", b"data: ", b"event: error", b"id: 1", b"retry: 9", b": c", b"{", b"}", b"[", b"]", b'"']
WIRE_BITS += [b"\\", b"\r", b"\n", b"\r\n", b"\n\n", BOM, BOM[:2], b"\xff", b"\xc3", b"\xf0\x9f", b"[DONE]", b" "]
WIRE_BITS += [b'{"type":"item","content":"', b'{"type":"begin","metadata":{"nodeName":"A"}}', b'"}\n']
WIRE_BITS += [b'{"choices":[{"delta":{"content":"x"}}]}', b'{"type":"content_block_delta","delta":']
WIRE_BITS += [b'{"model":"m","message":{"content":"x"},"done":true}', b'{"error":', b'{"output":"x"}']
wire_like = st.lists(st.one_of(st.sampled_from(WIRE_BITS), st.binary(max_size=8)), max_size=40).map(b"".join)
# Nesting deep enough for json.loads to raise RecursionError, where a JSON value may start.
deep_nesting = st.builds(
    operator.add,
    st.sampled_from((b"", b"data: ", b'{"type":"item","content":"')),
    st.integers(900, 3000).map(lambda depth: b'{"a":' * (depth // 5) if depth % 2 else b"[" * depth),
)
content_types = st.sampled_from(
    ["", "application/json; charset=utf-8", "text/event-stream", "application/x-ndjson", "text/plain"]
)
response_fields = st.sampled_from(["output", "0.output", "data.answer", "choices.0.message.content"])


@given(
    body=st.one_of(wire_like, st.binary(max_size=600), deep_nesting), content_type=content_types, field=response_fields
)
@settings(deadline=2000)  # a few hundred bytes read byte by byte take milliseconds: seconds mean a hang
def test_arbitrary_bytes_never_raise_and_mean_the_same_whatever_the_reads(body, content_type, field):
    check_split_invariance(body, one_byte_reads(body), content_type, field)
    check_split_invariance(body, reads(body, range(0, len(body), 7)), content_type, field)


@given(body=st.one_of(wire_like, st.binary(max_size=400)), content_type=content_types, seed=seeds)
def test_arbitrary_bytes_in_random_reads_mean_the_same(body, content_type, seed):
    check_split_invariance(body, random_reads(seed, body), content_type)


# Producers' field names with any JSON under them: a string where an object belongs, a list as `type`.
PRODUCER_KEYS = ("type", "delta", "choices", "metadata", "nodeName", "message", "error", "content", "thinking")
PRODUCER_KEYS += ("text", "output", "done", "model", "response", "reasoning_content", "0", "detail", "data")
TYPE_NAMES = ("item", "begin", "end", "error", "keepalive", "content_block_delta", "thinking_delta", "message_stop")
json_leaves = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=4))
json_values = st.recursive(
    st.one_of(json_leaves, st.sampled_from(TYPE_NAMES)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(PRODUCER_KEYS), inner, max_size=4)
    ),
    max_leaves=8,
)
producer_like = st.one_of(
    st.dictionaries(st.sampled_from(PRODUCER_KEYS), json_values, min_size=1, max_size=5),
    st.fixed_dictionaries(
        {"type": st.sampled_from(TYPE_NAMES)}, optional={key: json_values for key in PRODUCER_KEYS[1:9]}
    ),
)
WRAPPINGS = {
    "n8n line": (b"%s\n", "application/json; charset=utf-8"),
    "sse data": (b"data: %s\n\n", "text/event-stream"),
    "sse error": (b"event: error\ndata: %s\n\n", "text/event-stream"),
    "ndjson": (b"%s\n%s\n", "application/x-ndjson"),
    "complete": (b"%s", ""),
}


@given(value=st.one_of(producer_like, json_values), wrapping=st.sampled_from(sorted(WRAPPINGS)), seed=seeds)
def test_any_json_in_producer_fields_never_raises_and_means_the_same(value, wrapping, seed):
    template, content_type = WRAPPINGS[wrapping]
    line = json.dumps(value).encode()
    body = template % ((line,) * template.count(b"%s"))
    answer = check_split_invariance(body, random_reads(seed, body), content_type)
    assert all(not isinstance(p, Text) or p.text for p in answer.pieces)


@given(payload=st.binary(max_size=300), seed=seeds)
def test_bytes_that_are_no_text_never_reach_the_chat_as_text(payload, seed):
    """Plain text is shown up to its first byte that is no UTF-8 or a control character; then the reply
    ends with a notice. Never a replacement character for a byte, never a control character."""
    body = b"x" + payload
    answer = check_split_invariance(body, random_reads(seed, body), "text/plain")
    decoded = body.decode("utf-8", "surrogateescape")
    bad = NOT_TEXT.search(decoded)
    shown = "".join(p.text for p in answer.pieces if isinstance(p, Text))
    assert shown == (decoded[: bad.start()] if bad else decoded)
    assert not NOT_TEXT.search(shown)
    assert "\ufffd" not in shown or "\ufffd" in decoded  # a replacement character only where the body has one
    assert bool(bad) == any(isinstance(p, str) and "stopped being text" in p for p in answer.pieces)


@given(payload=st.binary(min_size=1, max_size=300), seed=seeds)
def test_a_body_that_starts_as_no_text_is_a_file_whatever_the_reads(payload, seed):
    body = b"\x89PNG" + payload
    answer = check_split_invariance(body, random_reads(seed, body), "")
    assert answer.format == "file"
    assert answer.pieces == (File("", "image/png", body),)


@given(payload=st.binary(max_size=200).map(lambda b: bytes(c for c in b if c >= 0x20 and c not in b'"\\')))
def test_an_n8n_item_that_is_no_utf8_shows_replacement_characters_and_the_stream_goes_on(payload):
    """RFC 8259: JSON text is UTF-8; a byte that is not decodes as U+FFFD, it never ends the answer."""
    begin = b'{"type":"begin","metadata":{"nodeName":"AI Agent"}}\n'
    item = b'{"type":"item","content":"' + payload + b'","metadata":{"nodeName":"AI Agent"}}\n'
    after = b'{"type":"item","content":"!","metadata":{"nodeName":"AI Agent"}}\n'
    body = begin + item + after
    answer = check_split_invariance(body, one_byte_reads(body), "application/json")
    words = payload.decode("utf-8", "replace")
    assert answer.pieces == (NodeStarted("AI Agent"), *([Text(words)] if words else []), Text("!"))


# --- the line limit --------------------------------------------------------------------------------


def retained_while_fed(decoder: ReplyDecoder, unit: bytes, total: int) -> tuple[int, bool]:
    """Feed `unit` repeated to `total` bytes in READ_SIZE reads; the most memory the decoder kept
    between two reads, and whether it stopped with LineTooLong."""
    body = unit * (READ_SIZE // len(unit) + 1)
    tracemalloc.start()
    try:
        baseline, most, fed = tracemalloc.get_traced_memory()[0], 0, 0
        while fed < total:
            try:
                decoder.feed(body[:READ_SIZE])
            except LineTooLong:
                return most, True
            fed += READ_SIZE
            most = max(most, tracemalloc.get_traced_memory()[0] - baseline)
        return most, False
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(
    ("head", "unit", "content_type"),
    [
        (b'{"output":"', b"x" * 100, "application/json"),  # a JSON line that never ends
        (b"", b"data: " + b"x" * 94, "text/event-stream"),  # an SSE line that never ends
        (b"", b"data: " + b"x" * 93 + b"\n", "text/event-stream"),  # data lines, never a blank line
        (b"", b"  " * 50, ""),  # blank space, the format never decided
        (b"[\n", b'"' + b"x" * 97 + b'",\n', "application/json"),  # a pretty-printed body that never ends
        (b"hello", "ünïcødé text without end ".encode() * 4, "text/plain"),  # plain text: nothing kept
    ],
    ids=["json-line", "sse-line", "sse-data-lines", "blank", "json-body", "text"],
)
def test_the_decoder_never_holds_more_than_the_line_limit(head, unit, content_type):
    decoder = ReplyDecoder(content_type)
    decoder.feed(head)
    most, _ = retained_while_fed(decoder, unit, total=4 * MAX_LINE_BYTES)
    # The limit counts the reply's bytes; Python's per-string overhead comes on top of them.
    assert most < 2 * MAX_LINE_BYTES


@pytest.mark.parametrize(
    ("unit", "content_type"),
    [
        (b"{" + b"x" * 99, "application/json"),
        (b"{" + b"x" * 99, ""),
        (b"data: " + b"x" * 94, "text/event-stream"),
        (b"data: " + b"x" * 93 + b"\n", ""),
    ],
    ids=["json-labelled", "json-sniffed", "sse-line", "sse-data-lines"],
)
def test_a_line_or_event_over_the_limit_raises_line_too_long_in_the_line_formats(unit, content_type):
    _, too_long = retained_while_fed(ReplyDecoder(content_type), unit, total=MAX_LINE_BYTES + 2 * READ_SIZE)
    assert too_long


def test_plain_text_without_line_breaks_never_raises():
    _, too_long = retained_while_fed(ReplyDecoder("text/plain"), b"y" * 100, total=3 * MAX_LINE_BYTES)
    assert not too_long


def test_a_byte_at_a_time_of_blank_space_does_not_slow_down():
    """The format is undecided while only blank space has come; reading it must stay linear."""
    decoder = ReplyDecoder("application/json")
    started = time.monotonic()
    for _ in range(100_000):
        decoder.feed(b"\n")
    assert decoder.feed(b'{"output":"late"}\n') + decoder.finish() == [Text("late")]
    assert time.monotonic() - started < 5


def test_the_read_loop_reads_no_further_than_the_end_marker():
    """Exchange.read_body stops at the read that carried the end, and the reply had no text."""
    body = MemoryBody([b"data: [DONE]\n\n", b"data: later\n\n"])
    handed, _ = run_read_loop(body, "text/event-stream")
    assert handed == [END, "The workflow's reply (SSE) contained no text."]
    assert body.reads == 1
