"""A fake n8n running an AI Agent with one slow tool, replaying over time what a real n8n 2.41.3 recorded
(tests/data/n8n-api/execution-slowtool-*.json): the webhook streams the model's first block, goes quiet while
the tool runs, then streams the answer's block; the API answers each read with the record n8n had saved at
that moment, with *Save execution progress* (`progress`) or with n8n's defaults. Each chat turn is its own
execution (ids from 5 up), found by the turn id in its webhook body; every call is recorded with its time."""

from __future__ import annotations

import copy
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fake_n8n import JSON, record
from fake_n8n_api import ApiCall
from loopback import CAPTURE_HEADERS, Gate, LoopbackServer, Reply, Seen, n8n_line

FIRST_BLOCK = "Let me calculate."
ANSWER = 'Hello from the fake model! Line2\ntab\tquote" ünïcødé END'
SAVED_AFTER_BODY = 0.13  # n8n saves the ended execution this long after the stream's end (measured 0.12-0.15 s)
TOOL_SAVED_BEFORE_BLOCK = 0.03  # the tool's full run is saved this long before the next block begins
PROGRESS = [f"execution-slowtool-progress-{n}" for n in ("1-started", "2-tool-running", "3-tool-done", "4-success")]
DEFAULT = ["execution-slowtool-default-running", "execution-slowtool-default-success"]


@dataclass
class Run:
    """One turn's execution: its id, what the chat asked, and when each phase began (monotonic)."""

    execution_id: str
    turn_id: str
    question: str
    started: float
    tool_at: float | None = None
    tool_done_at: float | None = None
    body_end_at: float | None = None

    def ended(self, now: float) -> bool:
        return self.body_end_at is not None and now >= self.body_end_at + SAVED_AFTER_BODY


@dataclass
class ApiTimedCall(ApiCall):
    at: float = 0.0


@dataclass
class AgentN8n:
    progress: bool
    tool_seconds: float = 0.5
    api_delay: float = 0.0
    api_silent: bool = False
    workflow_id: str = "wfSlowTool000001"
    runs: dict[str, Run] = field(default_factory=dict)
    api_calls: list[ApiTimedCall] = field(default_factory=list)
    stopped: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self.server = LoopbackServer(self._answer)
        self.url = f"http://127.0.0.1:{self.server.port}/webhook/x-slowtool"
        self._silence = Gate()

    def __enter__(self) -> AgentN8n:
        return self

    def __exit__(self, *exc: object) -> None:
        self._silence.open()
        self.server.close()

    @property
    def webhook_requests(self) -> list[Seen]:
        return [seen for seen in self.server.requests if seen.path.startswith("/webhook/")]

    def reads(self, run: Run) -> int:
        return sum(1 for call in self.api_calls if call.path == f"/api/v1/executions/{run.execution_id}")

    def _answer(self, seen: Seen) -> Reply:
        if seen.path.startswith("/webhook/"):
            return self._webhook(seen)
        parts = urlsplit(seen.path)
        query = parse_qs(parts.query)
        self.api_calls.append(
            ApiTimedCall(seen.method, parts.path, query, seen.headers.get("x-n8n-api-key"), at=time.monotonic())
        )
        if self.api_silent:
            return Reply(head_gate=self._silence)
        time.sleep(self.api_delay)
        now = time.monotonic()
        if seen.method == "POST" and parts.path.endswith("/stop"):
            self.stopped.set()
            return self._json({"status": "canceled"})
        if parts.path == "/api/v1/executions":
            return self._json({"data": self._listed(query, now), "nextCursor": None})
        for run in list(self.runs.values()):
            if parts.path == f"/api/v1/executions/{run.execution_id}":
                return self._json(self.saved(run, now))
        return Reply(status=404, headers=JSON, steps=[b'{"message":"Not Found"}'], body_mode="length")

    def _webhook(self, seen: Seen) -> Reply:
        body = seen.json()
        with self._lock:
            run = Run(str(5 + len(self.runs)), body["turnId"], body["chatInput"], time.monotonic())
            self.runs[run.turn_id] = run

        def mark(phase: str) -> Any:
            return lambda: setattr(run, phase, time.monotonic())

        steps: list[Any] = [
            n8n_line("begin"),
            n8n_line("item", FIRST_BLOCK),
            n8n_line("end"),
            mark("tool_at"),
            float(self.tool_seconds),
            mark("tool_done_at"),
            TOOL_SAVED_BEFORE_BLOCK,
            n8n_line("begin"),
            *(n8n_line("item", token) for token in ANSWER.split(" ")[:1]),
            *(n8n_line("item", f" {token}") for token in ANSWER.split(" ")[1:]),
            n8n_line("end"),
            mark("body_end_at"),
        ]
        return Reply(headers=CAPTURE_HEADERS["n8n-stream"], steps=steps)

    def saved(self, run: Run, now: float) -> dict[str, Any]:
        """The record n8n had saved of `run` at `now`."""
        if self.progress:
            phases = [True, run.tool_at is not None, run.tool_done_at is not None, run.ended(now)]
            name = PROGRESS[max(i for i, reached in enumerate(phases) if reached)]
        else:
            name = DEFAULT[1] if run.ended(now) else DEFAULT[0]
        saved = copy.deepcopy(record(name))
        saved = json.loads(json.dumps(saved).replace("TURN_ID", run.turn_id))
        saved["id"], saved["workflowId"] = run.execution_id, self.workflow_id
        tool = saved["data"]["resultData"]["runData"].get("SlowCalc", [{}])[0]
        if "data" in tool:  # each chat's tool answers its own question: a step shown elsewhere would show it
            tool["data"]["ai_tool"][0][0]["json"] = {"response": run.question}
        return saved

    def _listed(self, query: dict[str, list[str]], now: float) -> list[dict[str, Any]]:
        wanted = query.get("workflowId", [self.workflow_id])[0]
        if wanted != self.workflow_id:
            return []
        listed = [self.saved(run, now) for run in self.runs.values()]
        if query.get("status") == ["running"]:
            return [item for item in listed if item["status"] == "running"]
        return listed

    @staticmethod
    def _json(value: Any) -> Reply:
        return Reply(headers=JSON, steps=[json.dumps(value).encode()], body_mode="length")
