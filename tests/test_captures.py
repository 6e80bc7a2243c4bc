"""The captures of a real n8n 2.41.1 (tests/data/n8n-wire) played to the pipe as n8n sent them.

The other tests build n8n's replies with `n8n_line`; these tie both the encoder and the pipe to
the bytes n8n really wrote, so a test's reply is never a guess at n8n's format.
"""

from __future__ import annotations

import json

import pytest
from loopback import LoopbackServer, Reply
from n8n_wire import CAPTURES, Capture, n8n_line, read_capture

MODEL_FAILED = (
    "The model behind the workflow failed (its credential, URL or model name, or the model server): "
    "open the workflow's Executions list in n8n to see which node failed and why."
)

TOKENS = ["Hello", " from", " the", " fake", " model", "!", " Line2\n", 'tab\tquote"', " ünïcødé", " END"]
TEXT = "".join(TOKENS)
AUTH_ADVICE = "Check the `n8n_bearer_token` and `auth_header_name` valves against the webhook's credential."
NOT_FOUND = "n8n: webhook not found (HTTP 404). The requested webhook"
# The whole text the chat shows. Replayed without its pauses, a reply's lines arrive together, so how
# they fall into chat chunks is the network's doing; tests/test_formats.py proves token-by-token arrival.
SHOWN = {
    "stream-ollama.txt": TEXT,
    "stream-keepalive-hang.txt": TEXT,
    "stream-openai-tool.txt": "Let me calculate.\n\n" + TEXT,
    "stream-rtw.txt": TEXT,
    "stream-then-fail.txt": TEXT + "\n\n⚠️ n8n error in Stop and Error: the workflow failed",
    "stream-error-midstream.txt": "Hello from the\n\n⚠️ n8n error in AI Agent: Original error: TypeError. "
    + MODEL_FAILED,
    "stream-error-model500.txt": "⚠️ n8n error in AI Agent: Original error: ResponseError. " + MODEL_FAILED,
    "stream-no-streaming-node.txt": (
        "⚠️ n8n answered with an empty body: a Webhook set to respond 'Streaming' does that when no node streams. "
        "Turn on 'Enable Streaming' in the AI Agent's options, or set the Webhook to respond "
        "'When Last Node Finishes'."
    ),
    "lastnode-ollama.txt": TEXT,
    "lastnode-allentries.txt": TEXT,
    "onreceived.txt": (
        "⚠️ n8n answered 'Workflow was started': the webhook replies before the workflow runs. "
        "In the Webhook node set Respond to 'Streaming' (or 'When Last Node Finishes')."
    ),
    "lastnode-error-model500.txt": "⚠️ n8n answered HTTP 500: Error in workflow",
    "basicauth-missing.txt": f"⚠️ n8n rejected the request (HTTP 401: Authorization is required!). {AUTH_ADVICE}",
    "basicauth-wrong.txt": f"⚠️ n8n rejected the request (HTTP 401: Authentication data is wrong!). {AUTH_ADVICE}",
    "headerauth-missing.txt": f"⚠️ n8n rejected the request (HTTP 403: Authorization data is wrong!). {AUTH_ADVICE}",
    "headerauth-wrong.txt": f"⚠️ n8n rejected the request (HTTP 403: Authorization data is wrong!). {AUTH_ADVICE}",
    "404-test-url.txt": (
        f'⚠️ {NOT_FOUND} "stream-ollama" is not registered. '
        "Click the 'Execute workflow' button on the canvas, then try again. (In test mode, the webhook only "
        "works for one call after you click this button). Check the `n8n_url` valve. "
        "Test URLs (/webhook-test/) answer only while the n8n editor is listening ('Execute workflow')."
    ),
    "404-unregistered.txt": (
        f'⚠️ {NOT_FOUND} "POST does-not-exist" is not registered. '
        "The workflow must be active for a production URL to run successfully. You can activate the workflow "
        "using the toggle in the top-right of the editor. Note that unlike test URL calls, production URL calls "
        "aren't shown on the canvas (only in the executions list). Check the `n8n_url` valve. "
        "Production URLs (/webhook/) need the workflow to be active (published) in n8n."
    ),
}


def replayed(capture: Capture) -> Reply:
    """The capture's status, headers and body lines, one write per line as n8n wrote them; without
    its pauses, which change when text appears and how it is cut into chunks, but not what it says."""
    names = {name for name, _ in capture.headers}
    mode = "chunked" if "Transfer-Encoding" in names else "length" if "Content-Length" in names else "close"
    headers = [(k, v) for k, v in capture.headers if k not in ("Transfer-Encoding", "Content-Length")]
    return Reply(status=capture.status, headers=headers, steps=capture.body, body_mode=mode)


@pytest.mark.parametrize("name", sorted(p.name for p in CAPTURES.iterdir()))
def test_a_captured_reply_shows_exactly_this_text(chat, name):
    """Every capture kept as test data is played here: one missing from SHOWN fails with KeyError."""
    capture = read_capture(name)
    with LoopbackServer([replayed(capture)]) as server:
        # The captured path: whether it is a test URL (/webhook-test/) changes the 404 advice.
        turn = chat(n8n_url=f"http://127.0.0.1:{server.port}{capture.path}", n8n_bearer_token="wrong-token")
        shown, final = turn.run()
        assert len(server.requests) == 1

    assert "".join(shown) == SHOWN[name]
    assert final["done"] is True


def test_n8n_line_writes_the_stream_lines_n8n_writes():
    """Byte for byte the `begin`, `item` and `end` lines of stream-ollama.txt, but for their timestamp."""
    lines = read_capture("stream-ollama.txt").body
    for captured in lines:
        sent = json.loads(captured)
        ours = n8n_line(sent["type"], sent.get("content"))
        assert ours.replace(b"1795572217527", str(sent["metadata"]["timestamp"]).encode()) == captured
    assert [json.loads(line).get("content") for line in lines[1:-1]] == TOKENS
