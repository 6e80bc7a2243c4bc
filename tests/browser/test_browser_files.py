"""A workflow that answers with an image, in a real browser: the shipped n8n/chart-binary.json on a real n8n 2.41.3,
the pipe in Open WebUI 0.12.4 storing the PNG in Open WebUI's files, Chromium showing it in the chat, also after
a reload. Run with scripts/e2e-browser.sh (--screenshots also writes docs/screenshots/chat-image.png)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from chat_page import ChatPage
from chat_scripts import SALES_CHART_PROMPT
from stack import SALES_CHART

LOADED = "(img) => img.complete ? [img.naturalWidth, img.naturalHeight] : null"
CHART_SIZE = [96, 64]  # the PNG n8n/chart-binary.json makes


def shown_image(chat: ChatPage) -> Any:
    """The answer's image once the browser has loaded it (its natural size: the bytes decoded as a picture)."""
    image = chat.reply().locator("#response-content-container img").first
    chat.wait(lambda: image.count() and image.evaluate(LOADED), 30, "the answer's image to load")
    return image


def test_an_image_from_the_workflow_shows_in_the_chat_and_after_a_reload(chat: ChatPage, screenshots: Path | None):
    chat.pick_model(SALES_CHART)
    chat.send(SALES_CHART_PROMPT)
    chat.wait_done()

    image = shown_image(chat)
    assert image.evaluate(LOADED) == CHART_SIZE
    source = image.get_attribute("src") or ""
    assert re.fullmatch(r"/api/v1/files/[0-9a-f-]{36}/content", source), source
    assert chat.status().endswith("; shown: an image, Sales-Chart.png (image/png, 147 bytes)"), chat.status()
    assert chat.reply_text().strip() == "", "the answer is the image alone"
    chat.screenshot(screenshots, "chat-image.png")

    chat.page.reload()
    chat.page.locator(".chat-assistant").last.wait_for()
    again = shown_image(chat)
    assert again.evaluate(LOADED) == CHART_SIZE
    assert again.get_attribute("src") == source
