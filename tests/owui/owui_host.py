"""A real Open WebUI (0.12.4, or OWUI_E2E_VERSION) as a subprocess on 127.0.0.1, and a client that talks to it
as the browser does.

`OpenWebUI` starts the server offline with a throwaway data folder and its log in a file.
`Admin` is the REST API an admin uses (install a function, set its valves, refresh models).
`Browser` is one browser tab: a socket.io session that receives the chat's events, and
`POST /api/chat/completions` with the fields the web app sends.

Older Open WebUI releases talk to their own web app differently (read from each release's source); where the
*harness* must differ, it does so here, keyed on the running version (`OWUI_VERSION`), so the tests assert
the same thing the user sees in each release:
- before 0.12: each `chat:completion` event carries the whole answer so far as `content` (no
  `response:completion` deltas); `Turn.deltas()` turns each growth into the delta the newer shape carries.
  (Read in 0.6.43's and 0.7.2's source; only the releases in README's compatibility table were run.)
- before 0.9: Stop is `GET /api/tasks/chat/<chat id>` then `POST /api/tasks/stop/<task id>` for each task
  (what that web app's Stop button does); no `POST /api/tasks/chat/<chat id>/stop`.
- before 0.9: the web app creates the chat (with the user's message and an empty assistant message in its
  history) before it asks for the answer; the server neither creates chats nor saves the user's message,
  and reads the question for the title from the saved history.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from process_group import stop_process_group


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".")[:3] if part.isdigit())


def installed_open_webui() -> str:
    """The Open WebUI under test: this interpreter's (the e2e venv's), else what the script asked for."""
    try:
        return importlib.metadata.version("open-webui")
    except importlib.metadata.PackageNotFoundError:
        return os.environ.get("OWUI_E2E_VERSION") or "0.12.4"


OWUI_RELEASE = installed_open_webui()
OWUI_VERSION = version_tuple(OWUI_RELEASE)
# The first release with the newer web-app protocol (see the module docstring); set from each release's source.
DELTA_EVENTS = OWUI_VERSION >= (0, 12, 0)  # `response:completion` deltas
STOP_BY_CHAT = OWUI_VERSION >= (0, 9, 0)  # POST /api/tasks/chat/<chat id>/stop
SERVER_CREATES_CHAT = OWUI_VERSION >= (0, 9, 0)  # a first message without a chat id
SERVER_SAVES_DONE = OWUI_VERSION >= (0, 9, 0)  # the saved answer's `done`; before, the web app saved it
TASKS_BY_CHAT = OWUI_VERSION >= (0, 6, 20)  # GET /api/tasks/chat/<chat id> (0.6.0 lacks it, 0.6.20 has it)
TASKS_IN_REDIS = OWUI_VERSION >= (0, 6, 20)  # UVICORN_WORKERS, and Stop reaches another worker's task (0.6.0: neither)
CANCEL_EVENT = "chat:tasks:cancel" if OWUI_VERSION >= (0, 6, 30) else "task-cancelled"  # 0.6.20: task-cancelled
SERVER_SAVES_SOURCES = OWUI_VERSION >= (0, 6, 30)  # before, the web app saved the `source` events it was sent
CHAT_ACTIVE_EVENTS = OWUI_VERSION >= (0, 8, 0)  # `chat:active` false once the background tasks are done
OUTPUT_ITEMS = OWUI_VERSION >= (0, 8, 0)  # the saved message's `output` items (reasoning among them)
# Two more tasks Open WebUI asks the chat's model for (0.10.0 brings both: its CHANGELOG and source; 0.9.6's and
# 0.6.43's source have neither): `context_compaction`, the summary of a chat's older messages, and `memory_review`,
# what to remember after a turn. The tests that drive them use 0.12.4's admin API and were run on 0.12.4.
CONTEXT_COMPACTION = OWUI_VERSION >= (0, 10, 0)  # POST /api/v1/chats/<chat id>/compact, and past a token threshold
MEMORY_REVIEW = OWUI_VERSION >= (0, 10, 0)  # after a turn, with memories.background_review.enable

TASK_IDS: dict[str, list[str]] = {}  # chat id -> the task ids its completion requests answered (before 0.6.20)

PIPE_ID = "n8n_stream"  # the function id an admin would give the pipe; its models are `n8n_stream.<entry>`
PROBE_ID = "e2e_probe"

OFFLINE_ENV = {
    "WEBUI_AUTH": "False",
    "OFFLINE_MODE": "true",
    "HF_HUB_OFFLINE": "1",
    "RAG_EMBEDDING_ENGINE": "openai",
    "ENABLE_OLLAMA_API": "false",
    "ENABLE_OPENAI_API": "false",
    "ENABLE_VERSION_UPDATE_CHECK": "false",
    "ENABLE_PIP_INSTALL_FRONTMATTER_REQUIREMENTS": "false",
    "ANONYMIZED_TELEMETRY": "false",
    "DO_NOT_TRACK": "true",
    "SCARF_NO_ANALYTICS": "true",
}

# A second function, used only by the tests: it reports which threads are running code of
# another function's module at this moment (Open WebUI execs each function into a module
# named `function_<id>_<hex>`; in older releases `function_<id>`), so a test can see from inside the
# server that a reply's worker thread is gone.
PROBE_FUNCTION = '''"""
title: e2e thread probe
"""
import json
import sys
import threading


class Pipe:
    def pipes(self):
        return [{"id": "threads", "name": "e2e thread probe"}]

    async def pipe(self, body, **kwargs):
        if body["messages"][-1]["content"] == "memory reviews?":
            # Open WebUI's memory reviews not yet ended: each is an asyncio task of its own, awaited by nobody.
            import asyncio
            reviews = [t for t in asyncio.all_tasks() if getattr(t.get_coro(), "__name__", "") == "_review_memory"]
            return json.dumps(sum(not t.done() for t in reviews))
        if body["messages"][-1]["content"] == "which worker?":
            # Which worker process answered, and which chats have a task running in it.
            import os
            try:
                from open_webui.tasks import item_tasks
            except ImportError:  # before 0.6.20 no task is listed by chat
                item_tasks = {}
            return json.dumps({"pid": os.getpid(), "chats": sorted(k for k, v in item_tasks.items() if v)})
        module = "function_" + (body["messages"][-1]["content"] or "").strip()
        busy = []
        names = {t.ident: t.name for t in threading.enumerate()}
        for ident, frame in sys._current_frames().items():
            if ident == threading.get_ident():
                continue
            stack = []
            while frame is not None:
                name = str(frame.f_globals.get("__name__", ""))
                if name == module or name.startswith(module + "_"):
                    stack.append(frame.f_code.co_name)
                frame = frame.f_back
            if stack:
                busy.append({"thread": names.get(ident, str(ident)), "in": stack})
        return json.dumps(busy)
'''


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class OpenWebUI:
    """`open-webui serve` on a free port of 127.0.0.1, offline, its output captured in a log file."""

    def __init__(
        self, executable: Path, workdir: Path, pidfile: Path | None = None, extra_env: dict[str, str] | None = None
    ) -> None:
        self.executable = executable
        self.extra_env = dict(extra_env or {})
        self.data_dir = workdir / "data"
        self.log_path = workdir / "open-webui.log"
        self.pidfile = pidfile
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 240) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            **OFFLINE_ENV,
            "DATA_DIR": str(self.data_dir),
            "STATIC_DIR": str(self.data_dir / "static"),
            "HF_HOME": str(self.data_dir / "hf"),
            "WEBUI_SECRET_KEY": uuid.uuid4().hex + uuid.uuid4().hex,
            "PYTHONUNBUFFERED": "1",
            **self.extra_env,
        }
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [str(self.executable), "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                cwd=self.data_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if self.pidfile:
            self.pidfile.write_text(str(self.process.pid))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code = self.process.returncode
                raise RuntimeError(f"Open WebUI exited with {code} while starting:\n{self.log_tail()}")
            try:
                if requests.get(f"{self.url}/health", timeout=2).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"Open WebUI did not answer /health within {timeout:g} s:\n{self.log_tail()}")

    def stop(self) -> None:
        stop_process_group(self.process)

    def log_text(self) -> str:
        return self.log_path.read_text("utf-8", "replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])


class Admin:
    """The REST API as the admin uses it (with WEBUI_AUTH=False the only user is the admin)."""

    def __init__(self, base_url: str, token: str | None = None) -> None:
        """Signed in, or with the `token` of an earlier sign-in: a new connection without another sign-in."""
        self.base_url = base_url
        self.http = requests.Session()
        if token is None:
            signin = self.http.post(f"{base_url}/api/v1/auths/signin", json={"email": "", "password": ""}, timeout=30)
            signin.raise_for_status()
            token = signin.json()["token"]
        self.token: str = token
        self.http.headers["Authorization"] = f"Bearer {self.token}"

    def call(self, method: str, path: str, body: Any = None, timeout: float = 30, ok: bool = True) -> Any:
        response = self.http.request(method, f"{self.base_url}{path}", json=body, timeout=timeout)
        if ok and not response.ok:
            raise AssertionError(f"{method} {path} -> HTTP {response.status_code}: {response.text[:2000]}")
        return response.json() if response.content else None

    def install_function(self, function_id: str, name: str, content: str) -> None:
        """Create, then switch on (new functions start inactive), as in Admin Panel > Functions."""
        existing = self.call("GET", f"/api/v1/functions/id/{function_id}", ok=False)
        if not (isinstance(existing, dict) and existing.get("id") == function_id):
            self.call(
                "POST",
                "/api/v1/functions/create",
                {"id": function_id, "name": name, "content": content, "meta": {"description": name}},
            )
            existing = self.call("GET", f"/api/v1/functions/id/{function_id}")
        if not existing.get("is_active"):
            self.call("POST", f"/api/v1/functions/id/{function_id}/toggle")

    def set_valves(self, function_id: str, **valves: Any) -> dict[str, Any]:
        """Replace the function's valves (unset ones fall back to their defaults) and refresh the models."""
        saved = self.call("POST", f"/api/v1/functions/id/{function_id}/valves/update", valves)
        self.models(refresh=True)
        return saved

    def models(self, refresh: bool = False) -> list[dict[str, Any]]:
        return self.call("GET", "/api/models" + ("?refresh=true" if refresh else ""))["data"]

    def upload(self, name: str, data: bytes, content_type: str) -> dict[str, Any]:
        """A file uploaded as the chat's paperclip does (POST /api/v1/files/): Open WebUI's file row."""
        response = self.http.post(
            f"{self.base_url}/api/v1/files/", files={"file": (name, data, content_type)}, timeout=60
        )
        if not response.ok:
            raise AssertionError(f"upload {name} -> HTTP {response.status_code}: {response.text[:2000]}")
        return dict(response.json())

    def new_chat(self, model: str, messages: list[dict[str, Any]] | None = None) -> str:
        """A chat as the web app creates it; `messages` (older releases) are put in its history, linked."""
        history: dict[str, Any] = {"messages": {}, "currentId": None}
        for message in messages or []:
            history["messages"][message["id"]] = message
            history["currentId"] = message["id"]
        chat = {"title": "New Chat", "models": [model], "messages": messages or [], "history": history}
        return self.call("POST", "/api/v1/chats/new", {"chat": chat})["id"]

    def chat(self, chat_id: str) -> dict[str, Any]:
        return self.call("GET", f"/api/v1/chats/{chat_id}")

    def stop(self, chat_id: str) -> Any:
        if STOP_BY_CHAT:
            return self.call("POST", f"/api/tasks/chat/{chat_id}/stop")
        # Before 0.9 the web app's Stop asks for the chat's tasks and stops each one; before 0.6.20 it stops the
        # task whose id came back with the chat completion request.
        if TASKS_BY_CHAT:
            task_ids = self.call("GET", f"/api/tasks/chat/{chat_id}").get("task_ids") or []
        else:
            task_ids = TASK_IDS.get(chat_id, [])
        return [self.call("POST", f"/api/tasks/stop/{task_id}") for task_id in task_ids]

    def complete(self, model: str, text: str, timeout: float = 60) -> dict[str, Any]:
        """The API without streaming: one request, the whole answer in the response."""
        body = {"model": model, "stream": False, "messages": [{"role": "user", "content": text}]}
        return self.call("POST", "/api/chat/completions", body, timeout=timeout)

    def worker(self) -> dict[str, Any]:
        """The worker process this session's connection is served by (pid) and the chats it runs tasks for."""
        answer = self.complete(f"{PROBE_ID}.threads", "which worker?")
        return json.loads(answer["choices"][0]["message"]["content"])

    def memory_reviews_running(self) -> int:
        """How many of Open WebUI's memory reviews (0.10+) are still running in the server (via the probe)."""
        answer = self.complete(f"{PROBE_ID}.threads", "memory reviews?")
        return int(json.loads(answer["choices"][0]["message"]["content"]))

    def web_app_features(self) -> dict[str, Any]:
        """The `features` the 0.12 web app sends with a question: `memory` when the user's Settings >
        Personalization > Memory is on, or, never set, when the admin's Memories switch is."""
        ui = (self.call("GET", "/api/v1/users/user/settings") or {}).get("ui") or {}
        memory = ui.get("memory")
        if memory is None:
            memory = (self.call("GET", "/api/config").get("features") or {}).get("enable_memories")
        return {"memory": True} if memory else {}

    def threads_in(self, function_id: str) -> list[dict[str, Any]]:
        """Threads of the server that are running the function's code right now (via the probe)."""
        answer = self.complete(f"{PROBE_ID}.threads", function_id)
        return json.loads(answer["choices"][0]["message"]["content"])


@dataclass
class Event:
    at: float
    payload: dict[str, Any]

    @property
    def chat_id(self) -> str | None:
        return self.payload.get("chat_id")

    @property
    def message_id(self) -> str | None:
        return self.payload.get("message_id")

    @property
    def type(self) -> str:
        return (self.payload.get("data") or {}).get("type", "")

    @property
    def data(self) -> Any:
        return (self.payload.get("data") or {}).get("data")


@dataclass
class Turn:
    """One question sent from the browser and the events the server pushed for it."""

    browser: Browser
    chat_id: str
    message_id: str
    text: str
    sent_at: float
    response: dict[str, Any] = field(default_factory=dict)
    messages: list[dict[str, Any]] = field(default_factory=list)  # what the web app sent: the chat so far

    def history(self) -> list[dict[str, Any]]:
        """The chat after this turn, as the web app sends it with the next question: the answer as saved."""
        return [*self.messages, {"role": "assistant", "content": self.saved()["content"]}]

    def events(self) -> list[Event]:
        return [e for e in self.browser.snapshot() if e.chat_id == self.chat_id and e.message_id == self.message_id]

    def deltas(self) -> list[Event]:
        if not DELTA_EVENTS:
            return self._deltas_from_contents()
        return [
            e
            for e in self.events()
            if e.type == "response:completion" and (e.data or {}).get("type") == "response.output_text.delta"
        ]

    def contents(self) -> list[Event]:
        """Before 0.12: the `chat:completion` events that carry the whole answer so far."""
        events = self.events()
        return [e for e in events if e.type == "chat:completion" and isinstance((e.data or {}).get("content"), str)]

    def _deltas_from_contents(self) -> list[Event]:
        """Each growth of the answer shown, as the delta event 0.12+ sends for it."""
        deltas, shown = [], ""
        for event in self.contents():
            content = event.data["content"]
            if content == shown or shown.startswith(content):  # the same text, or sent again trimmed
                continue
            added = content[len(shown) :] if content.startswith(shown) else content
            shown = content
            data = {"type": "response:completion", "data": {"type": "response.output_text.delta", "delta": added}}
            deltas.append(Event(event.at, {**event.payload, "data": data}))
        return deltas

    def text_shown(self) -> str:
        if not DELTA_EVENTS:
            contents = self.contents()
            return contents[-1].data["content"] if contents else ""
        return "".join(e.data["delta"] for e in self.deltas())

    def statuses(self) -> list[dict[str, Any]]:
        return [e.data for e in self.events() if e.type == "status"]

    def done(self) -> bool:
        return any(e.type == "chat:completion" and (e.data or {}).get("done") is True for e in self.events())

    def wait(self, condition: Callable[[], Any], timeout: float = 30, what: str = "") -> Any:
        return wait_for(condition, timeout, what or "chat event", self.events)

    def wait_done(self, timeout: float = 30) -> None:
        self.wait(self.done, timeout, "chat:completion with done: true")

    def saved(self) -> dict[str, Any]:
        """The assistant message as Open WebUI saved it in the chat."""
        return self.browser.admin.chat(self.chat_id)["chat"]["history"]["messages"][self.message_id]


class Browser:
    """One browser tab: a socket.io session (receives `events`) plus the chat completion request."""

    def __init__(self, admin: Admin) -> None:
        import socketio  # installed in the Open WebUI environment only

        self.admin = admin
        self._events: list[Event] = []
        self._lock = threading.Lock()
        self.sio = socketio.Client(reconnection=False)
        self.sio.on("events", self._on_event)
        self.sio.on("chat-events", self._on_event)  # their name in 0.6.30 and older (0.6.43: `events`)
        self.sio.connect(
            admin.base_url, socketio_path="/ws/socket.io", auth={"token": admin.token}, transports=["websocket"]
        )

    def _on_event(self, payload: dict[str, Any]) -> None:
        with self._lock:
            self._events.append(Event(time.monotonic(), payload))

    def snapshot(self) -> list[Event]:
        with self._lock:
            return list(self._events)

    def close(self) -> None:
        self.sio.disconnect()

    def send(
        self,
        model: str,
        text: str,
        background_tasks: dict[str, bool] | None = None,
        first_message: bool = False,
        images: list[str] | None = None,
        files: list[dict[str, Any]] | None = None,
        after: Turn | None = None,
        features: dict[str, Any] | None = None,
    ) -> Turn:
        """What the web app sends for a question. By default into a chat made first with POST /api/v1/chats/new;
        `first_message` sends it as the web app sends a new chat's first question: no chat id, `parent_id: null`,
        and Open WebUI creates the chat (and starts the title task) itself. `after` asks the next question in
        that turn's chat, under its answer (0.9+, where the server saves the question). `features` are the
        web app's (see Admin.web_app_features)."""
        user_message_id, message_id = str(uuid.uuid4()), str(uuid.uuid4())
        parent_id = after.message_id if after else None
        messages = [*(after.history() if after else []), {"role": "user", "content": user_content(text, images or [])}]
        if after:
            assert SERVER_CREATES_CHAT, "a follow-up question is written for 0.9+ only"
            chat_id = after.chat_id
        elif SERVER_CREATES_CHAT:
            chat_id = None if first_message else self.admin.new_chat(model)
        else:
            # Before 0.9 the web app saves the question and an empty answer in the chat (creating the chat on
            # the first message) before it asks for the answer: there is no server-created chat.
            now = int(time.time())
            question = {
                "id": user_message_id,
                "parentId": None,
                "childrenIds": [message_id],
                "role": "user",
                "content": text,
                "files": files or [],
                "timestamp": now,
                "models": [model],
            }
            answer = {
                "id": message_id,
                "parentId": user_message_id,
                "childrenIds": [],
                "role": "assistant",
                "content": "",
                "model": model,
                "timestamp": now,
            }
            chat_id = self.admin.new_chat(model, [question, answer])
        body: dict[str, Any] = {
            "model": model,
            "stream": True,
            "messages": messages,
            "session_id": self.sio.get_sid(),
            "id": message_id,
            "parent_id": parent_id if SERVER_CREATES_CHAT else user_message_id,
            "user_message": {
                "id": user_message_id,
                "parentId": parent_id,
                "childrenIds": [message_id],
                "role": "user",
                "content": text,
                "timestamp": int(time.time()),
                "models": [model],
            },
            "params": {},
            "features": features or {},
        }
        if chat_id:
            body["chat_id"] = chat_id
        if not SERVER_CREATES_CHAT:  # the web app before 0.9 sends the question as `parent_message`
            body["parent_message"] = question
        if background_tasks is not None:
            body["background_tasks"] = background_tasks
        if files:
            body["files"] = files
            body["user_message"]["files"] = files
        sent_at = time.monotonic()
        response = self.admin.call("POST", "/api/chat/completions", body)
        chat_id = chat_id or response["chat_id"]
        if isinstance(response, dict) and response.get("task_id"):
            TASK_IDS.setdefault(chat_id, []).append(response["task_id"])
        return Turn(self, chat_id, message_id, text, sent_at, response, messages)


def user_content(text: str, images: list[str]) -> Any:
    """The web app's user message: its text, with images as `image_url` parts when there are any."""
    if not images:
        return text
    return [{"type": "text", "text": text}, *({"type": "image_url", "image_url": {"url": url}} for url in images)]


def wait_for(condition: Callable[[], Any], timeout: float, what: str, context: Callable[[], Any] | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            seen = context() if context else None
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}; seen: {seen!r}"[:4000])
        time.sleep(0.02)
