"""The Open WebUI 0.12.4 chat page as a person uses it, through its visible controls and text.

Selectors are the page's own labels where it has them (aria-labels, the model picker's options); the
assistant message and its status line are found by the classes Open WebUI gives them.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
# The pipe's last status once the answer is whole (a reply with more to say goes on after it: "; ...", ", ...")
DONE = re.compile(r"Done: first text after \d+\.\d s, \d+\.\d s in all")
POLL_S = 0.03
SETTLE_JS = """() => Promise.all(document.getAnimations()
    .filter((a) => a.effect && a.effect.getComputedTiming().endTime !== Infinity)
    .map((a) => a.finished.catch(() => null)))"""


def shown(text: str) -> str:
    """Text as the page shows it: markdown turns newlines and tabs into plain spaces."""
    return " ".join(text.split())


@dataclass
class Observation:
    at: float
    text: str


@dataclass
class ChatPage:
    page: Any  # playwright.sync_api.Page
    observations: list[Observation] = field(default_factory=list)

    @classmethod
    def open(cls, page: Any, base_url: str) -> ChatPage:
        """Open WebUI's start page is a new chat; with WEBUI_AUTH=False it signs the one user in by itself."""
        page.goto(base_url + "/")
        page.get_by_role("button", name="User menu").first.wait_for()
        page.locator("#chat-input").wait_for()
        return cls(page)

    def pick_model(self, name: str) -> None:
        """The model picker above the input: open it, search for the name, pick the option."""
        self.page.locator("#model-selector-model-button").click()
        self.page.get_by_placeholder("Search a model").fill(name)
        self.page.get_by_role("option", name=f"Select {name} model").click()
        self.page.get_by_role("button", name=f"Selected model: {name}").wait_for()

    def send(self, text: str) -> None:
        self.page.locator("#chat-input").fill(text)
        self.page.keyboard.press("Enter")
        self.page.locator(".chat-assistant").last.wait_for()

    def stop(self) -> None:
        self.page.get_by_role("button", name="Stop").click()
        self.page.mouse.move(0, 0)  # the button under the pointer becomes another, whose tooltip would show

    # -- what the person sees in the last assistant message -------------------------------------------

    def reply(self) -> Any:
        return self.page.locator(".chat-assistant").last

    def message(self) -> Any:
        """The last assistant message whole: the reply and the row of buttons under it."""
        messages = self.page.locator("[id^='message-']").filter(has=self.page.locator(".chat-assistant"))
        return messages.last

    def reply_text(self) -> str:
        """The answer's text, without the status line above it."""
        content = self.reply().locator("#response-content-container")
        return str(content.inner_text()) if content.count() else ""

    def status(self) -> str:
        line = self.reply().locator(".status-description")
        return str(line.first.inner_text()).strip() if line.count() else ""

    def status_history(self) -> list[str]:
        """Every status line of the answer, oldest first, as the status line unfolds them when clicked."""
        toggle = self.reply().get_by_role("button", name="Toggle status history")
        if toggle.get_attribute("aria-expanded") != "true":
            toggle.click()
        lines = self.reply().locator(".status-description")
        self.wait(lambda: lines.count() > 1, 5, "the status history to unfold")
        return [str(text).strip() for text in lines.all_inner_texts()[1:]]

    def observe(self) -> str:
        """The answer's text now; a change from the last observation is kept, with its time."""
        text = self.reply_text()
        if not self.observations or self.observations[-1].text != text:
            self.observations.append(Observation(time.monotonic(), text))
        return text

    def wait(self, condition: Callable[[], T], timeout: float, what: str) -> T:
        """Poll the page (observing the answer as it goes) until `condition` holds."""
        deadline = time.monotonic() + timeout
        while True:
            self.observe()
            value = condition()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {timeout:g} s waiting for {what}; status {self.status()!r}, "
                    f"text {self.reply_text()[-500:]!r}"
                )
            time.sleep(POLL_S)

    def wait_done(self, timeout: float = 60) -> str:
        """The pipe's last status starts with 'Done' once the answer is complete, and the page ends the turn:
        the Stop button gives way to the send controls."""
        self.wait(lambda: self.status().startswith("Done"), timeout, "the status line to say Done")
        self.wait(lambda: not self.generating(), timeout, "the Stop button to go")
        return self.status()

    def generating(self) -> bool:
        return bool(self.page.get_by_role("button", name="Stop").count())

    def settle(self) -> None:
        """Wait for the page's finite animations (a block unfolding, a fade) to end; the status line's shimmer
        runs forever."""
        self.page.evaluate(SETTLE_JS)

    def tooltip_of(self, element: Any) -> str:
        """The pointer rests on `element`: the tooltip Open WebUI shows for it (tippy.js, in the page's body)."""
        element.hover()
        shown_now = self.page.locator(".tippy-box[data-state='visible']")
        self.wait(lambda: shown_now.count() == 1 and shown_now.is_visible(), 15, "the tooltip to show")
        return str(shown_now.inner_text())

    def screenshot(self, folder: Path | None, name: str, pointer_on: Any = None) -> None:
        """One of the README's pictures, taken only when asked for (folder None: not). As a person would see it
        with the pointer aside: no toast (a fresh page's sign-in toast goes after a few seconds), no tooltip,
        no focus left on a button that was clicked. With `pointer_on`, the pointer rests on that element
        instead, its tooltip in the picture."""
        if folder is None:
            return
        folder.mkdir(parents=True, exist_ok=True)
        self.wait(lambda: not self.page.locator("[data-sonner-toast]").count(), 15, "the toasts to go")
        self.page.evaluate("() => document.activeElement && document.activeElement.blur()")
        self.page.mouse.move(0, 0)
        if pointer_on is not None:
            self.tooltip_of(pointer_on)
        self.settle()
        self.page.screenshot(path=str(folder / name))
