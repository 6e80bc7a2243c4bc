"""Drive the pipe the way Open WebUI does: `await pipe.pipe(...)`, iterate, close early for Stop."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from loopback import Gate

from pipe_n8n_stream import Pipe

# Property tests: `ci` (the default) runs enough cases per wire format and stays fast on a 2-core
# machine; `dev` is a quick look; `deep` hunts for long. Pick one with HYPOTHESIS_PROFILE=<name>.
settings.register_profile("ci", max_examples=2000, deadline=None, print_blob=True)
settings.register_profile("dev", max_examples=100, deadline=None)
settings.register_profile("deep", max_examples=100_000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


class Chat:
    """One Open WebUI chat turn: collects status events like the browser would see them."""

    def __init__(self, **valves: Any) -> None:
        self.pipe = Pipe()
        for name, value in valves.items():
            setattr(self.pipe.valves, name, value)
        self.statuses: list[dict[str, Any]] = []

    async def emit(self, event: dict[str, Any]) -> None:
        self.statuses.append(event)

    async def start(
        self, text: str = "hello", stream: bool = True, body: dict[str, Any] | None = None, **extra: Any
    ) -> Any:
        """Open WebUI's call: `body` (by default one user message saying `text`), `extra` in place of its keywords."""
        if body is None:
            body = {"model": "n8n_stream.n8n", "stream": stream, "messages": [{"role": "user", "content": text}]}
        keywords = {
            "__user__": {"id": "u1", "name": "Ada", "email": "ada@example.com", "role": "user"},
            "__event_emitter__": self.emit,
            "__metadata__": {"chat_id": "chat-1", "message_id": "m1", "session_id": "s1"},
        }
        return await self.pipe.pipe(body, **{**keywords, **extra})

    async def reply(self, text: str = "hello", **extra: Any) -> list[str]:
        chunks = await self.start(text, **extra)
        return [chunk async for chunk in chunks]

    def run(
        self,
        text: str = "hello",
        stream: bool = True,
        *,
        gates: Sequence[Gate] = (),
        within: float | None = None,
        **extra: Any,
    ) -> tuple[Any, dict[str, Any]]:
        """The whole turn, run to its end: (the chunks the chat shows, in order; the data of the last status, the
        one left under the message). A chat that does not stream gets the whole text instead of chunks. With
        `gates`, one chunk per gate is taken while the server still waits at that gate, which then opens; `within`
        bounds each wait for a chunk and the wait for the rest (seconds; None waits as long as it takes).
        `extra` goes to `start`: a whole `body`, or Open WebUI's keywords (`__files__`, `__metadata__`, ...)."""

        async def rest(chunks: Any) -> list[str]:
            return [chunk async for chunk in chunks]

        async def turn() -> Any:
            answer = await self.start(text, stream, **extra)
            if not stream:
                return answer
            shown: list[str] = []
            try:
                for gate in gates:
                    shown.append(await asyncio.wait_for(anext(answer), within))
                    gate.open()
                return shown + await asyncio.wait_for(rest(answer), within)
            finally:
                for gate in gates:
                    gate.open()

        answer = asyncio.run(turn())
        return answer, self.statuses[-1]["data"]

    @property
    def descriptions(self) -> list[str]:
        return [e["data"]["description"] for e in self.statuses if e["type"] == "status"]


@pytest.fixture
def chat() -> type[Chat]:
    return Chat
