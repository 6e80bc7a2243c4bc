"""Event streams and JSON text decoded as their specs say, checked with the vectors of public test suites.

Server-sent events: WHATWG's "Interpreting an event stream"
(https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation). The
vectors are facts (bytes on the wire -> the events a browser dispatches) rebuilt from
  - web-platform-tests, eventsource/format-*: the body its resources/message.py serves (the message,
    then "\\n\\n" unless newline=none, then "\\n"); last-event-id.py's and last-event-id2.py's bodies;
  - Blink's EventSourceParserTest (third_party/blink/renderer/modules/eventsource);
  - the npm package eventsource-parser (test/parse.test.ts, test/fixtures.ts);
  - httpx-sse (tests/test_decoders.py, tests/test_event_source.py).
The format-mime-* tests check the Content-Type a browser accepts, not decoding, and are left out.

Every vector is read by the pipe's ReplyDecoder as text/event-stream, whole, split at every byte and
one byte a read, in two forms: its data as plain text (the chat shows the data), and each event's data
as a JSON object whose `content` is that text. The chat shows a model's words byte for byte but for
the C0 control characters other than tab, LF and CR (a NUL in a chat breaks Open WebUI on PostgreSQL).

JSON text: RFC 8259 (JSON text is UTF-8; a byte that is not decodes as U+FFFD, as WHATWG's UTF-8
decoder does) for NDJSON, n8n's stream and a complete reply.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from reply_checks import Shown, said

import pipe_n8n_stream
from pipe_n8n_stream import (
    BOM,
    EMPTY_REPLY,
    END,
    BlockEnded,
    NodeStarted,
    ReplyDecoder,
    ServerSentEvent,
    Text,
    Thinking,
)

SSE = "text/event-stream"
UTF16_LE_BOM = b"\xff\xfe"
UTF16_BE_BOM = b"\xfe\xff"
NO_TEXT = "The workflow's reply (SSE) contained no text."


@dataclass(frozen=True)
class Vector:
    """Bytes on the wire and the events the spec dispatches for them: (type, data, last event id).
    `chat` is what the plain form shows when its data is JSON (read by the JSON rules, not shown as is)."""

    source: str
    name: str
    wire: bytes
    events: tuple[tuple[str, str, str], ...]
    content_type: str = SSE
    chat: tuple[str, ...] | None = None


def message(data: str, event: str = "message", last_id: str = "") -> tuple[str, str, str]:
    return (event, data, last_id)


def wpt_message(text: bytes, newline: bytes = b"\n\n") -> bytes:
    """What web-platform-tests' eventsource/resources/message.py serves for ?message=...&newline=..."""
    return text + newline + b"\n"


def utf8(text: str) -> bytes:
    return text.encode("utf-8")


LONG = b"x" * (2 * 1024)  # format-comments' long comment: 2 KiB of x
LONGER = b"x" * (2 * 1024 + 1)  # eventsource-parser's mixed comments fixture: one more
DONE = b"event: done\ndata: \xe2\x9c\x94\n\n"  # eventsource-parser's formatEvent({event: 'done', data: '✔'})
DONE_EVENT = message("✔", "done")

WPT = "web-platform-tests eventsource"
BLINK = "Blink EventSourceParserTest"
ESP = "eventsource-parser"
HTTPX = "httpx-sse"
UTF8 = "WHATWG UTF-8 decode"

VECTORS = [
    # --- web-platform-tests, eventsource/format-* ---------------------------------------------------
    Vector(
        WPT,
        "format-bom: one leading BOM is dropped, a BOM later is part of a field name",
        wpt_message(BOM + b"data:1\n\n" + BOM + b"data:2\n\ndata:3"),
        (message("1"), message("3")),
    ),
    Vector(
        WPT,
        "format-bom-2: of two leading BOMs only the first is dropped",
        wpt_message(BOM + BOM + b"data:1\n\ndata:2\n\ndata:3"),
        (message("2"), message("3")),
    ),
    Vector(
        WPT,
        "format-bom-split: a BOM cut between two reads",
        bytes.fromhex("ef") + bytes.fromhex("bbbf646174613a310a0a646174613a320a0a"),
        (message("1"), message("2")),
    ),
    Vector(
        WPT,
        "format-bom-utf-16 (LE): two invalid bytes in front of the first field name, which is then ignored",
        wpt_message(UTF16_LE_BOM + b"data:1\n\ndata:2"),
        (message("2"),),
    ),
    Vector(
        WPT,
        "format-bom-utf-16 (BE)",
        wpt_message(UTF16_BE_BOM + b"data:1\n\ndata:2"),
        (message("2"),),
    ),
    Vector(
        WPT,
        "format-comments: comments of any bytes, CR, LF and CRLF",
        wpt_message(b"data:1\r:\0\n:\r\ndata:2\n:" + LONG + b"\rdata:3\n:data:fail\r:" + LONG + b"\ndata:4\n", b""),
        (message("1\n2\n3\n4"),),
    ),
    Vector(
        WPT,
        "format-data-before-final-empty-line: an event without its blank line at the end is not dispatched",
        wpt_message(b"retry:1000\ndata:test1\n\nid:test\ndata:test2", b""),
        (message("test1"),),
    ),
    Vector(
        WPT,
        "format-field-data: 'data:' is an empty data line, 'data' without a colon too",
        wpt_message(b"data:\n\ndata\ndata\n\ndata:test"),
        (message(""), message("\n"), message("test")),
    ),
    Vector(
        WPT,
        "format-field-event: event names the next event only",
        wpt_message(b"event:test\ndata:x\n\ndata:x"),
        (message("x", "test"), message("x")),
    ),
    Vector(
        WPT,
        "format-field-event-empty: an empty event name is 'message'",
        wpt_message(b"event: \ndata:data"),
        (message("data"),),
    ),
    Vector(
        WPT,
        "format-field-id (last-event-id.py): the id is the event's last event id",
        utf8("id: …\nretry: 200\ndata: hello\n\n"),
        (message("hello", last_id="…"),),
    ),
    Vector(
        WPT,
        "format-field-id-null (last-event-id.py?idvalue=%00%00): an id holding NUL is ignored, the event still comes",
        b"id: \0\0\nretry: 200\ndata: hello\n\n",
        (message("hello"),),
    ),
    Vector(
        WPT,
        "format-field-id-3 (persists)",
        b"id: 1\ndata: 1\n\ndata:2\n\n",
        (message("1", last_id="1"), message("2", last_id="1")),
    ),
    Vector(
        WPT,
        "format-field-id-3 (changes and persists)",
        b"id: 1\ndata: 1\n\nid: 2\ndata:2\n\ndata:3\n\n",
        (message("1", last_id="1"), message("2", last_id="2"), message("3", last_id="2")),
    ),
    Vector(
        WPT,
        "format-field-id-3 (resets)",
        b"id: 1\ndata: 1\n\nid:\ndata:2\n\ndata:3\n\n",
        (message("1", last_id="1"), message("2"), message("3")),
    ),
    Vector(
        WPT,
        "format-field-parsing: NUL in data, field names are exact, one space after the colon",
        wpt_message(
            b"data:\0\ndata:  2\rData:1\ndata\0:2\ndata:1\r\0data:4\nda-ta:3\rdata_5\ndata:3\rdata:\r\n"
            b" data:32\ndata:4\n",
            b"",
        ),
        (message("\0\n 2\n1\n3\n\n4"),),
    ),
    Vector(
        WPT,
        "format-field-retry-bogus: retry with non-digits is ignored",
        wpt_message(b"retry:2000\nretry:1000x\ndata:x"),
        (message("x"),),
    ),
    Vector(
        WPT,
        "format-field-unknown: unknown fields and lines without a colon are ignored",
        wpt_message(b"data:test\n data\ndata\nfoobar:xxx\njustsometext\n:thisisacommentyay\ndata:test"),
        (message("test\n\ntest"),),
    ),
    Vector(
        WPT,
        "format-leading-space: only a space is dropped after the colon, not a tab",
        wpt_message(b"data:\ttest\rdata: \ndata:test"),
        (message("\ttest\n\ntest"),),
    ),
    Vector(
        WPT,
        "format-newlines: CRLF, LF and CR",
        wpt_message(b"data:test\r\ndata\ndata:test\r\n\r", b""),
        (message("test\n\ntest"),),
    ),
    Vector(
        WPT,
        "format-null-character: NUL as the data",
        wpt_message(b"data:\0\n\n"),
        (message("\0"),),
    ),
    Vector(
        WPT,
        "format-utf-8: always UTF-8, whatever charset the type names",
        wpt_message(utf8("data:ok…")),
        (message("ok…"),),
        content_type="text/event-stream; charset=windows-1252",
    ),
    # --- Blink EventSourceParserTest -----------------------------------------------------------------
    Vector(BLINK, "EmptyMessageEventShouldNotBeDispatched", b"\n", ()),
    Vector(BLINK, "DispatchSimpleMessageEvent", b"data:hello\n\n", (message("hello"),)),
    Vector(BLINK, "DispatchMessageEventWithLastEventId", b"id:99\ndata:hello\n\n", (message("hello", last_id="99"),)),
    Vector(BLINK, "LastEventIdCanBeUpdatedEvenWhenDataIsEmpty", b"id:99\n\n", ()),
    Vector(BLINK, "DispatchMessageEventWithCustomEventType", b"event:foo\ndata:hello\n\n", (message("hello", "foo"),)),
    Vector(BLINK, "RetryTakesEffectEvenWhenNotDispatching", b"retry:999\n", ()),
    Vector(
        BLINK,
        "EventTypeShouldBeReset",
        b"event:foo\ndata:hello\n\ndata:bye\n\n",
        (message("hello", "foo"), message("bye")),
    ),
    Vector(BLINK, "DataShouldBeReset", b"data:hello\n\n\n", (message("hello"),)),
    Vector(
        BLINK,
        "LastEventIdShouldNotBeReset",
        b"id:99\ndata:hello\n\ndata:bye\n\n",
        (message("hello", last_id="99"), message("bye", last_id="99")),
    ),
    Vector(
        BLINK, "VariousNewLinesShouldBeAllowed", b"data:hello\r\n\rdata:bye\r\r", (message("hello"), message("bye"))
    ),
    Vector(BLINK, "RetryWithEmptyValueShouldRestoreDefaultValue", b"retry\n", ()),
    Vector(
        BLINK,
        "NonDigitRetryShouldBeIgnored",
        b"retry:a0\nretry:xi\nretry:2a\nretry:09a\nretry:1\b\nretry:  1234\nretry:456 \n",
        (),
    ),
    Vector(BLINK, "UnrecognizedFieldShouldBeIgnored", b"data:hello\nhoge:fuga\npiyo\n\n", (message("hello"),)),
    Vector(BLINK, "CommentShouldBeIgnored", b"data:hello\n:event:a\n\n", (message("hello"),)),
    Vector(BLINK, "BOMShouldBeIgnored", BOM + b"data:hello\n" + BOM + b"data:bye\n\n", (message("hello"),)),
    Vector(
        BLINK, "ColonlessLineShouldBeTreatedAsNameOnlyField", b"data:hello\nevent:a\nevent\n\n", (message("hello"),)
    ),
    Vector(
        BLINK,
        "AtMostOneLeadingSpaceCanBeSkipped",
        b"data:  hello  \nevent:  type \n\n",
        (message(" hello  ", " type "),),
    ),
    Vector(BLINK, "DataShouldAccumulate", b"data\ndata:hello\ndata: world\ndata\n\n", (message("\nhello\nworld\n"),)),
    Vector(BLINK, "EventShouldNotAccumulate", b"data:hello\nevent:a\nevent:b\n\n", (message("hello", "b"),)),
    Vector(
        BLINK,
        "FeedDataOneByOne",
        b"data:hello\r\ndata:world\revent:a\revent:b\nid:4\n\nid:8\ndata:bye\r\n\r",
        (message("hello\nworld", "b", "4"), message("bye", last_id="8")),
    ),
    Vector(
        BLINK,
        "InvalidUTF8Sequence",
        b"data:\xffhello\xc2\ndata:bye\n\n",
        (message("\ufffdhello\ufffd\nbye"),),
    ),
    Vector(
        BLINK,
        "IgnoreIdHavingNullCharacter",
        b"id:99\ndata:hello\n\nid:4\x0023\ndata:bye\n\n",
        (message("hello", last_id="99"), message("bye", last_id="99")),
    ),
    # --- eventsource-parser --------------------------------------------------------------------------
    Vector(
        ESP,
        "basic unnamed events stream",
        b"".join(b"data: %d\n\n" % i for i in range(5)) + DONE,
        (*(message(str(i)) for i in range(5)), DONE_EVENT),
    ),
    Vector(
        ESP,
        "stream of identified messages + retry interval",
        b"event: tick\nretry: 50\nid: 1337\ndata: 1337\n\nevent: tick\nretry: 50\nid: 1338\ndata: 1338\n\n",
        (message("1337", "tick", "1337"), message("1338", "tick", "1338")),
    ),
    Vector(
        ESP,
        "stream of heartbeat comments, unnamed events",
        b"".join(utf8(": ♥\n\n") + b"data: %c\n\n" % c for c in b"ABCDE") + DONE,
        (*(message(c) for c in "ABCDE"), DONE_EVENT),
    ),
    Vector(
        ESP,
        "stream of multi-line data events",
        b"event: stock\ndata: YHOO\ndata: +2\ndata: 10\n\nevent: stock\ndata: GOOG\ndata: -8\ndata: 1881\n\n" + DONE,
        (message("YHOO\n+2\n10", "stock"), message("GOOG\n-8\n1881", "stock"), DONE_EVENT),
    ),
    Vector(
        ESP,
        "stream of multi-byte events with some empty lines thrown in",
        utf8("\n\n\n\nid: 1\ndata: 我現在都看實況不玩遊戲\n\n") + DONE,
        (message("我現在都看實況不玩遊戲", last_id="1"), message("✔", "done", "1")),
    ),
    Vector(
        ESP,
        "stream containing byte-order marks (multiple places)",
        BOM + b"data: bomful 1\n\n" + BOM + b"data: bomful 2\n\ndata: bomless 3\n\n" + DONE,
        (message("bomful 1"), message("bomless 3"), DONE_EVENT),
    ),
    Vector(
        ESP,
        "stream using carriage returns",
        b"data: dog\rdata: bark\r\rdata: cat\rdata: meow\r\r" + DONE,
        (message("dog\nbark"), message("cat\nmeow"), DONE_EVENT),
    ),
    Vector(
        ESP,
        "stream using line feeds",
        b"data: cow\ndata: moo\n\ndata: horse\ndata: neigh\n\n" + DONE,
        (message("cow\nmoo"), message("horse\nneigh"), DONE_EVENT),
    ),
    Vector(
        ESP,
        "stream using carriage returns and line feeds",
        b"data: sheep\r\ndata: bleat\r\n\r\ndata: pig\r\ndata: oink\r\n\r\n" + DONE,
        (message("sheep\nbleat"), message("pig\noink"), DONE_EVENT),
    ),
    Vector(
        ESP,
        "stream with varying odd uses of comments (its emoji comment stands in as two emojis)",
        utf8(
            ": Hello\n\n"
            + ":" * 300
            + "\ndata: First\n\n: Первый: 第二\ndata: Second\n\n"
            + ": Moop \n" * 10
            + ": ثالث\ndata: Third\n\n:നാലാമത്തെ\ndata: Fourth\n\n: 🎉 👍 :\ndata: Fifth\n\n"
        )
        + DONE,
        (message("First"), message("Second"), message("Third"), message("Fourth"), message("Fifth"), DONE_EVENT),
    ),
    Vector(
        ESP,
        "stream with even more odd uses of comments (the last event has no blank line)",
        b"data:1\r\r:\0\n:\r\ndata:2\n\n:" + LONGER + b"\rdata:3\n\n:data:fail\r:" + LONGER + b"\ndata:4\n\ndata:5",
        (message("1"), message("2"), message("3"), message("4")),
    ),
    Vector(
        ESP,
        "stream with empty event field",
        b"event:\ndata: Hello 1\n\nevent:\n\n" + DONE,
        (message("Hello 1"), DONE_EVENT),
    ),
    Vector(
        ESP,
        "stream with empty retry field",
        utf8("retry: 500\nid: 1\ndata: 🥌\n\nid:2\nretry:\ndata:🧹\n\nid: 3\ndata: ✅\n\n"),
        (message("🥌", last_id="1"), message("🧹", last_id="2"), message("✅", last_id="3")),
    ),
    Vector(
        ESP,
        "stream with oddly shaped data field",
        b"data:\n\ndata\ndata\n\ndata:test\n\n" + DONE,
        (message(""), message("\n"), message("test"), DONE_EVENT),
    ),
    Vector(
        ESP,
        "stream with cr separating chunks of same event",
        b"data: A\r\ndata: B\r\ndata: C\r\n\n",
        (message("A\nB\nC"),),
    ),
    Vector(
        ESP, "stream with partially incorrect retry fields", b"retry:1000\nretry:2000x\ndata:x\n\n", (message("x"),)
    ),
    Vector(
        ESP,
        "stream with id field containing a NULL character",
        b"id: 123\nid: bad\0id\ndata: hello\n\n",
        (message("hello", last_id="123"),),
    ),
    Vector(ESP, "an id from a block without data dispatches nothing", b"id: 42\n\nid: bad\0id\n\nid:\n\n", ()),
    Vector(
        ESP,
        "stream with incorrect retry fields",
        b"\nretry: 500\n\ndata: first\n\nretry: 50x\n\ndata: second\n\n",
        (message("first"), message("second")),
    ),
    Vector(
        ESP,
        "stream with unknown fields in the stream",
        b"data:abc\n data\ndata\nfoobar:xxx\njustsometext\n:thisisacommentyay\ndata:123\n\n" + DONE,
        (message("abc\n\n123"), DONE_EVENT),
    ),
    Vector(
        ESP,
        "an invalid stream (a JSON error body) dispatches nothing",
        b'{"error":"Internal Server Error","message":"The server could not process your request"}\n',
        (),
    ),
    Vector(
        ESP, "an invalid stream (no field separator) dispatches nothing", b"Well, this is not what I expected\n", ()
    ),
    Vector(
        ESP,
        "unterminated unknown field is discarded",
        b"unknown-field: this content is ignored even without a terminator\ndata: ok\n\n",
        (message("ok"),),
    ),
    Vector(
        ESP,
        "a line that started like data but is not a valid field",
        b"datax: this started like data, but is not a valid field\ndata: ok\n\n",
        (message("ok"),),
    ),
    Vector(ESP, "a data field split across chunks", b"da" + b"ta\n\n", (message(""),)),
    Vector(
        ESP,
        "a long comment without a terminator yet",
        b":" * 64 + b"this content is ignored even without a terminator\ndata: ok\n\n",
        (message("ok"),),
    ),
    Vector(
        ESP,
        "a comment ended by CRLF (also split between its CR and LF)",
        b"data: one\n:ignored\r\ndata: two\n\n",
        (message("one\ntwo"),),
    ),
    Vector(ESP, "a comment ended by a bare CR", b"data: one\n:ignored\rdata: two\n\n", (message("one\ntwo"),)),
    Vector(ESP, "a bare data field ended by CRLF", b"data: one\ndata\r\ndata: two\n\n", (message("one\n\ntwo"),)),
    Vector(ESP, "an unknown field ended by a CR", b"garbage\rdata: ok\n\n", (message("ok"),)),
    Vector(ESP, "a blank CR line ending a chunk dispatches once", b"data: one\r\r\n", (message("one"),)),
    Vector(ESP, "a comment alone dispatches nothing", b":preserved\n", ()),
    # --- httpx-sse --------------------------------------------------------------------------------------
    Vector(HTTPX, "whatwg example 1", b"data: YH00\ndata: +2\ndata: 10\n\n", (message("YH00\n+2\n10"),)),
    Vector(
        HTTPX,
        "whatwg example 2",
        b": test stream\n\ndata: first event\nid: 1\n\ndata: second event\nid\n\ndata:  third event\n\n",
        (message("first event", last_id="1"), message("second event"), message(" third event")),
    ),
    Vector(HTTPX, "whatwg example 3", b"data\n\ndata\ndata\n\ndata:\n", (message(""), message("\n"))),
    Vector(HTTPX, "whatwg example 4", b"data:test\n\ndata: test\n\n", (message("test"), message("test"))),
    Vector(
        HTTPX, "event", b"event: logline\ndata: New user connected\n\n", (message("New user connected", "logline"),)
    ),
    Vector(HTTPX, "id with NUL", b"data: test\nid: 123\0\n\n", (message("test"),)),
    # httpx-sse hands this block over as an event with empty data; WHATWG dispatches nothing (its data
    # buffer is empty), as Blink's RetryTakesEffectEvenWhenNotDispatching says: the spec decides.
    Vector(HTTPX, "retry alone (WHATWG: no event)", b"retry: 10000\n\n", ()),
    Vector(HTTPX, "retry invalid", b"retry: 1667a\n\n", ()),
    Vector(HTTPX, "unknown field", b"something: ignore\n\n", ()),
    Vector(
        HTTPX,
        "U+2028 is no line break",
        b'event: message\ndata: {"text":"Hello\xe2\x80\xa8World"}\n\n',
        (message('{"text":"Hello\u2028World"}'),),
        chat=("Hello\u2028World",),
    ),
    # --- UTF-8 as WHATWG decodes it: one U+FFFD per maximal bad subpart, and the stream goes on ----------
    Vector(
        UTF8,
        "a stray byte in a model's words",
        b"data: caf\xe9 ok\n\ndata: next\n\n",
        (message("caf\ufffd ok"), message("next")),
    ),
    Vector(
        UTF8,
        "a character cut short by the line end",
        b"data: \xf0\x9f\x8e\n\ndata: \xf0\x9f\x8e\x89\n\n",
        (message("\ufffd"), message("🎉")),
    ),
    Vector(UTF8, "a surrogate's bytes", b"data: a\xed\xa0\x80b\n\n", (message("a\ufffd\ufffd\ufffdb"),)),
    Vector(UTF8, "an overlong slash", b"data: \xc0\xaf\n\n", (message("\ufffd\ufffd"),)),
    Vector(
        UTF8,
        "a control byte in a comment and in an unknown field",
        b":\x01\x02\nx\x00:\x1b\ndata: ok\n\n",
        (message("ok"),),
    ),
    Vector(UTF8, "DEL and C1 are text", utf8("data: a\x7fb\x85c\n\n"), (message("a\x7fb\x85c"),)),
]


def ids(vectors: list[Vector]) -> list[str]:
    return [f"{v.source}: {v.name}" for v in vectors]


def every_split(wire: bytes) -> Iterator[list[bytes]]:
    """The body whole, cut in two at every byte, and one byte a read."""
    yield [wire]
    for cut in range(1, len(wire)):
        yield [wire[:cut], wire[cut:]]
    yield [wire[i : i + 1] for i in range(len(wire))]


def decoded(reads: list[bytes], content_type: str) -> list[Shown]:
    decoder = ReplyDecoder(content_type)
    events = [event for data in reads for event in decoder.feed(data)]
    return said(events + decoder.finish())


def as_shown(text: str) -> str:
    """What the chat shows of a model's words: all but the C0 control characters other than tab, LF, CR."""
    return re.sub("[\x00-\x08\x0b\x0c\x0e-\x1f]", "", text)


def chat_of(texts: list[str], wire: bytes) -> list[Shown]:
    """The chat's pieces: the texts as shown, else why there is none (a blank body is an empty reply)."""
    shown = [Text(as_shown(t)) for t in texts if as_shown(t)]
    return shown or [NO_TEXT if wire.strip(b" \t\r\n") else EMPTY_REPLY]


DATA_LINE = re.compile(rb"^data(?::|$)")


def json_string(data: bytes) -> bytes:
    """`data` as the inside of a JSON string, byte for byte: only quote, backslash and C0 escaped, so a
    byte that is no UTF-8 stays one (and decodes as U+FFFD, as in the plain form)."""
    escapes = {b'"': b'\\"', b"\\": b"\\\\"}
    return b"".join(escapes.get(bytes([c]), b"\\u%04x" % c if c < 0x20 else bytes([c])) for c in data)


def in_json_form(wire: bytes) -> bytes:
    """The same stream with each event's data made a JSON object whose `content` is that data: the first
    data line of an event carries `{"content":"<all its data>"`, the others a key of their own, so the
    lines, their ends, comments and every other field stay where they were."""
    bom = BOM if wire.startswith(BOM) else b""
    parts = re.split(rb"(\r\n|\r|\n)", wire[len(bom) :])
    lines, ends = parts[0::2], [*parts[1::2], b""]
    groups: list[list[int]] = [[]]
    for number, line in enumerate(lines):
        if not line:
            groups.append([])
        elif DATA_LINE.match(line):
            groups[-1].append(number)
    for group in groups:
        values = [value_of(lines[n]) for n in group]
        for place, n in enumerate(group):
            last = b"}" if place == len(group) - 1 else b""
            if place == 0:
                lines[n] = b'data:{"content":"' + json_string(b"\n".join(values)) + b'"' + last
            else:
                lines[n] = b'data:,"line %d":0' % place + last
    return bom + b"".join(line + end for line, end in zip(lines, ends, strict=True))


def value_of(line: bytes) -> bytes:
    value = line[len(b"data:") :] if line.startswith(b"data:") else b""
    return value[1:] if value.startswith(b" ") else value


@pytest.mark.parametrize("vector", VECTORS, ids=ids(VECTORS))
def test_the_decoder_dispatches_the_events_the_spec_does_in_every_split(vector, monkeypatch):
    dispatched: list[ServerSentEvent] = []

    def record(event: ServerSentEvent, response_field: str) -> list[pipe_n8n_stream.Event]:
        dispatched.append(event)
        return []

    monkeypatch.setattr(pipe_n8n_stream, "events_of_sse", record)
    for reads in every_split(vector.wire):
        dispatched.clear()
        decoded(reads, vector.content_type)
        assert [(e.event, e.data, e.id) for e in dispatched] == list(vector.events), reads


@pytest.mark.parametrize("vector", VECTORS, ids=ids(VECTORS))
def test_the_chat_shows_each_events_plain_data_in_every_split(vector):
    texts = list(vector.chat) if vector.chat is not None else [data for _, data, _ in vector.events]
    expected = chat_of(texts, vector.wire)
    for reads in every_split(vector.wire):
        assert decoded(reads, vector.content_type) == expected, reads


@pytest.mark.parametrize("vector", VECTORS, ids=ids(VECTORS))
def test_the_chat_shows_each_events_json_content_in_every_split(vector):
    wire = in_json_form(vector.wire)
    expected = chat_of([data for _, data, _ in vector.events], wire)
    for reads in every_split(wire):
        assert decoded(reads, vector.content_type) == expected, reads


def test_the_json_form_is_the_same_stream_with_json_data():
    wire = b'data: a"b\\\ndata\r:x\r\ndata:\x01\xff\n\nid: 1\ndata: c\n\n'
    assert in_json_form(wire) == (
        b'data:{"content":"a\\"b\\\\\\u000a\\u000a\\u0001\xff"\ndata:,"line 1":0\r:x\r\ndata:,"line 2":0}\n\n'
        b'id: 1\ndata:{"content":"c"}\n\n'
    )
    assert in_json_form(BOM + b"data: x\n\n") == BOM + b'data:{"content":"x"}\n\n'


# --- JSON text: NDJSON, n8n's stream, a complete reply ---------------------------------------------------

N8N_JSON = "application/json; charset=utf-8"
NDJSON = "application/x-ndjson"
BEGIN = b'{"type":"begin","metadata":{"nodeName":"AI Agent"}}\n'
END_LINE = b'{"type":"end","metadata":{"nodeName":"AI Agent"}}\n'


def n8n_item(content: bytes) -> bytes:
    """An n8n stream line whose content is `content` as it sits between the quotes on the wire."""
    return b'{"type":"item","content":"' + content + b'","metadata":{"nodeName":"AI Agent"}}\n'


def n8n_block(*contents: bytes) -> bytes:
    return BEGIN + b"".join(n8n_item(c) for c in contents) + END_LINE


AGENT = NodeStarted("AI Agent")
AGENT_DONE = BlockEnded("AI Agent")
RAW_CONTROL_LINE = n8n_item(b"a\x01b")

JSON_VECTORS = [
    (
        "n8n: bytes that are no UTF-8",
        n8n_block(b"Gr\xfc\xdfe ", b"ok"),
        N8N_JSON,
        [AGENT, Text("Gr\ufffd\ufffde "), Text("ok"), AGENT_DONE],
    ),
    (
        "n8n: a character cut short",
        n8n_block(b"\xf0\x9f\x8e", b"\xf0\x9f\x8e\x89"),
        N8N_JSON,
        [AGENT, Text("\ufffd"), Text("🎉"), AGENT_DONE],
    ),
    (
        "n8n: a surrogate's bytes",
        n8n_block(b"a\xed\xa0\x80b"),
        N8N_JSON,
        [AGENT, Text("a\ufffd\ufffd\ufffdb"), AGENT_DONE],
    ),
    (
        "n8n: an overlong sequence",
        n8n_block(b"\xc0\xafx", b"y"),
        N8N_JSON,
        [AGENT, Text("\ufffd\ufffdx"), Text("y"), AGENT_DONE],
    ),
    (
        "n8n: a raw control byte makes the line no JSON, shown as other bad lines are (less the control)",
        BEGIN + n8n_item(b"ok ") + RAW_CONTROL_LINE + n8n_item(b"go on") + END_LINE,
        N8N_JSON,
        [AGENT, Text("ok "), Text(RAW_CONTROL_LINE.decode().replace("\x01", "")), Text("go on"), AGENT_DONE],
    ),
    (
        "n8n: escaped C0 controls are left out, tab, line breaks and DEL stay",
        n8n_block(b"a\\u0000b\\u0007\\tc\\u007f\\r\\n", b"\\u001b", b"d"),
        N8N_JSON,
        [AGENT, Text("ab\tc\x7f\r\n"), Text("d"), AGENT_DONE],
    ),
    (
        "n8n: Respond to Webhook's body with an escaped control",
        n8n_block(b'{\\"output\\":\\"a\\\\u0001b\\"}'),
        N8N_JSON,
        [AGENT, Text("ab")],  # the end line releases the held body: no block end of its own
    ),
    (
        "NDJSON (Ollama): bytes that are no UTF-8",
        b'{"model":"m","message":{"role":"assistant","content":"caf\xe9"},"done":false}\n'
        b'{"model":"m","message":{"role":"assistant","content":"!","thinking":"\\u0000hm"},"done":true}\n',
        NDJSON,
        [Text("caf\ufffd"), Thinking("hm"), Text("!"), END],
    ),
    (
        "complete JSON: bytes that are no UTF-8",
        b'{"output":"Gr\xfc\xdfe"}',
        N8N_JSON,
        [Text("Gr\ufffd\ufffde")],
    ),
    (
        "complete JSON, pretty-printed: bytes that are no UTF-8 and an escaped control",
        b'{\n  "output": "caf\xe9\\u0000!"\n}\n',
        N8N_JSON,
        [Text("caf\ufffd!")],
    ),
    (
        "SSE with JSON data: bytes that are no UTF-8",
        b'data: {"choices":[{"delta":{"content":"caf\xe9"}}]}\n\n'
        b'data: {"choices":[{"delta":{"content":"\\u0002!"}}]}\n\n',
        SSE,
        [Text("caf\ufffd"), Text("!")],
    ),
]


@pytest.mark.parametrize(
    ("wire", "content_type", "expected"), [v[1:] for v in JSON_VECTORS], ids=[v[0] for v in JSON_VECTORS]
)
def test_json_text_is_utf8_a_bad_byte_is_a_replacement_character_in_every_split(wire, content_type, expected):
    for reads in every_split(wire):
        assert decoded(reads, content_type) == expected, reads
