"""LlamaIndex bridges against real llama-index-core: retriever in a query engine, postprocessor, LLM, embeddings."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("llama_index.core")

from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.base.llms.types import ChatMessage, MessageRole
from llama_index.core.llms import MockLLM
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.schema import MetadataMode, NodeWithScore, TextNode

from ragloom.adapters.dense import DenseRetriever, TransformersDenseEncoder
from ragloom.adapters.generators.local import TransformersGenerator
from ragloom.adapters.integrations.llamaindex import (
    METADATA_KEYS,
    LlamaIndexEncoder,
    LlamaIndexGenerator,
    RagloomLLM,
    RagloomNodePostprocessor,
    RagloomNodeRetriever,
    RagloomQueryEngine,
)
from ragloom.adapters.integrations.tools import RagloomTools
from ragloom.errors import InvalidInputError
from ragloom.pipeline import Pipeline
from ragloom.testing import CONTRACT_DOCUMENTS
from ragloom.types import Message

QUERIES = ("distant galaxy cluster quasars", "knead the dough", "court statute contracts", "lava flows")


@pytest.mark.parametrize("query", QUERIES)
def test_retriever_matches_ragloom(dense: DenseRetriever, query: str) -> None:
    nodes = RagloomNodeRetriever(dense, k=3).retrieve(query)
    hits = dense.search(query, 3)
    assert [n.node.node_id for n in nodes] == [h.chunk.id for h in hits]
    for node, hit in zip(nodes, hits):
        assert isinstance(node, NodeWithScore) and isinstance(node.node, TextNode)
        assert node.score == pytest.approx(hit.score)
        assert node.node.get_content() == hit.chunk.text
        assert node.node.ref_doc_id == hit.chunk.doc_id
        assert (node.node.start_char_idx, node.node.end_char_idx) == (hit.chunk.start, hit.chunk.end)
        assert set(METADATA_KEYS) - {"explanation"} <= set(node.node.metadata)
        shown = node.node.get_content(metadata_mode=MetadataMode.LLM)
        assert "score_kind" not in shown and "chunk_id" not in shown


def test_query_engine_gets_the_same_hits_as_ragloom(hybrid: Pipeline, generator: object) -> None:
    """A fused ragloom pipeline inside LlamaIndex's own RetrieverQueryEngine, with a ragloom generator as its LLM."""
    engine = RetrieverQueryEngine.from_args(RagloomNodeRetriever(hybrid), llm=RagloomLLM(generator=generator))
    question = "What did the telescope observe?"
    response = engine.query(question)
    expected = hybrid.retrieve(question)
    assert [n.node.node_id for n in response.source_nodes] == [h.chunk.id for h in expected]
    prompt = generator.prompts[-1][-1].content  # type: ignore[attr-defined]
    assert all(h.chunk.text in prompt for h in expected) and question in prompt
    assert str(response) == "I don't know."


async def test_async_query_engine_does_not_block(slow_dense: DenseRetriever, generator: object, ticker) -> None:  # type: ignore[no-untyped-def]
    engine = RetrieverQueryEngine.from_args(RagloomNodeRetriever(slow_dense, k=2), llm=RagloomLLM(generator=generator))
    response, ticks = await ticker(engine.aquery("knead the dough"))
    assert [n.node.node_id for n in response.source_nodes] == [
        h.chunk.id for h in slow_dense.search("knead the dough", 2)
    ]
    assert ticks >= 10, f"the event loop was blocked during retrieval (only {ticks} ticks in 0.3 s)"
    nodes, ticks = await ticker(RagloomNodeRetriever(slow_dense, k=2).aretrieve("lava flows"))
    assert len(nodes) == 2 and ticks >= 10


def test_ragloom_query_engine(hybrid: Pipeline) -> None:
    engine = RagloomQueryEngine(hybrid, k=2)
    response = engine.query("What did the court hold?")
    answer = hybrid.ask("What did the court hold?", 2)
    assert response.response == answer.text
    assert [n.node.node_id for n in response.source_nodes] == [h.chunk.id for h in answer.context]
    assert response.metadata["citations"][0]["marker"] == 1 and "grounded" in response.metadata


async def test_ragloom_query_engine_async(hybrid: Pipeline) -> None:
    response = await RagloomQueryEngine(hybrid).aquery("lava flows")
    assert [n.node.node_id for n in response.source_nodes] == [h.chunk.id for h in hybrid.retrieve("lava flows")]


def test_query_engine_needs_a_generator(dense: DenseRetriever) -> None:
    with pytest.raises(InvalidInputError, match="with_generator"):
        RagloomQueryEngine(Pipeline([dense]))


def test_reranker_as_postprocessor(dense: DenseRetriever, generator: object, reverse_reranker) -> None:  # type: ignore[no-untyped-def]
    reranker = reverse_reranker
    retriever = RagloomNodeRetriever(dense, k=4)
    nodes = retriever.retrieve("lava flows")
    kept = RagloomNodePostprocessor(reranker=reranker, top_n=2).postprocess_nodes(nodes, query_str="lava flows")
    assert [n.node.node_id for n in kept] == [n.node.node_id for n in reversed(nodes)][:2]
    assert [n.score for n in kept] == [2.0, 1.0]
    assert kept[0].node.metadata["score_kind"] == "rerank" and kept[0].node.metadata["rank"] == 1
    assert nodes[-1].node.metadata["score_kind"] == "cosine", "the retriever's nodes are not mutated"
    assert reranker.seen == [("lava flows", [n.node.node_id for n in nodes])]

    engine = RetrieverQueryEngine.from_args(
        retriever,
        llm=RagloomLLM(generator=generator),
        node_postprocessors=[RagloomNodePostprocessor(reranker=reranker, top_n=1)],
    )
    assert [n.node.node_id for n in engine.query("lava flows").source_nodes] == [nodes[-1].node.node_id]


async def test_postprocessor_on_foreign_nodes(reverse_reranker) -> None:  # type: ignore[no-untyped-def]
    nodes = [
        NodeWithScore(node=TextNode(id_="a", text="alpha", metadata={"tags": ["x"]}), score=0.9),
        NodeWithScore(node=TextNode(id_="b", text="beta"), score=None),
    ]
    kept = await RagloomNodePostprocessor(reranker=reverse_reranker, top_n=5).apostprocess_nodes(nodes, query_str="q")
    assert [n.node.node_id for n in kept] == ["b", "a"] and kept[1].node.metadata == {"tags": ["x"]}
    with pytest.raises(InvalidInputError, match="query"):
        RagloomNodePostprocessor(reranker=reverse_reranker).postprocess_nodes(nodes)


# -- LLMs ---------------------------------------------------------------------------------------------------------
def test_ragloom_generator_as_llm(local_llm: TransformersGenerator) -> None:
    llm = RagloomLLM(generator=local_llm)
    assert llm.metadata.is_chat_model and llm.metadata.context_window == local_llm.context_window
    assert llm.metadata.num_output == 6
    chat = [
        ChatMessage(role=MessageRole.SYSTEM, content="be brief"),
        ChatMessage(role=MessageRole.USER, content="the cat"),
    ]
    expected = local_llm.generate([Message("system", "be brief"), Message("user", "the cat")])
    assert llm.chat(chat).message.content == expected
    assert "".join(r.delta or "" for r in llm.stream_chat(chat)).strip() == expected
    assert llm.complete("the cat").text == local_llm.generate([Message("user", "the cat")])
    assert list(llm.stream_complete("the cat"))[-1].text.strip() == llm.complete("the cat").text


async def test_ragloom_llm_async(local_llm: TransformersGenerator) -> None:
    llm = RagloomLLM(generator=local_llm)
    chat = [ChatMessage(role=MessageRole.USER, content="the mat")]
    expected = local_llm.generate([Message("user", "the mat")])
    assert (await llm.achat(chat)).message.content == expected
    assert "".join([r.delta or "" async for r in await llm.astream_chat(chat)]).strip() == expected
    assert (await llm.acomplete("the mat")).text == expected
    assert [r async for r in await llm.astream_complete("the mat")][-1].text.strip() == expected


async def test_llamaindex_llm_as_ragloom_generator(local_llm: TransformersGenerator, dense: DenseRetriever) -> None:
    roundtrip = LlamaIndexGenerator(RagloomLLM(generator=local_llm))
    messages = [Message("user", "the cat sat")]
    expected = local_llm.generate(messages)
    assert roundtrip.generate(messages) == expected
    assert await roundtrip.agenerate(messages) == expected
    assert "".join(roundtrip.stream(messages)).strip() == expected
    assert "".join([p async for p in roundtrip.astream(messages)]).strip() == expected
    mock = LlamaIndexGenerator(MockLLM(max_tokens=3), name="mock")
    answer = Pipeline([dense], generator=mock, k=2).ask("lava flows")
    assert mock.name == "llamaindex:mock" and answer.text and len(answer.context) == 2


def test_tool_roles_are_refused(local_llm: TransformersGenerator) -> None:
    with pytest.raises(InvalidInputError, match="role 'tool'"):
        RagloomLLM(generator=local_llm).chat([ChatMessage(role=MessageRole.TOOL, content="x")])


# -- embeddings ---------------------------------------------------------------------------------------------------
class BertEmbedding(BaseEmbedding):
    """A user's LlamaIndex embedding model (backed by the tiny BERT so results compare exactly)."""

    def __init__(self, encoder: TransformersDenseEncoder) -> None:
        super().__init__(model_name="tiny-bert")
        self._encoder = encoder

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._encoder.encode_queries([query])[0].tolist()

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._encoder.encode_documents([text])[0].tolist()

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._encoder.encode_documents(texts).tolist()


def test_llamaindex_embedding_as_dense_encoder(bert_encoder: TransformersDenseEncoder, dense: DenseRetriever) -> None:
    encoder = LlamaIndexEncoder(BertEmbedding(bert_encoder), token_counter=bert_encoder.token_counter)
    assert encoder.fingerprint["model"] == "tiny-bert" and encoder.fingerprint["provider"] == "llamaindex"
    np.testing.assert_allclose(encoder.encode_documents(["lava"]), bert_encoder.encode_documents(["lava"]), atol=1e-5)
    retriever = DenseRetriever(encoder, chunk_size=24, overlap=4, name="dense")
    retriever.add(list(CONTRACT_DOCUMENTS))
    for query in QUERIES:
        assert [h.chunk.id for h in retriever.search(query, 3)] == [h.chunk.id for h in dense.search(query, 3)]
    with pytest.raises(InvalidInputError, match="BaseEmbedding"):
        LlamaIndexEncoder(bert_encoder)  # type: ignore[arg-type]


# -- tools --------------------------------------------------------------------------------------------------------
async def test_function_tools(hybrid: Pipeline) -> None:
    search, ask = RagloomTools(hybrid, prefix="docs").llamaindex()
    assert search.metadata.name == "docs_search" and search.metadata.fn_schema.__name__ == "SearchInput"  # type: ignore[union-attr]
    output = search.call(query="lava flows", k=2)
    assert json.loads(output.content) == output.raw_output
    assert [h["chunk_id"] for h in output.raw_output["hits"]] == [h.chunk.id for h in hybrid.retrieve("lava flows", 2)]
    answered = await ask.acall(question="What did the court hold?", k=2)
    assert answered.raw_output["citations"][0]["marker"] == 1
    openai_tool = search.metadata.to_openai_tool()
    assert openai_tool["function"]["parameters"]["properties"]["k"]["minimum"] == 1
    with pytest.raises(InvalidInputError, match="k"):
        search.call(query="x", k=0)
