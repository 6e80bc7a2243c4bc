"""Open WebUI's own tasks (title, tags, follow-ups, ...) must not run the user's workflow."""

import asyncio
import json

import pytest
from loopback import CAPTURE_HEADERS, LoopbackServer, Reply, n8n_reply

TASKS = [
    "title_generation",
    "tags_generation",
    "follow_up_generation",
    "emoji_generation",
    "query_generation",
    "image_prompt_generation",
    "autocomplete_generation",
    "function_calling",
    "moa_response_generation",
]
EXPECTED = {
    "title_generation": {"title": "Plan a three day trip to"},
    "tags_generation": {"tags": []},
    "follow_up_generation": {"follow_ups": []},
    "query_generation": {"queries": []},
}
CHAT = [
    {"role": "user", "content": "Plan a three day trip to Lisbon, please. I like museums."},
    {"role": "assistant", "content": "Day 1: ..."},
    {"role": "user", "content": "And food?"},
]
TASK_PROMPT = "### Task:\nGenerate a concise, 3-5 word title with an emoji summarizing the chat history. JSON {...}"


def parsed_like_open_webui(answer: str) -> object:
    """What Open WebUI 0.12.4 does with a task answer: cut from the first { to the last }, then JSON."""
    return json.loads(answer[answer.find("{") : answer.rfind("}") + 1])


def task_call(turn, task: str, stream: bool):
    body = {"model": "n8n_stream.n8n", "stream": stream, "messages": [{"role": "user", "content": TASK_PROMPT}]}
    task_body = {"model": "n8n_stream.n8n", "messages": CHAT, "chat_id": "chat-1"}
    return turn.pipe.pipe(
        body,
        __event_emitter__=turn.emit,
        __metadata__={"chat_id": "chat-1", "task": task},
        __task__=task,
        __task_body__=task_body,
    )


@pytest.mark.parametrize("task", TASKS)
def test_background_task_is_answered_without_calling_the_workflow(chat, task):
    with LoopbackServer([Reply(headers=CAPTURE_HEADERS["n8n-stream"], steps=n8n_reply(["workflow ran"]))]) as server:
        turn = chat(n8n_url=server.url)
        answer = asyncio.run(task_call(turn, task, stream=False))
        assert server.requests == []
    assert turn.statuses == []
    if task in EXPECTED:
        assert parsed_like_open_webui(answer) == EXPECTED[task]
    else:
        assert answer == ""


def test_background_task_in_a_streaming_call_is_one_chunk(chat):
    async def scenario(turn):
        chunks = await task_call(turn, "tags_generation", stream=True)
        return [c async for c in chunks]

    with LoopbackServer([Reply(steps=n8n_reply(["workflow ran"]))]) as server:
        turn = chat(n8n_url=server.url)
        assert asyncio.run(scenario(turn)) == ['{"tags": []}']
        assert server.requests == []


def test_title_is_the_first_user_message_cut_to_a_few_words(chat):
    turn = chat(n8n_url="http://127.0.0.1:9/webhook/never-called")
    answer = asyncio.run(task_call(turn, "title_generation", stream=False))
    title = parsed_like_open_webui(answer)["title"]
    assert title == "Plan a three day trip to"
    assert CHAT[0]["content"].startswith(title)


def test_forwarded_background_task_reaches_the_workflow_with_its_name(chat):
    reply = Reply(headers=CAPTURE_HEADERS["n8n-stream"], steps=n8n_reply(['{"title": "From n8n"}']))
    with LoopbackServer([reply]) as server:
        turn = chat(n8n_url=server.url, forward_background_tasks=True)
        answer = asyncio.run(task_call(turn, "title_generation", stream=False))
        assert len(server.requests) == 1
        payload = server.requests[0].json()
    assert payload["task"] == "title_generation"
    assert payload["chatInput"] == TASK_PROMPT
    assert payload["sessionId"] == "chat-1"
    assert parsed_like_open_webui(answer) == {"title": "From n8n"}
    assert turn.statuses == []


def test_a_normal_chat_turn_carries_no_task_field(chat):
    with LoopbackServer([Reply(headers=CAPTURE_HEADERS["n8n-stream"], steps=n8n_reply(["Hi"]))]) as server:
        turn = chat(n8n_url=server.url)
        shown, _ = turn.run("hello")
        assert shown == ["Hi"]
        assert "task" not in server.requests[0].json()
