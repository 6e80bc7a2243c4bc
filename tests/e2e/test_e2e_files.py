"""A workflow that answers with a file, against a real n8n 2.41.3: the shipped n8n/chart-binary.json (a Code
node's PNG, Respond to Webhook *Binary File*) and n8n/csv-binary.json (*Convert to File* of items to CSV, Respond
to Webhook *Binary File* with `Content-Disposition: attachment`). The exact bytes n8n sends reach the chat."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import subprocess
import sys
import uuid
from typing import Any

import pytest
from fake_open_webui import fake_open_webui_storage
from n8n_harness import REPO, TOKEN, N8n

from pipe_n8n_stream import Pipe

# The PNG the chart workflow's Code node makes (a 96x64 bar chart), and the CSV n8n's Convert to File makes of
# the CSV workflow's rows: what the chat must get, byte for byte.
CHART_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAGAAAABACAMAAADS6oI8AAAAD1BMVEX///9aWlpChfT7jAA0qFN0QzrjAAAAP0lEQVR42u3YuQ0AMAgAMf"
    "LsP3N6eiRQfAu4vwg1aQHGAjcFAAAAlcBJAQAAAAAAqAV2CgAAAACAYUBFZu4vPdO7FmxJs5sMAAAAAElFTkSuQmCC"
)
SALES_CSV = b"month,sales\nJanuary,120\nFebruary,95\nMarch,143"


def converse(url: str, prompt: str, **valves: Any) -> tuple[str, list[str]]:
    """One chat turn as Open WebUI drives the pipe: (the message's text, the status lines)."""
    pipe = Pipe()
    pipe.valves.n8n_url = url
    pipe.valves.n8n_bearer_token = TOKEN
    for name, value in valves.items():
        setattr(pipe.valves, name, value)
    statuses: list[str] = []

    async def emit(event: dict[str, Any]) -> None:
        if event.get("type") == "status":
            statuses.append(event["data"]["description"])

    async def scenario() -> str:
        body = {"model": "n8n_stream.n8n", "stream": True, "messages": [{"role": "user", "content": prompt}]}
        reply = await pipe.pipe(
            body,
            __user__={"id": "u-e2e", "name": "Ada", "email": "ada@example.com", "role": "user"},
            __event_emitter__=emit,
            __metadata__={"chat_id": f"e2e-{uuid.uuid4().hex[:8]}", "message_id": "m1", "session_id": "s1"},
        )
        if isinstance(reply, str):
            return reply
        return "".join([chunk async for chunk in reply if isinstance(chunk, str)])

    return asyncio.run(scenario()), statuses


def test_the_shipped_workflows_make_these_files() -> None:
    """The constants above are what the shipped workflows hold (the PNG's base64, the rows)."""
    chart = json.loads((REPO / "n8n" / "chart-binary.json").read_text())
    code = next(n for n in chart["nodes"] if n["type"] == "n8n-nodes-base.code")["parameters"]["jsCode"]
    assert base64.b64encode(CHART_PNG).decode() in code
    assert CHART_PNG[12:16] == b"IHDR" and CHART_PNG[16:24] == (96).to_bytes(4, "big") + (64).to_bytes(4, "big")


def test_an_image_from_respond_to_webhook_is_shown_as_an_image_of_its_exact_bytes(n8n: N8n) -> None:
    text, statuses = converse(n8n.url("chart"), "chart of the sales")
    shown = re.fullmatch(r"!\[n8n\.png\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", text)
    assert shown, text[:300]
    assert base64.b64decode(shown.group(1), validate=True) == CHART_PNG
    assert statuses[-1].endswith(f"; shown: an image, n8n.png (image/png, {len(CHART_PNG)} bytes)"), statuses


def test_a_csv_from_convert_to_file_is_a_file_named_with_its_type_and_size(n8n: N8n) -> None:
    text, statuses = converse(n8n.url("csv"), "the sales as a file")
    assert text == f"📎 The workflow answered with a file: sales.csv (text/csv, {len(SALES_CSV)} bytes)."
    assert statuses[-1].endswith(f"; shown: a file, sales.csv (text/csv, {len(SALES_CSV)} bytes)"), statuses


@pytest.mark.parametrize(
    ("workflow", "name", "mime_type", "data", "shown"),
    [
        ("chart", "n8n.png", "image/png", CHART_PNG, "![n8n.png]({url})"),
        ("csv", "sales.csv", "text/csv", SALES_CSV, "[sales.csv]({url})"),
    ],
)
def test_inside_open_webui_the_exact_bytes_are_stored(
    n8n: N8n, monkeypatch: pytest.MonkeyPatch, workflow: str, name: str, mime_type: str, data: bytes, shown: str
) -> None:
    """With Open WebUI's storage and files table (stand-ins with their signatures; the real ones are in
    tests/owui/test_files_e2e.py), what n8n sent is what the pipe stores, and the message links it."""
    stored = fake_open_webui_storage(monkeypatch, awaitable=False)  # as Open WebUI before 0.9

    text, _ = converse(n8n.url(workflow), f"the {workflow}")

    assert text == shown.format(url=f"/api/v1/files/{stored['form']['id']}/content")
    assert stored["data"] == data and stored["user_id"] == "u-e2e"
    assert stored["form"]["meta"] == {"name": name, "content_type": mime_type, "size": len(data)}


def test_the_doctor_says_the_workflow_answers_with_an_image(n8n: N8n) -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "pipe_n8n_stream.py"), "check", n8n.url("chart"), "--token", TOKEN],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert lines[-1] == f"verdict: binary reply: image/png, {len(CHART_PNG)} bytes -> shown as an image", lines
    assert done.returncode == 1  # not a streaming workflow
