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

from pipe_n8n_stream import ChunkedBody, Exchange, Piece, RawBody, ReplyDecoder, WebhookRequest

PIECE_KINDS = {"text", "thinking", "node", "error", "dropped", "end", "step", "source", "block_end"}


@dataclass(frozen=True)
class Answer:
    """What the chat gets from one reply: the pieces, the format label, and whether a line was too long."""

    pieces: tuple[Piece, ...]
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


def run_read_loop(body: RawBody, content_type: str = "", response_field: str = "output") -> tuple[list[Piece], str]:
    """Exchange.read_body over an in-memory body: every piece handed over, and the format label."""
    request = WebhookRequest("http://127.0.0.1/webhook/test", {}, {}, 10, 300, True, response_field, True)
    handed: list[Piece] = []
    exchange = Exchange(request)
    exchange.read_body(body, ReplyDecoder(content_type, response_field), handed.extend)
    return handed, exchange.outcome.format


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
    handed, label = run_read_loop(body, content_type, response_field)
    # From memory no read can fail: a reply cut short ("dropped") can only be a line over the limit.
    too_long = bool(handed) and handed[-1].kind == "dropped"
    return Answer(tuple(handed), label, too_long)


def meaning(answer: Answer) -> tuple[str, tuple[Piece, ...]]:
    """The part of an answer that must not depend on the reads. Plain text has no piece boundaries
    of its own (a piece is whatever one read carried), so its text is compared joined. After an end
    marker the format label is left out: lines after the marker in the same read may still have
    counted towards it (NDJSON or n8n stream), and the label is a status word, not the answer."""
    label = "" if any(p.kind == "end" for p in answer.pieces) else answer.format
    if answer.format != "text":
        return label, answer.pieces
    texts = [p for p in answer.pieces if p.kind == "text"]
    rest = tuple(p for p in answer.pieces if p.kind != "text")
    return label, (Piece("text", "".join(p.value for p in texts)), *rest) if texts else rest


def check_well_formed(answer: Answer) -> None:
    for piece in answer.pieces:
        assert piece.kind in PIECE_KINDS, piece
        assert isinstance(piece.value, str), piece


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
