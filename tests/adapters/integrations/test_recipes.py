"""The integration recipes end to end: agent tools (schema, sample call, agent loop), LangChain app, LlamaIndex app."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from ragloom.adapters.integrations.tools import RagloomTools
from ragloom.errors import ConfigError
from ragloom.pipeline import Pipeline
from ragloom.recipes import agent_tools, langchain_app, llamaindex_app
from ragloom.recipes.config import open_pipeline


def test_agent_tools_recipe_prints_schema_and_dispatches(index_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    agent_tools.main(["--index", str(index_dir), "--offline", "--query", "lava flows"])
    out = capsys.readouterr().out
    assert '"name": "ragloom_search"' in out and '"role": "tool"' in out
    with open_pipeline(index_dir) as pipeline:
        expected = pipeline.retrieve("lava flows", 3)[0].chunk.id
    assert f'"chunk_id": "{expected}"' in out


class _ScriptedEndpoint(BaseHTTPRequestHandler):
    """An OpenAI-compatible endpoint standing in for a tool-calling LLM: first a search call, then an answer."""

    requests: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append(body)
        tool_results = [m for m in body["messages"] if m["role"] == "tool"]
        if "tools" not in body:  # a plain chat completion (a ragloom generator)
            message = {"role": "assistant", "content": "The court held that the statute did not apply [1]."}
        elif not tool_results:
            message = {
                "role": "assistant",
                "content": None,
                "tool_calls": [agent_tools.sample_call("ragloom_search", {"query": "lava flows", "k": 1}, "c1")],
            }
        else:
            hit = json.loads(tool_results[-1]["content"])["hits"][0]
            message = {"role": "assistant", "content": f"See {hit['doc_id']} page {hit['page']}."}
        payload = json.dumps({"choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def endpoint() -> Iterator[str]:
    _ScriptedEndpoint.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ScriptedEndpoint)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_agent_loop_against_an_endpoint(dense: object, endpoint: str) -> None:
    tools = RagloomTools(dense)
    answer, transcript = agent_tools.run_agent(tools, "Where are lava flows?", base_url=endpoint, model="m")
    top = dense.search("lava flows", 1)[0].chunk  # type: ignore[attr-defined]
    assert answer == f"See {top.doc_id} page {top.page}."
    assert [m["role"] for m in transcript] == ["system", "user", "assistant", "tool", "assistant"]
    first = _ScriptedEndpoint.requests[0]
    assert first["tools"] == tools.openai_schemas() and first["model"] == "m"


def test_langchain_app_chain(hybrid: Pipeline) -> None:
    result = langchain_app.build_chain(hybrid).invoke("What did the telescope observe?")
    expected = hybrid.retrieve("What did the telescope observe?")
    assert [d.id for d in result["context"]] == [h.chunk.id for h in expected]
    assert result["question"] == "What did the telescope observe?"
    assert result["answer"].startswith(expected[0].chunk.text.split(". ")[0].rstrip(".")[:20])
    with pytest.raises(ConfigError, match="generator"):
        langchain_app.build_chain(Pipeline(hybrid.retrievers))


def test_llamaindex_app_engine(hybrid: Pipeline, reverse_reranker: object) -> None:
    engine = llamaindex_app.build_query_engine(hybrid, reranker=reverse_reranker, k=4, top_n=2)
    response = engine.query("lava flows")
    expected = [h.chunk.id for h in hybrid.retrieve("lava flows", 4)]
    assert [n.node.node_id for n in response.source_nodes] == expected[::-1][:2]


def test_app_mains_run_on_an_index(index_dir: Path, endpoint: str, capsys: pytest.CaptureFixture[str]) -> None:
    """The LangChain app with the index's own local model; the LlamaIndex app with an OpenAI-compatible endpoint
    (LlamaIndex's compact synthesizer needs more than the tiny model's 512-token window)."""
    langchain_app.main(["What did the court hold?", "--index", str(index_dir), "--offline", "-k", "2"])
    out = capsys.readouterr().out
    assert out.count(" chars ") == 2
    question = ["What did the court hold?", "--index", str(index_dir), "--offline", "-k", "2"]
    llamaindex_app.main([*question, "--base-url", endpoint, "--llm", "m"])
    out = capsys.readouterr().out
    assert out.startswith("The court held that the statute did not apply [1].") and out.count(" chars ") == 2
