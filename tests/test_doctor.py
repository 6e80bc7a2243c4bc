"""The webhook doctor (`python pipe_n8n_stream.py check URL`): the verdict and the exit code."""

import pytest
from fake_n8n_api import FakeN8nApi
from loopback import CAPTURE_HEADERS, LoopbackServer, Reply, n8n_reply

from pipe_n8n_stream import main

N8N_STREAM = CAPTURE_HEADERS["n8n-stream"]
JSON = [("Content-Type", "application/json; charset=utf-8")]
TOKENS = ["Hello", " from", " the", " agent"]


def check(reply: Reply, *args: str) -> tuple[int, list]:
    """Run the doctor against one scripted webhook: its exit code and the requests n8n saw."""
    with LoopbackServer([reply]) as server:
        return main(["check", server.url, *args]), list(server.requests)


def verdict_line(out: str) -> str:
    return next(line for line in out.splitlines() if line.startswith("verdict: "))


def test_a_streaming_webhook_streams(capsys):
    spaced = [step for line in n8n_reply(TOKENS) for step in (line, 0.05)]
    code, _ = check(Reply(headers=N8N_STREAM, steps=spaced))
    out = capsys.readouterr().out
    assert out.startswith("Hello from the agent")
    assert "format: n8n stream" in out
    assert "chunks: 4, arriving over" in out
    assert verdict_line(out) == "verdict: streams"
    assert code == 0


def test_a_proxy_that_holds_the_stream_back_is_called_buffered(capsys):
    # Everything arrives in one write after a second: what nginx with proxy_buffering on does.
    held_back = b"".join(n8n_reply(TOKENS))
    code, _ = check(Reply(headers=N8N_STREAM, steps=[1.0, held_back]))
    line = verdict_line(capsys.readouterr().out)
    assert line.startswith("verdict: buffered: every chunk arrived within ")
    assert line.endswith("a proxy is buffering (see deploy/nginx.conf)")
    assert code == 1


def test_a_last_node_webhook_is_complete_json(capsys):
    body = b'{"output":"Hello from the fake model!"}'
    code, _ = check(Reply(headers=JSON, steps=[body], body_mode="length"))
    out = capsys.readouterr().out
    assert "format: complete JSON" in out
    assert verdict_line(out).startswith("verdict: complete JSON: the workflow is not set to stream")
    assert code == 1


def test_streaming_mode_with_no_streaming_node(capsys):
    code, _ = check(Reply(headers=N8N_STREAM, steps=[]))
    assert verdict_line(capsys.readouterr().out) == (
        "verdict: streaming mode but nothing streams: enable streaming on the AI Agent"
    )
    assert code == 1


REJECTED = (
    "verdict: authentication failed: n8n rejected the token: check --token and --auth-header against the "
    "webhook's Header Auth credential (the `n8n_bearer_token` and `auth_header_name` valves)"
)


@pytest.mark.parametrize(
    ("status", "body"), [(401, b"Authorization is required!"), (403, b"Authorization data is wrong!")]
)
def test_a_rejected_token_is_named_and_never_printed(capsys, status, body):
    code, requests = check(Reply(status=status, steps=[body]), "--token", "tok-doctor-5ecret")
    out = capsys.readouterr().out
    assert verdict_line(out) == REJECTED
    assert "tok-doctor-5ecret" not in out
    assert requests[0].headers["authorization"] == "Bearer tok-doctor-5ecret"
    assert code == 1


def test_no_token_given_is_not_called_a_rejected_token(capsys):
    code, _ = check(Reply(status=403, steps=[b"Authorization data is wrong!"]))
    assert verdict_line(capsys.readouterr().out) == (
        "verdict: authentication failed: the webhook wants a credential and no token was given: pass it with "
        "--token (the `n8n_bearer_token` valve)"
    )
    assert code == 1


def test_a_pasted_bearer_prefix_is_spotted_and_dropped(capsys):
    code, requests = check(Reply(status=403, steps=[b"Authorization data is wrong!"]), "--token", "Bearer tok-5ecret")
    out = capsys.readouterr().out
    assert verdict_line(out) == REJECTED.replace(
        "rejected the token:", "rejected the token (the 'Bearer ' you pasted was dropped: the pipe adds it itself):"
    )
    assert requests[0].headers["authorization"] == "Bearer tok-5ecret"
    assert "tok-5ecret" not in out
    assert code == 1


def test_an_unregistered_webhook_prints_n8ns_hint_once(capsys):
    body = (
        b'{"code":404,"message":"The requested webhook \\"POST does-not-exist\\" is not registered.",'
        b'"hint":"The workflow must be active for a production URL to run successfully."}'
    )
    code, _ = check(Reply(status=404, headers=JSON, steps=[body], body_mode="length"))
    out = capsys.readouterr().out
    assert verdict_line(out) == "verdict: webhook not found: see n8n's words and the fix above"
    assert out.count("The workflow must be active") == 1
    assert out.count("Check the `n8n_url` valve.") == 1
    assert code == 1


def test_an_editor_url_is_said_before_any_request(capsys):
    with LoopbackServer([Reply(status=200, steps=[b"{}"])]) as server:
        code = main(["check", f"http://127.0.0.1:{server.port}/workflow/Xk2p9QyL3"])
        assert server.requests == []
    assert verdict_line(capsys.readouterr().out).startswith("verdict: The `n8n_url` valve is an n8n editor page")
    assert code == 1


def test_check_file_sends_the_file_as_a_form_and_says_n8n_accepted_it(capsys, tmp_path):
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(b"%PDF-1.4 doctor")
    code, seen = check(Reply(headers=N8N_STREAM, steps=n8n_reply(TOKENS)), "--file", str(pdf))
    out = capsys.readouterr().out
    assert seen[0].headers["content-type"].startswith("multipart/form-data; boundary=")
    assert b'filename="report.pdf"\r\nContent-Type: application/pdf\r\n\r\n%PDF-1.4 doctor\r\n' in seen[0].body
    assert (
        "file: report.pdf (application/pdf, 15 bytes) sent as multipart/form-data: n8n accepted it (HTTP 200); "
        "the workflow finds it as the binary property data0"
    ) in out
    assert code == 0


def test_check_file_says_when_n8n_refused_it(capsys, tmp_path):
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(b"%PDF")
    check(
        Reply(status=413, headers=JSON, steps=[b'{"message":"request entity too large"}'], body_mode="length"),
        "--file",
        str(pdf),
    )
    out = capsys.readouterr().out
    assert "file: report.pdf (application/pdf, 4 bytes) sent as multipart/form-data: n8n refused it (HTTP 413)" in out


def webhook_workflow(path: str, saves_progress: bool) -> dict:
    """An item of n8n's `GET /workflows` (workflows-list-by-tag.json's shape): its published Webhook's path."""
    settings = {"executionOrder": "v1", **({"saveExecutionProgress": True} if saves_progress else {})}
    webhook = {"type": "n8n-nodes-base.webhook", "parameters": {"path": path}, "webhookId": "0000"}
    return {
        "id": "wf1",
        "settings": settings,
        "activeVersion": {"nodes": [webhook]},
        "nodes": [],
        "tags": [],
        "active": True,
    }


@pytest.mark.parametrize(
    ("listed", "said"),
    [
        ([webhook_workflow("test", True)], "tool steps live: the workflow saves its progress"),
        ([webhook_workflow("test", False)], "tool steps after the answer, not live"),
        ([webhook_workflow("other", True)], "tool steps live only if the workflow saves its progress"),
    ],
)
def test_the_doctor_says_whether_tool_steps_and_usage_show_and_whether_live(capsys, listed, said):
    api = FakeN8nApi(workflows=listed, stop_status=404, stop_body={"message": "Failed to find execution"})
    try:
        spaced = [step for line in n8n_reply(TOKENS) for step in (line, 0.05)]
        check(Reply(headers=N8N_STREAM, steps=spaced), "--api-key", "k-secret-1234", "--api-url", api.url)
    finally:
        api.close()
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("agent's work: "))
    assert line.startswith("agent's work: tool steps and usage will show (from n8n's execution); ")
    assert said in line
    assert any(call.path == "/api/v1/workflows" for call in api.calls)


def test_the_doctor_says_why_tool_steps_and_usage_will_not_show(capsys):
    api = FakeN8nApi(list_status=401)
    try:
        check(Reply(headers=N8N_STREAM, steps=n8n_reply(TOKENS)), "--api-key", "k-secret-1234", "--api-url", api.url)
    finally:
        api.close()
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("agent's work: "))
    assert line == (
        "agent's work: tool steps and usage will not show in a streamed reply: n8n rejected the `n8n_api_key` "
        "(HTTP 401): create a new API key in n8n (Settings > n8n API)"
    )
