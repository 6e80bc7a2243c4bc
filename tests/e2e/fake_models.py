"""Fake model APIs on 127.0.0.1 for the real n8n to call: Ollama `/api/chat` (NDJSON) and
Anthropic `/v1/messages` (SSE). What they answer depends on the prompt the workflow passes on:

- a prompt containing ``BREAK`` streams a few tokens, then the connection dies mid-answer;
- a prompt containing ``FAIL`` gets an HTTP 500 before any token;
- a prompt containing ``HOLD:<name>`` streams all tokens but the last, then waits until the
  test opens ``gates[<name>]``: proof that the chat saw text before the model finished;
- a prompt containing ``LONG`` streams ``LONG_TOKENS`` tokens ``LONG_DELAY`` seconds apart, and notes when n8n
  closed the connection (``closed_at``): what Stop must make n8n do;
- a prompt containing ``THINK`` streams ``THINK_TOKENS``: the reasoning inside ``<think>`` tags, as reasoning
  models (DeepSeek-R1, Qwen3) served through Ollama or OpenAI-compatible APIs put it in the text, then the answer;
- a prompt containing ``SLOW`` streams with ``SLOW_DELAY`` between tokens (to tell a stream from a
  proxy's buffered burst by the clock);
- ``GET /tool/<name>`` is a tool for an HTTP Request Tool node: it answers ``TOOL_RESULT`` once the test
  opens ``gates[<name>]``, so the agent is seen working while the tool runs;
- a prompt containing ``TOOL`` first calls the first tool n8n offers (``TOOL_ARGUMENTS``), then, once
  n8n sends the tool's result back, answers with ``TOKENS`` (Ollama only);
- a prompt containing ``WHOAMI`` streams the system message the workflow gave the model, word by word: what a
  workflow made of who is asking (its ``$json.jwtPayload``), read back from the chat's answer;
- anything else streams ``TOKENS`` one by one, ``token_delay`` seconds apart.

A prompt that is a key of ``scripts`` (empty unless a test fills it in; the browser tests do, with the chats
their screenshots show) gets that ``Script`` instead: prompts a user would write carry no marker, so what the
keywords above do is in the script (its tokens, thinking, pace, gate, tool call).

Every request is recorded (path, JSON body, when each token left), so tests can compare.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOKENS = ["Hello", " from", " the", " fake", " model", ":", " ünïcødé", ' "quotes"', " tab\t", "line\n", "end."]
BREAK_AFTER = 3
MODEL_ERROR = "model exploded"
SLOW_DELAY = 0.25
LONG_TOKENS = [f" t{i}" for i in range(50)]
THINK_TOKENS = ["<think>", "The user", " wants", " a greeting.", "</think>", "Hello", " after", " thinking."]
LONG_DELAY = 0.2
TOOL_ARGUMENTS = {"input": "2+2"}
TOOL_RESULT = {"result": 4}


def words(text: str) -> list[str]:
    """Text as a model streams it: a token per word, with the spaces and newlines before it."""
    return re.findall(r"\s*\S+", text)


@dataclass(frozen=True)
class Script:
    """What the fake model answers to one exact prompt: `answer`, after `thinking` in `<think>` tags if any, a
    token per word, `delay` seconds apart (None: the server's token_delay). With `hold`, the token at `hold_at`
    (-1: the last) waits until the test opens `gates[hold]`. With `tool_input`, the model first asks n8n to run
    the first tool it offers with `{"input": tool_input}` (Ollama only), and answers once the result is back."""

    answer: str
    thinking: str = ""
    delay: float | None = None
    hold: str = ""
    hold_at: int = -1
    tool_input: str = ""

    @property
    def tokens(self) -> list[str]:
        thought = ["<think>", *words(self.thinking), "</think>"] if self.thinking else []
        return thought + words(self.answer)

    @property
    def held_at(self) -> int:
        """The index of the token that waits for the gate."""
        return self.hold_at % len(self.tokens)


@dataclass
class ModelCall:
    """One request n8n made to a fake model."""

    api: str
    body: dict[str, Any]
    prompt: str
    script: Script | None = None
    token_times: list[float] = field(default_factory=list)
    finished_at: float | None = None
    closed_at: float | None = None  # n8n closed the connection before the last token


def prompt_of(api: str, body: dict[str, Any]) -> str:
    """The text of the last user message with text, in either API's shape (n8n sends images passed through
    from binaries as a user message of their own, after the prompt)."""
    for message in reversed(body.get("messages") or []):
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, list):
            text = " ".join(p.get("text", "") for p in content if isinstance(p, dict)).strip()
        else:
            text = str(content or "")
        if text:
            return text
    return ""


class FakeModels:
    """Both fake APIs on one port; point the Ollama and Anthropic credentials at `url`."""

    def __init__(self, token_delay: float = 0.05) -> None:
        self.token_delay = token_delay
        self.scripts: dict[str, Script] = {}  # exact prompt -> what to answer
        self.calls: list[ModelCall] = []
        self.gates: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                with contextlib.suppress(OSError):  # n8n hung up (noted in the call's closed_at)
                    if self.path.startswith("/api/chat"):
                        fake._ollama(self, body)
                    elif self.path.startswith("/v1/messages"):
                        fake._anthropic(self, body)
                    else:
                        self._plain(404, {"error": f"no route {self.path}"})

            def do_GET(self) -> None:  # Ollama's model list (for the editor), or the gated tool
                if self.path.startswith("/tool/"):  # a tool that answers once the test opens its gate
                    fake.gate(self.path.removeprefix("/tool/")).wait(30)
                    self._plain(200, TOOL_RESULT)
                    return
                self._plain(200, {"models": [{"name": "fake:latest", "model": "fake:latest"}]})

            def _plain(self, status: int, value: Any) -> None:
                data = json.dumps(value).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-models", daemon=True)
        self._thread.start()

    def close(self) -> None:
        for gate in self.gates.values():
            gate.set()
        self._server.shutdown()
        self._server.server_close()

    def gate(self, name: str) -> threading.Event:
        with self._lock:
            return self.gates.setdefault(name, threading.Event())

    def calls_for(self, marker: str) -> list[ModelCall]:
        return [c for c in self.calls if marker in c.prompt]

    # -- one answer, whatever the API ------------------------------------------------------------

    def _record(self, api: str, body: dict[str, Any]) -> ModelCall:
        prompt = prompt_of(api, body)
        call = ModelCall(api, body, prompt, self.scripts.get(prompt))
        with self._lock:
            self.calls.append(call)
        return call

    def _tokens(self, call: ModelCall) -> tuple[list[str], str]:
        """The tokens to send and how the answer ends: "done", "break", "fail"."""
        if call.script:
            return call.script.tokens, "done"
        if "FAIL" in call.prompt:
            return [], "fail"
        if "BREAK" in call.prompt:
            return TOKENS[:BREAK_AFTER], "break"
        if "LONG" in call.prompt:
            return list(LONG_TOKENS), "done"
        if "THINK" in call.prompt:
            return list(THINK_TOKENS), "done"
        if "WHOAMI" in call.prompt:
            return re.findall(r"\S+\s*", system_of(call.body)), "done"
        return list(TOKENS), "done"

    def _play(self, call: ModelCall, send_token: Any) -> None:
        tokens, _ = self._tokens(call)
        gate, held_at = self._hold(call, tokens)
        for i, token in enumerate(tokens):
            if gate and i == held_at:
                self.gate(gate).wait(30)
            elif i:
                time.sleep(self._delay(call))
            try:
                send_token(token)
            except OSError:  # n8n hung up: no further token is asked for
                call.closed_at = time.monotonic()
                raise
            call.token_times.append(time.monotonic())

    def _hold(self, call: ModelCall, tokens: list[str]) -> tuple[str, int]:
        """The gate the answer waits at, and before which token ("" when none)."""
        if call.script:
            return call.script.hold, call.script.held_at if call.script.hold else -1
        hold = re.search(r"HOLD:(\w+)", call.prompt)
        return (hold.group(1), len(tokens) - 1) if hold else ("", -1)

    def _delay(self, call: ModelCall) -> float:
        if call.script and call.script.delay is not None:
            return call.script.delay
        return LONG_DELAY if "LONG" in call.prompt else SLOW_DELAY if "SLOW" in call.prompt else self.token_delay

    # -- Ollama: POST /api/chat, NDJSON when "stream" is true (its default) ------------------------

    def _ollama(self, handler: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        call = self._record("ollama", body)
        tokens, ending = self._tokens(call)
        model = body.get("model", "fake:latest")
        if ending == "fail":
            handler._plain(500, {"error": MODEL_ERROR})  # type: ignore[attr-defined]
            return
        tool = wanted_tool(call, body)
        if tool:
            self._ollama_tool_call(handler, call, model, tool)
            return

        def line(content: str, done: bool) -> dict[str, Any]:
            value: dict[str, Any] = {
                "model": model,
                "created_at": "2026-11-25T00:00:00.000000Z",
                "message": {"role": "assistant", "content": content},
                "done": done,
            }
            if done:
                value |= {"done_reason": "stop", "total_duration": 1, "eval_count": len(tokens), "eval_duration": 1}
                value |= {"prompt_eval_count": 1, "prompt_eval_duration": 1, "load_duration": 1}
            return value

        if body.get("stream") is False:
            self._play(call, lambda token: None)
            handler._plain(200, line("".join(tokens), True))  # type: ignore[attr-defined]
            call.finished_at = time.monotonic()
            return
        writer = ChunkedWriter(handler, "application/x-ndjson")
        self._play(call, lambda token: writer.write(json.dumps(line(token, False)).encode() + b"\n"))
        if ending == "break":
            writer.die()
        else:
            writer.write(json.dumps(line("", True)).encode() + b"\n")
            writer.finish()
        call.finished_at = time.monotonic()

    def _ollama_tool_call(self, handler: BaseHTTPRequestHandler, call: ModelCall, model: str, tool: str) -> None:
        """The model asks n8n to run `tool`: one message with `tool_calls`, then the done line."""
        message = {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"function": {"name": tool, "arguments": tool_arguments(call)}}],
        }
        head = {"model": model, "created_at": "2026-11-25T00:00:00.000000Z"}
        done = {**head, "message": {"role": "assistant", "content": ""}, "done": True, "done_reason": "stop"}
        if body_streams(call.body):
            writer = ChunkedWriter(handler, "application/x-ndjson")
            writer.write(json.dumps({**head, "message": message, "done": False}).encode() + b"\n")
            writer.write(json.dumps(done).encode() + b"\n")
            writer.finish()
        else:
            handler._plain(200, {**done, "message": message})  # type: ignore[attr-defined]
        call.finished_at = time.monotonic()

    # -- Anthropic: POST /v1/messages, SSE events when "stream" is true ----------------------------

    def _anthropic(self, handler: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        call = self._record("anthropic", body)
        tokens, ending = self._tokens(call)
        model = body.get("model", "claude-sonnet-4-5")
        if ending == "fail":
            handler._plain(500, {"type": "error", "error": {"type": "api_error", "message": MODEL_ERROR}})  # type: ignore[attr-defined]
            return
        message = {
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "model": model,
            "stop_sequence": None,
            "usage": {"input_tokens": 5, "output_tokens": len(tokens)},
        }
        if not body.get("stream"):
            self._play(call, lambda token: None)
            whole = {**message, "content": [{"type": "text", "text": "".join(tokens)}], "stop_reason": "end_turn"}
            handler._plain(200, whole)  # type: ignore[attr-defined]
            call.finished_at = time.monotonic()
            return
        writer = ChunkedWriter(handler, "text/event-stream; charset=utf-8")

        def event(name: str, data: dict[str, Any]) -> None:
            writer.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())

        start = {**message, "content": [], "stop_reason": None, "usage": {"input_tokens": 5, "output_tokens": 1}}
        event("message_start", {"type": "message_start", "message": start})
        event(
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        )

        def delta(token: str) -> None:
            event(
                "content_block_delta",
                {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": token}},
            )

        self._play(call, delta)
        if ending == "break":  # Anthropic's own mid-stream failure: an error event, then the end
            event("error", {"type": "error", "error": {"type": "overloaded_error", "message": MODEL_ERROR}})
            writer.finish()
        else:
            event("content_block_stop", {"type": "content_block_stop", "index": 0})
            usage = {"output_tokens": len(tokens)}
            event(
                "message_delta",
                {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None}, "usage": usage},
            )
            event("message_stop", {"type": "message_stop"})
            writer.finish()
        call.finished_at = time.monotonic()


def system_of(body: dict[str, Any]) -> str:
    """The system message, in either API's shape (Ollama: a `system` message; Anthropic: `system`)."""
    system = body.get("system")
    if isinstance(system, list):
        return " ".join(part.get("text", "") for part in system if isinstance(part, dict))
    if isinstance(system, str):
        return system
    return " ".join(str(m.get("content") or "") for m in body.get("messages") or [] if m.get("role") == "system")


def wanted_tool(call: ModelCall, body: dict[str, Any]) -> str:
    """The tool a TOOL prompt (or a script with a tool_input) calls: the first one offered, until a tool's result
    is in the messages."""
    calls_tool = bool(call.script.tool_input) if call.script else "TOOL" in call.prompt
    if not calls_tool or any(m.get("role") == "tool" for m in body.get("messages") or []):
        return ""
    names = [t.get("function", {}).get("name") for t in body.get("tools") or [] if isinstance(t, dict)]
    return next((name for name in names if isinstance(name, str) and name), "")


def tool_arguments(call: ModelCall) -> dict[str, Any]:
    return {"input": call.script.tool_input} if call.script else TOOL_ARGUMENTS


def body_streams(body: dict[str, Any]) -> bool:
    """Ollama streams unless told `"stream": false`."""
    return body.get("stream") is not False


class ChunkedWriter:
    """A chunked HTTP/1.1 body written piece by piece, each piece flushed at once."""

    def __init__(self, handler: BaseHTTPRequestHandler, content_type: str) -> None:
        self.handler = handler
        handler.send_response(200)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Transfer-Encoding", "chunked")
        handler.send_header("Cache-Control", "no-cache")
        handler.end_headers()
        handler.wfile.flush()

    def write(self, data: bytes) -> None:
        self.handler.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.handler.wfile.flush()

    def finish(self) -> None:
        self.handler.wfile.write(b"0\r\n\r\n")
        self.handler.wfile.flush()

    def die(self) -> None:
        """Reset the connection in the middle of the body, as a crashed model server would."""
        self.handler.close_connection = True
        sock = self.handler.connection
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()
