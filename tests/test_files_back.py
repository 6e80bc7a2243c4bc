"""What the workflow returns is shown as what it is: a file n8n answers with (Respond to Webhook's
*Binary File*: its type, chunked, no name) is never shown as text, but as an image or a file."""

from __future__ import annotations

import base64
import json
import re
import struct
import zlib
from typing import Any

import pytest
from fake_open_webui import fake_open_webui_storage
from loopback import LoopbackServer, Reply

from pipe_n8n_stream import attachment_name, main


def png() -> bytes:
    """A real 1x1 PNG, as a chart node would make it."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0\xff\0\0"))
        + chunk(b"IEND", b"")
    )


PNG = png()
AS_N8N_SENDS_IT = [("Content-Type", "image/png")]  # Respond to Webhook, Binary File: chunked, no name
PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"


def answered(reply: Reply, chat: Any, **valves: Any) -> tuple[str, dict[str, Any]]:
    with LoopbackServer([reply]) as server:
        shown, final = chat(n8n_url=server.url, **valves).run()
        assert len(server.requests) == 1
    return "".join(shown), final


def test_an_image_as_n8n_sends_it_is_an_image_of_its_exact_bytes(chat):
    text, final = answered(Reply(headers=AS_N8N_SENDS_IT, steps=[PNG[:30], PNG[30:]]), chat)
    assert text == f"![n8n.png](data:image/png;base64,{base64.b64encode(PNG).decode()})"
    assert final["description"].endswith(f"; shown: an image, n8n.png (image/png, {len(PNG)} bytes)")


def test_an_unnamed_file_is_named_after_the_workflows_model(chat):
    reply = Reply(headers=AS_N8N_SENDS_IT, steps=[PNG])
    with LoopbackServer([reply]) as server:
        turn = chat(models=f"Sales charts = {server.url}")
        shown, _ = turn.run(
            body={
                "model": "n8n_stream.sales-charts",
                "stream": True,
                "messages": [{"role": "user", "content": "chart"}],
            }
        )
    assert "".join(shown).startswith("![Sales-charts.png](data:image/png;base64,")


def test_a_named_pdf_attachment_is_a_file_named_with_its_type_and_size_never_its_bytes(chat):
    headers = [("Content-Type", "application/pdf"), ("Content-Disposition", 'attachment; filename="Q3 report.pdf"')]
    text, final = answered(Reply(headers=headers, steps=[PDF]), chat)
    assert text == f"📎 The workflow answered with a file: Q3 report.pdf (application/pdf, {len(PDF)} bytes)."
    assert final["description"].endswith(f"; shown: a file, Q3 report.pdf (application/pdf, {len(PDF)} bytes)")


@pytest.mark.parametrize(
    ("headers", "said"),
    [
        ([("Content-Type", "application/octet-stream")], "n8n.bin (application/octet-stream, 4 bytes)"),
        ([("Content-Disposition", "attachment")], "n8n.bin (application/octet-stream, 4 bytes)"),
        (
            [("Content-Type", "text/csv"), ("Content-Disposition", "attachment; filename=t.csv")],
            "t.csv (text/csv, 4 bytes)",
        ),
    ],
)
def test_octet_stream_and_any_attachment_are_files_not_text(chat, headers, said):
    text, _ = answered(Reply(headers=headers, steps=[b"a,b\n"]), chat)
    assert text == f"📎 The workflow answered with a file: {said}."


def test_a_file_over_max_reply_mb_is_not_shown_half_made(chat):
    big = PNG + b"\0" * 300_000
    text, _ = answered(Reply(headers=AS_N8N_SENDS_IT, steps=[big[:200_000], big[200_000:]]), chat, max_reply_mb=0.25)
    assert text == "⚠️ the reply passed 0.25 MB, the limit set by the `max_reply_mb` valve"
    assert "data:" not in text


def test_text_replies_stay_text(chat):
    text, _ = answered(Reply(headers=[("Content-Type", "text/plain; charset=utf-8")], steps=[b"just words"]), chat)
    assert text == "just words"


@pytest.mark.parametrize(
    ("disposition", "name"),
    [
        ('attachment; filename="chart.png"', "chart.png"),
        ("attachment; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf; filename=\"resume.pdf\"", "résumé.pdf"),
        ('attachment; filename="../../etc/passwd"', "passwd"),
        ('attachment; filename="a](javascript:x)\r\n.png"', "a__javascript:x___.png"),
        ("inline", ""),
    ],
)
def test_a_file_name_from_content_disposition_is_made_safe_to_show(disposition, name):
    assert attachment_name(disposition) == name


@pytest.mark.parametrize("awaitable", [True, False])  # Open WebUI 0.9 and later, and before
def test_inside_open_webui_the_file_is_stored_and_the_message_links_it(chat, monkeypatch, awaitable):
    """The pipe stores the file as Open WebUI's upload route does: Storage.upload_file, then
    Files.insert_new_file for the chat's user; the message shows the URL Open WebUI serves it at."""
    stored = fake_open_webui_storage(monkeypatch, awaitable)

    text, _ = answered(Reply(headers=AS_N8N_SENDS_IT, steps=[PNG]), chat)

    file_id = stored["form"]["id"]
    assert text == f"![n8n.png](/api/v1/files/{file_id}/content)"
    assert stored["data"] == PNG and stored["filename"] == f"{file_id}_n8n.png" and stored["user_id"] == "u1"
    assert stored["form"]["path"] == f"/data/uploads/{file_id}_n8n.png"
    assert stored["form"]["meta"] == {"name": "n8n.png", "content_type": "image/png", "size": len(PNG)}


def test_the_doctor_says_what_it_got_and_does_not_call_it_streams(capsys):
    with LoopbackServer([Reply(headers=AS_N8N_SENDS_IT, steps=[PNG])]) as server:
        code = main(["check", server.url])
    out = capsys.readouterr().out
    assert f"verdict: binary reply: image/png, {len(PNG)} bytes -> shown as an image" in out
    assert "streams" not in out.split("verdict: ")[1]
    assert code == 1


def test_files_in_a_complete_json_reply_follow_the_answer_and_their_base64_is_never_text(chat):
    encoded = base64.b64encode(PNG).decode()
    body = {
        "output": "Here is the chart.",
        "files": [
            {"fileName": "chart.png", "mimeType": "image/png", "data": encoded},
            {"name": "data.csv", "url": "https://example.com/data.csv"},
            {"name": "bad", "url": "javascript:alert(1)"},
            {"fileName": "broken.bin", "data": "not base64!"},
        ],
    }
    reply = Reply(headers=[("Content-Type", "application/json")], steps=[json.dumps(body).encode()], body_mode="length")
    text, final = answered(reply, chat)
    assert (
        text
        == f"Here is the chart.\n\n![chart.png](data:image/png;base64,{encoded})\n\n[data.csv](https://example.com/data.csv)"
    )
    assert final["description"].endswith(f"; shown: an image, chart.png (image/png, {len(PNG)} bytes)")


def test_a_json_reply_with_files_and_no_text_shows_the_files(chat):
    body = {"files": [{"fileName": "c.png", "mimeType": "image/png", "data": base64.b64encode(PNG).decode()}]}
    reply = Reply(headers=[("Content-Type", "application/json")], steps=[json.dumps(body).encode()], body_mode="length")
    text, _ = answered(reply, chat)
    assert text == f"![c.png](data:image/png;base64,{base64.b64encode(PNG).decode()})"


def test_a_no_text_notice_never_quotes_a_files_base64(chat):
    body = {"answer": "x", "files": "not a list"}
    reply = Reply(headers=[("Content-Type", "application/json")], steps=[json.dumps(body).encode()], body_mode="length")
    text, _ = answered(reply, chat)
    assert text == (
        '⚠️ n8n\'s reply has no text at `output`: {"answer": "x"}. '
        "Set the `response_field` valve to the field that holds the answer."
    )


def test_a_returned_files_name_keeps_its_quotes_and_loses_its_path(chat):
    body = {"output": "ok", "files": [{"fileName": '../q3 "final".csv', "mimeType": "text/csv", "data": "YSxi"}]}
    reply = Reply(headers=[("Content-Type", "application/json")], steps=[json.dumps(body).encode()], body_mode="length")
    text, _ = answered(reply, chat)
    assert text == 'ok\n\n📎 The workflow answered with a file: q3 "final".csv (text/csv, 3 bytes).'


DONE = re.compile(r"Done: first text after \d+\.\d s, \d+\.\d s in all")


def test_a_json_reply_of_links_alone_shows_them_and_ends_well(chat):
    body = {"files": [{"name": "chart.png", "url": "https://example.com/chart.png"}]}
    reply = Reply(headers=[("Content-Type", "application/json")], steps=[json.dumps(body).encode()], body_mode="length")
    text, final = answered(reply, chat)
    assert text == "![chart.png](https://example.com/chart.png)"
    assert DONE.fullmatch(final["description"]), final["description"]


def test_a_json_reply_of_n8n_binaries_alone_shows_them_and_ends_well(chat):
    encoded = base64.b64encode(PNG).decode()
    body = {"files": [{"fileName": "c.png", "mimeType": "image/png", "data": encoded}]}
    reply = Reply(headers=[("Content-Type", "application/json")], steps=[json.dumps(body).encode()], body_mode="length")
    text, final = answered(reply, chat)
    assert text == f"![c.png](data:image/png;base64,{encoded})"
    said = f"; shown: an image, c.png (image/png, {len(PNG)} bytes)"
    assert final["description"].endswith(said) and DONE.fullmatch(final["description"].removesuffix(said))
