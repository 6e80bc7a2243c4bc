"""The pipe in Open WebUI 0.12.4 run as production runs it: two uvicorn workers coordinated through Redis.

Run by scripts/e2e-openwebui.sh's second pass (OWUI_WORKERS=2, Redis started by the script). Each HTTP
connection is served by one worker; a request is sent on a connection whose worker is known (the probe
function answers with its process id and the chats it runs tasks for), so Stop can be sent to the worker
that does NOT run the chat: Open WebUI must route it through Redis, and the pipe must still close the
webhook connection within 1 s.
"""

from __future__ import annotations

import os
import time

import pytest
from loopback import CAPTURE_HEADERS, Gate, LoopbackServer, Reply, n8n_reply
from owui_host import CANCEL_EVENT, OWUI_RELEASE, PIPE_ID, TASKS_IN_REDIS, Admin, Browser

MODEL = f"{PIPE_ID}.n8n"
STREAM_HEADERS = CAPTURE_HEADERS["n8n-stream"]
WORKERS = int(os.environ.get("OWUI_WORKERS") or "1")
TOKENS = ["Zwei", " Worker,", " ein", " Strom", " über", " Redis."]

pytestmark = pytest.mark.skipif(WORKERS < 2, reason="runs only with OWUI_WORKERS=2 (scripts/e2e-openwebui.sh)")
# Open WebUI 0.6.0's `open-webui serve` has no UVICORN_WORKERS (measured: one process answered every
# connection; 0.6.20 has it), and it keeps tasks in each worker's memory (no Stop through Redis).
BEFORE_WORKERS = pytest.mark.xfail(
    not TASKS_IN_REDIS,
    strict=True,
    reason=f"Open WebUI {OWUI_RELEASE}: `open-webui serve` runs one worker (no UVICORN_WORKERS) and keeps tasks "
    "per worker",
)


def connections_by_worker(base_url: str, tries: int = 40) -> dict[int, Admin]:
    """An admin session (one kept-alive connection) on each worker: {pid: session}."""
    found: dict[int, Admin] = {}
    for _ in range(tries):
        session = Admin(base_url)
        pid = session.worker()["pid"]
        found.setdefault(pid, session)
        if len(found) >= WORKERS:
            break
    return found


@BEFORE_WORKERS
def test_both_workers_answer(owui):
    workers = connections_by_worker(owui.url)
    assert len(workers) == WORKERS, f"only these workers answered: {sorted(workers)}"
    for pid, session in workers.items():
        assert session.worker()["pid"] == pid, "a kept-alive connection moved to another worker"


@BEFORE_WORKERS
def test_reply_streams_over_socketio_from_either_worker(owui, admin):
    """One chat started on each worker; the browser's socket.io connection is on one of them, so at
    least one chat's deltas reach it through Redis."""
    workers = connections_by_worker(owui.url)
    assert len(workers) == WORKERS
    for pid, session in workers.items():
        gate = Gate()
        lines = n8n_reply(TOKENS)
        steps: list[object] = [lines[0], lines[1], gate]
        for line in lines[2:-1]:
            steps += [0.05, line]
        tab = Browser(session)
        try:
            with LoopbackServer([Reply(headers=STREAM_HEADERS, steps=[*steps, lines[-1]])]) as n8n:
                session.set_valves(PIPE_ID, n8n_url=n8n.url)
                turn = tab.send(MODEL, f"stream from worker {pid}")
                first = turn.wait(turn.deltas, 15, "the first delta while n8n still holds back the rest")
                gate.open()
                turn.wait_done()
        finally:
            tab.close()
        assert first[0].data["delta"] == TOKENS[0]
        deltas = turn.deltas()
        assert len(deltas) >= len(TOKENS) - 1, [d.data["delta"] for d in deltas]
        assert deltas[-1].at - deltas[0].at >= 0.05 * (len(TOKENS) - 2), "the deltas arrived all at once"
        assert turn.text_shown() == "".join(TOKENS)
        assert turn.saved()["content"] == "".join(TOKENS)


@BEFORE_WORKERS
def test_stop_sent_to_the_other_worker_closes_the_webhook_within_1s(owui, admin, browser):
    reply = Reply(headers=STREAM_HEADERS, steps=[*n8n_reply(["Erste Hälfte", " — gezeigt"])[:3], "hang"])
    workers = connections_by_worker(owui.url)
    assert len(workers) == WORKERS, f"only these workers answered: {sorted(workers)}"
    with LoopbackServer([reply]) as n8n:
        admin.set_valves(PIPE_ID, n8n_url=n8n.url)
        turn = browser.send(MODEL, "long answer please")
        turn.wait(lambda: turn.text_shown() == "Erste Hälfte — gezeigt", 15, "the text n8n sent before it went quiet")

        running = {pid: turn.chat_id in session.worker()["chats"] for pid, session in workers.items()}
        assert sum(running.values()) == 1, f"the chat's task should run in exactly one worker: {running}"
        other = next(pid for pid, runs in running.items() if not runs)
        stopper = workers[other]
        assert stopper.worker()["pid"] == other

        stop_at = time.monotonic()
        stopper.stop(turn.chat_id)
        assert n8n.client_gone.wait(5), "the webhook connection stayed open after Stop sent to the other worker"
        closed_after = n8n.requests[0].disconnected_at - stop_at
        assert closed_after < 1.0, f"the webhook saw its connection closed {closed_after:.2f} s after Stop"
        turn.wait(lambda: any(e.type == CANCEL_EVENT for e in turn.events()), 5, CANCEL_EVENT)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(turn.chat_id in s.worker()["chats"] for s in workers.values()):
            time.sleep(0.1)
        assert not any(turn.chat_id in s.worker()["chats"] for s in workers.values()), "the task still runs"
        time.sleep(0.5)
        assert len(n8n.requests) == 1, "the pipe called the webhook again after Stop"

    assert turn.saved()["content"] == "Erste Hälfte — gezeigt"
    print(
        f"\nStop sent to worker {other}; the chat ran on {next(p for p, r in running.items() if r)};"
        f" webhook closed {closed_after * 1000:.0f} ms after Stop"
    )
