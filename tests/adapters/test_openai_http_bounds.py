"""OpenAICompatibleGenerator against a hostile endpoint (a real loopback HTTP server): bodies that never end or
decompress to gigabytes, an endless event line, a drip that outlives every attempt, and echoes of the API key."""

from __future__ import annotations

import base64
import gzip
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from ragloom.adapters.generators.openai_http import OpenAICompatibleGenerator
from ragloom.errors import EndpointError
from ragloom.types import Message

CHAT = [Message("user", "What is the capital of France?")]
KEY = "sk-CANARY-7f3a9c1e5bQ"
BOMB = gzip.compress(b"\0" * (64 << 20), compresslevel=9)  # 64 MiB decoded from ~64 KiB


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.requests += 1
        try:
            getattr(self, f"_{self.server.mode}")()
        except OSError:  # the client gave up, as it should
            self.close_connection = True

    def _start(self, content_type: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _bomb(self) -> None:
        self._start("application/json", {"Content-Encoding": "gzip"})
        for start in range(0, len(BOMB), 16384):
            self._chunk(BOMB[start : start + 16384])
        self._chunk(b"")

    def _endless_json(self) -> None:
        self._start("application/json")
        self._chunk(b'{"choices": [{"message": {"content": "')
        while True:
            self._chunk(b"a" * 65536)

    def _endless_line(self) -> None:
        self._start("text/event-stream")
        self._chunk(b"data: ")
        while True:
            self._chunk(b"a" * 65536)

    def _drip(self) -> None:
        self._start("text/event-stream")
        while True:
            self._chunk(b": keep-alive\n\n")
            time.sleep(0.05)

    def _echo_key(self) -> None:
        auth = self.headers.get("Authorization", "")
        secret = auth.partition(" ")[2]
        basic = base64.b64encode(f"user:{secret}".encode()).decode()
        body = f'{{"error": {{"message": "bad key {secret.lower()} / {secret.upper()} / Basic {basic}"}}}}'.encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    mode = "bomb"
    requests = 0

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


@pytest.fixture()
def endpoint() -> Iterator[_Server]:
    server = _Server(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


Make = Callable[..., OpenAICompatibleGenerator]


@pytest.fixture()
def make(endpoint: _Server, monkeypatch: pytest.MonkeyPatch) -> Iterator[Make]:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    made: list[OpenAICompatibleGenerator] = []

    def factory(mode: str, **options: Any) -> OpenAICompatibleGenerator:
        endpoint.mode = mode
        options = {"read_timeout": 5.0, "max_retries": 0, "backoff": 0.01, **options}
        gen = OpenAICompatibleGenerator("m", f"http://127.0.0.1:{endpoint.server_address[1]}/v1", **options)
        made.append(gen)
        return gen

    yield factory
    for gen in made:
        gen.close()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", ["bomb", "endless_json"])
def test_a_body_past_the_limit_is_stopped(make: Make, mode: str) -> None:
    gen = make(mode, max_response_bytes=1 << 20)
    with pytest.raises(EndpointError, match="max_response_bytes"):
        gen.generate(CHAT)
    with pytest.raises(EndpointError, match="max_response_bytes"):
        "".join(gen.stream(CHAT))


@pytest.mark.timeout(120)
def test_an_endless_event_line_is_stopped(make: Make) -> None:
    gen = make("endless_line", max_response_bytes=8 << 20, total_timeout=30)
    with pytest.raises(EndpointError, match="max_response_bytes"):
        "".join(gen.stream(CHAT))


@pytest.mark.timeout(120)
async def test_async_paths_are_bounded_too(make: Make) -> None:
    gen = make("bomb", max_response_bytes=1 << 20)
    with pytest.raises(EndpointError, match="max_response_bytes"):
        await gen.agenerate(CHAT)
    gen = make("endless_line", max_response_bytes=4 << 20)
    with pytest.raises(EndpointError, match="max_response_bytes"):
        "".join([piece async for piece in gen.astream(CHAT)])


@pytest.mark.timeout(120)
def test_total_timeout_bounds_the_whole_call_not_each_attempt(make: Make, endpoint: _Server) -> None:
    """A keep-alive drip restarts read_timeout for ever; total_timeout stops it once for the whole call, and no
    retry starts after the time is spent (the drip used to run max_retries + 1 times total_timeout)."""
    gen = make("drip", total_timeout=1.0, max_retries=3)
    with pytest.raises(EndpointError, match="total_timeout"):
        "".join(gen.stream(CHAT))
    assert endpoint.requests == 1


def test_echoes_of_the_key_are_redacted_in_every_form(make: Make) -> None:
    gen = make("echo_key", api_key=KEY)
    with pytest.raises(EndpointError) as caught:
        gen.generate(CHAT)
    message = str(caught.value)
    basic = base64.b64encode(f"user:{KEY}".encode()).decode()
    assert "HTTP 401" in message
    for form in (KEY, KEY.lower(), KEY.upper(), basic[8:-4]):
        assert form not in message, form
