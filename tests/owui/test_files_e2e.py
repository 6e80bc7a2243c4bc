"""A workflow that answers with a file, inside a real Open WebUI (0.12.4, or OWUI_E2E_VERSION): the pipe stores it
in Open WebUI's own files, the saved message shows it, and after a reload Open WebUI serves its exact bytes.

The webhook is a LoopbackServer answering as n8n's Respond to Webhook *Binary File* does (the file's type, chunked,
no name unless the workflow sets a Content-Disposition); the bytes are those of the shipped workflows (the PNG
n8n/chart-binary.json makes, the CSV n8n/csv-binary.json's Convert to File makes, as tests/e2e/test_e2e_files.py
sees them come from a real n8n). Run with scripts/e2e-openwebui.sh.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest
from loopback import LoopbackServer, Reply
from owui_host import PIPE_ID, Admin

MODEL = f"{PIPE_ID}.n8n"
SHIPPED = Path(__file__).resolve().parents[2] / "n8n"


def chart_png() -> bytes:
    """The PNG the shipped chart workflow's Code node makes."""
    workflow = json.loads((SHIPPED / "chart-binary.json").read_text("utf-8"))
    code = next(n for n in workflow["nodes"] if n["type"] == "n8n-nodes-base.code")["parameters"]["jsCode"]
    return base64.b64decode(re.search(r"const png = '([A-Za-z0-9+/=]+)'", code).group(1))


CHART_PNG = chart_png()
SALES_CSV = b"month,sales\nJanuary,120\nFebruary,95\nMarch,143"
FILES = {
    "image": (
        Reply(headers=[("Content-Type", "image/png")], steps=[CHART_PNG[:40], 0.05, CHART_PNG[40:]]),
        "n8n.png",
        "image/png",
        CHART_PNG,
        "![n8n.png]",
    ),
    "csv": (
        Reply(
            headers=[("Content-Type", "text/csv"), ("Content-Disposition", 'attachment; filename="sales.csv"')],
            steps=[SALES_CSV],
        ),
        "sales.csv",
        "text/csv",
        SALES_CSV,
        "[sales.csv]",
    ),
}


@pytest.mark.parametrize("kind", list(FILES))
def test_a_file_from_the_workflow_is_saved_and_served_by_open_webui_after_a_reload(owui, admin, browser, kind):
    reply, name, mime_type, data, shown = FILES[kind]
    with LoopbackServer([reply]) as n8n:
        admin.set_valves(PIPE_ID, n8n_url=n8n.url)
        turn = browser.send(MODEL, f"the {kind} please")
        turn.wait_done(30)
        assert len(n8n.requests) == 1

    link = re.fullmatch(re.escape(shown) + r"\((/api/v1/files/([0-9a-f-]{36})/content)\)", turn.text_shown())
    assert link, turn.text_shown()[:300]
    url, file_id = link.groups()
    assert turn.statuses()[-1]["description"].endswith(
        f"; shown: {'an image' if kind == 'image' else 'a file'}, {name} ({mime_type}, {len(data)} bytes)"
    )

    # A reload: a new session reads the chat as saved, then fetches what the message links.
    reloaded = Admin(owui.url)
    saved = reloaded.chat(turn.chat_id)["chat"]["history"]["messages"][turn.message_id]
    assert saved["content"] == turn.text_shown()
    served = reloaded.http.get(f"{owui.url}{url}", timeout=30)
    assert served.status_code == 200, served.text[:500]
    assert served.content == data
    assert served.headers["content-type"].split(";")[0] == mime_type
    row = reloaded.call("GET", f"/api/v1/files/{file_id}")
    assert row["meta"]["name"] == name and row["meta"]["content_type"] == mime_type
    assert row["meta"]["size"] == len(data)
    assert row["user_id"] == reloaded.call("GET", "/api/v1/auths/")["id"]  # the chat's user's file
    assert "storing the workflow's file in Open WebUI failed" not in owui.log_text()
