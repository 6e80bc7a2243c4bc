"""Drive the pipe the way Open WebUI does: `await pipe.pipe(...)`, iterate, close early for Stop."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

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

    async def start(self, text: str = "hello", stream: bool = True, **extra: Any) -> Any:
        body = {"model": "n8n_stream.n8n", "stream": stream, "messages": [{"role": "user", "content": text}]}
        return await self.pipe.pipe(
            body,
            __user__={"id": "u1", "name": "Ada", "email": "ada@example.com", "role": "user"},
            __event_emitter__=self.emit,
            __metadata__={"chat_id": "chat-1", "message_id": "m1", "session_id": "s1"},
            **extra,
        )

    async def reply(self, text: str = "hello", **extra: Any) -> list[str]:
        chunks = await self.start(text, **extra)
        return [chunk async for chunk in chunks]

    @property
    def descriptions(self) -> list[str]:
        return [e["data"]["description"] for e in self.statuses if e["type"] == "status"]


@pytest.fixture
def chat() -> type[Chat]:
    return Chat
