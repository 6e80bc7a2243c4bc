"""Secrets stay where they belong: the token goes only to the configured webhook (no redirect is
followed, no ~/.netrc entry or URL credential replaces it), proxies from the environment still work
and are named when they fail, and no message, status or log line carries the token or the webhook's
path. Real sockets on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import socket

import pytest
from loopback import CAPTURE_HEADERS, LoopbackServer, Reply, Seen, n8n_reply

from pipe_n8n_stream import redact

N8N_STREAM = CAPTURE_HEADERS["n8n-stream"]
TOKEN = "tok-5ecret-9f2c/+=&<>"  # characters that URL-encoding and HTML-escaping change
SECRET_PATH = "/webhook/5f1d7c0a-secret-path"


def refused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_not_followed_and_the_token_stays_with_the_webhook(chat, status):
    with LoopbackServer([Reply(headers=N8N_STREAM, steps=n8n_reply(["never"]))]) as elsewhere:
        target = f"http://127.0.0.1:{elsewhere.port}/webhook/moved"
        redirect = Reply(status=status, headers=[("Location", target)], steps=[], body_mode="length")
        with LoopbackServer([redirect]) as webhook:
            shown, final = chat(n8n_url=webhook.url, n8n_bearer_token=TOKEN, auth_header_name="X-Api-Key").run()
            assert len(webhook.requests) == 1
            assert webhook.requests[0].headers["x-api-key"] == TOKEN
        assert elsewhere.requests == []

    message = f"`n8n_url` redirects to {target} (HTTP {status}): put that URL in the `n8n_url` valve."
    assert shown == [f"⚠️ {message}"]
    assert final == {"description": message, "done": True}


def test_a_relative_redirect_names_the_whole_url(chat):
    redirect = Reply(status=308, headers=[("Location", "/webhook/v2")], steps=[], body_mode="length")
    with LoopbackServer([redirect]) as webhook:
        shown, _ = chat(n8n_url=webhook.url).run()

    assert shown == [
        f"⚠️ `n8n_url` redirects to http://127.0.0.1:{webhook.port}/webhook/v2 (HTTP 308): "
        "put that URL in the `n8n_url` valve."
    ]


def test_a_netrc_entry_never_replaces_the_token(chat, tmp_path, monkeypatch):
    netrc = tmp_path / ".netrc"
    netrc.write_text("machine 127.0.0.1 login someone password netrc-password\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    monkeypatch.setenv("HOME", str(tmp_path))
    reply = Reply(headers=N8N_STREAM, steps=n8n_reply(["ok"]))

    with LoopbackServer([reply, reply]) as server:
        chat(n8n_url=server.url, n8n_bearer_token=TOKEN).run()
        chat(n8n_url=server.url).run()  # no token: no credential at all
        with_token, without = server.requests

    assert with_token.headers["authorization"] == f"Bearer {TOKEN}"
    assert "authorization" not in without.headers


def test_credentials_in_the_url_are_never_sent(chat):
    with LoopbackServer([Reply(headers=N8N_STREAM, steps=n8n_reply(["ok"]))]) as server:
        url = f"http://user:url-password@127.0.0.1:{server.port}/webhook/test"
        shown, _ = chat(n8n_url=url, n8n_bearer_token=TOKEN).run()
        (seen,) = server.requests

    assert shown == ["ok"]
    assert seen.headers["authorization"] == f"Bearer {TOKEN}"


def test_the_proxy_from_the_environment_is_used(chat, monkeypatch):
    # A forward proxy gets the absolute URL in the request line; this one answers as n8n would.
    with LoopbackServer([Reply(headers=N8N_STREAM, steps=n8n_reply(["via", " proxy"]))]) as proxy:
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        shown, _ = chat(n8n_url="http://n8n.internal.invalid:5678/webhook/chat-model").run()
        (seen,) = proxy.requests

    assert "".join(shown) == "via proxy"
    assert seen.path == "http://n8n.internal.invalid:5678/webhook/chat-model"


def test_a_proxy_that_fails_is_named_not_n8n(chat, monkeypatch):
    port = refused_port()
    monkeypatch.setenv("HTTP_PROXY", f"http://proxy-user:proxy-password@127.0.0.1:{port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)

    shown, final = chat(n8n_url="http://n8n.internal.invalid:5678/webhook/x").run()

    message = (
        f"Cannot reach n8n through the proxy at 127.0.0.1:{port} (set by HTTP_PROXY/HTTPS_PROXY in Open WebUI's "
        "environment): connection lost. If Open WebUI should reach n8n directly, add n8n's host to NO_PROXY."
    )
    assert shown == [f"⚠️ {message}"]
    assert final == {"description": message, "done": True}


def test_no_proxy_sends_the_webhook_past_the_proxy(chat, monkeypatch):
    with LoopbackServer([Reply(headers=N8N_STREAM, steps=n8n_reply(["direct"]))]) as n8n:
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{refused_port()}")
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        shown, _ = chat(n8n_url=n8n.url).run()

    assert shown == ["direct"]


@pytest.mark.parametrize(
    "quoted",
    [
        TOKEN,
        "tok-5ecret-9f2c%2F%2B%3D%26%3C%3E",  # URL-encoded
        "tok-5ecret-9f2c%2F%2B%3D%26%3C%3E".replace("%2F", "/"),  # URL-encoded, / kept
        "tok-5ecret-9f2c/+=&amp;&lt;&gt;",  # HTML-escaped
        "tok-5ecret-\n9f2c/+=&<>",  # broken across a line
        "tok-5ecret-9f…",  # shortened
    ],
    ids=["plain", "url-encoded", "url-encoded-path", "html-escaped", "line-broken", "shortened"],
)
def test_the_token_is_redacted_however_a_reply_quotes_it(quoted):
    assert redact(f"n8n said: you sent {quoted} as auth", [TOKEN]) in (
        "n8n said: you sent *** as auth",
        "n8n said: you sent ***… as auth",
    )


def echo_everything(seen: Seen) -> Reply:
    """A webhook that quotes the request back in every way a proxy's error page might."""
    said = f"{seen.path} {json.dumps(seen.headers)} {seen.headers.get('authorization', '')}"
    return Reply(
        status=404,
        headers=[("Content-Type", "application/json")],
        steps=[json.dumps({"message": said}).encode()],
        body_mode="length",
    )


def test_logs_name_host_and_port_only(chat, caplog):
    caplog.set_level(logging.DEBUG)
    with LoopbackServer(echo_everything) as server:
        url = f"http://127.0.0.1:{server.port}{SECRET_PATH}?key=query-secret"
        turn = chat(n8n_url=url, n8n_bearer_token=TOKEN)
        shown, _ = turn.run()

    pipe_logs = [r.getMessage() for r in caplog.records if r.name == "pipe_n8n_stream"]
    every_log = " ".join(r.getMessage() for r in caplog.records)
    assert TOKEN not in "".join(shown)
    assert pipe_logs
    assert all(f"127.0.0.1:{server.port}" in line for line in pipe_logs)
    assert "5f1d7c0a-secret-path" not in every_log
    assert "query-secret" not in every_log
    assert TOKEN not in every_log
