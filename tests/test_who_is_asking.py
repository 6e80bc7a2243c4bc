"""Who is asking, proven: with the `jwt_secret` valve each turn carries its own HS256 token that n8n's JWT Auth
verifies (signature, expiry) and hands to the workflow as `$json.jwtPayload`; the secret never leaves. And the
`extra_headers` valve for a gateway in front of n8n. Real sockets on 127.0.0.1; the tokens are checked as n8n
checks them (tests/jwt_check.py)."""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import pytest
from fake_n8n_api import FakeN8nApi
from jwt_check import InvalidSignature, JwtExpired, verified_claims
from loopback import CAPTURE_HEADERS, LoopbackServer, Reply, Seen, n8n_reply
from pydantic import ValidationError

from pipe_n8n_stream import Pipe, Settings, Turn, main, redact, stop_execution, webhook_request

N8N_STREAM = CAPTURE_HEADERS["n8n-stream"]
SECRET = "jwt-5ecret-0f-the-n8n-credential"
TOKEN = "static-header-auth-token-77"
GATEWAY = "CF-Access-Client-Id: 1a2b3c.access\nCF-Access-Client-Secret: cf-5ecret-9d8e7f6a5b4c"
GATEWAY_SECRET = "cf-5ecret-9d8e7f6a5b4c"
USER = {"id": "u-42", "name": "Ada Lovelace", "email": "ada@example.com", "role": "admin"}
# n8n 2.41.1 answers its auth failures in plain text, without a Content-Type (tests/data/n8n-wire/headerauth-*.txt).
REFUSED = [("WWW-Authenticate", 'Basic realm="Webhook"'), ("Connection", "keep-alive")]


def bearer(seen: Seen) -> str:
    scheme, _, token = seen.headers.get("authorization", "").partition(" ")
    assert scheme == "Bearer", seen.headers
    return token


def refused(status: int, message: str) -> Reply:
    return Reply(status=status, headers=REFUSED, steps=[message.encode()])


def jwt_auth(secret: str) -> Callable[[Seen], Reply]:
    """A Webhook with Authentication: JWT Auth, answering as n8n 2.41.1 does (../shared/README.md)."""

    def answer(seen: Seen) -> Reply:
        if "authorization" not in seen.headers:
            return refused(401, "No token provided")
        try:
            verified_claims(bearer(seen), secret)
        except (JwtExpired, InvalidSignature) as refusal:
            return refused(403, str(refusal))
        return Reply(headers=N8N_STREAM, steps=n8n_reply(["Hello", " Ada"]))

    return answer


def one_turn(chat: Any, reply: Reply | Callable[[Seen], Reply], **valves: Any) -> tuple[list[str], str, list[Seen]]:
    """(what the chat shows, the last status, the requests n8n saw) of one turn by USER in chat-7."""
    with LoopbackServer(reply if callable(reply) else [reply]) as n8n:
        shown, final = chat(n8n_url=n8n.url, **valves).run(__user__=USER, __metadata__={"chat_id": "chat-7"})
        return shown, final["description"], list(n8n.requests)


# ---------------------------------------------------------------------------
# The token


def test_the_token_verifies_with_the_secret_and_says_who_asks_in_which_chat_and_turn(chat):
    before = int(time.time())
    shown, _, (seen,) = one_turn(chat, jwt_auth(SECRET), jwt_secret=SECRET)

    assert "".join(shown) == "Hello Ada"
    claims = verified_claims(bearer(seen), SECRET)
    assert claims == {
        "iss": "open-webui",
        "sub": "u-42",
        "role": "admin",
        "chat_id": "chat-7",
        "jti": seen.json()["turnId"],
        "iat": claims["iat"],
        "exp": claims["iat"] + 60,
    }
    assert before <= claims["iat"] <= time.time()


def test_name_and_email_are_claimed_only_with_send_user_info(chat):
    _, _, (seen,) = one_turn(chat, jwt_auth(SECRET), jwt_secret=SECRET, send_user_info=True)

    claims = verified_claims(bearer(seen), SECRET)
    assert (claims["name"], claims["email"]) == ("Ada Lovelace", "ada@example.com")


def test_each_turn_gets_its_own_token(chat):
    turns = [one_turn(chat, jwt_auth(SECRET), jwt_secret=SECRET)[2][0] for _ in range(2)]

    tokens = [bearer(seen) for seen in turns]
    jtis = [verified_claims(token, SECRET)["jti"] for token in tokens]
    assert tokens[0] != tokens[1]
    assert jtis[0] != jtis[1]
    assert jtis == [seen.json()["turnId"] for seen in turns]


def test_the_secret_never_leaves_and_the_static_token_is_not_sent(chat):
    _, _, (seen,) = one_turn(chat, jwt_auth(SECRET), jwt_secret=SECRET, n8n_bearer_token=TOKEN)

    sent = json.dumps(seen.headers) + seen.body.decode()
    for leaked in (SECRET, TOKEN, base64.b64encode(SECRET.encode()).decode()):
        assert leaked not in sent
    assert verified_claims(bearer(seen), SECRET)["sub"] == "u-42"


def test_the_token_expires_jwt_ttl_seconds_after_it_was_signed():
    valves = Pipe.Valves(jwt_secret=SECRET, jwt_ttl_seconds=90)
    turn = Turn([{"role": "user", "content": "hi"}], wants_stream=True, user=USER, chat_id="c")

    token = webhook_request(Settings.of(valves), "http://127.0.0.1/webhook/x", turn, now=1_800_000_000).jwt

    claims = verified_claims(token, SECRET, now=1_800_000_089)
    assert (claims["iat"], claims["exp"]) == (1_800_000_000, 1_800_000_090)
    with pytest.raises(JwtExpired):
        verified_claims(token, SECRET, now=1_800_000_090)
    with pytest.raises(InvalidSignature):
        verified_claims(token, "another secret", now=1_800_000_000)


def test_claims_open_webui_did_not_give_are_left_out():
    turn = Turn([{"role": "user", "content": "hi"}], wants_stream=True, user={"id": "u-1", "role": "user"})

    token = webhook_request(Settings.of(Pipe.Valves(jwt_secret=SECRET)), "http://h/webhook/x", turn, now=100).jwt

    assert set(verified_claims(token, SECRET, now=100)) == {"iss", "sub", "role", "jti", "iat", "exp"}


@pytest.mark.parametrize("value", [0, -1, 1.5, float("inf"), float("nan")])
def test_jwt_ttl_seconds_must_be_a_positive_whole_number(value):
    with pytest.raises(ValidationError) as error:
        Pipe.Valves(jwt_ttl_seconds=value)
    assert error.value.errors()[0]["loc"] == ("jwt_ttl_seconds",)


# ---------------------------------------------------------------------------
# n8n's refusals, advised in n8n's words


EXPIRED = (
    "n8n rejected the request (HTTP 403: jwt expired). The turn's token had expired when n8n checked it: Open "
    "WebUI's and n8n's clocks differ by more than `jwt_ttl_seconds`, or the valve is too short: set both servers' "
    "clocks by NTP, or raise `jwt_ttl_seconds`."
)
WRONG_SECRET = (
    "n8n rejected the request (HTTP 403: invalid signature). The `jwt_secret` valve differs from the Secret of the "
    "Webhook's JWT Auth credential in n8n: paste the same secret into both."
)


def test_a_wrong_secret_says_the_secrets_differ(chat):
    shown, final, _ = one_turn(chat, jwt_auth("the credential's own secret"), jwt_secret=SECRET)

    assert shown == [f"⚠️ {WRONG_SECRET}"]
    assert final == WRONG_SECRET


def test_an_expired_token_says_the_clocks_or_the_ttl(chat):
    shown, final, _ = one_turn(chat, refused(403, "jwt expired"), jwt_secret=SECRET)

    assert shown == [f"⚠️ {EXPIRED}"]
    assert final == EXPIRED


@pytest.mark.parametrize(
    ("valves", "reply", "said"),
    [
        (
            {"jwt_secret": SECRET},
            refused(401, "No token provided"),
            "n8n rejected the request (HTTP 401: No token provided). The pipe sent its token in the Authorization "
            "header, but none reached n8n: a proxy or gateway in front of n8n drops that header; let it through.",
        ),
        (
            {"n8n_bearer_token": TOKEN},
            refused(401, "No token provided"),
            "n8n rejected the request (HTTP 401: No token provided). The Webhook node's Authentication is JWT Auth: "
            "set the `jwt_secret` valve to the Secret of its JWT Auth credential in n8n.",
        ),
        (
            {"n8n_bearer_token": TOKEN},
            refused(403, "jwt malformed"),
            "n8n rejected the request (HTTP 403: jwt malformed). The Webhook node's Authentication is JWT Auth: "
            "set the `jwt_secret` valve to the Secret of its JWT Auth credential in n8n.",
        ),
        (
            {"jwt_secret": SECRET},
            refused(403, "Authorization data is wrong!"),
            "n8n rejected the request (HTTP 403: Authorization data is wrong!). The pipe signs each turn's token with "
            "the `jwt_secret` valve: set the Webhook node's Authentication to JWT Auth with a JWT Auth credential "
            "(Key Type: Passphrase, Secret: the `jwt_secret` valve, Algorithm: HS256), or empty `jwt_secret` to "
            "send `n8n_bearer_token`.",
        ),
        (
            {"jwt_secret": SECRET},
            Reply(status=500, steps=[b"No authentication data defined on node!"], body_mode="length"),
            "n8n answered HTTP 500: No authentication data defined on node! The Webhook node's Authentication has no "
            "credential: in n8n, open the Webhook node, create a JWT Auth credential under Authentication (Key "
            "Type: Passphrase, Secret: the `jwt_secret` valve, Algorithm: HS256), then publish the workflow again.",
        ),
        (
            {"n8n_bearer_token": TOKEN},
            refused(403, "Authorization data is wrong!"),
            "n8n rejected the request (HTTP 403: Authorization data is wrong!). Check the `n8n_bearer_token` and "
            "`auth_header_name` valves against the webhook's credential.",
        ),
    ],
    ids=[
        "jwt-no-token-arrived",
        "jwt-wanted",
        "static-token-to-jwt-auth",
        "jwt-to-header-auth",
        "jwt-no-credential",
        "header-auth-unchanged",
    ],
)
def test_each_refusal_says_what_to_set_where(chat, valves, reply, said):
    shown, final, _ = one_turn(chat, reply, **valves)

    assert shown == [f"⚠️ {said}"]
    assert final == said


# ---------------------------------------------------------------------------
# extra_headers: for a gateway in front of n8n


def test_extra_headers_go_to_the_webhook_exactly_with_the_token(chat):
    lines = f"{GATEWAY}\n\n  X-Gateway-Key :  key with spaces  \n"
    _, _, (seen,) = one_turn(chat, Reply(headers=N8N_STREAM, steps=n8n_reply(["ok"])), extra_headers=lines)

    assert seen.headers["cf-access-client-id"] == "1a2b3c.access"
    assert seen.headers["cf-access-client-secret"] == GATEWAY_SECRET
    assert seen.headers["x-gateway-key"] == "key with spaces"


def test_extra_headers_go_with_the_signed_token(chat):
    _, _, (seen,) = one_turn(chat, jwt_auth(SECRET), jwt_secret=SECRET, extra_headers=GATEWAY)

    assert seen.headers["cf-access-client-secret"] == GATEWAY_SECRET
    assert verified_claims(bearer(seen), SECRET)["sub"] == "u-42"


def test_extra_headers_go_to_n8ns_api_too():
    api = FakeN8nApi()
    try:
        valves = Pipe.Valves(n8n_api_key="api-key-1", n8n_api_url=api.url, extra_headers=GATEWAY)
        turn = Turn([{"role": "user", "content": "hi"}], wants_stream=True)
        execution_api = webhook_request(Settings.of(valves), "http://127.0.0.1:1/webhook/x", turn).execution_api
        assert execution_api is not None
        stop_execution(execution_api, "1234")
    finally:
        api.close()

    (call,) = api.calls
    assert (call.headers["cf-access-client-id"], call.headers["cf-access-client-secret"]) == (
        "1a2b3c.access",
        GATEWAY_SECRET,
    )
    assert call.key == "api-key-1"


def echo_headers(status: int) -> Callable[[Seen], Reply]:
    """A gateway whose refusal quotes the request's headers back."""
    return lambda seen: Reply(status=status, headers=REFUSED, steps=[f"denied: {json.dumps(seen.headers)}".encode()])


def test_extra_header_values_and_the_token_are_redacted_from_an_echoed_401(chat, caplog):
    caplog.set_level(logging.DEBUG)
    shown, final, (seen,) = one_turn(chat, echo_headers(401), jwt_secret=SECRET, extra_headers=GATEWAY)

    said = "".join(shown) + final + caplog.text
    assert "denied" in said
    for leaked in (GATEWAY_SECRET, "1a2b3c.access", bearer(seen), SECRET):
        assert leaked not in said


@pytest.mark.parametrize(
    ("lines", "fault"),
    [
        ("CF-Access-Client-Id 1a2b3c.access", "is not 'Name: value'"),
        (
            "CF Access Client Id: 1a2b3c",
            "does not start with an HTTP header name (letters, digits and - only, then ':')",
        ),
        ("X-Gateway-Key:", "(X-Gateway-Key) has no value after ':'"),
        (
            "X-Gateway-Key: “quoted”",
            "(X-Gateway-Key) has a character an HTTP header cannot carry (such as a typographic quote or dash): "
            "copy the value again",
        ),
        ("X-Gateway-Key: a\x00b", "(X-Gateway-Key) has a control character in its value: paste the value alone"),
        ("Content-Type: text/plain", "sets Content-Type, which the pipe sets itself: remove the line"),
        ("x-n8n-api-key: k", "sets x-n8n-api-key, which the pipe sets itself: remove the line"),
    ],
)
def test_a_bad_extra_headers_line_is_said_and_nothing_is_sent(chat, lines, fault):
    shown, final, sent = one_turn(chat, Reply(headers=N8N_STREAM, steps=n8n_reply(["never"])), extra_headers=lines)

    said = (
        f"Line 1 of the `extra_headers` valve {fault}. Write one header per line, such as CF-Access-Client-Id: <id> "
        "(Admin Panel > Functions > the pipe's gear)."
    )
    assert shown == [f"⚠️ {said}"]
    assert final == said
    assert sent == []


@pytest.mark.parametrize(
    ("valves", "line"),
    [({"jwt_secret": SECRET}, "Authorization: Basic abc"), ({"n8n_bearer_token": TOKEN}, "authorization: x")],
)
def test_extra_headers_may_not_replace_the_auth_header(chat, valves, line):
    shown, _, sent = one_turn(chat, Reply(headers=N8N_STREAM, steps=n8n_reply(["never"])), extra_headers=line, **valves)

    assert "which the pipe sets itself" in shown[0]
    assert sent == []


def test_without_a_token_a_gateway_may_take_the_authorization_header(chat):
    _, _, (seen,) = one_turn(
        chat, Reply(headers=N8N_STREAM, steps=n8n_reply(["ok"])), extra_headers="Authorization: Basic Z2F0ZTp3YXk="
    )

    assert seen.headers["authorization"] == "Basic Z2F0ZTp3YXk="


# ---------------------------------------------------------------------------
# No secret in any log line


def malformed_echo(seen: Seen) -> Reply:
    """A reply whose header block is broken (urllib3 warns 'Failed to parse headers' with the URL and the
    unparsed lines) and quotes the request's headers in those lines."""
    echoed = " ".join(f"{name}={value}" for name, value in seen.headers.items())
    head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nBad Header Line\r\nX-Echo: {echoed}\r\n\r\n"
    return Reply(raw_head=head.encode())


def test_no_log_line_carries_a_secret_when_a_reply_has_malformed_headers(chat, caplog):
    caplog.set_level(logging.DEBUG)
    with LoopbackServer(malformed_echo) as n8n:
        url = f"http://127.0.0.1:{n8n.port}/webhook/5f1d7c0a-secret-path?secret=query-5ecret"
        shown, _ = chat(n8n_url=url, jwt_secret=SECRET, extra_headers=GATEWAY).run(__user__=USER)
        (seen,) = n8n.requests

    assert "Failed to parse headers" in caplog.text, "urllib3 no longer warns: this test proves nothing"
    said = caplog.text + "".join(shown)
    for leaked in ("query-5ecret", "5f1d7c0a-secret-path", SECRET, GATEWAY_SECRET, bearer(seen)):
        assert leaked not in said


def test_a_turns_secrets_are_forgotten_by_the_log_filter_when_its_exchange_ends(chat):
    from pipe_n8n_stream import URLLIB3_LOGS

    one_turn(chat, jwt_auth(SECRET), jwt_secret=SECRET, extra_headers=GATEWAY)

    assert not URLLIB3_LOGS._running


def test_a_jwt_long_secret_is_redacted_quickly_also_when_cut_off():
    valves = Pipe.Valves(jwt_secret=SECRET, send_user_info=True)
    turn = Turn([{"role": "user", "content": "hi"}], wants_stream=True, user=USER, chat_id="c" * 36)
    token = webhook_request(Settings.of(valves), "http://h/webhook/x", turn).jwt
    started = time.monotonic()

    said = redact(f"whole {token} and cut {token[:200]}… and broken {token[:100]}\n{token[100:]} end", [token])

    assert time.monotonic() - started < 0.2
    assert said == "whole *** and cut ***… and broken *** end"


# ---------------------------------------------------------------------------
# The doctor: check --jwt-secret


def doctor(reply: Callable[[Seen], Reply] | Reply, *args: str) -> tuple[int, list[Seen]]:
    with LoopbackServer(reply if callable(reply) else [reply]) as n8n:
        return main(["check", n8n.url, *args]), list(n8n.requests)


def test_the_doctor_signs_like_the_pipe_and_says_n8n_accepted(capsys):
    code, (seen,) = doctor(jwt_auth(SECRET), "--jwt-secret", SECRET, "--header", "X-Gateway-Key: gw-1")

    out = capsys.readouterr().out
    assert "JWT: n8n accepted the token signed with --jwt-secret" in out
    assert out.splitlines()[-1] == "verdict: streams"
    assert code == 0
    claims = verified_claims(bearer(seen), SECRET)
    assert (claims["iss"], claims["sub"], claims["jti"]) == ("open-webui", "webhook-doctor", seen.json()["turnId"])
    assert seen.headers["x-gateway-key"] == "gw-1"
    assert SECRET not in out


@pytest.mark.parametrize(("credential", "said"), [("another secret", WRONG_SECRET)], ids=["wrong-secret"])
def test_the_doctor_reports_n8ns_refusal_with_the_advice(capsys, credential, said):
    code, _ = doctor(jwt_auth(credential), "--jwt-secret", SECRET)

    out = capsys.readouterr().out
    assert out.splitlines()[-1] == f"verdict: authentication failed: {said}"
    assert code == 1
    assert SECRET not in out


def test_the_doctor_reports_an_expired_token_with_the_advice(capsys):
    code, _ = doctor(refused(403, "jwt expired"), "--jwt-secret", SECRET)

    assert capsys.readouterr().out.splitlines()[-1] == f"verdict: authentication failed: {EXPIRED}"
    assert code == 1
