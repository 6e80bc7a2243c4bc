"""A fake n8n on one port of 127.0.0.1: its webhook answers as a script says (a break, a proxy's 504,
"Workflow was started"...) while its public API lets the turn's execution run on and end as the test
says, with records shaped as n8n 2.41.1's (tests/data/n8n-api/). Every call is recorded."""

from __future__ import annotations

import copy
import json
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fake_n8n_api import ApiCall
from loopback import Gate, LoopbackServer, Reply, Seen

RECORDS = Path(__file__).resolve().parent / "data" / "n8n-api"
API_KEY = "n8n_api_7c1e55aa-RECOVER-secret"
JSON = [("Content-Type", "application/json; charset=utf-8"), ("Connection", "close")]  # one request per connection


def record(name: str) -> dict[str, Any]:
    """An execution record as n8n's API answered it (tests/data/n8n-api/<name>.json)."""
    return json.loads((RECORDS / f"{name}.json").read_text())


def success(answer: Any, node: str = "Answer") -> dict[str, Any]:
    """A successful execution whose last node put out `answer` (its first item's json)."""
    done = record("execution-success-lastnode")
    run_data = done["data"]["resultData"]["runData"]
    run_data[node] = run_data.pop("Answer")
    run_data[node][-1]["data"]["main"][0][0]["json"] = answer
    done["data"]["resultData"]["lastNodeExecuted"] = node
    return done


def ended(status: str) -> dict[str, Any]:
    """An execution that ended `status` (canceled, crashed) with no answer."""
    done = record("execution-success-lastnode")
    done["status"], done["finished"] = status, False
    del done["data"]["resultData"]["runData"]["Answer"]
    return done


@dataclass
class FakeN8n:
    """The webhook answers `webhook`; the turn's execution (id `execution_id`, holding the turn id the
    webhook was sent) is `running` for the first `running_looks` reads of it, then `finished`
    (None: it is gone, as when n8n keeps no data). `api_delay` slows every API answer; `api_status`
    other than 200 is every API answer's status, with `api_body`."""

    webhook: Reply
    finished: dict[str, Any] | None = field(default_factory=lambda: success({"output": "the answer"}))
    running_looks: int = 1
    execution_id: str = "41"
    api_delay: float = 0.0
    api_status: int = 200
    api_body: bytes = b'{"message":"no"}'
    api_calls: list[ApiCall] = field(default_factory=list)
    stopped: threading.Event = field(default_factory=threading.Event)
    turn_id: str = ""
    _looks: int = 0

    def __post_init__(self) -> None:
        self.server = LoopbackServer(self._answer)
        self.base = f"http://127.0.0.1:{self.server.port}"
        self.url = f"{self.base}/webhook/answer"

    def __enter__(self) -> FakeN8n:
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.close()

    @property
    def webhook_requests(self) -> list[Seen]:
        return [seen for seen in self.server.requests if seen.path.startswith("/webhook/")]

    @property
    def execution_reads(self) -> int:
        return sum(1 for call in self.api_calls if call.path == f"/api/v1/executions/{self.execution_id}")

    def _answer(self, seen: Seen) -> Reply:
        if seen.path.startswith("/webhook/"):
            self.turn_id = seen.json().get("turnId", "")
            return self.webhook
        parts = urlsplit(seen.path)
        self.api_calls.append(
            ApiCall(seen.method, parts.path, parse_qs(parts.query), seen.headers.get("x-n8n-api-key"))
        )
        time.sleep(self.api_delay)
        if self.api_status != 200:
            return Reply(status=self.api_status, headers=JSON, steps=[self.api_body], body_mode="length")
        if seen.method == "POST" and re.fullmatch(r"/api/v1/executions/\d+/stop", parts.path):
            self.stopped.set()
            return self._json({"id": self.execution_id, "status": "canceled"})
        if parts.path == "/api/v1/executions":
            return self._json({"data": self._listed(parse_qs(parts.query)), "nextCursor": None})
        if parts.path == f"/api/v1/executions/{self.execution_id}":
            return self._read()
        return Reply(status=404, headers=JSON, steps=[b'{"message":"not found"}'], body_mode="length")

    def _listed(self, query: dict[str, list[str]]) -> list[dict[str, Any]]:
        """The turn's execution when the list would hold it: running, or any status asked for none."""
        if not self.turn_id or (query.get("status") == ["running"] and self._looks >= self.running_looks):
            return []
        return [self._running()]

    def _read(self) -> Reply:
        self._looks += 1
        if self._looks <= self.running_looks:
            return self._json(self._running())
        if self.finished is None:
            return Reply(status=404, headers=JSON, steps=[b'{"message":"Not Found"}'], body_mode="length")
        done = json.loads(json.dumps(self.finished).replace("TURN_ID", self.turn_id))
        done["id"] = self.execution_id
        return self._json(done)

    def _running(self) -> dict[str, Any]:
        running = copy.deepcopy(record("execution-success-lastnode"))
        running.update(id=self.execution_id, status="running", finished=False, stoppedAt=None)
        del running["data"]["resultData"]["runData"]["Answer"]
        return json.loads(json.dumps(running).replace("TURN_ID", self.turn_id))

    @staticmethod
    def _json(value: Any) -> Reply:
        return Reply(headers=JSON, steps=[json.dumps(value).encode()], body_mode="length")


__all__ = ["API_KEY", "FakeN8n", "Gate", "ended", "record", "success"]
