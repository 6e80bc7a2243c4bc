"""The whole chain a user runs, on 127.0.0.1: fake model <- real n8n 2.41.3 <- pipe in real Open WebUI 0.12.4."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from n8n_harness import TOKEN, N8n, running_n8n
from owui_host import PIPE_ID, Admin, OpenWebUI

OLLAMA_AGENT = "Ollama Agent"
TYPO_WEBHOOK = "Typo Webhook"
SALES_CHART = "Sales Chart"  # n8n/chart-binary.json: answers with a PNG
MODELS = [(OLLAMA_AGENT, "ollama"), (TYPO_WEBHOOK, "typo"), (SALES_CHART, "chart")]  # model name -> workflow


@dataclass
class Stack:
    n8n: N8n
    owui: OpenWebUI
    admin: Admin


def workflow_url(n8n: N8n, workflow: str) -> str:
    """A published webhook's production URL; "typo" is the Ollama one misspelt, as a user might paste it."""
    if workflow == "typo":
        return n8n.url("ollama").replace("openwebui-ollama", "openwebui-olama")
    return n8n.url(workflow)


def open_webui_executable() -> Path:
    venv = Path(os.environ.get("OWUI_VENV", sys.prefix))
    executable = venv / "bin" / "open-webui"
    if not executable.exists():
        raise RuntimeError(f"no Open WebUI at {executable}: run scripts/e2e-browser.sh")
    return executable


def configure(admin: Admin, n8n: N8n, pipe_file: Path, models: list[tuple[str, str]]) -> None:
    """What the admin does once: paste the pipe, fill in its valves; and the user's settings say the release
    notes were seen, so the page opens on the chat (they open once per new version for an admin)."""
    admin.install_function(PIPE_ID, "n8n Stream", pipe_file.read_text("utf-8"))
    lines = "\n".join(f"{name} = {workflow_url(n8n, workflow)}" for name, workflow in models)
    admin.set_valves(PIPE_ID, models=lines, n8n_bearer_token=TOKEN, n8n_api_key=n8n.api_key())
    admin.call("POST", "/api/v1/users/user/settings/update", {"ui": {"showChangelog": False}})


@contextmanager
def running_stack(pipe_file: Path, models: list[tuple[str, str]]) -> Iterator[Stack]:
    pidfile = os.environ.get("OWUI_PIDFILE")
    with running_n8n() as n8n, tempfile.TemporaryDirectory(prefix="browser-e2e-owui-") as work:
        owui = OpenWebUI(open_webui_executable(), Path(work), Path(pidfile) if pidfile else None)
        try:
            owui.start()
            admin = Admin(owui.url)
            configure(admin, n8n, pipe_file, models)
            yield Stack(n8n, owui, admin)
        finally:
            owui.stop()
