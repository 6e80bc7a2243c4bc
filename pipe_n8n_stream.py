"""
title: n8n Stream
author: pipe_n8n_stream maintainers
version: 0.1.0
license: MIT
description: Stream n8n workflow answers into the chat as they are generated, without blocking Open WebUI.
required_open_webui_version: 0.6.0
"""

# Map of this file. Each section uses only the sections above it (tests/test_one_way.py keeps it so): top-down
# it is the way from what can happen to what the chat shows; Open WebUI's call comes in at the bottom.
#   Events              one immutable type per thing that happened: Text, Thinking, NodeStarted, BlockEnded,
#                       ToolStep, ToolStarted, Usage, Source, File, FileLink, ExecutionId, End, Responded,
#                       ReplyEnded, Following, Recovered, Failure (a code and its facts); ApiAnswer; Outcome
#   Words               every sentence a user reads about a failure or an API answer, made from its facts
#   Valves              the admin's settings (Valves; Settings, frozen) and what in them stops a turn
#   Request             pure: one chat turn (Turn) -> WebhookRequest (URL, payload, headers, signed token)
#   Open WebUI's files  a turn's attachments read from Open WebUI's storage; a workflow's files saved there
#   Decoding            bytes -> events, pure; ReplyDecoder picks a WireFormat from the first bytes
#                       LineSplitter: bytes -> lines; SSEDecoder: lines -> server-sent events (WHATWG);
#                       N8nBlocks: n8n's begin/item/end lines; events_of_json: one JSON value, any producer
#   HTTP                what the webhook's call and n8n's API share: Stopper, timeouts, why a call failed
#   n8n's API           on Stop, stops the turn's execution (ExecutionStop); after a broken reply, follows it
#                       to its end (ExecutionFollower) and reads the answer from it; reads the agent's tool
#                       runs and token usage from it (ExecutionWatch)
#   Models              which workflow a chat model calls: a `models` line, `n8n_url`, or a workflow tagged in
#                       n8n (listed through its API by an async pipes(), in a thread, cached)
#   Transport           Exchange makes one POST (never repeated) and reads its head in a worker thread; the
#                       body is read on the event loop from the socket (LoopBody: framing, content coding),
#                       or in the thread where the loop cannot (ChunkedBody); classifies what failed;
#                       Handover takes a thread's events to the event loop
#   Presentation        ChatTurn: the one place event kinds are read (handle), owner of the Outcome; Emitter
#                       (status and source events), ChatRenderer (chat text), ToolWait, AgentWork (the
#                       execution's tool steps and usage, waited for within their bounds)
#   Pipe                Open WebUI's entry: one chat turn -> Settings + Turn -> WebhookRequest -> ChatTurn
#   Command line        demo, check (the webhook doctor), both through Pipe.pipe()
# Adding an event kind is two edits: its class in Events (and in `Event`), and its case in ChatTurn.handle
# (mypy's assert_never names a missing one); what the decoder, the transport and the hand-over must know of
# it are properties every event has (see `Text`). A new failure: its code in FailureCode and its sentence in
# failure_words. A new producer's JSON shape is one more branch in events_of_json; a new framing one more
# WireFormat, picked by sniff().

from __future__ import annotations

import argparse
import asyncio
import base64
import codecs
import hashlib
import hmac
import html
import http.client
import inspect
import io
import json
import logging
import mimetypes
import re
import socket
import ssl
import sys
import threading
import time
import traceback
import uuid
from collections import Counter
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import aclosing, contextmanager, suppress
from dataclasses import dataclass, field, replace
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar, Literal, NamedTuple, Protocol, Self, assert_never, cast
from urllib.parse import quote, quote_plus, unquote, urljoin, urlsplit

import requests
import urllib3
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from requests.adapters import HTTPAdapter

log = logging.getLogger("pipe_n8n_stream")
MIB = 1024 * 1024
MAX_LINE_BYTES = MIB
READ_SIZE = 65536
LOOP_BODY_BYTES = MIB  # a complete body longer than this is read in the reply's thread (see loop_body)
QUEUED_CHARS = 1024 * 1024  # text waiting for the event loop before the worker pauses reading
ERROR_BODY_LIMIT = 64 * 1024
ERROR_SNIPPET_CHARS = 300
SECRET_START_CHARS = 4  # a cut-off secret's start is hidden from this length; shorter ones match plain words
ACCEPT_STREAM = "text/event-stream, application/x-ndjson, application/json"
ACCEPT_COMPLETE = "application/json"
BOM = b"\xef\xbb\xbf"
BLANK = b" \t\r\n"
JSON_OPENINGS = ("{", "[")
JSON_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"')
JSON_BLANKS = (" ", "\t", "\r", "\n")
LINE_BREAK = re.compile(rb"\r\n|\r|\n")
SSE_FIELD_PREFIXES = (b"data:", b"event:", b"id:", b"retry:", b":")
N8N_STREAM_TYPES = {"begin", "item", "end", "error", "keepalive"}
COMMON_TEXT_FIELDS = ("output", "text", "response", "content", "message.content", "choices.0.message.content")
TURN_ID_FIELD = "turnId"  # the turn's own id in the payload: how the pipe finds its n8n execution to stop it
ERROR_GRACE_SECONDS = 3.0  # after an n8n error item, n8n may send nothing more, not even the body's end
TITLE_WORDS = 6
# Open WebUI's tasks answered with an empty list, and the list's key in the JSON it parses: nothing to tag,
# suggest or search; `memory_review` (0.10+, after a turn when memory review is on): nothing to remember.
EMPTY_LIST_TASKS = {
    "tags_generation": "tags",
    "follow_up_generation": "follow_ups",
    "query_generation": "queries",
    "memory_review": "operations",
}
SINGLE_MODEL = "n8n"  # the one model's entry id when the `models` valve is empty
VALVES_AT = "Admin Panel > Functions > the pipe's gear"
# Payload fields the pipe sets itself: `input_field` or `session_field` named so would be overwritten.
PIPE_PAYLOAD_FIELDS = ("stream", "action", "messages", "user", "task", "files", "imageUrls")
SEND_FILES_MODES = ("multipart", "text", "off")
FILE_FIELD_PREFIX = "data"  # form fields data0, data1, ...: the names a Chat Trigger gives its binaries too
IMAGE_URLS_FIELD = "imageUrls"  # remote images, passed as URLs: the pipe never fetches a URL it was given
HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 token
BEARER_PREFIX = re.compile(r"bearer\s+", re.IGNORECASE)
JWT_HEADER = {"alg": "HS256", "typ": "JWT"}  # what n8n's JWT Auth (Passphrase, HS256) verifies
JWT_ISSUER = "open-webui"
# Headers the pipe sets itself on a request to n8n: an `extra_headers` line may not replace them.
PIPE_HEADERS = ("accept", "accept-encoding", "content-type", "content-length", "transfer-encoding", "host")
API_KEY_HEADER = "X-N8N-API-KEY"
# First path segments of n8n's editor pages: a URL copied from the browser's address bar, not a webhook.
# fmt: off
EDITOR_PAGES = {
    "workflow", "workflows", "home", "projects", "signin", "signup", "setup", "settings", "credentials",
    "executions", "templates", "variables", "insights",
}
# fmt: on
TITLE_CHARS = 60
TOOL_TEXT_CHARS = 2000  # a tool's input or output shown in its step block is cut here
MAX_SOURCES = 100  # citations taken from one reply: each is an event and a row in the saved message
TOOL_STATUS_CHARS = 120  # a running tool's input in the status line is cut here
TOOL_STATUS_DELAY = 1.0  # seconds after an n8n block's end before the status says a tool runs
AGENT_WORK_FIELDS = ("intermediateSteps", "sources", "files", "usage", "tokenUsage")
# What json.loads raises on bytes that are no usable JSON: a line of 100 000 `[` is a RecursionError.
JSON_ERRORS = (ValueError, RecursionError)
CONTROL_CHARS = "\x00-\x08\x0b\x0c\x0e-\x1f\x7f"  # control characters other than tab and line breaks
CONTROL = re.compile(f"[{CONTROL_CHARS}]")  # never in a header value
CONTROL_OR_BREAK = re.compile(f"[\t\r\n{CONTROL_CHARS}]")  # no place in a token
# What the chat leaves out of a model's words in JSON and event streams: the C0 control characters but
# tab, LF and CR; everything else (DEL and C1 too) is shown as it came. Open WebUI saves the message into
# the chat, one JSON document per chat in its database, and renders it as markdown: on PostgreSQL a
# U+0000 in it breaks text queries on that chat (its search skips such messages: open-webui issues 9317
# and 15616), and the other C0 characters have no glyph (nothing or a box on screen).
UNSHOWN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")


# ---------------------------------------------------------------------------
# Events: one small immutable type per thing that happened in a reply, and the facts of n8n's API answers.
# Decoders, transport and the API make them; ChatTurn.handle (Presentation) is the one place that reads
# their kinds. What the rest must know of an event is a property of the event (EventFacts).


class EventFacts:
    """What the decoder, the transport and the hand-over ask of any event, so that none of them matches
    kinds: every kind says here what is true of it (the defaults fit most)."""

    __slots__ = ()
    answers: ClassVar[bool] = False  # the reply said something to the user: it was not empty of text
    ends_reply: ClassVar[bool] = False  # the producer's end marker: nothing after it counts
    begins_block: ClassVar[bool] = False  # an n8n node began a new block of the answer
    ends_block: ClassVar[bool] = False  # an n8n node's block ended: a tool may run before the next
    is_failure: ClassVar[bool] = False  # something went wrong: after n8n's error, silence ends the reply
    ends_tool: ClassVar[bool] = False  # a tool's run, its output included: the wait for it is over

    @property
    def answer_words(self) -> str:
        """Words of the answer it adds: what recovery must not show twice."""
        return ""

    @property
    def shown_chars(self) -> int:
        """Characters of text it will show: what bounds the text waiting for the event loop."""
        return 0

    @property
    def streamed_execution_id(self) -> str:
        """The n8n execution the workflow said it runs in: Stop stops that one."""
        return ""

    @property
    def follow_after_body(self) -> Failure | None:
        """A failure whose answer may still come from n8n's execution once the body is read, else None."""
        return None

    def without_unshown(self) -> Self | None:
        """The event without the characters the chat leaves out of words (UNSHOWN); None if nothing is left."""
        return self


@dataclass(frozen=True, slots=True)
class Words(EventFacts):
    """What Text and Thinking share: words the chat shows."""

    text: str

    @property
    def shown_chars(self) -> int:
        return len(self.text)

    def without_unshown(self) -> Self | None:
        if not UNSHOWN.search(self.text):
            return self
        text = UNSHOWN.sub("", self.text)
        return replace(self, text=text) if text else None


@dataclass(frozen=True, slots=True)
class Text(Words):
    """Words of the answer, shown byte for byte."""

    answers: ClassVar[bool] = True

    @property
    def answer_words(self) -> str:
        return self.text


@dataclass(frozen=True, slots=True)
class Thinking(Words):
    """The model's reasoning, shown as collapsible thinking."""


@dataclass(frozen=True, slots=True)
class NodeStarted(EventFacts):
    """An n8n node began a block of the stream (n8n's `begin`)."""

    begins_block: ClassVar[bool] = True
    node: str


@dataclass(frozen=True, slots=True)
class BlockEnded(EventFacts):
    """An n8n node's block ended (n8n's `end`): more blocks may follow while the agent's tools run."""

    ends_block: ClassVar[bool] = True
    node: str


@dataclass(frozen=True, slots=True)
class ToolStep(EventFacts):
    """One of the AI Agent's tool calls (its `intermediateSteps`, or its run in n8n's execution): the tool,
    its input, its output."""

    ends_tool: ClassVar[bool] = True
    tool: str
    input: Any
    output: Any


@dataclass(frozen=True, slots=True)
class ToolStarted(EventFacts):
    """n8n saved a tool run's input, not yet its output (the workflow saves its progress): the tool runs."""

    tool: str
    input: Any


@dataclass(frozen=True, slots=True)
class Usage(EventFacts):
    """The tokens the turn's model calls used: passed on once per reply in the keys Open WebUI reads (its
    (i) info under the answer, the saved message, Admin > Analytics), never shown as text."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int

    @property
    def for_open_webui(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }


@dataclass(frozen=True, slots=True)
class Source(EventFacts):
    """A source the workflow names (its `sources`), cited under the answer; `url` only when http(s)."""

    title: str
    url: str
    content: str


@dataclass(frozen=True, slots=True)
class File(EventFacts):
    """A file the workflow answered with (an image, a PDF, a spreadsheet), whole: never shown as text.
    `name` is "" when n8n gave none (Respond to Webhook's Binary File sends no Content-Disposition)."""

    answers: ClassVar[bool] = True
    name: str
    mime_type: str
    data: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class FileLink(EventFacts):
    """A file the workflow links to (an http(s) URL in its reply's `files`), shown as a link or image."""

    answers: ClassVar[bool] = True
    name: str
    url: str


@dataclass(frozen=True, slots=True)
class ExecutionId(EventFacts):
    """The n8n execution id the workflow streamed (`{"executionId": ...}`), never shown: Stop uses it."""

    execution_id: str

    @property
    def streamed_execution_id(self) -> str:
        return self.execution_id


@dataclass(frozen=True, slots=True)
class End(EventFacts):
    """The producer's own end marker (`[DONE]`, Ollama's `done`, Anthropic's `message_stop`)."""

    ends_reply: ClassVar[bool] = True


@dataclass(frozen=True, slots=True)
class Responded(EventFacts):
    """n8n (or a proxy in front of it) answered with this HTTP status."""

    status: int


@dataclass(frozen=True, slots=True)
class ReplyEnded(EventFacts):
    """The reply's body is read, or given up: what it turned out to be, for the status and the doctor."""

    format: str
    streamed: bool
    empty: bool


@dataclass(frozen=True, slots=True)
class Following(EventFacts):
    """The reply broke after n8n got the message (`cause`, `lost_after` seconds into the turn): the pipe
    follows the turn's execution through n8n's API; `waited` is how long it has followed so far."""

    cause: Failure
    lost_after: float
    waited: float = 0.0


@dataclass(frozen=True, slots=True)
class Recovered(EventFacts):
    """The answer that came after this was read from n8n's execution, through its API."""

    execution_id: str


# fmt: off
FailureCode = Literal[
    # what the reply said
    "n8n_error", "model_error", "workflow_started", "empty_reply", "no_text", "no_text_at_field",
    # limits
    "line_too_long", "event_stream_line_too_long", "event_too_long", "json_too_long", "reply_too_large",
    "reply_too_long",
    # before anything was sent
    "attachment_too_large", "attachment_unreadable", "invalid_url", "host_not_found", "plain_http",
    "tls_handshake_stalled", "tls_certificate", "tls_error", "connect_timeout", "connection_refused",
    "proxy_failed",
    # while waiting or reading
    "read_timeout", "connection_reset", "connection_closed", "connection_lost",
    # what n8n or a proxy answered instead of the workflow's reply
    "auth_rejected", "webhook_not_found", "http_error", "gateway", "html_page", "redirect",
    "informational_only", "no_content", "not_modified", "unknown_encoding", "internal_error",
    # what n8n's execution says, read through its API after the reply broke
    "execution_canceled", "execution_crashed", "execution_data_missing",
    # what the reply was instead of text
    "not_text",
]
# fmt: on


@dataclass(frozen=True, slots=True)
class Failure(EventFacts):
    """Something went wrong, as facts: `code` says what, the other fields what is known of it. The
    sentence the user reads is made from them in one place (Words, below), where secrets are redacted."""

    code: FailureCode
    status: int | None = None  # the HTTP status n8n, a proxy or the API answered
    host: str = ""  # host:port only: a webhook's path can be its secret
    node: str = ""  # the n8n node that failed
    message: str = ""  # n8n's (or the model's) own words
    hint: str = ""  # n8n's hint, with its message
    cause: ConnectionCause | None = None  # why the connection to n8n (or to the proxy before it) failed
    timeout: float = 0.0  # the valve's seconds that ran out (connect_timeout, read_timeout)
    took: float = 0.0  # seconds a proxy waited before it answered instead of n8n
    page_title: str = ""  # the title of an HTML page that came instead of the reply
    location: str = ""  # where a redirect points
    test_url: bool = False  # the webhook URL is a test URL (/webhook-test/)
    encodings: str = ""  # content encodings the pipe cannot decode
    file_name: str = ""  # the attachment concerned
    error_type: str = ""  # the Python exception behind an internal error or an unreadable attachment
    reply_format: str = ""  # what a reply with no text turned out to be (SSE, NDJSON, ...)
    response_field: str = ""  # the `response_field` valve's path that held no text
    reply_start: str = ""  # the start of a reply with no text at `response_field`, as JSON
    execution_id: str = ""  # the n8n execution concerned
    size: float = 0.0  # bytes: an attachment's size, or the text shown before bytes that are no text
    limit: float = 0.0  # the limit passed: bytes for sizes and lines, seconds for durations
    may_have_reached_n8n: bool = False  # the request may be running in n8n: it is never sent again
    broke_off: bool = False  # the reply broke off while it was read: what was shown stays
    let_go: bool = False  # the pipe let go of a reply n8n was still making: its execution is stopped
    needs_api_key: bool = False  # n8n's API could have given the answer: the `n8n_api_key` valve is empty
    unrecovered: ApiAnswer | None = None  # why following the execution through n8n's API gave no answer
    jwt: bool = False  # the request carried the turn's signed token (the `jwt_secret` valve), not n8n_bearer_token
    answers: ClassVar[bool] = True
    is_failure: ClassVar[bool] = True

    @property
    def follow_after_body(self) -> Failure | None:
        """n8n answered "Workflow was started" (its Webhook responds immediately): the answer is followed."""
        return self if self.code == "workflow_started" else None


# fmt: off
Event = (
    Text | Thinking | NodeStarted | BlockEnded | ToolStep | ToolStarted | Usage | Source | File | FileLink
    | ExecutionId | End | Responded | ReplyEnded | Following | Recovered | Failure
)
# fmt: on
END = End()


class ReplyCut(ValueError):
    """The reply passed a limit: reading stops, what was shown stays, and the failure names the limit."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.code)
        self.failure = failure


class LineTooLong(ReplyCut):
    """A line grew past its limit without a line break."""


# fmt: off
ApiCode = Literal[
    "cancelled", "already_finished", "not_running", "cannot_stop", "key_rejected", "scope_missing", "no_api",
    "api_http_error", "api_invalid_url", "api_unreachable", "api_not_json", "key_works", "execution_not_found",
    "execution_gone", "recovers",
]
# fmt: on
# Why a connection failed: the webhook's, a proxy's or n8n's API's.
ConnectionCause = Literal["timeout", "connection_refused", "connection_reset", "connection_closed", "connection_lost"]
BrokenConnection = Literal["connection_reset", "connection_closed", "connection_lost"]


@dataclass(frozen=True, slots=True)
class ApiAnswer:
    """What n8n's API did for the pipe, as facts; said in Words (api_words)."""

    code: ApiCode
    execution_id: str = ""
    status: int | None = None
    host: str = ""
    scopes: str = ""  # the key's scopes this call needs
    message: str = ""  # n8n's own words
    cause: ConnectionCause | None = None  # why the API could not be reached


class ShownFile(NamedTuple):
    """A file the workflow answered with, as the chat showed it (for the final status and the doctor)."""

    name: str
    mime_type: str
    size: int
    image: bool


@dataclass
class Outcome:
    """How one reply went, for the status line and the webhook doctor. Written by ChatTurn alone, on the
    event loop, from the events the worker handed over (the HTTP status and format among them)."""

    started: float = field(default_factory=time.monotonic)
    status_code: int | None = None
    format: str = ""
    streamed: bool = False
    empty: bool = False
    failure: str = ""
    chunks: int = 0
    first_chunk_at: float | None = None
    last_chunk_at: float | None = None
    tool_steps: int = 0  # tool calls shown
    tool_rounds: int = 0  # blocks that followed a tool's run in a stream
    recovered_from: str = ""  # the n8n execution the answer was read from, after the reply broke
    files: list[ShownFile] = field(default_factory=list)

    @property
    def steps_seen(self) -> int:
        """Tool steps the turn had: those shown, or the stream's tool rounds when none could be shown."""
        return max(self.tool_steps, self.tool_rounds)

    def count_chunk(self, now: float) -> None:
        """Counts, not a list of times: a 100 MB reply must not grow memory for a figure."""
        self.chunks += 1
        if self.first_chunk_at is None:
            self.first_chunk_at = now
        self.last_chunk_at = now


# ---------------------------------------------------------------------------
# Words: every sentence the user reads about a failure or an API answer, made from its facts, in n8n's and
# Open WebUI's own words for their settings; and the redaction of secrets from them.


def shorten(text: str, limit: int = ERROR_SNIPPET_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"


def redact(text: str, secrets: Iterable[str]) -> str:
    """Every secret becomes ***, however a reply quoted it back: as it is, URL-encoded or HTML-escaped,
    broken across lines, or shortened by `shorten` (its start right before the `…` goes too)."""
    for secret in {s.strip() for s in secrets}:
        if secret:
            for form in {secret, quote(secret), quote(secret, safe=""), quote_plus(secret), html.escape(secret)}:
                text = secret_pattern(form).sub("***", text)
                if "…" in text:
                    *cut, rest = text.split("…")
                    text = "…".join([*(without_secret_start(piece, form) for piece in cut), rest])
    return text


@lru_cache(maxsize=64)  # the same few secrets for every message and log line
def secret_pattern(secret: str) -> re.Pattern[str]:
    """The secret with any whitespace between its characters."""
    return re.compile(r"\s*".join(re.escape(c) for c in secret))


def without_secret_start(text: str, secret: str) -> str:
    """The text with its end hidden when that end is the secret's first SECRET_START_CHARS or more characters
    (whitespace between them allowed): `shorten` cut the secret there. Found by comparing, not by a pattern of
    every prefix, which takes a second to compile for a JWT's length."""
    ends: list[int] = []  # where the text's last non-blank characters are, last first
    at = len(text)
    while at and len(ends) < len(secret) - 1:
        at -= 1
        if not text[at].isspace():
            ends.append(at)
        elif not ends:
            return text  # a blank right before the `…`: no cut secret
    tail = "".join(text[i] for i in reversed(ends))
    for length in range(len(tail), SECRET_START_CHARS - 1, -1):
        if secret.startswith(tail[-length:]):
            return text[: ends[length - 1]] + "***"
    return text


EMPTY_REPLY = (
    "n8n answered with an empty body: a Webhook set to respond 'Streaming' does that when no node streams. "
    "Turn on 'Enable Streaming' in the AI Agent's options, or set the Webhook to respond "
    "'When Last Node Finishes'."
)
WORKFLOW_STARTED = (
    "n8n answered 'Workflow was started': the webhook replies before the workflow runs. "
    "In the Webhook node set Respond to 'Streaming' (or 'When Last Node Finishes')."
)
NO_API_KEY = "n8n keeps running the workflow to its end (set the `n8n_api_key` valve to stop it too)"
STOPPING = "stopping the n8n execution…"
STOP_UNSUPPORTED = "this n8n cannot stop executions through its API (that needs n8n 2.10 or later)"
API_KEY_WORKS = "the key works; Stop will stop n8n executions"
RECOVERY_WORKS = (
    "the key reads executions; an answer whose reply breaks (a proxy's time-out, a dropped connection) is "
    "fetched from n8n's execution"
)


def cause_words(cause: ConnectionCause | None) -> str:
    match cause:
        case "timeout":
            return "no answer in time"
        case "connection_refused":
            return "connection refused"
        case "connection_reset":
            return "connection reset"
        case "connection_closed":
            return "connection closed before the reply ended"
        case "connection_lost" | None:
            return "connection lost"
        case _:
            assert_never(cause)


def failure_words(failure: Failure) -> str:
    """The sentence for a failure. A reply that broke off (`broke_off`) is said as a clause, for the
    chat's "[stream interrupted after …: …]"; anything else as a whole sentence. Then what n8n's API
    could have done, or why it did not."""
    said = failure_sentence(failure)
    if failure.needs_api_key:
        more = RECOVERABLE_WITH_KEY
    elif failure.unrecovered is not None:
        more = f"n8n's answer could not be fetched: {api_words(failure.unrecovered)}"
    else:
        return said
    return f"{said}; {more}" if failure.broke_off else f"{said} {more[0].upper()}{more[1:]}."


RECOVERABLE_WITH_KEY = (
    "with the `n8n_api_key` valve set (scopes execution:read, execution:list), the pipe would have fetched "
    "the answer from n8n's execution"
)


def failure_sentence(f: Failure) -> str:
    match f.code:
        case "n8n_error":
            return n8n_error_words(f.node, f.message)
        case "model_error":
            return f.message
        case "workflow_started":
            return WORKFLOW_STARTED
        case "empty_reply":
            return EMPTY_REPLY
        case "no_text":
            return f"The workflow's reply ({f.reply_format}) contained no text."
        case "no_text_at_field":
            return (
                f"n8n's reply has no text at `{f.response_field}`: {f.reply_start}. "
                "Set the `response_field` valve to the field that holds the answer."
            )
        case "line_too_long":
            return f"n8n sent a line longer than {int(f.limit) // 1024} KiB without a line break"
        case "event_stream_line_too_long":
            return (
                f"n8n sent an event-stream line longer than {int(f.limit) // 1024} KiB without a line break: "
                "that is no event stream a chat can read"
            )
        case "event_too_long":
            return f"n8n sent an event over {int(f.limit) // 1024} KiB without a blank line"
        case "json_too_long":
            return (
                f"n8n's reply holds a JSON value over {f.limit / MIB:g} MB, the limit set by the `max_reply_mb` valve"
            )
        case "reply_too_large":
            return f"the reply passed {f.limit / MIB:g} MB, the limit set by the `max_reply_mb` valve"
        case "reply_too_long":
            return f"the reply went on for over {f.limit / 60:g} min, the limit set by the `max_reply_minutes` valve"
        case "attachment_too_large":
            return (
                f"'{f.file_name}' is {f.size / MIB:.1f} MB, over the {f.limit / MIB:g} MB the `max_upload_mb` valve "
                "allows: the message was not sent to n8n."
            )
        case "attachment_unreadable":
            return (
                f"'{f.file_name}' could not be read from Open WebUI ({f.error_type}): the message was not sent to n8n."
            )
        case "invalid_url":
            return "The `n8n_url` valve is not a valid http(s) URL."
        case "host_not_found":
            return f"Cannot reach n8n at {f.host}: host name not found. Check the `n8n_url` valve."
        case "plain_http":
            return (
                f"n8n at {f.host} speaks plain HTTP, not HTTPS: write http:// instead of https:// in the "
                "`n8n_url` valve."
            )
        case "tls_handshake_stalled":
            return (
                f"Cannot reach n8n at {f.host}: the TLS handshake did not finish within {f.timeout:g} s "
                "(connect_timeout). Is this port serving HTTPS?"
            )
        case "tls_certificate":
            return f"TLS error talking to n8n at {f.host}: certificate not accepted (see the `verify_ssl` valve)."
        case "tls_error":
            return f"TLS error talking to n8n at {f.host}: {shorten(f.message, 120)}."
        case "connect_timeout":
            return f"Cannot reach n8n at {f.host}: no answer within {f.timeout:g} s (connect_timeout)."
        case "connection_refused":
            return f"Cannot reach n8n at {f.host}: connection refused. Is n8n running, and is `n8n_url` right?"
        case "proxy_failed":
            return (
                f"Cannot reach n8n through the proxy at {f.host or 'the proxy'} (set by HTTP_PROXY/HTTPS_PROXY in "
                f"Open WebUI's environment): {cause_words(f.cause)}. If Open WebUI should reach n8n "
                "directly, add n8n's host to NO_PROXY."
            )
        case "read_timeout":
            said = f"n8n sent nothing for {f.timeout:g} s (read_timeout)"
            return said if f.broke_off else f"{said}."
        case "connection_reset" | "connection_closed" | "connection_lost":
            reason = cause_words(f.cause)
            return reason if f.broke_off else f"Cannot reach n8n at {f.host}: {reason}."
        case "auth_rejected":
            return auth_words(f)
        case "webhook_not_found":
            return not_found_words(f)
        case "http_error":
            advice = n8n_error_advice(f.message, f.jwt)
            if advice:
                return f"n8n answered HTTP {f.status}: {with_full_stop(f.message)} {advice}"
            return f"n8n answered HTTP {f.status}: {f.message or 'no details'}"
        case "gateway":
            return gateway_words(f)
        case "html_page":
            return html_page_words(f)
        case "redirect":
            return f"`n8n_url` redirects to {f.location} (HTTP {f.status}): put that URL in the `n8n_url` valve."
        case "informational_only":
            return f"n8n answered only an informational HTTP {f.status} and no answer after it."
        case "no_content":
            return (
                "n8n answered HTTP 204 (No Content): the workflow sent no answer. Set the Webhook's Respond to "
                "'Streaming' or 'When Last Node Finishes', or give the Respond to Webhook node a body."
            )
        case "not_modified":
            return (
                "n8n's address answered HTTP 304 (Not Modified), which only answers a cached request: a cache or "
                "proxy in front of n8n answered instead; turn caching off for /webhook/ (see deploy/nginx.conf)."
            )
        case "unknown_encoding":
            return (
                f"n8n's reply is compressed as '{f.encodings}', which the pipe cannot decode (it asks for "
                "identity): switch compression off for /webhook/ in the proxy in front of n8n (see deploy/nginx.conf)."
            )
        case "internal_error":
            return f"internal error in the n8n pipe: {f.error_type}"
        case "not_text":
            return (
                f"n8n's reply stopped being text after {size_said(int(f.size))}: the rest (bytes that are no UTF-8, "
                "or control characters) is not shown. A workflow that answers "
                "with a file should send it with its type (Respond to Webhook: Respond With Binary File)."
            )
        case "execution_canceled":
            return f"n8n execution {f.execution_id} was cancelled before it finished, so it has no answer."
        case "execution_crashed":
            return (
                f"n8n execution {f.execution_id} crashed (n8n stopped or ran out of memory while running it): open it "
                "in the workflow's Executions list in n8n."
            )
        case "execution_data_missing":
            return (
                f"n8n execution {f.execution_id} ended, but n8n kept none of its data, so its answer cannot be shown: "
                "in the workflow's Settings set 'Save successful production executions' (and failed ones) to Save, or "
                "set EXECUTIONS_DATA_SAVE_ON_SUCCESS=all and EXECUTIONS_DATA_SAVE_ON_ERROR=all in n8n's environment "
                "(and check EXECUTIONS_DATA_MAX_AGE if n8n prunes executions)."
            )
        case _:
            assert_never(f.code)


def following_words(following: Following) -> str:
    """The status line while the pipe follows n8n's execution after the reply broke."""
    cause, after = following.cause, seconds_said(following.lost_after)
    match cause.code:
        case "gateway":
            head = f"The proxy in front of n8n answered {cause.status} after {after} s"
        case "read_timeout":
            head = f"n8n sent nothing for {cause.timeout:g} s (read_timeout)"
        case "workflow_started":
            head = "n8n started the workflow (its Webhook responds immediately)"
        case _:
            head = f"Connection to n8n lost after {after} s"
    waited = f" ({following.waited:.0f} s)" if following.waited else ""
    return f"{head}; n8n is still running the workflow…{waited}"


def n8n_error_words(node: str, message: str) -> str:
    reason = shorten(message) if message.strip() else "the workflow failed"
    in_node = f" in {node}" if node else ""
    advice = n8n_error_advice(reason)
    said = f"{with_full_stop(reason)} {advice}" if advice else reason
    return f"n8n error{in_node}: {said}"


def n8n_error_advice(reason: str, jwt: bool = False) -> str:
    """What to do about a failure n8n reported (an HTTP error's message, a streamed `error` item's content),
    in n8n's words: the reason alone ("Original error: TypeError") does not say where to look. "" if none.
    `jwt`: the request carried the turn's signed token."""
    if "No authentication data defined on node" in reason and jwt:
        return (
            "The Webhook node's Authentication has no credential: in n8n, open the Webhook node, create a JWT Auth "
            f"credential under Authentication ({JWT_CREDENTIAL}), then publish the workflow again."
        )
    if "No authentication data defined on node" in reason:
        return (
            "The Webhook node's Authentication has no credential: in n8n, open the Webhook node, create or pick "
            "the credential under Authentication, then publish the workflow again."
        )
    if "AbortError" in reason:
        return "The workflow's execution was stopped in n8n (from its editor, its API or the pipe's Stop)."
    if "Original error" in reason or re.search(r"\b(TypeError|ResponseError)\b", reason):
        return (
            "The model behind the workflow failed (its credential, URL or model name, or the model server): "
            "open the workflow's Executions list in n8n to see which node failed and why."
        )
    return ""


JWT_CREDENTIAL = "Key Type: Passphrase, Secret: the `jwt_secret` valve, Algorithm: HS256"
# How n8n's JWT Auth (jsonwebtoken) starts its refusals: "No token provided", "jwt malformed", "jwt expired", ...
JWT_REFUSALS = ("No token provided", "jwt ", "invalid signature", "invalid token", "invalid algorithm")
JWT_WANTED = (
    "The Webhook node's Authentication is JWT Auth: set the `jwt_secret` valve to the Secret of its JWT Auth "
    "credential in n8n."
)


def auth_words(f: Failure) -> str:
    """A 401/403 in n8n's words, then what to set where: for the turn's signed token, or the static one."""
    said = f"n8n rejected the request (HTTP {f.status}: {f.message or 'authentication failed'})."
    if f.jwt:
        return f"{said} {jwt_advice(f.message)}"
    if f.message.startswith(JWT_REFUSALS):  # a JWT Auth webhook refusing a static token, or none
        return f"{said} {JWT_WANTED}"
    return f"{said} Check the `n8n_bearer_token` and `auth_header_name` valves against the webhook's credential."


def jwt_advice(message: str) -> str:
    """Why n8n's JWT Auth refused the turn's token, by what n8n said (jsonwebtoken's words)."""
    if "jwt expired" in message:
        return (
            "The turn's token had expired when n8n checked it: Open WebUI's and n8n's clocks differ by more than "
            "`jwt_ttl_seconds`, or the valve is too short: set both servers' clocks by NTP, or raise `jwt_ttl_seconds`."
        )
    if "invalid signature" in message:
        return (
            "The `jwt_secret` valve differs from the Secret of the Webhook's JWT Auth credential in n8n: "
            "paste the same secret into both."
        )
    if "No token provided" in message:
        return (
            "The pipe sent its token in the Authorization header, but none reached n8n: a proxy or gateway in "
            "front of n8n drops that header; let it through."
        )
    return (
        "The pipe signs each turn's token with the `jwt_secret` valve: set the Webhook node's Authentication to "
        f"JWT Auth with a JWT Auth credential ({JWT_CREDENTIAL}), or empty `jwt_secret` to send `n8n_bearer_token`."
    )


def not_found_words(f: Failure) -> str:
    advice = (
        "Test URLs (/webhook-test/) answer only while the n8n editor is listening ('Execute workflow')."
        if f.test_url
        else "Production URLs (/webhook/) need the workflow to be active (published) in n8n."
    )
    said = "".join(f"{with_full_stop(part)} " for part in (f.message, f.hint) if part)
    return f"n8n: webhook not found (HTTP 404). {said}Check the `n8n_url` valve. {advice}"


def gateway_words(f: Failure) -> str:
    """A proxy's 5xx as what it means for the turn: n8n may have the request and still be running it."""
    after = f"after {seconds_said(f.took)} s"
    if f.status == 504:
        return (
            f"The proxy in front of n8n answered 504 {after}; the workflow may still be running; "
            "raise the proxy's read timeout (see deploy/nginx.conf)."
        )
    if f.status == 524:
        return (
            f"Cloudflare answered 524 {after}: n8n sent no response within Cloudflare's 100 s; the workflow may "
            "still be running; let the Webhook respond by streaming, or reach n8n without Cloudflare."
        )
    if f.status == 503:
        return (
            f"The proxy in front of n8n answered 503 {after}: n8n is not available behind it (stopped, starting "
            "or overloaded); try again once n8n is up."
        )
    if f.status == 502:
        return (
            f"The proxy in front of n8n answered 502 {after}: it got no valid answer from n8n; the workflow may "
            "still be running. Check that n8n is up and that the proxy points at its port (see deploy/nginx.conf)."
        )
    page = f" ('{f.page_title}')" if f.page_title else ""
    return f"The proxy in front of n8n answered {f.status}{page} {after}: see the proxy's error log."


def html_page_words(f: Failure) -> str:
    """An HTML page where the workflow's answer should be, named by its title and never pasted: n8n's editor
    (an editor URL in `n8n_url`) or a login or proxy page in front of n8n."""
    title = f.page_title
    label = ", ".join(
        part for part in (f"HTTP {f.status}" if f.status != 200 else "", f"'{title}'" if title else "") if part
    )
    page = f"an HTML page ({label})" if label else "an HTML page"
    if "n8n" in title.lower() or title.startswith("Cannot POST"):
        return (
            f"`n8n_url` answered {page}, not the workflow: the URL must be the Webhook node's Production URL "
            "(…/webhook/…), not an n8n editor address."
        )
    return f"`n8n_url` answered {page}, not the workflow: is a login or proxy page in front of n8n?"


def api_words(answer: ApiAnswer) -> str:
    """What n8n's API did, as the status line says it after Stop or a reply the pipe let go of."""
    a = answer
    match a.code:
        case "cancelled":
            return f"n8n execution {a.execution_id} cancelled"
        case "already_finished":
            return f"n8n execution {a.execution_id} had already finished"
        case "not_running":
            return "no running n8n execution of this message was found (it had already finished)"
        case "cannot_stop":
            return STOP_UNSUPPORTED
        case "key_rejected":
            return "n8n rejected the `n8n_api_key` (HTTP 401): create a new API key in n8n (Settings > n8n API)"
        case "scope_missing":
            return f"the `n8n_api_key` may not do this (HTTP 403): give it the {a.scopes} scopes"
        case "no_api":
            where = a.host or "the `n8n_api_url`"
            return f"no n8n API at {where} (HTTP {a.status}): check the `n8n_api_url` valve (…/api/v1)"
        case "api_http_error":
            return f"n8n's API answered HTTP {a.status}: {a.message or 'no details'}"
        case "api_invalid_url":
            return "the `n8n_api_url` valve is not a valid http(s) URL"
        case "api_unreachable":
            reason = cause_words(a.cause)
            return f"n8n's API at {a.host} could not be reached ({reason}): the workflow may still be running"
        case "api_not_json":
            return f"n8n's API at {a.host} answered something that is not n8n's JSON"
        case "key_works":
            return API_KEY_WORKS
        case "execution_not_found":
            return "no n8n execution of this message was found (n8n may never have received it)"
        case "execution_gone":
            return f"n8n execution {a.execution_id} is gone (n8n kept none of its data)"
        case "recovers":
            return RECOVERY_WORKS
        case _:
            assert_never(a.code)


def done_words(outcome: Outcome, now: float) -> str:
    """The final status of a reply that went well: how long it took, and the agent's tool steps."""
    total = now - outcome.started
    steps = tool_steps_said(outcome.steps_seen)
    recovered = f"; the answer came from n8n execution {outcome.recovered_from}" if outcome.recovered_from else ""
    recovered = "".join(f"; shown: {shown_file_words(file)}" for file in outcome.files) + recovered
    if outcome.first_chunk_at is None:
        return f"Done in {total:.1f} s{steps}{recovered}"
    first = outcome.first_chunk_at - outcome.started
    return f"Done: first text after {first:.1f} s, {total:.1f} s in all{steps}{recovered}"


def shown_file_words(file: ShownFile) -> str:
    return f"{'an image' if file.image else 'a file'}, {file.name} ({file.mime_type}, {size_said(file.size)})"


def file_words(name: str, file: File) -> str:
    """A file that only Open WebUI's storage could show: named, its bytes never dumped as text."""
    return f"📎 The workflow answered with a file: {name} ({file.mime_type}, {size_said(len(file.data))})."


def size_said(size: int) -> str:
    if size < 1024:
        return f"{size} bytes"
    return f"{size / 1024:.1f} KB" if size < MIB else f"{size / MIB:.1f} MB"


def tool_steps_said(count: int) -> str:
    """The final status's note of the agent's tool steps, so the user knows tools ran."""
    if not count:
        return ""
    return f", {count} tool step{'s' if count != 1 else ''}"


def tool_started_words(tool: str, tool_input: Any) -> str:
    """The status while a tool runs, once n8n saved its input: the tool and what it was asked."""
    asked = tool_input if isinstance(tool_input, str) else json.dumps(tool_input, ensure_ascii=False)
    return f"{tool} is running: {shorten(asked, TOOL_STATUS_CHARS)}"


def agent_work_words(live: bool | None, refused: ApiAnswer | None = None) -> str:
    """The doctor's word on the agent's work: whether tool steps and usage will show, and whether live."""
    if refused is not None:
        return f"tool steps and usage will not show in a streamed reply: {api_words(refused)}"
    shown = "tool steps and usage will show (from n8n's execution)"
    if live:
        return f"{shown}; tool steps live: the workflow saves its progress"
    if live is None:
        return (
            f"{shown}; tool steps live only if the workflow saves its progress (Workflow settings > Save "
            "execution progress): the doctor could not read the webhook's workflow to tell (the key needs the "
            "workflow:list scope)"
        )
    return (
        f"{shown}; tool steps after the answer, not live: the workflow does not save its progress (turn on "
        "Workflow settings > Save execution progress, or EXECUTIONS_DATA_SAVE_ON_PROGRESS=true for all)"
    )


def with_full_stop(text: str) -> str:
    """n8n's hints can end without a full stop ("...only in the executions list)"): ours follows them."""
    return text if text.endswith((".", "!", "?", "…")) else f"{text}."


def seconds_said(seconds: float) -> str:
    return f"{seconds:.0f}" if seconds >= 10 else f"{seconds:.1f}"


WORKFLOWS_SCOPE = "workflow:list"
WORKFLOWS_SCOPE_MISSING = (
    f"the `n8n_api_key` may not list workflows (HTTP 403): give the key the {WORKFLOWS_SCOPE} scope in n8n "
    "(Settings > n8n API), or empty the `workflow_tag` valve"
)
SKIPPED_PREFIX = "n8n workflow "


def skipped_workflow_words(tag: str, name: str, why: str) -> str:
    return f"{SKIPPED_PREFIX}'{name}' has the tag '{tag}' but is no model: {why}"


def workflows_failed_words(tag: str, answer: ApiAnswer) -> str:
    """Why no workflow could be listed, with its fix; the models stay as they were."""
    if answer.code == "scope_missing":
        said = WORKFLOWS_SCOPE_MISSING
    elif answer.code == "api_unreachable":
        said = f"n8n's API at {answer.host} could not be reached ({cause_words(answer.cause)})"
    else:
        said = api_words(answer)
    return f"n8n's workflows tagged '{tag}' are not listed as models: {said}"


def listed_workflow_gone(entry: str, tag: str, unlisted: bool) -> str:
    """Why a chat's listed workflow has no URL now (`unlisted`: the tag or key valve is empty), said before
    anything is sent."""
    if unlisted:
        return (
            f"This model ('{entry}') is an n8n workflow listed through n8n's API, but the `workflow_tag` or "
            f"`n8n_api_key` valve is now empty: set it again, or pick another model for this chat ({VALVES_AT})."
        )
    return (
        f"This model's n8n workflow ('{entry}') is no longer listed: it lost the tag "
        f"'{tag}', was unpublished or archived, or its Webhook no longer takes POST; "
        "or n8n's API could not list it (Open WebUI's log says why). Pick another model for this chat, or tag "
        "and publish the workflow again in n8n."
    )


# ---------------------------------------------------------------------------
# Valves: the settings an admin types (the public contract Open WebUI shows), frozen once per set of values
# (Settings), and what in them stops a turn before anything is sent, said in the valves' own words.


def positive_number(default: float, description: str) -> Any:
    """A valve that must be a finite number above zero: 0, a negative or inf would switch its limit off."""
    return Field(default=default, gt=0, allow_inf_nan=False, description=description)


class Valves(BaseModel):
    """The valves an admin sets (Admin Panel > Functions > the gear): Open WebUI finds them as Pipe.Valves."""

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
    jwt_secret: str = Field(
        default="",
        description="The Secret of the Webhook's JWT Auth credential in n8n: each turn then carries a token "
        "signed with it, saying who is asking (n8n_bearer_token is not sent). The secret itself is never sent.",
        json_schema_extra={"input": {"type": "password"}},
    )
    jwt_ttl_seconds: int = Field(
        default=60,
        gt=0,
        description="How long a turn's signed token is valid, in seconds; n8n refuses it after ('jwt expired').",
    )
    extra_headers: str = Field(
        default="",
        description="Headers for a gateway in front of n8n (Cloudflare Access, an API gateway), one "
        "'Name: value' per line; sent to n8n's webhook and API only.",
        json_schema_extra={"input": {"type": "password"}},
    )
    input_field: str = Field(default="chatInput", description="Payload field for the user's message.")
    session_field: str = Field(
        default="sessionId", description="Payload field for the chat id (the AI Agent's memory key)."
    )

    @field_validator("input_field", "session_field")
    @classmethod
    def payload_field_free(cls, name: str, info: ValidationInfo) -> str:
        """Refused when saved: a field the pipe sets itself would overwrite the message or the chat id."""
        problem = payload_field_problem(str(info.field_name), name, info.data.get("input_field"))
        if problem:
            raise ValueError(problem)
        return name

    response_field: str = Field(
        default="output",
        description="Where the answer is in a complete JSON reply: a dotted path such as data.answer or 0.output.",
    )
    stream: bool = Field(default=True, description="Ask n8n for a stream. Off: one complete-JSON request.")
    send_history: bool = Field(default=False, description="Also send the whole chat as `messages`.")
    send_user_info: bool = Field(default=False, description="Also send the user's id, name, email and role as `user`.")
    connect_timeout: float = positive_number(10, "Seconds to wait for n8n to accept the connection.")
    read_timeout: float = positive_number(
        300, "Longest silence allowed between two reads, in seconds (n8n sends a keepalive every 30 s)."
    )
    emit_status: bool = Field(default=True, description="Show progress under the message.")
    show_thinking: bool = Field(default=True, description="Show the model's reasoning as collapsible thinking.")
    show_tool_steps: bool = Field(
        default=True,
        description="Show the AI Agent's tool steps as collapsed tool-call blocks: from a complete reply's "
        "'Return Intermediate Steps'; in a streamed reply, with `n8n_api_key`, from n8n's execution (live when "
        "the workflow saves its progress, else after the answer).",
    )
    show_usage: bool = Field(
        default=True,
        description="Pass on the turn's token usage (Open WebUI's (i) info under the answer): a complete reply's "
        "own `usage`/`tokenUsage`, else, with `n8n_api_key`, the sum over the execution's model calls.",
    )
    verify_ssl: bool = Field(default=True, description="Check n8n's TLS certificate.")
    n8n_api_key: str = Field(
        default="",
        description="An n8n API key (scopes execution:stop, execution:list, execution:read) so Stop also "
        "stops the workflow; empty: n8n runs it to the end.",
        json_schema_extra={"input": {"type": "password"}},
    )
    recover_answers: bool = Field(
        default=True,
        description="When the connection to n8n breaks (a proxy's 504, a reset, read_timeout) after n8n got "
        "the message, fetch the answer from n8n's execution through its API (needs `n8n_api_key` with "
        "execution:read and execution:list). The message is never sent twice.",
    )
    n8n_api_url: str = Field(
        default="",
        description="n8n's public API, e.g. https://n8n.example.com/api/v1. Empty: the webhook's host + /api/v1.",
    )
    models: str = Field(
        default="",
        description="Several workflows as several models, one 'Name = URL' per line. Empty: n8n_url alone.",
    )
    workflow_tag: str = Field(
        default="open-webui",
        description="With `n8n_api_key` (scope workflow:list): every published n8n workflow with this tag is a "
        "model too (a Webhook taking POST or a public Chat Trigger), named as in n8n. Empty: none listed.",
    )
    forward_background_tasks: bool = Field(
        default=False,
        description="Send Open WebUI's own tasks (title, tags, follow-ups, context compaction, memory review...) "
        "to n8n too (with a `task` field). Off: they are answered here and never run the workflow.",
    )
    max_reply_mb: float = positive_number(
        16, "Largest reply shown, in MB (after decompression); a longer one is cut there, keeping what was shown."
    )
    max_reply_minutes: float = positive_number(
        30, "Longest a reply may keep streaming, in minutes; then it is cut, keeping what was shown."
    )
    send_files: str = Field(
        default="multipart",
        description="Attached files and images: multipart (a form with each file as a binary for n8n), "
        "text (JSON with a `files` list of their extracted text) or off (not sent; the chat says so).",
    )
    max_upload_mb: float = positive_number(
        25, "Largest attached file sent to n8n, in MB; a message with a larger one is not sent."
    )

    @field_validator("send_files")
    @classmethod
    def send_files_known(cls, mode: str) -> str:
        """Refused when saved: a misspelt mode would silently drop or send every file."""
        if mode not in SEND_FILES_MODES:
            raise ValueError(f"`send_files` must be one of {', '.join(SEND_FILES_MODES)}, not '{mode}'.")
        return mode


class Settings(Valves):
    """The valves as one turn reads them: a frozen copy taken when the turn starts, so a valve saved while
    a reply streams changes the next turn, never half of this one. Defaults live in Valves alone."""

    model_config = ConfigDict(frozen=True)

    @classmethod
    def of(cls, valves: Valves) -> Settings:
        """The valves' values frozen; the same values give the same Settings (made once, not per turn)."""
        return settings_of(tuple(valves.__dict__.items()))

    @property
    def max_reply_bytes(self) -> int:
        return int(self.max_reply_mb * MIB)

    @property
    def max_reply_seconds(self) -> float:
        return self.max_reply_minutes * 60

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * MIB)

    @property
    def secrets(self) -> list[str]:
        """What never appears in a message, a status or a log line."""
        gateway = [value for _, value in parse_extra_headers(self.extra_headers)]
        return [self.n8n_bearer_token, bare_token(self.n8n_bearer_token), self.n8n_api_key, self.jwt_secret, *gateway]


@lru_cache(maxsize=16)
def settings_of(values: tuple[tuple[str, Any], ...]) -> Settings:
    return Settings.model_construct(**dict(values))


def model_lines(models: str) -> Iterator[tuple[int, str, str, str, str]]:
    """The `models` valve's lines but blank ones and comments (# first): (number, line, name, URL, fault)."""
    for number, line in enumerate(models.splitlines(), 1):
        name, sep, url = (part.strip() for part in line.partition("="))
        if line.strip() and not name.startswith("#"):
            yield number, line, name, url, model_line_fault(bool(sep), name, url)


def model_line_fault(has_equals: bool, name: str, url: str) -> str:
    """What keeps a `models` line from being a workflow, "" when nothing."""
    if not has_equals:
        return "has no '='"
    if not name:
        return "has no name before '='"
    return "" if url else "has no URL after '='"


def parse_models(models: str) -> dict[str, tuple[str, str]]:
    """`Name = URL` lines -> {model id: (name, url)}; ids are stable slugs of the names."""
    workflows: dict[str, tuple[str, str]] = {}
    for _, _, name, url, fault in model_lines(models):
        if fault:
            continue
        slug = re.sub(r"[^a-z0-9_-]+", "-", name.lower()).strip("-") or "workflow"
        model_id, n = slug, 2
        while model_id in workflows:
            model_id, n = f"{slug}-{n}", n + 1
        workflows[model_id] = (name, url)
    return workflows


def model_entry(model_id: str) -> str:
    """The entry id in Open WebUI's `<function id>.<entry id>`; "" for a bare id (the demo, the doctor)."""
    return model_id.rsplit(".", 1)[1] if "." in model_id else ""


def models_problem(models: str) -> str | None:
    """A `models` line the pipe cannot use, said in the chat rather than skipped: a skipped line is a
    workflow that silently vanishes from the model picker. Not a valve validator: Open WebUI then refuses
    to load valves saved by an older pipe that skipped such lines, and every model of the pipe would vanish."""
    for number, line, _, _, fault in model_lines(models):
        if fault:
            return (
                f"Line {number} of the `models` valve ('{shorten(line.strip(), 60)}') {fault}: write one "
                f"'Name = URL' per line, or start the line with # ({VALVES_AT})."
            )
    return None


def url_problem(url: str, valve: str = "n8n_url") -> str | None:
    """An n8n editor address or n8n's bare address instead of a Webhook's URL: no webhook lives there, so
    nothing is sent. Other paths go out as they are: n8n's webhook path can be renamed (N8N_ENDPOINT_WEBHOOK)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None  # the request reports the invalid URL
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    first = parts.path.strip("/").split("/", 1)[0]
    if first and first not in EDITOR_PAGES:
        return None
    what = "an n8n editor page" if first else "n8n's address alone"
    return (
        f"The `{valve}` valve is {what}, not a webhook: it must be the Webhook node's Production URL "
        f"(…/webhook/…), copied from the Webhook node in n8n ({VALVES_AT})."
    )


def bare_token(token: str) -> str:
    """The token as pasted, without a `Bearer ` prefix: the pipe adds that itself for Authorization."""
    token = token.strip()
    prefix = BEARER_PREFIX.match(token)
    return token[prefix.end() :] if prefix else token


def header_problem(valves: Valves) -> str | None:
    """A header name or token that HTTP cannot carry, named by its valve before any request: requests would
    fail with 'not a valid URL' or UnicodeEncodeError. Never quotes the token."""
    token = bare_token(valves.n8n_bearer_token)
    if not token:
        return None
    if not HEADER_NAME.fullmatch(valves.auth_header_name.strip() or "Authorization"):
        return (
            "The `auth_header_name` valve is not an HTTP header name: write only the Name of the webhook's "
            f"Header Auth credential in n8n, such as Authorization or X-API-Key, without ':' or spaces ({VALVES_AT})."
        )
    if CONTROL_OR_BREAK.search(token):
        return f"The `n8n_bearer_token` valve has a line break in it: paste the token alone, on one line ({VALVES_AT})."
    if any(c.isspace() for c in token):
        return (
            "The `n8n_bearer_token` valve has a space in it: paste only the token, without a header name "
            f"or quotes ({VALVES_AT})."
        )
    try:
        token.encode("latin-1")
    except UnicodeEncodeError:
        return (
            "The `n8n_bearer_token` valve has a character an HTTP header cannot carry (such as a typographic "
            f"quote or dash): copy the token again from n8n's credential ({VALVES_AT})."
        )
    return None


def parse_extra_headers(text: str) -> list[tuple[str, str]]:
    """The `extra_headers` valve's usable `Name: value` lines; extra_headers_problem names any other."""
    lines = (line.partition(":") for line in text.splitlines() if line.strip())
    return [(name.strip(), value.strip()) for name, sep, value in lines if sep and not extra_header_fault(name, value)]


def extra_header_fault(name: str, value: str) -> str:
    """What makes one `Name: value` line unsendable, "" when nothing. Never quotes the value: it is a secret."""
    name, value = name.strip(), value.strip()
    if not HEADER_NAME.fullmatch(name):
        return "does not start with an HTTP header name (letters, digits and - only, then ':')"
    if not value:
        return f"({name}) has no value after ':'"
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        return (
            f"({name}) has a character an HTTP header cannot carry (such as a typographic quote or dash): "
            "copy the value again"
        )
    if CONTROL.search(value):  # splitlines() left no line break in it
        return f"({name}) has a control character in its value: paste the value alone"
    return ""


def auth_header(valves: Valves) -> str:
    """The header the pipe authenticates with: Authorization for the signed token, else the token's; ""
    when it sends neither."""
    if valves.jwt_secret.strip():
        return "Authorization"
    return (valves.auth_header_name.strip() or "Authorization") if bare_token(valves.n8n_bearer_token) else ""


def extra_headers_problem(valves: Valves) -> str | None:
    """An `extra_headers` line that cannot be sent as it is, said before anything is sent: a gateway key that
    silently went missing would look like a gateway refusing for no reason."""
    own = {*PIPE_HEADERS, API_KEY_HEADER.lower(), auth_header(valves).lower()} - {""}
    for number, line in enumerate(valves.extra_headers.splitlines(), 1):
        if not line.strip():
            continue
        name, sep, value = line.partition(":")
        fault = extra_header_fault(name, value) if sep else "is not 'Name: value'"
        if not fault and name.strip().lower() in own:
            fault = f"sets {name.strip()}, which the pipe sets itself: remove the line"
        if fault:
            return (
                f"Line {number} of the `extra_headers` valve {fault}. Write one header per line, such as "
                f"CF-Access-Client-Id: <id> ({VALVES_AT})."
            )
    return None


def payload_field_problem(valve: str, name: str, input_field: Any = None) -> str | None:
    """Why `input_field`/`session_field` cannot be `name`: the pipe's own fields would overwrite it."""
    if not name.strip():
        return f"`{valve}` may not be empty: n8n finds the message and the chat id by these field names."
    if name in PIPE_PAYLOAD_FIELDS:
        fields = ", ".join(PIPE_PAYLOAD_FIELDS)
        return f"`{valve}` may not be '{name}': the pipe sets that payload field itself ({fields})."
    if valve == "session_field" and name == input_field:
        return f"`session_field` may not be '{name}' like `input_field`: the chat id would replace the message."
    return None


# ---------------------------------------------------------------------------
# Request: pure functions, no I/O: one chat turn -> the webhook's URL, payload and headers.


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
    turn_id: str = field(default_factory=lambda: uuid.uuid4().hex)  # finds this turn's n8n execution
    user_prompt: str | None = None  # the user's own words, before Open WebUI's RAG template wraps them
    attachments: tuple[Attachment, ...] = ()
    image_urls: tuple[str, ...] = ()  # remote images: passed on as URLs, never fetched

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
            # A task's prompt is the body's: its metadata still carries the chat turn's user_message (0.12.4).
            user_prompt=None if task else user_prompt_of(metadata or {}),
        )

    @property
    def session_id(self) -> str:
        """The chat's id keeps the agent's memory per chat; without one, per user. A forwarded background
        task (title, tags, ...) gets a session of its own, `<chat id>:<task>`: an AI Agent's memory is keyed
        on it, and the task's prompt and answer must not become turns of the conversation."""
        chat = self.chat_id or (f"openwebui-{self.user['id']}" if self.user.get("id") else "openwebui")
        return f"{chat}:{self.task}" if self.task else chat


@dataclass(frozen=True)
class WebhookRequest:
    """Everything one call to the webhook needs; the worker thread reads nothing else."""

    url: str
    payload: dict[str, Any]
    headers: dict[str, str]
    settings: Settings
    stream: bool
    execution_api: ExecutionApi | None
    attachments: tuple[Attachment, ...]
    file_stem: str = "n8n"  # names a file the workflow answered with when n8n gave it no name
    jwt: str = field(default="", repr=False)  # this turn's signed token, when the `jwt_secret` valve is set

    @property
    def secrets(self) -> list[str]:
        """The turn's redaction list: the valves' secrets and the turn's own token."""
        return [*self.settings.secrets, self.jwt]


@dataclass(frozen=True)
class Attachment:
    """A file or image of the turn as Open WebUI described it. Its bytes are read only in the reply's worker
    thread (a file can be large, or sit in a bucket), from one of: an inline `data:` URL or a storage path."""

    name: str
    type: str
    size: int
    data_url: str = ""
    path: str = ""
    text: str = ""  # Open WebUI's extracted text, for the `text` mode


def user_prompt_of(metadata: dict[str, Any]) -> str | None:
    """The user's words as typed: the web app's own `user_message` (Open WebUI 0.12.4), or the question it
    sends as `parent_message` (0.6), before Open WebUI prepends its <attached_files> list and wraps the
    message in its RAG template. None when neither came (the API): the last user message is used."""
    for key in ("user_message", "parent_message"):
        message = metadata.get(key)
        if isinstance(message, dict) and message.get("role", "user") == "user":
            return message_text(message)
    return None


def with_attachments(turn: Turn, stored: list[Attachment]) -> Turn:
    """The turn with the last user message's images (inline ones as attachments, remote ones as URLs)
    and the stored documents Open WebUI listed in `__files__`."""
    images, urls = message_images(last_user_message(turn.messages))
    return replace(turn, attachments=(*images, *stored), image_urls=tuple(urls))


def last_user_message(messages: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return next((m for m in reversed(messages) if m.get("role") == "user"), {})


DATA_URL = re.compile(r"data:([\w.+-]+/[\w.+-]+)?(?:;[^,;]*)*;base64,", re.IGNORECASE)


def message_images(message: dict[str, Any]) -> tuple[list[Attachment], list[str]]:
    """A message's `image_url` parts: base64 `data:` URLs become attachments named image-1.png, ...;
    http(s) URLs stay URLs; anything else is dropped."""
    content = message.get("content")
    images: list[Attachment] = []
    urls: list[str] = []
    for part in content if isinstance(content, list) else []:
        if not isinstance(part, dict) or part.get("type") != "image_url":
            continue
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else image
        if not isinstance(url, str):
            continue
        if match := DATA_URL.match(url):
            kind = (match.group(1) or "application/octet-stream").lower()
            name = f"image-{len(images) + 1}{mimetypes.guess_extension(kind) or ''}"
            images.append(Attachment(name, kind, base64_size(url[match.end() :]), data_url=url))
        elif urlsplit(url).scheme in ("http", "https"):
            urls.append(url)
    return images, urls


def base64_size(encoded: str) -> int:
    """The decoded size, known without decoding (on the event loop, a decode of a large image would stall)."""
    return len(encoded) * 3 // 4 - len(encoded) + len(encoded.rstrip("="))


IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp")


def webhook_request(settings: Settings, url: str, turn: Turn, now: float | None = None) -> WebhookRequest:
    """The call to make for this turn; `now` (Unix seconds) dates its signed token."""
    stream = settings.stream and turn.wants_stream
    jwt = turn_jwt(settings, turn, int(time.time() if now is None else now))
    return WebhookRequest(
        url=url,
        payload=build_payload(settings, turn, url, stream),
        headers=build_headers(settings, stream, jwt),
        settings=settings,
        stream=stream,
        execution_api=execution_api(settings, url, turn),
        attachments=turn.attachments if settings.send_files != "off" else (),
        file_stem=workflow_stem(settings, turn.model),
        jwt=jwt,
    )


def turn_jwt(settings: Settings, turn: Turn, now: int) -> str:
    """This turn's token for n8n's JWT Auth, "" without the `jwt_secret` valve. Signed per turn, it proves who
    is asking, expires in `jwt_ttl_seconds`, and a copy read from n8n's stored executions soon stops working."""
    secret = settings.jwt_secret.strip()
    return signed_jwt(secret, jwt_claims(settings, turn, now)) if secret else ""


def jwt_claims(settings: Settings, turn: Turn, now: int) -> dict[str, Any]:
    """Who is asking, in which chat and turn; name and email only when `send_user_info` allows them.
    Claims Open WebUI did not give (a chat id on the API) are left out, never sent as null."""
    claims = {
        "iss": JWT_ISSUER,
        "sub": turn.user.get("id"),
        "role": turn.user.get("role"),
        "chat_id": turn.chat_id,
        "jti": turn.turn_id,
        "iat": now,
        "exp": now + settings.jwt_ttl_seconds,
    }
    if settings.send_user_info:
        claims |= {"name": turn.user.get("name"), "email": turn.user.get("email")}
    return {name: value for name, value in claims.items() if value is not None}


def signed_jwt(secret: str, claims: dict[str, Any]) -> str:
    """A JWT (RFC 7519) signed HS256 with the standard library: what n8n's JWT Auth verifies."""
    segments = [base64url(json.dumps(part, separators=(",", ":")).encode()) for part in (JWT_HEADER, claims)]
    signing_input = ".".join(segments)
    signature = hmac.new(secret.encode(), signing_input.encode("ascii"), hashlib.sha256).digest()
    return f"{signing_input}.{base64url(signature)}"


def base64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def workflow_stem(settings: Settings, model_id: str) -> str:
    """The workflow's model name as a file name's stem: `Charts = URL` names a chart `Charts.png`."""
    name = parse_models(settings.models).get(model_entry(model_id), ("n8n", ""))[0]
    return re.sub(r"[^\w.-]+", "-", name).strip("-.") or "n8n"


def build_payload(valves: Settings, turn: Turn, url: str, stream: bool) -> dict[str, Any]:
    """The fields n8n receives: the last user message, a stable session id, and opt-in extras."""
    payload: dict[str, Any] = {
        valves.input_field: last_user_text(turn.messages) if turn.user_prompt is None else turn.user_prompt,
        valves.session_field: turn.session_id,
        "stream": stream,
        TURN_ID_FIELD: turn.turn_id,
    }
    if url_path(url).rstrip("/").endswith("/chat"):
        payload["action"] = "sendMessage"
    if valves.send_history:
        payload["messages"] = [{"role": m.get("role"), "content": message_text(m)} for m in turn.messages]
    if valves.send_user_info:
        payload["user"] = {key: turn.user.get(key) for key in ("id", "name", "email", "role")}
    if turn.task:
        payload["task"] = turn.task
    if turn.image_urls and valves.send_files != "off":
        payload[IMAGE_URLS_FIELD] = list(turn.image_urls)
    return payload


def multipart_body(fields: dict[str, Any], files: Sequence[tuple[Attachment, bytes]], boundary: str) -> bytes:
    """multipart/form-data: each payload field a form field (strings as they are, anything else as JSON text)
    and each file a part data0, data1, ... with its own name and type, so n8n's Webhook node makes each a
    binary property and a Chat Trigger lists it in `files`."""
    parts = []
    for name, value in fields.items():
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        parts.append(form_part(name, "", "", text.encode()))
    for index, (attachment, data) in enumerate(files):
        parts.append(form_part(f"{FILE_FIELD_PREFIX}{index}", attachment.name, attachment.type, data))
    sep = f"--{boundary}\r\n".encode()
    return b"".join(sep + part for part in parts) + f"--{boundary}--\r\n".encode()


def form_part(name: str, filename: str, content_type: str, data: bytes) -> bytes:
    disposition = f'form-data; name="{quoted(name)}"' + (f'; filename="{quoted(filename)}"' if filename else "")
    head = f"Content-Disposition: {disposition}\r\n" + (f"Content-Type: {content_type}\r\n" if filename else "")
    return head.encode() + b"\r\n" + data + b"\r\n"


def quoted(text: str) -> str:
    """A name inside a quoted header parameter, as browsers write it (HTML's form encoding): a line
    break or quote escaped, UTF-8 kept."""
    return text.replace("\r", "%0D").replace("\n", "%0A").replace('"', "%22")


def url_path(url: str) -> str:
    """The URL's path, or "" when the URL does not parse: the request then reports the bad valve."""
    try:
        return urlsplit(url).path
    except ValueError:
        return ""


def build_headers(valves: Settings, stream: bool = True, jwt: str = "") -> dict[str, str]:
    """Accept every stream format we read, refuse gzip (it holds a stream back), add a gateway's headers and
    auth: the turn's signed token, else the static one. The body's Content-Type is set by whoever encodes it."""
    headers = {
        "Accept": ACCEPT_STREAM if stream else ACCEPT_COMPLETE,
        "Accept-Encoding": "identity",
        **dict(parse_extra_headers(valves.extra_headers)),
    }
    token = bare_token(valves.n8n_bearer_token)
    if jwt:
        headers["Authorization"] = f"Bearer {jwt}"
    elif token:
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
    """Answer Open WebUI's own tasks locally, in the JSON shape it parses, so the workflow never runs for them.
    Any other task gets "": Open WebUI then does without (no emoji, no autocomplete) or, for
    `context_compaction`, writes the summary itself from the compacted messages' own words, which is all a
    pipe without a model could write."""
    if task == "title_generation":
        first_line = first_user_text(task_body.get("messages") or []).strip().split("\n", 1)[0]
        title = " ".join(first_line.split()[:TITLE_WORDS])[:TITLE_CHARS].rstrip(" .,;:!?")
        return json.dumps({"title": title}, ensure_ascii=False)
    if task in EMPTY_LIST_TASKS:
        return json.dumps({EMPTY_LIST_TASKS[task]: []})
    return ""


@dataclass(frozen=True)
class ExecutionApi:
    """How to reach n8n's public API for one turn, and the turn id its execution was sent."""

    url: str
    key: str = field(repr=False)
    turn_id: str
    verify_ssl: bool = True
    gateway: tuple[tuple[str, str], ...] = field(default=(), repr=False)  # the `extra_headers` valve's
    webhook_url: str = field(default="", repr=False)  # whose workflow id, once learnt, narrows lookups

    @property
    def headers(self) -> dict[str, str]:
        """What every call to n8n's API carries: a gateway's headers and the key."""
        return {**dict(self.gateway), API_KEY_HEADER: self.key}

    @property
    def secrets(self) -> list[str]:
        return [self.key, *(value for _, value in self.gateway)]


def execution_api(settings: Settings, webhook_url: str, turn: Turn) -> ExecutionApi | None:
    """None without an API key: Stop then only hangs up, as before the key existed."""
    key = settings.n8n_api_key.strip()
    if not key:
        return None
    url = api_base(settings.n8n_api_url, webhook_url)
    gateway = tuple(parse_extra_headers(settings.extra_headers))
    return ExecutionApi(url, key, turn.turn_id, settings.verify_ssl, gateway, webhook_url)


def api_base(api_url: str, webhook_url: str) -> str:
    """The `n8n_api_url` valve, else the webhook's scheme and host + /api/v1."""
    return api_url.strip().rstrip("/") or api_url_of(webhook_url)


def api_url_of(webhook_url: str) -> str:
    """The webhook's origin + /api/v1 (credentials in the URL left out), or "" when it does not parse."""
    try:
        parts = urlsplit(webhook_url.strip())
    except ValueError:
        return ""
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{host}/api/v1" if parts.scheme and host else ""


# ---------------------------------------------------------------------------
# Open WebUI's files: the attachments a turn carries are read from Open WebUI's storage, and the files a
# workflow answers with are saved there (its storage and its files table). Async, imported lazily: the
# pipe must load without Open WebUI.


async def stored_attachments(entries: list[dict[str, Any]]) -> list[Attachment]:
    """`__files__` as attachments, images left out (Open WebUI puts them in the message as `image_url`
    parts). Inside Open WebUI the files table has the path and extracted text; outside, the entry alone."""
    attachments = []
    for entry in entries:
        described = {**(entry.get("file") or {}), **await open_webui_file(str(entry.get("id") or ""))}
        meta = described.get("meta") or {}
        kind = str(meta.get("content_type") or entry.get("content_type") or "application/octet-stream")
        if entry.get("type") == "image" or kind in IMAGE_TYPES:
            continue
        attachments.append(
            Attachment(
                name=str(meta.get("name") or entry.get("name") or described.get("filename") or "file"),
                type=kind,
                size=int(meta.get("size") or entry.get("size") or 0),
                path=str(described.get("path") or ""),
                text=str((described.get("data") or {}).get("content") or ""),
            )
        )
    return attachments


async def open_webui_file(file_id: str) -> dict[str, Any]:
    """The files table's row for this id ({} outside Open WebUI or when gone). Imported here: the pipe
    must load without Open WebUI. 0.12.4's lookup is a coroutine; older ones answered at once."""
    try:
        from open_webui.models.files import Files  # type: ignore[import-not-found]
    except ImportError:
        return {}
    row = Files.get_file_by_id(file_id) if file_id else None
    if inspect.isawaitable(row):
        row = await row
    return cast(dict[str, Any], row.model_dump()) if row is not None else {}


def storage_path(path: str) -> str:
    """A local path to a stored file: Open WebUI's storage layer downloads it when it lives in a bucket.
    Outside Open WebUI (the doctor, tests) the path as it is."""
    if not path:
        raise FileNotFoundError("no storage path")
    try:
        from open_webui.storage.provider import Storage  # type: ignore[import-not-found]
    except ImportError:
        return path
    return cast(str, Storage.get_file(path))


async def save_in_open_webui(file: File, name: str, user_id: str) -> str:
    """Stores the file as Open WebUI's own upload route does (Storage, then the files table) and gives
    the URL it is served at; "" outside Open WebUI (the doctor, the demo) or when storing fails.
    Imported here: the pipe must load without Open WebUI. The storage's I/O runs in a thread."""
    try:
        from open_webui.models.files import FileForm, Files
        from open_webui.storage.provider import Storage
    except ImportError:
        return ""
    file_id = str(uuid.uuid4())
    tags = {"OpenWebUI-File-Id": file_id, "OpenWebUI-User-Id": user_id}
    try:
        _, path = await asyncio.to_thread(Storage.upload_file, io.BytesIO(file.data), f"{file_id}_{name}", tags)
        meta = {"name": name, "content_type": file.mime_type, "size": len(file.data)}
        row = Files.insert_new_file(user_id, FileForm(id=file_id, filename=name, path=path, data={}, meta=meta))
        if inspect.isawaitable(row):
            row = await row
    except Exception as exc:  # a storage that cannot be reached: the file is shown without it
        log.warning("storing the workflow's file in Open WebUI failed: %s", type(exc).__name__)
        return ""
    return f"/api/v1/files/{file_id}/content" if row is not None else ""


# ---------------------------------------------------------------------------
# Decoding: pure, bytes in -> events out, testable without a socket. Every decoder has the same pair:
# feed() what arrived, finish() at the end of the body.

THINK_END = "\n</think>\n\n"  # closes the <think> block the chat renders as the model's reasoning


class LineSplitter:
    """Splits bytes on CR, LF or CRLF (also split across reads) into UTF-8 decoded lines.
    Works on bytes so a character cut between two reads is decoded whole. A byte that is no UTF-8
    becomes U+FFFD and the stream goes on, as WHATWG's event streams and RFC 8259's JSON text say:
    one bad byte never ends an answer. The lines are not scanned for anything else (a scan of every
    read doubled the CPU of large tokens)."""

    def __init__(self, max_line_bytes: int = MAX_LINE_BYTES, too_long: FailureCode = "line_too_long") -> None:
        self.max_line_bytes = max_line_bytes
        self.too_long: FailureCode = too_long
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
            raise LineTooLong(Failure(self.too_long, limit=self.max_line_bytes))


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
                raise LineTooLong(Failure("event_too_long", limit=self.max_event_bytes))
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


WireFormatName = Literal["empty", "json", "sse", "text", "file"]
# Types that are text whatever their name says: anything else (image/*, application/pdf, octet-stream,
# archives, office formats) is a file.
TEXT_TYPES = ("application/json", "application/x-ndjson", "application/ndjson", "application/jsonl", "application/xml")


def sniff(head: bytes, content_type: str, at_end: bool) -> WireFormatName | None:
    """The wire format from the type and the first bytes (n8n labels its stream application/json), or
    None to wait. A type that is no text (an image, a PDF, octet-stream) is a file."""
    if is_file_type(content_type):
        return "file"
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


NOT_TEXT = re.compile(f"[\udc80-\udcff{CONTROL_CHARS}]")  # a byte no UTF-8 (surrogate-escaped), or a control
FILE_TYPES = (
    (b"\x89PNG", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF8", "image/gif"),
    (b"%PDF-", "application/pdf"),
    (b"PK\x03\x04", "application/zip"),
    (b"\x1f\x8b", "application/gzip"),
)


def file_type(data: bytes) -> str:
    """An untyped file's type from its magic number."""
    return next((kind for magic, kind in FILE_TYPES if data.startswith(magic)), "application/octet-stream")


def is_file_type(content_type: str) -> bool:
    mime = content_type.split(";", 1)[0].strip().lower()
    return bool(mime) and not (mime.startswith("text/") or mime in TEXT_TYPES or mime.endswith(("+json", "+xml")))


class ReplyDecoder:
    """Bytes of one reply in, events out. Picks the wire format from the first bytes, stops at the end
    marker (`ended`), and at the end of the body says when the reply was empty or had no text."""

    def __init__(
        self,
        content_type: str = "",
        response_field: str = "output",
        max_json_bytes: int = MAX_LINE_BYTES,
        disposition: str = "",
    ) -> None:
        self.content_type = content_type.lower()
        self.disposition = disposition
        self.response_field = response_field
        self.max_json_bytes = max_json_bytes
        self.ended = False
        self._head = bytearray()
        self._format: WireFormat | None = None
        self._answered = False

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

    def feed(self, data: bytes) -> list[Event]:
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
        return self._cut_at_end(wire.feed(data))

    def finish(self) -> list[Event]:
        """The rest of the body, then the verdict on the whole reply: empty, or no text in it."""
        events: list[Event] = []
        wire = self._format
        if wire is None:
            wire = self._start(self._sniffed(at_end=True) or "text")
            data, self._head = bytes(self._head), bytearray()
            events = self._cut_at_end(wire.feed(data))
        if not self.ended:
            events += self._cut_at_end(wire.finish())
        self.ended = True
        if not self._answered:
            events.append(wire.no_text())
            self._answered = True
        return events

    def _cut_at_end(self, events: list[Event]) -> list[Event]:
        """Nothing counts after the end marker. The reader stops at the read that carried it, so what
        followed it in that same read must go too, or the answer would depend on where reads fall."""
        end = next((at for at, event in enumerate(events) if event.ends_reply), None)
        if end is not None:
            self.ended = True
            events = events[: end + 1]
        if not self._answered:
            self._answered = any(event.answers for event in events)
        return events

    def _sniffed(self, at_end: bool) -> WireFormatName | None:
        """Sniff the first MAX_LINE_BYTES only, else a long blank head followed by `{` would be JSON in
        one read but text in many. Still undecided after them: plain text."""
        beyond = len(self._head) > MAX_LINE_BYTES
        if is_attachment(self.disposition):
            return "file"
        kind = sniff(bytes(self._head[:MAX_LINE_BYTES]), self.content_type, at_end and not beyond)
        return "text" if kind is None and beyond else kind

    def _start(self, kind: WireFormatName) -> WireFormat:
        if self._head.startswith(BOM):
            self._head = self._head[len(BOM) :]
        head = ReplyHead(self.content_type, self.disposition)
        self._format = WIRE_FORMATS[kind](head, self.response_field, self.max_json_bytes)
        return self._format


@dataclass(frozen=True)
class ReplyHead:
    """What the reply's headers say of its body."""

    content_type: str = ""
    disposition: str = ""

    @property
    def labelled_ndjson(self) -> bool:
        return "ndjson" in self.content_type

    @property
    def mime_type(self) -> str:
        return self.content_type.split(";", 1)[0].strip() or "application/octet-stream"


def is_attachment(disposition: str) -> bool:
    return disposition.split(";", 1)[0].strip().lower() == "attachment"


def attachment_name(disposition: str) -> str:
    """The file name a Content-Disposition gives (RFC 6266: `filename*=UTF-8''...` first), made safe to
    show. "" when it gives none."""
    encoded = re.search(r"filename\*\s*=\s*(?:UTF-8|utf-8)''([^;]+)", disposition)
    plain = re.search(r'filename\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;\s]+))', disposition)
    if encoded:
        name = unquote(encoded.group(1).strip())
    elif plain:
        name = plain.group(1) if plain.group(1) is not None else plain.group(2)
    else:
        return ""
    return safe_file_name(name)


def safe_file_name(name: str) -> str:
    """A file name the workflow gave, made safe to show: no path, no line break, no markdown brackets."""
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    return re.sub(r"[\x00-\x1f\x7f\[\]()<>]", "_", name).strip()[: TITLE_CHARS * 2]


class WireFormat:
    """One way of cutting a reply into values: feed bytes, get events; finish() at the end of the body.
    A format's own reading state is made in start(), so no format repeats the constructor."""

    LABEL = ""
    STREAMS = True

    def __init__(self, head: ReplyHead, response_field: str = "output", max_json_bytes: int = MAX_LINE_BYTES) -> None:
        self.head = head
        self.response_field = response_field
        self.max_json_bytes = max_json_bytes
        self.start()

    def start(self) -> None:
        """The format's reading state, before the first byte."""

    @property
    def label(self) -> str:
        """The format in the user's words, for the status line and the doctor."""
        return self.LABEL

    @property
    def streams(self) -> bool:
        """Whether the reply comes in parts as it is made, rather than as one complete body."""
        return self.STREAMS

    def feed(self, data: bytes) -> list[Event]:
        raise NotImplementedError

    def finish(self) -> list[Event]:
        return []

    def no_text(self) -> Failure:
        """The failure of a whole reply that carried no text."""
        return Failure("no_text", reply_format=self.label, may_have_reached_n8n=True)


class EmptyFormat(WireFormat):
    LABEL = "empty"
    STREAMS = False

    def feed(self, data: bytes) -> list[Event]:
        return []

    def no_text(self) -> Failure:
        return Failure("empty_reply", may_have_reached_n8n=True)


class TextFormat(WireFormat):
    """Plain text, shown as it arrives; UTF-8 decoded incrementally. Bytes that are no text (no UTF-8,
    or control characters other than tab and line breaks) are never shown: a body that starts so is a
    file; one that turns so later ends there, with a notice of what was not shown."""

    LABEL = "text"

    def start(self) -> None:
        self._utf8 = codecs.getincrementaldecoder("utf-8")("surrogateescape")  # a bad byte stays findable
        self._body = bytearray()  # the body while none of it is shown: it may be a file
        self._file = False
        self._shown_bytes = 0  # bytes of the body shown as text

    @property
    def label(self) -> str:
        return "file" if self._file else self.LABEL

    def feed(self, data: bytes) -> list[Event]:
        if self._file or not self._shown_bytes:
            self._body += data
        return [] if self._file else self._text(self._utf8.decode(data))

    def finish(self) -> list[Event]:
        events = [] if self._file else self._text(self._utf8.decode(b"", final=True))
        return [*events, File("", file_type(bytes(self._body)), bytes(self._body))] if self._file else events

    def _text(self, text: str) -> list[Event]:
        bad = NOT_TEXT.search(text)
        if bad is None:
            self._shown_bytes += len(text.encode("utf-8", "surrogateescape"))
            return text_events(text)
        good = text[: bad.start()]
        if not good and not self._shown_bytes:
            self._file = True
            return []
        shown = self._shown_bytes + len(good.encode("utf-8", "surrogateescape"))
        self._shown_bytes = shown
        return [*text_events(good), Failure("not_text", size=shown, may_have_reached_n8n=True), END]


class JsonLinesFormat(WireFormat):
    """n8n's stream, NDJSON, or one complete JSON body: one JSON value per line.
    A first line that is not JSON on its own means a pretty-printed body: it is read whole. A line or
    body may be as large as the reply may be (a complete answer with a base64 image is one line)."""

    def start(self) -> None:
        self._lines = LineSplitter(self.max_json_bytes, "json_too_long")
        self._blocks = N8nBlocks(self.response_field)
        self._values = 0
        self._n8n = False
        self._body: list[str] | None = None
        self._body_bytes = 0
        self._first_value: Any = None

    @property
    def streams(self) -> bool:
        return self._n8n or self._values > 1 or self.head.labelled_ndjson

    @property
    def label(self) -> str:
        if self._n8n:
            return "n8n stream"
        return "NDJSON" if self.streams else "complete JSON"

    def feed(self, data: bytes) -> list[Event]:
        return [event for line in self._lines.feed(data) for event in self._line(line)]

    def finish(self) -> list[Event]:
        last = self._lines.finish()
        events = self._line(last) if last is not None else []
        if self._body is not None:
            events += self._whole_body()
        return events + self._blocks.finish()

    def no_text(self) -> Failure:
        if self.streams:
            return super().no_text()
        snippet = shorten(json.dumps(without_agent_work(self._first_value), ensure_ascii=False))
        return Failure(
            "no_text_at_field", response_field=self.response_field, reply_start=snippet, may_have_reached_n8n=True
        )

    def _line(self, line: str) -> list[Event]:
        if self._body is not None:
            self._body.append(line)
            self._body_bytes += len(line)
            if self._body_bytes > self.max_json_bytes:
                raise LineTooLong(Failure("json_too_long", limit=self.max_json_bytes))
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
            return text_events(UNSHOWN.sub("", line + "\n"))
        events = self._value(value)
        return without_unshown(events) if "\\" in line else events

    def _value(self, value: Any) -> list[Event]:
        self._values += 1
        if self._values == 1:
            self._first_value = value
        if is_n8n_chunk(value):
            self._n8n = True
            return self._blocks.feed(value)
        # No n8n line: an item held back as a possible Respond to Webhook body was a model's words after all.
        return self._blocks.finish() + events_of_json(value, self.response_field)

    def _whole_body(self) -> list[Event]:
        text = "\n".join(self._body or [])
        self._body = None
        try:
            value = json.loads(text)
        except JSON_ERRORS:
            return text_events(UNSHOWN.sub("", text))
        return without_unshown(self._value(value))


class N8nBlocks:
    """n8n's stream lines: begin, item, end, error, keepalive. Items are a model's words, shown byte for
    byte, JSON-looking or not. Only Respond to Webhook's body is unwrapped: a block whose one item is a
    whole JSON document as n8n writes it (compact: `{"output":"..."}`) shows that document's
    `response_field`. So a block's first item is held back while it could be such a body, until the next
    line says which it is."""

    def __init__(self, response_field: str) -> None:
        self.response_field = response_field
        self._held: str | None = None
        self._block_start = False

    def feed(self, value: dict[str, Any]) -> list[Event]:
        kind = type_of(value)
        content = value.get("content")
        if kind == "item":  # first: one per token
            if not isinstance(content, str):
                return []
            if self._block_start and is_n8n_json_document(content):
                self._block_start, self._held = False, content
                return []
            self._block_start = False
            return self.finish() + text_events(content) if self._held is not None else text_events(content)
        if kind == "keepalive":
            return []
        if kind == "end" and self._held is not None:
            held, self._held = self._held, None
            return respond_node_events(held, self.response_field)
        events = self.finish()
        self._block_start = kind == "begin"
        node = text_at(value, "metadata.nodeName") or ""
        if kind == "begin" and node:
            events.append(NodeStarted(node))
        elif kind == "end":
            events.append(BlockEnded(node))
        elif kind == "error":
            reason = content if isinstance(content, str) else ""
            events.append(Failure("n8n_error", node=node, message=reason, may_have_reached_n8n=True))
        return events

    def finish(self) -> list[Event]:
        """A held item whose block did not end right after it was a model's words: shown as they came."""
        held, self._held = self._held, None
        return text_events(held) if held is not None else []


def is_n8n_json_document(text: str) -> bool:
    """A JSON object or list as n8n's JSON.stringify writes the body Respond to Webhook streams: whole
    and compact, with no space, tab or line break outside its strings. A model's words that are JSON
    (models write `{"a": 1}`, with spaces) stay words. Parsed first, so the string scan is linear."""
    if not text.startswith(JSON_OPENINGS):
        return False
    try:
        json.loads(text)
    except JSON_ERRORS:
        return False
    return not any(blank in JSON_STRINGS.sub("", text) for blank in JSON_BLANKS)


class SSEFormat(WireFormat):
    """Server-sent events; JSON data goes through the chunk rules, `[DONE]` ends the reply."""

    LABEL = "SSE"

    def start(self) -> None:
        self._lines = LineSplitter(too_long="event_stream_line_too_long")
        self._events = SSEDecoder()

    def feed(self, data: bytes) -> list[Event]:
        events: list[Event] = []
        for line in self._lines.feed(data):
            event = self._events.feed(line)
            if event is not None:
                events += events_of_sse(event, self.response_field)
        return events


class FileFormat(WireFormat):
    """A file, not text (an image, a PDF, a spreadsheet): its bytes are kept whole, up to `max_reply_mb`,
    and given at the end of the body; a file cut short is never shown."""

    LABEL = "file"
    STREAMS = False

    def start(self) -> None:
        self._data = bytearray()

    def feed(self, data: bytes) -> list[Event]:
        self._data += data
        return []

    def finish(self) -> list[Event]:
        return [File(attachment_name(self.head.disposition), self.head.mime_type, bytes(self._data))]


WIRE_FORMATS: dict[WireFormatName, type[WireFormat]] = {
    "file": FileFormat,
    "empty": EmptyFormat,
    "json": JsonLinesFormat,
    "sse": SSEFormat,
    "text": TextFormat,
}


def events_of_sse(event: ServerSentEvent, response_field: str) -> list[Event]:
    if event.data.strip() == "[DONE]":
        return [END]
    try:
        value = json.loads(event.data)
    except JSON_ERRORS:
        value = None
    if not isinstance(value, (dict, list)):  # plain words, or a JSON number or string: the data as it came
        data = UNSHOWN.sub("", event.data)
        if not data:
            return []
        return [model_error(data)] if event.event == "error" else [Text(data)]
    events = events_of_json(value, response_field)
    if "\\" in event.data:
        events = without_unshown(events)
    if event.event == "error" and not any(e.is_failure for e in events):
        return [model_error(common_text(value) or text_at(value, "message") or shorten(event.data))]
    return events


def model_error(message: str) -> Failure:
    """An error the model's API (or the workflow) put into the reply itself, in its own words."""
    return Failure("model_error", message=message, may_have_reached_n8n=True)


def events_of_json(value: Any, response_field: str) -> list[Event]:
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
            return answer_events(value, found)
        texts = (text_at(item, response_field) or common_text(item) for item in value)
        return answer_events(value, "\n\n".join(t for t in texts if t))
    if not isinstance(value, dict):
        return text_events(value)
    kind = type_of(value)
    if is_n8n_chunk(value):  # met outside n8n's own stream (inside SSE data, say): read on its own
        return N8nBlocks(response_field).feed(value)
    if kind in ANTHROPIC_EVENTS:
        return ANTHROPIC_EVENTS[kind](value)
    if value.get("error"):
        return [model_error(error_message(value["error"]))]
    found = text_at(value, response_field)
    if found is not None:
        return answer_events(value, found)
    if "choices" in value:
        return openai_events(value)
    if "done" in value or ("model" in value and ("message" in value or "response" in value)):
        return ollama_events(value)
    if value.get("message") == "Workflow was started":
        return [Failure("workflow_started", may_have_reached_n8n=True)]
    text = common_text(value)
    return answer_events(value, text) if text is not None else returned_files(value)


def is_n8n_chunk(value: Any) -> bool:
    """n8n's own stream lines: begin/item/end/error/keepalive (an Anthropic error has an `error` key)."""
    return (
        isinstance(value, dict) and type_of(value) in N8N_STREAM_TYPES and ("metadata" in value or "error" not in value)
    )


def respond_node_events(content: str, response_field: str) -> list[Event]:
    """A Respond to Webhook body, a JSON document: the execution id a workflow streams for Stop (never
    shown), or the agent's steps and sources in it, then its text at `response_field`."""
    try:
        value = json.loads(content)
    except JSON_ERRORS:
        return text_events(content)
    execution_id = streamed_execution_id(value)
    if execution_id:
        return [ExecutionId(execution_id)]
    found = body_text(value, response_field)
    return without_unshown(answer_events(value, found if found is not None else content))


def streamed_execution_id(value: Any) -> str:
    """The id in `{"executionId": "1234"}` (`{{ $execution.id }}` streamed before the agent), else ""."""
    if isinstance(value, dict) and list(value) == ["executionId"]:
        found = str(value["executionId"]).strip()
        return found if found.isdecimal() else ""
    return ""


def body_text(value: Any, response_field: str) -> str | None:
    """The text at `response_field` of `{...}`, or of the first entry of n8n's `[{...}]`."""
    found = text_at(value, response_field)
    if found is None and isinstance(value, list) and value:
        found = text_at(value[0], response_field)
    return found


def answer_events(value: Any, text: str) -> list[Event]:
    """A complete reply's answer: the agent's work before its text, the files it returned after it, and
    the usage it carries."""
    return agent_work_events(value) + text_events(text) + returned_files(value) + reply_usage(value)


def reply_usage(value: Any) -> list[Event]:
    """A complete reply's own token count: `usage` in OpenAI's keys or `tokenUsage` in n8n's, on `{...}` or
    on the first entry of n8n's `[{...}]`."""
    item = value[0] if isinstance(value, list) and value else value
    if not isinstance(item, dict):
        return []
    found = usage_of(item.get("usage")) or usage_of(item.get("tokenUsage"))
    return [found] if found is not None else []


def usage_of(value: Any) -> Usage | None:
    """Token counts in OpenAI's keys (prompt_tokens...) or n8n's (promptTokens...); None when there are none."""
    if not isinstance(value, dict):
        return None
    counts = [
        token_count(value, "prompt_tokens", "promptTokens"),
        token_count(value, "completion_tokens", "completionTokens"),
        token_count(value, "total_tokens", "totalTokens"),
    ]
    if not any(count is not None for count in counts):
        return None
    prompt, completion, total = (count or 0 for count in counts)
    return Usage(prompt, completion, total or prompt + completion)


def token_count(value: dict[str, Any], *keys: str) -> int | None:
    for key in keys:
        count = value.get(key)
        if isinstance(count, int) and not isinstance(count, bool) and count >= 0:
            return count
    return None


def returned_files(value: Any) -> list[Event]:
    """A complete reply's `files`, in n8n's own binary shape `{"fileName", "mimeType", "data": base64}`
    or as links `{"name", "url"}` (http/https only): shown as files, their base64 never as text."""
    events: list[Event] = []
    for item in value if isinstance(value, list) else [value]:
        entries = item.get("files") if isinstance(item, dict) else None
        for entry in entries if isinstance(entries, list) else []:
            file = returned_file(entry)
            if file is not None:
                events.append(file)
    return events


def returned_file(entry: Any) -> File | FileLink | None:
    url = web_url(text_at(entry, "url") or "")
    name = safe_file_name(text_at(entry, "fileName") or text_at(entry, "name") or "")
    if url:
        return FileLink(name or url.rsplit("/", 1)[-1].split("?", 1)[0], url)
    data = text_at(entry, "data")
    if data is None:
        return None
    try:
        content = base64.b64decode(data, validate=True)
    except ValueError:
        return None
    return File(name, text_at(entry, "mimeType") or "application/octet-stream", content)


def agent_work_events(value: Any) -> list[Event]:
    """The AI Agent's tool steps (`intermediateSteps`) and the workflow's `sources` in a complete reply,
    `{...}` or n8n's `[{...}]`: shown as tool blocks and citations, never as text."""
    items = value if isinstance(value, list) else [value]
    events: list[Event] = []
    for item in items:
        if isinstance(item, dict):
            events += step_events(item.get("intermediateSteps")) + source_events(item.get("sources"))
    return events


def step_events(steps: Any) -> list[Event]:
    """n8n's `[{action: {tool, toolInput, log}, observation}]`, inputs and outputs cut to TOOL_TEXT_CHARS."""
    events: list[Event] = []
    for step in steps if isinstance(steps, list) else []:
        action = object_at(step, "action")
        tool = action.get("tool")
        if not isinstance(tool, str) or not tool.strip():
            continue
        events.append(ToolStep(" ".join(tool.split()), action.get("toolInput"), step.get("observation")))
    return events


def source_events(sources: Any) -> list[Event]:
    """`[{"title"|"name", "url", "content"?}]` -> Open WebUI's source event data, one per entry."""
    events: list[Event] = []
    for entry in (sources if isinstance(sources, list) else [])[:MAX_SOURCES]:
        url = web_url(text_at(entry, "url") or "")
        title = text_at(entry, "title") or text_at(entry, "name") or url
        if not title:
            continue
        events.append(Source(title, url, text_at(entry, "content") or title))
    return events


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


def openai_events(value: dict[str, Any]) -> list[Event]:
    choice = object_at(value, "choices.0")
    delta = object_at(choice, "delta") or object_at(choice, "message")
    thinking = delta.get("reasoning_content") or delta.get("reasoning")
    return thinking_events(thinking) + text_events(delta.get("content"))


def ollama_events(value: dict[str, Any]) -> list[Event]:
    inner = value.get("message")
    message: dict[str, Any] = inner if isinstance(inner, dict) else value
    events = thinking_events(message.get("thinking"))
    events += text_events(message.get("content") if "content" in message else message.get("response"))
    return events + ([END] if value.get("done") is True else [])


def anthropic_delta(value: dict[str, Any]) -> list[Event]:
    delta = object_at(value, "delta")
    if delta.get("type") == "thinking_delta":
        return thinking_events(delta.get("thinking"))
    return text_events(delta.get("text"))


ANTHROPIC_EVENTS: dict[str, Callable[[dict[str, Any]], list[Event]]] = {
    "content_block_delta": anthropic_delta,
    "message_stop": lambda value: [END],
    "message_start": lambda value: [],
    "content_block_start": lambda value: [],
    "content_block_stop": lambda value: [],
    "message_delta": lambda value: [],
    "ping": lambda value: [],
}


def text_events(text: Any) -> list[Event]:
    shown = well_formed(text) if isinstance(text, str) else ""
    return [Text(shown)] if shown else []


def thinking_events(text: Any) -> list[Event]:
    shown = well_formed(text) if isinstance(text, str) else ""
    return [Thinking(shown)] if shown else []


def without_unshown(events: list[Event]) -> list[Event]:
    """Text and thinking without the characters the chat leaves out (UNSHOWN). JSON strings hold
    them only as escapes, so callers ask only when the JSON had a backslash: no scan of every token."""
    return [kept for kept in (event.without_unshown() for event in events) if kept is not None]


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


# ---------------------------------------------------------------------------
# HTTP: what the webhook's call and n8n's API share: sockets that Stop can shut, timeouts, why a call
# failed, n8n's error bodies, and logs kept free of the webhook's path.


class Stopped(Exception):
    """The user pressed Stop: the worker leaves without handing anything over."""


class Stopper:
    """Shuts an exchange's sockets on Stop. Closing a response from another thread does not wake a
    blocked read; shutting the socket does, also while n8n has not sent its headers yet."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._closers: list[Callable[[], None]] = []
        self._stop = threading.Event()
        self.stopped = False

    def check(self) -> None:
        """Raises Stopped once the user pressed Stop: the worker leaves without handing anything over."""
        if self.stopped:
            raise Stopped

    def wait(self, seconds: float) -> bool:
        """Sleeps up to `seconds`, at once awake on Stop; True when stopped."""
        return self._stop.wait(seconds)

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            if not self.stopped:
                self._sockets.append(sock)
                return
        shut_down(sock)

    def release(self, sock: socket.socket) -> None:
        """The socket is read on the event loop from now on: its timeout is kept there, and its reader closes it."""
        with self._lock, suppress(ValueError):
            self._sockets.remove(sock)

    def on_stop(self, close: Callable[[], None]) -> None:
        """Runs `close` on Stop (at once when stopped already): what a thread opened for the loop is closed too."""
        with self._lock:
            if not self.stopped:
                self._closers.append(close)
                return
        close()

    def set_timeout(self, seconds: float) -> None:
        """How long the next read may wait for n8n: shorter once n8n reported an error."""
        with self._lock:
            for sock in self._sockets:
                with suppress(OSError):  # already closed
                    sock.settimeout(seconds)

    def stop(self) -> None:
        with self._lock:
            self.stopped = True
            self._stop.set()
            sockets, self._sockets = self._sockets, []
            closers, self._closers = self._closers, []
        for sock in sockets:
            shut_down(sock)
        for close in closers:
            close()


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
                response_class = FinalResponse

                def connect(self) -> None:
                    super().connect()
                    stopper.watch(self.sock)

            watched[scheme] = type(pool_class.__name__, (pool_class,), {"ConnectionCls": WatchedConnection})
        manager.pool_classes_by_scheme = watched


def token_headers_only(request: requests.PreparedRequest) -> requests.PreparedRequest:
    """The auth requests would otherwise add: a `~/.netrc` entry or credentials in the URL. The token
    in the headers is the only credential the webhook gets."""
    return request


# What a broken connection raises while reading; anything else is a bug and is reported as one.
NETWORK_ERRORS = (OSError, urllib3.exceptions.HTTPError, requests.RequestException)


def internal_error(exc: BaseException) -> Failure:
    """A bug in the pipe, said in the chat: an exception would vanish inside Open WebUI."""
    return Failure("internal_error", error_type=type(exc).__name__)


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


def broken_connection(exc: BaseException) -> BrokenConnection:
    chain = causes(exc)
    if any(isinstance(e, ConnectionResetError) for e in chain):
        return "connection_reset"
    text = " ".join(str(e) for e in chain).lower()
    if any(word in text for word in ("incomplete", "invalidchunklength", "broken")):
        return "connection_closed"
    return "connection_lost"


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


MAX_INTERIM_RESPONSES = 50


class FinalResponse(http.client.HTTPResponse):
    """http.client takes a 102 Processing or 103 Early Hints for the response and leaves the real one
    unread on the socket (CPython issue 42550): this one reads on to the final status. 101 stays final."""

    def begin(self) -> None:
        super().begin()
        for _ in range(MAX_INTERIM_RESPONSES):
            if not (100 < self.status < 200 and self.status != 101):
                return
            self.headers = None  # type: ignore[assignment]  # begin() reads a response only while this is None
            super().begin()


# Starts the reply threads, one at a time and off the event loop; it never runs a reply itself.
# Thread.start() waits until the new thread runs, which stalls the loop when many replies start at
# once (figures in bench/README.md).
THREAD_STARTER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="n8n-starter")


def report_from_thread(loop: asyncio.AbstractEventLoop, shown: Coroutine[Any, Any, None]) -> None:
    """Runs a status update on the chat's event loop; dropped when that loop has ended."""
    try:
        asyncio.run_coroutine_threadsafe(shown, loop)
    except RuntimeError:  # the loop is closed: nobody is listening any more
        shown.close()


class WebhookPathFilter(logging.Filter):
    """urllib3 logs request paths (its debug request line, its header-parsing warning with the whole URL and
    the unparsed headers); a webhook without auth is secret by its path, so the paths the pipe calls become
    *** in urllib3's records, and so do the secrets of the turns whose exchanges are running."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()
        self._running: Counter[str] = Counter()  # the secrets of the exchanges running now
        self._lock = threading.Lock()

    @contextmanager
    def hiding(self, secrets: Iterable[str]) -> Iterator[None]:
        """A turn's secrets (its token, its JWT, a gateway's header values) are hidden while its exchange
        runs, then forgotten: a token signed per turn must not pile up here."""
        held = Counter(secret for secret in secrets if secret.strip())
        with self._lock:
            self._running += held
        try:
            yield
        finally:
            with self._lock:
                self._running -= held

    def filter(self, record: logging.LogRecord) -> bool:
        with self._lock:
            secrets = self.secrets | set(self._running)
        if secrets:
            message = record.getMessage()
            redacted = redact(message, secrets)
            if redacted != message:
                record.msg, record.args = redacted, ()
            if record.exc_info and record.exc_info[0] is not None:  # the exception repeats the unparsed headers
                trace = logging.Formatter().formatException(record.exc_info)
                if redact(trace, secrets) != trace:
                    record.exc_info, record.exc_text = None, redact(trace, secrets)
        return True


def filter_urllib3_logs() -> WebhookPathFilter:
    """One filter on urllib3's loggers, replacing the one an earlier load of this file put there
    (Open WebUI loads a function again each time its valves or code are saved)."""
    path_filter = WebhookPathFilter()
    for name in (
        "urllib3.connection",
        "urllib3.connectionpool",
        "urllib3.response",
        "urllib3.util.retry",
        "urllib3.poolmanager",
    ):
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
# n8n's API: stopping this turn's execution (on Stop, or a reply the pipe gave up on) and following it
# when the reply broke after n8n got the message. Threads of their own: the chat never waits for n8n's API.

API_TIMEOUT = (3.0, 5.0)  # connect, read: a slow API ends the attempt, never the chat
LOOKUP_DELAYS = (0.0, 0.25, 0.5, 1.0)  # n8n lists a run ~50 ms after its request: an early look looks again
LOOKUP_PAGE_SIZE = 100
LOOKUP_PAGES = 5


class ApiRefused(Exception):
    """n8n's API refused a call, with the facts of why."""

    def __init__(self, answer: ApiAnswer) -> None:
        super().__init__(answer.code)
        self.answer = answer


class ExecutionStop:
    """Stops one turn's n8n execution: the id the workflow streamed (`executionId`), else the run whose
    input holds the turn's id, found through the executions API."""

    def __init__(self, api: ExecutionApi | None) -> None:
        self.api = api
        self.execution_id = ""

    def stop_in_thread(self, stopped: Callable[[ApiAnswer], None]) -> None:
        """Stops the execution in a thread of its own and gives `stopped` what n8n's API answered."""
        api, execution_id = self.api, self.execution_id
        if api is None:
            return

        def work() -> None:
            stopped(stop_execution(api, execution_id))

        THREAD_STARTER.submit(threading.Thread(target=work, name="n8n-stop", daemon=True).start)


def api_session(api: ExecutionApi, stopper: Stopper | None = None) -> requests.Session:
    """A session for n8n's API: the key and a gateway's headers; with a stopper, Stop shuts its sockets."""
    session = requests.Session()
    session.headers.update(api.headers)
    if stopper is not None:
        adapter = StoppableAdapter(stopper)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
    return session


def stop_execution(api: ExecutionApi, execution_id: str) -> ApiAnswer:
    """What happened to the turn's execution; never raises."""
    with api_session(api) as session:
        try:
            execution_id = execution_id or look_again(
                lambda: running_execution(session, api), LOOKUP_DELAYS, time.sleep
            )
            if not execution_id:
                return ApiAnswer("not_running")
            response = api_call(session, api, "POST", f"/executions/{execution_id}/stop")
        except ApiRefused as exc:
            return exc.answer
        except requests.RequestException as exc:
            return api_unreachable(exc, api)
        except JSON_ERRORS:
            return ApiAnswer("api_not_json", host=host_and_port(api.url))
        return stop_result(response, execution_id)


def api_call(
    session: requests.Session,
    api: ExecutionApi,
    method: str,
    path: str,
    timeout: tuple[float, float] = API_TIMEOUT,
    **params: str,
) -> requests.Response:
    """One call to n8n's public API: short timeouts, no redirect (the key would go along), no netrc."""
    return session.request(
        method,
        api.url + path,
        params=params,
        timeout=timeout,
        verify=api.verify_ssl,
        allow_redirects=False,
        auth=token_headers_only,
    )


def look_again(look: Callable[[], str], delays: Sequence[float], wait: Callable[[float], object]) -> str:
    """What `look` finds, looked for after each delay in turn: a Stop or a broken reply right after the
    request may come before n8n lists the run. `wait` sleeps, and says (True) when the user pressed Stop."""
    for delay in delays:
        if wait(delay):
            raise Stopped
        found = look()
        if found:
            return found
    return ""


def running_execution(
    session: requests.Session, api: ExecutionApi, workflow_id: str = "", timeout: tuple[float, float] = API_TIMEOUT
) -> str:
    """One look through the running executions (of `workflow_id` when known). The turn id is a fresh random
    id, so any run whose data holds it is this turn's: wherever the run has moved the webhook's body by now."""
    cursor = ""
    for _ in range(LOOKUP_PAGES):
        params = {"status": "running", "includeData": "true", "limit": str(LOOKUP_PAGE_SIZE)}
        params |= {"workflowId": workflow_id} if workflow_id else {}
        params |= {"cursor": cursor} if cursor else {}
        response = api_call(session, api, "GET", "/executions", timeout, **params)
        if response.status_code == 400 and "query/status" in response.text:
            # n8n before 2.10 lists no running executions: "request/query/status must be equal to one of
            # the allowed values: error, success, waiting" (1.104.2); it has no stop either
            raise ApiRefused(ApiAnswer("cannot_stop"))
        if response.status_code != 200:
            raise ApiRefused(api_refusal(response, api, "execution:list and execution:read"))
        page = response.json()
        found = turn_execution(page, api.turn_id)
        if found:
            return found
        cursor = page.get("nextCursor") or ""
        if not cursor:
            break
    return ""


def stop_result(response: requests.Response, execution_id: str) -> ApiAnswer:
    status = response.status_code
    if status == 200:
        return ApiAnswer("cancelled", execution_id=execution_id)
    if status == 409:
        return ApiAnswer("already_finished", execution_id=execution_id)
    if no_stop_route(response):
        return ApiAnswer("cannot_stop")
    if status == 404:
        return ApiAnswer("already_finished", execution_id=execution_id)
    return api_refusal(response, None, "execution:stop")


def no_stop_route(response: requests.Response) -> bool:
    """Whether n8n's API has no POST /executions/{id}/stop at all (n8n before 2.10: its request validator
    answers 404 `not found` or 405). An n8n that has it answers an id it cannot stop with a 404 whose
    message names the execution (2.41.1) or is exactly `Not Found` (2.11.2)."""
    if response.status_code not in (404, 405):
        return False
    if response.status_code == 404 and n8n_message(response.text[:ERROR_BODY_LIMIT])[0] == "Not Found":
        return False
    return "execution" not in response.text.lower()


def api_refusal(response: requests.Response, api: ExecutionApi | None, scopes: str) -> ApiAnswer:
    """Why the API said no: the key (401), its scopes (403), or the API's address."""
    status = response.status_code
    if status == 401:
        return ApiAnswer("key_rejected", status=status)
    if status == 403:
        return ApiAnswer("scope_missing", status=status, scopes=scopes)
    if status in (404, 405) or 300 <= status < 400:
        return ApiAnswer("no_api", status=status, host=host_and_port(api.url) if api else "")
    message, _ = n8n_message(response.text[:ERROR_BODY_LIMIT])
    return ApiAnswer("api_http_error", status=status, message=message)


def api_unreachable(exc: BaseException, api: ExecutionApi) -> ApiAnswer:
    if isinstance(
        exc, requests.exceptions.InvalidURL | requests.exceptions.MissingSchema | requests.exceptions.InvalidSchema
    ):
        return ApiAnswer("api_invalid_url")
    cause: ConnectionCause
    if is_timeout(exc):
        cause = "timeout"
    elif any(isinstance(e, ConnectionRefusedError) for e in causes(exc)):
        cause = "connection_refused"
    else:
        cause = broken_connection(exc)
    return ApiAnswer("api_unreachable", host=host_and_port(api.url), cause=cause)


# Following a turn's execution: when the reply broke after n8n got the message, n8n goes on and finishes
# the answer; the pipe reads it from n8n's API instead of sending the message again. In the reply's worker
# thread, one call at a time, backing off, bounded by `max_reply_minutes`, ended at once by Stop.

FOLLOW_FIRST_DELAY = 0.5
FOLLOW_MAX_DELAY = 5.0
FOLLOW_STATUS_EVERY = 5.0  # the status line says the pipe still follows at most this often
FOLLOW_RETRIES = 3  # API calls in a row that may fail (a busy n8n) before following gives up
FOLLOW_LOOKUP_DELAYS = (*LOOKUP_DELAYS, 2.0)  # the chat already waits for n8n: one look more than Stop's
RECENT_EXECUTIONS = 20  # finished executions looked through for the turn's (a Respond Immediately run is quick)
ENDED = ("success", "error", "canceled", "crashed")
RECOVERABLE_GATEWAYS = (502, 503, 504, 524)


def n8n_may_still_answer(failure: Failure) -> bool:
    """A failure after which n8n may still make the answer: a proxy gave up, the connection broke or went
    silent, or the Webhook responded immediately. n8n's own errors are answers and stay as they are."""
    if not failure.may_have_reached_n8n:
        return False
    if failure.code == "gateway":
        return failure.status in RECOVERABLE_GATEWAYS
    return failure.code in (
        "read_timeout",
        "connection_reset",
        "connection_closed",
        "connection_lost",
        "workflow_started",
    )


class ExecutionFollower:
    """Follows one turn's execution until it ends and gives its record (with its data), why it could not,
    or None when the turn's deadline (`max_reply_minutes` from its start) came first: the last look is at
    the deadline, not one back-off step before. Raises Stopped on Stop. The id it finds goes to the
    turn's ExecutionStop at once, so a Stop while following stops that execution."""

    def __init__(self, api: ExecutionApi, stopper: Stopper, deadline: float, execution: ExecutionStop) -> None:
        self.api = api
        self.stopper = stopper
        self.deadline = deadline
        self.execution = execution

    @property
    def execution_id(self) -> str:
        return self.execution.execution_id

    def follow(self, waiting: Callable[[float], None]) -> dict[str, Any] | ApiAnswer | None:
        started = time.monotonic()
        with api_session(self.api, self.stopper) as session:
            delay, said_at, failed_calls = FOLLOW_FIRST_DELAY, started, 0
            while True:
                try:
                    record = self._look(session)
                except ApiRefused as exc:
                    return exc.answer
                except requests.RequestException as exc:
                    self.stopper.check()
                    failed_calls += 1
                    if failed_calls >= FOLLOW_RETRIES:
                        return api_unreachable(exc, self.api)
                    record = None
                except JSON_ERRORS:
                    return ApiAnswer("api_not_json", host=host_and_port(self.api.url))
                else:
                    failed_calls = 0
                    if isinstance(record, ApiAnswer) or (record is not None and record.get("status") in ENDED):
                        return record
                now = time.monotonic()
                if now - said_at >= FOLLOW_STATUS_EVERY:
                    waiting(now - started)
                    said_at = now
                if now >= self.deadline:
                    return None
                if self.stopper.wait(min(delay, self.deadline - now)):  # the last look is at the deadline
                    raise Stopped
                delay = min(delay * 2, FOLLOW_MAX_DELAY)

    def _look(self, session: requests.Session) -> dict[str, Any] | ApiAnswer:
        """The execution's record; the turn's execution is found first (its id, else its turn id)."""
        if not self.execution_id:
            self.execution.execution_id = self._find(session)
            if not self.execution_id:
                return ApiAnswer("execution_not_found")
        response = api_call(session, self.api, "GET", f"/executions/{self.execution_id}", includeData="true")
        self.stopper.check()
        if response.status_code == 404:  # seen running, then gone: n8n kept no data of it once it ended
            return ApiAnswer("execution_gone", execution_id=self.execution_id)
        if response.status_code != 200:
            return api_refusal(response, self.api, "execution:read")
        record = response.json()
        return record if isinstance(record, dict) else ApiAnswer("api_not_json", host=host_and_port(self.api.url))

    def _find(self, session: requests.Session) -> str:
        """The running execution whose input holds the turn id, else a recent finished one."""
        return look_again(lambda: self._running_or_recent(session), FOLLOW_LOOKUP_DELAYS, self.stopper.wait)

    def _running_or_recent(self, session: requests.Session) -> str:
        try:
            found = running_execution(session, self.api)
        except ApiRefused as exc:
            if exc.answer.code != "cannot_stop":  # n8n before 2.10 lists no running ones: the recent then
                raise
            found = ""
        return found or recent_execution(session, self.api)


def recent_execution(
    session: requests.Session, api: ExecutionApi, workflow_id: str = "", timeout: tuple[float, float] = API_TIMEOUT
) -> str:
    """The newest executions (of `workflow_id` when known), finished ones included, looked through for the
    turn id."""
    params = {"includeData": "true", "limit": str(RECENT_EXECUTIONS)} | (
        {"workflowId": workflow_id} if workflow_id else {}
    )
    response = api_call(session, api, "GET", "/executions", timeout, **params)
    if response.status_code != 200:
        raise ApiRefused(api_refusal(response, api, "execution:list and execution:read"))
    return turn_execution(response.json(), api.turn_id)


def turn_execution(page: Any, turn_id: str) -> str:
    """The id of the execution in a page of n8n's list whose data holds the turn id, else ""."""
    for execution in page.get("data") or [] if isinstance(page, dict) else []:
        if isinstance(execution, dict) and turn_id in json.dumps(execution.get("data")):
            return str(execution.get("id", ""))
    return ""


def execution_events(record: dict[str, Any], response_field: str, shown_text: str) -> list[Event]:
    """What an ended execution's record means for the chat: its answer as the webhook would have sent it
    (the last node's first item), less what the chat already shows; n8n's error; or why there is none."""
    execution_id = str(record.get("id", ""))
    status = str(record.get("status", ""))
    result = object_at(record, "data.resultData")
    if status == "error" and object_at(result, "error"):
        error = object_at(result, "error")
        reason = text_at(error, "description") or text_at(error, "message") or ""
        return [Failure("n8n_error", node=text_at(error, "node.name") or "", message=reason, may_have_reached_n8n=True)]
    if status in ("canceled", "crashed"):
        return [
            Failure("execution_canceled" if status == "canceled" else "execution_crashed", execution_id=execution_id)
        ]
    item = last_node_item(result)
    if item is None:
        return [Failure("execution_data_missing", execution_id=execution_id)]
    events = without_unshown(events_of_json(item, response_field))  # as the stream showed it
    if not any(e.answer_words for e in events):
        snippet = shorten(json.dumps(without_agent_work(item), ensure_ascii=False))
        return [*events, Failure("no_text_at_field", response_field=response_field, reply_start=snippet)]
    return [Recovered(execution_id), *not_repeated(events, shown_text)]


def last_node_item(result: dict[str, Any]) -> Any:
    """The json of the first item the last node put out: what n8n answers 'When Last Node Finishes'."""
    runs = value_at(result, f"runData.{result.get('lastNodeExecuted')}")
    if not isinstance(runs, list) or not runs:
        return None
    return value_at(runs[-1], "data.main.0.0.json")


def not_repeated(events: list[Event], shown_text: str) -> list[Event]:
    """The recovered answer without what the chat already shows: when the text shown is the answer's
    start, only the rest; else the whole answer after it, as a paragraph of its own."""
    answer = "".join(e.answer_words for e in events)
    rest = answer[len(shown_text) :] if answer.startswith(shown_text) else ("\n\n" if shown_text else "") + answer
    return [e for e in events if not e.answer_words] + text_events(rest)


# The agent's work from the turn's execution: n8n's stream carries no tool call and no token count, its
# execution records both. Read in the turn's own thread, one call at a time, backing off; the chat waits for
# it at most WATCH_HOLD before the next block's text and WATCH_AFTER_BODY after n8n's body ended.

WATCH_HOLD = 0.25  # the next block's text waits this long at most for the tool step before it
WATCH_AFTER_BODY = 3.5  # the reply ends this long after n8n's body at the latest, read or not
WATCH_QUIET = 0.3  # silence after a block's end before the first look: the last block's end needs none
WATCH_FINAL_DELAY = 0.1  # n8n saves a default execution 0.12-0.15 s after the stream's end
WATCH_BACKOFF = 1.5
WATCH_MAX_DELAY = 2.0
KNOWN_WORKFLOWS: dict[str, str] = {}  # webhook URL -> its workflow's id, learnt from a record
KNOWN_WORKFLOWS_MAX = 256
WatchKind = Literal["look", "now", "final"]


class ToolRun(NamedTuple):
    """One run of a tool node in an execution's runData (`inputOverride.ai_tool` marks a tool)."""

    key: str  # node name and run index: the same run read twice is shown once
    node: str
    input: Any
    output: Any
    done: bool  # the output is saved: before, n8n saved only its input (a running tool, progress saved)
    started: float


def tool_runs(record: dict[str, Any]) -> list[ToolRun]:
    """The execution's tool runs in the order they ran; those still running last."""
    runs: list[ToolRun] = []
    for node, node_runs in object_at(record, "data.resultData.runData").items():
        for index, run in enumerate(node_runs if isinstance(node_runs, list) else []):
            if not isinstance(run, dict) or value_at(run, "inputOverride.ai_tool") is None:
                continue
            done = bool(run.get("executionStatus"))
            output = value_at(run, "data.ai_tool.0.0.json")
            if output is None and done:
                output = text_at(run, "error.message") or run.get("executionStatus")
            start = run.get("startTime")
            started = float(start) if done and isinstance(start, int) else float("inf")
            input_ = value_at(run, "inputOverride.ai_tool.0.0.json")
            runs.append(ToolRun(f"{node}#{index}", " ".join(node.split()), input_, output, done, started))
    return sorted(runs, key=lambda run: run.started)


def execution_usage(record: dict[str, Any]) -> Usage | None:
    """The sum over the execution's model calls of their `tokenUsage` (Anthropic's node:
    `tokenUsageEstimate`); None when no model call counted any."""
    found: list[Usage] = []
    for node_runs in object_at(record, "data.resultData.runData").values():
        for run in node_runs if isinstance(node_runs, list) else []:
            outputs = value_at(run, "data.ai_languageModel")
            for output in outputs if isinstance(outputs, list) else []:
                for item in output if isinstance(output, list) else []:
                    counted = usage_of(value_at(item, "json.tokenUsage")) or usage_of(
                        value_at(item, "json.tokenUsageEstimate")
                    )
                    found += [counted] if counted is not None else []
    if not found:
        return None
    return Usage(
        *(
            sum(counts)
            for counts in zip(*((u.prompt_tokens, u.completion_tokens, u.total_tokens) for u in found), strict=True)
        )
    )


def saves_no_progress(record: dict[str, Any]) -> bool:
    """A running execution with no run saved: n8n saves it only at its end (no *Save execution progress*)."""
    return record.get("status") == "running" and not object_at(record, "data.resultData.runData")


@dataclass(frozen=True)
class WatchAsk:
    """What the chat asks of the watch: `look` while the stream is quiet after a block (until the tool's run
    is read), `now` one read as a block begins, `final` reads until the execution ends or `deadline`."""

    kind: WatchKind
    number: int
    steps: bool
    usage: bool
    deadline: float = float("inf")
    made: float = field(default_factory=time.monotonic)


class ExecutionWatch:
    """Reads this turn's execution for the agent's work: each tool run (ToolStarted, then ToolStep, each once)
    and, once it ended, the usage of its model calls. One thread, started by the first ask; `report` gets
    the events and the number of the ask they answer (0: more to come). The execution is the one whose data
    holds the turn id (the id goes to the turn's ExecutionStop); no call after stop()."""

    def __init__(self, api: ExecutionApi, execution: ExecutionStop, report: Callable[[list[Event], int], None]) -> None:
        self.api = api
        self.execution = execution
        self.stopper = Stopper()
        self.saves_progress: bool | None = None  # None until a running execution was read
        self._report = report
        self._lock = threading.Condition()
        self._ask: WatchAsk | None = None
        self._asks = 0
        self._thread_started = False
        self._begun = 0  # the ask whose schedule runs
        self._pause = WATCH_QUIET
        self._due = 0.0
        self._seen: set[str] = set()  # tool runs shown (done) or said (started), by key and state

    def ask(self, kind: WatchKind, steps: bool, usage: bool, deadline: float = float("inf")) -> int:
        """A new ask replaces the one before; its number comes back with the events that answer it."""
        with self._lock:
            self._asks += 1
            self._ask = WatchAsk(kind, self._asks, steps, usage, deadline)
            self._lock.notify_all()
            start, self._thread_started = not self._thread_started, True
        if start:
            THREAD_STARTER.submit(threading.Thread(target=self._run, name="n8n-work", daemon=True).start)
        return self._asks

    def stop(self) -> None:
        """No call after this; a call under way is cut (its socket shut)."""
        self.stopper.stop()
        with self._lock:
            self._lock.notify_all()

    def _run(self) -> None:
        try:
            with URLLIB3_LOGS.hiding(self.api.secrets), api_session(self.api, self.stopper) as session:
                while (ask := self._next()) is not None:
                    answered = self._answer(session, ask)
                    with self._lock:
                        if answered and self._ask is ask:
                            self._ask = None
                        self._pause = min(self._pause * WATCH_BACKOFF, WATCH_MAX_DELAY)
                        self._due = time.monotonic() + self._pause
                    if ask.kind == "final" and not answered and self._due >= ask.deadline:
                        self._left_out("the execution had not ended")
                        self._report([], ask.number)
                    if ask.kind == "final" and (answered or self._due >= ask.deadline):
                        return
        except Stopped:
            pass
        except Exception as exc:  # a bug here must not break the chat: the answer stands without the work
            log.error("n8n pipe bug reading the execution: %s", type(exc).__name__)

    def _next(self) -> WatchAsk | None:
        """The ask to answer now, when its read is due: a `look` after WATCH_QUIET of quiet, then backing
        off; `now` and the first `final` read at once. A newer ask ends the wait."""
        with self._lock:
            while not self.stopper.stopped:
                ask = self._ask
                if ask is None:
                    self._lock.wait()
                    continue
                if ask.number != self._begun:  # a new ask: its own schedule
                    self._begun = ask.number
                    self._pause = WATCH_QUIET if ask.kind == "look" else WATCH_FINAL_DELAY
                    self._due = ask.made + (WATCH_QUIET if ask.kind == "look" else 0.0)
                wait = self._due - time.monotonic()
                if wait <= 0:
                    return ask
                self._lock.wait(wait)
            return None

    def _answer(self, session: requests.Session, ask: WatchAsk) -> bool:
        """One read, its news reported; whether the ask is answered (`final`: only once the execution ended,
        or the deadline came, or the API said no)."""
        try:
            record = self._read(session, ask.deadline)
        except ApiRefused as exc:
            self._left_out(api_words(exc.answer))
            self._report([], ask.number)
            return True
        except requests.RequestException as exc:
            self.stopper.check()
            if ask.kind == "final" and time.monotonic() < ask.deadline:
                return False
            self._left_out(api_words(api_unreachable(exc, self.api)))
            self._report([], ask.number)
            return True
        except JSON_ERRORS:
            self._left_out(api_words(ApiAnswer("api_not_json", host=host_and_port(self.api.url))))
            self._report([], ask.number)
            return True
        self.stopper.check()
        ended = record is not None and record.get("status") in ENDED
        if record is not None and record.get("status") == "running":
            self.saves_progress = not saves_no_progress(record)
        events = self._news(record, ask.steps) if record is not None else []
        if ask.kind == "final":
            answered = ended
        else:
            answered = ask.kind == "now" or ended or self.saves_progress is False or any(e.ends_tool for e in events)
        if ended and ask.usage:
            usage = execution_usage(cast(dict[str, Any], record))
            events += [usage] if usage is not None else []
        self._report(events, ask.number if answered else 0)
        return answered

    def _read(self, session: requests.Session, deadline: float) -> dict[str, Any] | None:
        """The execution's record; None while it is not found yet."""
        timeout = (min(API_TIMEOUT[0], max(deadline - time.monotonic(), 0.05)),) * 2
        if not self.execution.execution_id:
            self.execution.execution_id = self._find(session, timeout)
            if not self.execution.execution_id:
                return None
        path = f"/executions/{self.execution.execution_id}"
        response = api_call(session, self.api, "GET", path, timeout, includeData="true")
        if response.status_code != 200:
            raise ApiRefused(api_refusal(response, self.api, "execution:read"))
        record = response.json()
        if not isinstance(record, dict):
            raise ValueError("not an execution")
        if isinstance(record.get("workflowId"), str) and self.api.webhook_url:
            if len(KNOWN_WORKFLOWS) >= KNOWN_WORKFLOWS_MAX:
                KNOWN_WORKFLOWS.clear()
            KNOWN_WORKFLOWS[self.api.webhook_url] = record["workflowId"]
        return record

    def _find(self, session: requests.Session, timeout: tuple[float, float]) -> str:
        """The running execution whose data holds the turn id, else a recent one; of the webhook's workflow
        once its id is known (a handful of bytes instead of every workflow's runs)."""
        workflow = KNOWN_WORKFLOWS.get(self.api.webhook_url, "")
        found = running_execution(session, self.api, workflow, timeout)
        return found or recent_execution(session, self.api, workflow, timeout)

    def _news(self, record: dict[str, Any], steps: bool) -> list[Event]:
        """The tool runs not reported yet: a running one as ToolStarted, a done one as ToolStep."""
        events: list[Event] = []
        for run in tool_runs(record) if steps else []:
            state = f"{run.key}:{'done' if run.done else 'started'}"
            if state in self._seen or (not run.done and f"{run.key}:done" in self._seen):
                continue
            self._seen.add(state)
            events.append(ToolStep(run.node, run.input, run.output) if run.done else ToolStarted(run.node, run.input))
        return events

    def _left_out(self, why: str) -> None:
        said = redact(why, self.api.secrets)
        log.info("n8n API at %s: the agent's tool steps and usage were left out: %s", host_and_port(self.api.url), said)


# ---------------------------------------------------------------------------
# Models: which workflow a chat model calls: a `models` line, `n8n_url`, or a workflow tagged `workflow_tag`
# in n8n. With `n8n_api_key`, every published tagged workflow whose published version a chat can call at a
# fixed URL (a Webhook taking POST, a public Chat Trigger) is a model. Open WebUI asks for the models on every
# page load and waits for them without a time-out, so the listing runs in a thread, starts at most every
# WORKFLOWS_FRESH_SECONDS, and the model list never waits for it longer than WORKFLOWS_WAIT_SECONDS. URLs are
# built on the base the valves give: n8n's answer names a path, never a host, so credentials go nowhere else.

WORKFLOW_ENTRY_PREFIX = "workflow-"  # + the workflow's n8n id: a renamed workflow keeps its model and chats
WORKFLOWS_PAGE_SIZE = 250  # the most n8n lists in one page
WORKFLOWS_PAGES = 40
WORKFLOWS_LISTING_SECONDS = 30.0  # a listing still paging after this keeps what it has
WORKFLOWS_FRESH_SECONDS = 10.0
WORKFLOWS_WAIT_SECONDS = 1.5  # Open WebUI's model list comes within 2 s whatever n8n's API does
WEBHOOK_NODE = "n8n-nodes-base.webhook"
CHAT_TRIGGER_NODE = "@n8n/n8n-nodes-langchain.chatTrigger"
MODEL_ENTRY_ID = re.compile(r"[A-Za-z0-9_-]+")  # no '.': Open WebUI's model id is `<function id>.<entry id>`
N8N_ROUTES = re.compile(r"(.*?)/(?:webhook|webhook-test|webhook-waiting|api|workflow|home)(?:/|$)")
NO_TRIGGER = "it has no Webhook node taking POST and no public Chat Trigger, so a chat cannot call it"


@dataclass(frozen=True)
class WorkflowModel:
    """One tagged workflow as a model: its n8n id and name, and the live URL a chat with it goes to."""

    workflow_id: str
    name: str
    url: str

    @property
    def entry(self) -> str:
        return WORKFLOW_ENTRY_PREFIX + self.workflow_id


@dataclass(frozen=True)
class WorkflowListing:
    """What one listing found: the models, and each tagged workflow left out with why."""

    models: tuple[WorkflowModel, ...]
    skipped: tuple[tuple[str, str], ...] = ()  # (the workflow's name, why it is no model)


@dataclass(frozen=True)
class WorkflowSource:
    """Which n8n's API lists the workflows, the tag, and the base their URLs are built on."""

    api: ExecutionApi
    tag: str
    base: str


def workflow_source(settings: Settings) -> WorkflowSource | None:
    """None when nothing is listed: no tag, no key, or no base to build the URLs on: the origin of `n8n_url`,
    else of the first `models` line, else of `n8n_api_url`."""
    tag, key = settings.workflow_tag.strip(), settings.n8n_api_key.strip()
    webhook = settings.n8n_url.strip() or next((url for _, url in parse_models(settings.models).values()), "")
    base = webhook_base(webhook) or webhook_base(settings.n8n_api_url)
    if not tag or not key or not base:
        return None
    gateway = tuple(parse_extra_headers(settings.extra_headers))
    api = ExecutionApi(api_base(settings.n8n_api_url, webhook), key, "", settings.verify_ssl, gateway)
    return WorkflowSource(api, tag, base)


def webhook_base(url: str) -> str:
    """Where n8n serves its webhooks: the URL's origin, with the path before its /webhook/ or /api/ when n8n
    is served under one (N8N_PATH behind a proxy); "" when the URL is no http(s) URL."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return ""
    host = parts.netloc.rpartition("@")[2]
    if parts.scheme not in ("http", "https") or not host:
        return ""
    prefix = N8N_ROUTES.match(parts.path)
    return f"{parts.scheme}://{host}{prefix.group(1) if prefix else ''}"


def list_workflows(source: WorkflowSource, published_only: bool = True) -> WorkflowListing | ApiAnswer:
    """The workflows with the tag (only the published ones unless the doctor asks), every page, as models
    and the reasons the others are none; why not when the API refused or failed. Never raises."""
    with api_session(source.api) as session:
        try:
            workflows = tagged_workflows(session, source, published_only)
        except ApiRefused as exc:
            return exc.answer
        except requests.RequestException as exc:
            return api_unreachable(exc, source.api)
        except JSON_ERRORS:
            return ApiAnswer("api_not_json", host=host_and_port(source.api.url))
    found = [(str(workflow.get("name") or ""), workflow_model(workflow, source)) for workflow in workflows]
    models = tuple(model for _, model in found if isinstance(model, WorkflowModel))
    return WorkflowListing(models, tuple((name, why) for name, why in found if isinstance(why, str)))


def tagged_workflows(session: requests.Session, source: WorkflowSource, published_only: bool) -> list[dict[str, Any]]:
    """`GET /workflows?tags=<tag>` page after page (n8n's `nextCursor`), bounded in pages and time."""
    params = {"tags": source.tag, "limit": str(WORKFLOWS_PAGE_SIZE), **({"active": "true"} if published_only else {})}
    deadline = time.monotonic() + WORKFLOWS_LISTING_SECONDS
    workflows: list[dict[str, Any]] = []
    cursor = ""
    for _ in range(WORKFLOWS_PAGES):
        page_params = {**params, "cursor": cursor} if cursor else params
        response = api_call(session, source.api, "GET", "/workflows", API_TIMEOUT, **page_params)
        if response.status_code != 200:
            raise ApiRefused(api_refusal(response, source.api, WORKFLOWS_SCOPE))
        page = response.json()
        if not isinstance(page, dict) or not isinstance(page.get("data"), list):
            raise ApiRefused(ApiAnswer("api_not_json", host=host_and_port(source.api.url)))
        workflows += [workflow for workflow in page["data"] if isinstance(workflow, dict)]
        cursor = str(page.get("nextCursor") or "")
        if not cursor or time.monotonic() > deadline:
            break
    return workflows


def workflow_model(workflow: dict[str, Any], source: WorkflowSource) -> WorkflowModel | str:
    """The workflow as a model, or why it is none. What n8n filtered is checked again: an n8n that ignores a
    filter must not turn every workflow into a model."""
    workflow_id = str(workflow.get("id") or "")
    if workflow.get("isArchived"):
        return "it is archived"
    if workflow.get("active") is not True:
        return "it is not published: publish it in n8n (Publish, top right)"
    if source.tag not in {tag.get("name") for tag in workflow.get("tags") or [] if isinstance(tag, dict)}:
        return f"it has no tag '{source.tag}'"
    if not MODEL_ENTRY_ID.fullmatch(workflow_id):
        return f"its id '{shorten(workflow_id, 40)}' cannot be a model's id (letters, digits, - and _ only)"
    reasons = []
    for node in published_nodes(workflow):
        path, why = trigger_path(node)
        if path:
            return WorkflowModel(workflow_id, str(workflow.get("name") or workflow_id), f"{source.base}/webhook/{path}")
        reasons += [why] if why else []
    return "; ".join(reasons) or NO_TRIGGER


def published_nodes(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    """The nodes n8n serves: the published version's (n8n 2 keeps the unpublished draft in `nodes`); an n8n
    without versions (before 2.0) serves `nodes` itself."""
    version = workflow.get("activeVersion") if "activeVersion" in workflow else workflow
    nodes = version.get("nodes") if isinstance(version, dict) else None
    return [node for node in nodes if isinstance(node, dict)] if isinstance(nodes, list) else []


def trigger_path(node: dict[str, Any]) -> tuple[str, str]:
    """(the path after /webhook/ that a chat calls this node at, why it cannot): a Webhook taking POST at
    /webhook/<path>, a public Chat Trigger at /webhook/<webhookId>/chat; ("", "") for any other node. The
    path is quoted, so it stays a path on the base whatever n8n's answer holds."""
    kind, name = node.get("type"), str(node.get("name") or "")
    if kind not in (WEBHOOK_NODE, CHAT_TRIGGER_NODE):
        return "", ""
    if node.get("disabled"):
        return "", f"its node '{name}' is disabled"
    parameters = node.get("parameters")
    parameters = parameters if isinstance(parameters, dict) else {}
    if kind == CHAT_TRIGGER_NODE:
        webhook_id = str(node.get("webhookId") or "")
        if parameters.get("public") is not True:
            return "", f"its Chat Trigger '{name}' is not public: turn on its 'Make Chat Publicly Available'"
        if not webhook_id:
            return "", f"its Chat Trigger '{name}' has no webhook id"
        return f"{quote(webhook_id, safe='')}/chat", ""
    methods = parameters.get("httpMethod", ["GET", "POST"] if parameters.get("multipleMethods") else "GET")
    if "POST" not in (methods if isinstance(methods, list) else [methods]):
        return "", f"its Webhook '{name}' does not take POST: set its HTTP Method to POST"
    path = str(parameters.get("path") or "").strip("/")
    segments = path.split("/")
    if any(segment.startswith(":") for segment in segments):
        return "", f"its Webhook '{name}' path '{shorten(path, 60)}' has a :parameter, so it has no fixed URL"
    if not path or any(segment in ("", ".", "..") for segment in segments):
        return "", f"its Webhook '{name}' has no usable path ('{shorten(path, 60)}')"
    return quote(path, safe="/"), ""


class WorkflowCatalog:
    """One source's last listing and the listing under way: however often Open WebUI asks, a listing starts
    at most every WORKFLOWS_FRESH_SECONDS and never twice at once. What went wrong is logged once."""

    def __init__(self, source: WorkflowSource) -> None:
        self.source = source
        self.listing: WorkflowListing | None = None  # the last one n8n gave; None: never had one
        self._lock = threading.Lock()
        self._listed_at = float("-inf")
        self._under_way: Future[None] | None = None
        self._said: set[str] = set()

    def refreshed(self) -> Future[None] | None:
        """The listing under way, or a new one when the last is older than WORKFLOWS_FRESH_SECONDS."""
        with self._lock:
            if self._under_way is not None and not self._under_way.done():
                return self._under_way
            if time.monotonic() - self._listed_at < WORKFLOWS_FRESH_SECONDS:
                return None
            self._listed_at = time.monotonic()
            self._under_way = WORKFLOW_LISTER.submit(self._list)
            return self._under_way

    def _list(self) -> None:
        """In the lister's thread: a new listing replaces the last; a failure keeps it."""
        try:
            result = list_workflows(self.source)
        except Exception:  # a bug: said in the log, the last listing kept; the thread must not die silently
            log.exception("listing n8n's workflows failed")
            result = ApiAnswer("api_not_json", host=host_and_port(self.source.api.url))
        with self._lock:
            self._listed_at = time.monotonic()
            if isinstance(result, WorkflowListing):
                self.listing = result
        self._report(result)

    def _report(self, result: WorkflowListing | ApiAnswer) -> None:
        if isinstance(result, ApiAnswer):
            self._say(workflows_failed_words(self.source.tag, result))
            return
        self._said = {said for said in self._said if said.startswith(SKIPPED_PREFIX)}  # a new failure is said again
        for name, why in result.skipped:
            self._say(skipped_workflow_words(self.source.tag, name, why))

    def _say(self, said: str) -> None:
        if said not in self._said:
            self._said.add(said)
            log.warning("%s", redact(said, self.source.api.secrets))


WORKFLOW_LISTER = ThreadPoolExecutor(max_workers=2, thread_name_prefix="n8n-workflows")
WORKFLOW_CATALOGS: dict[WorkflowSource, WorkflowCatalog] = {}
WORKFLOW_CATALOGS_KEPT = 8  # sources seen (valves saved with another key or tag); older ones are dropped


def catalog_of(source: WorkflowSource) -> WorkflowCatalog:
    if source not in WORKFLOW_CATALOGS and len(WORKFLOW_CATALOGS) >= WORKFLOW_CATALOGS_KEPT:
        WORKFLOW_CATALOGS.clear()
    return WORKFLOW_CATALOGS.setdefault(source, WorkflowCatalog(source))


async def workflow_listing(settings: Settings) -> WorkflowListing | None:
    """The tagged workflows as fresh as WORKFLOWS_WAIT_SECONDS allows: a listing's result when it comes in
    time, else the last one (None: none yet, or nothing to list). The wait never cancels the listing."""
    source = workflow_source(settings)
    if source is None:
        return None
    catalog = catalog_of(source)
    under_way = catalog.refreshed()
    if under_way is not None:
        await asyncio.wait([asyncio.wrap_future(under_way)], timeout=WORKFLOWS_WAIT_SECONDS)
    return catalog.listing


async def listed_models(settings: Settings) -> list[dict[str, str]]:
    """Open WebUI's model list: the `models` lines (else n8n_url's model), then the tagged workflows, each
    URL once. Never raises: Open WebUI would then list none of the pipe's models."""
    try:
        listing = await workflow_listing(settings)
    except Exception:  # a bug must not empty the model picker: the configured models stay
        log.exception("listing n8n's workflows failed")
        listing = None
    return model_list(settings, listing.models if listing else ())


def model_list(settings: Settings, listed: Sequence[WorkflowModel]) -> list[dict[str, str]]:
    """The configured models first (their chats keep their ids), then the listed workflows whose id and URL
    are new. n8n_url's lone model is left out when it has no URL and the tag found workflows."""
    configured = [(model_id, name, url) for model_id, (name, url) in parse_models(settings.models).items()]
    if not configured and (settings.n8n_url.strip() or not listed):
        configured = [(SINGLE_MODEL, "n8n", settings.n8n_url)]
    models: list[dict[str, str]] = []
    ids, urls = set(), set()
    for model_id, name, url in [*configured, *((model.entry, model.name, model.url) for model in listed)]:
        same_url = url.strip().rstrip("/")
        if model_id in ids or (same_url and same_url in urls):
            continue
        ids.add(model_id)
        urls.add(same_url)
        models.append({"id": model_id, "name": name})
    return models


def listed_workflow(settings: Settings, entry: str) -> WorkflowModel | None:
    """The listed workflow behind a model entry, from the last listing (no call to n8n)."""
    source = workflow_source(settings)
    catalog = WORKFLOW_CATALOGS.get(source) if source else None
    listing = catalog.listing if catalog else None
    return next((model for model in listing.models if model.entry == entry), None) if listing else None


def listed_workflow_url(settings: Settings, entry: str) -> str:
    model = listed_workflow(settings, entry)
    return model.url if model else ""


async def workflows_of_turn(settings: Settings, model_id: str) -> None:
    """A chat with a listed workflow needs a listing no older than the model list's: after a restart the
    chat may come before any model list (the API, another worker), and a republished path changes its URL."""
    if model_entry(model_id).startswith(WORKFLOW_ENTRY_PREFIX):
        await workflow_listing(settings)


def webhook_url(settings: Settings, model_id: str) -> str:
    """The URL of the workflow behind the picked model (`<function id>.<entry id>`), "" when that entry
    is gone: a chat must never reach another workflow than the one it was started with."""
    workflows = parse_models(settings.models)
    entry = model_entry(model_id)
    if entry in workflows:
        return workflows[entry][1]
    if entry.startswith(WORKFLOW_ENTRY_PREFIX):
        return listed_workflow_url(settings, entry)
    n8n_url = settings.n8n_url.strip()
    if entry == "":  # no chat model (the doctor, the demo): n8n_url, else the first workflow
        return n8n_url or next((url for _, url in workflows.values()), "")
    return n8n_url if entry == SINGLE_MODEL else ""


def valve_problem(settings: Settings, model_id: str, url: str) -> str | None:
    """What in the valves makes this turn's request pointless or broken, said before anything is sent."""
    problem = models_problem(settings.models)
    if problem:
        return problem
    entry = model_entry(model_id)
    if not url and entry.startswith(WORKFLOW_ENTRY_PREFIX) and entry not in parse_models(settings.models):
        return listed_workflow_gone(entry, settings.workflow_tag.strip(), workflow_source(settings) is None)
    if not url and (entry not in ("", SINGLE_MODEL) or (entry == SINGLE_MODEL and parse_models(settings.models))):
        return (
            f"This model ('{entry}') no longer exists in the pipe's `models` valve: pick another model for "
            f"this chat, or add its 'Name = URL' line back ({VALVES_AT})."
        )
    valve = "n8n_url" if url == settings.n8n_url.strip() else "models"
    return url_problem(url, valve) or header_problem(settings) or extra_headers_problem(settings)


# ---------------------------------------------------------------------------
# Transport: one call to the webhook (never repeated): sent and its head read in a worker thread, its body read
# and decoded on the event loop; what failed classified as a Failure; Handover takes a thread's events to the loop.


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

    def connection_closed(self) -> None:
        if not self.ended:
            raise urllib3.exceptions.ProtocolError("incomplete chunked read: the connection closed")

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
                self._framing.connection_closed()
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


class LengthFraming:
    """A body of Content-Length bytes: what follows them is no part of it."""

    def __init__(self, length: int) -> None:
        self._left = length
        self.ended = not length

    def feed(self, data: bytes) -> bytes:
        body = data[: self._left]
        self._left -= len(body)
        self.ended = not self._left
        return body

    def connection_closed(self) -> None:
        if not self.ended:
            raise urllib3.exceptions.ProtocolError(f"incomplete read: the connection closed {self._left} bytes early")


class CloseFraming:
    """A body without a length and not chunked: it ends where the connection closes."""

    ended = False

    def feed(self, data: bytes) -> bytes:
        return data

    def connection_closed(self) -> None:
        self.ended = True


Framing = ChunkedFraming | LengthFraming | CloseFraming


class ContentDecoding:
    """The body's Content-Encoding undone by urllib3's own decoders (gzip, deflate; br and zstd when
    installed), in pieces of at most READ_SIZE where urllib3 can bound them (2.6+): a gzip bomb never
    sits in memory whole."""

    def __init__(self, encodings: list[str]) -> None:
        modes = ",".join(e for e in encodings if e != "identity")
        self._decoder = urllib3.response._get_decoder(modes) if modes else None
        self._bounded = hasattr(self._decoder, "has_unconsumed_tail")

    def decode(self, data: bytes) -> bytes:
        if self._decoder is None or not data:
            return data
        with self._decode_errors():
            return (
                self._decoder.decompress(data, max_length=READ_SIZE)
                if self._bounded
                else self._decoder.decompress(data)
            )

    def more(self) -> bytes:
        """What the last bytes hold beyond the piece decode() gave; b"" when nothing."""
        if self._decoder is None or not getattr(self._decoder, "has_unconsumed_tail", False):
            return b""
        with self._decode_errors():
            return self._decoder.decompress(b"", max_length=READ_SIZE)

    def finish(self) -> bytes:
        if self._decoder is None:
            return b""
        with self._decode_errors():
            return self._decoder.flush()

    @contextmanager
    def _decode_errors(self) -> Iterator[None]:
        """A body that does not decode is a broken reply, as urllib3 says it."""
        try:
            yield
        except urllib3.response.HTTPResponse.DECODER_ERROR_CLASSES as exc:
            raise urllib3.exceptions.DecodeError(f"failed to decode the reply: {exc}") from exc


class LoopSocket:
    """The connection's socket, non-blocking, read on the event loop as asyncio's own transports read: watched
    while the reply is read, and read in the loop's callback the moment it is readable (one wake and one recv
    per arrival). What the socket file buffered past the head comes first; TLS is read until its layer holds
    nothing more. Reading pauses while over READ_SIZE waits for the chat: a stalled chat cannot grow memory."""

    def __init__(self, sock: socket.socket, buffered: bytes) -> None:
        self.sock = sock
        self._tls = isinstance(sock, ssl.SSLSocket)
        self._received = [buffered] if buffered else []
        self._size = len(buffered)
        self._ended = False  # the connection closed, or broke (`_error`)
        self._error: OSError | None = None
        self._wants_write = False  # TLS must write before it can read on
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watching = False
        self._watching_write = False
        self._waiter: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._deadline = 0.0
        self._read_available()  # TLS may hold records the socket file's read left behind: no wake would come

    async def recv(self, timeout: float) -> bytes:
        """The bytes received so far, b"" once the connection closed; TimeoutError after `timeout` s of silence."""
        while not self._received and not self._ended:
            await self._wait(timeout)
        if self._error is not None and not self._received:
            raise self._error
        data = b"".join(self._received)
        self._received, self._size = [], 0
        return data

    def close(self) -> None:
        self._unwatch()
        if self._timer is not None:
            self._timer.cancel()

    async def _wait(self, timeout: float) -> None:
        loop = self._loop = asyncio.get_running_loop()
        self._watch()
        self._waiter = loop.create_future()
        self._deadline = loop.time() + timeout
        if self._timer is None or self._timer.when() > self._deadline:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = loop.call_at(self._deadline, self._check_deadline)
        try:
            await self._waiter
        finally:
            self._waiter = None

    def _read_available(self) -> None:
        """Reads what is there, without waiting, until over READ_SIZE is held."""
        while self._size <= READ_SIZE and not self._ended:
            try:
                data = self.sock.recv(READ_SIZE)
            except (BlockingIOError, ssl.SSLWantReadError):
                self._wants_write = False
                return
            except ssl.SSLWantWriteError:
                self._wants_write = True
                return
            except OSError as exc:
                self._error, self._ended = exc, True
                return
            self._wants_write = False
            self._received.append(data)
            self._size += len(data)
            self._ended = not data
            if len(data) < READ_SIZE and not self._tls:  # the kernel had no more; TLS may hold more records
                return

    def _on_ready(self) -> None:
        self._read_available()
        if self._ended or self._size > READ_SIZE or self._wants_write != self._watching_write:
            self._unwatch()  # closed, enough waits for the chat (the next wait watches again), or TLS turned
        self._watch()
        if (self._received or self._ended) and self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _watch(self) -> None:
        if not self._watching and not self._ended and self._size <= READ_SIZE and self._loop is not None:
            add = self._loop.add_writer if self._wants_write else self._loop.add_reader
            add(self.sock.fileno(), self._on_ready)
            self._watching, self._watching_write = True, self._wants_write

    def _unwatch(self) -> None:
        if self._watching and self._loop is not None:
            self._loop.remove_reader(self.sock.fileno())
            self._loop.remove_writer(self.sock.fileno())
            self._watching = False

    def _check_deadline(self) -> None:
        """One timer per read_timeout, not one per read: when it fires, a read still waiting times out."""
        self._timer = None
        if self._loop is None or self._waiter is None or self._waiter.done():
            return
        if self._loop.time() >= self._deadline:
            self._waiter.set_exception(TimeoutError("read timed out"))
        else:
            self._timer = self._loop.call_at(self._deadline, self._check_deadline)


class LoopBody:
    """A reply's body read on the event loop: its framing and its content coding removed here."""

    def __init__(self, source: LoopSocket, framing: Framing, decoding: ContentDecoding) -> None:
        self.source = source
        self._framing = framing
        self._decoding = decoding
        self._done = False

    async def read1(self, timeout: float) -> bytes:
        """The body's next bytes, as soon as one socket read brought any; b"" at the body's end."""
        while not self._done:
            if piece := self._decoding.more():
                return piece
            if self._framing.ended:
                self._done = True
                return self._decoding.finish()
            data = await self.source.recv(timeout)
            if not data:
                self._framing.connection_closed()
            if piece := self._decoding.decode(self._framing.feed(data)):
                return piece
        return b""


@dataclass
class OpenReply:
    """A reply whose head a thread read, open for the event loop to read its body."""

    session: requests.Session
    response: requests.Response
    body: LoopBody
    decoder: ReplyDecoder
    responded: Responded

    def close(self) -> None:
        """Hangs up at once (a socket file still open would keep the connection), then lets go of it all."""
        self.body.source.close()
        shut_down(self.body.source.sock)
        self.response.close()
        self.session.close()


def loop_body(response: requests.Response) -> LoopBody | None:
    """The body as the event loop reads it: the connection's own socket, non-blocking from here, what its
    socket file read past the head first. None, and the thread reads the body, where there is no plain or
    TLS socket to read (HTTPS through an HTTPS proxy wraps TLS in TLS in Python), and for a complete body
    over LOOP_BODY_BYTES (a JSON answer with an image): parsed whole, it would hold the loop."""
    http_response = getattr(response.raw, "_fp", None)
    socket_file = getattr(http_response, "fp", None)
    sock = getattr(getattr(socket_file, "raw", None), "_sock", None)
    if not isinstance(sock, socket.socket) or not isinstance(socket_file, io.BufferedReader):
        return None
    response_head = cast(http.client.HTTPResponse, http_response)
    if response_head.length is not None and response_head.length > LOOP_BODY_BYTES:
        return None
    if response_head.chunked:
        framing: Framing = ChunkedFraming()
    elif response_head.length is not None:
        framing = LengthFraming(response_head.length)
    else:
        framing = CloseFraming()
    sock.setblocking(False)
    return LoopBody(
        LoopSocket(sock, buffered_bytes(socket_file)), framing, ContentDecoding(content_encodings(response))
    )


def buffered_bytes(socket_file: io.BufferedReader) -> bytes:
    """What the socket file holds past the head. Its socket is non-blocking: read1() would answer b"" for
    "nothing yet" as for the end, so peek() shows the buffer (or what one read brought), read() takes it."""
    try:
        return socket_file.read(len(socket_file.peek()))
    except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
        return b""


EventSink = Callable[[list[Event]], None]


class ReplyLimits:
    """The `max_reply_mb` and `max_reply_minutes` valves, checked after every read: a gzip bomb, an
    endless reply or one that drips a byte a second for ever ends with what was shown. A reply that
    sends nothing at all is `read_timeout`'s."""

    def __init__(self, settings: Settings) -> None:
        self.max_bytes = settings.max_reply_bytes
        self.max_seconds = settings.max_reply_seconds
        self.deadline = time.monotonic() + settings.max_reply_seconds
        self.received = 0

    def check(self, size: int) -> None:
        self.received += size
        if self.received > self.max_bytes:
            raise ReplyCut(Failure("reply_too_large", limit=self.max_bytes))
        if time.monotonic() > self.deadline:
            raise ReplyCut(Failure("reply_too_long", limit=self.max_seconds))


class Exchange:
    """One call to the webhook: sent and its head read in a worker thread (that blocks, once per reply),
    its body read and decoded on the event loop (read_on_loop), or in the thread where the loop cannot
    read the socket (read_body). What the chat learns of the reply travels as events; the exchange keeps
    only the execution id it saw, for Stop."""

    def __init__(self, request: WebhookRequest) -> None:
        self.request = request
        self.stopper = Stopper()
        self.execution = ExecutionStop(request.execution_api)
        self._after_error = False
        self._started = time.monotonic()
        self._follows = request.execution_api is not None and request.settings.recover_answers
        self._block_text: list[str] = []  # the current n8n block's text, kept only to recover what is missing
        self._started_only: Failure | None = None  # the Webhook responded immediately: follow once it is read
        self._broke: Failure | None = None  # the connection broke while the body was read
        self.opened: OpenReply | None = None  # the body the event loop reads
        self.loop_reads = True  # False where the event loop cannot watch sockets (Windows' proactor)

    def stop(self) -> None:
        self.stopper.stop()

    def run(self, hand_over: EventSink) -> None:
        """In a worker thread: one request per chat turn, never repeated: n8n may have received it, and a
        workflow's side effects (emails, tickets, payments) must not happen twice. A body to read is left
        open in `opened` for the event loop."""
        self._started = time.monotonic()
        self._guarded(lambda: self._call(hand_over), hand_over)

    def follow_up(self, hand_over: EventSink) -> None:
        """After the body: a broken reply, or one the Webhook answered at once, is followed through n8n's API
        (in a worker thread: it waits for n8n)."""
        failure, self._broke, self._started_only = self._broke or self._started_only, None, None
        if failure is not None:
            self._guarded(lambda: self.failed(failure, hand_over), hand_over)

    @property
    def must_follow(self) -> bool:
        return self._broke is not None or self._started_only is not None

    def _guarded(self, work: Callable[[], None], hand_over: EventSink) -> None:
        try:
            with URLLIB3_LOGS.hiding(self.request.secrets):
                work()
        except Stopped:
            pass
        except Exception as exc:  # an exception would vanish in Open WebUI: the chat must say it
            with suppress(Stopped):
                hand_over([self.bug(exc)])

    def bug(self, exc: Exception) -> Failure:
        """A bug, logged by its frames, not its message: a message can carry the webhook's path."""
        frames = "".join(traceback.format_tb(exc.__traceback__))
        log.error("n8n pipe bug talking to %s: %s\n%s", host_and_port(self.request.url), type(exc).__name__, frames)
        return internal_error(exc)

    def _call(self, hand_over: EventSink) -> None:
        request, settings = self.request, self.request.settings
        URLLIB3_LOGS.secrets.update(url_secrets(request.url))
        session = requests.Session()
        try:
            adapter = StoppableAdapter(self.stopper)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            try:
                body, headers = outgoing_body(request)
            except AttachmentRefused as exc:
                hand_over([exc.failure])
                return
            self.stopper.check()
            try:
                response = session.post(
                    request.url,
                    **body,
                    headers=headers,
                    timeout=(settings.connect_timeout, settings.read_timeout),
                    verify=settings.verify_ssl,
                    stream=True,
                    allow_redirects=False,  # a redirect would carry the token to another host, or drop the POST
                    auth=token_headers_only,
                )
            except requests.RequestException as exc:
                self.stopper.check()
                self.failed(request_failure(exc, request), hand_over)
                return
            self._answer(session, response, hand_over)
        finally:
            if self.opened is None:
                session.close()

    def _answer(self, session: requests.Session, response: requests.Response, hand_over: EventSink) -> None:
        """n8n's answer: a body to read is left open for the event loop (or read here when the loop cannot
        read its socket); anything else is said here."""
        request, settings = self.request, self.request.settings
        try:
            self.stopper.check()
            responded = Responded(response.status_code)
            failure = answer_failure(response, request.url, signed=bool(request.jwt))
            if failure is None:
                content_type = response.headers.get("Content-Type", "")
                disposition = response.headers.get("Content-Disposition", "")
                decoder = ReplyDecoder(content_type, settings.response_field, settings.max_reply_bytes, disposition)
                body = loop_body(response) if self.loop_reads else None
                if body is None:
                    self.read_body(reply_body(response), decoder, hand_over, first=[responded])
                else:
                    self.stopper.release(body.source.sock)
                    self.opened = OpenReply(session, response, body, decoder, responded)
                    self.stopper.on_stop(self.opened.close)
                    self.stopper.check()
            else:
                hand_over([responded])
        finally:
            if self.opened is None:
                response.close()
        if failure is not None:  # after the response is closed: following it may take long
            self.failed(failure, hand_over)

    def read_body(
        self, body: RawBody, decoder: ReplyDecoder, hand_over: EventSink, first: Sequence[Event] = ()
    ) -> None:
        """The read loop in a thread: read, decode, hand over what that read meant, until the reply ends.
        Every read's events go at once: how the bytes were cut into segments never decides when text is
        shown. `first` goes with the first read, and the reply's end with its last events: no wake of the
        loop of its own."""
        limits = ReplyLimits(self.request.settings)
        last: list[Event] = []
        try:
            while not decoder.ended and (data := body.read1(READ_SIZE, decode_content=True)):
                hand_over([*first, *self._took(data, decoder, limits)])
                first = ()
            last = self._body_ended(decoder)
        except ReplyCut as exc:
            last = self._cut(exc)
        except NETWORK_ERRORS as exc:
            self._read_broke(exc)
        finally:
            with suppress(Stopped):
                hand_over([*first, *last, ReplyEnded(decoder.format, decoder.streams, decoder.empty)])
        self.follow_up(hand_over)

    async def read_on_loop(self) -> AsyncGenerator[list[Event], None]:
        """read_body's loop on the event loop, for the body left open: each read's events yielded as the
        socket brings them, no thread and no hand-over; the connection closed on every way out."""
        reply = self.opened
        if reply is None:
            return
        decoder, first, bug = reply.decoder, [reply.responded], None
        limits = ReplyLimits(self.request.settings)
        last: list[Event] = []
        try:
            while not decoder.ended and (data := await reply.body.read1(self._read_timeout())):
                yield [*first, *self._took(data, decoder, limits)]
                first = []
            last = self._body_ended(decoder)
        except ReplyCut as exc:
            last = self._cut(exc)
        except NETWORK_ERRORS as exc:
            self._read_broke(exc)
        except Exception as exc:  # a bug: said after the reply's end, as in the thread
            bug = exc
        finally:
            reply.close()
        yield [*first, *last, ReplyEnded(decoder.format, decoder.streams, decoder.empty)]
        if bug is not None:
            yield [self.bug(bug)]

    def _took(self, data: bytes, decoder: ReplyDecoder, limits: ReplyLimits) -> list[Event]:
        """What one read meant for the chat."""
        self.stopper.check()
        limits.check(len(data))  # first: over the limit, nothing of this read is kept in memory
        events = decoder.feed(data)
        self._learn_about_n8n(events)  # before the chat sees them: a Stop right after must know the id
        return self._for_chat_now(events)

    def _body_ended(self, decoder: ReplyDecoder) -> list[Event]:
        self.stopper.check()
        return self._for_chat_now(decoder.finish())

    def _cut(self, exc: ReplyCut) -> list[Event]:
        return [replace(exc.failure, may_have_reached_n8n=True, broke_off=True, let_go=True)]

    def _read_broke(self, exc: BaseException) -> None:
        self.stopper.check()
        if not (self._after_error and is_timeout(exc)):  # after n8n's error, silence ends the reply
            self._broke = read_failure(exc, self.request.settings.read_timeout)

    def _read_timeout(self) -> float:
        """How long the next read may wait for n8n: shorter once n8n reported an error."""
        return ERROR_GRACE_SECONDS if self._after_error else self.request.settings.read_timeout

    def failed(self, failure: Failure, hand_over: EventSink) -> None:
        """A failure goes to the chat, but one after which n8n may still make the answer: then, with n8n's
        API at hand, the answer is read from the turn's execution; the message is never sent again."""
        settings = self.request.settings
        if not n8n_may_still_answer(failure) or not settings.recover_answers:
            hand_over([failure])
            return
        api = self.request.execution_api
        if api is None:
            hand_over([replace(failure, needs_api_key=True)])
            return
        lost_after = time.monotonic() - self._started
        hand_over([Following(failure, lost_after)])
        follower = ExecutionFollower(api, self.stopper, self._started + settings.max_reply_seconds, self.execution)
        record = follower.follow(lambda waited: hand_over([Following(failure, lost_after, waited)]))
        if record is None:
            limit = settings.max_reply_seconds
            hand_over([Failure("reply_too_long", limit=limit, may_have_reached_n8n=True, let_go=True)])
        elif isinstance(record, ApiAnswer):
            gone = record.code == "execution_gone"
            hand_over(
                [
                    Failure("execution_data_missing", execution_id=record.execution_id)
                    if gone
                    else replace(failure, unrecovered=record)
                ]
            )
        else:
            hand_over(execution_events(record, settings.response_field, "".join(self._block_text)))

    def _for_chat_now(self, events: list[Event]) -> list[Event]:
        """A read's events as the chat gets them. While the answer could still be recovered: the current
        block's text is kept (recovery adds only what is missing), and "Workflow was started" waits until
        the body is read, to be followed."""
        if not self._follows:
            return events
        for event in events:
            if event.begins_block:
                self._block_text.clear()
            elif event.answer_words:
                self._block_text.append(event.answer_words)
            self._started_only = event.follow_after_body or self._started_only
        return [e for e in events if e is not self._started_only]

    def _learn_about_n8n(self, events: list[Event]) -> None:
        """What a read told about n8n itself: the execution id the workflow streamed, and an error item,
        after which n8n may send nothing at all (a stopped run leaves the body open for minutes): then
        reads wait ERROR_GRACE_SECONDS only, as long as nothing more comes."""
        for event in events:
            self.execution.execution_id = event.streamed_execution_id or self.execution.execution_id
        after_error = any(e.is_failure for e in events) or (self._after_error and not events)
        if after_error != self._after_error:
            self._after_error = after_error
            self.stopper.set_timeout(self._read_timeout())


class AttachmentRefused(Exception):
    """An attachment the pipe will not send (too large, unreadable): nothing is sent, the chat says why."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.code)
        self.failure = failure


def outgoing_body(request: WebhookRequest) -> tuple[dict[str, Any], dict[str, str]]:
    """session.post's body argument and the headers for it, read here in the worker thread. Without
    attachments the JSON of before; `text` mode adds the extracted texts; else a multipart form."""
    settings = request.settings
    if not request.attachments:
        return {"json": request.payload}, request.headers
    for attachment in request.attachments:
        check_upload_size(attachment.name, attachment.size, settings.max_upload_bytes)
    if settings.send_files == "text":
        files = [{"name": a.name, "type": a.type, "size": a.size, "text": a.text} for a in request.attachments]
        return {"json": {**request.payload, "files": files}}, request.headers
    read = [(a, attachment_bytes(a, settings.max_upload_bytes)) for a in request.attachments]
    boundary = uuid.uuid4().hex
    content_type = f"multipart/form-data; boundary={boundary}"
    return {"data": multipart_body(request.payload, read, boundary)}, {**request.headers, "Content-Type": content_type}


def check_upload_size(name: str, size: int, limit: int) -> None:
    if size > limit:
        raise AttachmentRefused(Failure("attachment_too_large", file_name=name, size=size, limit=limit))


def attachment_bytes(attachment: Attachment, limit: int) -> bytes:
    """The file's bytes, from its `data:` URL or Open WebUI's storage (which fetches a bucket's file)."""
    try:
        if attachment.data_url:
            data = base64.b64decode(attachment.data_url.partition(",")[2], validate=False)
        else:
            with open(storage_path(attachment.path), "rb") as file:
                data = file.read(limit + 1)
    except (OSError, ValueError) as exc:
        unreadable = Failure("attachment_unreadable", file_name=attachment.name, error_type=type(exc).__name__)
        raise AttachmentRefused(unreadable) from exc
    check_upload_size(attachment.name, len(data), limit)
    return data


def handshake_stalled(exc: BaseException) -> bool:
    """A TLS handshake that timed out: urllib3 calls it a read timeout, but it runs on connect_timeout and
    the request never left."""
    return is_timeout(exc) and "handshake" in " ".join(str(e) for e in causes(exc)).lower()


def request_failure(exc: requests.RequestException, request: WebhookRequest) -> Failure:
    """Why no answer came, as facts. A read timeout here means n8n has the request and is still making
    the reply: the pipe lets go of it (`let_go`)."""
    let_go = is_timeout(exc) and not isinstance(exc, requests.ConnectTimeout) and not handshake_stalled(exc)
    return replace(connection_failure(exc, request), let_go=let_go)


def connection_failure(exc: BaseException, request: WebhookRequest) -> Failure:
    settings = request.settings
    if isinstance(exc, requests.exceptions.ProxyError):
        return Failure("proxy_failed", host=proxy_host(request.url), cause=broken_connection(exc))
    if isinstance(exc, requests.exceptions.InvalidURL | requests.exceptions.URLRequired | ValueError):
        return Failure("invalid_url")
    host = host_and_port(request.url)  # after the check above: an invalid URL (port 99999) has no host:port
    chain = causes(exc)
    if any(isinstance(e, socket.gaierror) for e in chain) or "Name or service not known" in str(exc):
        return Failure("host_not_found", host=host)
    said = " ".join(str(e) for e in chain).lower()
    if "wrong_version_number" in said or "wrong version number" in said:
        return Failure("plain_http", host=host)
    if handshake_stalled(exc):
        return Failure("tls_handshake_stalled", host=host, timeout=settings.connect_timeout)
    if isinstance(exc, requests.exceptions.SSLError):
        if "certificate" in said or "hostname" in said:
            return Failure("tls_certificate", host=host)
        return Failure("tls_error", host=host, message=str(chain[-1]))
    if isinstance(exc, requests.ConnectTimeout):
        return Failure("connect_timeout", host=host, timeout=settings.connect_timeout)
    if is_timeout(exc):
        return Failure("read_timeout", timeout=settings.read_timeout, may_have_reached_n8n=True)
    if any(isinstance(e, ConnectionRefusedError) for e in chain) or "refused" in str(exc).lower():
        return Failure("connection_refused", host=host)
    broken = broken_connection(exc)
    return Failure(broken, host=host, cause=broken, may_have_reached_n8n=True)


def read_failure(exc: BaseException, read_timeout: float) -> Failure:
    """The connection broke, or went silent, while the reply was read: n8n had the request."""
    if is_timeout(exc):
        return Failure("read_timeout", timeout=read_timeout, may_have_reached_n8n=True, broke_off=True, let_go=True)
    broken = broken_connection(exc)
    return Failure(broken, cause=broken, may_have_reached_n8n=True, broke_off=True)


def proxy_host(url: str) -> str:
    """The proxy HTTP_PROXY/HTTPS_PROXY name for this URL, as host:port; "" when none is named."""
    proxies = requests.utils.get_environ_proxies(url)
    proxy = proxies.get(urlsplit(url).scheme) or proxies.get("all") or ""
    return host_and_port(proxy) if proxy else ""


def answer_failure(response: requests.Response, url: str, signed: bool = False) -> Failure | None:
    """What in n8n's answer makes it no reply to decode, as facts; None for a reply to decode. `signed`: the
    request carried the turn's JWT."""
    if response.status_code >= 400:
        return replace(http_failure(response, url), jwt=signed)
    if response.is_redirect:
        location = urljoin(url, response.headers.get("Location", ""))
        return Failure("redirect", status=response.status_code, location=location)
    return odd_reply_failure(response)


def http_failure(response: requests.Response, url: str) -> Failure:
    """n8n's (or a proxy's) error reply: its status and n8n's own words."""
    body = read_bounded(response)
    status = response.status_code
    if status >= 500 and from_proxy(response, body):
        took = response.elapsed.total_seconds()
        return Failure("gateway", status=status, took=took, page_title=page_title(body), may_have_reached_n8n=True)
    if is_html(response, body):
        return Failure("html_page", status=status, page_title=page_title(body))
    message, hint = n8n_message(body)
    if status in (401, 403):
        return Failure("auth_rejected", status=status, message=message)
    if status == 404:
        test_url = "/webhook-test/" in url_path(url)
        return Failure("webhook_not_found", status=status, message=message, hint=hint, test_url=test_url)
    return Failure("http_error", status=status, message=message, may_have_reached_n8n=status >= 500)


# A `Server:` header naming one of these: the error page is the proxy's, not n8n's (n8n sends no Server header).
# fmt: off
PROXY_SERVERS = (
    "nginx", "cloudflare", "apache", "caddy", "traefik", "envoy", "haproxy", "varnish", "openresty", "awselb",
    "litespeed", "microsoft-iis", "squid", "akamai",
)
# fmt: on
# n8n never answers these itself: they come from a gateway between the pipe and n8n.
GATEWAY_STATUSES = (502, 504, 520, 521, 522, 523, 524)


def from_proxy(response: requests.Response, body: str) -> bool:
    """A proxy's error page rather than n8n's own JSON error."""
    server = response.headers.get("Server", "").lower()
    return (
        response.status_code in GATEWAY_STATUSES
        or any(name in server for name in PROXY_SERVERS)
        or is_html(response, body)
    )


def is_html(response: requests.Response, body: str | None = None) -> bool:
    """An HTML page: said so by its Content-Type, or, without one, by how the body starts."""
    content_type = response.headers.get("Content-Type", "").lower()
    if "text/html" in content_type or "application/xhtml" in content_type:
        return True
    start = (body or "").lstrip()[:15].lower()
    return not content_type and start.startswith(("<!doctype html", "<html"))


def page_title(body: str) -> str:
    """The page's <title>, else an Express error page's one line ("Cannot POST /workflow/abc")."""
    found = re.search(r"<title[^>]*>(.*?)</title>", body, re.IGNORECASE | re.DOTALL)
    title = " ".join(html.unescape(found.group(1)).split()) if found else ""
    if title in ("", "Error"):
        pre = re.search(r"<pre[^>]*>(.*?)</pre>", body, re.IGNORECASE | re.DOTALL)
        title = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", pre.group(1))).split()) if pre else title
    return shorten(title, 80)


def odd_reply_failure(response: requests.Response) -> Failure | None:
    """A reply below 400 that holds no answer to decode: an HTML page, 204/304, an informational status, or
    a body in a compression the pipe cannot undo. None for a reply to decode."""
    status = response.status_code
    if status < 200:
        return Failure("informational_only", status=status)
    if status == 204:
        return Failure("no_content", status=status, may_have_reached_n8n=True)
    if status == 304:
        return Failure("not_modified", status=status)
    if is_html(response):
        return Failure("html_page", status=status, page_title=page_title(read_bounded(response)))
    unknown = [e for e in content_encodings(response) if e not in ("identity", *DECODABLE_ENCODINGS)]
    if unknown:
        return Failure("unknown_encoding", status=status, encodings=", ".join(unknown), may_have_reached_n8n=True)
    return None


DECODABLE_ENCODINGS = tuple(urllib3.response.HTTPResponse.CONTENT_DECODERS)


def content_encodings(response: requests.Response) -> list[str]:
    return [e.strip().lower() for e in response.headers.get("Content-Encoding", "").split(",") if e.strip()]


class Handover:
    """Events from the worker thread to the event loop. The worker adds every read's events at once; the
    loop is woken only when it has no wake pending, so a fast stream costs one wake per drain, not one
    per token (bench/README.md), and no event ever waits for a later read. Too much text waiting pauses
    the worker, so a stalled chat cannot grow memory."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._ready = asyncio.Event()
        self._lock = threading.Condition(threading.Lock())
        self._events: list[Event] = []
        self._queued_chars = 0
        self._wake_pending = False
        self._finished = False
        self._abandoned = False

    def put(self, events: list[Event]) -> None:
        """Worker side. Raises Stopped when the chat has gone."""
        if not events:
            return
        size = sum(e.shown_chars for e in events)
        with self._lock:
            while self._queued_chars > QUEUED_CHARS and not self._abandoned:
                self._lock.wait()
            if self._abandoned:
                raise Stopped
            self._events += events
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

    async def drain(self) -> tuple[list[Event], bool]:
        """Loop side: everything handed over so far, and whether that is all."""
        await self._ready.wait()
        self._ready.clear()
        with self._lock:
            events, self._events, self._queued_chars = self._events, [], 0
            self._wake_pending = False
            self._lock.notify_all()
            return events, self._finished

    def abandon(self) -> None:
        """Loop side, on Stop: a worker waiting for room leaves at once."""
        with self._lock:
            self._abandoned = True
            self._lock.notify_all()

    def _wake(self) -> None:
        """Outside the lock: the loop's drain must not wait for the worker's call into the loop."""
        with suppress(RuntimeError):  # the event loop is gone: nobody is waiting any more
            self._loop.call_soon_threadsafe(self._ready.set)


async def reply_batches(exchange: Exchange) -> AsyncGenerator[list[Event], None]:
    """The reply's events in batches. The request and the response's head in a worker thread (they block,
    once per reply); the body read on the event loop, one wake per read; following n8n after a broken
    reply in a thread again. Stop hangs up on every path."""
    exchange.loop_reads = not isinstance(asyncio.get_running_loop(), getattr(asyncio, "ProactorEventLoop", ()))
    try:
        async with aclosing(batches_from_worker(exchange.run)) as batches:
            async for batch in batches:
                yield batch
        async with aclosing(exchange.read_on_loop()) as batches:
            async for batch in batches:
                yield batch
        if exchange.must_follow:
            async with aclosing(batches_from_worker(exchange.follow_up)) as batches:
                async for batch in batches:
                    yield batch
    finally:
        exchange.stop()


async def batches_from_worker(run: Callable[[EventSink], None]) -> AsyncGenerator[list[Event], None]:
    """Runs `run` in its own thread and hands its events to the event loop as they come, all that
    arrived since the last look in one batch.
    A thread per call (not the shared executor): a slow workflow must not queue other chats."""
    loop = asyncio.get_running_loop()
    handover = Handover(loop)

    def work() -> None:
        try:
            run(handover.put)
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
            events, finished = await handover.drain()
            if events:
                yield events
    finally:
        handover.abandon()


# ---------------------------------------------------------------------------
# Presentation: events of the reply -> what the chat shows. ChatTurn.handle is the one place each event
# kind is read; the sentences come from Words.


class Emitter:
    """Open WebUI's event emitter for one turn: status lines and citations. Silent without an emitter
    and for what the turn leaves out (statuses when `emit_status` is off, both for background tasks);
    a failing UI channel never breaks the stream."""

    def __init__(
        self, emit: Callable[[dict[str, Any]], Any] | None, statuses: bool = True, sources: bool = True
    ) -> None:
        self._emit = emit
        self._statuses = statuses and emit is not None
        self._sources = sources and emit is not None

    async def status(self, description: str, done: bool = False) -> None:
        if self._statuses:
            await self._send({"type": "status", "data": {"description": description, "done": done}})

    async def source(self, source: Source) -> None:
        if self._sources:
            await self._send({"type": "source", "data": source_data(source)})

    async def _send(self, event: dict[str, Any]) -> None:
        try:
            await cast(Callable[[dict[str, Any]], Awaitable[Any]], self._emit)(event)
        except Exception as exc:  # the chat must go on even when the UI channel fails
            log.warning("%s event failed: %s", event["type"], type(exc).__name__)


def source_data(source: Source) -> dict[str, Any]:
    """A source as Open WebUI's `source` event data: a citation under the answer."""
    return {
        "source": {"name": source.title, "url": source.url} if source.url else {"name": source.title},
        "document": [source.content],
        "metadata": [{"source": source.url or source.title, "name": source.title}],
    }


class ChatTurn:
    """One chat turn on Open WebUI's event loop. It owns the turn's emitter, renderer, tool-step wait and
    Outcome; the outcome is written here only, on the loop, from the events the worker handed over."""

    def __init__(
        self,
        exchange: Exchange,
        emitter: Emitter,
        secrets: list[str],
        outcome: Outcome | None = None,
        user_id: str = "",
    ) -> None:
        settings = exchange.request.settings
        self.exchange = exchange
        self.emitter = emitter
        self.secrets = secrets
        self.outcome = outcome if outcome is not None else Outcome()
        self.renderer = ChatRenderer(settings.show_thinking, settings.show_tool_steps)
        self.tool_wait = ToolWait(emitter)
        api = exchange.request.execution_api
        watch = ExecutionWatch(api, exchange.execution, self._reported) if api is not None else None
        self.work = AgentWork(watch, settings.show_tool_steps, settings.show_usage)
        self._usage: Usage | None = None  # the reply's own, or its execution's: sent once, at the end
        self._text_after_tool = False  # a block began after a tool ran: a step read now waits for the end
        self._later: list[ToolStep] = []  # steps read once the next block's text was out: after the answer
        self._let_go = False  # a failure let go of a reply n8n was still making: stop its execution
        self._status_due = ""  # a status due once the text before it is out (a node began, following n8n)
        self._sources: list[Source] = []  # citations to send
        self._files: list[File] = []  # files to store and show
        self.user_id = user_id

    def handle(self, event: Event) -> str:
        """What one event means for the chat: the text it adds (often none) and what it tells the
        outcome. The one dispatch on event kinds: mypy's assert_never names a kind left out."""
        match event:
            case Text(text=text):
                return self._counted(self.renderer.text(text)) if text else ""
            case Thinking(text=text):
                return self._counted(self.renderer.thinking(text)) if text and self.renderer.show_thinking else ""
            case NodeStarted(node=node):
                if self.tool_wait.began(node):
                    self.outcome.tool_rounds += 1
                    self._text_after_tool = True
                self.renderer.new_block(after_text=self.outcome.chunks > 0)
                self._status_due = f"{node} is answering"
                return ""
            case BlockEnded(node=node):
                self.tool_wait.ended(node)
                self._text_after_tool = False
                return ""
            case ToolStep():
                self.outcome.tool_steps += 1
                if self._text_after_tool:
                    self._later.append(event)
                    return ""
                return self.renderer.tool_step(event, after_text=self.outcome.chunks > 0)
            case ToolStarted(tool=tool, input=tool_input):
                self.tool_wait.said_by_n8n()
                self._status_due = tool_started_words(tool, tool_input)
                return ""
            case Usage():
                self._usage = self._usage or event
                return ""
            case Source():
                self._sources.append(event)
                return ""
            case Failure():
                return self.failed(event)
            case Responded(status=status):
                self.outcome.status_code = status
                return ""
            case ReplyEnded():
                self.outcome.format, self.outcome.streamed, self.outcome.empty = (
                    event.format,
                    event.streamed,
                    event.empty,
                )
                return ""
            case Following():
                self._status_due = following_words(event)
                return ""
            case Recovered(execution_id=execution_id):
                self.outcome.recovered_from = execution_id
                return ""
            case File():
                self._files.append(event)
                return ""
            case FileLink(name=name, url=url):
                image = (mimetypes.guess_type(name)[0] or "") in IMAGE_TYPES
                return self._counted(self.renderer.text(f"{self._paragraph()}{'!' if image else ''}[{name}]({url})"))
            case ExecutionId() | End():
                return ""
            case _:
                assert_never(event)

    def failed(self, failure: Failure) -> str:
        """A failure said once, redacted once: in the chat, as the final status, and in the log."""
        said = redact(failure_words(failure), self.secrets)
        self.outcome.failure = self.outcome.failure or said
        self._let_go = self._let_go or failure.let_go
        url = self.exchange.request.url
        log.warning("n8n at %s: %s", host_and_port(url), redact(said, url_secrets(url)))
        return self.renderer.notice(said, failure.broke_off, self.outcome.chunks)

    async def chunks(self) -> AsyncGenerator[str | dict[str, Any], None]:
        """What the chat shows, chunk by chunk, with status and source events on the side: one chat chunk
        per batch, as a fast stream must not cost a chunk per token. Last, the turn's usage, once."""
        # Said while the request goes out: in a busy Open WebUI a status takes long to save, and n8n need not wait.
        waiting = asyncio.ensure_future(self.emitter.status("Waiting for n8n…"))
        try:
            async with aclosing(with_agent_work(reply_batches(self.exchange), self.work)) as batches:
                async for batch in batches:
                    await waiting  # before anything else is shown or said
                    async for chunk in self._shown(batch):
                        yield chunk
            went_well = not (self.outcome.failure or self.outcome.recovered_from or self._let_go)
            work = await self.work.finish(went_well, usage_known=self._usage is not None)
            self._text_after_tool = False
            async for chunk in self._shown([*work, *self._later]):
                yield chunk
        except (GeneratorExit, asyncio.CancelledError):
            self.tool_wait.cancel()
            self.work.stop()
            await waiting
            await self.stop_execution("Stopped")  # else the last status spins on after Stop
            raise
        await waiting
        for chunk in open_webui_safe(self.renderer.close_thinking()):
            yield chunk
        await self.tool_wait.close()
        if self._usage is not None and self.exchange.request.settings.show_usage:
            yield {"usage": self._usage.for_open_webui}
        if self._let_go:
            await self.stop_execution(self.outcome.failure)
        else:
            await self.emitter.status(self.outcome.failure or done_words(self.outcome, time.monotonic()), done=True)

    async def _shown(self, batch: list[Event]) -> AsyncGenerator[str, None]:
        """One batch's chunks, its statuses, citations and files in their place among them."""
        self.tool_wait.cancel()
        pending: list[str] = []
        for event in batch:
            rendered = self.handle(event)
            if self._status_due:
                for chunk in chunks_of(pending):
                    yield chunk
                status, self._status_due = self._status_due, ""
                await self.emitter.status(status)
            if self._sources:
                sources, self._sources = self._sources, []
                for source in sources:
                    await self.emitter.source(source)
            if self._files:
                files, self._files = self._files, []
                pending += [await self.file_shown(file) for file in files]
            if THINK_END in rendered and pending:
                # Open WebUI 0.6.0 looks for a reasoning block's end tag only in a chunk after the one
                # that opened it: sent with its <think>, the answer would stay inside "Thinking…".
                for chunk in chunks_of(pending):
                    yield chunk
            pending.append(rendered)
        for chunk in chunks_of(pending):
            yield chunk
        self.tool_wait.after_batch(self.outcome.steps_seen + 1)

    def _reported(self, events: list[Event], answered: int) -> None:
        """The watch's thread: its news go to the event loop."""
        self.work.reported(events, answered)

    async def stop_execution(self, reason: str) -> None:
        """Says why the reply ended, then stops n8n's execution in a thread whose outcome becomes the final
        status. The thread starts after the first status is shown, so the two never swap places."""
        reason, execution, loop = reason.rstrip("."), self.exchange.execution, asyncio.get_running_loop()
        api = execution.api
        if api is None:
            await self.emitter.status(f"{reason}; {NO_API_KEY}", done=True)
            return
        await self.emitter.status(f"{reason}; {STOPPING}", done=True)

        def stopped(answer: ApiAnswer) -> None:
            said = redact(f"{reason}; {api_words(answer)}", api.secrets)
            log.info("n8n API at %s: %s", host_and_port(api.url), said)
            report_from_thread(loop, self.emitter.status(said, done=True))

        execution.stop_in_thread(stopped)

    async def file_shown(self, file: File) -> str:
        """A file in the message: stored in Open WebUI's own storage (so it is there after a reload and
        in the chat export), an image inline, any other file as a download. Outside Open WebUI an image
        is a data URL of its exact bytes and another file is named with its type and size."""
        extension = mimetypes.guess_extension(file.mime_type) or ".bin"
        name = file.name or f"{self.exchange.request.file_stem}{extension}"
        image = file.mime_type.lower() in IMAGE_TYPES
        url = await save_in_open_webui(file, name, self.user_id) if self.user_id else ""
        if not url and image:
            url = f"data:{file.mime_type};base64,{base64.b64encode(file.data).decode()}"
        self.outcome.files.append(ShownFile(name, file.mime_type, len(file.data), image))
        markdown = f"![{name}]({url})" if image else f"[{name}]({url})" if url else file_words(name, file)
        return self._counted(self.renderer.text(self._paragraph() + markdown))

    def _paragraph(self) -> str:
        """A file after text stands in a paragraph of its own."""
        return "\n\n" if self.outcome.chunks else ""

    def _counted(self, text: str) -> str:
        self.outcome.count_chunk(time.monotonic())
        return text


class ChatRenderer:
    """Chat text from what happened: thinking inside <think> tags, a new n8n block's answer as its own
    paragraph, tool steps as Open WebUI's tool-call blocks, failures as visible notices."""

    def __init__(self, show_thinking: bool, show_tool_steps: bool) -> None:
        self.show_thinking = show_thinking
        self.show_tool_steps = show_tool_steps
        self._thinking = False
        self._new_block = False

    def text(self, text: str) -> str:
        return self.close_thinking() + self.block_break() + text

    def thinking(self, text: str) -> str:
        opening = "" if self._thinking else self.block_break() + "<think>\n"
        self._thinking = True
        return opening + text

    def new_block(self, after_text: bool) -> None:
        """A node began a block: after text already shown, its words start a new paragraph."""
        self._new_block = after_text

    def tool_step(self, step: ToolStep, after_text: bool) -> str:
        """A tool step's block; after text, on a line of its own, as Open WebUI writes its own tool calls: its
        chat renders a `<details>` block only where a line starts."""
        if not self.show_tool_steps:
            return ""
        return self.close_thinking() + ("\n" if after_text else "") + tool_call_block(step)

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
        return THINK_END

    def notice(self, said: str, broke_off: bool, chunks: int) -> str:
        """A failure in the chat: after shown text, a reply that broke off says so in brackets."""
        closing = self.close_thinking()
        if broke_off and chunks:
            return f"{closing}\n\n[stream interrupted after {chunks} chunk{'s' if chunks != 1 else ''}: {said}]"
        separator = "\n\n" if chunks else ""
        return f"{closing}{separator}⚠️ {said}"


def tool_call_block(step: ToolStep) -> str:
    """One tool step in the markup Open WebUI 0.12.4 renders for its own tool calls: a collapsed
    `<details type="tool_calls">` whose attributes hold the name, input and result. Attributes are
    HTML-escaped JSON on one line: the chat's parser reads `name="value"` pairs up to the next quote."""
    attributes = {
        "type": "tool_calls",
        "done": "true",
        "name": step.tool,
        "arguments": tool_json(step.input),
        "result": tool_json(step.output),
    }
    said = " ".join(f'{key}="{html.escape(value)}"' for key, value in attributes.items())
    return f"<details {said}>\n<summary>Tool Executed</summary>\n</details>\n"


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


class ToolWait:
    """n8n streams one block per model call and runs the agent's tools between blocks without saying
    so. While the stream stays open after a block's end, the status says a tool runs; only after
    TOOL_STATUS_DELAY, as the last block's end is followed by the body's end a moment later and every
    reply would claim a tool. The same node starting a new block is one tool step."""

    def __init__(self, emitter: Emitter) -> None:
        self._emitter = emitter
        self._ended: str | None = None  # the node whose block ended, until a block begins
        self._said = False  # the status for this end is out
        self._sleeping: asyncio.Task[None] | None = None
        self._saying: asyncio.Task[Any] | None = None

    def ended(self, node: str) -> None:
        self._ended, self._said = node, False

    def began(self, node: str) -> bool:
        """Whether this block is the node's next after a tool ran (one tool step)."""
        tool_ran = self._ended is not None and node == self._ended
        self._ended = None
        return tool_ran

    def after_batch(self, step: int) -> None:
        """All of a read is shown: a block that ended with nothing after it starts the wait."""
        if self._ended is not None and not self._said and self._sleeping is None:
            self._sleeping = asyncio.ensure_future(self._say(self._ended, step))

    def said_by_n8n(self) -> None:
        """n8n's execution named the running tool: that status stands, the guess is not said."""
        self.cancel()
        self._said = True

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
        await self._emitter.status(f"{node or 'The agent'} is using a tool… (step {step})")


class AgentWork:
    """The agent's work read from n8n's execution (ExecutionWatch), as the chat waits for it: a look while
    the stream is quiet after a block, one read as the next block begins (its text waits WATCH_HOLD at most),
    the last reads after n8n's body (WATCH_AFTER_BODY at most). Nothing without an API key or with both
    valves off; the news come to the event loop, never a wait on it."""

    def __init__(self, watch: ExecutionWatch | None, steps: bool, usage: bool) -> None:
        self.watch = watch
        self.steps = steps
        self.usage = usage
        self.tool_round = False  # a block began after another ended: the agent ran a tool
        self._after_block = False  # a block ended and none began since
        self._loop: asyncio.AbstractEventLoop | None = None
        self._events: list[Event] = []
        self._answered = 0
        self._news = asyncio.Event()

    @property
    def live(self) -> bool:
        """Whether a tool's run may be read while the stream waits: not once n8n was seen saving no progress."""
        return self.watch is not None and self.steps and self.watch.saves_progress is not False

    def reported(self, events: list[Event], answered: int) -> None:
        """The watch's thread: events, and the ask they answer (0: none yet), taken to the loop."""
        if self._loop is not None:
            with suppress(RuntimeError):  # the loop is gone: nobody waits any more
                self._loop.call_soon_threadsafe(self._arrived, events, answered)

    def _arrived(self, events: list[Event], answered: int) -> None:
        self._events += events
        self._answered = max(self._answered, answered)
        self._news.set()

    async def news(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self._news.wait()

    def take(self) -> list[Event]:
        events, self._events = self._events, []
        self._news.clear()
        return events

    def block_begins(self, batch: list[Event]) -> bool:
        """Whether this batch begins a block after a tool ran, and the tool's step may be read before it."""
        if not (self._after_block and any(e.begins_block for e in batch)):
            return False
        self.tool_round = True
        return self.live

    async def caught_up(self) -> None:
        """One read at once, waited for WATCH_HOLD at most: the tool's step before the next block's text."""
        if self.watch is not None:
            await self._until_answered(self.watch.ask("now", self.steps, False), WATCH_HOLD)

    def after(self, batch: list[Event]) -> None:
        """A batch is shown: one that leaves a block ended starts the looks for the tool's run."""
        for event in batch:
            self._after_block = (self._after_block or event.ends_block) and not event.begins_block
        if self._after_block and self.live and self.watch is not None:
            self.watch.ask("look", self.steps, False)

    async def finish(self, went_well: bool, usage_known: bool) -> list[Event]:
        """After n8n's body: the tool steps (after a tool round) and the usage not read yet, within
        WATCH_AFTER_BODY; none after a failed reply (recovery's rules decide) or without a need."""
        watch, steps, usage = self.watch, self.steps and self.tool_round, self.usage and not usage_known
        if watch is not None and went_well and (steps or usage):
            self._loop = asyncio.get_running_loop()
            await self._until_answered(
                watch.ask("final", steps, usage, time.monotonic() + WATCH_AFTER_BODY), WATCH_AFTER_BODY
            )
        self.stop()
        return self.take()

    def stop(self) -> None:
        if self.watch is not None:
            self.watch.stop()

    async def _until_answered(self, number: int, seconds: float) -> None:
        self._loop = asyncio.get_running_loop()
        deadline = self._loop.time() + seconds
        while self._answered < number and (left := deadline - self._loop.time()) > 0:
            with suppress(TimeoutError):
                await asyncio.wait_for(self._news.wait(), left)
            if self._answered < number:
                self._news.clear()


async def with_agent_work(
    batches: AsyncGenerator[list[Event], None], work: AgentWork
) -> AsyncGenerator[list[Event], None]:
    """The reply's batches with the execution's news among them as they come; a block that begins after a
    tool waits for the tool's step (WATCH_HOLD at most)."""
    async with aclosing(batches):
        if work.watch is None:
            async for batch in batches:
                yield batch
            return
        next_batch: asyncio.Future[list[Event]] = asyncio.ensure_future(anext(batches))
        try:
            while True:
                news = asyncio.ensure_future(work.news())
                try:
                    waiting: set[asyncio.Future[Any]] = {next_batch, news}
                    await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    news.cancel()
                if events := work.take():
                    yield events
                if not next_batch.done():
                    continue
                try:
                    batch = next_batch.result()
                except StopAsyncIteration:
                    return
                if work.block_begins(batch):
                    await work.caught_up()
                    if events := work.take():
                        yield events
                yield batch
                work.after(batch)
                next_batch = asyncio.ensure_future(anext(batches))
        finally:
            if not next_batch.done():
                next_batch.cancel()
                with suppress(asyncio.CancelledError, StopAsyncIteration):
                    await next_batch


def unsent_note(turn: Turn) -> str:
    """Said before the answer when `send_files` is off: the workflow answered without the attachments."""
    names = [a.name for a in turn.attachments] + list(turn.image_urls)
    if not names:
        return ""
    return f"📎 Not sent to n8n (the `send_files` valve is off): {', '.join(names)}\n\n"


async def noted_first(
    note: str, chunks: AsyncGenerator[str | dict[str, Any], None]
) -> AsyncGenerator[str | dict[str, Any], None]:
    yield note
    async with aclosing(chunks):
        async for chunk in chunks:
            yield chunk


async def single_chunk(
    text: str, emitter: Emitter | None = None, failure: str = ""
) -> AsyncGenerator[str | dict[str, Any], None]:
    """A finished answer as a one-chunk stream, for chats that asked for a stream."""
    if emitter is not None and failure:
        await emitter.status(failure, done=True)
    for chunk in open_webui_safe(text):
        yield chunk


def completed_reply(shown: list[str | dict[str, Any]], model: str) -> str | dict[str, Any]:
    """A reply that does not stream: its text, or with a usage Open WebUI's `chat.completion` (a returned
    string never carries one)."""
    text = "".join(chunk for chunk in shown if isinstance(chunk, str))
    usage = next((chunk["usage"] for chunk in shown if isinstance(chunk, dict)), None)
    if usage is None:
        return text
    return {
        "id": f"n8n-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": usage,
    }


def chunks_of(shown: list[str]) -> list[str]:
    """What is gathered for one chat chunk, taken out (`shown` is left empty) and made safe to yield."""
    text = "".join(shown)
    shown.clear()
    return open_webui_safe(text)


def open_webui_safe(text: str) -> list[str]:
    """Open WebUI forwards a yielded string that starts with `data:` as a raw SSE line, not as text.
    Splitting off its first character keeps the joined text identical and the chunk plain text."""
    if not text:
        return []
    if text.startswith("data:"):
        return [text[:1], text[1:]]
    return [text]


# ---------------------------------------------------------------------------
# Pipe: the face Open WebUI sees: its Valves, the model list and the `pipe()` entry.


class Pipe:
    """The face Open WebUI sees: valves, the model list and the `pipe()` entry."""

    Valves = Valves

    def __init__(self) -> None:
        self.valves = self.Valves()

    async def pipes(self) -> list[dict[str, str]]:
        """One model per configured workflow and per workflow tagged `workflow_tag` in n8n, so each shows up in
        the chat's model picker. Async: Open WebUI then never waits for n8n's API on its event loop."""
        return await listed_models(Settings.of(self.valves))

    async def pipe(
        self,
        body: dict[str, Any],
        __user__: dict[str, Any] | None = None,
        __event_emitter__: Callable[[dict[str, Any]], Any] | None = None,
        __metadata__: dict[str, Any] | None = None,
        __task__: str | None = None,
        __task_body__: dict[str, Any] | None = None,
        __files__: list[dict[str, Any]] | None = None,
        outcome: Outcome | None = None,
        **kwargs: Any,
    ) -> str | dict[str, Any] | AsyncGenerator[str | dict[str, Any], None]:
        """Answer one chat turn: a text stream when the chat streams (its usage a last `{"usage": ...}`),
        else the whole text (with a usage, as a `chat.completion`). `outcome` is the
        doctor's and the demo's window into how the reply went; Open WebUI never passes it."""
        settings = Settings.of(self.valves)
        turn = Turn.from_open_webui(body, __user__, __metadata__, __task__, kwargs.get("__chat_id__"))
        if not turn.task:
            turn = with_attachments(turn, await stored_attachments(__files__ or []))
        if turn.task and not settings.forward_background_tasks:
            answer = background_task_answer(turn.task, __task_body__ or body)
            return single_chunk(answer) if turn.wants_stream else answer

        emitter = Emitter(__event_emitter__, statuses=settings.emit_status and not turn.task, sources=not turn.task)
        await workflows_of_turn(settings, turn.model)
        url = webhook_url(settings, turn.model)
        problem = valve_problem(settings, turn.model, url)
        if not url and not problem:
            problem = "No n8n webhook is set: fill in the `n8n_url` valve (Admin Panel > Functions > this pipe)."
        if problem:
            return single_chunk(f"⚠️ {problem}", emitter, problem) if turn.wants_stream else f"⚠️ {problem}"

        request = webhook_request(settings, url, turn)
        chat_turn = ChatTurn(Exchange(request), emitter, request.secrets, outcome, str(turn.user.get("id") or ""))
        chunks = chat_turn.chunks()
        if settings.send_files == "off" and (note := unsent_note(turn)):
            chunks = noted_first(note, chunks)
        if turn.wants_stream:
            return chunks
        async with aclosing(chunks):
            return completed_reply([chunk async for chunk in chunks], str(body.get("model") or turn.model))


# ---------------------------------------------------------------------------
# Command line: `demo` streams from an embedded fake n8n, no n8n needed; `check` is the webhook doctor.

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


def as_stream(
    answer: str | dict[str, Any] | AsyncGenerator[str | dict[str, Any], None],
) -> AsyncGenerator[str | dict[str, Any], None]:
    """What pipe() answered, as the chunks a streaming chat gets."""
    if isinstance(answer, str):
        return single_chunk(answer)
    if isinstance(answer, dict):
        return single_chunk(str(value_at(answer, "choices.0.message.content") or ""))
    return answer


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
        async for chunk in as_stream(answer):
            if isinstance(chunk, dict):
                continue
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


def verdict(outcome: Outcome, token: str = "", signed: bool = False) -> tuple[bool, str]:
    """(streamed, the plain verdict with its fix). A failure already printed above is named, not repeated.
    `signed`: the turn carried a token signed with --jwt-secret, whose refusal is said with n8n's words."""
    status = outcome.status_code
    if status in (401, 403):
        return False, f"authentication failed: {outcome.failure}" if signed else token_verdict(token)
    if status == 404:
        return False, "webhook not found: see n8n's words and the fix above"
    if status is None or status >= 400:
        return False, outcome.failure or "no reply"
    if outcome.files:
        shown = outcome.files[0]
        how = "an image" if shown.image else "a file"
        return False, f"binary reply: {shown.mime_type}, {shown.size} bytes -> shown as {how}"
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


def token_verdict(token: str) -> str:
    """No token and a rejected token need different fixes; a pasted `Bearer ` prefix is said, as the pipe
    drops it (it adds its own for Authorization)."""
    if not bare_token(token):
        return (
            "authentication failed: the webhook wants a credential and no token was given: pass it with "
            "--token (the `n8n_bearer_token` valve)"
        )
    pasted = (
        " (the 'Bearer ' you pasted was dropped: the pipe adds it itself)" if bare_token(token) != token.strip() else ""
    )
    return (
        f"authentication failed: n8n rejected the token{pasted}: check --token and --auth-header against the "
        "webhook's Header Auth credential (the `n8n_bearer_token` and `auth_header_name` valves)"
    )


UNUSED_EXECUTION_ID = 2**31 - 1  # the doctor's stop probe: an id no execution has, so nothing is stopped


def doctor_api(webhook_url: str, api_url: str, key: str, extra_headers: str = "") -> ExecutionApi:
    """n8n's API as the doctor's --api-key, --api-url and --header give it (no turn to find)."""
    return ExecutionApi(api_base(api_url, webhook_url), key, "", gateway=tuple(parse_extra_headers(extra_headers)))


def api_check(webhook_url: str, api_url: str, key: str, extra_headers: str = "") -> ApiAnswer:
    """The doctor's word on an API key: listing one execution checks the key and its list scope; stopping
    an id no execution has checks the stop scope and that this n8n can stop executions (2.10 or later)."""
    api = doctor_api(webhook_url, api_url, key, extra_headers)
    with api_session(api) as session:
        try:
            listed = api_call(session, api, "GET", "/executions", limit="1")
            if listed.status_code != 200:
                return api_refusal(listed, api, "execution:list and execution:read")
            probe = api_call(session, api, "POST", f"/executions/{UNUSED_EXECUTION_ID}/stop")
        except requests.RequestException as exc:
            return api_unreachable(exc, api)
    if no_stop_route(probe):
        return ApiAnswer("cannot_stop")
    if probe.status_code == 404:  # "Failed to find execution to stop" (2.41.1), "Not Found" (2.11.2)
        return ApiAnswer("key_works")
    return api_refusal(probe, api, "execution:stop")


def recovery_check(webhook_url: str, api_url: str, key: str, extra_headers: str = "") -> ApiAnswer:
    """The doctor's word on recovery: reading the newest execution with its data is what following a
    broken reply needs (the execution:list and execution:read scopes)."""
    api = doctor_api(webhook_url, api_url, key, extra_headers)
    with api_session(api) as session:
        try:
            listed = api_call(session, api, "GET", "/executions", limit="1", includeData="true")
        except requests.RequestException as exc:
            return api_unreachable(exc, api)
    if listed.status_code != 200:
        return api_refusal(listed, api, "execution:list and execution:read")
    return ApiAnswer("recovers")


def agent_work_check(webhook_url: str, api_url: str, key: str, extra_headers: str = "") -> str:
    """The doctor's word on tool steps and usage: reading executions with their data is what they need; the
    webhook's workflow's `saveExecutionProgress` (when the key may list workflows) says whether live."""
    recovery = recovery_check(webhook_url, api_url, key, extra_headers)
    if recovery.code != "recovers":
        return agent_work_words(None, recovery)
    api = doctor_api(webhook_url, api_url, key, extra_headers)
    with api_session(api) as session:
        try:
            listed = api_call(session, api, "GET", "/workflows", limit="250")
            workflows = listed.json().get("data") if listed.status_code == 200 else None
        except (requests.RequestException, *JSON_ERRORS, AttributeError):
            workflows = None
    workflow = webhook_workflow(workflows if isinstance(workflows, list) else [], webhook_url)
    live = None if workflow is None else value_at(workflow, "settings.saveExecutionProgress") is True
    return agent_work_words(live)


def webhook_workflow(workflows: list[Any], webhook_url: str) -> dict[str, Any] | None:
    """The workflow whose published Webhook (its path) or public Chat Trigger (its webhookId) is the URL's."""
    path = urlsplit(webhook_url).path.strip("/").split("/")
    wanted = "/".join(path[1:])
    for workflow in workflows:
        nodes = value_at(workflow, "activeVersion.nodes") or value_at(workflow, "nodes")
        for node in nodes if isinstance(nodes, list) else []:
            own = text_at(node, "parameters.path") or ""
            chat = f"{text_at(node, 'webhookId') or ''}/chat"
            if wanted and wanted in (own.strip("/"), chat):
                return cast(dict[str, Any], workflow)
    return None


def local_file(path: str) -> dict[str, Any]:
    """A file named on the command line as Open WebUI lists a chat's file in `__files__` (its type guessed
    from its name), so the doctor sends it through pipe() as the chat would."""
    file = Path(path)
    kind = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
    meta = {"name": file.name, "content_type": kind, "size": file.stat().st_size}
    return {"type": "file", "name": file.name, "file": {"path": str(file), "meta": meta}}


def usage_said(usage: dict[str, Any]) -> str:
    return (
        f"{usage.get('prompt_tokens')} prompt + {usage.get('completion_tokens')} completion = "
        f"{usage.get('total_tokens')} tokens, passed on to Open WebUI (the (i) info under the answer)"
    )


def file_verdict(outcome: Outcome, file: dict[str, Any]) -> str:
    """Whether n8n took the test file: any answer below 400 to the multipart request means it did."""
    meta = file["file"]["meta"]
    said = f"{meta['name']} ({meta['content_type']}, {meta['size']} bytes) sent as multipart/form-data"
    if outcome.status_code is None:
        return f"{said}: not sent or no answer ({outcome.failure or 'no reply'})"
    if outcome.status_code >= 400:
        return f"{said}: n8n refused it (HTTP {outcome.status_code})"
    return f"{said}: n8n accepted it (HTTP {outcome.status_code}); the workflow finds it as the binary property data0"


DOCTOR_USER = {"id": "webhook-doctor", "name": "Webhook doctor", "role": "user"}  # who a signed turn says asks


async def run_check(
    url: str,
    token: str,
    auth_header: str,
    prompt: str,
    read_timeout: float,
    file: str | None = None,
    jwt_secret: str = "",
    extra_headers: str = "",
    api_key: str = "",
    api_url: str = "",
) -> int:
    pipe = Pipe()
    pipe.valves.n8n_api_key = api_key  # with a key, the turn's tool steps and usage are read as in a chat
    pipe.valves.n8n_api_url = api_url
    pipe.valves.n8n_url = url
    pipe.valves.n8n_bearer_token = token
    pipe.valves.auth_header_name = auth_header
    pipe.valves.read_timeout = read_timeout
    pipe.valves.jwt_secret = jwt_secret
    pipe.valves.extra_headers = extra_headers
    problem = valve_problem(Settings.of(pipe.valves), "", url)
    if problem:
        print(f"verdict: {problem}")
        return 1
    files = [local_file(file)] if file else []
    body = {"model": "", "stream": True, "messages": [{"role": "user", "content": prompt}]}
    outcome = Outcome()
    metadata = {"chat_id": f"webhook-doctor-{int(time.time())}"}
    answer = await pipe.pipe(body, __user__=DOCTOR_USER, __metadata__=metadata, __files__=files, outcome=outcome)
    usage: dict[str, Any] | None = None
    async for chunk in as_stream(answer):
        if isinstance(chunk, dict):
            usage = chunk.get("usage")
        else:
            print(chunk, end="", flush=True)
    signed = bool(jwt_secret.strip())
    streamed, plain = verdict(outcome, token, signed)
    print("\n")
    print(f"HTTP status: {outcome.status_code or 'none'}")
    print(f"format: {outcome.format or 'none'}")
    if outcome.first_chunk_at is not None and outcome.last_chunk_at is not None:
        print(f"time to first chunk: {outcome.first_chunk_at - outcome.started:.2f} s")
        print(f"chunks: {outcome.chunks}, arriving over {outcome.last_chunk_at - outcome.first_chunk_at:.2f} s")
    if usage:
        print(f"usage: {usage_said(usage)}")
    if files:
        print(f"file: {file_verdict(outcome, files[0])}")
    if signed and outcome.status_code is not None and outcome.status_code < 400:
        print("JWT: n8n accepted the token signed with --jwt-secret; the workflow reads its claims as $json.jwtPayload")
    print(f"verdict: {plain}")
    return 0 if streamed else 1


def workflows_check(webhook_url: str, api_url: str, key: str, tag: str, extra_headers: str = "") -> list[str]:
    """The doctor's word on `workflow_tag`: the workflows the pipe lists as models and their URLs, the tagged
    ones it leaves out and why, or why there are none (the key's scope, the tag, nothing published)."""
    valves = Valves(
        n8n_url=webhook_url, n8n_api_url=api_url, n8n_api_key=key, extra_headers=extra_headers, workflow_tag=tag
    )
    source = workflow_source(Settings.of(valves))
    if not tag.strip():
        return ["workflows: the tag is empty (--tag, the `workflow_tag` valve): no workflow is listed as a model"]
    if source is None:
        return ["workflows: the webhook URL is no http(s) URL, so the workflows' URLs have no base"]
    listing = list_workflows(source, published_only=False)
    if isinstance(listing, ApiAnswer):
        return [f"workflows: {workflows_failed_words(source.tag, listing)}"]
    if not listing.models and not listing.skipped:
        return [
            f"workflows: no workflow has the tag '{source.tag}' in n8n: add it to each workflow to list (the "
            "tags next to the workflow's name in the editor), or pass their tag with --tag (the `workflow_tag` valve)"
        ]
    return [
        f"workflows tagged '{source.tag}': {len(listing.models)} listed as models",
        *(f"  {model.name}: {model.url}" for model in listing.models),
        *(f"  not listed: {name}: {why}" for name, why in listing.skipped),
    ]


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
    check.add_argument("--jwt-secret", default="", help="the jwt_secret valve: sign the turn as the pipe does")
    check.add_argument(
        "--header", action="append", default=[], help="an extra_headers line, 'Name: value' (repeatable)"
    )
    check.add_argument("--prompt", default="Hello! Please answer in a few sentences.")
    check.add_argument("--read-timeout", type=float, default=300, help="the read_timeout valve, in seconds")
    check.add_argument("--api-key", default="", help="the n8n_api_key valve: checked for what Stop needs")
    check.add_argument("--api-url", default="", help="the n8n_api_url valve (default: the webhook's host + /api/v1)")
    tag = Valves.model_fields["workflow_tag"].default
    check.add_argument("--tag", default=tag, help="the workflow_tag valve: with --api-key, the workflows it lists")
    check.add_argument("--file", default=None, help="also send this file, as a chat attachment (multipart)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR, format="%(name)s: %(message)s")  # the terminal shows the failures
    if args.command == "check":
        api_ok = True
        extra_headers = "\n".join(args.header)
        if args.api_key:
            answer = api_check(args.url, args.api_url, args.api_key, extra_headers)
            recovery = recovery_check(args.url, args.api_url, args.api_key, extra_headers)
            secrets = doctor_api(args.url, args.api_url, args.api_key, extra_headers).secrets
            print(f"n8n API: {redact(api_words(answer), secrets)}")
            print(f"recovery: {redact(api_words(recovery), secrets)}")
            for line in workflows_check(args.url, args.api_url, args.api_key, args.tag, extra_headers):
                print(redact(line, secrets))
            work = agent_work_check(args.url, args.api_url, args.api_key, extra_headers)
            print(f"agent's work: {redact(work, secrets)}")
            api_ok = answer.code == "key_works" and recovery.code == "recovers"
        check_run = run_check(
            args.url,
            args.token,
            args.auth_header,
            args.prompt,
            args.read_timeout,
            args.file,
            args.jwt_secret,
            extra_headers,
            args.api_key,
            args.api_url,
        )
        streams = asyncio.run(check_run)
        return streams or (0 if api_ok else 1)
    return asyncio.run(run_demo(args.prompt, args.delay))


if __name__ == "__main__":
    sys.exit(main())
