from loopback import CAPTURE_HEADERS, Gate, LoopbackServer, Reply, n8n_reply


def test_n8n_stream_reaches_the_chat_token_by_token(chat):
    gate = Gate()
    lines = n8n_reply(["Hello", " from", " n8n"])
    reply = Reply(headers=CAPTURE_HEADERS["n8n-stream"], steps=[lines[0], lines[1], gate, *lines[2:]])

    with LoopbackServer([reply]) as server:
        turn = chat(n8n_url=server.url)
        chunks, final = turn.run(gates=[gate])

    assert chunks[0] == "Hello"  # shown while the server still waited to send the rest
    assert "".join(chunks) == "Hello from n8n"
    assert turn.descriptions[:2] == ["Waiting for n8n…", "AI Agent is answering"]
    assert final["done"] is True
