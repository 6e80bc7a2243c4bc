"""The whole chain a user runs, on 127.0.0.1: fake model <- real n8n 2.41.3 <- pipe in real Open WebUI 0.12.4."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from chat_scripts import CUT_AFTER, SCRIPTS
from n8n_harness import TOKEN, CuttingProxy, N8n, running_n8n
from owui_host import PIPE_ID, Admin, OpenWebUI

OLLAMA_AGENT = "Ollama Agent"  # n8n/ollama-streaming.json
AGENT_WITH_TOOLS = "Agent with Tools"  # n8n/agent-tools-sources.json: a Calculator tool, sources
REMOTE_AGENT = "Remote Agent"  # n8n/ollama-streaming.json behind a proxy that cuts the connection
SUPPORT_AGENT = "Support Agent"  # n8n/ollama-streaming.json's URL misspelt
SALES_CHART = "Sales Chart"  # n8n/chart-binary.json: answers with a PNG
PRICING_AGENT = "Pricing Agent"  # n8n/ollama-streaming.json with a Calculator tool (tests/e2e/n8n_harness.py)
MODELS = [  # model name -> workflow
    (OLLAMA_AGENT, "ollama"),
    (AGENT_WITH_TOOLS, "agent-tools"),
    (REMOTE_AGENT, "remote"),
    (SUPPORT_AGENT, "typo"),
    (SALES_CHART, "chart"),
    (PRICING_AGENT, "ollama-calculator"),
]


@dataclass
class Stack:
    n8n: N8n
    owui: OpenWebUI
    admin: Admin
    api_key: str  # the n8n_api_key valve's: Stop stops the execution, a broken reply is read from it
    cutting_proxy: CuttingProxy  # in front of REMOTE_AGENT's webhook (and n8n's API)


def workflow_url(n8n: N8n, workflow: str, proxy: CuttingProxy) -> str:
    """A published webhook's production URL; "typo" is the Ollama one misspelt, as a user might paste it;
    "remote" is the Ollama one through `proxy` (the pipe derives n8n's API from it: the API passes as it is)."""
    ollama = n8n.url("ollama")
    if workflow == "typo":
        return ollama.replace("openwebui-ollama", "openwebui-olama")
    if workflow == "remote":
        return proxy.url + ollama[ollama.index("/webhook/") :]
    return n8n.url(workflow)


def open_webui_executable() -> Path:
    venv = Path(os.environ.get("OWUI_VENV", sys.prefix))
    executable = venv / "bin" / "open-webui"
    if not executable.exists():
        raise RuntimeError(f"no Open WebUI at {executable}: run scripts/e2e-browser.sh")
    return executable


def configure(
    admin: Admin, n8n: N8n, pipe_file: Path, models: list[tuple[str, str]], proxy: CuttingProxy, api_key: str
) -> None:
    """What the admin does once: paste the pipe, fill in its valves; and the user's settings say the release
    notes were seen, so the page opens on the chat (they open once per new version for an admin)."""
    admin.install_function(PIPE_ID, "n8n Stream", pipe_file.read_text("utf-8"))
    lines = "\n".join(f"{name} = {workflow_url(n8n, workflow, proxy)}" for name, workflow in models)
    admin.set_valves(PIPE_ID, models=lines, n8n_bearer_token=TOKEN, n8n_api_key=api_key, recover_answers=True)
    admin.call("POST", "/api/v1/users/user/settings/update", {"ui": {"showChangelog": False}})


@contextmanager
def running_stack(pipe_file: Path, models: list[tuple[str, str]]) -> Iterator[Stack]:
    pidfile = os.environ.get("OWUI_PIDFILE")
    with running_n8n() as n8n, tempfile.TemporaryDirectory(prefix="browser-e2e-owui-") as work:
        n8n.models.scripts.update(SCRIPTS)
        owui = OpenWebUI(open_webui_executable(), Path(work), Path(pidfile) if pidfile else None)
        proxy = CuttingProxy(n8n.webhook_base_url, after=CUT_AFTER)
        try:
            owui.start()
            admin = Admin(owui.url)
            api_key = n8n.api_key()
            configure(admin, n8n, pipe_file, models, proxy, api_key)
            yield Stack(n8n, owui, admin, api_key, proxy)
        finally:
            owui.stop()
            proxy.close()
