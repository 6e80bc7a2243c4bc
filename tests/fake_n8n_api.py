"""A fake n8n public API on 127.0.0.1: lists running executions and tagged workflows, answers stop calls,
records each call."""

from __future__ import annotations

import base64
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
    `stop_status`; lists `workflows` as n8n 2.41.3 does (its `active` and `tags` filters, `limit`, at most
    `page_limit` a page, an offset `cursor`), or answers `workflows_status`; `hold` keeps every answer back
    until the test opens it."""

    running: Callable[[], list[dict[str, Any]]] = list
    stop_status: int = 200
    list_status: int = 200
    stop_body: dict[str, Any] = field(default_factory=lambda: {"id": "1234", "status": "canceled"})
    error_body: dict[str, Any] = field(default_factory=lambda: {"message": "no"})  # any answer that is no 200
    hold: Gate | None = None
    workflows: list[dict[str, Any]] = field(default_factory=list)
    workflows_status: int = 200
    page_limit: int = 250
    ignores_filters: bool = False  # an n8n that lists every workflow whatever the query says
    calls: list[ApiCall] = field(default_factory=list)
    stopped: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                if parts.path.endswith("/workflows"):
                    query = parse_qs(parts.query)
                    ok = api.workflows_status == 200
                    self._answer(api.workflows_status, api.workflows_page(query) if ok else api.error_body)
                    return
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

    def workflows_page(self, query: dict[str, list[str]]) -> dict[str, Any]:
        """One page of `GET /workflows`, its `nextCursor` as n8n writes it (base64 JSON of limit and offset)."""
        chosen = self.workflows if self.ignores_filters else [w for w in self.workflows if listed(w, query)]
        limit = min(int(query.get("limit", ["100"])[0]), self.page_limit)
        offset = json.loads(base64.b64decode(query["cursor"][0]))["offset"] if "cursor" in query else 0
        end = offset + limit
        more = base64.b64encode(json.dumps({"limit": limit, "offset": end}).encode()).decode()
        return {"data": chosen[offset:end], "nextCursor": more if end < len(chosen) else None}

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


def listed(workflow: dict[str, Any], query: dict[str, list[str]]) -> bool:
    """n8n's filters: `active=true` (published), `tags=a,b` (all of them)."""
    wanted = [tag for tag in query.get("tags", [""])[0].split(",") if tag]
    names = {tag["name"] for tag in workflow["tags"]}
    return (query.get("active") != ["true"] or workflow["active"]) and all(tag in names for tag in wanted)


# Workflows as `GET /api/v1/workflows` lists them (n8n 2.41.3, ../shared/n8n-api/workflows-list-by-tag.json):
# the draft in `nodes`, the published version in `activeVersion.nodes`, `activeVersion` null when unpublished.

CREATED = "2026-12-07T22:03:43.702Z"


def webhook_node(path: str, method: str | list[str] | None = "POST", disabled: bool = False) -> dict[str, Any]:
    """A Webhook node (typeVersion 2.1, streaming); `method` None leaves httpMethod out, as n8n stores its default."""
    parameters: dict[str, Any] = {"path": path, "responseMode": "streaming", "options": {}}
    if method is not None:
        parameters["httpMethod"] = method
    if isinstance(method, list):
        parameters["multipleMethods"] = True
    node = {
        "parameters": parameters,
        "id": f"node-{path}",
        "name": "Webhook",
        "type": "n8n-nodes-base.webhook",
        "typeVersion": 2.1,
        "position": [0, 0],
        "webhookId": f"hook-{path}",
    }
    return node | ({"disabled": True} if disabled else {})


def chat_trigger_node(webhook_id: str, public: bool = True) -> dict[str, Any]:
    parameters: dict[str, Any] = {"mode": "webhook", "options": {"responseMode": "streaming"}}
    if public:
        parameters["public"] = True
    return {
        "parameters": parameters,
        "id": f"node-{webhook_id}",
        "name": "When chat message received",
        "type": "@n8n/n8n-nodes-langchain.chatTrigger",
        "typeVersion": 1.4,
        "position": [0, 0],
        "webhookId": webhook_id,
    }


def schedule_node() -> dict[str, Any]:
    return {
        "parameters": {"rule": {"interval": [{}]}},
        "id": "node-schedule",
        "name": "Schedule Trigger",
        "type": "n8n-nodes-base.scheduleTrigger",
        "typeVersion": 1.2,
        "position": [0, 0],
    }


AGENT_NODE = {
    "parameters": {"promptType": "define", "text": "={{ $json.body.chatInput }}", "options": {}},
    "id": "node-agent",
    "name": "AI Agent",
    "type": "@n8n/n8n-nodes-langchain.agent",
    "typeVersion": 3.1,
    "position": [300, 0],
}


def workflow(
    workflow_id: str,
    name: str,
    trigger: dict[str, Any],
    *,
    active: bool = True,
    archived: bool = False,
    tags: tuple[str, ...] = ("open-webui",),
    draft: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A workflow item of the list: `trigger` published (when `active`), `draft` (default: the same) saved."""
    published = [trigger, AGENT_NODE]
    version = {
        "versionId": f"v-{workflow_id}",
        "workflowId": workflow_id,
        "nodes": published,
        "connections": {trigger["name"]: {"main": [[{"node": "AI Agent", "type": "main", "index": 0}]]}},
        "nodeGroups": [],
        "authors": "import",
        "name": None,
        "description": None,
        "autosaved": False,
        "createdAt": CREATED,
        "updatedAt": CREATED,
    }
    return {
        "id": workflow_id,
        "name": name,
        "active": active,
        "activeVersionId": f"v-{workflow_id}" if active else None,
        "createdAt": CREATED,
        "updatedAt": CREATED,
        "isArchived": archived,
        "versionId": f"v-{workflow_id}",
        "triggerCount": 1 if active else 0,
        "nodes": [draft or trigger, AGENT_NODE],
        "connections": version["connections"],
        "settings": {"executionOrder": "v1"},
        "staticData": None,
        "pinData": {},
        "meta": None,
        "tags": [{"id": f"tag-{tag}", "name": tag, "createdAt": CREATED, "updatedAt": CREATED} for tag in tags],
        "shared": [{"role": "workflow:owner", "workflowId": workflow_id, "projectId": "project-1"}],
        "activeVersion": version if active else None,
    }
