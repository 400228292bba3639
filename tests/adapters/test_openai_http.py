"""OpenAICompatibleGenerator against a real loopback HTTP server speaking the chat-completions protocol."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import socket
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ragloom.adapters.generators.openai_http import OpenAICompatibleGenerator
from ragloom.errors import ConfigError, EndpointError, InvalidInputError, TruncationWarning
from ragloom.protocols import AsyncGenerator, Generator
from ragloom.types import Message

if str(Path(__file__).parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).parent))
from openai_fake import FakeOpenAIServer, Reply, tokens_of

CHAT = [Message("system", "Answer briefly."), Message("user", "What is the capital of France?")]
ANSWER = Reply().content
CANARY = "sk-CANARY-7f3a9c1e5b"

Make = Callable[..., OpenAICompatibleGenerator]


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as fake:
        yield fake


@pytest.fixture
def make(server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[Make]:
    """Generators pointed at the fake server, with short timeouts and backoff; closed at teardown."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    made: list[OpenAICompatibleGenerator] = []

    def factory(**kwargs: object) -> OpenAICompatibleGenerator:
        options: dict[str, object] = {
            "base_url": server.base_url,
            "connect_timeout": 0.3,
            "read_timeout": 0.2,
            "backoff": 0.01,
            "max_retries": 2,
        }
        options.update(kwargs)
        gen = OpenAICompatibleGenerator("fake-model", **options)  # type: ignore[arg-type]
        made.append(gen)
        return gen

    yield factory
    for gen in made:
        gen.close()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ---- requests and answers


def test_generate_sends_an_openai_request(make: Make, server: FakeOpenAIServer) -> None:
    gen = make(api_key="sk-test", temperature=0.2, max_tokens=64, stop=["\n\n", "END"], extra_body={"seed": 7})
    assert gen.generate(CHAT) == ANSWER
    [request] = server.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer sk-test"
    assert request.body == {
        "model": "fake-model",
        "messages": [
            {"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": "What is the capital of France?"},
        ],
        "temperature": 0.2,
        "stream": False,
        "max_tokens": 64,
        "stop": ["\n\n", "END"],
        "seed": 7,
    }


def test_api_key_comes_from_the_environment_only_when_set(
    make: Make, server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    make(max_tokens=None).generate(CHAT)
    assert "authorization" not in server.requests[-1].headers
    assert "max_tokens" not in server.requests[-1].body and "stop" not in server.requests[-1].body
    monkeypatch.setenv("MY_LLM_KEY", "sk-from-env")
    make(api_key_env="MY_LLM_KEY").generate(CHAT)
    assert server.requests[-1].headers["authorization"] == "Bearer sk-from-env"


def test_stream_yields_tokens_as_sent(make: Make, server: FakeOpenAIServer) -> None:
    tokens = list(make(stop="\n").stream(CHAT))
    assert tokens == tokens_of(ANSWER) and "".join(tokens) == ANSWER
    [request] = server.requests
    assert request.body["stream"] is True and request.body["stop"] == ["\n"]
    assert request.headers["accept"] == "text/event-stream"


def test_stream_skips_comments_keepalives_role_and_usage_chunks(make: Make, server: FakeOpenAIServer) -> None:
    server.script(Reply(keepalives=True))
    assert "".join(make().stream(CHAT)) == ANSWER


def test_stream_accepts_a_plain_json_answer(make: Make, server: FakeOpenAIServer) -> None:
    server.script(Reply(kind="json_stream"))
    assert list(make().stream(CHAT)) == [ANSWER]


def test_name_protocols_and_repr(make: Make) -> None:
    gen = make(context_window=4096)
    assert gen.name == "openai:fake-model" and gen.context_window == 4096
    assert isinstance(gen, Generator) and isinstance(gen, AsyncGenerator)
    assert "fake-model" in repr(gen)


def test_context_manager_closes(server: FakeOpenAIServer) -> None:
    with OpenAICompatibleGenerator("m", server.base_url, api_key="k") as gen:
        assert gen.generate(CHAT) == ANSWER
    assert gen._client is None


def test_length_finish_warns(make: Make, server: FakeOpenAIServer) -> None:
    server.script(Reply(finish_reason="length"), Reply(finish_reason="length"), Reply(finish_reason="length"))
    gen = make()
    with pytest.warns(TruncationWarning, match="max_tokens=512") as caught:
        gen.generate(CHAT)
    assert caught[0].filename == __file__  # the warning points at the caller's line
    with pytest.warns(TruncationWarning) as caught:
        assert "".join(gen.stream(CHAT)) == ANSWER
    assert caught[0].filename == __file__

    async def consume() -> str:
        return "".join([token async for token in gen.astream(CHAT)])

    with pytest.warns(TruncationWarning) as caught:
        assert asyncio.run(consume()) == ANSWER
    assert caught[0].filename == __file__


def test_total_timeout_counts_the_server_not_a_slow_reader(make: Make, server: FakeOpenAIServer) -> None:
    """A caller that takes its time with each token is not the server's fault: the stream completes."""
    server.script(Reply())
    tokens = []
    for token in make(total_timeout=0.5).stream(CHAT):
        tokens.append(token)
        time.sleep(0.1)  # 0.1 s per token, well past 0.5 s in all
    assert "".join(tokens) == ANSWER and len(tokens) > 5


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"model": ""}, "model"),
        ({"base_url": "localhost:8000"}, "base_url"),
        ({"base_url": "http:///v1"}, "base_url"),
        ({"base_url": "http://[::1/v1"}, "base_url"),
        ({"temperature": -1.0}, "temperature"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"read_timeout": 0}, "timeout"),
        ({"max_retries": -1}, "max_retries"),
        ({"extra_body": {"stream": True}}, "extra_body"),
        ({"extra_body": {"x": object()}}, "JSON"),
        ({"stop": [""]}, "stop"),
    ],
)
def test_bad_configuration(kwargs: dict[str, object], match: str) -> None:
    options: dict[str, object] = {"model": "m", **kwargs}
    with pytest.raises(ConfigError, match=match):
        OpenAICompatibleGenerator(**options)  # type: ignore[arg-type]


def test_api_key_is_stripped_and_checked(make: Make, server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", " sk-env\n")
    make().generate(CHAT)
    assert server.requests[-1].headers["authorization"] == "Bearer sk-env"
    for bad in (f"{CANARY}\nX-Evil: 1", f"{CANARY} é", f"{CANARY} {CANARY}"):
        with pytest.raises(ConfigError, match="stray quote or line break") as info:
            OpenAICompatibleGenerator("m", api_key=bad)
        assert CANARY not in str(info.value)


def test_bad_messages(make: Make) -> None:
    gen = make()
    for bad in ([], "hello", [{"role": "user", "content": "hi"}]):
        with pytest.raises(InvalidInputError):
            gen.generate(bad)  # type: ignore[arg-type]


# ---- retries


def test_500_then_ok_is_retried(make: Make, server: FakeOpenAIServer) -> None:
    server.script(Reply(kind="status", status=500), Reply(kind="status", status=503))
    assert make().generate(CHAT) == ANSWER
    assert len(server.requests) == 3


def test_429_waits_for_retry_after(make: Make, server: FakeOpenAIServer) -> None:
    server.script(Reply(kind="status", status=429, headers={"Retry-After": "0.25"}))
    start = time.perf_counter()
    assert make().generate(CHAT) == ANSWER
    assert time.perf_counter() - start >= 0.25
    assert len(server.requests) == 2


def test_retry_after_is_capped(make: Make, server: FakeOpenAIServer) -> None:
    server.script(Reply(kind="status", status=429, headers={"Retry-After": "120"}))
    start = time.perf_counter()
    assert make(max_retry_delay=0.05).generate(CHAT) == ANSWER
    assert time.perf_counter() - start < 5


def test_slow_server_times_out_then_retry_succeeds(make: Make, server: FakeOpenAIServer) -> None:
    server.script(Reply(delay=0.4))
    assert make().generate(CHAT) == ANSWER
    assert len(server.requests) == 2


def test_retries_are_bounded(make: Make, server: FakeOpenAIServer) -> None:
    server.script(*[Reply(kind="status", status=502, message="bad gateway")] * 10)
    with pytest.raises(EndpointError, match="3 attempt") as info:
        make(max_retries=2).generate(CHAT)
    assert info.value.status_code == 502 and "bad gateway" in str(info.value)
    assert len(server.requests) == 3


def test_slow_server_exhausts_retries(make: Make, server: FakeOpenAIServer) -> None:
    server.script(Reply(delay=0.4), Reply(delay=0.4))
    with pytest.raises(EndpointError, match=r"read_timeout=0\.2"):
        make(max_retries=1).generate(CHAT)
    assert len(server.requests) == 2


def test_connection_refused_is_retried_then_reported(make: Make) -> None:
    gen = make(base_url=f"http://127.0.0.1:{_closed_port()}/v1", max_retries=1)
    with pytest.raises(EndpointError, match="could not connect") as info:
        gen.generate(CHAT)
    assert info.value.status_code is None


def test_dropped_connection_is_retried(make: Make, server: FakeOpenAIServer) -> None:
    server.script(Reply(kind="drop"), Reply(kind="drop"))
    assert make().generate(CHAT) == ANSWER
    server.script(Reply(kind="drop"))
    assert "".join(make().stream(CHAT)) == ANSWER


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_client_errors_are_not_retried(make: Make, server: FakeOpenAIServer, status: int) -> None:
    server.script(Reply(kind="status", status=status, message="the server says no"))
    with pytest.raises(EndpointError, match="the server says no") as info:
        make().generate(CHAT)
    assert info.value.status_code == status and f"HTTP {status}" in str(info.value)
    assert len(server.requests) == 1


def test_wrong_path_gives_a_404_hint(make: Make, server: FakeOpenAIServer) -> None:
    with pytest.raises(EndpointError, match="ends in /v1") as info:
        make(base_url=server.base_url.removesuffix("/v1")).generate(CHAT)
    assert info.value.status_code == 404


# ---- malformed answers


def test_undecodable_body_is_final_not_retried(make: Make, server: FakeOpenAIServer) -> None:
    server.script(Reply(kind="bad_gzip"), Reply(kind="bad_gzip"))
    gen = make()
    with pytest.raises(EndpointError, match="DecodingError"):
        gen.generate(CHAT)
    with pytest.raises(EndpointError, match="DecodingError"):
        list(gen.stream(CHAT))
    assert len(server.requests) == 2


def test_garbage_json_is_reported_with_a_short_excerpt(make: Make, server: FakeOpenAIServer) -> None:
    server.script(Reply(kind="garbage"))
    with pytest.raises(EndpointError, match=r"not JSON.*<html>oops") as info:
        make().generate(CHAT)
    assert len(str(info.value)) < 400
    assert len(server.requests) == 1


def test_missing_choices_is_reported(make: Make, server: FakeOpenAIServer) -> None:
    server.script(Reply(kind="no_choices"))
    with pytest.raises(EndpointError, match="choices"):
        make().generate(CHAT)


def test_stream_garbage_is_reported(make: Make, server: FakeOpenAIServer) -> None:
    server.script(Reply(kind="garbage"))
    with pytest.raises(EndpointError, match="stream chunk is not JSON"):
        list(make().stream(CHAT))


@pytest.mark.parametrize("kind", ["truncated", "eof"])
def test_stream_cut_short_yields_what_came_then_fails(make: Make, server: FakeOpenAIServer, kind: str) -> None:
    server.script(Reply(kind=kind))  # type: ignore[arg-type]
    got: list[str] = []
    with pytest.raises(EndpointError, match="stream ended early"):
        for token in make().stream(CHAT):
            got.append(token)
    assert got == tokens_of(ANSWER)[:2]
    assert len(server.requests) == 1  # tokens were yielded: no retry, no duplicated text


def test_stream_retries_before_the_first_token(make: Make, server: FakeOpenAIServer) -> None:
    server.script(Reply(kind="status", status=503), Reply(kind="eof", content=""), Reply(delay=0.4))
    assert "".join(make(max_retries=3).stream(CHAT)) == ANSWER
    assert len(server.requests) == 4


def test_stream_client_error_is_not_retried(make: Make, server: FakeOpenAIServer) -> None:
    server.script(Reply(kind="status", status=401, message="invalid key"))
    with pytest.raises(EndpointError, match="invalid key") as info:
        list(make().stream(CHAT))
    assert info.value.status_code == 401 and len(server.requests) == 1


# ---- secrets


def test_api_key_never_leaks(make: Make, server: FakeOpenAIServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    gen = make(api_key=CANARY, max_retries=1)
    failures = [
        Reply(kind="status", status=401, echo_auth=True),
        Reply(kind="status", status=500, echo_auth=True),
        Reply(kind="status", status=429, echo_auth=True, headers={"Retry-After": "0"}),
        Reply(kind="garbage", echo_auth=True),
        Reply(kind="no_choices", echo_auth=True),
        Reply(kind="truncated"),
        Reply(kind="drop"),
        Reply(delay=0.4),
    ]
    errors: list[EndpointError] = []
    for reply in failures:
        for call in (gen.generate, lambda chat: list(gen.stream(chat))):
            server.script(reply, reply)
            try:
                call(CHAT)
            except EndpointError as exc:
                errors.append(exc)
            time.sleep(0.01)
    refused = make(api_key=CANARY, base_url=f"http://127.0.0.1:{_closed_port()}/v1", max_retries=0)
    with pytest.raises(EndpointError) as info:
        refused.generate(CHAT)
    errors.append(info.value)
    assert len(errors) >= 14
    assert any(r.headers.get("authorization") == f"Bearer {CANARY}" for r in server.requests)
    for exc in errors:
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        assert CANARY not in text and CANARY not in repr(exc)
    assert CANARY not in repr(gen) and CANARY not in str(gen)
    assert CANARY not in caplog.text
    assert "retrying" in caplog.text  # the retry log lines were captured (and are key-free)


# ---- async


async def test_agenerate_and_astream(make: Make, server: FakeOpenAIServer) -> None:
    async with make(api_key="sk-a") as gen:
        assert await gen.agenerate(CHAT) == ANSWER
        assert [t async for t in gen.astream(CHAT)] == tokens_of(ANSWER)
    assert [r.body["stream"] for r in server.requests] == [False, True]
    assert all(r.headers["authorization"] == "Bearer sk-a" for r in server.requests)


async def test_async_retries_and_client_errors(make: Make, server: FakeOpenAIServer) -> None:
    server.script(Reply(kind="status", status=500), Reply(kind="status", status=429), Reply(kind="drop"))
    async with make(max_retries=3) as gen:
        assert "".join([t async for t in gen.astream(CHAT)]) == ANSWER
        assert len(server.requests) == 4
        server.script(Reply(kind="status", status=404, message="model not found"))
        with pytest.raises(EndpointError, match="model not found") as info:
            await gen.agenerate(CHAT)
        assert info.value.status_code == 404 and len(server.requests) == 5
        gen.max_retries = 1
        server.script(Reply(delay=0.4), Reply(delay=0.4))
        with pytest.raises(EndpointError, match="2 attempt"):
            await gen.agenerate(CHAT)


async def test_astream_cut_short(make: Make, server: FakeOpenAIServer) -> None:
    server.script(Reply(kind="truncated"))
    got: list[str] = []
    async with make() as gen:
        with pytest.raises(EndpointError, match="stream ended early"):
            async for token in gen.astream(CHAT):
                got.append(token)
    assert got == tokens_of(ANSWER)[:2] and len(server.requests) == 1


async def test_astream_does_not_block_the_event_loop(make: Make, server: FakeOpenAIServer) -> None:
    server.script(Reply(gap=0.03, delay=0.1))
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    task = asyncio.create_task(ticker())
    ticks_at_token: list[int] = []
    async with make(read_timeout=1.0) as gen:
        async for _ in gen.astream(CHAT):
            ticks_at_token.append(ticks)
    task.cancel()
    assert len(ticks_at_token) == len(tokens_of(ANSWER))
    # The ticker kept running before the first token and between every pair of tokens.
    assert ticks_at_token[0] >= 5
    assert all(b > a for a, b in itertools.pairwise(ticks_at_token))


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_event_stream_split_anywhere_gives_the_same_tokens(newline: str) -> None:
    """Bytes arrive in arbitrary pieces: every split point, even inside a \\r\\n, decodes to the same tokens."""
    from ragloom.adapters.generators.openai_http import _StreamState

    events = [{"content": "Par"}, {"content": "is"}, {"content": "."}]
    text = "".join(
        f"data: {json.dumps({'choices': [{'index': 0, 'delta': delta, 'finish_reason': None}]})}{newline}{newline}"
        for delta in events
    )
    text += f": keepalive{newline}data: [DONE]{newline}{newline}"
    owner = OpenAICompatibleGenerator("m", "http://127.0.0.1:9/v1")
    for cut in range(len(text) + 1):
        for cut2 in (cut, min(len(text), cut + 1)):  # also a piece of one character
            state = _StreamState(owner)
            pieces = [text[:cut], text[cut:cut2], text[cut2:]]
            tokens = [token for piece in pieces for token in state.feed_text(piece)]  # a generator per piece
            state.end()
            assert tokens == ["Par", "is", "."] and state.done, (cut, cut2)


def test_tokens_before_a_bad_event_in_the_same_piece_are_not_lost() -> None:
    from ragloom.adapters.generators.openai_http import _StreamState

    good = json.dumps({"choices": [{"index": 0, "delta": {"content": "Par"}, "finish_reason": None}]})
    state = _StreamState(OpenAICompatibleGenerator("m", "http://127.0.0.1:9/v1"))
    received = []
    with pytest.raises(EndpointError):
        for token in state.feed_text(f"data: {good}\n\ndata: {{not json\n\n"):
            received.append(token)
    assert received == ["Par"]
