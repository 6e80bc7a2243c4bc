"""Read a reply with the pipe's own read loop, and what must not change with where the reads fall.

The reads come from memory instead of a socket, but the loop is `Exchange.read_body`, the one the
worker thread runs: reading, decoding, the end marker, the line limit and the reply-level verdicts
(empty, no text) are the product's, so these checks cannot drift from it. Shared by the property
tests (tests/test_properties.py) and the fuzz target (tests/fuzz/), so both check the same invariants.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from itertools import pairwise
from typing import get_args, get_type_hints

from pipe_n8n_stream import (
    END,
    ChunkedBody,
    Event,
    Exchange,
    Failure,
    Pipe,
    RawBody,
    ReplyDecoder,
    ReplyEnded,
    Settings,
    Text,
    Turn,
    failure_words,
    webhook_request,
)

EVENT_TYPES = get_args(Event)  # the product's own list: a new kind is checked here without a copy
Shown = Event | str  # what a test compares: an event, or a failure as the words the chat shows


def said(events: Iterable[Event]) -> list[Shown]:
    """Events as a test compares them: each failure becomes the sentence the user reads."""
    return [failure_words(e) if isinstance(e, Failure) else e for e in events]


@dataclass(frozen=True)
class Answer:
    """What the chat gets from one reply: the events (failures as their words), the format label, and
    whether a line was too long."""

    pieces: tuple[Shown, ...]
    format: str
    too_long: bool = False


class MemoryBody:
    """A response body whose reads return exactly the given chunks, then b"" for the end."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self.reads = 0

    def read1(self, amt: int | None = None, decode_content: bool | None = None) -> bytes:
        chunk = next(self._chunks, b"")
        assert amt is None or len(chunk) <= amt, "a read never returns more than was asked for"
        self.reads += 1
        return chunk


def reads(body: bytes, cuts: Iterable[int]) -> list[bytes]:
    """The body cut at the given offsets into consecutive reads (offsets outside the body are ignored)."""
    points = sorted({c for c in cuts if 0 < c < len(body)})
    edges = [0, *points, len(body)]
    return [body[a:b] for a, b in pairwise(edges) if b > a]


def one_byte_reads(body: bytes) -> list[bytes]:
    return [body[i : i + 1] for i in range(len(body))]


def read_loop_events(body: RawBody, content_type: str = "", response_field: str = "output") -> list[Event]:
    """Exchange.read_body over an in-memory body: every event handed over, the reply's end last."""
    settings = Settings.of(Pipe.Valves(response_field=response_field))
    request = webhook_request(settings, "http://127.0.0.1/webhook/test", Turn([], wants_stream=True))
    handed: list[Event] = []
    Exchange(request).read_body(body, ReplyDecoder(content_type, response_field), handed.extend)
    return handed


def run_read_loop(body: RawBody, content_type: str = "", response_field: str = "output") -> tuple[list[Shown], str]:
    """Exchange.read_body over an in-memory body: what it handed over before the reply's end (failures as
    their words), and the format label that end carried."""
    *handed, ended = read_loop_events(body, content_type, response_field)
    assert isinstance(ended, ReplyEnded), ended
    return said(handed), ended.format


def chunk_encoded(body: bytes, cuts: Iterable[int]) -> bytes:
    """The body as HTTP/1.1 chunked transfer coding, one chunk between each two cuts."""
    parts = reads(body, cuts)
    return b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in parts) + b"0\r\n\r\n"


def read_reply(
    chunks: Iterable[bytes], content_type: str = "", response_field: str = "output", framed: bool = False
) -> Answer:
    """The reply as the worker reads it, from the given reads; `framed`: the reads carry the body in
    chunked transfer coding, which the pipe removes itself (ChunkedBody) before decoding."""
    body: RawBody = ChunkedBody(MemoryBody(chunks)) if framed else MemoryBody(chunks)
    *handed, ended = read_loop_events(body, content_type, response_field)
    assert isinstance(ended, ReplyEnded), ended
    # From memory no read can fail: a reply that broke off can only be a line over the limit.
    too_long = bool(handed) and isinstance(handed[-1], Failure) and handed[-1].broke_off
    return Answer(tuple(said(handed)), ended.format, too_long)


def meaning(answer: Answer) -> tuple[str, tuple[Shown, ...]]:
    """The part of an answer that must not depend on the reads. Plain text has no piece boundaries
    of its own (a piece is whatever one read carried), so its text is compared joined. After an end
    marker the format label is left out: lines after the marker in the same read may still have
    counted towards it (NDJSON or n8n stream), and the label is a status word, not the answer."""
    label = "" if END in answer.pieces else answer.format
    if answer.format != "text":
        return label, answer.pieces
    texts = [p for p in answer.pieces if isinstance(p, Text)]
    rest = tuple(p for p in answer.pieces if not isinstance(p, Text))
    return label, (Text("".join(p.text for p in texts)), *rest) if texts else rest


def check_well_formed(answer: Answer) -> None:
    for piece in answer.pieces:
        if isinstance(piece, str):  # a failure's words
            continue
        assert isinstance(piece, EVENT_TYPES), piece
        for name, kind in get_type_hints(type(piece)).items():
            assert kind is not str or isinstance(getattr(piece, name), str), piece


def check_split_invariance(
    body: bytes, chunks: list[bytes], content_type: str = "", response_field: str = "output"
) -> Answer:
    """The reply read in one go and read as `chunks` mean the same; returns the one-read answer."""
    assert b"".join(chunks) == body
    whole = read_reply([body] if body else [], content_type, response_field)
    split = read_reply(chunks, content_type, response_field)
    check_well_formed(whole)
    check_well_formed(split)
    if whole.too_long or split.too_long:
        # Where the over-long line is noticed depends on the reads; that it is noticed does not.
        assert whole.too_long and split.too_long, (whole, split)
        return whole
    assert meaning(split) == meaning(whole), (chunks, split, whole)
    return whole
