"""Files and images reach the workflow: what n8n receives on a real socket, parsed back from the wire."""

from __future__ import annotations

import asyncio
import base64
import email.parser
import email.policy
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from loopback import CAPTURE_HEADERS, LoopbackServer, Reply, Seen, n8n_reply

from pipe_n8n_stream import Pipe, user_prompt_of

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n\x00\xff\r\n--not-a-boundary\r\n"
USER = {"id": "u1", "name": "Ada", "email": "ada@example.com", "role": "user"}


def data_url(data: bytes, kind: str = "image/png") -> str:
    return f"data:{kind};base64,{base64.b64encode(data).decode()}"


def image_message(text: str, *urls: str) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
    parts += [{"type": "image_url", "image_url": {"url": url}} for url in urls]
    return {"role": "user", "content": parts}


def stored_file(path: Path, name: str, kind: str, text: str = "") -> dict[str, Any]:
    """A `__files__` entry as Open WebUI 0.12.4 passes it, here without Open WebUI's files table."""
    meta = {"name": name, "content_type": kind, "size": path.stat().st_size}
    return {
        "type": "file",
        "id": "file-1",
        "name": name,
        "size": meta["size"],
        "file": {"id": "file-1", "filename": name, "path": str(path), "meta": meta, "data": {"content": text}},
    }


def chat_turn(chat: Any, server: LoopbackServer, message: dict[str, Any], files: Any = None, **valves: Any) -> str:
    """One chat turn; `typed` is the web app's `user_message` (the words before Open WebUI rewrites them)."""
    metadata = {"chat_id": "chat-7"}
    if "typed" in valves:
        metadata["user_message"] = {"role": "user", "content": valves.pop("typed")}
    body = {"model": "n8n_stream.n8n", "stream": True, "messages": [message]}
    shown, _ = chat(n8n_url=server.url, **valves).run(body=body, __user__=USER, __metadata__=metadata, __files__=files)
    return "".join(shown)


def answering(text: str = "ok") -> LoopbackServer:
    return LoopbackServer([Reply(headers=CAPTURE_HEADERS["n8n-stream"], steps=n8n_reply([text]))])


def form(seen: Seen) -> list[Any]:
    """The multipart body as a mail parser reads it: one message part per form field or file."""
    head = f"Content-Type: {seen.headers['content-type']}\r\n\r\n".encode()
    parsed = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + seen.body)
    assert parsed.is_multipart(), seen.headers
    return list(parsed.iter_parts())


def fields_of(seen: Seen) -> dict[str, str]:
    return {
        p.get_param("name", header="content-disposition"): p.get_content() for p in form(seen) if not p.get_filename()
    }


def files_of(seen: Seen) -> list[tuple[str, str, str, bytes]]:
    return [
        (
            p.get_param("name", header="content-disposition"),
            p.get_filename(),
            p.get_content_type(),
            p.get_payload(decode=True),
        )
        for p in form(seen)
        if p.get_filename()
    ]


def test_an_image_and_a_document_go_as_a_form_with_their_exact_bytes_names_and_types(chat, tmp_path):
    pdf = tmp_path / "Bericht Q3 – ünï.pdf"
    pdf.write_bytes(PDF)
    with answering("seen") as n8n:
        shown = chat_turn(
            chat, n8n, image_message("What is this?", data_url(PNG)), [stored_file(pdf, pdf.name, "application/pdf")]
        )

    assert shown == "seen"
    assert len(n8n.requests) == 1
    seen = n8n.requests[0]
    assert seen.headers["content-type"].startswith("multipart/form-data; boundary=")
    fields = fields_of(seen)
    assert fields.pop("turnId")
    assert fields == {"chatInput": "What is this?", "sessionId": "chat-7", "stream": "true"}
    assert files_of(seen) == [
        ("data0", "image-1.png", "image/png", PNG),
        ("data1", "Bericht Q3 – ünï.pdf", "application/pdf", PDF),
    ]


def test_objects_in_the_payload_go_as_json_text_fields(chat, tmp_path):
    with answering() as n8n:
        chat_turn(chat, n8n, image_message("hi", data_url(PNG)), send_user_info=True)

    fields = fields_of(n8n.requests[0])
    assert json.loads(fields["user"]) == USER
    assert json.loads(fields["stream"]) is True


def test_an_image_only_message_sends_the_image_with_empty_words(chat):
    with answering() as n8n:
        chat_turn(chat, n8n, image_message("", data_url(PNG)))

    seen = n8n.requests[0]
    assert fields_of(seen)["chatInput"] == ""
    assert files_of(seen) == [("data0", "image-1.png", "image/png", PNG)]


def test_a_turn_without_files_stays_json(chat):
    with answering() as n8n:
        chat_turn(chat, n8n, {"role": "user", "content": "plain"})

    seen = n8n.requests[0]
    assert seen.headers["content-type"] == "application/json"
    assert seen.json()["chatInput"] == "plain"


def test_chat_input_is_the_users_words_not_open_webuis_rag_prompt(chat, tmp_path):
    pdf = tmp_path / "a.pdf"
    pdf.write_bytes(PDF)
    rag = "### Task:\nRespond using the context\n<context>PDF TEXT</context>\n### Query: summarise it"
    with answering() as n8n:
        chat_turn(
            chat,
            n8n,
            {"role": "user", "content": rag},
            [stored_file(pdf, "a.pdf", "application/pdf")],
            typed="summarise it",
        )

    assert fields_of(n8n.requests[0])["chatInput"] == "summarise it"


@pytest.mark.parametrize("key", ["user_message", "parent_message"])
def test_chat_input_is_the_question_open_webui_keeps_beside_the_rag_prompt(chat, tmp_path, key):
    """0.12.4's web app sends the question as `user_message`, 0.6's as `parent_message`; both reach `__metadata__`."""
    pdf = tmp_path / "a.pdf"
    pdf.write_bytes(PDF)
    rag = "### Task:\nRespond using the context\n<context>PDF TEXT</context>\n### Query: summarise it"
    with answering() as n8n:
        metadata = {"chat_id": "chat-7", key: {"id": "m1", "role": "user", "content": "summarise it"}}
        chat(n8n_url=n8n.url).run(
            body={"model": "n8n_stream.n8n", "stream": True, "messages": [{"role": "user", "content": rag}]},
            __user__=USER,
            __metadata__=metadata,
            __files__=[stored_file(pdf, "a.pdf", "application/pdf")],
        )

    assert fields_of(n8n.requests[0])["chatInput"] == "summarise it"


def test_a_parent_message_that_is_no_user_message_is_not_the_question():
    assert user_prompt_of({"parent_message": {"role": "assistant", "content": "an earlier answer"}}) is None
    assert user_prompt_of({}) is None


def test_text_mode_sends_json_with_the_extracted_text_and_no_bytes(chat, tmp_path):
    pdf = tmp_path / "notes.pdf"
    pdf.write_bytes(PDF)
    with answering() as n8n:
        chat_turn(
            chat,
            n8n,
            image_message("read", data_url(PNG)),
            [stored_file(pdf, "notes.pdf", "application/pdf", "Hallo Welt")],
            send_files="text",
        )

    sent = n8n.requests[0].json()
    assert sent["files"] == [
        {"name": "image-1.png", "type": "image/png", "size": len(PNG), "text": ""},
        {"name": "notes.pdf", "type": "application/pdf", "size": len(PDF), "text": "Hallo Welt"},
    ]
    assert sent["chatInput"] == "read"


def test_off_mode_sends_json_as_before_and_says_what_was_not_sent(chat, tmp_path):
    pdf = tmp_path / "notes.pdf"
    pdf.write_bytes(PDF)
    with answering("answer") as n8n:
        shown = chat_turn(
            chat,
            n8n,
            image_message("read", data_url(PNG)),
            [stored_file(pdf, "notes.pdf", "application/pdf")],
            send_files="off",
        )

    assert shown == "📎 Not sent to n8n (the `send_files` valve is off): image-1.png, notes.pdf\n\nanswer"
    sent = n8n.requests[0].json()
    assert "files" not in sent
    assert sent["chatInput"] == "read"


def test_a_file_over_max_upload_mb_is_not_sent_and_the_chat_names_it_and_the_valve(chat, tmp_path):
    big = tmp_path / "huge.bin"
    big.write_bytes(b"x" * (2 * 1024 * 1024))
    with answering() as n8n:
        shown = chat_turn(
            chat,
            n8n,
            {"role": "user", "content": "take it"},
            [stored_file(big, "huge.bin", "application/octet-stream")],
            max_upload_mb=1,
        )

    assert n8n.requests == []
    assert (
        shown
        == "⚠️ 'huge.bin' is 2.0 MB, over the 1 MB the `max_upload_mb` valve allows: the message was not sent to n8n."
    )


def test_a_remote_image_url_is_passed_as_a_url_and_never_fetched(chat):
    with answering() as n8n, answering() as elsewhere:
        remote = elsewhere.url.replace("/webhook/test", "/cat.png")
        chat_turn(chat, n8n, image_message("look", remote))

    assert elsewhere.requests == []
    sent = n8n.requests[0]
    assert sent.json()["imageUrls"] == [remote]


def test_send_files_valve_refuses_an_unknown_mode():
    with pytest.raises(ValueError, match="`send_files` must be one of multipart, text, off"):
        Pipe.Valves(send_files="binary")
    with pytest.raises(ValueError):
        Pipe.Valves(max_upload_mb=0)


def test_a_large_file_is_read_off_the_event_loop(tmp_path, monkeypatch):
    """A loop-lag probe: ticks every 10 ms while the pipe reads (slowly, here) a 20 MB file."""
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(20 * 1024 * 1024))
    real_open = open

    def slow_open(path: Any, *args: Any, **kwargs: Any) -> Any:
        if str(path) == str(big):
            time.sleep(1.0)  # a bucket download, say
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", slow_open)
    pipe = Pipe()
    lags: list[float] = []

    async def probe(stop: asyncio.Event) -> None:
        while not stop.is_set():
            before = time.monotonic()
            await asyncio.sleep(0.01)
            lags.append(time.monotonic() - before - 0.01)

    async def run(url: str) -> str:
        pipe.valves.n8n_url = url
        stop = asyncio.Event()
        ticking = asyncio.create_task(probe(stop))
        chunks = await pipe.pipe(
            {"model": "n8n_stream.n8n", "stream": True, "messages": [{"role": "user", "content": "big"}]},
            __metadata__={"chat_id": "c"},
            __files__=[stored_file(big, "big.bin", "application/octet-stream")],
        )
        shown = "".join([chunk async for chunk in chunks])
        stop.set()
        await ticking
        return shown

    with answering("done") as n8n:
        shown = asyncio.run(run(n8n.url))

    assert shown == "done"
    assert hashlib.sha256(files_of(n8n.requests[0])[0][3]).digest() == hashlib.sha256(big.read_bytes()).digest()
    assert len(lags) > 50, "the loop did not tick while the file was read"
    assert max(lags) < 0.5, f"the event loop stalled {max(lags):.2f} s while the file was read"
