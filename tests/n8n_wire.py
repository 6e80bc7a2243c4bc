"""A fake n8n's side of the wire, in one copy for the tests (tests/loopback.py) and the benchmark
(bench/wire.py): n8n's stream lines, the request a webhook reads, and the captures of a real n8n
in tests/data/n8n-wire that both are made to match.

Standard library only: Open WebUI's end-to-end environment imports it too, through loopback.py.
"""

from __future__ import annotations

import json
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CAPTURES = Path(__file__).resolve().parent / "data" / "n8n-wire"
# The AI Agent's metadata in tests/data/n8n-wire/stream-ollama.txt (the timestamp of its `begin` line).
N8N_METADATA = {
    "nodeId": "629320cd-49df-552c-8b95-e61233e0ae56",
    "nodeName": "AI Agent",
    "itemIndex": 0,
    "runIndex": 0,
    "timestamp": 1795572217527,
}


def n8n_line(kind: str, content: str | None = None, node: str = "AI Agent") -> bytes:
    """One line as n8n 2.41.1 writes its stream (Webhook "Streaming" + AI Agent): byte for byte the
    `begin`, `item` and `end` lines of tests/data/n8n-wire/stream-ollama.txt but for the timestamp."""
    line: dict[str, Any] = {"type": kind}
    if content is not None:
        line["content"] = content
    line["metadata"] = {**N8N_METADATA, "nodeName": node}
    return json.dumps(line, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def n8n_json(value: Any) -> str:
    """A value as n8n's JSON.stringify writes it, as Respond to Webhook streams its body: compact
    (tests/data/n8n-wire/stream-rtw.txt)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def n8n_reply(tokens: list[str], node: str = "AI Agent") -> list[bytes]:
    """A whole streamed answer: `begin`, one `item` per token, `end`."""
    return [n8n_line("begin", node=node), *(n8n_line("item", t, node) for t in tokens), n8n_line("end", node=node)]


@dataclass
class Request:
    """One HTTP request as a webhook reads it off the socket."""

    method: str
    target: str
    headers: dict[str, str]  # names in lower case
    body: bytes


def read_request(conn: socket.socket) -> Request | None:
    """Read one request (head and Content-Length body); None when the client left before its head."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        more = conn.recv(65536)
        if not more:
            break
        body += more
    return Request(method, target, headers, body)


# ---------------------------------------------------------------------------
# The captures: what `curl -N -sS -D -` printed, one line per line received, each with its arrival time.

CAPTURE_LINE = re.compile(r"\[\+\s*(\d+\.\d+)s\] ?(.*)")
NO_NEWLINE = "(no trailing newline)"


@dataclass
class Capture:
    """One exchange with a real n8n 2.41.1, as tests/data/n8n-wire/<name> records it."""

    request: str  # the curl command line
    status: int
    headers: list[tuple[str, str]]
    body: list[bytes]  # the body's lines as they came off the wire, each with its line end if it had one
    times: list[float]  # when each body line arrived, in seconds from the request

    @property
    def path(self) -> str:
        """The webhook path asked for, e.g. /webhook/stream-ollama."""
        match = re.search(r"https?://[^/\s]+(/\S*)", self.request)
        return match.group(1) if match else "/"


def read_capture(name: str) -> Capture:
    """Parse tests/data/n8n-wire/<name>: the request line, then `[+ 1.234s] <line>` for each line received."""
    lines = (CAPTURES / name).read_text("utf-8").split("\n")
    request = lines[0].removeprefix("### ")
    received = [(float(m[1]), m[2]) for m in map(CAPTURE_LINE.fullmatch, lines[1:]) if m]
    status_line, *rest = received
    blank = next(i for i, (_, text) in enumerate(rest) if not text)
    headers = [(name.strip(), value.strip()) for name, _, value in (text.partition(":") for _, text in rest[:blank])]
    body: list[bytes] = []
    times: list[float] = []
    for at, text in rest[blank + 1 :]:
        body.append(text.removesuffix(NO_NEWLINE).encode() if text.endswith(NO_NEWLINE) else text.encode() + b"\n")
        times.append(at)
    return Capture(request, int(status_line[1].split(" ")[1]), headers, body, times)
