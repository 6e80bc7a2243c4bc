"""Harness: a real n8n 2.41.3 (or N8N_E2E_VERSION) on 127.0.0.1 with the shipped workflows, for the end-to-end tests.

These tests run only with N8N_E2E=1 (`bash scripts/e2e-n8n.sh` installs n8n into a cache
outside the repository, sets it and runs them). Without it they are skipped; with it and no
usable install they fail loudly: they never pass without having talked to a real n8n.

The fixture imports `n8n/*.json` exactly as shipped (their credential ids are created here,
pointed at fake model APIs served by the test), plus a few variants derived from them,
publishes them, starts n8n and waits until every webhook is registered.
Set N8N_E2E_KEEP=1 to keep n8n's folder and log after the run.

Queue mode (N8N_E2E_QUEUE=1, set by scripts/e2e-n8n-queue.sh, which starts Redis and Postgres on
free ports and passes them as N8N_E2E_REDIS_PORT and N8N_E2E_PG_PORT/_PG_DB/_PG_USER): the same
workflows are imported into Postgres and n8n runs as production does in queue mode: `n8n start`
(the main: UI, REST and public API), `n8n worker` (runs the executions) and `n8n webhook` (a
webhook processor, which takes the webhook calls and hands them to the worker through Redis).
The webhook URLs the tests use are the webhook processor's; the API (Stop) is the main's.
N8N_E2E_QUEUE_WEBHOOKS=main starts no webhook processor: the main takes the webhook calls and the
worker runs them (how n8n's Stop reaches the worker differs between the two, see the README).
"""

from __future__ import annotations

import copy
import json
import os
import select
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from fake_models import FakeModels
from process_group import stop_process_group

E2E = os.environ.get("N8N_E2E") == "1"
QUEUE = os.environ.get("N8N_E2E_QUEUE") == "1"
WEBHOOK_PROCESSOR = QUEUE and os.environ.get("N8N_E2E_QUEUE_WEBHOOKS", "processor") == "processor"
HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SHIPPED = REPO / "n8n"
N8N_VERSION = os.environ.get("N8N_E2E_VERSION") or "2.41.3"  # as scripts/lib/n8n-version.sh


def release(version: str) -> tuple[int, ...]:
    """`2.11.2` (or `2.11.2-beta`) as numbers that compare in release order."""
    return tuple(int(part) for part in version.split("-")[0].split("."))


def n8n_older_than(version: str) -> bool:
    """Whether the n8n under test (N8N_E2E_VERSION) is a release before `version`."""
    return release(N8N_VERSION) < release(version)


TOKEN = "e2e-token-7f3a9c"
JWT_SECRET = "e2e-jwt-secret-4b1d"  # the Secret of the shipped JWT Auth credential, as the test imports it
START_TIMEOUT = 120
OWNER_PASSWORD = "Owner-e2e-Passw0rd"
STOP_SCOPES = ("execution:list", "execution:read", "execution:stop")


@dataclass
class Webhook:
    """One published workflow: its production URL and what it is."""

    name: str
    url: str
    auth: bool
    workflow_id: str = ""


@dataclass
class N8n:
    base_url: str
    folder: Path
    log: Path
    models: FakeModels
    webhooks: dict[str, Webhook] = field(default_factory=dict)
    webhook_base_url: str = ""  # where /webhook/ is served: the main, or in queue mode the webhook processor
    mode: str = "regular"

    def url(self, name: str) -> str:
        return self.webhooks[name].url

    @property
    def header_auth_url(self) -> str:
        """The Ollama workflow with Header Auth on (as shipped, or the variant made for it)."""
        return next(h.url for name, h in self.webhooks.items() if h.auth and name.startswith("ollama"))

    def api_valves(self, key: str) -> dict[str, str]:
        """The pipe's valves for Stop. In queue mode the webhook processor serves no public API, so the
        API URL (the main's) is set, as users of queue mode must; otherwise the pipe derives it."""
        if self.mode == "queue":
            return {"n8n_api_key": key, "n8n_api_url": f"{self.base_url}/api/v1"}
        return {"n8n_api_key": key}

    def api_key(self, scopes: tuple[str, ...] = STOP_SCOPES) -> str:
        """An API key for n8n's public API, made as a user would in Settings > n8n API: no CLI makes
        one, so the owner is set up (once) and logs in through n8n's REST API."""
        session = requests.Session()
        owner = {"email": "owner@example.com", "firstName": "Ada", "lastName": "Owner", "password": OWNER_PASSWORD}
        session.post(f"{self.base_url}/rest/owner/setup", json=owner, timeout=30)  # 400 once the owner exists
        login = {"emailOrLdapLoginId": owner["email"], "password": OWNER_PASSWORD}
        session.post(f"{self.base_url}/rest/login", json=login, timeout=30).raise_for_status()
        label = {"label": f"pipe-{uuid.uuid4().hex[:8]}", "scopes": list(scopes), "expiresAt": None}
        made = session.post(f"{self.base_url}/rest/api-keys", json=label, timeout=30)
        if made.status_code == 400 and "Invalid scopes" in made.text:
            # n8n before 2.10 has no `execution:stop` scope (it has no stop API) and refuses the whole
            # list ("Invalid scopes for user role"): the key gets those of the scopes this n8n offers
            offered = session.get(f"{self.base_url}/rest/api-keys/scopes", timeout=30).json()["data"]
            label["scopes"] = [scope for scope in scopes if scope in offered]
            made = session.post(f"{self.base_url}/rest/api-keys", json=label, timeout=30)
        made.raise_for_status()
        return str(made.json()["data"]["rawApiKey"])

    def execution(self, key: str, execution_id: str) -> dict[str, Any]:
        """One execution as n8n's public API shows it."""
        url = f"{self.base_url}/api/v1/executions/{execution_id}"
        reply = requests.get(url, headers={"X-N8N-API-KEY": key}, timeout=10)
        reply.raise_for_status()
        return dict(reply.json())

    def executions_holding(self, key: str, name: str, marker: str) -> list[dict[str, Any]]:
        """The executions of workflow `name` whose data holds `marker` (a turn's unique prompt), newest first,
        as n8n's public API lists them: how a test proves the message ran the workflow exactly once."""
        found: list[dict[str, Any]] = []
        params = {"workflowId": self.webhooks[name].workflow_id, "includeData": "true", "limit": "250"}
        while True:
            reply = requests.get(
                f"{self.base_url}/api/v1/executions", params=params, headers={"X-N8N-API-KEY": key}, timeout=30
            )
            reply.raise_for_status()
            page = reply.json()
            found += [e for e in page["data"] if marker in json.dumps(e.get("data"), ensure_ascii=False)]
            if not page.get("nextCursor"):
                return found
            params["cursor"] = page["nextCursor"]

    def log_tail(self, lines: int = 60) -> str:
        """The end of n8n's log (in queue mode also the worker's and the webhook processor's)."""
        parts = []
        for log in (self.log, self.folder / "worker.log", self.folder / "webhook.log"):
            try:
                tail = "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
            except OSError:
                continue
            parts.append(f"--- {log.name}\n{tail}")
        return "\n".join(parts) or "(no n8n log)"


def usage_recorded(execution: dict[str, Any]) -> dict[str, int]:
    """The sum of the token counts n8n recorded for the execution's model calls, in Open WebUI's keys. n8n's Ollama
    node records its estimate (`tokenUsageEstimate`: LangChain's ChatOllama gives n8n no `tokenUsage`)."""
    counted = [
        item["json"].get("tokenUsage") or item["json"]["tokenUsageEstimate"]
        for runs in execution["data"]["resultData"]["runData"].values()
        for run in runs
        for output in (run.get("data") or {}).get("ai_languageModel") or []
        for item in output
    ]
    assert len(counted) == 2, counted  # the model asked for the tool, then answered
    usage = {
        "prompt_tokens": sum(c["promptTokens"] for c in counted),
        "completion_tokens": sum(c["completionTokens"] for c in counted),
        "total_tokens": sum(c["totalTokens"] for c in counted),
    }
    assert usage["total_tokens"] > 0, counted
    return usage


# -- the workflows n8n gets ------------------------------------------------------------------


def shipped(name: str) -> dict[str, Any]:
    return json.loads((SHIPPED / f"{name}.json").read_text())


def node(workflow: dict[str, Any], node_type: str) -> dict[str, Any]:
    return next(n for n in workflow["nodes"] if n["type"] == node_type)


def webhook_node(workflow: dict[str, Any]) -> dict[str, Any]:
    return node(workflow, "n8n-nodes-base.webhook")


def variant(workflow: dict[str, Any], suffix: str, wid: str) -> dict[str, Any]:
    """A copy with its own id, webhook path and webhook id, so both can be published at once."""
    copied = copy.deepcopy(workflow)
    copied["id"] = wid
    copied["name"] += f" ({suffix})"
    hook = webhook_node(copied)
    hook["parameters"]["path"] += f"-{suffix}"
    hook["webhookId"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{hook['webhookId']}/{suffix}"))
    return copied


def without_auth(workflow: dict[str, Any]) -> dict[str, Any]:
    hook = webhook_node(workflow)
    hook["parameters"]["authentication"] = "none"
    hook.pop("credentials", None)
    return workflow


def with_auth(workflow: dict[str, Any], credential: dict[str, str]) -> dict[str, Any]:
    hook = webhook_node(workflow)
    hook["parameters"]["authentication"] = "headerAuth"
    hook["credentials"] = {"httpHeaderAuth": credential}
    return workflow


def responds_immediately(workflow: dict[str, Any]) -> dict[str, Any]:
    """The Webhook's Respond set to Immediately: n8n answers `{"message":"Workflow was started"}` at once."""
    webhook_node(workflow)["parameters"]["responseMode"] = "onReceived"
    return workflow


def keeping_no_data(workflow: dict[str, Any]) -> dict[str, Any]:
    """The workflow's settings say not to save successful production executions: n8n deletes one once it ends."""
    workflow.setdefault("settings", {})["saveDataSuccessExecution"] = "none"
    return workflow


def agent_streaming_off(workflow: dict[str, Any]) -> dict[str, Any]:
    node(workflow, "@n8n/n8n-nodes-langchain.agent")["parameters"]["options"]["enableStreaming"] = False
    return workflow


def with_tool(workflow: dict[str, Any], tool: dict[str, Any]) -> dict[str, Any]:
    """The agent with one more tool node attached."""
    workflow["nodes"].append(tool)
    workflow["connections"][tool["name"]] = {"ai_tool": [[{"node": "AI Agent", "type": "ai_tool", "index": 0}]]}
    return workflow


def saving_progress(workflow: dict[str, Any]) -> dict[str, Any]:
    """The workflow's setting Save execution progress on: n8n saves each node's run as it ends."""
    workflow.setdefault("settings", {})["saveExecutionProgress"] = True
    return workflow


def gated_http_tool(models_url: str, gate: str = "working") -> dict[str, Any]:
    """An HTTP Request Tool calling the fake models' gated `/tool/<gate>`: the tool runs until the test
    has seen the chat say what it waits for (the agent working, the tool running)."""
    return {
        "parameters": {"toolDescription": "Looks the answer up.", "url": f"{models_url}/tool/{gate}", "options": {}},
        "id": "6f1d2a10-0e2e-4a7e-9c31-0a11ce000001",
        "name": "Lookup",
        "type": "n8n-nodes-base.httpRequestTool",
        "typeVersion": 4.2,
        "position": [520, 240],
    }


def calculator_tool() -> dict[str, Any]:
    """n8n's Calculator tool node, as n8n/agent-tools-sources.json has it."""
    return {
        "parameters": {},
        "id": "6f1d2a10-0e2e-4a7e-9c31-0a11ce000002",
        "name": "Calculator",
        "type": "@n8n/n8n-nodes-langchain.toolCalculator",
        "typeVersion": 1,
        "position": [520, 240],
    }


def credentials_template() -> dict[str, dict[str, Any]]:
    """n8n/credentials.example.json by id: the file users fill in for `n8n import:credentials`."""
    return {c["id"]: c for c in json.loads((SHIPPED / "credentials.example.json").read_text())}


def credentials_for(workflows: list[dict[str, Any]], models_url: str) -> list[dict[str, Any]]:
    """The credentials the shipped workflows refer to (by their ids): the shipped template with its values
    pointed at the fakes, so `n8n import:credentials` proves the template's shape too."""
    data = {
        "ollamaApi": {"baseUrl": models_url, "apiKey": ""},
        "anthropicApi": {"apiKey": "sk-ant-e2e-fake", "url": models_url},
        "httpHeaderAuth": {"name": "Authorization", "value": f"Bearer {TOKEN}"},
        "jwtAuth": {"keyType": "passphrase", "secret": JWT_SECRET, "algorithm": "HS256"},
    }
    template = credentials_template()
    found: dict[str, dict[str, Any]] = {}
    for workflow in workflows:
        for n in workflow["nodes"]:
            for kind, ref in (n.get("credentials") or {}).items():
                if kind not in data:
                    raise AssertionError(f"{workflow['name']}: no fake for credential type {kind}")
                shipped_one = template.get(ref["id"], {"id": ref["id"], "name": ref["name"], "type": kind, "data": {}})
                found[ref["id"]] = {**shipped_one, "data": {**shipped_one["data"], **data[kind]}}
    return list(found.values())


def workflows_to_import(models_url: str) -> dict[str, dict[str, Any]]:
    """name -> workflow JSON. The shipped files as they are, plus variants for the other cases."""
    ollama, claude, classic = shipped("ollama-streaming"), shipped("claude-streaming"), shipped("classic-last-node")
    auth_ref = webhook_node(ollama).get("credentials", {}).get("httpHeaderAuth") or {
        "id": "e2eHeaderAuth001",
        "name": "Open WebUI pipe token",
    }
    workflows = {
        "ollama": ollama,
        "claude": claude,
        "classic": classic,
        "agent-tools": shipped("agent-tools-sources"),
        "document": shipped("document-binary"),
        "chart": shipped("chart-binary"),
        "csv": shipped("csv-binary"),
        "who-is-asking": shipped("who-is-asking"),
    }
    # The shipped files may come with Header Auth on or off: test both ways either way.
    if webhook_node(ollama)["parameters"].get("authentication") == "headerAuth":
        workflows["ollama-noauth"] = without_auth(variant(ollama, "noauth", "e2eOllamaNoAuth1"))
    else:
        workflows["ollama-auth"] = with_auth(variant(ollama, "auth", "e2eOllamaWithAu1"), auth_ref)
    workflows["agent-nostream"] = agent_streaming_off(variant(ollama, "nostream", "e2eAgentNoStrm1"))
    workflows["classic-immediate"] = responds_immediately(variant(classic, "immediate", "e2eClassicImmed1"))
    workflows["immediate-nodata"] = keeping_no_data(
        responds_immediately(variant(classic, "nodata", "e2eClassicNoData"))
    )
    workflows["ollama-tool"] = with_tool(variant(ollama, "tool", "e2eOllamaTool001"), gated_http_tool(models_url))
    # The streaming agent with a tool, for its steps and usage read from the execution: n8n's default settings,
    # and saving its progress (the tool gated, so the test sees it running)
    workflows["ollama-calculator"] = with_tool(variant(ollama, "calculator", "e2eOllamaCalc001"), calculator_tool())
    workflows["ollama-tool-progress"] = saving_progress(
        with_tool(variant(ollama, "progress", "e2eOllamaProgrs1"), gated_http_tool(models_url, "progress"))
    )
    return {name: for_this_n8n(workflow) for name, workflow in workflows.items()}


def for_this_n8n(workflow: dict[str, Any]) -> dict[str, Any]:
    """The workflow as the n8n under test can import it. The files in n8n/ are for current n8n; an
    older n8n does not know some of their node versions and fails to activate the workflow
    ("Cannot read properties of undefined (reading 'execute')"). Only node versions are changed,
    in memory, to the newest that release has, with the same parameters."""
    if n8n_older_than("2.0.0"):
        # n8n 1.x's AI Agent ends at typeVersion 2.2 (2.1 brought `options.enableStreaming`); 3.x came with 2.0
        for agent in (n for n in workflow["nodes"] if n["type"] == "@n8n/n8n-nodes-langchain.agent"):
            agent["typeVersion"] = min(agent["typeVersion"], 2.2)
    return workflow


# -- running n8n -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def n8n_install() -> Path:
    home = os.environ.get("N8N_E2E_HOME", "")
    n8n_bin = Path(home) / "app" / "node_modules" / ".bin" / "n8n"
    node_bin = Path(home) / "node" / "bin" / "node"
    if not home or not n8n_bin.exists() or not node_bin.exists():
        pytest.fail(
            f"N8N_E2E=1 but no n8n {N8N_VERSION} install at N8N_E2E_HOME={home!r}. "
            "Run the end-to-end tests with `bash scripts/e2e-n8n.sh`, which installs it first.",
            pytrace=False,
        )
    return Path(home)


def queue_env() -> dict[str, str]:
    """Redis and Postgres for queue mode, as scripts/e2e-n8n-queue.sh started them."""
    try:
        redis_port, pg_port = os.environ["N8N_E2E_REDIS_PORT"], os.environ["N8N_E2E_PG_PORT"]
    except KeyError as missing:
        pytest.fail(f"N8N_E2E_QUEUE=1 needs {missing}: run `bash scripts/e2e-n8n-queue.sh`", pytrace=False)
    return {
        "EXECUTIONS_MODE": "queue",
        "QUEUE_BULL_REDIS_HOST": "127.0.0.1",
        "QUEUE_BULL_REDIS_PORT": redis_port,
        "QUEUE_HEALTH_CHECK_ACTIVE": "true",
        "DB_TYPE": "postgresdb",
        "DB_POSTGRESDB_HOST": "127.0.0.1",
        "DB_POSTGRESDB_PORT": pg_port,
        "DB_POSTGRESDB_DATABASE": os.environ.get("N8N_E2E_PG_DB", "n8n"),
        "DB_POSTGRESDB_USER": os.environ.get("N8N_E2E_PG_USER", "postgres"),
        "DB_POSTGRESDB_PASSWORD": "unused-trust-auth",
        # every process must read the credentials the others wrote
        "N8N_ENCRYPTION_KEY": "e2e-queue-mode-encryption-key-0001",
    }


def n8n_env(home: Path, folder: Path, port: int, webhook_port: int | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("N8N_", "DB_", "QUEUE_", "EXECUTIONS_"))}
    env.update(
        PATH=f"{home / 'node' / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        NODE_ENV="production",
        N8N_USER_FOLDER=str(folder),
        N8N_HOST="127.0.0.1",
        N8N_LISTEN_ADDRESS="127.0.0.1",
        N8N_PORT=str(port),
        N8N_PROTOCOL="http",
        WEBHOOK_URL=f"http://127.0.0.1:{webhook_port or port}/",
        N8N_RUNNERS_BROKER_PORT=str(free_port()),
        N8N_RUNNERS_BROKER_LISTEN_ADDRESS="127.0.0.1",
        N8N_DIAGNOSTICS_ENABLED="false",
        N8N_PERSONALIZATION_ENABLED="false",
        N8N_VERSION_NOTIFICATIONS_ENABLED="false",
        N8N_TEMPLATES_ENABLED="false",
        N8N_SECURE_COOKIE="false",
        N8N_ENFORCE_SETTINGS_FILE_PERMISSIONS="false",
        N8N_LOG_LEVEL=os.environ.get("N8N_E2E_LOG_LEVEL", "info"),
        DB_TYPE="sqlite",
    )
    if (home / "app" / "node_modules" / "n8n" / "dist" / "modules" / "mcp-registry").is_dir():
        # it fetches a server list from the internet; older n8n (1.101.1) has no such module and refuses
        # to start when told to disable a module it does not know
        env["N8N_DISABLED_MODULES"] = "mcp-registry"
    if QUEUE:
        env.update(queue_env())
    return env


def n8n_cli(home: Path, env: dict[str, str], log: Path, *args: str) -> None:
    command = [str(home / "app" / "node_modules" / ".bin" / "n8n"), *args]
    with log.open("a") as out:
        out.write(f"\n$ n8n {' '.join(args)}\n")
        out.flush()
        began = time.monotonic()
        done = subprocess.run(command, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=180, check=False)
        out.write(f"# exit {done.returncode} after {time.monotonic() - began:.1f} s\n")
    if done.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        pytest.fail(f"`n8n {' '.join(args)}` failed with exit code {done.returncode}:\n{tail}", pytrace=False)


def wait_until_registered(
    n8n: N8n, process: subprocess.Popen[bytes] | list[subprocess.Popen[bytes]], health: list[str] | None = None
) -> None:
    """/healthz first (of every process given in `health`), then every webhook: a GET answers
    'not registered for GET' once the POST webhook exists (a GET never runs the workflow)."""
    processes = process if isinstance(process, list) else [process]
    deadline = time.monotonic() + START_TIMEOUT
    pending = {hook.url for hook in n8n.webhooks.values()}
    unhealthy = list(health or [f"{n8n.base_url}/healthz"])
    healthy = False
    while pending or not healthy:
        for proc in processes:
            if proc.poll() is not None:
                pytest.fail(f"n8n exited with code {proc.returncode} while starting:\n{n8n.log_tail()}", pytrace=False)
        if time.monotonic() > deadline:
            what = ", ".join(unhealthy) if not healthy else ", ".join(sorted(pending))
            pytest.fail(f"n8n did not get ready within {START_TIMEOUT} s ({what}):\n{n8n.log_tail()}", pytrace=False)
        try:
            if not healthy:
                unhealthy = [url for url in unhealthy if requests.get(url, timeout=2).status_code != 200]
                healthy = not unhealthy
            else:
                for url in sorted(pending):
                    if "not registered for GET" in requests.get(url, timeout=2).text:
                        pending.discard(url)
        except requests.RequestException:
            pass
        time.sleep(0.25)


def publish_command(workflow_id: str) -> list[str]:
    """n8n 2.x publishes a workflow; 1.x has no `publish:workflow` and activates it instead."""
    if n8n_older_than("2.0.0"):
        return ["update:workflow", f"--id={workflow_id}", "--active=true"]
    return ["publish:workflow", f"--id={workflow_id}"]


def start_n8n(home: Path, env: dict[str, str], log: Path, *args: str) -> subprocess.Popen[bytes]:
    """One long-running n8n process (`n8n start`, `n8n worker`, `n8n webhook`), its output in `log`."""
    with log.open("a") as out:
        out.write(f"\n$ n8n {' '.join(args)}\n")
        out.flush()
        return subprocess.Popen(
            [str(home / "app" / "node_modules" / ".bin" / "n8n"), *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


@contextmanager
def running_n8n() -> Iterator[N8n]:
    home = n8n_install()
    folder = Path(tempfile.mkdtemp(prefix="pipe-n8n-e2e-"))
    port = free_port()
    hook_port = free_port() if WEBHOOK_PROCESSOR else port
    models = FakeModels(token_delay=0.05)
    n8n = N8n(f"http://127.0.0.1:{port}", folder, folder / "n8n.log", models)
    n8n.webhook_base_url = f"http://127.0.0.1:{hook_port}"
    n8n.mode = ("queue" if WEBHOOK_PROCESSOR else "queue-main-webhooks") if QUEUE else "regular"
    env = n8n_env(home, folder / "home", port, hook_port)
    processes: list[subprocess.Popen[bytes]] = []
    started = time.monotonic()
    try:
        workflows = workflows_to_import(models.url)
        imports = folder / "workflows"
        imports.mkdir()
        for name, workflow in workflows.items():
            (imports / f"{name}.json").write_text(json.dumps(workflow))
            hook = webhook_node(workflow)
            auth = hook["parameters"].get("authentication") == "headerAuth"
            url = f"{n8n.webhook_base_url}/webhook/{hook['parameters']['path']}"
            n8n.webhooks[name] = Webhook(name, url, auth, str(workflow["id"]))
        (folder / "credentials.json").write_text(json.dumps(credentials_for(list(workflows.values()), models.url)))
        n8n_cli(home, env, n8n.log, "import:credentials", f"--input={folder / 'credentials.json'}")
        n8n_cli(home, env, n8n.log, "import:workflow", "--separate", f"--input={imports}")
        # Postgres takes the publishes side by side (~10 s of CLI start each); SQLite one at a time.
        with ThreadPoolExecutor(max_workers=4 if QUEUE else 1) as pool:
            ids = [str(workflow["id"]) for workflow in workflows.values()]
            logs = [folder / f"publish-{wid}.log" if QUEUE else n8n.log for wid in ids]
            list(pool.map(lambda wid, log: n8n_cli(home, env, log, *publish_command(wid)), ids, logs))
        processes.append(start_n8n(home, env, n8n.log, "start"))
        health = [f"{n8n.base_url}/healthz"]
        if QUEUE:
            # The main runs the database migrations: the worker and the webhook processor start after it.
            wait_until_registered(N8n(n8n.base_url, folder, n8n.log, models), processes, health)
            worker_port = free_port()
            worker = {**env, "QUEUE_HEALTH_CHECK_PORT": str(worker_port), "N8N_RUNNERS_BROKER_PORT": str(free_port())}
            processes.append(start_n8n(home, worker, folder / "worker.log", "worker", "--concurrency=10"))
            health = [f"http://127.0.0.1:{worker_port}/healthz"]
            if WEBHOOK_PROCESSOR:
                webhook = {**env, "N8N_PORT": str(hook_port), "N8N_RUNNERS_BROKER_PORT": str(free_port())}
                processes.append(start_n8n(home, webhook, folder / "webhook.log", "webhook"))
                health.append(f"{n8n.webhook_base_url}/healthz")
        wait_until_registered(n8n, processes, health)
        what = {
            "regular": "one process, SQLite",
            "queue": "queue mode: main + worker + webhook processor, Redis, Postgres",
            "queue-main-webhooks": "queue mode: main (takes the webhooks) + worker, Redis, Postgres",
        }[n8n.mode]
        took = time.monotonic() - started
        print(f"\nn8n {N8N_VERSION} ({what}) ready with {len(workflows)} workflows in {took:.1f} s")
        yield n8n
    finally:
        for process in reversed(processes):
            stop_process_group(process)
        models.close()
        if os.environ.get("N8N_E2E_KEEP") == "1":
            print(f"\nn8n folder kept: {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


# -- nginx in front of n8n, with deploy/nginx.conf -------------------------------------------------


WEBHOOK_READ_TIMEOUT = "proxy_read_timeout 3600s;      # slow agents"


def shipped_nginx_site(n8n_port: int, listen: list[int], webhook_read_timeout: str = "") -> str:
    """deploy/nginx.conf made runnable on loopback: plain HTTP on free ports, upstream = this n8n.
    Everything that matters for streaming (the locations and their directives) is kept as shipped;
    `webhook_read_timeout` (e.g. "1s") replaces the webhooks' proxy_read_timeout, as a proxy left at a short
    one is set up."""
    site = (REPO / "deploy" / "nginx.conf").read_text()
    assert "server 127.0.0.1:5678;" in site and site.count("listen 443 ssl;") == 2, "deploy/nginx.conf changed shape"
    if webhook_read_timeout:
        assert site.count(WEBHOOK_READ_TIMEOUT) == 1, "deploy/nginx.conf's webhook location changed shape"
        site = site.replace(WEBHOOK_READ_TIMEOUT, f"proxy_read_timeout {webhook_read_timeout};  # slow agents")
    site = site.replace("server 127.0.0.1:5678;", f"server 127.0.0.1:{n8n_port};")
    site = site.replace("listen 443 ssl;", f"listen 127.0.0.1:{listen[0]};", 1)
    site = site.replace("listen 443 ssl;", f"listen 127.0.0.1:{listen[1]};", 1)
    site = site.replace("listen 80;", f"listen 127.0.0.1:{listen[2]};")
    return "\n".join(line for line in site.splitlines() if not line.strip().startswith("ssl_certificate"))


@contextmanager
def running_nginx(n8n_port: int, webhook_read_timeout: str = "") -> Iterator[str]:
    """nginx with deploy/nginx.conf in front of n8n (see shipped_nginx_site); yields the n8n site's base URL."""
    nginx = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None)
    if nginx is None:
        pytest.skip("nginx is not installed: the deploy/nginx.conf checks need it")
    folder = Path(tempfile.mkdtemp(prefix="pipe-n8n-nginx-"))
    folder.chmod(0o755)
    ports = [free_port() for _ in range(3)]
    (folder / "shipped.conf").write_text(shipped_nginx_site(n8n_port, ports, webhook_read_timeout))
    temp = folder / "tmp"
    temp.mkdir(mode=0o777)
    temp.chmod(0o777)
    (folder / "nginx.conf").write_text(
        f"pid {folder}/nginx.pid;\nerror_log {folder}/error.log warn;\nworker_processes 1;\n"
        "events { worker_connections 64; }\n"
        f"http {{\n    access_log off;\n    client_body_temp_path {temp}/body;\n    proxy_temp_path {temp}/proxy;\n"
        f"    fastcgi_temp_path {temp}/fastcgi;\n    uwsgi_temp_path {temp}/uwsgi;\n    scgi_temp_path {temp}/scgi;\n"
        f"    include {folder}/shipped.conf;\n}}\n"
    )
    command = [nginx, "-p", str(folder), "-c", str(folder / "nginx.conf"), "-e", str(folder / "error.log")]
    test = subprocess.run([*command, "-t"], capture_output=True, text=True, check=False)
    if test.returncode != 0:
        pytest.fail(f"nginx rejects deploy/nginx.conf:\n{test.stderr}", pytrace=False)
    process = subprocess.Popen(
        [*command, "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", ports[0]), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    log = (folder / "error.log").read_text(errors="replace") if (folder / "error.log").exists() else ""
                    pytest.fail(f"nginx did not start:\n{log}", pytrace=False)
                time.sleep(0.1)
        yield f"http://127.0.0.1:{ports[0]}"
    finally:
        stop_process_group(process)
        shutil.rmtree(folder, ignore_errors=True)


class BufferingProxy:
    """A reverse proxy that holds the whole reply and then sends it at once, as a proxy with
    response buffering or compression without flushing does: what makes an answer 'appear all
    at once'. (nginx's own defaults happen to pass n8n's chunked stream through; it holds
    bodies without chunked framing, and gzip-compressed ones when buffering is on.)"""

    def __init__(self, upstream: str) -> None:
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                reply = requests.post(upstream + self.path, data=body, headers=headers, timeout=60)
                self.send_response(reply.status_code)
                self.send_header("Content-Type", reply.headers.get("Content-Type", "application/octet-stream"))
                self.send_header("Content-Length", str(len(reply.content)))
                self.end_headers()
                self.wfile.write(reply.content)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, name="buffering-proxy", daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class CuttingProxy:
    """A TCP proxy on 127.0.0.1 in front of n8n (its webhooks and its API) that passes a webhook's reply on until
    it has passed `after` of n8n's streamed `item` lines (0: none, not even the headers), then cuts both
    connections: `reset` (RST, a proxy or NAT that drops the connection) or `close` (FIN in the middle of the
    chunked body, a proxy that hangs up). The request reaches n8n whole: the workflow runs on after the cut.
    Other requests (the API's) pass as they are, keep-alive included. `cuts` counts the replies cut."""

    ITEM = b'"type":"item"'

    def __init__(self, upstream: str, after: int, how: str = "reset") -> None:
        assert how in ("reset", "close"), how
        host, port = upstream.removeprefix("http://").rstrip("/").split(":")
        self.upstream = (host, int(port))
        self.after, self.how, self.cuts = after, how, 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._serve, name="cutting-proxy", daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # closed
                return
            threading.Thread(target=self._relay, args=(client,), name="cutting-proxy-relay", daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        """Both directions in this one thread (select): a socket another thread still reads would not reset
        when closed. A request to /webhook/ (the client pipelines none) makes its reply one to cut."""
        with client, socket.create_connection(self.upstream) as server:
            reply, cutting = b"", False
            while True:
                readable, _, _ = select.select([client, server], [], [], 60)
                if not readable:
                    return
                if client in readable:
                    data = client.recv(65536)
                    if not data:
                        return
                    if data.startswith((b"POST ", b"GET ")):  # a new request on this connection
                        reply, cutting = b"", b" /webhook/" in data.split(b"\r\n", 1)[0]
                    server.sendall(data)
                if server in readable:
                    data = server.recv(65536)
                    if not data:
                        return
                    reply += data
                    cut_at = self._cut_point(reply) if cutting else None
                    if cut_at is None:
                        client.sendall(data)
                        continue
                    client.sendall(data[: len(data) - (len(reply) - cut_at)])
                    self.cuts += 1
                    if self.how == "reset":
                        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    return  # both sockets closed: n8n sees its client gone too

    def _cut_point(self, passed: bytes) -> int | None:
        """Where the reply is cut: just after the line of the `after`-th item, once it has been read; with
        `after=0` before its first byte (the status line included), as when the proxy's upstream died."""
        if self.after == 0:
            return 0
        start = 0
        for _ in range(self.after):
            found = passed.find(self.ITEM, start)
            if found < 0:
                return None
            start = found + len(self.ITEM)
        end = passed.find(b"\n", start)
        return None if end < 0 else end + 1

    def close(self) -> None:
        self._listener.close()
