"""Field hardening: every odd reply and every broken valve gets words that say what to change, over real
sockets (tests/loopback.py) where it is about a reply; valve problems are said before any request."""

from __future__ import annotations

import re
import socket
import threading
from typing import Any, get_args

import pytest
import urllib3
from chat_helpers import answered_with
from loopback import CAPTURE_HEADERS, LoopbackServer, Reply, n8n_reply
from pydantic import ValidationError

from pipe_n8n_stream import VALVES_AT, Failure, FailureCode, FinalResponse, Pipe, failure_words, n8n_error_advice

N8N_STREAM = CAPTURE_HEADERS["n8n-stream"]
HTML = [("Content-Type", "text/html; charset=utf-8")]
N8N_JSON = [("Content-Type", "application/json; charset=utf-8")]
NGINX_PAGE = b"<html>\r\n<head><title>%s</title></head>\r\n<body>\r\n<center><h1>%s</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"  # noqa: E501
SECRET = "tok-field-5ecret"


def said_before_any_request(chat: Any, path: str = "/webhook/test", **valves: Any) -> tuple[list[str], Any]:
    """(what the chat shows, the final status) for a valve problem: n8n never hears of the turn."""
    with LoopbackServer([Reply(headers=N8N_STREAM, steps=n8n_reply(["Hi"]))]) as server:
        shown, final = chat(n8n_url=f"http://127.0.0.1:{server.port}{path}", **valves).run()
        assert server.requests == []
    return shown, final


def assert_said(shown: list[str], final: dict[str, Any], message: str) -> None:
    assert shown == [f"⚠️ {message}"]
    assert final == {"description": message, "done": True}


WITH_API_KEY = (
    " With the `n8n_api_key` valve set (scopes execution:read, execution:list), the pipe would have fetched the "
    "answer from n8n's execution."
)


def said_with_seconds(shown: list[str], final: dict[str, Any], template: str) -> None:
    """The message with its measured seconds (a loopback answers at once: under 5 s, one decimal)."""
    seconds = re.search(r"after (\d+\.\d) s", shown[0])
    assert seconds is not None and float(seconds.group(1)) < 5
    assert_said(shown, final, template.format(seconds.group(1)))


# ---------------------------------------------------------------------------
# 1. A proxy's 5xx says it was the proxy, how long it waited, and what to raise.


def test_a_proxy_504_says_the_workflow_may_still_run_and_names_the_read_timeout(chat):
    page = NGINX_PAGE % (b"504 Gateway Time-out", b"504 Gateway Time-out")
    reply = Reply(status=504, headers=[("Server", "nginx/1.24.0"), *HTML], steps=[page], body_mode="length")

    shown, final = answered_with(reply, chat)

    said_with_seconds(
        shown,
        final,
        "The proxy in front of n8n answered 504 after {} s; the workflow may still be running; "
        "raise the proxy's read timeout (see deploy/nginx.conf)." + WITH_API_KEY,
    )


def test_a_proxy_502_says_n8n_gave_it_no_answer(chat):
    page = NGINX_PAGE % (b"502 Bad Gateway", b"502 Bad Gateway")
    reply = Reply(status=502, headers=HTML, steps=[page], body_mode="length")

    shown, final = answered_with(reply, chat)

    said_with_seconds(
        shown,
        final,
        "The proxy in front of n8n answered 502 after {} s: it got no valid answer from n8n; the workflow may "
        "still be running. Check that n8n is up and that the proxy points at its port (see deploy/nginx.conf)."
        + WITH_API_KEY,
    )


def test_a_503_page_from_nginx_says_n8n_is_not_available_behind_it(chat):
    page = NGINX_PAGE % (b"503 Service Temporarily Unavailable", b"503 Service Temporarily Unavailable")
    reply = Reply(status=503, headers=[("Server", "nginx"), *HTML], steps=[page], body_mode="length")

    shown, final = answered_with(reply, chat)

    said_with_seconds(
        shown,
        final,
        "The proxy in front of n8n answered 503 after {} s: n8n is not available behind it (stopped, starting "
        "or overloaded); try again once n8n is up." + WITH_API_KEY,
    )


def test_cloudflare_524_names_cloudflares_100_s(chat):
    reply = Reply(status=524, headers=[("Server", "cloudflare"), *HTML], steps=[b"<html></html>"], body_mode="length")

    shown, final = answered_with(reply, chat)

    said_with_seconds(
        shown,
        final,
        "Cloudflare answered 524 after {} s: n8n sent no response within Cloudflare's 100 s; the workflow may "
        "still be running; let the Webhook respond by streaming, or reach n8n without Cloudflare." + WITH_API_KEY,
    )


def test_n8ns_own_json_503_keeps_n8ns_words(chat):
    reply = Reply(status=503, headers=N8N_JSON, steps=[b'{"message":"Database is not ready!"}'], body_mode="length")

    shown, final = answered_with(reply, chat)

    assert_said(shown, final, "n8n answered HTTP 503: Database is not ready!")


# ---------------------------------------------------------------------------
# 2. The token and the header name.


@pytest.mark.parametrize("pasted", [f"Bearer {SECRET}", f"  bearer  {SECRET} ", f"BEARER\t{SECRET}"])
def test_a_token_pasted_with_its_bearer_prefix_is_sent_once_prefixed(chat, pasted):
    reply = Reply(headers=N8N_STREAM, steps=n8n_reply(["Hi"]))
    with LoopbackServer([reply]) as server:
        shown, _ = chat(n8n_url=server.url, n8n_bearer_token=pasted).run()
        assert server.requests[0].headers["authorization"] == f"Bearer {SECRET}"
    assert shown == ["Hi"]


def test_a_bearer_prefix_is_dropped_for_a_custom_header_too(chat):
    reply = Reply(headers=N8N_STREAM, steps=n8n_reply(["Hi"]))
    with LoopbackServer([reply]) as server:
        chat(n8n_url=server.url, n8n_bearer_token=f"Bearer {SECRET}", auth_header_name="X-API-Key").run()
        assert server.requests[0].headers["x-api-key"] == SECRET


HEADER_NAME_PROBLEM = (
    "The `auth_header_name` valve is not an HTTP header name: write only the Name of the webhook's Header Auth "
    f"credential in n8n, such as Authorization or X-API-Key, without ':' or spaces ({VALVES_AT})."
)
LINE_BREAK_PROBLEM = (
    f"The `n8n_bearer_token` valve has a line break in it: paste the token alone, on one line ({VALVES_AT})."
)
SPACE_PROBLEM = (
    "The `n8n_bearer_token` valve has a space in it: paste only the token, without a header name or quotes "
    f"({VALVES_AT})."
)
LATIN1_PROBLEM = (
    "The `n8n_bearer_token` valve has a character an HTTP header cannot carry (such as a typographic quote or "
    f"dash): copy the token again from n8n's credential ({VALVES_AT})."
)


@pytest.mark.parametrize(
    ("valves", "message"),
    [
        ({"auth_header_name": "Authorization:"}, HEADER_NAME_PROBLEM),
        ({"auth_header_name": "X-API Key"}, HEADER_NAME_PROBLEM),
        ({"auth_header_name": "X-Api-Key\r\nX-Evil: 1"}, HEADER_NAME_PROBLEM),
        ({"auth_header_name": "X-Schlüssel"}, HEADER_NAME_PROBLEM),
        ({"n8n_bearer_token": f"{SECRET}\nsecond-line"}, LINE_BREAK_PROBLEM),
        ({"n8n_bearer_token": f"{SECRET}\r{SECRET}"}, LINE_BREAK_PROBLEM),
        ({"n8n_bearer_token": f"Authorization: Bearer {SECRET}"}, SPACE_PROBLEM),
        ({"n8n_bearer_token": f"{SECRET} {SECRET}"}, SPACE_PROBLEM),
        ({"n8n_bearer_token": f"“{SECRET}”"}, LATIN1_PROBLEM),
        ({"n8n_bearer_token": f"{SECRET}—x"}, LATIN1_PROBLEM),
    ],
)
def test_a_header_http_cannot_carry_names_its_valve_and_nothing_is_sent(chat, valves, message):
    valves = {"n8n_bearer_token": SECRET, **valves}

    shown, final = said_before_any_request(chat, **valves)

    assert_said(shown, final, message)
    assert SECRET not in shown[0]


def test_without_a_token_the_header_name_is_not_checked(chat):
    reply = Reply(headers=N8N_STREAM, steps=n8n_reply(["Hi"]))

    shown, _ = answered_with(reply, chat, auth_header_name="Authorization:")

    assert shown == ["Hi"]


# ---------------------------------------------------------------------------
# 3. Odd replies: pages, 1xx, 204/304, encodings.

LOGIN_PAGE = (
    b"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Sign in &middot; Authelia</title></head>"
    b"<body><form>password</form></body></html>"
)
EDITOR_PAGE = b"<!DOCTYPE html>\n<html lang='en'>\n\t<head>\n\t\t<title>n8n.io - Workflow Automation</title>"
CANNOT_POST = (
    b'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>Error</title>\n</head>\n'
    b"<body>\n<pre>Cannot POST /api/v1/chat</pre>\n</body>\n</html>\n"
)


def test_a_login_page_is_named_by_its_title_not_shown_as_the_answer(chat):
    reply = Reply(headers=HTML, steps=[LOGIN_PAGE], body_mode="length")

    shown, final = answered_with(reply, chat)

    message = "`n8n_url` answered an HTML page ('Sign in · Authelia'), not the workflow: is a login or proxy page in front of n8n?"  # noqa: E501
    assert_said(shown, final, message)


def test_a_cloudflare_challenge_is_named_by_its_title(chat):
    page = b"<!DOCTYPE html><html lang='en-US'><head><title>Just a moment...</title></head><body></body></html>"
    reply = Reply(status=200, headers=[("Server", "cloudflare"), *HTML], steps=[page], body_mode="close")

    shown, final = answered_with(reply, chat)

    message = "`n8n_url` answered an HTML page ('Just a moment...'), not the workflow: is a login or proxy page in front of n8n?"  # noqa: E501
    assert_said(shown, final, message)


def test_n8ns_editor_page_says_the_url_must_be_the_webhooks(chat):
    reply = Reply(headers=HTML, steps=[EDITOR_PAGE], body_mode="length")

    shown, final = answered_with(reply, chat, path="/n8n/")

    message = (
        "`n8n_url` answered an HTML page ('n8n.io - Workflow Automation'), not the workflow: the URL must be the "
        "Webhook node's Production URL (…/webhook/…), not an n8n editor address."
    )
    assert_said(shown, final, message)


def test_an_express_404_page_is_not_pasted(chat):
    reply = Reply(status=404, headers=HTML, steps=[CANNOT_POST], body_mode="length")

    shown, final = answered_with(reply, chat, path="/api/v1/chat")

    message = (
        "`n8n_url` answered an HTML page (HTTP 404, 'Cannot POST /api/v1/chat'), not the workflow: the URL must "
        "be the Webhook node's Production URL (…/webhook/…), not an n8n editor address."
    )
    assert_said(shown, final, message)


ANSWER = b'{"output":"the real answer"}'


def final_after_interim(*interim: bytes) -> bytes:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(ANSWER)
    return b"".join(interim) + head + ANSWER


EARLY_HINTS = b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
PROCESSING = b"HTTP/1.1 102 Processing\r\n\r\n"


@pytest.mark.parametrize("interim", [(EARLY_HINTS,), (PROCESSING,), (PROCESSING, EARLY_HINTS, EARLY_HINTS)])
def test_final_response_reads_past_102_and_103_to_the_answer(interim):
    class Connection(urllib3.connection.HTTPConnection):
        response_class = FinalResponse

    class Pool(urllib3.HTTPConnectionPool):
        ConnectionCls = Connection

    with LoopbackServer([Reply(raw_head=final_after_interim(*interim))]) as server:
        pool = Pool("127.0.0.1", server.port)
        response = pool.request("POST", "/webhook/test", body=b"{}", preload_content=False)
        assert (response.status, response.headers["Content-Type"], response.read()) == (200, "application/json", ANSWER)
        pool.close()


def test_an_early_hints_reply_does_not_lose_the_answer(chat):
    shown, _ = answered_with(Reply(raw_head=final_after_interim(EARLY_HINTS, PROCESSING)), chat)

    assert shown == ["the real answer"]


def test_204_says_the_workflow_sent_no_answer(chat):
    shown, final = answered_with(Reply(status=204, steps=[], body_mode="length"), chat)

    message = (
        "n8n answered HTTP 204 (No Content): the workflow sent no answer. Set the Webhook's Respond to "
        "'Streaming' or 'When Last Node Finishes', or give the Respond to Webhook node a body."
    )
    assert_said(shown, final, message)


def test_304_says_a_cache_answered_instead_of_n8n(chat):
    shown, final = answered_with(Reply(status=304, headers=[("ETag", '"abc"')], steps=[], body_mode="length"), chat)

    message = (
        "n8n's address answered HTTP 304 (Not Modified), which only answers a cached request: a cache or proxy "
        "in front of n8n answered instead; turn caching off for /webhook/ (see deploy/nginx.conf)."
    )
    assert_said(shown, final, message)


@pytest.mark.parametrize("encoding", ["compress", "gzip, compress"])
def test_an_unknown_content_encoding_is_named_not_shown_as_bytes(chat, encoding):
    reply = Reply(headers=[*N8N_JSON, ("Content-Encoding", encoding)], steps=[b"\x1f\x9d\x90{\x00"], body_mode="length")

    shown, final = answered_with(reply, chat)

    message = (
        "n8n's reply is compressed as 'compress', which the pipe cannot decode (it asks for identity): switch "
        "compression off for /webhook/ in the proxy in front of n8n (see deploy/nginx.conf)."
    )
    assert_said(shown, final, message)


# TLS: https:// against a plain-HTTP port, and a port that takes the connection but never answers the handshake.


def plain_http_port() -> tuple[socket.socket, int]:
    """A port that answers any bytes, a TLS hello too, with a plain HTTP 400, as n8n (Node's http) does."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n")

    threading.Thread(target=serve, daemon=True).start()
    return listener, listener.getsockname()[1]


@pytest.mark.parametrize("verify_ssl", [True, False])
def test_https_against_a_plain_http_port_says_the_scheme_is_wrong(chat, verify_ssl):
    listener, port = plain_http_port()
    with listener:
        shown, final = chat(n8n_url=f"https://127.0.0.1:{port}/webhook/test", verify_ssl=verify_ssl).run()

    message = (
        f"n8n at 127.0.0.1:{port} speaks plain HTTP, not HTTPS: write http:// instead of https:// "
        "in the `n8n_url` valve."
    )
    assert_said(shown, final, message)


def test_a_stalled_tls_handshake_names_connect_timeout(chat):
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: accepted.append(listener.accept()[0]), daemon=True).start()
    port = listener.getsockname()[1]
    try:
        shown, final = chat(
            n8n_url=f"https://127.0.0.1:{port}/webhook/test", connect_timeout=0.3, read_timeout=300
        ).run()
    finally:
        listener.close()
        for conn in accepted:
            conn.close()

    message = (
        f"Cannot reach n8n at 127.0.0.1:{port}: the TLS handshake did not finish within 0.3 s (connect_timeout). "
        "Is this port serving HTTPS?"
    )
    assert_said(shown, final, message)


# n8n's own failures with the advice they need.


def test_no_authentication_data_says_to_create_the_webhooks_credential(chat):
    # n8n-nodes-base Webhook/utils.js: WebhookAuthorizationError(500, ...), plain text like the 401/403 replies
    reply = Reply(status=500, steps=[b"No authentication data defined on node!"], body_mode="length")

    shown, final = answered_with(reply, chat)

    message = (
        "n8n answered HTTP 500: No authentication data defined on node! The Webhook node's Authentication has no "
        "credential: in n8n, open the Webhook node, create or pick the credential under Authentication, then "
        "publish the workflow again."
    )
    assert_said(shown, final, message)


MODEL_FAILED = (
    "The model behind the workflow failed (its credential, URL or model name, or the model server): open the "
    "workflow's Executions list in n8n to see which node failed and why."
)


@pytest.mark.parametrize(
    # tests/data/n8n-wire/stream-error-model500.txt and stream-error-midstream.txt
    "reason",
    ["Original error: TypeError", "Original error: ResponseError", "ResponseError: model 'x' not found"],
)
def test_an_agents_original_error_says_the_model_failed(reason):
    assert n8n_error_advice(reason) == MODEL_FAILED


def test_other_reasons_get_no_advice():
    assert n8n_error_advice("Error in workflow") == ""


def test_an_http_original_error_gets_the_model_advice(chat):
    reply = Reply(status=500, headers=N8N_JSON, steps=[b'{"message":"Original error: TypeError"}'], body_mode="length")

    shown, final = answered_with(reply, chat)

    assert_said(shown, final, f"n8n answered HTTP 500: Original error: TypeError. {MODEL_FAILED}")


# URLs that are no webhook: said before the request.


@pytest.mark.parametrize("path", ["/workflow/Xk2p9QyL3", "/home/workflows", "/projects/abc/workflows"])
def test_an_editor_url_says_to_use_the_webhooks_production_url(chat, path):
    shown, final = said_before_any_request(chat, path=path)

    message = (
        "The `n8n_url` valve is an n8n editor page, not a webhook: it must be the Webhook node's Production URL "
        f"(…/webhook/…), copied from the Webhook node in n8n ({VALVES_AT})."
    )
    assert_said(shown, final, message)


@pytest.mark.parametrize("path", ["", "/"])
def test_a_bare_n8n_address_says_to_use_the_webhooks_production_url(chat, path):
    shown, final = said_before_any_request(chat, path=path)

    message = (
        "The `n8n_url` valve is n8n's address alone, not a webhook: it must be the Webhook node's Production URL "
        f"(…/webhook/…), copied from the Webhook node in n8n ({VALVES_AT})."
    )
    assert_said(shown, final, message)


def test_a_renamed_webhook_path_still_goes_out(chat):
    # N8N_ENDPOINT_WEBHOOK can rename /webhook/: other paths are sent as they are
    shown, _ = answered_with(Reply(headers=N8N_STREAM, steps=n8n_reply(["Hi"])), chat, path="/hooks/agent")

    assert shown == ["Hi"]


# ---------------------------------------------------------------------------
# Valves validated when saved (Open WebUI shows the ValidationError's text and keeps the old valves).


@pytest.mark.parametrize("valve", ["connect_timeout", "read_timeout"])
@pytest.mark.parametrize("value", [0, -1, float("inf"), float("nan")])
def test_timeouts_must_be_finite_and_positive(valve, value):
    with pytest.raises(ValidationError) as error:
        Pipe.Valves(**{valve: value})
    assert error.value.errors()[0]["loc"] == (valve,)


@pytest.mark.parametrize(
    ("valves", "said"),
    [
        ({"input_field": "stream"}, "`input_field` may not be 'stream': the pipe sets that payload field itself"),
        ({"session_field": "messages"}, "`session_field` may not be 'messages': the pipe sets that payload field"),
        ({"input_field": "task"}, "`input_field` may not be 'task'"),
        ({"session_field": "chatInput"}, "`session_field` may not be 'chatInput' like `input_field`"),
        ({"input_field": "q", "session_field": "q"}, "`session_field` may not be 'q' like `input_field`"),
        ({"input_field": " "}, "`input_field` may not be empty"),
    ],
)
def test_payload_fields_may_not_collide(valves, said):
    with pytest.raises(ValidationError) as error:
        Pipe.Valves(**valves)
    assert said in str(error.value)


def test_the_default_valves_are_valid():
    assert Pipe.Valves().model_dump() == Pipe.Valves(**Pipe.Valves().model_dump()).model_dump()


# ---------------------------------------------------------------------------
# The `models` valve: broken lines are said, removed models never reach another workflow.


def models_chat(chat: Any, server: LoopbackServer, models: str, model: str, n8n_url: str = "") -> list[str]:
    body = {"model": model, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    shown, _ = chat(models=models, n8n_url=n8n_url).run(body=body, __user__=None, __metadata__={"chat_id": "c"})
    return shown


@pytest.mark.parametrize(
    ("line", "fault"),
    [
        ("Sales https://n8n.example.com/webhook/sales", "has no '='"),
        ("= https://n8n.example.com/webhook/sales", "has no name before '='"),
        ("Sales =", "has no URL after '='"),
    ],
)
def test_a_broken_models_line_is_said_and_nothing_is_sent(chat, line, fault):
    with LoopbackServer([Reply(headers=N8N_STREAM, steps=n8n_reply(["Hi"]))]) as server:
        models = f"Support = {server.url}\n\n# a comment\n{line}\n"
        shown = models_chat(chat, server, models, "n8n_stream.support")
        assert server.requests == []

    message = (
        f"Line 4 of the `models` valve ('{line}') {fault}: write one 'Name = URL' per line, or start the line "
        f"with # ({VALVES_AT})."
    )
    assert shown == [f"⚠️ {message}"]


@pytest.mark.parametrize(
    ("n8n_url", "model"), [("", "n8n_stream.sales"), ("set", "n8n_stream.sales"), ("", "n8n_stream.n8n")]
)
def test_a_removed_model_never_reaches_another_workflow(chat, n8n_url, model):
    with LoopbackServer([Reply(headers=N8N_STREAM, steps=n8n_reply(["Hi"]))]) as server:
        url = server.url if n8n_url else ""
        shown = models_chat(chat, server, f"Support = {server.url}", model, n8n_url=url)
        assert server.requests == []

    entry = model.rsplit(".", 1)[1]
    message = (
        f"This model ('{entry}') no longer exists in the pipe's `models` valve: pick another model for this chat, "
        f"or add its 'Name = URL' line back ({VALVES_AT})."
    )
    assert shown == [f"⚠️ {message}"]


def test_a_model_whose_models_valve_was_emptied_is_said_too(chat):
    with LoopbackServer([Reply(headers=N8N_STREAM, steps=n8n_reply(["Hi"]))]) as server:
        shown = models_chat(chat, server, "", "n8n_stream.support", n8n_url=server.url)
        assert server.requests == []
    assert shown[0].startswith("⚠️ This model ('support') no longer exists in the pipe's `models` valve")


@pytest.mark.parametrize(
    ("models", "model"), [("", "n8n_stream.n8n"), ("", "n8n"), ("# only a comment", "n8n_stream.n8n")]
)
def test_the_single_model_still_uses_n8n_url(chat, models, model):
    with LoopbackServer([Reply(headers=N8N_STREAM, steps=n8n_reply(["Hi"]))]) as server:
        shown = models_chat(chat, server, models, model, n8n_url=server.url)
        assert len(server.requests) == 1
    assert shown == ["Hi"]


def test_the_old_single_model_keeps_n8n_url_next_to_models(chat):
    with LoopbackServer([Reply(headers=N8N_STREAM, steps=n8n_reply(["Hi"]))]) as server:
        shown = models_chat(
            chat, server, "Support = http://127.0.0.1:9/webhook/x", "n8n_stream.n8n", n8n_url=server.url
        )
        assert len(server.requests) == 1
    assert shown == ["Hi"]


def test_every_failure_code_has_its_words():
    """A new failure code without a sentence would reach the chat as nothing: each one says something."""
    for code in get_args(FailureCode):
        said = failure_words(
            Failure(code, host="n8n.example.com:443", status=500, message="m", cause="connection_reset")
        )
        assert said.strip() and "None" not in said, code
