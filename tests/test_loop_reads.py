"""The body is read on the event loop: no thread per reply once the head is in, what the socket file
buffered with the head is read first, and TLS records held in the TLS layer are read without waiting for
the socket. Real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import pytest
from chat_helpers import STOP_WITHIN, reply_threads, threads_left_after
from loopback import CAPTURE_HEADERS, Gate, LoopbackServer, Reply, n8n_reply, wait_unless_closed
from n8n_wire import read_request

N8N_STREAM = CAPTURE_HEADERS["n8n-stream"]
pytestmark = pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")  # verify_ssl off


def test_once_the_head_is_in_no_reply_thread_is_left_while_the_body_streams(chat):
    before = reply_threads()
    gate = Gate()
    lines = n8n_reply(["Hello", " world"])
    reply = Reply(headers=N8N_STREAM, steps=[*lines[:2], gate, *lines[2:]])

    async def scenario(server: LoopbackServer) -> tuple[str, set[threading.Thread], str]:
        chunks = await chat(n8n_url=server.url).start()
        first = await chunks.__anext__()
        left = await asyncio.to_thread(threads_left_after, before)  # n8n still holds the rest back
        gate.open()
        return first, left, "".join([chunk async for chunk in chunks])

    with LoopbackServer([reply]) as server:
        first, left, rest = asyncio.run(scenario(server))

    assert (first, rest) == ("Hello", " world")
    assert left == set()


@pytest.mark.parametrize(
    "head",
    [
        b"Content-Length: 11\r\n\r\nHello world",
        b"Transfer-Encoding: chunked\r\n\r\n5\r\nHello\r\n6\r\n world\r\n0\r\n\r\n",
        b"Connection: close\r\n\r\nHello world",
    ],
    ids=["length", "chunked", "close"],
)
def test_a_body_sent_with_the_head_in_one_write_is_read_whole(chat, head):
    reply = Reply(raw_head=b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n" + head)

    with LoopbackServer([reply]) as server:
        shown, final = chat(n8n_url=server.url).run(within=5)

    assert "".join(shown) == "Hello world"
    assert final["done"] is True


# ---------------------------------------------------------------------------
# TLS: a server with a self-signed certificate; the pipe with verify_ssl off.


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"),
            *("-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1"),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


class TlsServer:
    """One HTTPS connection: the head, then each body piece as its own TLS record, then waits at `gate`
    before the body's end; notes when the client hung up."""

    def __init__(self, certificate: tuple[Path, Path], pieces: list[bytes], gate: Gate) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(*certificate)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"https://127.0.0.1:{self.listener.getsockname()[1]}/webhook/test"
        self.pieces, self.gate = pieces, gate
        self.gone_at: float | None = None
        self.gone = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with self.context.wrap_socket(conn, server_side=True) as tls:
            assert read_request(tls) is not None
            head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            tls.sendall(head.encode())
            for piece in self.pieces:
                tls.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            if wait_unless_closed(tls, self.gate):  # False: the client hung up while n8n held the rest back
                tls.sendall(b"0\r\n\r\n")
                tls.settimeout(10)
                with suppress(OSError):
                    while tls.recv(65536):
                        pass
        self.gone_at = time.monotonic()
        self.gone.set()

    def close(self) -> None:
        self.gate.open()
        self.listener.close()
        self.thread.join(10)


@pytest.fixture
def tls_server(certificate: tuple[Path, Path]) -> Iterator[TlsServer]:
    server = TlsServer(certificate, n8n_reply(["a", "b", "c"])[:4], Gate())
    yield server
    server.close()


def test_tls_records_held_by_the_tls_layer_are_shown_without_waiting_for_the_socket(chat, tls_server):
    async def scenario() -> str:
        chunks = await chat(n8n_url=tls_server.url, verify_ssl=False, read_timeout=30).start()
        shown = ""
        while shown != "abc":  # all three records came before the server stopped at its gate
            shown += await asyncio.wait_for(chunks.__anext__(), 5)
        tls_server.gate.open()
        return shown + "".join([chunk async for chunk in chunks])

    assert asyncio.run(scenario()) == "abc"


def test_stop_over_tls_hangs_up_at_once(chat, tls_server):
    async def scenario() -> float:
        chunks = await chat(n8n_url=tls_server.url, verify_ssl=False).start()
        assert await asyncio.wait_for(chunks.__anext__(), 5)
        stopped_at = time.monotonic()
        await chunks.aclose()
        assert await asyncio.to_thread(tls_server.gone.wait, 5)
        return (tls_server.gone_at or 0) - stopped_at

    assert asyncio.run(scenario()) < STOP_WITHIN
