"""Every workflow a model, in a real n8n: two shipped workflows tagged through n8n's API are listed by the pipe's
pipes() under their n8n names, and a chat with each goes through its own webhook; a key without `workflow:list`
lists none and says which scope to add. (A draft saved but not published cannot be made through the public API:
n8n 2.41.3 publishes an active workflow's PUT; the loopback tests cover the draft with the captures' shape.)"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import pytest
import requests
from fake_models import TOKENS
from n8n_harness import STOP_SCOPES, TOKEN, N8n, shipped

import pipe_n8n_stream
from pipe_n8n_stream import WORKFLOWS_SCOPE_MISSING, Pipe

FULL_TEXT = "".join(TOKENS)
ADMIN_SCOPES = ("tag:create", "workflowTags:update")
LIST_SCOPES = (*STOP_SCOPES, "workflow:list")
TAGGED = {"ollama": "ollama-streaming", "classic": "classic-last-node"}  # the harness's name: the shipped file


@pytest.fixture(autouse=True)
def fresh_catalogs() -> None:
    pipe_n8n_stream.WORKFLOW_CATALOGS.clear()


class Api:
    """n8n's public API as an admin script uses it, with a key of ADMIN_SCOPES."""

    def __init__(self, n8n: N8n) -> None:
        self.url = f"{n8n.base_url}/api/v1"
        self.session = requests.Session()
        self.session.headers["X-N8N-API-KEY"] = n8n.api_key(ADMIN_SCOPES)

    def call(self, method: str, path: str, body: Any = None) -> Any:
        reply = self.session.request(method, self.url + path, json=body, timeout=30)
        assert reply.status_code in (200, 201), f"{method} {path}: HTTP {reply.status_code} {reply.text[:300]}"
        return reply.json()

    def tag(self, workflow_ids: list[str]) -> str:
        """A new tag on these workflows: its name."""
        name = f"e2e-models-{uuid.uuid4().hex[:8]}"
        tag = self.call("POST", "/tags", {"name": name})
        for workflow_id in workflow_ids:
            self.call("PUT", f"/workflows/{workflow_id}/tags", [{"id": tag["id"]}])
        return name


def pipe_for(n8n: N8n, key: str, tag: str) -> Pipe:
    """The pipe as an admin sets it: n8n_url a webhook of this n8n (its address is the models' base)."""
    pipe = Pipe()
    valves = {"n8n_url": n8n.url("chart"), "n8n_bearer_token": TOKEN, "workflow_tag": tag, **n8n.api_valves(key)}
    for name, value in valves.items():
        setattr(pipe.valves, name, value)
    return pipe


def chat_with(pipe: Pipe, model: str, prompt: str) -> str:
    async def scenario() -> str:
        body = {"model": f"n8n_stream.{model}", "stream": True, "messages": [{"role": "user", "content": prompt}]}
        reply = await pipe.pipe(body, __metadata__={"chat_id": f"e2e-{uuid.uuid4().hex[:8]}"})
        return reply if isinstance(reply, str) else "".join([chunk async for chunk in reply if isinstance(chunk, str)])

    return asyncio.run(scenario())


def test_tagged_workflows_are_models_named_as_in_n8n_each_chatting_through_its_own_url(n8n: N8n) -> None:
    ids = [n8n.webhooks[name].workflow_id for name in TAGGED]
    tag = Api(n8n).tag(ids)
    pipe = pipe_for(n8n, n8n.api_key(LIST_SCOPES), tag)

    models = asyncio.run(pipe.pipes())

    names = [shipped(file)["name"] for file in TAGGED.values()]
    assert models[0] == {"id": "n8n", "name": "n8n"}
    listed = [{"id": f"workflow-{workflow_id}", "name": name} for workflow_id, name in zip(ids, names, strict=True)]
    assert sorted(models[1:], key=str) == sorted(listed, key=str)  # in n8n's order
    for name in TAGGED:
        model = f"workflow-{n8n.webhooks[name].workflow_id}"
        assert pipe_n8n_stream.listed_workflow_url(pipe_n8n_stream.Settings.of(pipe.valves), model) == n8n.url(name)
        assert chat_with(pipe, model, f"models e2e {name}") == FULL_TEXT


def test_a_key_without_workflow_list_lists_no_workflow_and_says_the_scope(n8n: N8n, caplog) -> None:
    caplog.set_level(logging.WARNING, "pipe_n8n_stream")
    key = n8n.api_key(STOP_SCOPES)
    tag = Api(n8n).tag([n8n.webhooks["ollama"].workflow_id])

    models = asyncio.run(pipe_for(n8n, key, tag).pipes())

    assert models == [{"id": "n8n", "name": "n8n"}]
    assert [record.getMessage() for record in caplog.records] == [
        f"n8n's workflows tagged '{tag}' are not listed as models: {WORKFLOWS_SCOPE_MISSING}"
    ]
    assert key not in caplog.text
