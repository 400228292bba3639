"""`ragloom serve`: the real Starlette app under uvicorn on a free loopback port, tiny models, real HTTP clients."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette")

import httpx
import uvicorn
from typer.testing import CliRunner

from ragloom.errors import ConfigError
from ragloom.pipeline import Pipeline
from ragloom.recipes.cli import app as cli
from ragloom.recipes.config import GeneratorSpec, IndexSpec, RetrieverSpec, build_generator, open_pipeline
from ragloom.recipes.serve import ServerLimits, build_app, check_exposure
from ragloom.testing import CONTRACT_DOCUMENTS

TOKEN = "serve-token-for-tests-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
runner = CliRunner()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def _running(app: Any) -> Iterator[str]:
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the server did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory: pytest.TempPathFactory, tiny_bert_dir: Path, tiny_llm_dir: Path) -> Path:
    index = tmp_path_factory.mktemp("serve") / "index"
    spec = IndexSpec(
        retrievers=(
            RetrieverSpec(name="dense", model=str(tiny_bert_dir), store="memory"),
            RetrieverSpec(name="bm25", kind="bm25", model=str(tiny_bert_dir), store="bm25s"),
        ),
        generator=GeneratorSpec(kind="local", model=str(tiny_llm_dir), max_new_tokens=8),
    )
    with open_pipeline(index, spec=spec) as pipeline:
        pipeline.ingest(list(CONTRACT_DOCUMENTS))
    return index


@pytest.fixture(scope="module")
def pipeline(index_dir: Path) -> Iterator[Pipeline]:
    spec = IndexSpec.load(index_dir)
    with open_pipeline(index_dir, generator=build_generator(spec.generator)) as opened:
        yield opened


@pytest.fixture(scope="module")
def url(pipeline: Pipeline) -> Iterator[str]:
    app = build_app(pipeline, limits=ServerLimits(max_k=10, max_body=2048), token=TOKEN)
    with _running(app) as base:
        yield base


def _post(url: str, path: str, body: Any, **kw: Any) -> httpx.Response:
    return httpx.post(url + path, json=body, headers=kw.pop("headers", AUTH), timeout=60, **kw)


def test_search_matches_the_python_api(url: str, pipeline: Pipeline) -> None:
    response = _post(url, "/v1/search", {"query": "knead the dough", "k": 3})
    assert response.status_code == 200, response.text
    hits = response.json()["hits"]
    assert [h["chunk_id"] for h in hits] == [h.chunk.id for h in pipeline.retrieve("knead the dough", 3)]
    assert set(hits[0]) >= {"rank", "score", "doc_id", "page", "start", "end", "text", "source"}
    health = httpx.get(url + "/v1/health", headers=AUTH, timeout=10).json()
    assert health["retrievers"] == ["dense", "bm25"] and health["ask"] is True


def test_limits_and_bad_requests(url: str) -> None:
    assert httpx.post(url + "/v1/search", json={"query": "x"}, timeout=10).status_code == 401
    too_many = _post(url, "/v1/search", {"query": "knead", "k": 11})
    assert too_many.status_code == 422 and "from 1 to 10" in too_many.json()["error"]["message"]
    big = _post(url, "/v1/search", {"query": "knead " * 1000})
    assert big.status_code == 413
    not_json = httpx.post(url + "/v1/search", content=b"{nope", headers=AUTH, timeout=10)
    assert not_json.status_code == 400 and "not JSON" in not_json.json()["error"]["message"]
    empty = _post(url, "/v1/search", {"query": "  "})
    assert empty.status_code == 400 and "non-empty" in empty.json()["error"]["message"]
    group = _post(url, "/v1/search", {"query": "knead", "group_by": "section"})
    assert group.status_code == 422


def test_ask_json_and_sse_stream(url: str) -> None:
    response = _post(url, "/v1/ask", {"question": "What did the court hold?", "k": 2})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert set(answer) >= {"answer", "citations", "context", "timings"} and len(answer["context"]) == 2

    events: list[tuple[str, Any]] = []
    body = {"question": "What did the court hold?", "k": 2, "stream": True}
    with httpx.stream("POST", url + "/v1/ask", json=body, headers=AUTH, timeout=60) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        event = ""
        for line in stream.iter_lines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                events.append((event, json.loads(line[5:])))
    assert events[-1][0] == "answer" and all(e == "token" for e, _ in events[:-1])
    final = events[-1][1]
    streamed = "".join(d["text"] for _, d in events[:-1])
    assert streamed == final["answer"] or (final["citations_inferred"] and final["answer"].startswith(streamed[:10]))
    assert [c["chunk_id"] for c in final["context"]] == [c["chunk_id"] for c in answer["context"]]


def test_openai_chat_completions(url: str) -> None:
    body = {"model": "ragloom", "messages": [{"role": "user", "content": "What did the court hold?"}], "k": 2}
    response = _post(url, "/v1/chat/completions", body)
    assert response.status_code == 200, response.text
    completion = response.json()
    assert completion["object"] == "chat.completion"
    message = completion["choices"][0]["message"]
    assert message["role"] == "assistant" and message["content"].startswith(completion["ragloom"]["answer"])
    if completion["ragloom"]["citations"]:
        assert "Sources:" in message["content"]

    pieces, finish, extra = [], None, None
    with httpx.stream(
        "POST", url + "/v1/chat/completions", json={**body, "stream": True}, headers=AUTH, timeout=60
    ) as stream:
        lines = [line[6:] for line in stream.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    for line in lines[:-1]:
        chunk = json.loads(line)
        assert chunk["object"] == "chat.completion.chunk"
        choice = chunk["choices"][0]
        pieces.append(choice["delta"].get("content", ""))
        finish = choice["finish_reason"] or finish
        extra = chunk.get("ragloom", extra)
    assert finish == "stop" and extra is not None
    assert extra["answer"] in "".join(pieces)

    no_user = _post(url, "/v1/chat/completions", {"messages": [{"role": "system", "content": "hi"}]})
    assert no_user.status_code == 422


async def test_mcp_endpoint_is_mounted(url: str, pipeline: Pipeline) -> None:
    httpx2 = pytest.importorskip("httpx2")
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    async with (
        httpx2.AsyncClient(headers=AUTH, timeout=30) as http,
        Client(streamable_http_client(url + "/mcp", http_client=http)) as client,
    ):
        names = [t.name for t in (await client.list_tools()).tools]
        result = await client.call_tool("ragloom_search", {"query": "knead the dough", "k": 1})
    assert names == ["ragloom_search", "ragloom_ask"]
    assert result.structured_content["hits"][0]["chunk_id"] == pipeline.retrieve("knead the dough", 1)[0].chunk.id


class _SlowRetriever:
    """Delegates to a real retriever, holding each search for ``delay`` seconds (a query on a busy CPU)."""

    def __init__(self, inner: Any, delay: float) -> None:
        self.inner, self.delay, self.name = inner, delay, inner.name

    def search(self, *args: Any, **kwargs: Any) -> Any:
        time.sleep(self.delay)
        return self.inner.search(*args, **kwargs)


def test_a_full_queue_answers_503(pipeline: Pipeline) -> None:
    slow = Pipeline([_SlowRetriever(pipeline.retrievers[0], 1.0)], k=2, candidates=5)
    app = build_app(slow, limits=ServerLimits(workers=1, queue=1), mcp=False)
    with _running(app) as base:
        results: list[int] = []

        def call() -> None:
            response = httpx.post(base + "/v1/search", json={"query": "knead", "k": 1}, timeout=30)
            results.append(response.status_code)

        threads = [threading.Thread(target=call) for _ in range(4)]
        for thread in threads:
            thread.start()
            time.sleep(0.1)
        for thread in threads:
            thread.join()
    assert sorted(results) == [200, 200, 503, 503], "one runs, one waits, the rest are turned away"


def test_exposure_needs_a_token(pipeline: Pipeline) -> None:
    with pytest.raises(ConfigError, match=r"--token.*RAGLOOM_TOKEN"):
        check_exposure("0.0.0.0", None)
    with pytest.raises(ConfigError, match="too short"):
        build_app(pipeline, host="0.0.0.0", token="short")
    check_exposure("127.0.0.1", None)


def test_cli_search_and_ask_through_the_server(url: str, pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAGLOOM_TOKEN", TOKEN)
    result = runner.invoke(cli, ["search", "knead the dough", "--server", url, "-k", "2", "--json"])
    assert result.exit_code == 0, result.output
    assert [h["chunk_id"] for h in json.loads(result.stdout)] == [
        h.chunk.id for h in pipeline.retrieve("knead the dough", 2)
    ]
    result = runner.invoke(cli, ["ask", "What did the court hold?", "--server", url, "-k", "2"])
    assert result.exit_code == 0, result.output
    assert "Sources" in result.stdout and "[1]" in result.stdout
    result = runner.invoke(cli, ["ask", "What did the court hold?", "--server", url, "--json"])
    assert result.exit_code == 0 and set(json.loads(result.stdout)) >= {"answer", "citations"}

    monkeypatch.delenv("RAGLOOM_TOKEN")
    result = runner.invoke(cli, ["search", "knead", "--server", url])
    assert result.exit_code == 2 and "answered 401" in result.output
    result = runner.invoke(cli, ["search", "knead", "--server", f"http://127.0.0.1:{_free_port()}"])
    assert result.exit_code == 2 and "is `ragloom serve` running?" in result.output


def test_ragloom_serve_process(index_dir: Path, tmp_path: Path) -> None:
    """The real `ragloom serve` command in its own process: starts, answers, stops on SIGTERM."""
    port = _free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    command = [sys.executable, "-m", "ragloom.recipes.cli", "serve", "--index", str(index_dir), "--port", str(port)]
    with open(tmp_path / "serve.log", "w+") as log:
        process = subprocess.Popen([*command, "--no-ask", "--offline"], stderr=log, env=env)
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=2).status_code == 200:
                        break
                assert process.poll() is None, (tmp_path / "serve.log").read_text()
                time.sleep(0.3)
            hits = httpx.post(f"http://127.0.0.1:{port}/v1/search", json={"query": "lava flows"}, timeout=30)
            asked = httpx.post(f"http://127.0.0.1:{port}/v1/ask", json={"question": "lava?"}, timeout=30)
        finally:
            process.terminate()
            process.wait(timeout=30)
    assert hits.status_code == 200 and hits.json()["hits"]
    assert asked.status_code == 400 and "--no-ask" in asked.json()["error"]["message"]
