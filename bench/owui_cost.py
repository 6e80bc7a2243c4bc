"""What one streamed reply costs a real Open WebUI, and how late its words reach the browser: the pipe against
Open WebUI's own OpenAI connection, with a pipe that streams from memory as the floor.

    bash scripts/e2e-openwebui.sh --install-only         # once: the cached Open WebUI 0.12.4
    ~/.cache/pipe_n8n_stream/owui-0.12.4/bin/python bench/owui_cost.py            # N = 1,10,50,100, 3 repetitions
    ~/.cache/pipe_n8n_stream/owui-0.12.4/bin/python bench/owui_cost.py --ns 1,10 --reps 1   # a quick look

Three modes answer the same chat turn with the same 200 tokens of 5-6 bytes, one every 10 ms (a model's pace):
  native  Open WebUI's own OpenAI connection to a fake OpenAI server (SSE, as an OpenAI-compatible bridge sends it)
  pipe    this pipe, its `n8n_url` on a fake n8n webhook streaming n8n's NDJSON lines, one chunk per token
  floor   a ten-line pipe yielding the tokens from memory: what any streamed reply costs Open WebUI
Open WebUI runs offline from the e2e install as tests/owui start it (tests/owui/owui_host.py); the two fakes run
in a process of their own, so their CPU is not Open WebUI's. N chats are sent at once as the web app sends one
(POST /api/chat/completions into a chat made first) and read from one socket.io connection (the `events` a tab
gets); a turn has ended when Open WebUI says the chat is no longer active. For each batch: Open WebUI's CPU
(user + system, all its threads, from /proc) and its main thread's, the one running the event loop; per turn the
first and last token as the browser sees them, from the POST. Modes are interleaved, their order rotated per
repetition. Prints the table of bench/README.md ("Inside Open WebUI") and writes every figure to --out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests" / "owui"), str(ROOT / "tests")]

TOKENS = [("ab" if i % 2 else "a") + f"{i:03d} " for i in range(200)]  # 5 and 6 bytes
INTERVAL = 0.01
MODES = ("native", "pipe", "floor")
NATIVE_MODEL = "fake-gpt"
PIPE_ID, QUIET_ID, BEFORE_ID, FLOOR_ID = "n8n_stream", "n8n_quiet", "n8n_before", "floor"
MODEL = {
    "native": NATIVE_MODEL,
    "pipe": f"{PIPE_ID}.n8n",
    "quiet": f"{QUIET_ID}.n8n",  # the pipe with `emit_status` off: what its two status lines cost
    "before": f"{BEFORE_ID}.n8n",
    "floor": FLOOR_ID,
}
TICKS = os.sysconf("SC_CLK_TCK")

FLOOR_PIPE = f'''"""
title: floor
description: {len(TOKENS)} tokens from memory, {INTERVAL * 1000:g} ms apart: what any streamed reply costs Open WebUI.
"""
import asyncio

TOKENS = {TOKENS!r}


class Pipe:
    async def pipe(self, body: dict, **kwargs):
        loop = asyncio.get_running_loop()
        start = loop.time()
        for i, token in enumerate(TOKENS):
            await asyncio.sleep(start + i * {INTERVAL!r} - loop.time())
            yield token
'''


# ---------------------------------------------------------------------------
# The fakes: one asyncio process, two ports. Token i leaves at i * INTERVAL after the request, without drift.


async def paced(write: Any, pieces: list[bytes]) -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    for i, piece in enumerate(pieces):
        await asyncio.sleep(start + i * INTERVAL - loop.time())
        write(piece)


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def openai_delta(content: str | None, finish: str | None = None) -> bytes:
    delta = {} if content is None else {"content": content}
    event = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": NATIVE_MODEL,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(event, separators=(",", ":")).encode() + b"\n\n"


def n8n_line(kind: str, content: str | None = None) -> bytes:
    line: dict[str, Any] = {"type": kind, **({} if content is None else {"content": content})}
    line["metadata"] = {"nodeId": "bench-node", "nodeName": "AI Agent", "itemIndex": 0, "runIndex": 0}
    return json.dumps(line, separators=(",", ":")).encode() + b"\n"


async def answer(method: str, path: str, body: bytes, writer: asyncio.StreamWriter) -> None:
    """One request of Open WebUI's (native) or of the pipe's (n8n)."""
    if method == "GET" and path.endswith("/models"):
        data = json.dumps({"object": "list", "data": [{"id": NATIVE_MODEL, "object": "model", "owned_by": "bench"}]})
        head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
        writer.write(head.encode() + data.encode())
        return
    if path.endswith("/chat/completions"):
        head, lines = "text/event-stream", [openai_delta(t) for t in TOKENS]
        lines[-1] += openai_delta(None, "stop") + b"data: [DONE]\n\n"
    else:
        head, lines = "application/json; charset=utf-8", [n8n_line("item", t) for t in TOKENS]
        lines[0], lines[-1] = n8n_line("begin") + lines[0], lines[-1] + n8n_line("end")
    writer.write(f"HTTP/1.1 200 OK\r\nContent-Type: {head}\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
    await paced(writer.write, [chunk(line) for line in lines])
    writer.write(b"0\r\n\r\n")


async def serve_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while head := await reader.readuntil(b"\r\n\r\n"):
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            await answer(method, path, body, writer)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def serve_fakes() -> None:
    servers = [await asyncio.start_server(serve_connection, "127.0.0.1", 0, backlog=512) for _ in range(2)]
    ports = [server.sockets[0].getsockname()[1] for server in servers]
    print(json.dumps({"openai": ports[0], "n8n": ports[1]}), flush=True)
    await asyncio.Event().wait()


# ---------------------------------------------------------------------------
# Open WebUI and the driver.


def cpu_seconds(pid: int, thread: int | None = None) -> float:
    """user + system CPU of a process (all its threads), or of one of its threads."""
    path = f"/proc/{pid}/task/{thread}/stat" if thread else f"/proc/{pid}/stat"
    fields = Path(path).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


@dataclass
class Turn:
    mode: str
    chat_id: str = ""
    message_id: str = ""
    sent: float = 0.0
    first: float | None = None
    last: float | None = None
    text: list[str] = field(default_factory=list)
    error: str = ""
    ended: asyncio.Event = field(default_factory=asyncio.Event)


class Driver:
    """The admin's REST calls and one browser tab (socket.io), asyncio only: N chats cost it one loop."""

    def __init__(self, url: str, token: str, sio: Any, http: Any) -> None:
        self.url, self.token, self.sio, self.http = url, token, sio, http
        self.turns: dict[tuple[str, str], Turn] = {}

    @classmethod
    async def connect(cls, url: str, token: str) -> Driver:
        import aiohttp
        import socketio

        http = aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {token}"}, connector=aiohttp.TCPConnector(limit=0, force_close=True)
        )
        driver = cls(url, token, socketio.AsyncClient(reconnection=False), http)
        driver.sio.on("events", driver.on_event)
        await driver.sio.connect(url, socketio_path="/ws/socket.io", auth={"token": token}, transports=["websocket"])
        return driver

    async def close(self) -> None:
        await self.sio.disconnect()
        await self.http.close()

    async def on_event(self, payload: dict[str, Any]) -> None:
        now = time.monotonic()
        turn = self.turns.get((payload.get("chat_id") or "", payload.get("message_id") or ""))
        if turn is None:
            return
        event = payload.get("data") or {}
        kind, data = event.get("type"), event.get("data") or {}
        if kind == "response:completion" and data.get("type") == "response.output_text.delta":
            turn.first = turn.first or now
            turn.last = now
            turn.text.append(data.get("delta") or "")
        elif kind == "chat:active" and data.get("active") is False:
            turn.ended.set()
        elif kind == "chat:message:error" or (kind == "chat:completion" and data.get("error")):
            turn.error = str(data)[:200]

    async def post(self, path: str, body: Any) -> Any:
        async with self.http.post(self.url + path, json=body) as response:
            text = await response.text()
            if response.status >= 400:
                raise RuntimeError(f"POST {path}: HTTP {response.status} {text[:300]}")
            return json.loads(text) if text else None

    async def turn(self, mode: str, timeout: float) -> Turn:
        """One question as the web app sends it, into a chat made first; done when the chat is inactive."""
        model, turn = MODEL[mode], Turn(mode)
        chat = {"title": "bench", "models": [model], "messages": [], "history": {"messages": {}, "currentId": None}}
        try:
            turn.chat_id = (await self.post("/api/v1/chats/new", {"chat": chat}))["id"]
            turn.message_id, question_id = str(uuid.uuid4()), str(uuid.uuid4())
            self.turns[(turn.chat_id, turn.message_id)] = turn
            question = {"id": question_id, "parentId": None, "childrenIds": [turn.message_id], "role": "user"}
            body = {
                "model": model,
                "stream": True,
                "messages": [{"role": "user", "content": "Say hello"}],
                "session_id": self.sio.get_sid(),
                "chat_id": turn.chat_id,
                "id": turn.message_id,
                "parent_id": None,
                "user_message": {**question, "content": "Say hello", "timestamp": int(time.time()), "models": [model]},
                "params": {},
                "features": {},
            }
            turn.sent = time.monotonic()
            await self.post("/api/chat/completions", body)
            await asyncio.wait_for(turn.ended.wait(), timeout)
        except Exception as exc:  # every failure of a turn is counted and shown
            turn.error = turn.error or f"{type(exc).__name__}: {str(exc)[:200]}"
        self.turns.pop((turn.chat_id, turn.message_id), None)
        if not turn.error and "".join(turn.text) != "".join(TOKENS):
            turn.error = f"text differs: {len(''.join(turn.text))} characters"
        return turn


async def batch(driver: Driver, pid: int, mode: str, n: int, timeout: float) -> dict[str, Any]:
    """N turns of one mode at once; Open WebUI's CPU from before the first POST to after the last turn ended."""
    await asyncio.sleep(1.0)  # the last batch's stragglers (saving, tasks) end before the window opens
    cpu, loop_cpu = cpu_seconds(pid), cpu_seconds(pid, pid)
    turns = await asyncio.gather(*(driver.turn(mode, timeout) for _ in range(n)))
    cpu, loop_cpu = cpu_seconds(pid) - cpu, cpu_seconds(pid, pid) - loop_cpu
    ok = [t for t in turns if not t.error and t.first is not None and t.last is not None]
    return {
        "mode": mode,
        "n": n,
        "cpu_ms": cpu * 1000 / n,
        "loop_ms": loop_cpu * 1000 / n,
        "first": [(t.first or 0) - t.sent for t in ok],
        "last": [(t.last or 0) - t.sent for t in ok],
        "errors": sorted({t.error for t in turns if t.error})[:3],
        "failed": n - len(ok),
    }


async def measure(args: argparse.Namespace, url: str, token: str, pid: int) -> list[dict[str, Any]]:
    driver = await Driver.connect(url, token)
    rows: list[dict[str, Any]] = []
    try:
        for mode in args.modes:  # warm-up, not recorded: the first use of every path
            await batch(driver, pid, mode, 2, args.turn_timeout)
        for n in args.ns:
            for rep in range(args.reps):
                order = args.modes[rep % len(args.modes) :] + args.modes[: rep % len(args.modes)]
                for mode in order:
                    row = {**await batch(driver, pid, mode, n, args.turn_timeout), "rep": rep}
                    rows.append(row)
                    print(progress(row), flush=True)
    finally:
        await driver.close()
    return rows


def progress(row: dict[str, Any]) -> str:
    first = statistics.median(row["first"]) if row["first"] else float("nan")
    last = statistics.median(row["last"]) if row["last"] else float("nan")
    return (
        f"N={row['n']:<3} rep {row['rep']} {row['mode']:<6} CPU {row['cpu_ms']:6.1f} ms/reply "
        f"(loop {row['loop_ms']:6.1f})  first {first:.3f} s  last {last:.3f} s  failed {row['failed']} {row['errors']}"
    )


# ---------------------------------------------------------------------------
# The table.


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[-1] if len(values) > 1 else values[0]


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.0f} [{min(values):.0f}-{max(values):.0f}]"


def table(rows: list[dict[str, Any]], ns: list[int], modes: list[str]) -> str:
    """Per N: each mode's CPU per reply (all threads, and on/off the loop thread), the pipe's and native's own
    (minus the floor of the same repetition), first and last token median and p95 over all turns."""
    out = [
        "| N | mode | CPU ms/reply, median [min-max] | on the loop | off the loop | own (minus floor) "
        "| first token median / p95 s | last token median / p95 s | failed |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for n in ns:
        by_mode = {
            m: sorted((r for r in rows if r["n"] == n and r["mode"] == m), key=lambda r: r["rep"]) for m in modes
        }
        floors = [r["cpu_ms"] for r in by_mode.get("floor", [])]
        for mode in modes:
            mine = by_mode[mode]
            if not mine:
                continue
            cpu = [r["cpu_ms"] for r in mine]
            own = [c - f for c, f in zip(cpu, floors, strict=False)] if floors and mode != "floor" else []
            first = [x for r in mine for x in r["first"]]
            last = [x for r in mine for x in r["last"]]
            latency = [f"{statistics.median(v):.2f} / {p95(v):.2f}" if v else "-" for v in (first, last)]
            out.append(
                f"| {n} | {mode} | {spread(cpu)} | {spread([r['loop_ms'] for r in mine])} "
                f"| {spread([r['cpu_ms'] - r['loop_ms'] for r in mine])} | {spread(own) if own else '-'} "
                f"| {latency[0]} | {latency[1]} | {sum(r['failed'] for r in mine)} |"
            )
    return "\n".join(out)


# ---------------------------------------------------------------------------


def start_fakes(log: Path) -> tuple[subprocess.Popen[bytes], dict[str, int]]:
    fakes = subprocess.Popen(
        [sys.executable, __file__, "--serve-fakes"],
        stdout=subprocess.PIPE,
        stderr=log.open("wb"),
        start_new_session=True,
    )
    assert fakes.stdout is not None
    return fakes, json.loads(fakes.stdout.readline())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ns", type=lambda s: [int(x) for x in s.split(",")], default=[1, 10, 50, 100])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--modes", type=lambda s: s.split(","), default=list(MODES), help="native,pipe,floor[,quiet]")
    parser.add_argument("--turn-timeout", type=float, default=300)
    parser.add_argument("--pipe-file", type=Path, default=ROOT / "pipe_n8n_stream.py")
    parser.add_argument(
        "--pipe-before", type=Path, help="another version of the pipe, measured as mode `before` among the others"
    )
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "owui_cost.json")
    parser.add_argument("--serve-fakes", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_fakes:
        asyncio.run(serve_fakes())
        return

    from owui_host import OWUI_RELEASE, Admin, OpenWebUI
    from process_group import stop_process_group

    work = Path(tempfile.mkdtemp(prefix="owui-cost-"))
    fakes, ports = start_fakes(work / "fakes.log")
    owui = OpenWebUI(
        Path(sys.executable).parent / "open-webui",
        work,
        extra_env={
            "ENABLE_OPENAI_API": "true",
            "OPENAI_API_BASE_URLS": f"http://127.0.0.1:{ports['openai']}/v1",
            "OPENAI_API_KEYS": "sk-bench",
            # The default 5 s busy timeout fails 50+ chats at once with "database is locked", in every mode.
            "DATABASE_SQLITE_PRAGMA_BUSY_TIMEOUT": "60000",
        },
    )
    started = datetime.now(UTC)
    try:
        owui.start()
        assert owui.process is not None
        admin = Admin(owui.url)
        admin.install_function(PIPE_ID, "n8n Stream", args.pipe_file.read_text("utf-8"))
        admin.install_function(FLOOR_ID, "floor", FLOOR_PIPE)
        admin.set_valves(PIPE_ID, n8n_url=f"http://127.0.0.1:{ports['n8n']}/webhook/bench")
        if "quiet" in args.modes:
            admin.install_function(QUIET_ID, "n8n Stream quiet", args.pipe_file.read_text("utf-8"))
            admin.set_valves(QUIET_ID, n8n_url=f"http://127.0.0.1:{ports['n8n']}/webhook/bench", emit_status=False)
        if args.pipe_before:
            admin.install_function(BEFORE_ID, "n8n Stream before", args.pipe_before.read_text("utf-8"))
            admin.set_valves(BEFORE_ID, n8n_url=f"http://127.0.0.1:{ports['n8n']}/webhook/bench")
            args.modes = [*args.modes, "before"] if "before" not in args.modes else args.modes
        offered = {m["id"] for m in admin.models(refresh=True)}
        assert {MODEL[m] for m in args.modes} <= offered, offered
        load = os.getloadavg()
        import uvloop

        rows = uvloop.run(measure(args, owui.url, admin.token, owui.process.pid))
    finally:
        stop_process_group(owui.process)
        stop_process_group(fakes)
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    said = (
        f"{started:%Y-%m-%d %H:%M} UTC, Open WebUI {OWUI_RELEASE}, {os.cpu_count()} CPUs, load average "
        f"{load[0]:.2f} at the start, pipe at {commit.stdout.strip()} ({args.pipe_file.name})"
        f"{f', before: {args.pipe_before}' if args.pipe_before else ''}; "
        f"{len(TOKENS)} tokens, {INTERVAL * 1000:g} ms apart; {args.reps} repetitions, modes interleaved"
    )
    args.out.write_text(json.dumps({"run": said, "command": sys.argv, "rows": rows}, indent=1))
    print(f"\n{said}\n\n{table(rows, args.ns, args.modes)}\n\nevery figure: {args.out}")


if __name__ == "__main__":
    main()
