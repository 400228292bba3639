"""Endpoint faults for the OpenAI-compatible HTTP generator: what tests/adapters/test_openai_http.py does not
already cover (it has timeouts, refused connections, dropped connections, 429/5xx with Retry-After, garbage,
truncated streams and the canary key). Added here: TCP resets (before the answer and mid-stream), a server
that accepts and never answers, a wall-clock bound over every fault kind, and a server that drips bytes."""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ragloom.adapters.generators.openai_http import OpenAICompatibleGenerator
from ragloom.errors import EndpointError
from ragloom.types import Message

ADAPTER_TESTS = Path(__file__).resolve().parents[1] / "adapters"
if str(ADAPTER_TESTS) not in sys.path:
    sys.path.insert(0, str(ADAPTER_TESTS))
from openai_fake import FakeOpenAIServer, Reply, _chunk  # noqa: E402

CHAT = [Message("user", "What is the capital of France?")]
CANARY = "sk-CANARY-reliability-42f1"


class RawServer:
    """A loopback TCP server with a scripted misbehaviour per connection: ``reset`` (RST right after reading
    the request), ``reset_mid_stream`` (two SSE tokens, then RST), ``blackhole`` (read, never answer),
    ``drip`` (a 200 whose body arrives one byte every 0.1 s, for ever), ``drip_sse`` (the same as an event
    stream), ``ok`` (a normal JSON answer)."""

    def __init__(self, *behaviours: str) -> None:
        self.behaviours = list(behaviours)
        self.connections = 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1"

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            behaviour = self.behaviours[min(self.connections, len(self.behaviours) - 1)]
            self.connections += 1
            threading.Thread(target=self._handle, args=(conn, behaviour), daemon=True).start()

    def _handle(self, conn: socket.socket, behaviour: str) -> None:
        try:
            conn.recv(1 << 16)
            if behaviour == "ok":
                body = (
                    b'{"choices": [{"message": {"role": "assistant", "content": "Paris."}, "finish_reason": "stop"}]}'
                )
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
                    + body
                )
                time.sleep(0.2)
            elif behaviour == "reset_mid_stream":
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
                )
                for token in ("Paris ", "is "):
                    data = _chunk({"content": token})
                    conn.sendall(b"%x\r\n%s\r\n" % (len(data), data))
                time.sleep(0.05)
            elif behaviour == "blackhole":
                self.stop.wait(10)
            elif behaviour == "drip":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n")
                while not self.stop.wait(0.1):
                    conn.sendall(b" ")
            elif behaviour == "drip_sse":  # keepalive comments, never an event: one byte each 0.1 s
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: 1000000\r\n\r\n")
                while not self.stop.wait(0.1):
                    conn.sendall(b":")
            if behaviour in ("reset", "reset_mid_stream"):
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = RST
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


@pytest.fixture
def raw() -> Iterator[Callable[..., RawServer]]:
    servers: list[RawServer] = []

    def make(*behaviours: str) -> RawServer:
        server = RawServer(*behaviours)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()


def _generator(base_url: str, **kwargs: Any) -> OpenAICompatibleGenerator:
    options: dict[str, Any] = {
        "connect_timeout": 0.3,
        "read_timeout": 0.3,
        "backoff": 0.01,
        "max_retries": 2,
        "api_key": CANARY,
    }
    options.update(kwargs)
    return OpenAICompatibleGenerator("fake-model", base_url=base_url, **options)


def _no_canary(exc: BaseException, logs: str) -> None:
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    assert CANARY not in text and CANARY not in repr(exc) and CANARY not in logs


def test_connection_reset_is_retried_then_reported(raw: Any, caplog: pytest.LogCaptureFixture, record: Any) -> None:
    caplog.set_level(logging.DEBUG)
    server = raw("reset")
    started = time.perf_counter()
    with pytest.raises(EndpointError, match="gave up after 3 attempt") as info:
        _generator(server.base_url).generate(CHAT)
    assert time.perf_counter() - started < 5
    assert server.connections == 3
    _no_canary(info.value, caplog.text)
    recovering = raw("reset", "reset", "ok")
    assert _generator(recovering.base_url).generate(CHAT) == "Paris."
    record("HTTP: connection reset before the answer", runs=2, retried=True, bounded=True, key_leaks=0)


def test_reset_mid_stream_keeps_the_tokens_and_fails_clearly(
    raw: Any, caplog: pytest.LogCaptureFixture, record: Any
) -> None:
    caplog.set_level(logging.DEBUG)
    server = raw("reset_mid_stream", "ok")
    got: list[str] = []
    with pytest.raises(EndpointError, match="stream ended early") as info:
        for token in _generator(server.base_url).stream(CHAT):
            got.append(token)
    assert got == ["Paris ", "is "] and server.connections == 1  # no retry once tokens were shown: no duplicates
    _no_canary(info.value, caplog.text)
    record("HTTP: connection reset mid-stream", runs=1, duplicated_tokens=0, key_leaks=0)


def test_server_that_never_answers_is_bounded(raw: Any, caplog: pytest.LogCaptureFixture, record: Any) -> None:
    caplog.set_level(logging.DEBUG)
    server = raw("blackhole")
    gen = _generator(server.base_url, max_retries=1)
    for call in (gen.generate, lambda chat: list(gen.stream(chat))):
        started = time.perf_counter()
        with pytest.raises(EndpointError, match="read_timeout") as info:
            call(CHAT)
        elapsed = time.perf_counter() - started
        assert elapsed < 2 * 0.3 + 1.5, elapsed  # two attempts of read_timeout, plus slack
        _no_canary(info.value, caplog.text)
    record("HTTP: server accepts and never answers", runs=2, bounded=True, key_leaks=0)


FAULTS = {
    "500 x3": [Reply(kind="status", status=500)] * 3,
    "503 x3 (stream)": [Reply(kind="status", status=503)] * 3,
    "429 Retry-After 3600": [Reply(kind="status", status=429, headers={"Retry-After": "3600"})] * 3,
    "slow server": [Reply(delay=0.5)] * 3,
    "dropped connection": [Reply(kind="drop")] * 3,
    "garbage body": [Reply(kind="garbage", echo_auth=True)],
    "no choices": [Reply(kind="no_choices", echo_auth=True)],
    "truncated stream": [Reply(kind="truncated")],
    "stream without [DONE]": [Reply(kind="eof")],
    "401 echoing the key": [Reply(kind="status", status=401, echo_auth=True)],
}


def test_every_fault_ends_in_bounded_time_without_the_key(caplog: pytest.LogCaptureFixture, record: Any) -> None:
    """max_retries=2, read_timeout=0.3 s, max_retry_delay=0.2 s: each fault ends in an EndpointError within a few
    seconds (never a hang), and the API key appears in no exception, traceback or log line (httpx at DEBUG)."""
    caplog.set_level(logging.DEBUG)
    worst = 0.0
    outcomes = 0
    with FakeOpenAIServer() as server:
        gen = _generator(server.base_url, max_retry_delay=0.2)
        for name, replies in FAULTS.items():
            for streaming in (False, True):
                if (streaming and name == "no choices") or (not streaming and "stream" in name):
                    continue  # the fake applies these kinds to one mode only
                server.script(*replies)
                started = time.perf_counter()
                with pytest.raises(EndpointError) as info:
                    if streaming:
                        list(gen.stream(CHAT))
                    else:
                        gen.generate(CHAT)
                elapsed = time.perf_counter() - started
                worst = max(worst, elapsed)
                assert elapsed < 4.0, (name, streaming, elapsed)
                _no_canary(info.value, caplog.text)
                outcomes += 1
                with server._lock:
                    server._replies.clear()
        gen.close()
        assert any(r.headers.get("authorization") == f"Bearer {CANARY}" for r in server.requests)
    record(
        "HTTP: fault matrix (10 faults, generate and stream)",
        runs=outcomes,
        endpoint_errors=outcomes,
        slowest_s=round(worst, 2),
        key_leaks=0,
    )


@pytest.mark.parametrize("call", ["generate", "stream", "agenerate", "astream"])
def test_dripping_server_is_bounded(raw: Any, call: str) -> None:
    """A body dripping one byte per 0.1 s restarts read_timeout for ever; total_timeout bounds the attempt."""
    server = raw("drip_sse" if "stream" in call else "drip")
    gen = _generator(server.base_url, max_retries=0, total_timeout=1.0)
    outcome: dict[str, Any] = {}

    async def consume_async() -> None:
        if call == "agenerate":
            await gen.agenerate(CHAT)
        else:
            async for _ in gen.astream(CHAT):
                pass

    def run() -> None:
        try:
            if call == "generate":
                gen.generate(CHAT)
            elif call == "stream":
                list(gen.stream(CHAT))
            else:
                asyncio.run(consume_async())
        except EndpointError as exc:
            outcome["error"] = exc

    started = time.monotonic()
    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(4.0)
    server.close()  # unblocks the worker either way
    assert not worker.is_alive() and "error" in outcome, f"{call} still waiting after 4 s"
    assert "total_timeout=1.0" in str(outcome["error"]) and time.monotonic() - started < 4.0
