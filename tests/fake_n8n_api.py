"""A fake n8n public API on 127.0.0.1: lists running executions, answers stop calls, records each call."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from loopback import Gate


@dataclass
class ApiCall:
    method: str
    path: str
    query: dict[str, list[str]]
    key: str | None
    headers: dict[str, str] = field(default_factory=dict)  # every header, names in lower case


@dataclass
class FakeN8nApi:
    """n8n's public API: lists the running executions `running()` returns, answers a stop with
    `stop_status`; `hold` keeps every answer back until the test opens it."""

    running: Callable[[], list[dict[str, Any]]] = list
    stop_status: int = 200
    list_status: int = 200
    stop_body: dict[str, Any] = field(default_factory=lambda: {"id": "1234", "status": "canceled"})
    error_body: dict[str, Any] = field(default_factory=lambda: {"message": "no"})  # any answer that is no 200
    hold: Gate | None = None
    calls: list[ApiCall] = field(default_factory=list)
    stopped: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                self._answer(
                    api.list_status,
                    {"data": api.running(), "nextCursor": None} if api.list_status == 200 else api.error_body,
                )

            def do_POST(self) -> None:
                self._answer(api.stop_status, api.stop_body if api.stop_status == 200 else api.error_body)
                api.stopped.set()

            def _answer(self, status: int, value: Any) -> None:
                parts = urlsplit(self.path)
                headers = {name.lower(): value for name, value in self.headers.items()}
                api.calls.append(
                    ApiCall(self.command, parts.path, parse_qs(parts.query), self.headers["X-N8N-API-KEY"], headers)
                )
                if api.hold is not None:
                    api.hold.wait(30)
                data = json.dumps(value).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/api/v1"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        if self.hold is not None:
            self.hold.open()
        self._server.shutdown()
        self._server.server_close()


def execution(execution_id: str, turn_id: str) -> dict[str, Any]:
    """A running execution as `GET /executions?status=running&includeData=true` lists it (n8n 2.41.1)."""
    body = {"chatInput": "hello", "sessionId": "chat-1", "stream": True, "turnId": turn_id}
    stack = [{"node": {"name": "Webhook"}, "data": {"main": [[{"json": {"headers": {}, "body": body}}]]}}]
    return {"id": execution_id, "status": "running", "data": {"executionData": {"nodeExecutionStack": stack}}}
