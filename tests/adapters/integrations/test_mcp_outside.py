"""The agent tools as an MCP client and an OpenAI strict-mode user see them: no echo of the query, a length limit,
an advertised output schema, a schema strict mode accepts, strict validation, and a server that fails before
saying it runs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mcp")

import httpx
import jsonschema
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from ragloom.adapters.dense import DenseRetriever
from ragloom.adapters.integrations.tools import MAX_QUERY_CHARS, RagloomTools
from ragloom.errors import InvalidInputError
from ragloom.pipeline import Pipeline

TOKEN = "token-from-a-file-0123456789abcdef"


def _env() -> dict[str, str]:
    return {
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "RAGLOOM_HOME": os.environ["RAGLOOM_HOME"],
        "PATH": os.environ.get("PATH", ""),
    }


async def test_results_do_not_echo_the_query_and_match_the_advertised_output_schema(
    index_dir: Path, tmp_path: Path
) -> None:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "ragloom.recipes.mcp_cli", "--index", str(index_dir), "--offline"],
        env=_env(),
    )
    query = "knead the dough " * 200  # 3,200 characters: long, yet under the limit
    with open(tmp_path / "server.log", "w+") as errlog:
        async with Client(stdio_client(params, errlog=errlog)) as client:
            listed = {t.name: t for t in (await client.list_tools()).tools}
            found = await client.call_tool("ragloom_search", {"query": query, "k": 2})
            too_long = await client.call_tool("ragloom_search", {"query": "x" * (MAX_QUERY_CHARS + 1)})
            as_string = await client.call_tool("ragloom_search", {"query": "bread", "k": "3"})
            as_bool = await client.call_tool("ragloom_search", {"query": "bread", "k": True})
    schema = listed["ragloom_search"].output_schema
    assert schema is not None and schema["type"] == "object" and "hits" in schema["properties"]
    assert not found.is_error and found.structured_content is not None
    jsonschema.validate(found.structured_content, schema)
    assert "knead the dough knead" not in found.content[0].text and "query" not in found.structured_content
    assert too_long.is_error and f"at most {MAX_QUERY_CHARS} characters" in too_long.content[0].text
    for refused in (as_string, as_bool):
        assert refused.is_error and "Invalid arguments for tool 'ragloom_search': k" in refused.content[0].text


def _check_strict(schema: dict[str, Any]) -> None:
    """OpenAI Structured Outputs' rules for a schema (``strict: true``), applied to every object in it."""
    if schema.get("type") == "object" or "properties" in schema:
        assert schema["additionalProperties"] is False
        assert sorted(schema["required"]) == sorted(schema["properties"])
        for sub in schema["properties"].values():
            _check_strict(sub)
    if "items" in schema:
        _check_strict(schema["items"])
    assert "default" not in schema and "anyOf" not in schema


def test_a_schema_openai_strict_mode_and_the_responses_api_accept(hybrid: Pipeline) -> None:
    tools = RagloomTools(hybrid, about="tests")
    for chat, responses in zip(tools.openai_schemas(strict=True), tools.responses_schemas(), strict=True):
        assert chat["function"]["strict"] is True
        assert responses == {"type": "function", **chat["function"]}
        jsonschema.Draft202012Validator.check_schema(chat["function"]["parameters"])
        _check_strict(chat["function"]["parameters"])
    strict = tools.openai_schemas(strict=True)[0]["function"]["parameters"]
    call = {"query": "bread", "k": None, "filters": [{"key": "topic", "value": "food"}]}
    jsonschema.validate(call, strict)
    found = tools.dispatch("ragloom_search", call)
    assert found["hits"] and {h["metadata"]["topic"] for h in found["hits"]} == {"food"}
    as_dict = tools.dispatch("ragloom_search", {"query": "bread", "filters": {"topic": "food"}})
    assert [h["chunk_id"] for h in as_dict["hits"]] == [h["chunk_id"] for h in found["hits"]][: len(as_dict["hits"])]
    ask = tools.dispatch("ragloom_ask", {"question": "What did the court hold?", "k": None})
    assert ask["answer"]


@pytest.mark.parametrize("arguments", [{"query": "bread", "k": "3"}, {"query": "bread", "k": True}, {"query": 3}])
def test_values_the_schema_forbids_are_refused(dense: DenseRetriever, arguments: dict[str, Any]) -> None:
    tools = RagloomTools(dense)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(arguments, tools.specs[0].parameters)
    with pytest.raises(InvalidInputError, match="Invalid arguments"):
        tools.dispatch("ragloom_search", arguments)


def _busy_port() -> socket.socket:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    return holder


def test_a_busy_port_fails_before_anything_says_running(index_dir: Path) -> None:
    holder = _busy_port()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "ragloom.recipes.mcp_cli", "--index", str(index_dir), "--offline",
             "--transport", "http", "--port", str(holder.getsockname()[1])],
            capture_output=True, text=True, env=_env(), timeout=120, check=False,
        )  # fmt: skip
    finally:
        holder.close()
    assert done.returncode == 2
    assert "Cannot listen on 127.0.0.1" in done.stderr and "MCP server on" not in done.stderr, done.stderr


def test_the_token_can_come_from_a_file(index_dir: Path, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "ragloom.recipes.mcp_cli", "--index", str(index_dir), "--offline",
         "--transport", "http", "--port", str(port), "--token-file", str(token_file)],
        stderr=subprocess.PIPE, text=True, env=_env(),
    )  # fmt: skip
    try:
        assert server.stderr is not None
        line = server.stderr.readline()
        assert "MCP server on" in line, line
        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
        accept = {"Accept": "application/json, text/event-stream"}
        url = f"http://127.0.0.1:{port}/mcp"
        deadline = time.monotonic() + 30
        while True:
            try:
                refused = httpx.post(url, json=body, headers=accept, timeout=10)
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert refused.status_code == 401
        allowed = httpx.post(url, json=body, headers={**accept, "Authorization": f"Bearer {TOKEN}"}, timeout=10)
        assert allowed.status_code != 401
        assert TOKEN not in " ".join(server.args)
    finally:
        server.terminate()
        server.wait(timeout=30)
    both = subprocess.run(
        [sys.executable, "-m", "ragloom.recipes.mcp_cli", "--index", str(index_dir), "--transport", "http",
         "--token-file", str(token_file), "--token", TOKEN, "--offline"],
        capture_output=True, text=True, env=_env(), timeout=120, check=False,
    )  # fmt: skip
    assert both.returncode == 2 and "not both" in both.stderr
