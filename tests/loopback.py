"""A scripted HTTP server on 127.0.0.1 for tests that need real sockets.

Each request is answered by a script: a list of steps the server plays in order. Steps can
wait for the test (`Gate`), so a test proves a chunk arrived *before* the next was sent
without relying on sleeps.
"""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from n8n_wire import n8n_line as n8n_line  # re-exported: a test builds its fake n8n from this module alone
from n8n_wire import n8n_reply as n8n_reply
from n8n_wire import read_request

# The headers of n8n 2.41.1's streaming reply, as in tests/data/n8n-wire/stream-ollama.txt
# (Transfer-Encoding is added by `play`, Date left out).
CAPTURE_HEADERS = {
    "n8n-stream": [
        ("Content-Type", "application/json; charset=utf-8"),
        ("Cache-Control", "no-cache"),
        ("Connection", "keep-alive"),
        ("Vary", "Accept-Encoding"),
    ],
}


class Gate:
    """A point in a script where the server waits until the test opens it."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def open(self) -> None:
        self._event.set()

    def wait(self, timeout: float = 10) -> bool:
        return self._event.wait(timeout)


@dataclass
class Reply:
    """How the server answers one request.

    body_mode: "chunked" (Transfer-Encoding: chunked), "close" (no length, ended by closing),
    or "length" (Content-Length; the steps must be bytes only).
    steps: bytes to write, a float to sleep, a Gate to wait on, a callable to run,
    "drop" to reset the connection, "hang" to wait until the client goes away.
    head_gate: when set, the server holds the status line back until it opens, like a workflow
    that has not answered yet; a client that closes meanwhile is seen at once.
    reset_before_headers: reset the connection right after reading the request, before any byte
    of the reply (status line included), like a proxy whose upstream died.
    raw_head: bytes sent instead of the status line and headers (a broken header block, say), then the
    server closes its side.
    """

    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    steps: list[Any] = field(default_factory=list)
    body_mode: str = "chunked"
    head_gate: Gate | None = None
    reset_before_headers: bool = False
    raw_head: bytes | None = None


@dataclass
class Seen:
    """What the server saw of one request."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    disconnected_at: float | None = None

    def json(self) -> Any:
        return json.loads(self.body)


class LoopbackServer:
    """Serves scripted replies on 127.0.0.1; one thread per connection."""

    def __init__(self, replies: list[Reply] | Callable[[Seen], Reply]) -> None:
        self._replies = replies
        self.requests: list[Seen] = []
        self.client_gone = threading.Event()
        self.request_seen = threading.Event()
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._threads: list[threading.Thread] = []
        self._closing = False
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/webhook/test"
        threading.Thread(target=self._accept, daemon=True).start()

    def __enter__(self) -> LoopbackServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._closing = True
        self._sock.close()
        for thread in self._threads:
            thread.join(5)

    def _accept(self) -> None:
        while not self._closing:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _next_reply(self, seen: Seen) -> Reply:
        if callable(self._replies):
            return self._replies(seen)
        return self._replies[min(len(self.requests) - 1, len(self._replies) - 1)]

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            request = read_request(conn)
            if request is None:
                return
            seen = Seen(request.method, request.target, request.headers, request.body)
            self.requests.append(seen)
            self.request_seen.set()
            reply = self._next_reply(seen)
            if reply.head_gate is not None and not wait_unless_closed(conn, reply.head_gate):
                seen.disconnected_at = time.monotonic()
                self.client_gone.set()
                return
            try:
                if play(conn, reply) == "drop":
                    seen.disconnected_at = time.monotonic()
                    self.client_gone.set()
                    return  # closing with SO_LINGER 0 sends a reset
            except OSError:
                pass
            wait_for_close(conn, seen)
            self.client_gone.set()


def play(conn: socket.socket, reply: Reply) -> str:
    if reply.reset_before_headers:
        return reset(conn)
    if reply.raw_head is not None:
        conn.sendall(reply.raw_head)
        conn.shutdown(socket.SHUT_WR)
        return "done"
    reasons = {200: "OK", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 500: "Internal Server Error"}
    head = [f"HTTP/1.1 {reply.status} {reasons.get(reply.status, 'Status')}"]
    head += [f"{k}: {v}" for k, v in reply.headers]
    if reply.body_mode == "chunked":
        head.append("Transfer-Encoding: chunked")
    elif reply.body_mode == "length":
        head.append(f"Content-Length: {sum(len(s) for s in reply.steps if isinstance(s, bytes))}")
    else:
        head.append("Connection: close")
    conn.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
    for step in reply.steps:
        if isinstance(step, bytes):
            if reply.body_mode == "chunked":
                conn.sendall(b"%x\r\n%s\r\n" % (len(step), step))
            else:
                conn.sendall(step)
        elif isinstance(step, float | int):
            time.sleep(step)
        elif isinstance(step, Gate):
            step.wait()
        elif step == "drop":
            return reset(conn)
        elif step == "hang":
            return "hang"
        elif callable(step):
            step()
    if reply.body_mode == "chunked":
        conn.sendall(b"0\r\n\r\n")
    if reply.body_mode == "close":
        conn.shutdown(socket.SHUT_WR)
    return "done"


def wait_unless_closed(conn: socket.socket, gate: Gate, limit: float = 30) -> bool:
    """Wait for the gate while watching the socket: False as soon as the client closes its side."""
    deadline = time.monotonic() + limit
    while not gate.wait(0) and time.monotonic() < deadline:
        readable, _, _ = select.select([conn], [], [], 0.005)
        try:
            if readable and not conn.recv(65536):
                return False
        except OSError:
            return False
    return True


def reset(conn: socket.socket) -> str:
    """Arm SO_LINGER 0: the close that follows sends a reset instead of an orderly end."""
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    return "drop"


def wait_for_close(conn: socket.socket, seen: Seen, limit: float = 30) -> None:
    """Block until the client closes its side, and note when: the test for Stop reads it."""
    conn.settimeout(limit)
    try:
        while conn.recv(65536):
            pass
    except OSError:
        pass
    seen.disconnected_at = time.monotonic()
