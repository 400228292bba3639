"""The MCP server: a real `mcp` client lists and calls the tools of `ragloom mcp` over stdio and streamable HTTP."""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("mcp")

import httpx
import httpx2
import uvicorn
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from typer.testing import CliRunner

from ragloom.adapters.integrations.mcp_server import build_mcp_server, check_exposure, http_app, is_loopback
from ragloom.adapters.integrations.tools import RagloomTools
from ragloom.errors import ConfigError
from ragloom.pipeline import Pipeline
from ragloom.recipes.config import open_pipeline
from ragloom.recipes.mcp_cli import app as mcp_app

TOKEN = "s3cret-token-for-tests-0123456789"


async def test_stdio_server_lists_and_calls_tools(index_dir: Path, tmp_path: Path) -> None:
    env = {
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "RAGLOOM_HOME": os.environ["RAGLOOM_HOME"],
    }
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "ragloom.recipes.mcp_cli", "--index", str(index_dir), "--offline", "--about", "tests"],
        env=env,
    )
    with open(tmp_path / "server.log", "w+") as errlog:
        async with Client(stdio_client(params, errlog=errlog)) as client:
            listed = (await client.list_tools()).tools
            searched = await client.call_tool("ragloom_search", {"query": "lava flows", "k": 2})
            filtered = await client.call_tool("ragloom_search", {"query": "bread", "filters": {"topic": "food"}})
            refused = await client.call_tool("ragloom_search", {"query": "lava", "k": 0})

    with open_pipeline(index_dir) as pipeline:
        expected_hits = [h.chunk.id for h in pipeline.retrieve("lava flows", 2)]
        tools = RagloomTools(pipeline, about="tests")
    assert [(t.name, t.description, t.input_schema) for t in listed] == [
        (s["function"]["name"], s["function"]["description"], s["function"]["parameters"])
        for s in tools.openai_schemas()
    ]
    assert all(t.annotations and t.annotations.read_only_hint for t in listed)
    assert not searched.is_error
    assert [h["chunk_id"] for h in searched.structured_content["hits"]] == expected_hits
    assert json.loads(searched.content[0].text) == searched.structured_content
    assert {h["doc_id"] for h in filtered.structured_content["hits"]} <= {"bake", "unicode"}
    assert refused.is_error and "Invalid arguments for tool 'ragloom_search'" in refused.content[0].text


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture()
def http_url(hybrid: Pipeline) -> Iterator[str]:
    """`ragloom mcp --transport http --ask --token ...` in-process: uvicorn on a free loopback port, in a thread."""
    app = http_app(build_mcp_server(RagloomTools(hybrid)), host="127.0.0.1", token=TOKEN)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the HTTP server did not start"
    yield f"http://127.0.0.1:{port}/mcp"
    server.should_exit = True
    thread.join(timeout=10)


async def test_http_server_requires_the_token(http_url: str, hybrid: Pipeline) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=30) as http,
        Client(streamable_http_client(http_url, http_client=http)) as client,
    ):
        names = [t.name for t in (await client.list_tools()).tools]
        result = await client.call_tool("ragloom_search", {"query": "knead the dough", "k": 1})
        asked = await client.call_tool("ragloom_ask", {"question": "What did the court hold?", "k": 2})
    assert names == ["ragloom_search", "ragloom_ask"]
    assert result.structured_content["hits"][0]["chunk_id"] == hybrid.retrieve("knead the dough", 1)[0].chunk.id
    answer = hybrid.ask("What did the court hold?", 2)
    assert not asked.is_error and asked.structured_content["answer"] == answer.text
    assert asked.structured_content["citations"][0]["chunk_id"] == answer.context[0].chunk.id

    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    accept = {"Accept": "application/json, text/event-stream"}
    for auth in ({}, {"Authorization": "Bearer wrong-token-wrong-token"}, {"Authorization": f"Basic {TOKEN}"}):
        response = httpx.post(http_url, json=body, headers={**accept, **auth}, timeout=10)
        assert response.status_code == 401 and response.headers["www-authenticate"].startswith("Bearer")


def test_exposure_rules() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1") and is_loopback("[::1]")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5") and not is_loopback("example.org")
    check_exposure("127.0.0.1", None)
    check_exposure("0.0.0.0", TOKEN)
    with pytest.raises(ConfigError, match="RAGLOOM_MCP_TOKEN"):
        check_exposure("0.0.0.0", None)
    with pytest.raises(ConfigError, match="too short"):
        check_exposure("0.0.0.0", "abc")


def test_cli_refuses_an_exposed_server_without_token(index_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAGLOOM_MCP_TOKEN", raising=False)
    result = CliRunner().invoke(mcp_app, ["--index", str(index_dir), "--transport", "http", "--host", "0.0.0.0"])
    assert result.exit_code == 2 and "RAGLOOM_MCP_TOKEN" in result.output


def test_cli_reports_a_missing_index(tmp_path: Path) -> None:
    result = CliRunner().invoke(mcp_app, ["--index", str(tmp_path / "nope"), "--offline"])
    assert result.exit_code == 2 and "not a ragloom index" in result.output
