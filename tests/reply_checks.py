"""Read a reply the way the pipe's worker does, and what must not change with where the reads fall.

Shared by the property tests (tests/test_properties.py) and the fuzz target (tests/fuzz/), so
both check the very same invariants.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from itertools import pairwise

from pipe_n8n_stream import LineTooLong, Piece, ReplyDecoder

PIECE_KINDS = {"text", "thinking", "node", "error", "dropped", "end"}


@dataclass(frozen=True)
class Answer:
    """What the chat gets from one reply: the pieces, the format label, and whether a line was too long."""

    pieces: tuple[Piece, ...]
    format: str
    too_long: bool = False


def reads(body: bytes, cuts: Iterable[int]) -> list[bytes]:
    """The body cut at the given offsets into consecutive reads (offsets outside the body are ignored)."""
    points = sorted({c for c in cuts if 0 < c < len(body)})
    edges = [0, *points, len(body)]
    return [body[a:b] for a, b in pairwise(edges) if b > a]


def one_byte_reads(body: bytes) -> list[bytes]:
    return [body[i : i + 1] for i in range(len(body))]


def read_reply(chunks: Iterable[bytes], content_type: str = "", response_field: str = "output") -> Answer:
    """Exchange._read without the socket: feed each read, stop at the first end, else finish()."""
    decoder = ReplyDecoder(content_type, response_field)
    pieces: list[Piece] = []
    try:
        for chunk in chunks:
            batch = decoder.feed(chunk)
            pieces += batch
            if any(p.kind == "end" for p in batch):
                return Answer(tuple(pieces), decoder.format)
        pieces += decoder.finish()
    except LineTooLong:
        return Answer(tuple(pieces), decoder.format, too_long=True)
    return Answer(tuple(pieces), decoder.format)


def meaning(answer: Answer) -> tuple[str, tuple[Piece, ...]]:
    """The part of an answer that must not depend on the reads. Plain text has no piece boundaries
    of its own (a piece is whatever one read carried), so its text is compared joined. After an end
    marker the format label is left out: lines after the marker in the same read may still have
    counted towards it (NDJSON or n8n stream), and the label is a status word, not the answer."""
    label = "" if any(p.kind == "end" for p in answer.pieces) else answer.format
    if answer.format != "text":
        return label, answer.pieces
    return label, (Piece("text", "".join(p.value for p in answer.pieces)),)


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
