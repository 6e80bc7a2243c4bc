"""The pipe inside a real Open WebUI (0.12.4, or OWUI_E2E_VERSION), driven the way the browser drives it.

The fake n8n webhook is a LoopbackServer in this process; Open WebUI runs as a subprocess
(see conftest.py). Run with scripts/e2e-openwebui.sh.
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
import html
import json
import re
import threading
import time
import uuid
from contextlib import contextmanager

import pytest
from fake_agent_n8n import ANSWER, FIRST_BLOCK, AgentN8n
from fake_n8n import API_KEY, FakeN8n, record
from fake_n8n_api import FakeN8nApi, execution
from jwt_check import verified_claims
from loopback import CAPTURE_HEADERS, Gate, LoopbackServer, Reply, Seen, n8n_reply
from owui_host import (
    CANCEL_EVENT,
    CHAT_ACTIVE_EVENTS,
    CONTEXT_COMPACTION,
    MEMORY_REVIEW,
    OUTPUT_ITEMS,
    OWUI_RELEASE,
    PIPE_ID,
    SERVER_SAVES_DONE,
    SERVER_SAVES_SOURCES,
    Browser,
    wait_for,
)

MODEL = f"{PIPE_ID}.n8n"
STREAM_HEADERS = CAPTURE_HEADERS["n8n-stream"]
# The characters that break weaker parsers, and a token that Open WebUI would take for an SSE line.
TOKENS = [
    "Grüße",
    " aus",
    " n8n",
    " — ünïcødé 🎉 ✓",
    "data: not an SSE line",
    '\n\n"quotes",\ttabs',
    " and\nlines",
    " ende.",
]


def streamed(tokens: list[str], *steps_after_first: object, node: str = "AI Agent") -> Reply:
    """n8n's stream: begin and the first token, then `steps_after_first`, then the rest and end."""
    lines = n8n_reply(tokens, node=node)
    return Reply(headers=STREAM_HEADERS, steps=[lines[0], lines[1], *steps_after_first, *lines[2:]])


def test_reply_streams_as_deltas_and_is_saved_exactly(admin, browser):
    gate = Gate()
    lines = n8n_reply(TOKENS)
    steps: list[object] = [lines[0], lines[1], gate]
    for line in lines[2:-1]:
        steps += [0.05, line]
    with LoopbackServer([Reply(headers=STREAM_HEADERS, steps=[*steps, lines[-1]])]) as n8n:
        admin.set_valves(PIPE_ID, n8n_url=n8n.url)
        turn = browser.send(MODEL, "Sag hallo")
        first = turn.wait(turn.deltas, 15, "the first delta while n8n still holds back the rest")
        gate.open()
        turn.wait_done()

    assert first[0].data["delta"] == TOKENS[0]
    deltas = turn.deltas()
    assert len(deltas) >= len(TOKENS) - 1, [d.data["delta"] for d in deltas]
    assert deltas[-1].at - deltas[0].at >= 0.05 * (len(TOKENS) - 2), "the deltas arrived all at once"
    assert turn.text_shown() == "".join(TOKENS)
    saved = turn.saved()
    assert saved["content"] == "".join(TOKENS)
    if SERVER_SAVES_DONE:  # before 0.9 the web app, not the server, marks the saved answer done
        assert saved["done"] is True
    assert len(n8n.requests) == 1
    sent = n8n.requests[0].json()
    assert sent["chatInput"] == "Sag hallo"
    assert sent["sessionId"] == turn.chat_id


def test_status_events_reach_the_chat_and_are_saved(admin, browser):
    with LoopbackServer([streamed(["Hi", " there"], node="Support Agent")]) as n8n:
        admin.set_valves(PIPE_ID, n8n_url=n8n.url)
        turn = browser.send(MODEL, "status please")
        turn.wait_done()

    shown = turn.statuses()
    descriptions = [s["description"] for s in shown]
    assert descriptions[:2] == ["Waiting for n8n…", "Support Agent is answering"], descriptions
    assert shown[-1]["done"] is True
    assert descriptions[-1].startswith("Done"), descriptions
    history = turn.saved().get("statusHistory")
    assert history == shown, (history, shown)


def test_stop_mid_stream_closes_the_webhook_and_keeps_the_text(admin, browser):
    reply = Reply(headers=STREAM_HEADERS, steps=[*n8n_reply(["Erste Hälfte", " — gezeigt"])[:3], "hang"])
    with LoopbackServer([reply]) as n8n:
        admin.set_valves(PIPE_ID, n8n_url=n8n.url)
        turn = browser.send(MODEL, "long answer please")
        turn.wait(lambda: turn.text_shown() == "Erste Hälfte — gezeigt", 15, "the text n8n sent before it went quiet")
        # the head was read in a thread; the body is read on Open WebUI's event loop, with no thread of its own
        wait_until(lambda: not admin.threads_in(PIPE_ID), 3)
        assert admin.threads_in(PIPE_ID) == [], "a thread is reading the reply instead of the event loop"

        stop_at = time.monotonic()
        admin.stop(turn.chat_id)
        assert n8n.client_gone.wait(5), "the webhook connection stayed open after Stop"
        closed_after = n8n.requests[0].disconnected_at - stop_at
        assert closed_after < 1.0, f"the webhook saw its connection closed {closed_after:.2f} s after Stop"

        wait_until(lambda: not admin.threads_in(PIPE_ID), 3)
        busy = admin.threads_in(PIPE_ID)
        assert busy == [], f"threads still running the pipe after Stop: {busy}"
        wait_until(lambda: turn.saved().get("content"), 5)
        time.sleep(0.5)
        assert len(n8n.requests) == 1, "the pipe called the webhook again after Stop"

    saved = turn.saved()
    assert saved["content"] == "Erste Hälfte — gezeigt"
    assert any(e.type == CANCEL_EVENT for e in turn.events())
    # The spinner under the message ends: the pipe's last status says it stopped, live and saved.
    last = turn.wait(lambda: final_status_says_stopped(turn), 5, "a last status that says the reply stopped")
    assert wait_until(lambda: turn.saved()["statusHistory"][-1] == last, 5), turn.saved()["statusHistory"]


def test_stop_cancels_the_n8n_execution(admin, browser):
    """Stop through Open WebUI's own endpoint: the pipe hangs up, then stops this turn's run in n8n's API."""
    reply = Reply(headers=STREAM_HEADERS, steps=[*n8n_reply(["Erste Hälfte"])[:2], "hang"])
    with LoopbackServer([reply]) as n8n:
        api = FakeN8nApi(running=lambda: [execution("1234", n8n.requests[0].json()["turnId"])])
        try:
            admin.set_valves(PIPE_ID, n8n_url=n8n.url, n8n_api_key="owui-e2e-api-key", n8n_api_url=api.url)
            turn = browser.send(MODEL, "stop me")
            turn.wait(lambda: turn.text_shown() == "Erste Hälfte", 15, "the first token")
            admin.stop(turn.chat_id)
            assert n8n.client_gone.wait(5), "the webhook connection stayed open after Stop"
            assert api.stopped.wait(10), "the pipe never asked n8n's API to stop the execution"
            final = "Stopped; n8n execution 1234 cancelled"
            assert turn.wait(lambda: turn.statuses() and turn.statuses()[-1]["description"] == final, 10, final)
            assert wait_until(lambda: turn.saved()["statusHistory"][-1]["description"] == final, 5)
        finally:
            api.close()
            admin.set_valves(PIPE_ID, n8n_url=n8n.url, n8n_api_key="", n8n_api_url="")

    # Open WebUI's model list asks pipes() too, which lists the tagged workflows with the key: not Stop's calls
    stop_calls = [(c.method, c.path, c.key) for c in api.calls if c.path != "/api/v1/workflows"]
    assert stop_calls == [
        ("GET", "/api/v1/executions", "owui-e2e-api-key"),
        ("POST", "/api/v1/executions/1234/stop", "owui-e2e-api-key"),
    ]
    assert turn.saved()["content"] == "Erste Hälfte"


def test_stop_before_n8n_answers_leaves_no_thread_behind(admin, browser):
    """A 'When Last Node Finishes' workflow sends nothing for a long time: Stop must not wait for it."""
    release = Gate()

    def script(seen: Seen) -> Reply:
        release.wait(20)  # no status line, no headers, until the test lets go
        return Reply(headers=STREAM_HEADERS, steps=n8n_reply(["too late"]))

    with LoopbackServer(script) as n8n:
        admin.set_valves(PIPE_ID, n8n_url=n8n.url)
        try:
            turn = browser.send(MODEL, "a slow workflow")
            wait_until(lambda: n8n.requests, 10)
            assert admin.threads_in(PIPE_ID), "expected the reply's worker thread to wait for n8n"
            stop_at = time.monotonic()
            admin.stop(turn.chat_id)
            wait_until(lambda: not admin.threads_in(PIPE_ID), 3)
            gone_after = time.monotonic() - stop_at
            busy = admin.threads_in(PIPE_ID)
        finally:
            release.open()

    assert busy == [], f"threads still running the pipe after Stop: {busy}"
    assert gone_after < 1.5, f"the worker thread ended {gone_after:.2f} s after Stop"
    assert turn.text_shown() == ""
    turn.wait(lambda: final_status_says_stopped(turn), 5, "a last status that says the reply stopped")


def test_a_slow_chat_does_not_block_the_server(admin, browser):
    """While one reply streams slowly, another tab's request and a second chat are answered promptly."""
    slow_gate = Gate()

    def script(seen: Seen) -> Reply:
        if seen.json()["chatInput"] == "slow":
            return streamed(["slow start", " and end"], slow_gate)
        return Reply(headers=STREAM_HEADERS, steps=n8n_reply(["quick", " answer"]))

    with LoopbackServer(script) as n8n:
        admin.set_valves(PIPE_ID, n8n_url=n8n.url)
        slow = browser.send(MODEL, "slow")
        slow.wait(slow.deltas, 15, "the slow reply's first delta")

        health_times = []
        for _ in range(5):
            started = time.monotonic()
            assert admin.call("GET", "/health")["status"] is True
            health_times.append(time.monotonic() - started)
            time.sleep(0.05)
        other_tab = Browser(admin)
        try:
            started = time.monotonic()
            quick = other_tab.send(MODEL, "quick")
            quick.wait_done(10)
            quick_time = time.monotonic() - started
        finally:
            other_tab.close()
        assert not slow.done(), "the slow reply ended early; the test proves nothing"
        slow_gate.open()
        slow.wait_done()

    assert max(health_times) < 0.5, f"/health took {max(health_times):.2f} s while a reply streamed"
    assert quick_time < 5, f"a second chat took {quick_time:.2f} s while another reply streamed"
    assert quick.saved()["content"] == "quick answer"
    assert slow.saved()["content"] == "slow start and end"


def test_a_reply_that_breaks_is_saved_with_the_answer_recovered_from_n8n(admin, browser):
    """The webhook's stream resets after two tokens; n8n's API (the fake's, on the webhook's port) has the turn's
    execution, running, then ended with the agent's whole answer: the chat adds only the rest, and the saved
    message, what a reload shows, is the whole answer with the statuses that say where it came from."""
    answer = "Grüße aus n8n — ünïcødé 🎉 ✓, und der Rest der Antwort."
    agent = record("execution-success-streamed-agent")
    agent["data"]["resultData"]["runData"]["AI Agent"][0]["data"]["main"][0][0]["json"] = {"output": answer}
    reply = Reply(headers=STREAM_HEADERS, steps=[*n8n_reply(["Grüße", " aus n8n"])[:-1], "drop"])
    with FakeN8n(reply, finished=agent) as n8n:
        admin.set_valves(PIPE_ID, n8n_url=n8n.url, n8n_api_key=API_KEY)
        try:
            turn = browser.send(MODEL, "Grüß mich")
            turn.wait_done()
        finally:
            admin.set_valves(PIPE_ID)
        assert len(n8n.webhook_requests) == 1, "the message was sent to the webhook again"
        assert n8n.execution_reads == 2  # running, then ended

    assert turn.text_shown() == answer
    saved = turn.saved()
    assert saved["content"] == answer
    said = [s["description"] for s in saved["statusHistory"]]
    assert said[:2] == ["Waiting for n8n…", "AI Agent is answering"], said
    assert re.fullmatch(r"Connection to n8n lost after \d+\.\d s; n8n is still running the workflow…", said[2]), said
    assert re.fullmatch(
        r"Done: first text after \d+\.\d s, \d+\.\d s in all; the answer came from n8n execution 41", said[-1]
    ), said
    assert len(said) == 4, said
    assert saved["statusHistory"][-1]["done"] is True


N8N_404 = {
    "code": 404,
    "message": 'The requested webhook "POST e2e-missing" is not registered.',
    "hint": "The workflow must be active for a production URL to run successfully. You can activate the "
    "workflow using the toggle in the top-right of the editor. Note that unlike test URL calls, production "
    "URL calls aren't shown on the canvas (only in the executions list)",
}


def test_webhook_404_shows_n8ns_words_and_leaks_no_token(owui, admin, browser):
    token = f"e2e-secret-{uuid.uuid4().hex}"
    body = json.dumps(N8N_404, separators=(",", ":")).encode()
    reply = Reply(
        status=404,
        headers=[("Content-Type", "application/json; charset=utf-8"), ("Connection", "keep-alive")],
        steps=[body],
        body_mode="length",
    )
    with LoopbackServer([reply]) as n8n:
        admin.set_valves(PIPE_ID, n8n_url=n8n.url, n8n_bearer_token=token)
        try:
            turn = browser.send(MODEL, "hello?")
            turn.wait_done()
        finally:
            admin.set_valves(PIPE_ID)
    assert n8n.requests[0].headers.get("authorization") == f"Bearer {token}", "the token was not sent"

    saved = turn.saved()
    assert "HTTP 404" in saved["content"]
    assert N8N_404["message"] in saved["content"]
    assert N8N_404["hint"] in saved["content"]
    assert "n8n_url" in saved["content"]
    assert any(N8N_404["message"] in s["description"] for s in saved["statusHistory"])
    everything = json.dumps(admin.chat(turn.chat_id), ensure_ascii=False)
    assert token not in everything, "the token is in the saved chat"
    assert token not in json.dumps([e.payload for e in turn.events()], ensure_ascii=False)
    assert token not in owui.log_text(), "the token is in Open WebUI's log"


def test_a_signed_turn_claims_the_logged_in_user_and_the_secret_stays_home(owui, admin, browser):
    """With `jwt_secret`, the token n8n's JWT Auth verifies names Open WebUI's logged-in user, this chat and turn."""
    secret = f"owui-jwt-secret-{uuid.uuid4().hex}"
    with LoopbackServer([Reply(headers=STREAM_HEADERS, steps=n8n_reply(["Hallo", " Admin"]))]) as n8n:
        admin.set_valves(PIPE_ID, n8n_url=n8n.url, jwt_secret=secret, send_user_info=True)
        try:
            turn = browser.send(MODEL, "wer fragt?")
            turn.wait_done()
        finally:
            admin.set_valves(PIPE_ID)
    (seen,) = n8n.requests
    me = admin.call("GET", "/api/v1/auths/")

    scheme, _, token = seen.headers["authorization"].partition(" ")
    assert scheme == "Bearer"
    claims = verified_claims(token, secret)
    assert (claims["sub"], claims["role"], claims["name"], claims["email"]) == (
        me["id"],
        me["role"],
        me["name"],
        me["email"],
    )
    assert (claims["iss"], claims["chat_id"], claims["jti"]) == ("open-webui", turn.chat_id, seen.json()["turnId"])
    assert turn.saved()["content"] == "Hallo Admin"
    assert secret not in json.dumps(seen.headers) + seen.body.decode()
    assert secret not in owui.log_text(), "the JWT secret is in Open WebUI's log"


@pytest.mark.parametrize("shape", ["n8n stream", "complete JSON"])
def test_stream_false_returns_the_complete_text(admin, shape):
    text = "Ganze Antwort — ünïcødé ✓ auf einmal"
    if shape == "n8n stream":
        reply = Reply(headers=STREAM_HEADERS, steps=n8n_reply(["Ganze Antwort", " — ünïcødé ✓", " auf einmal"]))
    else:
        body = json.dumps({"output": text}, ensure_ascii=False).encode()
        reply = Reply(headers=[("Content-Type", "application/json; charset=utf-8")], steps=[body], body_mode="length")
    with LoopbackServer([reply]) as n8n:
        admin.set_valves(PIPE_ID, n8n_url=n8n.url)
        answer = admin.complete(MODEL, "alles auf einmal")

    assert answer["choices"][0]["message"]["content"] == text
    assert len(n8n.requests) == 1
    assert n8n.requests[0].json()["stream"] is False


def test_manifold_two_workflows_each_answer_from_their_own_url(admin, browser):
    with (
        LoopbackServer([Reply(headers=STREAM_HEADERS, steps=n8n_reply(["Sales", " here"]))]) as sales,
        LoopbackServer([Reply(headers=STREAM_HEADERS, steps=n8n_reply(["Support", " here"]))]) as support,
    ):
        admin.set_valves(PIPE_ID, models=f"Sales = {sales.url}\nSupport Bot = {support.url}")
        try:
            listed = {m["id"]: m["name"] for m in admin.models()}
            sales_turn = browser.send(f"{PIPE_ID}.sales", "prices?")
            sales_turn.wait_done()
            support_turn = browser.send(f"{PIPE_ID}.support-bot", "help!")
            support_turn.wait_done()
        finally:
            admin.set_valves(PIPE_ID)

    assert listed.get(f"{PIPE_ID}.sales") == "Sales", listed
    assert listed.get(f"{PIPE_ID}.support-bot") == "Support Bot", listed
    assert sales_turn.saved()["content"] == "Sales here"
    assert support_turn.saved()["content"] == "Support here"
    assert [s.json()["chatInput"] for s in sales.requests] == ["prices?"]
    assert [s.json()["chatInput"] for s in support.requests] == ["help!"]


def test_thinking_becomes_open_webuis_reasoning_block(admin, browser):
    """The pipe wraps a model's reasoning in <think> tags; Open WebUI must turn them into its reasoning block."""

    def sse(delta: dict[str, str]) -> bytes:
        return b"data: " + json.dumps({"choices": [{"index": 0, "delta": delta}]}).encode() + b"\n\n"

    steps = [
        sse({"reasoning_content": "Erst nachdenken"}),
        sse({"reasoning_content": " — gründlich."}),
        sse({"content": "Die Antwort"}),
        sse({"content": " ist 42."}),
        b"data: [DONE]\n\n",
    ]
    with LoopbackServer([Reply(headers=[("Content-Type", "text/event-stream")], steps=steps)]) as n8n:
        admin.set_valves(PIPE_ID, n8n_url=n8n.url)
        turn = browser.send(MODEL, "denk nach")
        turn.wait_done()

    saved = turn.saved()
    if OUTPUT_ITEMS:
        assert saved["content"] == "Die Antwort ist 42."
        reasoning = [item for item in saved["output"] if item["type"] == "reasoning"]
        assert [part["text"] for item in reasoning for part in item["content"]] == ["Erst nachdenken — gründlich."]
    else:
        # Before 0.8 Open WebUI saves its reasoning block inside the content, as the collapsible
        # <details type="reasoning"> ("Thought for N seconds") that the chat renders, then the answer.
        block = re.fullmatch(
            r'<details type="reasoning" done="true" duration="\d+">\n<summary>Thought for \d+ seconds</summary>\n'
            r"(?P<thought>.*?)\n</details>\n(?P<answer>.*)",
            saved["content"],
            re.DOTALL,
        )
        assert block, saved["content"]
        assert block["answer"] == "Die Antwort ist 42."
        assert html.unescape(block["thought"]) == "> Erst nachdenken — gründlich."


STEP = {"action": {"tool": "Calculator", "toolInput": {"input": "2+2"}, "log": "…"}, "observation": "4"}
SOURCES = [{"title": "n8n docs", "url": "https://docs.n8n.io/", "content": "Workflow automation."}]
CALCULATOR_BLOCK = (
    '<details type="tool_calls" done="true" name="Calculator" arguments="{&quot;input&quot;: &quot;2+2&quot;}" '
    'result="&quot;4&quot;">\n<summary>Tool Executed</summary>\n</details>\n'
)


def test_saved_message_has_the_tool_step_block_and_the_sources(admin, browser):
    """A complete reply with `intermediateSteps` and `sources`: the saved answer starts with Open WebUI's
    own tool-call block, and the sources are the message's citations, not text."""
    body = json.dumps({"output": "Die Antwort ist 4.", "intermediateSteps": [STEP], "sources": SOURCES}).encode()
    reply = Reply(headers=[("Content-Type", "application/json; charset=utf-8")], steps=[body], body_mode="length")
    with LoopbackServer([reply]) as n8n:
        admin.set_valves(PIPE_ID, n8n_url=n8n.url)
        turn = browser.send(MODEL, "Was ist 2+2?")
        turn.wait_done()

    saved = turn.saved()
    assert saved["content"] == CALCULATOR_BLOCK + "Die Antwort ist 4."
    # Before 0.6.30 the server saves no sources: the web app adds each `source` event it is sent to the message.
    sources = saved["sources"] if SERVER_SAVES_SOURCES else [e.data for e in turn.events() if e.type == "source"]
    assert [(s["source"]["name"], s["source"]["url"], s["document"]) for s in sources] == [
        ("n8n docs", "https://docs.n8n.io/", ["Workflow automation."])
    ]
    assert saved["statusHistory"][-1]["description"].endswith(", 1 tool step")


def test_the_status_says_the_agent_is_using_a_tool_between_blocks(admin, browser):
    gate = Gate()
    lines = [*n8n_reply(["Ich rechne."]), gate, *n8n_reply(["Es ist 4."])]
    with LoopbackServer([Reply(headers=STREAM_HEADERS, steps=lines)]) as n8n:
        admin.set_valves(PIPE_ID, n8n_url=n8n.url)
        turn = browser.send(MODEL, "Was ist 2+2?")
        working = "AI Agent is using a tool… (step 1)"
        turn.wait(lambda: any(s.get("description") == working for s in turn.statuses()), 15, "the working status")
        gate.open()
        turn.wait_done()

    saved = turn.saved()
    assert saved["content"] == "Ich rechne.\n\nEs ist 4."
    said = [s["description"] for s in saved["statusHistory"]]
    assert working in said, said
    assert said[-1].endswith(", 1 tool step"), said


# The slow tool's run as n8n's execution records it (tests/fake_agent_n8n.py answers each chat's question back)
SLOWCALC_STEP = (
    '<details type="tool_calls" done="true" name="SlowCalc" arguments="{&quot;input&quot;: &quot;2+2&quot;}" '
    'result="{&quot;response&quot;: &quot;Was ist 2+2?&quot;}">\n<summary>Tool Executed</summary>\n</details>\n'
)
SLOWCALC_USAGE = {"prompt_tokens": 10, "completion_tokens": 12, "total_tokens": 22}  # 5+5, 2+10, 7+15


def test_the_agents_usage_and_tool_step_are_saved_with_the_streamed_message(admin, browser):
    """A streamed agent reply with `n8n_api_key`: the tool's step read from n8n's execution comes right after
    the answer (n8n's default settings), the turn's usage once; what a reload shows has both."""
    with AgentN8n(progress=False) as n8n:
        admin.set_valves(PIPE_ID, n8n_url=n8n.url, n8n_api_key=API_KEY)
        try:
            turn = browser.send(MODEL, "Was ist 2+2?")
            turn.wait_done()
        finally:
            admin.set_valves(PIPE_ID)
        assert len(n8n.webhook_requests) == 1

    text = f"{FIRST_BLOCK}\n\n{ANSWER}\n{SLOWCALC_STEP}"
    # the last newline reaches the page's deltas after `done` or not at all (seen both ways); it shows nothing
    assert turn.text_shown().rstrip("\n") == text.rstrip("\n")
    saved = turn.saved()
    assert saved["content"] == text.rstrip("\n")  # Open WebUI saves the answer with its end trimmed
    # Open WebUI keeps the counts the pipe sent and adds its own names for two of them
    assert saved["usage"] == {**SLOWCALC_USAGE, "input_tokens": 10, "output_tokens": 12}
    assert saved["statusHistory"][-1]["description"].endswith(", 1 tool step")


BROWSER_TASKS = {"title_generation": True, "tags_generation": True, "follow_up_generation": True}


@pytest.mark.parametrize("flow", ["first message of a new chat", "chat made first"])
def test_background_tasks_do_not_run_the_workflow(admin, browser, flow):
    """Title, tags and follow-ups are asked for as the web app asks; only the answer runs the workflow."""
    question = "Wie wird das Wetter morgen in Berlin?"
    with LoopbackServer([Reply(headers=STREAM_HEADERS, steps=n8n_reply(["Antwort", " eins"]))]) as n8n:
        admin.set_valves(PIPE_ID, n8n_url=n8n.url)
        turn = browser.send(MODEL, question, BROWSER_TASKS, first_message=flow.startswith("first"))
        turn.wait_done()
        title = wait_until(lambda: next((e.data for e in turn.events() if e.type == "chat:title"), None), 15)
        if CHAT_ACTIVE_EVENTS:
            idle = lambda: any(e.type == "chat:active" and e.data.get("active") is False for e in turn.events())  # noqa: E731
            wait_until(idle, 15)
        else:  # before 0.8 there is no `chat:active`; tags are the last of the three background tasks
            wait_until(lambda: any(e.type == "chat:tags" for e in turn.events()), 15)
        time.sleep(0.5)
        requests_seen = [s.json() for s in n8n.requests]

    assert len(requests_seen) == 1, requests_seen
    assert "task" not in requests_seen[0]
    assert turn.saved()["content"] == "Antwort eins"
    assert title and title != "New Chat" and question.startswith(title), title
    assert admin.chat(turn.chat_id)["title"] == title


QUESTIONS = ["Ich heiße Ada und trinke gern Tee.", "Was ist 2+2?", "Und 3+3?"]
NO_COMPACTION = pytest.mark.skipif(
    not CONTEXT_COMPACTION, reason=f"Open WebUI {OWUI_RELEASE} has no context compaction (it came in 0.10.0)"
)


def answered(summary: str = "", remember: dict | None = None):
    """n8n's webhook: each question answered 'Antwort: <question>'; a forwarded compaction with `summary`, a
    forwarded memory review with `remember` (its JSON)."""

    def script(seen: Seen) -> Reply:
        task, question = seen.json().get("task"), seen.json()["chatInput"]
        text = {"context_compaction": summary, "memory_review": json.dumps(remember)}.get(task, f"Antwort: {question}")
        return Reply(headers=STREAM_HEADERS, steps=n8n_reply([text]))

    return script


def settled(turn) -> None:
    """The answer is done and so are Open WebUI's tasks after it (`chat:active` false): the chat can be compacted."""
    turn.wait_done()
    turn.wait(lambda: any(e.type == "chat:active" and e.data.get("active") is False for e in turn.events()), 15)


def chat_of(browser, questions: list[str], **send) -> list:
    """A chat of one turn per question, each asked under the answer before, as the web app asks."""
    turns: list = []
    for question in questions:
        turns.append(browser.send(MODEL, question, after=turns[-1] if turns else None, **send))
        settled(turns[-1])
    return turns


def said(turns: list) -> list[tuple[str, str]]:
    """The chat's messages as (role, text), as Open WebUI saved them."""
    return [pair for t in turns for pair in (("user", t.text), ("assistant", t.saved()["content"]))]


def own_summary(messages: list[tuple[str, str]]) -> str:
    """Open WebUI's summary when the model's answer is empty: a line per compacted message, in its own words."""
    return "\n".join(f"- {role}: {text}" for role, text in messages)


@contextmanager
def chat_settings(admin, **changes):
    """Admin Panel > Settings > Interface (Context Compaction, Token Threshold, ...), put back afterwards."""
    before = admin.call("GET", "/api/v1/chats/config")
    admin.call("POST", "/api/v1/chats/config", {**before, **changes})
    try:
        yield
    finally:
        admin.call("POST", "/api/v1/chats/config", before)


@NO_COMPACTION
@pytest.mark.parametrize("forwarded", [False, True], ids=["answered by the pipe", "forwarded"])
def test_compacting_a_chat_does_not_run_the_workflow(admin, browser, forwarded):
    """Compact (the chat's /compact: POST /api/v1/chats/<id>/compact) on a chat of three turns: Open WebUI asks the
    chat's model for a summary of all but the last message. The pipe answers "", so the summary saved is Open
    WebUI's own, made of the messages' words, and n8n saw the three questions only. Forwarded, the summary is
    n8n's answer to the task `context_compaction`."""
    n8n_summary = "Ada trinkt gern Tee und hat zwei Summen gefragt."
    with LoopbackServer(answered(summary=n8n_summary)) as n8n, chat_settings(admin, ENABLE_CONTEXT_COMPACTION=True):
        admin.set_valves(PIPE_ID, n8n_url=n8n.url, forward_background_tasks=forwarded)
        try:
            turns = chat_of(browser, QUESTIONS)
            compacted = admin.call("POST", f"/api/v1/chats/{turns[-1].chat_id}/compact", {})
            requests_seen = [s.json() for s in n8n.requests]
        finally:
            admin.set_valves(PIPE_ID)

    asked = [r for r in requests_seen if "task" not in r]
    assert [r["chatInput"] for r in asked] == QUESTIONS
    assert [t.saved()["content"] for t in turns] == [f"Antwort: {q}" for q in QUESTIONS]
    tasks = [r for r in requests_seen if "task" in r]
    if forwarded:
        assert [r["task"] for r in tasks] == ["context_compaction"], tasks
        assert tasks[0]["chatInput"].startswith("### Task:\nSummarize the conversation history"), tasks[0]
        summary = n8n_summary
    else:
        assert tasks == []
        summary = own_summary(said(turns)[:-1])  # all but the last answer, which stays in the chat's context
    assert (compacted["compacted"], compacted["dropped_messages"], compacted["kept_messages"]) == (True, 5, 1)
    # What the chat's "Context compacted" line opens to, and what the next question is sent with instead.
    assert turns[-1].saved()["contextSummary"] == summary
    assert compacted["summary_chars"] == len(summary)


@NO_COMPACTION
def test_compaction_past_the_token_threshold_does_not_run_the_workflow(admin, browser):
    """With a Token Threshold the chat is past, the second question is compacted before the pipe is asked: the
    chat shows 'Context compacted' with Open WebUI's own summary of the first turn, and the workflow gets that
    summary as a system message (send_history) and the question, once."""
    with (
        LoopbackServer(answered()) as n8n,
        chat_settings(admin, ENABLE_CONTEXT_COMPACTION=True, CONTEXT_COMPACTION_TOKEN_THRESHOLD=1),
    ):
        admin.set_valves(PIPE_ID, n8n_url=n8n.url, send_history=True)
        try:
            first, second = chat_of(browser, QUESTIONS[:2])
            requests_seen = [s.json() for s in n8n.requests]
        finally:
            admin.set_valves(PIPE_ID)

    summary = own_summary(said([first]))
    assert [r["chatInput"] for r in requests_seen] == QUESTIONS[:2]
    assert all("task" not in r for r in requests_seen), requests_seen
    assert requests_seen[1]["messages"] == [
        {"role": "system", "content": f"[CONVERSATION SUMMARY]\n{summary}"},
        {"role": "user", "content": QUESTIONS[1]},
    ]
    shown = [e.data for e in second.events() if e.type == "context_compaction"]
    assert [(s["description"], s["done"]) for s in shown] == [
        ("Compacting context", False),
        ("Context compacted", True),
    ]
    assert shown[-1]["context_summary"] == summary
    assert second.saved()["content"] == f"Antwort: {QUESTIONS[1]}"
    question = admin.chat(second.chat_id)["chat"]["history"]["messages"][second.saved()["parentId"]]
    assert question["contextSummary"] == summary


@contextmanager
def memory_review_on(admin):
    """Memory review after every turn, as ENABLE_MEMORY_BACKGROUND_REVIEW=true and MEMORIES_REVIEW_INTERVAL_TURNS=1
    set it (0.12.4's Admin Panel has no switch for it; an imported config sets the same keys), and the user's own
    Settings > Personalization > Memory on; all put back afterwards, the memories deleted."""
    keys = {"memories.background_review.enable": True, "memories.review_interval_turns": 1}
    exported = admin.call("GET", "/api/v1/configs/export")
    settings = admin.call("GET", "/api/v1/users/user/settings") or {}
    admin.call("POST", "/api/v1/configs/import", {"config": keys})
    memory_on = {**settings, "ui": {**(settings.get("ui") or {}), "memory": True}}
    admin.call("POST", "/api/v1/users/user/settings/update", memory_on)
    try:
        yield
    finally:
        admin.call("POST", "/api/v1/configs/import", {"config": {key: exported.get(key) for key in keys}})
        admin.call("POST", "/api/v1/users/user/settings/update", {**settings, "ui": settings.get("ui") or {}})
        admin.call("DELETE", "/api/v1/memories/delete/user")


@pytest.mark.skipif(not MEMORY_REVIEW, reason=f"Open WebUI {OWUI_RELEASE} has no memory review (it came in 0.10.0)")
def test_memory_review_does_not_run_the_workflow_and_remembers_nothing(admin, browser):
    """With memory review on and the user's Memory on, Open WebUI asks the chat's model after each turn what to
    remember. The pipe answers {"operations": []}: once no review is left running in the server, n8n has seen the
    question only and no memory is saved. Forwarded, the next turn's review reaches n8n with its task and n8n's
    answer is remembered: so a review does run for this chat, and the probe sees it running while n8n holds it."""
    remember = {"operations": [{"action": "add", "type": "user", "content": "Heißt Ada und trinkt gern Tee"}]}
    hold_review, forwarding = Gate(), threading.Event()
    answer = answered(remember=remember)

    def script(seen: Seen) -> Reply:
        reply = answer(seen)
        if forwarding.is_set() and seen.json().get("task") == "memory_review":
            reply.head_gate = hold_review
        return reply

    with LoopbackServer(script) as n8n, memory_review_on(admin):
        admin.set_valves(PIPE_ID, n8n_url=n8n.url)
        try:
            features = admin.web_app_features()
            (first,) = chat_of(browser, QUESTIONS[:1], features=features)
            wait_for(lambda: admin.memory_reviews_running() == 0, 15, "the first turn's memory review to end")
            seen_after_review = [s.json() for s in n8n.requests]
            remembered_after_review = admin.call("GET", "/api/v1/memories/")

            forwarding.set()
            admin.set_valves(PIPE_ID, n8n_url=n8n.url, forward_background_tasks=True)
            second = browser.send(MODEL, QUESTIONS[1], after=first, features=features)
            second.wait_done()
            wait_for(lambda: len(n8n.requests) == 3, 15, "the second turn's memory review at n8n")
            running_while_held = admin.memory_reviews_running()
            hold_review.open()
            remembered = wait_for(lambda: admin.call("GET", "/api/v1/memories/"), 15, "the memory n8n's review added")
            review = n8n.requests[2].json()
        finally:
            hold_review.open()
            admin.set_valves(PIPE_ID)

    assert features == {"memory": True}
    assert [(r["chatInput"], "task" in r) for r in seen_after_review] == [(QUESTIONS[0], False)]
    assert first.saved()["content"] == f"Antwort: {QUESTIONS[0]}"
    assert remembered_after_review == []  # Settings > Personalization > Memory > Manage: nothing
    assert running_while_held == 1
    assert review["task"] == "memory_review"
    assert f"user: {QUESTIONS[1]}" in review["chatInput"]
    assert [(m["content"], m["type"], m["meta"]["created_by"]) for m in remembered] == [
        ("Heißt Ada und trinkt gern Tee", "user", "background_review")
    ]


def test_server_log_shows_no_pipe_failure(owui):
    """Runs last: nothing above made the pipe log an exception inside Open WebUI."""
    log = owui.log_text()
    assert "n8n exchange failed" not in log
    assert "internal error in the n8n pipe" not in log
    tracebacks = [block for block in log.split("Traceback (most recent call last)")[1:] if "function_n8n" in block]
    assert not tracebacks, tracebacks[0][:3000]


def final_status_says_stopped(turn) -> dict | None:
    statuses = turn.statuses()
    last = statuses[-1] if statuses else {}
    return last if last.get("done") is True and "stop" in last.get("description", "").lower() else None


def wait_until(condition, timeout: float):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n" + bytes(range(256))


def file_item(uploaded: dict, kind: str) -> dict:
    """A `files` entry as the web app sends it for an uploaded file."""
    meta = uploaded.get("meta") or {}
    return {
        "type": kind,
        "file": uploaded,
        "id": uploaded["id"],
        "url": uploaded["id"] if kind == "image" else f"/api/v1/files/{uploaded['id']}",
        "name": meta.get("name"),
        "content_type": meta.get("content_type"),
        "status": "uploaded",
        "size": meta.get("size"),
        "context": "full",
    }


def form_parts(seen: Seen) -> list:
    """The multipart body as a mail parser reads it: one part per form field or file."""
    head = f"Content-Type: {seen.headers['content-type']}\r\n\r\n".encode()
    return list(email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + seen.body).iter_parts())


def multipart_files(seen: Seen) -> list[tuple[str, str, bytes]]:
    return [
        (p.get_filename(), p.get_content_type(), p.get_payload(decode=True))
        for p in form_parts(seen)
        if p.get_filename()
    ]


def multipart_fields(seen: Seen) -> dict[str, str]:
    parts = [p for p in form_parts(seen) if not p.get_filename()]
    return {p.get_param("name", header="content-disposition"): p.get_content() for p in parts}


def test_an_uploaded_png_and_pdf_reach_the_workflow(admin, browser):
    png = admin.upload("photo.png", PNG, "image/png")
    pdf = admin.upload("Bericht.pdf", PDF, "application/pdf")
    with LoopbackServer([streamed(["Got", " both"])]) as n8n:
        admin.set_valves(PIPE_ID, n8n_url=n8n.url)
        turn = browser.send(
            MODEL,
            "What do these show?",
            images=["data:image/png;base64," + base64.b64encode(PNG).decode()],
            files=[file_item(png, "image"), file_item(pdf, "file")],
        )
        turn.wait_done(60)

    assert turn.text_shown() == "Got both"
    assert len(n8n.requests) == 1
    seen = n8n.requests[0]
    assert seen.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert multipart_fields(seen)["chatInput"] == "What do these show?"
    assert multipart_files(seen) == [("image-1.png", "image/png", PNG), ("Bericht.pdf", "application/pdf", PDF)]


def test_with_a_document_the_workflow_gets_the_users_words_not_the_rag_prompt(admin, browser):
    """Open WebUI puts an attached document's text and the question into its RAG template; 0.6.43 and 0.12.4
    put that into the user's message the pipe is given (0.6.30 into a system message). chatInput must still be
    what the user typed (the web app's user_message / parent_message)."""
    notes = admin.upload("notizen.txt", b"Das Treffen ist am Dienstag um 10 Uhr.", "text/plain")
    with LoopbackServer([streamed(["Am", " Dienstag"])]) as n8n:
        admin.set_valves(PIPE_ID, n8n_url=n8n.url)
        turn = browser.send(MODEL, "Wann ist das Treffen?", files=[file_item(notes, "file")])
        turn.wait_done(60)

    assert turn.text_shown() == "Am Dienstag"
    seen = n8n.requests[0]
    assert multipart_fields(seen)["chatInput"] == "Wann ist das Treffen?"
    assert [(name, kind) for name, kind, _ in multipart_files(seen)] == [("notizen.txt", "text/plain")]
