"""atheris fuzz target: random bytes, cut into random reads, through the pipe's reply decoder.

Not a pytest test (pytest collects test_*.py only). Run it with scripts/fuzz.sh [seconds].
Input layout: byte 0 picks the Content-Type, byte 1 the response_field, bytes 2-3 seed where
the reads are cut, the rest is the body. A crash is any exception other than LineTooLong, a reply
whose meaning changes with the reads or with HTTP chunk boundaries (see tests/reply_checks.py), or
the pipe's chunked-framing decoder raising anything but a protocol error on the body as framing.
"""

from __future__ import annotations

import random
import sys
from contextlib import suppress
from pathlib import Path

import atheris
import urllib3

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

with atheris.instrument_imports(include=["pipe_n8n_stream", "reply_checks"]):
    from reply_checks import check_split_invariance, chunk_encoded, meaning, one_byte_reads, read_reply, reads

    from pipe_n8n_stream import ChunkedFraming

CONTENT_TYPES = [
    "",
    "application/json; charset=utf-8",
    "text/event-stream",
    "application/x-ndjson",
    "text/plain; charset=utf-8",
    "text/event-stream; charset=utf-8",
]
RESPONSE_FIELDS = ["output", "0.output", "data.answer", "text", "choices.0.message.content"]


def random_cuts(body: bytes, seed: bytes) -> list[int]:
    """Where the network cuts the body: derived from the input, so a finding replays exactly."""
    rng = random.Random(seed)
    count = rng.randint(1, max(1, len(body) // 2))
    return [rng.randint(1, max(1, len(body) - 1)) for _ in range(count)]


def fuzz_one_input(data: bytes) -> None:
    if len(data) < 4:
        return
    content_type = CONTENT_TYPES[data[0] % len(CONTENT_TYPES)]
    response_field = RESPONSE_FIELDS[data[1] % len(RESPONSE_FIELDS)]
    body = data[4:]
    whole = check_split_invariance(body, reads(body, random_cuts(body, data[2:4])), content_type, response_field)
    check_split_invariance(body, one_byte_reads(body), content_type, response_field)
    if not whole.too_long:  # the same body in HTTP chunks, the framing removed by the pipe itself
        framed = chunk_encoded(body, random_cuts(body, data[3:4]))
        split = read_reply(reads(framed, random_cuts(framed, data[2:3])), content_type, response_field, framed=True)
        assert meaning(split) == meaning(whole), (framed, split, whole)
    with suppress(urllib3.exceptions.ProtocolError):  # the body as framing: a body or this error, nothing else
        ChunkedFraming().feed(body)


def main() -> None:
    atheris.Setup(sys.argv, fuzz_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
