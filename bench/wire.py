"""The benchmark's loopback server: answers like n8n, in its own process, stamping every write.

Each request's query string says what to play (`kind`, `fmt`, `body`, ...). Timed tokens carry the
server's `time.monotonic_ns()` at the moment of the write as their text (`<1234…>`): CLOCK_MONOTONIC is
system-wide on Linux, so the client subtracts it from its own clock to get the delay of that token.
The server runs in a separate process so its work never holds the client's GIL.
"""

from __future__ import annotations

import json
import multiprocessing
import resource
import socket
import sys
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

TESTS = str(Path(__file__).resolve().parents[1] / "tests")
if TESTS not in sys.path:
    sys.path.append(TESTS)  # after bench/: the tests' n8n encoder and request reader are shared, not copied

from n8n_wire import n8n_line, read_request  # noqa: E402

CONTENT_TYPES = {"n8n": "application/json; charset=utf-8", "sse": "text/event-stream; charset=utf-8"}
BLOCK_BYTES = 1 << 20
NONL_FRAME = 65536
SEGMENT_GAP = 0.003  # body=segmented: pause between the TCP writes of one HTTP chunk
# The scale section opens 1000 replies at once: the accept queue must hold them all while the accept loop
# starts their threads (Linux caps it at net.core.somaxconn), and each side needs a descriptor per socket.
BACKLOG = 4096
OPEN_FILES = 4096


# ---------------------------------------------------------------------------
# Wire formats (shared with the client side, which needs the exact body sizes).


def sse_event(content: str | None) -> bytes:
    """One OpenAI-style server-sent event; None is the closing `[DONE]`."""
    if content is None:
        return b"data: [DONE]\n\n"
    chunk = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1795572217,
        "model": "bench",
        "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}],
    }
    return b"data: " + json.dumps(chunk, separators=(",", ":"), ensure_ascii=False).encode() + b"\n\n"


def opening(fmt: str) -> list[bytes]:
    return [n8n_line("begin")] if fmt == "n8n" else []


def token(fmt: str, content: str) -> bytes:
    return n8n_line("item", content) if fmt == "n8n" else sse_event(content)


def closing(fmt: str) -> list[bytes]:
    return [n8n_line("end")] if fmt == "n8n" else [sse_event(None)]


def token_text(size: int) -> str:
    """A token of `size` bytes of ordinary ASCII text ending in a space."""
    words = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor "
    return (words * (size // len(words) + 1))[: size - 1] + " "


def bulk_block(fmt: str, token_bytes: int) -> tuple[bytes, list[bytes], int]:
    """About 1 MB of whole token lines: (body bytes, the lines, tokens in it)."""
    line = token(fmt, token_text(token_bytes))
    count = max(1, BLOCK_BYTES // len(line))
    return line * count, [line] * count, count


def bulk_plan(fmt: str, token_bytes: int, size: int) -> dict[str, int]:
    """What a bulk reply holds, so the client can check it got every byte of text."""
    block, _, count = bulk_block(fmt, token_bytes)
    blocks = max(1, -(-size // len(block)))
    edges = opening(fmt) + closing(fmt)
    return {
        "blocks": blocks,
        "body_bytes": blocks * len(block) + sum(len(e) for e in edges),
        "tokens": blocks * count,
        "text_chars": blocks * count * token_bytes,
    }


def frame(data: bytes, chunked: bool) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data) if chunked else data


# ---------------------------------------------------------------------------
# Server process.


class Server:
    """Handle on the server process: its URL and the disconnects it saw."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self._events = context.Queue()
        parent, child = context.Pipe()
        self._process = context.Process(target=serve, args=(child, self._events), name="bench-n8n", daemon=True)
        self._process.start()
        if not parent.poll(30):
            raise RuntimeError("the benchmark server did not start")
        self.port = parent.recv()
        self._seen: dict[str, int | None] = {}
        self._next_id = 0

    def url(self, **params: Any) -> str:
        query = "&".join(f"{key}={value}" for key, value in params.items())
        return f"http://127.0.0.1:{self.port}/webhook/bench?{query}"

    def new_id(self) -> str:
        self._next_id += 1
        return f"r{self._next_id}"

    def disconnect_seen(self, request_id: str, timeout: float) -> int | None:
        """monotonic_ns when the server saw the client go, or None when it did not within its cap."""
        deadline = time.monotonic() + timeout
        while request_id not in self._seen:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            try:
                key, at = self._events.get(timeout=remaining)
            except Exception:
                return None
            self._seen[key] = at
        return self._seen[request_id]

    def close(self) -> None:
        self._process.terminate()
        self._process.join(5)


def somaxconn() -> int | None:
    """The kernel's cap on a listen backlog, where /proc says it."""
    try:
        return int(Path("/proc/sys/net/core/somaxconn").read_text())
    except (OSError, ValueError):
        return None


def raise_open_files(wanted: int = OPEN_FILES) -> int:
    """Lift this process's soft limit on open files towards `wanted` (a default of 1024 would refuse the
    1000th socket); returns the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        soft = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return soft


def serve(ready: Any, events: Any) -> None:
    """One thread per connection, started by the accept loop."""
    raise_open_files()
    listener = socket.create_server(("127.0.0.1", 0), backlog=BACKLOG)
    ready.send(listener.getsockname()[1])
    blocks: dict[tuple[str, int, bool], bytes] = {}
    lock = threading.Lock()

    def framed_block(fmt: str, token_bytes: int, chunked: bool) -> bytes:
        key = (fmt, token_bytes, chunked)
        with lock:
            if key not in blocks:
                _, lines, _ = bulk_block(fmt, token_bytes)
                blocks[key] = b"".join(frame(line, chunked) for line in lines)
            return blocks[key]

    while True:
        conn, _ = listener.accept()
        threading.Thread(target=answer, args=(conn, events, framed_block), daemon=True).start()


def answer(conn: socket.socket, events: Any, framed_block: Any) -> None:
    with conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        request = read_request(conn)
        if request is None:
            return
        params = {key: values[-1] for key, values in parse_qs(urlsplit(request.target).query).items()}
        with suppress(OSError):  # the client went away: the reader under test stopped early
            play(conn, params, events, framed_block)


def play(conn: socket.socket, params: dict[str, str], events: Any, framed_block: Any) -> None:
    kind = params.get("kind", "timed")
    fmt = params.get("fmt", "n8n")
    segmented = params.get("body") == "segmented"
    chunked = segmented or params.get("body", "chunked") == "chunked"
    if kind == "silent":  # accepted the request, never answers: the reader waits for headers
        wait_for_client(conn, params, events)
        return
    head = ["HTTP/1.1 200 OK", f"Content-Type: {CONTENT_TYPES[fmt]}", "Cache-Control: no-cache"]
    head.append("Transfer-Encoding: chunked" if chunked else "Connection: close")
    conn.sendall(("\r\n".join(head) + "\r\n\r\n").encode())

    def send(data: bytes) -> None:
        if segmented:
            send_segmented(conn, lambda: data, len(data), 1)
        else:
            conn.sendall(frame(data, chunked))

    for line in opening(fmt):
        send(line)
    if kind == "timed":
        time.sleep(float(params.get("first_delay", 0)))
        interval = float(params.get("interval", 0.01))
        for i in range(int(params.get("n", 10))):
            if i:
                time.sleep(interval)
            if segmented:  # stamped as its data is written, whatever went out before it
                size = len(token(fmt, f"<{0:020d}>"))
                send_segmented(conn, lambda: token(fmt, f"<{time.monotonic_ns():020d}>"), size, i)
            else:
                send(token(fmt, f"<{time.monotonic_ns()}>"))
    elif kind == "bulk":
        token_bytes = int(params["token"])
        block = framed_block(fmt, token_bytes, chunked)
        for _ in range(bulk_plan(fmt, token_bytes, int(params["size"]))["blocks"]):
            conn.sendall(block)
    elif kind == "nonl":  # one JSON line that never ends
        size, sent = int(params["size"]), 0
        send(b'{"type":"item","content":"' if fmt == "n8n" else b"data: ")
        filler = b"x" * NONL_FRAME
        while sent < size:
            send(filler)
            sent += len(filler)
    elif kind == "hang":  # one token, then silence until the client goes: a reader blocked mid-body
        send(token(fmt, "hello"))
        wait_for_client(conn, params, events)
        return
    for line in closing(fmt):
        send(line)
    if chunked:
        conn.sendall(b"0\r\n\r\n")
    conn.shutdown(socket.SHUT_WR)
    wait_for_client(conn, {"cap": "5"}, None)


def send_segmented(conn: socket.socket, data: Callable[[], bytes], size: int, way: int) -> None:
    """One HTTP chunk in two or three TCP writes SEGMENT_GAP apart (TCP_NODELAY keeps them separate
    segments), split the `way % 3`-th of three ways: the size line alone, then data + CRLF; size line,
    data and CRLF each alone; size line + data, then the CRLF alone. `data` is made just before its write."""
    head = b"%x\r\n" % size
    way %= 3
    if way != 2:
        conn.sendall(head)
        time.sleep(SEGMENT_GAP)
    body = data()
    if way == 0:
        conn.sendall(body + b"\r\n")
        return
    conn.sendall(body if way == 1 else head + body)
    time.sleep(SEGMENT_GAP)
    conn.sendall(b"\r\n")


def wait_for_client(conn: socket.socket, params: dict[str, str], events: Any) -> None:
    """Block until the client closes its side (or the cap passes), and report when."""
    conn.settimeout(float(params.get("cap", 5)))
    seen: int | None = None
    try:
        while conn.recv(65536):
            pass
        seen = time.monotonic_ns()
    except TimeoutError:
        seen = None
    except OSError:
        seen = time.monotonic_ns()
    if events is not None and "id" in params:
        events.put((params["id"], seen))
