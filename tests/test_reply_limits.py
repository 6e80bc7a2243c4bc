"""Bounded, and nothing lost: every reply has a size and a duration limit with a valve; hitting one
keeps what was shown and names the valve. Real sockets on 127.0.0.1, the chat driven as Open WebUI does."""

from __future__ import annotations

import gzip
import json

from chat_helpers import KEEPS_RUNNING
from loopback import CAPTURE_HEADERS, LoopbackServer, Reply, n8n_line

N8N_STREAM = CAPTURE_HEADERS["n8n-stream"]
TEXT = [("Content-Type", "text/plain; charset=utf-8")]
JSON = [("Content-Type", "application/json; charset=utf-8")]
SIZE_CUT = "the reply passed 0.5 MB, the limit set by the `max_reply_mb` valve"
TIME_CUT = "the reply went on for over 0.01 min, the limit set by the `max_reply_minutes` valve"


def test_a_gzip_bomb_is_cut_at_max_reply_mb_counting_decompressed_bytes(chat):
    bomb = gzip.compress(b"Hello " + b"a" * (64 * 1024 * 1024), compresslevel=9)  # 64 MiB of text in ~64 KB
    reply = Reply(headers=[*TEXT, ("Content-Encoding", "gzip")], steps=[bomb, "hang"])

    with LoopbackServer([reply]) as server:
        shown, final = chat(n8n_url=server.url, max_reply_mb=0.5).run()
        assert server.client_gone.wait(5)
        assert len(server.requests) == 1

    text = "".join(shown)
    assert text.startswith("Hello aaa")
    assert text.endswith(f": {SIZE_CUT}]")
    assert len(text) < 2 * 1024 * 1024  # what was shown is kept; the rest of the 64 MiB never was read
    assert final == {"description": f"{SIZE_CUT}; {KEEPS_RUNNING}", "done": True}


def test_a_gzip_bomb_of_nul_bytes_never_reaches_the_chat_as_text(chat):
    """The bomb an attacker would send: 64 MiB of NUL after a word. The NULs are no text: the chat
    shows the word and says the rest is not shown; reading stops there."""
    bomb = gzip.compress(b"Hello " + b"\0" * (64 * 1024 * 1024), compresslevel=9)
    reply = Reply(headers=[*TEXT, ("Content-Encoding", "gzip")], steps=[bomb, "hang"])

    with LoopbackServer([reply]) as server:
        shown, final = chat(n8n_url=server.url).run()
        assert server.client_gone.wait(5)

    not_text = (
        "n8n's reply stopped being text after 6 bytes: the rest (bytes that are no UTF-8, or control characters) "
        "is not shown. A workflow that answers with a file should send it with its type (Respond to Webhook: "
        "Respond With Binary File)."
    )
    assert "".join(shown) == f"Hello \n\n⚠️ {not_text}"
    assert final == {"description": not_text, "done": True}


def test_a_reply_dripping_a_byte_at_a_time_is_cut_at_max_reply_minutes(chat):
    drip = [step for _ in range(200) for step in (b"x", 0.02)]  # 4 s of one byte every 20 ms
    reply = Reply(headers=TEXT, steps=[b"Start:", *drip])

    with LoopbackServer([reply]) as server:
        shown, final = chat(n8n_url=server.url, max_reply_minutes=0.01).run()  # 0.6 s
        assert server.client_gone.wait(5)

    text = "".join(shown)
    assert text.startswith("Start:x")
    assert text.endswith(f": {TIME_CUT}]")
    assert final == {"description": f"{TIME_CUT}; {KEEPS_RUNNING}", "done": True}


def test_keepalives_and_nothing_else_are_cut_at_max_reply_minutes(chat):
    keepalives = [step for _ in range(40) for step in (b'{"type":"keepalive"}\n', 0.1)]  # 4 s
    reply = Reply(headers=N8N_STREAM, steps=[n8n_line("begin"), *keepalives])

    with LoopbackServer([reply]) as server:
        shown, final = chat(n8n_url=server.url, max_reply_minutes=0.01).run()
        assert server.client_gone.wait(5)

    assert shown == [f"⚠️ {TIME_CUT}"]
    assert final == {"description": f"{TIME_CUT}; {KEEPS_RUNNING}", "done": True}


def test_a_complete_json_answer_of_several_megabytes_is_shown_in_full(chat):
    image = "![chart](data:image/png;base64," + "iVBORw0KGgo" * 300_000 + ")"  # ~3.3 MB, one JSON line
    body = json.dumps({"output": image}).encode()
    reply = Reply(headers=JSON, steps=[body], body_mode="length")

    with LoopbackServer([reply]) as server:
        shown, final = chat(n8n_url=server.url).run()

    assert "".join(shown) == image
    assert final["description"].startswith("Done")


def test_a_single_n8n_item_of_several_megabytes_is_shown_in_full(chat):
    image = "![chart](data:image/png;base64," + "iVBORw0KGgo" * 300_000 + ")"
    steps = [n8n_line("begin"), n8n_line("item", image), n8n_line("end")]

    with LoopbackServer([Reply(headers=N8N_STREAM, steps=steps)]) as server:
        shown, final = chat(n8n_url=server.url).run()

    assert "".join(shown) == image
    assert final["description"].startswith("Done")
