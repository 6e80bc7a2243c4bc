"""
title: n8n Stream
author: pipe_n8n_stream maintainers
version: 0.1.0
license: MIT
description: Stream n8n workflow answers into the chat as they are generated, without blocking Open WebUI.
required_open_webui_version: 0.5.0
"""

# Map of this file, in the order data flows:
#   Pipe.pipe()         Open WebUI's entry: one chat turn -> Turn -> WebhookRequest (pure, no I/O)
#   Exchange            the worker thread: POST, read the body with read1(), stop on Stop
#     ReplyDecoder      bytes -> pieces; picks a WireFormat from the first bytes and says when the reply ended
#       LineSplitter    bytes -> lines (CR, LF, CRLF; a line limit)
#       SSEDecoder      lines -> server-sent events (WHATWG rules)
#       pieces_of_json  one JSON value -> pieces, whatever produced it (n8n, OpenAI, Ollama, Anthropic)
#   Handover            pieces from the worker thread to the event loop, one wake per drain
#   ChatRenderer        pieces -> chat text (thinking block, notices); StatusReporter: the status line
#   main()              command line: demo, check (the webhook doctor)
# A new producer's JSON shape (another model API) is one more branch in pieces_of_json; a new framing
# (how values are cut out of the bytes) is one more WireFormat, picked by sniff().

from __future__ import annotations

import argparse
import asyncio
import codecs
import html
import json
import logging
import re
import socket
import sys
import threading
import time
import traceback
from collections.abc import AsyncGenerator, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import aclosing, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal, NamedTuple, Protocol, cast
from urllib.parse import quote, quote_plus, urljoin, urlsplit

import requests
import urllib3
from pydantic import BaseModel, Field
from requests.adapters import HTTPAdapter

log = logging.getLogger("pipe_n8n_stream")

MIB = 1024 * 1024
MAX_LINE_BYTES = MIB
READ_SIZE = 65536
QUEUED_CHARS = 1024 * 1024  # text waiting for the event loop before the worker pauses reading
ERROR_BODY_LIMIT = 64 * 1024
ERROR_SNIPPET_CHARS = 300
SECRET_START_CHARS = 4  # a cut-off secret's start is hidden from this length; shorter ones match plain words
ACCEPT_STREAM = "text/event-stream, application/x-ndjson, application/json"
ACCEPT_COMPLETE = "application/json"
BOM = b"\xef\xbb\xbf"
BLANK = b" \t\r\n"
JSON_OPENINGS = ("{", "[")
LINE_BREAK = re.compile(rb"\r\n|\r|\n")
SSE_FIELD_PREFIXES = (b"data:", b"event:", b"id:", b"retry:", b":")
N8N_STREAM_TYPES = {"begin", "item", "end", "error", "keepalive"}
COMMON_TEXT_FIELDS = ("output", "text", "response", "content", "message.content", "choices.0.message.content")
TITLE_WORDS = 6
TITLE_CHARS = 60
TOOL_TEXT_CHARS = 2000  # a tool's input or output shown in its step block is cut here
MAX_SOURCES = 100  # citations taken from one reply: each is an event and a row in the saved message
TOOL_STATUS_DELAY = 1.0  # seconds after an n8n block's end before the status says a tool runs
AGENT_WORK_FIELDS = ("intermediateSteps", "sources")
# What json.loads raises on bytes that are no usable JSON: a line of 100 000 `[` is a RecursionError.
JSON_ERRORS = (ValueError, RecursionError)


class Pipe:
    """The face Open WebUI sees: valves, the model list and the `pipe()` entry."""

    class Valves(BaseModel):
        n8n_url: str = Field(
            default="",
            description="Webhook URL: /webhook/... (production), /webhook-test/... (editor open) "
            "or a Chat Trigger's /webhook/<id>/chat.",
        )
        n8n_bearer_token: str = Field(
            default="",
            description="Secret sent in the auth header; leave empty when the webhook has no auth.",
            json_schema_extra={"input": {"type": "password"}},
        )
        auth_header_name: str = Field(
            default="Authorization",
            description="Header n8n's Header Auth checks. With Authorization the value is 'Bearer <token>', "
            "with any other name the raw token.",
        )
        input_field: str = Field(default="chatInput", description="Payload field for the user's message.")
        session_field: str = Field(
            default="sessionId", description="Payload field for the chat id (the AI Agent's memory key)."
        )
        response_field: str = Field(
            default="output",
            description="Where the answer is in a complete JSON reply: a dotted path such as data.answer or 0.output.",
        )
        stream: bool = Field(default=True, description="Ask n8n for a stream. Off: one complete-JSON request.")
        send_history: bool = Field(default=False, description="Also send the whole chat as `messages`.")
        send_user_info: bool = Field(
            default=False, description="Also send the user's id, name, email and role as `user`."
        )
        connect_timeout: float = Field(default=10, description="Seconds to wait for n8n to accept the connection.")
        read_timeout: float = Field(
            default=300,
            description="Longest silence allowed between two reads, in seconds (n8n sends a keepalive every 30 s).",
        )
        emit_status: bool = Field(default=True, description="Show progress under the message.")
        show_thinking: bool = Field(default=True, description="Show the model's reasoning as collapsible thinking.")
        show_tool_steps: bool = Field(
            default=True,
            description="Show the AI Agent's tool steps (its 'Return Intermediate Steps' option) as collapsed "
            "tool-call blocks before the answer.",
        )
        verify_ssl: bool = Field(default=True, description="Check n8n's TLS certificate.")
        models: str = Field(
            default="",
            description="Several workflows as several models, one 'Name = URL' per line. Empty: n8n_url alone.",
        )
        forward_background_tasks: bool = Field(
            default=False,
            description="Send Open WebUI's title/tags/follow-up tasks to n8n too (with a `task` field). "
            "Off: they are answered here and never run the workflow.",
        )
        max_reply_mb: float = Field(
            default=16,
            gt=0,
            allow_inf_nan=False,
            description="Largest reply shown, in MB (after decompression); a longer one is cut there, "
            "keeping what was shown.",
        )
        max_reply_minutes: float = Field(
            default=30,
            gt=0,
            allow_inf_nan=False,
            description="Longest a reply may keep streaming, in minutes; then it is cut, keeping what was shown.",
        )

    def __init__(self) -> None:
        self.valves = self.Valves()

    def pipes(self) -> list[dict[str, str]]:
        """One model per configured workflow, so each shows up in the chat's model picker."""
        workflows = parse_models(self.valves.models)
        if not workflows:
            return [{"id": "n8n", "name": "n8n"}]
        return [{"id": model_id, "name": name} for model_id, (name, _) in workflows.items()]

    async def pipe(
        self,
        body: dict[str, Any],
        __user__: dict[str, Any] | None = None,
        __event_emitter__: Callable[[dict[str, Any]], Any] | None = None,
        __metadata__: dict[str, Any] | None = None,
        __task__: str | None = None,
        __task_body__: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> str | AsyncGenerator[str, None]:
        """Answer one chat turn: a text stream when the chat streams, else the whole text."""
        turn = Turn.from_open_webui(body, __user__, __metadata__, __task__, kwargs.get("__chat_id__"))
        if turn.task and not self.valves.forward_background_tasks:
            answer = background_task_answer(turn.task, __task_body__ or body)
            return single_chunk(answer) if turn.wants_stream else answer

        status = StatusReporter(__event_emitter__ if self.valves.emit_status and not turn.task else None)
        url = self.webhook_url(turn.model)
        if not url:
            message = "No n8n webhook is set: fill in the `n8n_url` valve (Admin Panel > Functions > this pipe)."
            return single_chunk(f"⚠️ {message}", status, message) if turn.wants_stream else f"⚠️ {message}"

        secrets = [self.valves.n8n_bearer_token]
        chunks = chat_chunks(
            Exchange(self.webhook_request(url, turn)),
            status,
            self.valves.show_thinking,
            secrets,
            show_tool_steps=self.valves.show_tool_steps,
            citations=Citations(None if turn.task else __event_emitter__),
        )
        if turn.wants_stream:
            return chunks
        async with aclosing(chunks):
            return "".join([chunk async for chunk in chunks])

    def webhook_request(self, url: str, turn: Turn) -> WebhookRequest:
        """The call to make for this turn, from the valves as they are now."""
        stream = self.valves.stream and turn.wants_stream
        return WebhookRequest(
            url=url,
            payload=build_payload(self.valves, turn, url, stream),
            headers=build_headers(self.valves, stream),
            connect_timeout=self.valves.connect_timeout,
            read_timeout=self.valves.read_timeout,
            verify_ssl=self.valves.verify_ssl,
            response_field=self.valves.response_field,
            stream=stream,
            max_reply_bytes=int(self.valves.max_reply_mb * MIB),
            max_reply_seconds=self.valves.max_reply_minutes * 60,
        )

    def webhook_url(self, model_id: str) -> str:
        """The URL of the workflow behind the picked model (`<function id>.<entry id>`)."""
        workflows = parse_models(self.valves.models)
        entry = model_id.rsplit(".", 1)[-1]
        if entry in workflows:
            return workflows[entry][1]
        if workflows and not self.valves.n8n_url:
            return next(iter(workflows.values()))[1]
        return self.valves.n8n_url.strip()


# ---------------------------------------------------------------------------
# Request: pure functions, no I/O.


@dataclass(frozen=True)
class Turn:
    """One chat turn's inputs as Open WebUI gave them: the request is built from this alone, so a new
    input (files, say) is one more field here, not one more parameter on every function."""

    messages: list[dict[str, Any]]
    wants_stream: bool
    model: str = ""
    user: dict[str, Any] = field(default_factory=dict)
    chat_id: str | None = None
    task: str | None = None

    @classmethod
    def from_open_webui(
        cls,
        body: dict[str, Any],
        user: dict[str, Any] | None,
        metadata: dict[str, Any] | None,
        task: str | None,
        chat_id: str | None = None,
    ) -> Turn:
        return cls(
            messages=body.get("messages") or [],
            wants_stream=bool(body.get("stream")),
            model=body.get("model") or "",
            user=user or {},
            chat_id=(metadata or {}).get("chat_id") or chat_id,
            task=task,
        )

    @property
    def session_id(self) -> str:
        """The chat's id keeps the agent's memory per chat; without one, per user."""
        if self.chat_id:
            return self.chat_id
        return f"openwebui-{self.user['id']}" if self.user.get("id") else "openwebui"


@dataclass
class WebhookRequest:
    """Everything one call to the webhook needs; the worker thread reads nothing else."""

    url: str
    payload: dict[str, Any]
    headers: dict[str, str]
    connect_timeout: float
    read_timeout: float
    verify_ssl: bool
    response_field: str
    stream: bool
    max_reply_bytes: int = 16 * MIB
    max_reply_seconds: float = 30 * 60


def parse_models(models: str) -> dict[str, tuple[str, str]]:
    """`Name = URL` lines -> {model id: (name, url)}; ids are stable slugs of the names."""
    workflows: dict[str, tuple[str, str]] = {}
    for line in models.splitlines():
        name, sep, url = line.partition("=")
        name, url = name.strip(), url.strip()
        if not sep or not name or not url or name.startswith("#"):
            continue
        slug = re.sub(r"[^a-z0-9_-]+", "-", name.lower()).strip("-") or "workflow"
        model_id, n = slug, 2
        while model_id in workflows:
            model_id, n = f"{slug}-{n}", n + 1
        workflows[model_id] = (name, url)
    return workflows


def build_payload(valves: Pipe.Valves, turn: Turn, url: str, stream: bool) -> dict[str, Any]:
    """The fields n8n receives: the last user message, a stable session id, and opt-in extras."""
    payload: dict[str, Any] = {
        valves.input_field: last_user_text(turn.messages),
        valves.session_field: turn.session_id,
        "stream": stream,
    }
    if url_path(url).rstrip("/").endswith("/chat"):
        payload["action"] = "sendMessage"
    if valves.send_history:
        payload["messages"] = [{"role": m.get("role"), "content": message_text(m)} for m in turn.messages]
    if valves.send_user_info:
        payload["user"] = {key: turn.user.get(key) for key in ("id", "name", "email", "role")}
    if turn.task:
        payload["task"] = turn.task
    return payload


def url_path(url: str) -> str:
    """The URL's path, or "" when the URL does not parse: the request then reports the bad valve."""
    try:
        return urlsplit(url).path
    except ValueError:
        return ""


def build_headers(valves: Pipe.Valves, stream: bool = True) -> dict[str, str]:
    """Accept every stream format we read, refuse gzip (it holds a stream back), add auth. The body's
    Content-Type is set by whoever encodes the body."""
    headers = {
        "Accept": ACCEPT_STREAM if stream else ACCEPT_COMPLETE,
        "Accept-Encoding": "identity",
    }
    token = valves.n8n_bearer_token.strip()
    if token:
        name = valves.auth_header_name.strip() or "Authorization"
        headers[name] = f"Bearer {token}" if name.lower() == "authorization" else token
    return headers


def message_text(message: dict[str, Any]) -> str:
    """A message's text: the string itself, or the text parts of a multi-part message."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        return "\n".join(part for part in parts if isinstance(part, str))
    return ""


def first_user_text(messages: Sequence[dict[str, Any]]) -> str:
    return next((message_text(m) for m in messages if m.get("role") == "user"), "")


def last_user_text(messages: Sequence[dict[str, Any]]) -> str:
    """The turn's question: the newest user message."""
    return first_user_text(messages[::-1])


def background_task_answer(task: str, task_body: dict[str, Any]) -> str:
    """Answer Open WebUI's own tasks locally, in the JSON shape it parses, so the workflow never runs for them."""
    if task == "title_generation":
        first_line = first_user_text(task_body.get("messages") or []).strip().split("\n", 1)[0]
        title = " ".join(first_line.split()[:TITLE_WORDS])[:TITLE_CHARS].rstrip(" .,;:!?")
        return json.dumps({"title": title}, ensure_ascii=False)
    empty_lists = {"tags_generation": "tags", "follow_up_generation": "follow_ups", "query_generation": "queries"}
    if task in empty_lists:
        return json.dumps({empty_lists[task]: []})
    return ""


# ---------------------------------------------------------------------------
# Decoding: pure, bytes in -> pieces out, testable without a socket. Every decoder has the same pair:
# feed() what arrived, finish() at the end of the body.

PieceKind = Literal["text", "thinking", "node", "error", "dropped", "end", "step", "source", "block_end"]
SHOWN_KINDS = ("text", "error")  # what counts as an answer: a reply with neither says it had no text


class Piece(NamedTuple):
    """One meaningful thing in a reply: text, thinking, a node starting (node), a failure the workflow
    reported (error), the reply cut short (dropped), or its end marker (end). The agent's work: one tool
    step (step: JSON `{"tool", "input", "output"}`, input and output as JSON text), one citation (source:
    JSON of Open WebUI's source event data), an n8n block ending (block_end: the node's name).
    A NamedTuple: one is made per token (bench/README.md)."""

    kind: PieceKind
    value: str = ""


END = Piece("end")


class ReplyCut(ValueError):
    """The reply passed a limit: reading stops, what was shown stays, and the message names the limit."""


class LineTooLong(ReplyCut):
    """A line grew past its limit without a line break."""


class LineSplitter:
    """Splits bytes on CR, LF or CRLF (also split across reads) into UTF-8 decoded lines.
    Works on bytes so a character cut between two reads is decoded whole."""

    def __init__(self, max_line_bytes: int = MAX_LINE_BYTES, too_long: str = "") -> None:
        self.max_line_bytes = max_line_bytes
        self.too_long = too_long or f"n8n sent a line longer than {max_line_bytes // 1024} KiB without a line break"
        self._partial = bytearray()
        self._after_cr = False

    def feed(self, data: bytes) -> list[str]:
        if self._after_cr and data[:1] == b"\n":
            data, self._after_cr = data[1:], False
        if not data:
            return []
        self._after_cr = False
        if b"\n" not in data and b"\r" not in data:
            self._partial += data
            self._check(len(self._partial))
            return []
        text = bytes(self._partial) + data if self._partial else data
        pieces = text.split(b"\n") if b"\r" not in text else LINE_BREAK.split(text)
        self._after_cr = data.endswith(b"\r")
        self._partial = bytearray(pieces.pop())
        if len(text) > self.max_line_bytes:
            self._check(max(len(self._partial), *(len(p) for p in pieces)))
        return [p.decode("utf-8", "replace") for p in pieces]

    def finish(self) -> str | None:
        """The last line when the body ended without a line break, else None."""
        if not self._partial:
            return None
        line, self._partial = self._partial.decode("utf-8", "replace"), bytearray()
        return line

    def _check(self, length: int) -> None:
        if length > self.max_line_bytes:
            raise LineTooLong(self.too_long)


@dataclass(frozen=True)
class ServerSentEvent:
    event: str
    data: str
    id: str = ""


class SSEDecoder:
    """Lines -> server-sent events, by the WHATWG event-stream rules and nothing more, but a cap on one
    event's data: data lines that never meet a blank line would otherwise pile up for ever. No finish():
    an event still waiting for its blank line when the body ends is dropped, as the spec says."""

    def __init__(self, max_event_bytes: int = MAX_LINE_BYTES) -> None:
        self.max_event_bytes = max_event_bytes
        self._data: list[str] = []
        self._data_size = 0
        self._event = ""
        self._last_id = ""

    def feed(self, line: str) -> ServerSentEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
            self._data_size += len(value) + 1
            if self._data_size > self.max_event_bytes:
                raise LineTooLong(f"n8n sent an event over {self.max_event_bytes // 1024} KiB without a blank line")
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._last_id = value
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        data, event, self._data, self._event, self._data_size = self._data, self._event, [], "", 0
        if not data:
            return None
        return ServerSentEvent(event or "message", "\n".join(data), self._last_id)


WireFormatName = Literal["empty", "json", "sse", "text"]


def sniff(head: bytes, content_type: str, at_end: bool) -> WireFormatName | None:
    """The wire format from the first bytes (n8n labels its stream application/json), or None to wait."""
    if not at_end and len(head) < len(BOM) and BOM.startswith(head):
        return None
    body = head[len(BOM) :] if head.startswith(BOM) else head
    start = body.lstrip(BLANK)
    if not start:
        return "empty" if at_end else None
    if "text/event-stream" in content_type:
        return "sse"
    if "text/plain" in content_type:
        return "text"
    if start[:1] in (b"{", b"["):
        return "json"
    if start.startswith(SSE_FIELD_PREFIXES):
        return "sse"
    if not at_end and len(start) < 6 and any(p.startswith(start) for p in SSE_FIELD_PREFIXES):
        return None
    return "text"


class ReplyDecoder:
    """Bytes of one reply in, pieces out. Picks the wire format from the first bytes, stops at the end
    marker (`ended`), and at the end of the body says when the reply was empty or had no text."""

    def __init__(
        self, content_type: str = "", response_field: str = "output", max_json_bytes: int = MAX_LINE_BYTES
    ) -> None:
        self.content_type = content_type.lower()
        self.response_field = response_field
        self.max_json_bytes = max_json_bytes
        self.ended = False
        self._head = bytearray()
        self._format: WireFormat | None = None
        self._shown = False

    @property
    def format(self) -> str:
        """What the reply turned out to be, in the user's words (for status and the doctor)."""
        return self._format.label if self._format else "empty"

    @property
    def streams(self) -> bool:
        """Whether the reply came as a stream of parts rather than one complete body."""
        return self._format is not None and self._format.streams

    @property
    def empty(self) -> bool:
        return isinstance(self._format, EmptyFormat)

    def feed(self, data: bytes) -> list[Piece]:
        if self.ended:
            return []
        wire = self._format
        if wire is None:
            self._head += data
            # A blank read decides nothing; sniffing the whole head after each would be quadratic.
            if not data.strip(BLANK) and len(self._head) <= MAX_LINE_BYTES:
                return []
            kind = self._sniffed(at_end=False)
            if kind is None:
                return []
            wire = self._start(kind)
            data, self._head = bytes(self._head), bytearray()
        return self._seen(wire.feed(data))

    def finish(self) -> list[Piece]:
        """The rest of the body, then the verdict on the whole reply: empty, or no text in it."""
        pieces: list[Piece] = []
        wire = self._format
        if wire is None:
            wire = self._start(self._sniffed(at_end=True) or "text")
            data, self._head = bytes(self._head), bytearray()
            pieces = self._seen(wire.feed(data))
        if not self.ended:
            pieces += self._seen(wire.finish())
        self.ended = True
        if not self._shown:
            pieces.append(Piece("error", wire.no_text()))
            self._shown = True
        return pieces

    def _seen(self, pieces: list[Piece]) -> list[Piece]:
        """Nothing counts after the end marker. The reader stops at the read that carried it, so what
        followed it in that same read must go too, or the answer would depend on where reads fall."""
        if END in pieces:
            self.ended = True
            pieces = pieces[: pieces.index(END) + 1]
        if not self._shown:
            self._shown = any(p.kind in SHOWN_KINDS for p in pieces)
        return pieces

    def _sniffed(self, at_end: bool) -> WireFormatName | None:
        """Sniff the first MAX_LINE_BYTES only, else a long blank head followed by `{` would be JSON in
        one read but text in many. Still undecided after them: plain text."""
        beyond = len(self._head) > MAX_LINE_BYTES
        kind = sniff(bytes(self._head[:MAX_LINE_BYTES]), self.content_type, at_end and not beyond)
        return "text" if kind is None and beyond else kind

    def _start(self, kind: WireFormatName) -> WireFormat:
        if self._head.startswith(BOM):
            self._head = self._head[len(BOM) :]
        self._format = WIRE_FORMATS[kind](self.response_field, "ndjson" in self.content_type, self.max_json_bytes)
        return self._format


class WireFormat:
    """One way of cutting a reply into values: feed bytes, get pieces; finish() at the end of the body."""

    LABEL = ""
    STREAMS = True

    def __init__(
        self, response_field: str = "output", labelled_ndjson: bool = False, max_json_bytes: int = MAX_LINE_BYTES
    ) -> None:
        self.response_field = response_field
        self.labelled_ndjson = labelled_ndjson
        self.max_json_bytes = max_json_bytes

    @property
    def label(self) -> str:
        """The format in the user's words, for the status line and the doctor."""
        return self.LABEL

    @property
    def streams(self) -> bool:
        """Whether the reply comes in parts as it is made, rather than as one complete body."""
        return self.STREAMS

    def feed(self, data: bytes) -> list[Piece]:
        raise NotImplementedError

    def finish(self) -> list[Piece]:
        return []

    def no_text(self) -> str:
        """What to say when the whole reply carried no text."""
        return f"The workflow's reply ({self.label}) contained no text."


class EmptyFormat(WireFormat):
    LABEL = "empty"
    STREAMS = False

    def feed(self, data: bytes) -> list[Piece]:
        return []

    def no_text(self) -> str:
        return EMPTY_REPLY


class TextFormat(WireFormat):
    """Plain text, shown as it arrives; UTF-8 decoded incrementally."""

    LABEL = "text"

    def __init__(
        self, response_field: str = "output", labelled_ndjson: bool = False, max_json_bytes: int = MAX_LINE_BYTES
    ) -> None:
        super().__init__(response_field, labelled_ndjson, max_json_bytes)
        self._utf8 = codecs.getincrementaldecoder("utf-8")("replace")

    def feed(self, data: bytes) -> list[Piece]:
        return text_pieces(self._utf8.decode(data))

    def finish(self) -> list[Piece]:
        return text_pieces(self._utf8.decode(b"", final=True))


class JsonLinesFormat(WireFormat):
    """n8n's stream, NDJSON, or one complete JSON body: one JSON value per line.
    A first line that is not JSON on its own means a pretty-printed body: it is read whole. A line or
    body may be as large as the reply may be (a complete answer with a base64 image is one line)."""

    def __init__(
        self, response_field: str = "output", labelled_ndjson: bool = False, max_json_bytes: int = MAX_LINE_BYTES
    ) -> None:
        super().__init__(response_field, labelled_ndjson, max_json_bytes)
        self._lines = LineSplitter(max_json_bytes, json_too_long(max_json_bytes))
        self._blocks = N8nBlocks(response_field)
        self._values = 0
        self._n8n = False
        self._body: list[str] | None = None
        self._body_bytes = 0
        self._first_value: Any = None

    @property
    def streams(self) -> bool:
        return self._n8n or self._values > 1 or self.labelled_ndjson

    @property
    def label(self) -> str:
        if self._n8n:
            return "n8n stream"
        return "NDJSON" if self.streams else "complete JSON"

    def feed(self, data: bytes) -> list[Piece]:
        return [piece for line in self._lines.feed(data) for piece in self._line(line)]

    def finish(self) -> list[Piece]:
        last = self._lines.finish()
        pieces = self._line(last) if last is not None else []
        if self._body is not None:
            pieces += self._whole_body()
        return pieces + self._blocks.finish()

    def no_text(self) -> str:
        if self.streams:
            return super().no_text()
        snippet = shorten(json.dumps(without_agent_work(self._first_value), ensure_ascii=False))
        return (
            f"n8n's reply has no text at `{self.response_field}`: {snippet}. "
            "Set the `response_field` valve to the field that holds the answer."
        )

    def _line(self, line: str) -> list[Piece]:
        if self._body is not None:
            self._body.append(line)
            self._body_bytes += len(line)
            if self._body_bytes > self.max_json_bytes:
                raise LineTooLong(json_too_long(self.max_json_bytes))
            return []
        if not line.strip():
            return []
        try:
            value = json.loads(line)
        except JSON_ERRORS:
            if self._values == 0:
                self._body = [line]
                self._body_bytes = len(line)
                return []
            return text_pieces(line + "\n")
        return self._value(value)

    def _value(self, value: Any) -> list[Piece]:
        self._values += 1
        if self._values == 1:
            self._first_value = value
        if self._n8n or is_n8n_chunk(value):
            self._n8n = True
            return self._blocks.feed(value)
        return pieces_of_json(value, self.response_field)

    def _whole_body(self) -> list[Piece]:
        text = "\n".join(self._body or [])
        self._body = None
        try:
            value = json.loads(text)
        except JSON_ERRORS:
            return text_pieces(text)
        return self._value(value)


SSE_LINE_TOO_LONG = (
    f"n8n sent an event-stream line longer than {MAX_LINE_BYTES // 1024} KiB without a line break: "
    "that is no event stream a chat can read"
)


def json_too_long(limit: int) -> str:
    return f"n8n's reply holds a JSON value over {limit / MIB:g} MB, the limit set by the `max_reply_mb` valve"


class N8nBlocks:
    """n8n's stream lines: begin, item, end, error, keepalive. Items are a model's words, shown byte for
    byte, JSON-looking or not. Only Respond to Webhook's body is unwrapped: a block whose one item is a
    whole JSON document (`{"output": ...}`) shows that document's `response_field`. So a block's first
    item is held back while it could be such a body, until the next line says which it is."""

    def __init__(self, response_field: str) -> None:
        self.response_field = response_field
        self._held: str | None = None
        self._block_start = False

    def feed(self, value: dict[str, Any]) -> list[Piece]:
        kind = type_of(value)
        content = value.get("content")
        if kind == "item":  # first: one per token
            if not isinstance(content, str):
                return []
            if self._block_start and is_json_document(content):
                self._block_start, self._held = False, content
                return []
            self._block_start = False
            return self.finish() + text_pieces(content) if self._held is not None else text_pieces(content)
        if kind == "keepalive":
            return []
        if kind == "end" and self._held is not None:
            held, self._held = self._held, None
            return respond_node_pieces(held, self.response_field)
        pieces = self.finish()
        self._block_start = kind == "begin"
        node = text_at(value, "metadata.nodeName") or ""
        if kind == "begin" and node:
            pieces.append(Piece("node", node))
        elif kind == "end":
            pieces.append(Piece("block_end", node))
        elif kind == "error":
            reason = shorten(content) if isinstance(content, str) and content.strip() else "the workflow failed"
            in_node = f" in {node}" if node else ""
            pieces.append(Piece("error", f"n8n error{in_node}: {reason}"))
        return pieces

    def finish(self) -> list[Piece]:
        """A held item whose block did not end right after it was a model's words: shown as they came."""
        held, self._held = self._held, None
        return text_pieces(held) if held is not None else []


def is_json_document(text: str) -> bool:
    """A JSON object or list, whole: what Respond to Webhook streams as its one item."""
    if not text.lstrip().startswith(JSON_OPENINGS):
        return False
    try:
        json.loads(text)
    except JSON_ERRORS:
        return False
    return True


class SSEFormat(WireFormat):
    """Server-sent events; JSON data goes through the chunk rules, `[DONE]` ends the reply."""

    LABEL = "SSE"

    def __init__(
        self, response_field: str = "output", labelled_ndjson: bool = False, max_json_bytes: int = MAX_LINE_BYTES
    ) -> None:
        super().__init__(response_field, labelled_ndjson, max_json_bytes)
        self._lines = LineSplitter(too_long=SSE_LINE_TOO_LONG)
        self._events = SSEDecoder()

    def feed(self, data: bytes) -> list[Piece]:
        pieces: list[Piece] = []
        for line in self._lines.feed(data):
            event = self._events.feed(line)
            if event is not None:
                pieces += pieces_of_event(event, self.response_field)
        return pieces


WIRE_FORMATS: dict[WireFormatName, type[WireFormat]] = {
    "empty": EmptyFormat,
    "json": JsonLinesFormat,
    "sse": SSEFormat,
    "text": TextFormat,
}

EMPTY_REPLY = (
    "n8n answered with an empty body: a Webhook set to respond 'Streaming' does that when no node streams. "
    "Turn on 'Enable Streaming' in the AI Agent's options, or set the Webhook to respond "
    "'When Last Node Finishes'."
)


def pieces_of_event(event: ServerSentEvent, response_field: str) -> list[Piece]:
    if event.data.strip() == "[DONE]":
        return [Piece("end")]
    try:
        value = json.loads(event.data)
    except JSON_ERRORS:
        value = None
    if not isinstance(value, (dict, list)):  # plain words, or a JSON number or string: the data as it came
        return [Piece("error" if event.event == "error" else "text", event.data)] if event.data else []
    pieces = pieces_of_json(value, response_field)
    if event.event == "error" and not any(p.kind == "error" for p in pieces):
        return [Piece("error", common_text(value) or text_at(value, "message") or shorten(event.data))]
    return pieces


def pieces_of_json(value: Any, response_field: str) -> list[Piece]:
    """Text, thinking, errors and markers from one JSON value, whatever produced it:
    n8n's stream, OpenAI, Ollama, Anthropic, or a complete n8n reply.

    The order is most specific first. A list is n8n's classic `[{"output": ...}]`. n8n's stream lines and
    Anthropic events are recognised by their `type` before any field lookup, so an item whose text sits
    in `content` is never read as a generic `content` field. An `error` key means a failure whatever else
    is there. Then the user's `response_field`, because the user named it, before guessing from OpenAI's
    `choices`, Ollama's `done`/`model`, n8n's "Workflow was started" and finally the common field names."""
    if isinstance(value, list):
        found = text_at(value, response_field)
        if found is not None:
            return agent_work_pieces(value) + text_pieces(found)
        texts = (text_at(item, response_field) or common_text(item) for item in value)
        return agent_work_pieces(value) + text_pieces("\n\n".join(t for t in texts if t))
    if not isinstance(value, dict):
        return text_pieces(value)
    kind = type_of(value)
    if is_n8n_chunk(value):  # met outside n8n's own stream (inside SSE data, say): read on its own
        return N8nBlocks(response_field).feed(value)
    if kind in ANTHROPIC_EVENTS:
        return ANTHROPIC_EVENTS[kind](value)
    if value.get("error"):
        return [Piece("error", error_message(value["error"]))]
    found = text_at(value, response_field)
    if found is not None:
        return agent_work_pieces(value) + text_pieces(found)
    if "choices" in value:
        return openai_pieces(value)
    if "done" in value or ("model" in value and ("message" in value or "response" in value)):
        return ollama_pieces(value)
    if value.get("message") == "Workflow was started":
        return [Piece("error", WORKFLOW_STARTED)]
    text = common_text(value)
    return agent_work_pieces(value) + text_pieces(text) if text is not None else []


def is_n8n_chunk(value: Any) -> bool:
    """n8n's own stream lines: begin/item/end/error/keepalive (an Anthropic error has an `error` key)."""
    return (
        isinstance(value, dict) and type_of(value) in N8N_STREAM_TYPES and ("metadata" in value or "error" not in value)
    )


def respond_node_text(content: str, response_field: str) -> str:
    """Respond to Webhook streams its whole body as one item whose content is a JSON string."""
    try:
        value = json.loads(content)
    except JSON_ERRORS:
        return content
    found = text_at(value, response_field) if isinstance(value, (dict, list)) else None
    if found is None and isinstance(value, list) and value:
        found = text_at(value[0], response_field)
    return found if found is not None else content


def respond_node_pieces(content: str, response_field: str) -> list[Piece]:
    """Respond to Webhook's streamed body: the agent's steps and sources in it, then its text."""
    try:
        value = json.loads(content)
    except JSON_ERRORS:
        value = None
    return agent_work_pieces(value) + text_pieces(respond_node_text(content, response_field))


def agent_work_pieces(value: Any) -> list[Piece]:
    """The AI Agent's tool steps (`intermediateSteps`) and the workflow's `sources` in a complete reply,
    `{...}` or n8n's `[{...}]`: shown as tool blocks and citations, never as text."""
    items = value if isinstance(value, list) else [value]
    pieces: list[Piece] = []
    for item in items:
        if isinstance(item, dict):
            pieces += step_pieces(item.get("intermediateSteps")) + source_pieces(item.get("sources"))
    return pieces


def step_pieces(steps: Any) -> list[Piece]:
    """n8n's `[{action: {tool, toolInput, log}, observation}]`, inputs and outputs cut to TOOL_TEXT_CHARS."""
    pieces: list[Piece] = []
    for step in steps if isinstance(steps, list) else []:
        action = object_at(step, "action")
        tool = action.get("tool")
        if not isinstance(tool, str) or not tool.strip():
            continue
        shown = {
            "tool": " ".join(tool.split()),
            "input": tool_json(action.get("toolInput")),
            "output": tool_json(step.get("observation")),
        }
        pieces.append(Piece("step", json.dumps(shown, ensure_ascii=False)))
    return pieces


def tool_json(value: Any) -> str:
    """A tool's input or output as JSON text, as Open WebUI keeps its own tools' arguments and results;
    a string longer than TOOL_TEXT_CHARS is cut, a longer JSON value becomes its cut text."""
    if not isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
        if len(text) <= TOOL_TEXT_CHARS:
            return well_formed(text)
        value = text
    cut = value if len(value) <= TOOL_TEXT_CHARS else value[:TOOL_TEXT_CHARS] + "…"
    return well_formed(json.dumps(cut, ensure_ascii=False))


def source_pieces(sources: Any) -> list[Piece]:
    """`[{"title"|"name", "url", "content"?}]` -> Open WebUI's source event data, one per entry."""
    pieces: list[Piece] = []
    for entry in (sources if isinstance(sources, list) else [])[:MAX_SOURCES]:
        url = web_url(text_at(entry, "url") or "")
        title = text_at(entry, "title") or text_at(entry, "name") or url
        if not title:
            continue
        content = text_at(entry, "content") or title
        data = {
            "source": {"name": title, "url": url} if url else {"name": title},
            "document": [content],
            "metadata": [{"source": url or title, "name": title}],
        }
        pieces.append(Piece("source", json.dumps(data, ensure_ascii=False)))
    return pieces


def web_url(url: str) -> str:
    """Only http(s) links become a citation's link: a `javascript:` URL would run in the chat."""
    return url.strip() if url.strip().lower().startswith(("http://", "https://")) else ""


def without_agent_work(value: Any) -> Any:
    """A reply without its tool steps and sources, for a snippet quoted in a message."""
    if isinstance(value, dict):
        return {key: item for key, item in value.items() if key not in AGENT_WORK_FIELDS}
    if isinstance(value, list):
        return [without_agent_work(item) for item in value]
    return value


def openai_pieces(value: dict[str, Any]) -> list[Piece]:
    choice = object_at(value, "choices.0")
    delta = object_at(choice, "delta") or object_at(choice, "message")
    thinking = delta.get("reasoning_content") or delta.get("reasoning")
    return thinking_pieces(thinking) + text_pieces(delta.get("content"))


def ollama_pieces(value: dict[str, Any]) -> list[Piece]:
    inner = value.get("message")
    message: dict[str, Any] = inner if isinstance(inner, dict) else value
    pieces = thinking_pieces(message.get("thinking"))
    pieces += text_pieces(message.get("content") if "content" in message else message.get("response"))
    return pieces + ([Piece("end")] if value.get("done") is True else [])


def anthropic_delta(value: dict[str, Any]) -> list[Piece]:
    delta = object_at(value, "delta")
    if delta.get("type") == "thinking_delta":
        return thinking_pieces(delta.get("thinking"))
    return text_pieces(delta.get("text"))


ANTHROPIC_EVENTS: dict[str, Callable[[dict[str, Any]], list[Piece]]] = {
    "content_block_delta": anthropic_delta,
    "message_stop": lambda value: [Piece("end")],
    "message_start": lambda value: [],
    "content_block_start": lambda value: [],
    "content_block_stop": lambda value: [],
    "message_delta": lambda value: [],
    "ping": lambda value: [],
}

WORKFLOW_STARTED = (
    "n8n answered 'Workflow was started': the webhook replies before the workflow runs. "
    "In the Webhook node set Respond to 'Streaming' (or 'When Last Node Finishes')."
)


def text_pieces(text: Any) -> list[Piece]:
    return [Piece("text", well_formed(text))] if isinstance(text, str) and text else []


def thinking_pieces(text: Any) -> list[Piece]:
    return [Piece("thinking", well_formed(text))] if isinstance(text, str) and text else []


def well_formed(text: str) -> str:
    """JSON escapes can carry a lone surrogate ("\\ud800"), which no UTF-8 encoder downstream accepts:
    it becomes U+FFFD, as invalid UTF-8 bytes do; an escaped pair becomes its one character."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def type_of(value: dict[str, Any]) -> str:
    """The `type` field when it is a string; any other shape there is no type (and a list is not hashable)."""
    kind = value.get("type")
    return kind if isinstance(kind, str) else ""


def value_at(value: Any, path: str) -> Any:
    """What is at a dotted path such as `data.answer` or `0.output`, else None.
    isdecimal, not isdigit: `²` is a digit that int() refuses."""
    for key in path.split("."):
        if isinstance(value, list) and key.isdecimal() and int(key) < len(value):
            value = value[int(key)]
        elif isinstance(value, dict) and key in value:
            value = value[key]
        else:
            return None
    return value


def text_at(value: Any, path: str) -> str | None:
    found = value_at(value, path)
    return found if isinstance(found, str) else None


def object_at(value: Any, path: str) -> dict[str, Any]:
    """The object at a dotted path, else {}: a producer's odd shape reads as nothing, not as a crash."""
    found = value_at(value, path)
    return found if isinstance(found, dict) else {}


def common_text(value: Any) -> str | None:
    return next((t for path in COMMON_TEXT_FIELDS if (t := text_at(value, path)) is not None), None)


def error_message(error: Any) -> str:
    if isinstance(error, dict):
        message = error.get("message") or error.get("detail") or error.get("type") or json.dumps(error)
        kind = error.get("type")
        return f"{kind}: {message}" if kind and kind != message else str(message)
    return str(error)


def shorten(text: str, limit: int = ERROR_SNIPPET_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"


# ---------------------------------------------------------------------------
# Transport: the only code that touches requests, threads and sockets.


class Stopped(Exception):
    """The user pressed Stop: the worker leaves without handing anything over."""


class Stopper:
    """Shuts an exchange's sockets on Stop. Closing a response from another thread does not wake a
    blocked read; shutting the socket does, also while n8n has not sent its headers yet."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self.stopped = False

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            if not self.stopped:
                self._sockets.append(sock)
                return
        shut_down(sock)

    def stop(self) -> None:
        with self._lock:
            self.stopped = True
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            shut_down(sock)


def shut_down(sock: socket.socket) -> None:
    with suppress(OSError):  # already closed by the other side
        sock.shutdown(socket.SHUT_RDWR)


class StoppableAdapter(HTTPAdapter):
    """An HTTPAdapter whose connections register their sockets with a Stopper when they connect."""

    def __init__(self, stopper: Stopper) -> None:
        self.stopper = stopper
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self._watch_pools(self.poolmanager)

    def proxy_manager_for(self, *args: Any, **kwargs: Any) -> Any:
        manager = super().proxy_manager_for(*args, **kwargs)
        self._watch_pools(manager)
        return manager

    def _watch_pools(self, manager: Any) -> None:
        stopper = self.stopper
        watched = {}
        for scheme, pool_class in manager.pool_classes_by_scheme.items():

            class WatchedConnection(pool_class.ConnectionCls):  # type: ignore[name-defined, misc]
                def connect(self) -> None:
                    super().connect()
                    stopper.watch(self.sock)

            watched[scheme] = type(pool_class.__name__, (pool_class,), {"ConnectionCls": WatchedConnection})
        manager.pool_classes_by_scheme = watched


@dataclass
class Outcome:
    """How one reply went, for the status line and the webhook doctor: the worker fills in the wire's
    side, the chat its side (chunks shown, when, and the failure it said)."""

    started: float = field(default_factory=time.monotonic)
    status_code: int | None = None
    format: str = ""
    streamed: bool = False
    empty: bool = False
    failure: str = ""
    chunks: int = 0
    first_chunk_at: float | None = None
    last_chunk_at: float | None = None
    tool_steps: int = 0

    def shown(self, now: float) -> None:
        """Counts, not a list of times: a 100 MB reply must not grow memory for a figure."""
        self.chunks += 1
        if self.first_chunk_at is None:
            self.first_chunk_at = now
        self.last_chunk_at = now


class RawBody(Protocol):
    """What the read loop needs of a body: urllib3's response, or bytes in memory in the tests."""

    def read1(self, amt: int | None = None, decode_content: bool | None = None) -> bytes: ...


class ChunkedFraming:
    """HTTP/1.1 chunked transfer coding removed from raw socket bytes: feed() what the socket gave,
    get the body's bytes back at once, even a chunk's data cut in pieces (the rest follows in later
    reads), so no text waits for its chunk's end. Strict: a size line that is not hex is an error."""

    def __init__(self) -> None:
        self.ended = False
        self._pending = b""  # an unfinished size line, trailer line or CRLF
        self._left = 0  # bytes of the current chunk's data still to come
        self._after_data = False  # the CRLF after a chunk's data is next
        self._in_trailer = False

    def feed(self, data: bytes) -> bytes:
        buffer = self._pending + data if self._pending else data
        self._pending = b""
        body: list[bytes] = []
        at, size = 0, len(buffer)
        while at < size and not self.ended:
            if self._left:
                end = min(size, at + self._left)
                body.append(buffer[at:end])
                self._left -= end - at
                self._after_data = not self._left
                at = end
                continue
            if self._after_data and buffer.startswith(b"\r\n", at):  # the usual end of a chunk, taken whole
                self._after_data = False
                at += 2
                continue
            line_end = buffer.find(b"\n", at)
            if line_end < 0:
                self._pending = buffer[at:]
                if len(self._pending) > CHUNK_LINE_BYTES:
                    raise urllib3.exceptions.ProtocolError("invalid chunk: a line without its end")
                break
            self._line(buffer[at:line_end].rstrip(b"\r"))
            at = line_end + 1
        return b"".join(body)

    def _line(self, line: bytes) -> None:
        if self._after_data:
            if line:
                raise urllib3.exceptions.ProtocolError("invalid chunk: data longer than its size")
            self._after_data = False
        elif self._in_trailer:
            self.ended = not line
        elif CHUNK_SIZE.fullmatch(line):
            self._left = int(line.split(b";", 1)[0], 16)
            self._in_trailer = not self._left
        else:
            raise urllib3.exceptions.ProtocolError(f"invalid chunk size line {line[:40]!r}")


CHUNK_SIZE = re.compile(rb"[0-9a-fA-F]{1,15}[ \t]*(;.*)?")
CHUNK_LINE_BYTES = 4096


class ChunkedBody:
    """A chunked reply read straight from the socket's buffer, the framing removed here: urllib3's
    read1() walks a call chain per HTTP chunk, and n8n sends every token as its own chunk."""

    def __init__(self, socket_file: Any) -> None:
        self._socket_file = socket_file
        self._framing = ChunkedFraming()

    def read1(self, amt: int | None = None, decode_content: bool | None = None) -> bytes:
        """The body's next bytes, as soon as one socket read brought any; b"" at the body's end."""
        while not self._framing.ended:
            data = self._socket_file.read1(amt or READ_SIZE)
            if not data:
                raise urllib3.exceptions.ProtocolError("incomplete chunked read: the connection closed")
            body = self._framing.feed(data)
            if body:
                return body
        return b""


def reply_body(response: requests.Response) -> RawBody:
    """The fastest faithful reader of this reply's body: the socket itself for a chunked, uncompressed
    body nobody has read yet, else urllib3 (lengths, close-delimited bodies, gzip)."""
    raw = response.raw
    http_response = getattr(raw, "_fp", None)
    socket_file = getattr(http_response, "fp", None)
    identity = response.headers.get("Content-Encoding", "identity").strip().lower() in ("", "identity")
    untouched = getattr(http_response, "chunked", False) and getattr(http_response, "chunk_left", 0) is None
    if identity and untouched and hasattr(socket_file, "read1"):
        return ChunkedBody(socket_file)
    return cast(RawBody, raw)


HandOver = Callable[[list[Piece]], None]


class ReplyLimits:
    """The `max_reply_mb` and `max_reply_minutes` valves, checked after every read: a gzip bomb, an
    endless reply or one that drips a byte a second for ever ends with what was shown. A reply that
    sends nothing at all is `read_timeout`'s."""

    def __init__(self, request: WebhookRequest) -> None:
        self.max_bytes = request.max_reply_bytes
        self.max_seconds = request.max_reply_seconds
        self.deadline = time.monotonic() + request.max_reply_seconds
        self.received = 0

    def check(self, size: int) -> None:
        self.received += size
        if self.received > self.max_bytes:
            raise ReplyCut(f"the reply passed {self.max_bytes / MIB:g} MB, the limit set by the `max_reply_mb` valve")
        if time.monotonic() > self.deadline:
            minutes = f"{self.max_seconds / 60:g} min"
            raise ReplyCut(f"the reply went on for over {minutes}, the limit set by the `max_reply_minutes` valve")


class Exchange:
    """One call to the webhook, run in a worker thread: open, read with read1(), decode, hand over."""

    def __init__(self, request: WebhookRequest) -> None:
        self.request = request
        self.stopper = Stopper()
        self.outcome = Outcome()

    def stop(self) -> None:
        self.stopper.stop()

    def run(self, hand_over: HandOver) -> None:
        """One request per chat turn, never repeated: n8n may have received it, and a workflow's side
        effects (emails, tickets, payments) must not happen twice."""
        try:
            self._call(self.request, hand_over)
        except Stopped:
            pass
        except Exception as exc:  # an exception would vanish in Open WebUI: the chat must say it
            # The frames, not the message: a message can carry the webhook's path, which stays out of logs.
            frames = "".join(traceback.format_tb(exc.__traceback__))
            log.error("n8n pipe bug talking to %s: %s\n%s", host_and_port(self.request.url), type(exc).__name__, frames)
            with suppress(Stopped):
                hand_over([internal_error(exc)])

    def _call(self, request: WebhookRequest, hand_over: HandOver) -> None:
        URLLIB3_LOGS.secrets.update(url_secrets(request.url))
        with requests.Session() as session:
            adapter = StoppableAdapter(self.stopper)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            try:
                response = session.post(
                    request.url,
                    json=request.payload,
                    headers=request.headers,
                    timeout=(request.connect_timeout, request.read_timeout),
                    verify=request.verify_ssl,
                    stream=True,
                    allow_redirects=False,  # a redirect would carry the token to another host, or drop the POST
                    auth=token_headers_only,
                )
            except requests.RequestException as exc:
                self._check_stopped()
                hand_over([Piece("error", proxy_failure(exc, request.url) or connection_failure(exc, request))])
                return
            with response:
                self._check_stopped()
                self.outcome.status_code = response.status_code
                if response.status_code >= 400:
                    hand_over([Piece("error", http_failure(response, request.url))])
                    return
                if response.is_redirect:
                    hand_over([Piece("error", redirect_failure(response, request.url))])
                    return
                content_type = response.headers.get("Content-Type", "")
                decoder = ReplyDecoder(content_type, request.response_field, request.max_reply_bytes)
                self.read_body(reply_body(response), decoder, hand_over)

    def read_body(self, body: RawBody, decoder: ReplyDecoder, hand_over: HandOver) -> None:
        """The read loop: read, decode, hand over what that read meant, until the reply ends. Every read's
        pieces go at once: how the bytes were cut into segments never decides when text is shown."""
        limits = ReplyLimits(self.request)
        try:
            while not decoder.ended and (data := body.read1(READ_SIZE, decode_content=True)):
                self._check_stopped()
                hand_over(decoder.feed(data))
                limits.check(len(data))
            self._check_stopped()
            hand_over(decoder.finish())
        except ReplyCut as exc:
            hand_over([Piece("dropped", str(exc))])
        except NETWORK_ERRORS as exc:
            self._check_stopped()
            hand_over([Piece("dropped", read_failure(exc, self.request))])
        finally:
            self.outcome.format = decoder.format
            self.outcome.streamed = decoder.streams
            self.outcome.empty = decoder.empty

    def _check_stopped(self) -> None:
        if self.stopper.stopped:
            raise Stopped


def token_headers_only(request: requests.PreparedRequest) -> requests.PreparedRequest:
    """The auth requests would otherwise add: a `~/.netrc` entry or credentials in the URL. The token
    in the headers is the only credential the webhook gets."""
    return request


# What a broken connection raises while reading; anything else is a bug and is reported as one.
NETWORK_ERRORS = (OSError, urllib3.exceptions.HTTPError, requests.RequestException)


def internal_error(exc: BaseException) -> Piece:
    """A bug in the pipe, said in the chat: an exception would vanish inside Open WebUI."""
    return Piece("error", f"internal error in the n8n pipe: {type(exc).__name__}")


def is_timeout(exc: BaseException) -> bool:
    return any(
        isinstance(e, (TimeoutError, socket.timeout, requests.Timeout)) or "timed out" in str(e) for e in causes(exc)
    )


def causes(exc: BaseException) -> list[BaseException]:
    """The exception and everything that caused it, requests' and urllib3's wrappers included."""
    chain: list[BaseException] = []
    pending: list[Any] = [exc]
    while pending and len(chain) < 20:
        current = pending.pop()
        if not isinstance(current, BaseException) or current in chain:
            continue
        chain.append(current)
        pending += [current.__cause__, current.__context__, getattr(current, "reason", None), *current.args]
    return chain


def host_and_port(url: str) -> str:
    """Where a URL points, without its path, query or credentials: what messages and logs may show."""
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return "an invalid URL"
    return f"{parts.hostname}:{port}"


def connection_failure(exc: BaseException, request: WebhookRequest) -> str:
    if isinstance(exc, requests.exceptions.InvalidURL | requests.exceptions.URLRequired | ValueError):
        return "The `n8n_url` valve is not a valid http(s) URL."
    host = host_and_port(request.url)  # after the check above: an invalid URL (port 99999) has no host:port
    chain = causes(exc)
    if any(isinstance(e, socket.gaierror) for e in chain) or "Name or service not known" in str(exc):
        return f"Cannot reach n8n at {host}: host name not found. Check the `n8n_url` valve."
    if isinstance(exc, requests.exceptions.SSLError):
        return f"TLS error talking to n8n at {host}: certificate not accepted (see the `verify_ssl` valve)."
    if isinstance(exc, requests.ConnectTimeout):
        return f"Cannot reach n8n at {host}: no answer within {request.connect_timeout:g} s (connect_timeout)."
    if is_timeout(exc):
        return f"{read_failure(exc, request)}."
    if any(isinstance(e, ConnectionRefusedError) for e in chain) or "refused" in str(exc).lower():
        return f"Cannot reach n8n at {host}: connection refused. Is n8n running, and is `n8n_url` right?"
    return f"Cannot reach n8n at {host}: {read_failure_reason(exc)}."


def read_failure(exc: BaseException, request: WebhookRequest) -> str:
    if is_timeout(exc):
        return f"n8n sent nothing for {request.read_timeout:g} s (read_timeout)"
    return read_failure_reason(exc)


def read_failure_reason(exc: BaseException) -> str:
    chain = causes(exc)
    if any(isinstance(e, ConnectionResetError) for e in chain):
        return "connection reset"
    text = " ".join(str(e) for e in chain).lower()
    if any(word in text for word in ("incomplete", "invalidchunklength", "broken")):
        return "connection closed before the reply ended"
    return "connection lost"


def redirect_failure(response: requests.Response, url: str) -> str:
    """Redirects are not followed (the token would go along): the valve should hold the final URL."""
    location = urljoin(url, response.headers.get("Location", ""))
    return f"`n8n_url` redirects to {location} (HTTP {response.status_code}): put that URL in the `n8n_url` valve."


def proxy_failure(exc: BaseException, url: str) -> str | None:
    """A proxy from HTTP_PROXY/HTTPS_PROXY that failed is named as the proxy, not as n8n."""
    if not isinstance(exc, requests.exceptions.ProxyError):
        return None
    proxies = requests.utils.get_environ_proxies(url)
    proxy = proxies.get(urlsplit(url).scheme) or proxies.get("all") or ""
    where = host_and_port(proxy) if proxy else "the proxy"
    return (
        f"Cannot reach n8n through the proxy at {where} (set by HTTP_PROXY/HTTPS_PROXY in Open WebUI's "
        f"environment): {read_failure_reason(exc)}. If Open WebUI should reach n8n directly, add n8n's host "
        "to NO_PROXY."
    )


def http_failure(response: requests.Response, url: str) -> str:
    """n8n's error reply as advice: which valve to fix, with n8n's own words."""
    body = read_bounded(response)
    status = response.status_code
    message, hint = n8n_message(body)
    if status in (401, 403):
        return (
            f"n8n rejected the request (HTTP {status}: {message or 'authentication failed'}). "
            "Check the `n8n_bearer_token` and `auth_header_name` valves against the webhook's credential."
        )
    if status == 404:
        test_url = "/webhook-test/" in url_path(url)
        advice = (
            "Test URLs (/webhook-test/) answer only while the n8n editor is listening ('Execute workflow')."
            if test_url
            else "Production URLs (/webhook/) need the workflow to be active (published) in n8n."
        )
        said = "".join(f"{with_full_stop(part)} " for part in (message, hint) if part)
        return f"n8n: webhook not found (HTTP 404). {said}Check the `n8n_url` valve. {advice}"
    return f"n8n answered HTTP {status}: {message or 'no details'}"


def with_full_stop(text: str) -> str:
    """n8n's hints can end without a full stop ("...only in the executions list)"): ours follows them."""
    return text if text.endswith((".", "!", "?", "…")) else f"{text}."


def read_bounded(response: requests.Response) -> str:
    try:
        data = response.raw.read(ERROR_BODY_LIMIT, decode_content=True) or b""
    except Exception:
        data = b""
    return data.decode("utf-8", "replace")


def n8n_message(body: str) -> tuple[str, str]:
    """n8n's `message` and `hint` from a JSON error body, or the plain text it sent."""
    try:
        value = json.loads(body)
    except JSON_ERRORS:
        return shorten(body.strip()), ""
    if isinstance(value, dict):
        message = value.get("message") or value.get("error") or ""
        if isinstance(message, dict):
            message = error_message(message)
        return shorten(str(message)), shorten(str(value.get("hint") or ""))
    return shorten(body.strip()), ""


class Handover:
    """Pieces from the worker thread to the event loop. The worker adds every read's pieces at once; the
    loop is woken only when it has no wake pending, so a fast stream costs one wake per drain, not one
    per token (bench/README.md), and no piece ever waits for a later read. Too much text waiting pauses
    the worker, so a stalled chat cannot grow memory."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._ready = asyncio.Event()
        self._lock = threading.Condition(threading.Lock())
        self._pieces: list[Piece] = []
        self._queued_chars = 0
        self._wake_pending = False
        self._finished = False
        self._abandoned = False

    def put(self, pieces: list[Piece]) -> None:
        """Worker side. Raises Stopped when the chat has gone."""
        if not pieces:
            return
        size = sum(len(p.value) for p in pieces)
        with self._lock:
            while self._queued_chars > QUEUED_CHARS and not self._abandoned:
                self._lock.wait()
            if self._abandoned:
                raise Stopped
            self._pieces += pieces
            self._queued_chars += size
            wake, self._wake_pending = not self._wake_pending, True
        if wake:
            self._wake()

    def finish(self) -> None:
        """Worker side: nothing more will come."""
        with self._lock:
            self._finished = True
            wake, self._wake_pending = not self._wake_pending, True
        if wake:
            self._wake()

    async def drain(self) -> tuple[list[Piece], bool]:
        """Loop side: everything handed over so far, and whether that is all."""
        await self._ready.wait()
        self._ready.clear()
        with self._lock:
            pieces, self._pieces, self._queued_chars = self._pieces, [], 0
            self._wake_pending = False
            self._lock.notify_all()
            return pieces, self._finished

    def abandon(self) -> None:
        """Loop side, on Stop: a worker waiting for room leaves at once."""
        with self._lock:
            self._abandoned = True
            self._lock.notify_all()

    def _wake(self) -> None:
        """Outside the lock: the loop's drain must not wait for the worker's call into the loop."""
        with suppress(RuntimeError):  # the event loop is gone: nobody is waiting any more
            self._loop.call_soon_threadsafe(self._ready.set)


# Starts the reply threads, one at a time and off the event loop; it never runs a reply itself.
# Thread.start() waits until the new thread runs, which stalls the loop when many replies start at
# once (figures in bench/README.md).
THREAD_STARTER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="n8n-starter")


async def batches_from_worker(exchange: Exchange) -> AsyncGenerator[list[Piece], None]:
    """Runs the exchange in its own thread and hands its pieces to the event loop as they come, all
    that arrived since the last look in one batch.
    A thread per reply (not the shared executor): a slow workflow must not queue other chats."""
    loop = asyncio.get_running_loop()
    handover = Handover(loop)

    def work() -> None:
        try:
            exchange.run(handover.put)
        finally:
            handover.finish()

    def start(worker: threading.Thread) -> None:
        try:
            worker.start()
        except RuntimeError as exc:  # no thread left to give: the chat hears it instead of waiting forever
            log.error("cannot start the n8n reply thread: %s", exc)
            handover.put([internal_error(exc)])
            handover.finish()

    try:
        worker = threading.Thread(target=work, name="n8n-reply", daemon=True)
        await loop.run_in_executor(THREAD_STARTER, start, worker)
        finished = False
        while not finished:
            pieces, finished = await handover.drain()
            if pieces:
                yield pieces
    finally:
        exchange.stop()
        handover.abandon()


# ---------------------------------------------------------------------------
# Presentation: pieces of the reply -> what the chat shows.


class StatusReporter:
    """Status lines under the message; silent without an emitter, never breaks the stream."""

    def __init__(self, emitter: Callable[[dict[str, Any]], Any] | None) -> None:
        self._emitter = emitter

    async def show(self, description: str, done: bool = False) -> None:
        if self._emitter is None:
            return
        try:
            await self._emitter({"type": "status", "data": {"description": description, "done": done}})
        except Exception as exc:  # the chat must go on even when the UI channel fails
            log.warning("status event failed: %s", type(exc).__name__)


class ChatRenderer:
    """Turns pieces into chat text: thinking inside <think> tags, failures as visible notices. Counts
    what it shows into the reply's Outcome."""

    def __init__(self, show_thinking: bool, outcome: Outcome, show_tool_steps: bool = True) -> None:
        self.show_thinking = show_thinking
        self.outcome = outcome
        self.show_tool_steps = show_tool_steps
        self._thinking = False
        self._new_block = False

    def render(self, piece: Piece) -> str:
        if piece.kind == "node":
            self._new_block = self.outcome.chunks > 0
        if piece.kind == "thinking" and self.show_thinking and piece.value:
            opening = "" if self._thinking else self.block_break() + "<think>\n"
            self._thinking = True
            return self._shown(opening + piece.value)
        if piece.kind == "text" and piece.value:
            return self._shown(self.close_thinking() + self.block_break() + piece.value)
        if piece.kind in ("error", "dropped"):
            return self.close_thinking() + self.notice(piece)
        if piece.kind == "step":
            self.outcome.tool_steps += 1
            return self.close_thinking() + tool_call_block(piece.value) if self.show_tool_steps else ""
        return ""

    def block_break(self) -> str:
        """A new n8n block (an agent's answer after a tool call) starts a new paragraph, not mid-sentence."""
        if not self._new_block:
            return ""
        self._new_block = False
        return "\n\n"

    def close_thinking(self) -> str:
        if not self._thinking:
            return ""
        self._thinking = False
        return "\n</think>\n\n"

    def notice(self, piece: Piece) -> str:
        chunks = self.outcome.chunks
        if piece.kind == "dropped" and chunks:
            return f"\n\n[stream interrupted after {chunks} chunk{'s' if chunks != 1 else ''}: {piece.value}]"
        separator = "\n\n" if chunks else ""
        return f"{separator}⚠️ {piece.value}"

    def summary(self) -> str:
        now = time.monotonic()
        total = now - self.outcome.started
        first = self.outcome.first_chunk_at
        steps = tool_steps_said(self.outcome.tool_steps)
        if first is None:
            return f"Done in {total:.1f} s{steps}"
        return f"Done: first text after {first - self.outcome.started:.1f} s, {total:.1f} s in all{steps}"

    def _shown(self, text: str) -> str:
        self.outcome.shown(time.monotonic())
        return text


def tool_steps_said(count: int) -> str:
    """The final status's note of the agent's tool steps, so the user knows tools ran."""
    if not count:
        return ""
    return f", {count} tool step{'s' if count != 1 else ''}"


def tool_call_block(step_json: str) -> str:
    """One tool step in the markup Open WebUI 0.12.4 renders for its own tool calls: a collapsed
    `<details type="tool_calls">` whose attributes hold the name, input and result. Attributes are
    HTML-escaped JSON on one line: the chat's parser reads `name="value"` pairs up to the next quote."""
    step = json.loads(step_json)
    attributes = {
        "type": "tool_calls",
        "done": "true",
        "name": step["tool"],
        "arguments": step["input"],
        "result": step["output"],
    }
    said = " ".join(f'{key}="{html.escape(value)}"' for key, value in attributes.items())
    return f"<details {said}>\n<summary>Tool Executed</summary>\n</details>\n"


class Citations:
    """Open WebUI `source` events: the workflow's sources listed under the answer; silent without an
    emitter, never breaks the stream."""

    def __init__(self, emitter: Callable[[dict[str, Any]], Any] | None) -> None:
        self._emitter = emitter

    async def cite(self, data_json: str) -> None:
        if self._emitter is None:
            return
        try:
            await self._emitter({"type": "source", "data": json.loads(data_json)})
        except Exception as exc:  # the chat must go on even when the UI channel fails
            log.warning("source event failed: %s", type(exc).__name__)


class ToolWait:
    """n8n streams one block per model call and runs the agent's tools between blocks without saying
    so. While the stream stays open after a block's end, the status says a tool runs; only after
    TOOL_STATUS_DELAY, as the last block's end is followed by the body's end a moment later and every
    reply would claim a tool. The same node starting a new block counts one tool step."""

    def __init__(self, status: StatusReporter, outcome: Outcome) -> None:
        self._status = status
        self._outcome = outcome
        self._ended: str | None = None  # the node whose block ended, until a block begins
        self._said = False  # the status for this end is out
        self._sleeping: asyncio.Task[None] | None = None
        self._saying: asyncio.Task[Any] | None = None

    def ended(self, node: str) -> None:
        self._ended, self._said = node, False

    def began(self, node: str) -> None:
        if self._ended is not None and node == self._ended:
            self._outcome.tool_steps += 1
        self._ended = None

    def after_batch(self) -> None:
        """All of a read is shown: a block that ended with nothing after it starts the wait."""
        if self._ended is not None and not self._said and self._sleeping is None:
            self._sleeping = asyncio.ensure_future(self._say(self._ended, self._outcome.tool_steps + 1))

    def cancel(self) -> None:
        """More arrived, or the chat ends: a status still waiting is never said."""
        sleeping, self._sleeping = self._sleeping, None
        if sleeping is not None:
            sleeping.cancel()

    async def close(self) -> None:
        """Before the final status, so a status being said cannot land after it."""
        self.cancel()
        if self._saying is not None:
            await self._saying

    async def _say(self, node: str, step: int) -> None:
        await asyncio.sleep(TOOL_STATUS_DELAY)
        self._sleeping, self._saying, self._said = None, asyncio.current_task(), True
        await self._status.show(f"{node or 'The agent'} is using a tool… (step {step})")


async def chat_chunks(
    exchange: Exchange,
    status: StatusReporter,
    show_thinking: bool,
    secrets: list[str],
    show_tool_steps: bool = True,
    citations: Citations | None = None,
) -> AsyncGenerator[str, None]:
    """What the chat shows, chunk by chunk, with status and source events on the side; the first failure
    shown is kept in the exchange's Outcome."""
    outcome = exchange.outcome
    renderer = ChatRenderer(show_thinking, outcome, show_tool_steps)
    tool_wait = ToolWait(status, outcome)
    await status.show("Waiting for n8n…")
    try:
        async with aclosing(batches_from_worker(exchange)) as batches:
            async for batch in batches:
                tool_wait.cancel()
                shown: list[str] = []  # one chat chunk per batch: a fast stream must not cost a chunk per token
                for piece in batch:
                    if piece.kind in ("error", "dropped"):
                        piece = Piece(piece.kind, redact(piece.value, secrets))
                        outcome.failure = outcome.failure or piece.value
                        where = host_and_port(exchange.request.url)
                        log.warning("n8n at %s: %s", where, redact(piece.value, url_secrets(exchange.request.url)))
                    elif piece.kind == "node":
                        for chunk in open_webui_safe("".join(shown)):
                            yield chunk
                        shown.clear()
                        tool_wait.began(piece.value)
                        await status.show(f"{piece.value} is answering")
                    elif piece.kind == "block_end":
                        tool_wait.ended(piece.value)
                    elif piece.kind == "source" and citations is not None:
                        await citations.cite(piece.value)
                    shown.append(renderer.render(piece))
                for chunk in open_webui_safe("".join(shown)):
                    yield chunk
                tool_wait.after_batch()
    except (GeneratorExit, asyncio.CancelledError):
        tool_wait.cancel()
        await status.show("Stopped", done=True)  # else the last status spins on for ever after Stop
        raise
    for chunk in open_webui_safe(renderer.close_thinking()):
        yield chunk
    await tool_wait.close()
    await status.show(outcome.failure or renderer.summary(), done=True)


async def single_chunk(text: str, status: StatusReporter | None = None, failure: str = "") -> AsyncGenerator[str, None]:
    """A finished answer as a one-chunk stream, for chats that asked for a stream."""
    if status is not None and failure:
        await status.show(failure, done=True)
    for chunk in open_webui_safe(text):
        yield chunk


def open_webui_safe(text: str) -> list[str]:
    """Open WebUI forwards a yielded string that starts with `data:` as a raw SSE line, not as text.
    Splitting off its first character keeps the joined text identical and the chunk plain text."""
    if not text:
        return []
    if text.startswith("data:"):
        return [text[:1], text[1:]]
    return [text]


def redact(text: str, secrets: Iterable[str]) -> str:
    """Every secret becomes ***, however a reply quoted it back: as it is, URL-encoded or HTML-escaped,
    broken across lines, or shortened by `shorten` (its start right before the `…` goes too)."""
    for secret in {s.strip() for s in secrets}:
        if secret:
            for form in {secret, quote(secret), quote(secret, safe=""), quote_plus(secret), html.escape(secret)}:
                text = secret_pattern(form).sub("***", text)
    return text


def secret_pattern(secret: str) -> re.Pattern[str]:
    """The secret with any whitespace between its characters, or its first SECRET_START_CHARS or more
    characters right before a `…`."""
    chars = [re.escape(c) for c in secret]
    whole = r"\s*".join(chars)
    starts = [r"\s*".join(chars[:end]) + "(?=…)" for end in range(len(chars) - 1, SECRET_START_CHARS - 1, -1)]
    return re.compile("|".join([whole, *starts]))


class WebhookPathFilter(logging.Filter):
    """urllib3 logs request paths (its debug request line, its header-parsing warnings); a webhook
    without auth is secret by its path, so the paths the pipe calls become *** in urllib3's records."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            message = record.getMessage()
            redacted = redact(message, self.secrets)
            if redacted != message:
                record.msg, record.args = redacted, ()
        return True


def filter_urllib3_logs() -> WebhookPathFilter:
    """One filter on urllib3's loggers, replacing the one an earlier load of this file put there
    (Open WebUI loads a function again each time its valves or code are saved)."""
    path_filter = WebhookPathFilter()
    for name in ("urllib3.connectionpool", "urllib3.response", "urllib3.util.retry", "urllib3.poolmanager"):
        logger = logging.getLogger(name)
        for old in [f for f in logger.filters if type(f).__name__ == WebhookPathFilter.__name__]:
            logger.removeFilter(old)
        logger.addFilter(path_filter)
    return path_filter


URLLIB3_LOGS = filter_urllib3_logs()


def url_secrets(url: str) -> list[str]:
    """What of the webhook URL stays out of logs: a webhook without auth is secret by its path."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return [url]
    words = {"", "webhook", "webhook-test", "chat"}
    return [part for part in (parts.query, *parts.path.split("/")) if part not in words]


# ---------------------------------------------------------------------------
# Command line: `demo` streams from an embedded fake n8n, no n8n needed.

DEMO_NODE = "AI Agent"


def demo_tokens(prompt: str) -> list[str]:
    """The fake workflow's answer, token by token, with the characters that break weaker parsers."""
    words = f"You said: {prompt}. This answer streams token by token from a fake n8n webhook".split(" ")
    return [w if i == 0 else f" {w}" for i, w in enumerate(words)] + [' (ünïcødé, "quotes", tabs\t).\n']


def n8n_stream_line(kind: str, content: str | None = None) -> bytes:
    """One line of n8n's streaming reply, shaped as n8n 2.x writes it."""
    line: dict[str, Any] = {"type": kind}
    if content is not None:
        line["content"] = content
    line["metadata"] = {"nodeName": DEMO_NODE, "itemIndex": 0, "runIndex": 0, "timestamp": int(time.time() * 1000)}
    return json.dumps(line, ensure_ascii=False).encode() + b"\n"


def serve_demo_webhook(token_delay: float) -> ThreadingHTTPServer:
    """A fake n8n streaming webhook on 127.0.0.1 (any path), answering like Webhook + AI Agent."""

    class FakeN8n(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            payload = json.loads(self.rfile.read(length) or b"{}")
            self.send_response(200)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            lines = [n8n_stream_line("begin")]
            lines += [n8n_stream_line("item", t) for t in demo_tokens(str(payload.get("chatInput", "")))]
            for line in [*lines, n8n_stream_line("end")]:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                self.wfile.flush()
                time.sleep(token_delay)
            self.wfile.write(b"0\r\n\r\n")

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the demo's terminal shows the answer, not access logs."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeN8n)
    threading.Thread(target=server.serve_forever, name="fake-n8n", daemon=True).start()
    return server


async def run_demo(prompt: str, token_delay: float) -> int:
    server = serve_demo_webhook(token_delay)
    try:
        pipe = Pipe()
        pipe.valves.n8n_url = f"http://127.0.0.1:{server.server_address[1]}/webhook/demo"
        body = {"model": "n8n", "stream": True, "messages": [{"role": "user", "content": prompt}]}
        started = time.monotonic()
        first: float | None = None
        count = 0
        answer = await pipe.pipe(body, __metadata__={"chat_id": "demo"})
        async for chunk in single_chunk(answer) if isinstance(answer, str) else answer:
            first = first if first is not None else time.monotonic() - started
            count += 1
            print(chunk, end="", flush=True)
        total = time.monotonic() - started
        print(f"\n-- {count} chunks; first after {(first or 0) * 1000:.0f} ms; all in {total:.2f} s", file=sys.stderr)
        return 0
    finally:
        server.shutdown()
        server.server_close()


# `check`: the webhook doctor. Calls a real webhook through the pipe and says why it does or does not stream.

BUFFERED_SPREAD = 0.1


def verdict(outcome: Outcome) -> tuple[bool, str]:
    """(streamed, the plain verdict with its fix)."""
    status = outcome.status_code
    if status in (401, 403):
        return False, "authentication failed: pass the webhook's token with --token (the `n8n_bearer_token` valve)"
    if status == 404:
        return False, f"webhook not found: {outcome.failure}"
    if status is None or status >= 400:
        return False, outcome.failure or "no reply"
    if outcome.empty:
        return False, "streaming mode but nothing streams: enable streaming on the AI Agent"
    if not outcome.streamed:
        return False, (
            "complete JSON: the workflow is not set to stream "
            "(Webhook 'Respond: Streaming' and the AI Agent's 'Enable Streaming')"
        )
    first, last = outcome.first_chunk_at, outcome.last_chunk_at
    if first is not None and last is not None and outcome.chunks >= 3:
        spread = last - first
        if spread < BUFFERED_SPREAD and first - outcome.started > 5 * BUFFERED_SPREAD:
            return False, (
                f"buffered: every chunk arrived within {spread * 1000:.0f} ms at the end — "
                "a proxy is buffering (see deploy/nginx.conf)"
            )
    if outcome.chunks:
        return True, "streams" + (f" (the workflow reported: {outcome.failure})" if outcome.failure else "")
    return False, outcome.failure or f"no text arrived ({outcome.format})"


async def run_check(url: str, token: str, auth_header: str, prompt: str, read_timeout: float) -> int:
    pipe = Pipe()
    pipe.valves.n8n_bearer_token = token
    pipe.valves.auth_header_name = auth_header
    pipe.valves.read_timeout = read_timeout
    messages = [{"role": "user", "content": prompt}]
    turn = Turn(messages, wants_stream=True, chat_id=f"webhook-doctor-{int(time.time())}")
    exchange = Exchange(pipe.webhook_request(url, turn))
    async for chunk in chat_chunks(exchange, StatusReporter(None), True, [token]):
        print(chunk, end="", flush=True)
    outcome = exchange.outcome
    streamed, plain = verdict(outcome)
    print("\n")
    print(f"HTTP status: {outcome.status_code or 'none'}")
    print(f"format: {outcome.format or 'none'}")
    if outcome.first_chunk_at is not None and outcome.last_chunk_at is not None:
        print(f"time to first chunk: {outcome.first_chunk_at - outcome.started:.2f} s")
        print(f"chunks: {outcome.chunks}, arriving over {outcome.last_chunk_at - outcome.first_chunk_at:.2f} s")
    print(f"verdict: {plain}")
    return 0 if streamed else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pipe_n8n_stream", description="Open WebUI <-> n8n streaming pipe.")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="stream a reply from an embedded fake n8n webhook (no n8n needed)")
    demo.add_argument("prompt", nargs="?", default="Hello")
    demo.add_argument("--delay", type=float, default=0.08, help="seconds between the fake model's tokens")
    check = commands.add_parser("check", help="call a real webhook and diagnose why it does or does not stream")
    check.add_argument("url", help="the webhook URL, as in the n8n_url valve")
    check.add_argument("--token", default="", help="the n8n_bearer_token valve")
    check.add_argument("--auth-header", default="Authorization", help="the auth_header_name valve")
    check.add_argument("--prompt", default="Hello! Please answer in a few sentences.")
    check.add_argument("--read-timeout", type=float, default=300, help="the read_timeout valve, in seconds")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR, format="%(name)s: %(message)s")  # the terminal shows the failures
    if args.command == "check":
        return asyncio.run(run_check(args.url, args.token, args.auth_header, args.prompt, args.read_timeout))
    return asyncio.run(run_demo(args.prompt, args.delay))


if __name__ == "__main__":
    sys.exit(main())
