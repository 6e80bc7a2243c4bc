"""The browser tests run only through scripts/e2e-browser.sh, which installs Chromium and Playwright and sets
BROWSER_E2E=1. In the normal `python -m pytest` run they are collected and skipped.

One session: a real n8n 2.41.3 with the shipped workflows (tests/e2e's harness, fake models behind it), a real
Open WebUI 0.12.4 with the pipe installed through its REST API (tests/owui's harness), and headless Debian
Chromium driven by Playwright: a person's browser on the chat page.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
E2E = os.environ.get("BROWSER_E2E") == "1"
for folder in (HERE.parent, HERE.parent / "e2e", HERE.parent / "owui", HERE):
    sys.path.insert(0, str(folder))

CHROMIUM = os.environ.get("BROWSER_CHROMIUM", "/usr/bin/chromium")
# Flags for a machine without a screen or a way out: no GPU, no sandbox (root), no calls home.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if E2E:
        return
    skip = pytest.mark.skip(reason="needs Chromium, n8n and Open WebUI: run scripts/e2e-browser.sh")
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(skip)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed test leaves a screenshot of the page and the servers' last log lines under its traceback."""
    outcome = yield
    report = outcome.get_result()
    if not report.failed or report.when != "call":
        return
    chat = item.funcargs.get("chat")  # type: ignore[attr-defined]
    if chat is not None:
        shot = Path(tempfile.gettempdir()) / f"browser-failure-{item.name}.png"
        chat.page.screenshot(path=str(shot))
        report.sections.append(("page at failure", f"{shot}\n{chat.page.inner_text('main')[-3000:]}"))
    stack = item.funcargs.get("stack")  # type: ignore[attr-defined]
    if stack is not None:
        report.sections.append(("Open WebUI log (last lines)", stack.owui.log_tail(30)))
        report.sections.append(("n8n log (last lines)", stack.n8n.log_tail(30)))


@pytest.fixture(scope="session")
def stack() -> Iterator[Any]:
    """n8n with the shipped workflows, then Open WebUI with the pipe pointed at them."""
    from stack import MODELS, running_stack

    with running_stack(ROOT / "pipe_n8n_stream.py", MODELS) as running:
        yield running


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright, tempfile.TemporaryDirectory(prefix="browser-e2e-profile-") as profile:
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            args=CHROMIUM_FLAGS,
            headless=True,
            viewport={"width": 1280, "height": 720},
            locale="en-US",
        )
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def chat(stack: Any, browser: Any) -> Iterator[Any]:
    """A fresh tab on a new chat of Open WebUI, signed in."""
    from chat_page import ChatPage

    page = browser.new_page()
    try:
        yield ChatPage.open(page, stack.owui.url)
    finally:
        page.close()


@pytest.fixture
def screenshots() -> Path | None:
    """Where the README's screenshots go (scripts/e2e-browser.sh --screenshots), or None: not taken."""
    folder = os.environ.get("BROWSER_SCREENSHOTS")
    return Path(folder) if folder else None
