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
    "context_compaction",
    "memory_review",
]
EXPECTED = {
    "title_generation": {"title": "Plan a three day trip to"},
    "tags_generation": {"tags": []},
    "follow_up_generation": {"follow_ups": []},
    "query_generation": {"queries": []},
    "memory_review": {"operations": []},
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


# Open WebUI 0.12.4 asks for a task with the chat turn's metadata, the user's question among it, plus the task.
TURN_METADATA = {"chat_id": "chat-1", "user_message": {"id": "u3", "role": "user", "content": "And food?"}}


def task_call(turn, task: str, stream: bool):
    body = {"model": "n8n_stream.n8n", "stream": stream, "messages": [{"role": "user", "content": TASK_PROMPT}]}
    task_body = {"model": "n8n_stream.n8n", "messages": CHAT, "chat_id": "chat-1"}
    return turn.pipe.pipe(
        body,
        __event_emitter__=turn.emit,
        __metadata__={**TURN_METADATA, "task": task},
        __task__=task,
        __task_body__=task_body,
    )


# Open WebUI 0.12.4's own calls for these two tasks, as the pipe gets them (read in its source, seen in a run):
# `__task__` is set but `__task_body__` is None (their metadata has no `task_body`), the prompt is the body's
# last user message, and the call never streams. Compaction (POST /api/v1/chats/{id}/compact, or past the token
# threshold) has metadata holding the task alone; memory review's also has the chat turn's.
COMPACTION_PROMPT = (
    "### Task:\nSummarize the conversation history that will be compacted out of the active chat context.\n\n"
    "### Messages Being Compacted:\nUSER: Plan a three day trip to Lisbon\nASSISTANT: Day 1: ...\n\n"
    "### Recent Messages Kept In Context:\nUSER: And food?"
)
REVIEW_PROMPT = (
    "Review the completed conversation turn and decide whether long-term memory should change.\n"
    "- Use an empty operations array if nothing should be remembered.\n\nConversation:\nuser: I like museums."
)
OWN_TASK_CALLS = {
    "context_compaction": (
        {
            "model": "n8n_stream.n8n",
            "messages": [{"role": "user", "content": COMPACTION_PROMPT}],
            "stream": False,
            "max_tokens": 1000,
        },
        {"task": "context_compaction"},
    ),
    "memory_review": (
        {
            "model": "n8n_stream.n8n",
            "messages": [
                {"role": "system", "content": "You are Open WebUI's private memory reviewer. Return only valid JSON."},
                {"role": "user", "content": REVIEW_PROMPT},
            ],
            "stream": False,
        },
        {**TURN_METADATA, "task": "memory_review", "message_id": "m1", "session_id": "s1"},
    ),
}


def own_task_call(turn, task: str):
    body, metadata = OWN_TASK_CALLS[task]
    return turn.pipe.pipe(body, __event_emitter__=turn.emit, __metadata__=metadata, __task__=task, __task_body__=None)


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
    assert parsed_like_open_webui(answer) == {"title": "From n8n"}
    assert turn.statuses == []


def test_a_forwarded_task_has_a_session_of_its_own_and_the_next_chat_turn_the_chats(chat):
    """An AI Agent's memory is keyed on the session: the title prompt and its answer stay out of the chat's."""
    title = Reply(headers=CAPTURE_HEADERS["n8n-stream"], steps=n8n_reply(['{"title": "From n8n"}']))
    answer = Reply(headers=CAPTURE_HEADERS["n8n-stream"], steps=n8n_reply(["Pastéis de nata."]))
    with LoopbackServer([title, answer]) as server:
        turn = chat(n8n_url=server.url, forward_background_tasks=True)
        asyncio.run(task_call(turn, "title_generation", stream=False))
        shown, _ = turn.run("And food?")
        sessions = [request.json()["sessionId"] for request in server.requests]
    assert shown == ["Pastéis de nata."]
    assert sessions == ["chat-1:title_generation", "chat-1"]


def test_a_normal_chat_turn_carries_no_task_field(chat):
    with LoopbackServer([Reply(headers=CAPTURE_HEADERS["n8n-stream"], steps=n8n_reply(["Hi"]))]) as server:
        turn = chat(n8n_url=server.url)
        shown, _ = turn.run("hello")
        assert shown == ["Hi"]
        assert "task" not in server.requests[0].json()


def test_memory_review_remembers_nothing_and_the_workflow_never_runs(chat):
    """Open WebUI reads `operations` from the first { to the last }; an empty list adds, changes and removes no
    memory (and makes no other model call)."""
    with LoopbackServer([Reply(headers=CAPTURE_HEADERS["n8n-stream"], steps=n8n_reply(["workflow ran"]))]) as server:
        turn = chat(n8n_url=server.url)
        answer = asyncio.run(own_task_call(turn, "memory_review"))
        assert server.requests == []
    assert answer == '{"operations": []}'
    assert parsed_like_open_webui(answer) == {"operations": []}
    assert turn.statuses == []


def test_context_compaction_is_answered_empty_so_open_webui_writes_the_summary(chat):
    """An empty answer makes Open WebUI summarize the compacted messages itself, in their own words (a line per
    message, its first 500 characters); the workflow never sees the summary prompt."""
    with LoopbackServer([Reply(headers=CAPTURE_HEADERS["n8n-stream"], steps=n8n_reply(["workflow ran"]))]) as server:
        turn = chat(n8n_url=server.url)
        answer = asyncio.run(own_task_call(turn, "context_compaction"))
        assert server.requests == []
    assert answer == ""
    assert turn.statuses == []


@pytest.mark.parametrize(
    ("task", "prompt", "n8n_answer"),
    [
        ("context_compaction", COMPACTION_PROMPT, "The user plans three days in Lisbon; food is next."),
        (
            "memory_review",
            REVIEW_PROMPT,
            '{"operations": [{"action": "add", "type": "user", "content": "Likes museums"}]}',
        ),
    ],
)
def test_forwarded_compaction_and_memory_review_reach_the_workflow_with_their_task(chat, task, prompt, n8n_answer):
    reply = Reply(headers=CAPTURE_HEADERS["n8n-stream"], steps=n8n_reply([n8n_answer]))
    with LoopbackServer([reply]) as server:
        turn = chat(n8n_url=server.url, forward_background_tasks=True)
        answer = asyncio.run(own_task_call(turn, task))
        assert len(server.requests) == 1
        payload = server.requests[0].json()
    assert payload["task"] == task
    assert payload["chatInput"] == prompt
    assert payload["stream"] is False
    assert answer == n8n_answer
    assert turn.statuses == []
