"""Text is never held back waiting for later bytes, however the network cuts n8n's stream.

Proxies, TLS records and busy networks deliver an HTTP chunk's size line, its data and its closing CRLF
in separate TCP segments. Each token must reach the chat as soon as its data is there: the pipe used to
hold every token until the stream ended when a size line came alone (5 tokens 300 ms apart appeared
1.8 ... 0.6 s late, all at once).
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable
from contextlib import suppress

import pytest
from n8n_wire import n8n_reply, read_request

TOKENS = ["Hello", " from", " a", " segmented", " stream"]
SEGMENT_GAP = 0.02  # between the writes of one chunk: long enough to be separate segments, and to be seen
TOKEN_GAP = 0.1
SHOWN_WITHIN = 0.05

# How one HTTP chunk ("<size>\r\n<data>\r\n") is cut into writes, and which write completes its data.
Cutter = Callable[[bytes, bytes], tuple[list[bytes], int]]
CUTS: dict[str, Cutter] = {
    "size line alone": lambda size, data: ([size, data + b"\r\n"], 1),
    "data alone": lambda size, data: ([size, data, b"\r\n"], 1),
    "CRLF alone": lambda size, data: ([size + data, b"\r\n"], 0),
    "data cut in two": lambda size, data: ([size + data[:3], data[3:] + b"\r\n"], 1),
}


class SegmentedN8n:
    """A fake n8n that writes each chunk of its stream in several TCP segments, noting when each
    token's data was complete on the wire."""

    def __init__(self, cut: Cutter) -> None:
        self.cut = cut
        self.data_written: list[float] = []
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}/webhook/segmented"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._sock.close()
        self._thread.join(5)

    def _serve(self) -> None:
        conn, _ = self._sock.accept()
        with conn:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            read_request(conn)
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n"
            )
            begin, *items, end = n8n_reply(TOKENS)
            self._send_chunk(conn, begin)
            for item in items:
                time.sleep(TOKEN_GAP)
                self.data_written.append(self._send_chunk(conn, item))
            self._send_chunk(conn, end)
            conn.sendall(b"0\r\n\r\n")
            conn.settimeout(5)
            with suppress(OSError):  # n8n keeps the socket open after the body: the client closes it
                while conn.recv(1024):
                    pass

    def _send_chunk(self, conn: socket.socket, line: bytes) -> float:
        writes, data_write = self.cut(b"%x\r\n" % len(line), line)
        completed = 0.0
        for i, write in enumerate(writes):
            if i:
                time.sleep(SEGMENT_GAP)
            if i == data_write:
                completed = time.monotonic()  # taken before the write: the client may see it before sendall returns
            conn.sendall(write)
        return completed


@pytest.mark.parametrize("cut", sorted(CUTS))
def test_each_token_is_shown_as_soon_as_its_data_arrives(chat, cut):
    server = SegmentedN8n(CUTS[cut])

    async def scenario() -> list[tuple[str, float]]:
        chunks = await chat(n8n_url=server.url).start()
        return [(chunk, time.monotonic()) async for chunk in chunks]

    try:
        shown = asyncio.run(scenario())
    finally:
        server.close()
    assert [chunk for chunk, _ in shown] == TOKENS
    delays = [at - written for (_, at), written in zip(shown, server.data_written, strict=True)]
    assert all(0 <= d < SHOWN_WITHIN for d in delays), [f"{d * 1000:.1f} ms" for d in delays]
