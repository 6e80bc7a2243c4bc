"""Issue 10: the agent's work shown the way Open WebUI shows its own: tool steps as collapsed tool-call
blocks before the answer, a working status between n8n's blocks, sources as citations."""

import json
from typing import Any

from loopback import CAPTURE_HEADERS, Gate, LoopbackServer, Reply, n8n_reply
from n8n_wire import n8n_json

import pipe_n8n_stream
from pipe_n8n_stream import Source, Text, events_of_json, source_data

N8N_STREAM = CAPTURE_HEADERS["n8n-stream"]
JSON_HEADERS = [("Content-Type", "application/json; charset=utf-8")]

# n8n's AI Agent with "Return Intermediate Steps" (lastnode-openai-tool.txt's shape).
TWO_STEPS = [
    {
        "action": {"tool": "calculator", "toolInput": {"input": "2+2"}, "log": "Invoking calculator"},
        "observation": "4",
    },
    {
        "action": {"tool": "Wikipedia", "toolInput": "n8n", "log": "Invoking Wikipedia"},
        "observation": 'n8n is a "workflow" tool <b>',
    },
]
CALCULATOR_BLOCK = (
    '<details type="tool_calls" done="true" name="calculator" arguments="{&quot;input&quot;: &quot;2+2&quot;}" '
    'result="&quot;4&quot;">\n<summary>Tool Executed</summary>\n</details>\n'
)
WIKIPEDIA_BLOCK = (
    '<details type="tool_calls" done="true" name="Wikipedia" arguments="&quot;n8n&quot;" '
    'result="&quot;n8n is a \\&quot;workflow\\&quot; tool &lt;b&gt;&quot;">\n<summary>Tool Executed</summary>\n'
    "</details>\n"
)
SOURCES = [
    {"title": "n8n docs", "url": "https://docs.n8n.io/", "content": "Workflow automation."},
    {"name": "Blog", "url": "https://blog.n8n.io/"},
]
SOURCE_EVENTS = [
    {
        "type": "source",
        "data": {
            "source": {"name": "n8n docs", "url": "https://docs.n8n.io/"},
            "document": ["Workflow automation."],
            "metadata": [{"source": "https://docs.n8n.io/", "name": "n8n docs"}],
        },
    },
    {
        "type": "source",
        "data": {
            "source": {"name": "Blog", "url": "https://blog.n8n.io/"},
            "document": ["Blog"],
            "metadata": [{"source": "https://blog.n8n.io/", "name": "Blog"}],
        },
    },
]


def complete(body: Any) -> Reply:
    return Reply(headers=JSON_HEADERS, steps=[json.dumps(body).encode()], body_mode="length")


def answered(chat: Any, reply: Reply, **valves: Any) -> tuple[str, Any]:
    """(the whole text shown, the chat turn with its events) for one reply; n8n is asked once."""
    with LoopbackServer([reply]) as server:
        turn = chat(n8n_url=server.url, **valves)
        shown, _ = turn.run()
        text = "".join(shown)
        assert len(server.requests) == 1
    return text, turn


def sources_of(turn: Any) -> list[dict[str, Any]]:
    return [event for event in turn.statuses if event["type"] == "source"]


def test_a_complete_reply_shows_each_tool_step_as_a_collapsed_block_before_the_answer(chat):
    text, turn = answered(chat, complete({"output": "It is 4.", "intermediateSteps": TWO_STEPS}), stream=False)

    assert text == CALCULATOR_BLOCK + WIKIPEDIA_BLOCK + "It is 4."
    assert "intermediateSteps" not in text and "Invoking" not in text
    assert turn.descriptions[-1].endswith(", 2 tool steps")


def test_n8n_list_reply_with_steps_shows_them_too(chat):
    text, _ = answered(chat, complete([{"output": "It is 4.", "intermediateSteps": TWO_STEPS[:1]}]), stream=False)

    assert text == CALCULATOR_BLOCK + "It is 4."


def test_a_long_tool_input_and_output_are_cut(chat):
    steps = [{"action": {"tool": "fetch", "toolInput": "q" * 5000}, "observation": "x" * 100_000}]
    text, _ = answered(chat, complete({"output": "Done.", "intermediateSteps": steps}), stream=False)

    cut_input = "&quot;" + "q" * pipe_n8n_stream.TOOL_TEXT_CHARS + "…&quot;"
    cut_output = "&quot;" + "x" * pipe_n8n_stream.TOOL_TEXT_CHARS + "…&quot;"
    assert text == (
        f'<details type="tool_calls" done="true" name="fetch" arguments="{cut_input}" result="{cut_output}">\n'
        "<summary>Tool Executed</summary>\n</details>\nDone."
    )


def test_show_tool_steps_off_shows_the_answer_alone_and_still_counts_the_steps(chat):
    body = {"output": "It is 4.", "intermediateSteps": TWO_STEPS}
    text, turn = answered(chat, complete(body), stream=False, show_tool_steps=False)

    assert text == "It is 4."
    assert turn.descriptions[-1].endswith(", 2 tool steps")


def test_steps_and_sources_never_show_in_a_no_text_message(chat):
    body = {"answer": "x", "intermediateSteps": TWO_STEPS, "sources": SOURCES}
    text, _ = answered(chat, complete(body), stream=False)

    assert text == (
        '⚠️ n8n\'s reply has no text at `output`: {"answer": "x"}. '
        "Set the `response_field` valve to the field that holds the answer."
    )


def test_sources_of_a_complete_reply_become_source_events_not_text(chat):
    text, turn = answered(chat, complete({"output": "See the docs.", "sources": SOURCES}), stream=False)

    assert text == "See the docs."
    assert sources_of(turn) == SOURCE_EVENTS


def test_sources_of_a_respond_to_webhook_item_become_source_events(chat):
    body = n8n_json({"output": "See the docs.", "sources": SOURCES, "intermediateSteps": TWO_STEPS[:1]})
    reply = Reply(headers=N8N_STREAM, steps=n8n_reply([body], node="Respond to Webhook"))
    text, turn = answered(chat, reply)

    assert text == CALCULATOR_BLOCK + "See the docs."
    assert sources_of(turn) == SOURCE_EVENTS


def test_a_models_streamed_words_about_sources_are_shown_as_they_came(chat):
    words = json.dumps({"output": "x", "sources": SOURCES})
    reply = Reply(headers=N8N_STREAM, steps=n8n_reply([words, " is the shape."]))
    text, turn = answered(chat, reply)

    assert text == words + " is the shape."
    assert sources_of(turn) == []


def test_only_web_links_become_citation_links():
    value = {"output": "x", "sources": [{"title": "Bad", "url": "javascript:alert(1)"}, {"url": "ftp://x"}, 7]}
    events = [source_data(e) for e in events_of_json(value, "output") if isinstance(e, Source)]

    assert events == [{"source": {"name": "Bad"}, "document": ["Bad"], "metadata": [{"source": "Bad", "name": "Bad"}]}]
    assert events_of_json(value, "output")[-1] == Text("x")


def test_a_stream_open_after_a_blocks_end_says_the_agent_is_using_a_tool(chat):
    """n8n runs the tool between two blocks without a word: the server holds the second block back until
    the chat shows the working status, so the status is seen while the stream is open."""
    said = Gate()
    first = n8n_reply(["Let me check."])
    second = n8n_reply(["It is 4."])
    reply = Reply(headers=N8N_STREAM, steps=[*first, said, *second])

    with LoopbackServer([reply]) as server:
        turn = chat(n8n_url=server.url)

        async def emit(event: dict[str, Any]) -> None:
            turn.statuses.append(event)
            if "is using a tool" in event["data"].get("description", ""):
                said.open()

        turn.emit = emit
        shown, _ = turn.run()
        text = "".join(shown)

    assert text == "Let me check.\n\nIt is 4."
    assert turn.descriptions[:-1] == [
        "Waiting for n8n…",
        "AI Agent is answering",
        "AI Agent is using a tool… (step 1)",
        "AI Agent is answering",
    ]
    assert turn.descriptions[-1].startswith("Done: ") and turn.descriptions[-1].endswith(", 1 tool step")


def test_a_reply_that_ends_after_its_block_claims_no_tool(chat, monkeypatch):
    """The body ends a moment after the last `end`: the working status, not yet due, is never said."""
    monkeypatch.setattr(pipe_n8n_stream, "TOOL_STATUS_DELAY", 60.0)
    reply = Reply(headers=N8N_STREAM, steps=[*n8n_reply(["Hi"]), 0.2])
    text, turn = answered(chat, reply)

    assert text == "Hi"
    assert turn.descriptions[:-1] == ["Waiting for n8n…", "AI Agent is answering"]
    assert "tool step" not in turn.descriptions[-1]


def test_a_tool_step_streamed_as_an_item_is_shown_as_sent_and_nothing_is_invented(chat):
    step = '{"tool": "calculator", "result": 4}'
    reply = Reply(headers=N8N_STREAM, steps=n8n_reply([step, "\n"], node="Code"))
    text, turn = answered(chat, reply)

    assert text == step + "\n"
    assert "tool step" not in turn.descriptions[-1]
