"""Agent tools: OpenAI function schemas checked with jsonschema, the validating dispatcher, tool-call handling."""

from __future__ import annotations

import json

import jsonschema
import pytest

from ragloom.adapters.dense import DenseRetriever
from ragloom.adapters.integrations.tools import AskInput, RagloomTools, SearchInput
from ragloom.errors import InvalidInputError
from ragloom.pipeline import Pipeline

VALID = {
    "ragloom_search": [
        {"query": "lava flows"},
        {"query": "knead the dough", "k": 3},
        {"query": "bread", "k": 50, "filters": {"topic": "food", "page": 1, "draft": False}},
        {"query": "x", "filters": None},
    ],
    "ragloom_ask": [{"question": "What did the court hold?"}, {"question": "Why?", "k": 20}],
}
INVALID = {
    "ragloom_search": [
        {},
        {"query": ""},
        {"query": "x", "k": 0},
        {"query": "x", "k": 51},
        {"query": "x", "k": "three"},
        {"query": "x", "top_k": 3},
        {"query": "x", "filters": {"topic": ["a", "b"]}},
        {"query": 7},
    ],
    "ragloom_ask": [{"question": "x", "k": 21}, {"query": "x"}],
}


def test_openai_schema_shape_and_meta_schema(hybrid: Pipeline) -> None:
    schemas = RagloomTools(hybrid).openai_schemas()
    assert [s["function"]["name"] for s in schemas] == ["ragloom_search", "ragloom_ask"]
    for schema in schemas:
        assert schema["type"] == "function" and set(schema["function"]) == {"name", "description", "parameters"}
        parameters = schema["function"]["parameters"]
        jsonschema.Draft202012Validator.check_schema(parameters)
        assert parameters["type"] == "object" and parameters["additionalProperties"] is False
        assert "title" not in parameters and all("title" not in p for p in parameters["properties"].values())
    json.dumps(schemas)  # plain JSON


def test_schema_and_dispatcher_agree(hybrid: Pipeline) -> None:
    """What the JSON schema accepts the dispatcher accepts; what it rejects the dispatcher rejects, typed."""
    tools = RagloomTools(hybrid)
    for schema in tools.openai_schemas():
        name = schema["function"]["name"]
        validator = jsonschema.Draft202012Validator(schema["function"]["parameters"])
        for arguments in VALID[name]:
            validator.validate(arguments)
            tools.parse(name, arguments)
        for arguments in INVALID[name]:
            assert not validator.is_valid(arguments), arguments
            with pytest.raises(InvalidInputError, match=f"Invalid arguments for tool '{name}'"):
                tools.parse(name, arguments)


def test_whitespace_query_is_refused_by_the_dispatcher(dense: DenseRetriever) -> None:
    with pytest.raises(InvalidInputError, match="query"):
        RagloomTools(dense).dispatch("ragloom_search", {"query": "   "})


def test_dispatch_search_matches_ragloom(dense: DenseRetriever) -> None:
    tools = RagloomTools(dense, about="five test documents")
    assert tools.names == ("ragloom_search",), "a bare retriever cannot answer"
    assert "five test documents" in tools.openai_schemas()[0]["function"]["description"]
    result = tools.dispatch("ragloom_search", json.dumps({"query": "lava flows", "k": 2}))
    assert json.loads(json.dumps(result)) == result
    hits = dense.search("lava flows", 2)
    assert [h["chunk_id"] for h in result["hits"]] == [h.chunk.id for h in hits]
    first = result["hits"][0]
    assert set(first) >= {
        "rank",
        "score",
        "score_kind",
        "retriever",
        "doc_id",
        "source",
        "page",
        "start",
        "end",
        "text",
    }
    assert first["score"] == pytest.approx(hits[0].score)
    filtered = tools.dispatch("ragloom_search", {"query": "bread", "k": 5, "filters": {"topic": "food"}})
    assert {h["doc_id"] for h in filtered["hits"]} <= {"bake", "unicode"}


async def test_adispatch_ask(hybrid: Pipeline) -> None:
    tools = RagloomTools(hybrid)
    result = await tools.adispatch("ragloom_ask", {"question": "What did the telescope observe?", "k": 2})
    answer = hybrid.ask("What did the telescope observe?", 2)
    assert result["answer"] == answer.text and len(result["context"]) == 2
    assert result["citations"] == [
        {
            "marker": 1,
            "chunk_id": answer.context[0].chunk.id,
            "doc_id": answer.context[0].chunk.doc_id,
            "source": answer.context[0].chunk.source,
            "page": answer.context[0].chunk.page,
            "start": answer.context[0].chunk.start,
            "end": answer.context[0].chunk.end,
        }
    ]
    json.dumps(result)


def test_handle_openai_tool_calls(hybrid: Pipeline) -> None:
    tools = RagloomTools(hybrid)
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "ragloom_search", "arguments": '{"query": "lava"}'},
    }
    message = tools.handle_tool_call(call)
    assert message["role"] == "tool" and message["tool_call_id"] == "call_1"
    assert len(json.loads(message["content"])["hits"]) == 5, "the schema's default k"
    for bad in ('{"query": "lava", "k": -1}', "{not json", "[1, 2]"):
        reply = tools.handle_tool_call({**call, "function": {"name": "ragloom_search", "arguments": bad}})
        assert "error" in json.loads(reply["content"])
    unknown = tools.handle_tool_call({**call, "function": {"name": "nope", "arguments": "{}"}})
    assert "ragloom_search, ragloom_ask" in json.loads(unknown["content"])["error"]
    with pytest.raises(InvalidInputError, match="tool call looks like"):
        tools.handle_tool_call({"id": "x"})


def test_configuration_errors(dense: DenseRetriever) -> None:
    with pytest.raises(InvalidInputError, match="with_generator"):
        RagloomTools(dense, ask=True)
    with pytest.raises(InvalidInputError, match="prefix"):
        RagloomTools(dense, prefix="has space")
    with pytest.raises(InvalidInputError, match="Retriever"):
        RagloomTools("not a retriever")
    assert SearchInput(query=" x ").query == "x" and AskInput(question="q").k == 4


def test_package_exports_load_lazily() -> None:
    from ragloom.adapters import integrations
    from ragloom.adapters.integrations import tools as tools_module

    assert integrations.RagloomTools is tools_module.RagloomTools
    assert "RagloomRetriever" in dir(integrations)
    with pytest.raises(AttributeError):
        integrations.Nope  # noqa: B018
