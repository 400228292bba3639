"""LangChain bridges against real langchain-core: retriever in an LCEL chain, chat model, embeddings, tools."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("langchain_core")

from langchain_core.embeddings import Embeddings
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda, RunnablePassthrough

from ragloom.adapters.dense import DenseRetriever, TransformersDenseEncoder
from ragloom.adapters.generators.local import TransformersGenerator
from ragloom.adapters.integrations.langchain import (
    METADATA_KEYS,
    LangChainEncoder,
    LangChainGenerator,
    RagloomChatModel,
    RagloomRetriever,
)
from ragloom.adapters.integrations.tools import RagloomTools
from ragloom.errors import EncoderMismatchError, EndpointError, InvalidInputError
from ragloom.pipeline import Pipeline
from ragloom.testing import CONTRACT_DOCUMENTS
from ragloom.types import Message

QUERIES = ("distant galaxy cluster quasars", "knead the dough", "court statute contracts", "lava flows")


def _ids(items: list) -> list[str]:  # type: ignore[type-arg]
    return [getattr(i, "id", None) or i.chunk.id for i in items]


@pytest.mark.parametrize("query", QUERIES)
def test_retriever_matches_ragloom(dense: DenseRetriever, query: str) -> None:
    docs = RagloomRetriever(source=dense, k=3).invoke(query)
    hits = dense.search(query, 3)
    assert [d.id for d in docs] == [h.chunk.id for h in hits]
    for doc, hit in zip(docs, hits):
        assert doc.page_content == hit.chunk.text
        assert set(METADATA_KEYS) - {"explanation"} <= set(doc.metadata)
        assert doc.metadata["score"] == pytest.approx(hit.score)
        assert doc.metadata["score_kind"] == hit.score_kind
        assert doc.metadata["retriever"] == "dense"
        assert (doc.metadata["doc_id"], doc.metadata["start"], doc.metadata["end"]) == (
            hit.chunk.doc_id,
            hit.chunk.start,
            hit.chunk.end,
        )
        assert doc.metadata["rank"] == hit.rank


def test_page_and_document_metadata_survive(dense: DenseRetriever) -> None:
    docs = RagloomRetriever(source=dense, k=1).invoke("glaciers carving valleys", filters={"doc_id": "paged"})
    assert docs[0].metadata["doc_id"] == "paged" and docs[0].metadata["page"] in (1, 2)
    assert docs[0].metadata["source"] == "paged.pdf"
    food = RagloomRetriever(source=dense, k=5, filters={"topic": "food"}).invoke("bread")
    assert food and {d.metadata["doc_id"] for d in food} <= {"bake", "unicode"}
    assert all(d.metadata["topic"] == "food" for d in food)


def test_lcel_rag_chain_uses_the_same_hits_as_ragloom(hybrid: Pipeline, generator: object) -> None:
    """A hybrid (RRF-fused) ragloom pipeline inside LangChain's own chain, answering through a chat model."""
    retriever = RagloomRetriever(source=hybrid)
    seen: list[list[str]] = []

    def format_docs(docs: list) -> str:  # type: ignore[type-arg]
        seen.append([d.id for d in docs])
        return "\n\n".join(f"[{i}] ({d.metadata['source']})\n{d.page_content}" for i, d in enumerate(docs, 1))

    prompt = ChatPromptTemplate.from_messages(
        [("system", "Answer from the context and cite [n]."), ("human", "{context}\n\nQuestion: {question}")]
    )
    chain = (
        {"context": retriever | RunnableLambda(format_docs), "question": RunnablePassthrough()}
        | prompt
        | RagloomChatModel(generator=generator)
        | StrOutputParser()
    )
    question = "What did the telescope observe?"
    answer = chain.invoke(question)
    expected = hybrid.retrieve(question)
    assert seen == [[h.chunk.id for h in expected]]
    assert expected[0].chunk.text.split(". ")[0].rstrip(".") in answer and answer.endswith("[1].")
    assert all(h.score_kind == "fused" and h.retriever == "fusion" for h in expected)


async def test_async_chain_matches_and_does_not_block(slow_dense: DenseRetriever, ticker) -> None:  # type: ignore[no-untyped-def]
    retriever = RagloomRetriever(source=slow_dense, k=2)
    docs, ticks = await ticker(retriever.ainvoke("knead the dough"))
    assert [d.id for d in docs] == [h.chunk.id for h in slow_dense.search("knead the dough", 2)]
    assert ticks >= 10, f"the event loop was blocked during retrieval (only {ticks} ticks in 0.3 s)"


async def test_async_pipeline_source(hybrid: Pipeline) -> None:
    retriever = RagloomRetriever(source=hybrid, k=2)
    docs = await retriever.ainvoke("court statute contracts")
    assert [d.id for d in docs] == [h.chunk.id for h in await hybrid.aretrieve("court statute contracts", 2)]
    batch = await retriever.abatch(["lava flows", "knead the dough"])
    assert [[d.id for d in b] for b in batch] == [
        [h.chunk.id for h in hybrid.retrieve(q, 2)] for q in ("lava flows", "knead the dough")
    ]


def test_not_a_retriever_is_a_typed_error() -> None:
    with pytest.raises(InvalidInputError, match="open_pipeline"):
        RagloomRetriever(source=object())


# -- chat models ------------------------------------------------------------------------------------------------
def test_ragloom_generator_as_chat_model(local_llm: TransformersGenerator) -> None:
    model = RagloomChatModel(generator=local_llm)
    messages = [SystemMessage("Answer briefly."), HumanMessage("what did the telescope observe ?")]
    expected = local_llm.generate([Message("system", "Answer briefly."), Message("user", messages[1].content)])
    result = model.invoke(messages)
    assert isinstance(result, AIMessage) and result.content == expected
    pieces = [chunk.content for chunk in model.stream(messages)]
    assert len(pieces) >= 1 and "".join(pieces).strip() == expected


async def test_ragloom_chat_model_async(local_llm: TransformersGenerator) -> None:
    model = RagloomChatModel(generator=local_llm)
    expected = local_llm.generate([Message("user", "the cat sat")])
    assert (await model.ainvoke("the cat sat")).content == expected
    pieces = [chunk.content async for chunk in model.astream("the cat sat")]
    assert "".join(pieces).strip() == expected


def test_chat_model_honours_stop() -> None:
    class Fixed:
        name = "fixed"

        def generate(self, messages):  # type: ignore[no-untyped-def]
            return "alpha beta STOP gamma"

        def stream(self, messages):  # type: ignore[no-untyped-def]
            yield from ["alpha ", "beta ", "ST", "OP gamma"]

    model = RagloomChatModel(generator=Fixed())
    assert model.invoke("x", stop=["STOP"]).content == "alpha beta "
    assert "".join(c.content for c in model.stream("x", stop=["STOP"])) == "alpha beta "
    assert "".join(c.content for c in model.stream("x")) == "alpha beta STOP gamma"


def test_tool_messages_are_refused(generator: object) -> None:
    model = RagloomChatModel(generator=generator)
    with pytest.raises(InvalidInputError, match="system, user and assistant"):
        model.invoke([HumanMessage("hi"), ToolMessage("result", tool_call_id="1")])


def test_langchain_chat_model_as_ragloom_generator(dense: DenseRetriever) -> None:
    fake = GenericFakeChatModel(messages=iter([AIMessage("The telescope saw a galaxy cluster [1].")] * 3))
    gen = LangChainGenerator(fake, name="fake-endpoint")
    assert gen.name == "langchain:fake-endpoint"
    answer = Pipeline([dense], generator=gen, k=2).ask("what did the telescope observe?")
    assert answer.text == "The telescope saw a galaxy cluster [1]." and answer.citations[0].marker == 1
    assert "".join(gen.stream([Message("user", "hi")])) == "The telescope saw a galaxy cluster [1]."


async def test_langchain_generator_async_and_roundtrip(local_llm: TransformersGenerator) -> None:
    gen = LangChainGenerator(RagloomChatModel(generator=local_llm))
    messages = [Message("user", "the cat sat on the mat")]
    expected = local_llm.generate(messages)
    assert gen.generate(messages) == expected
    assert await gen.agenerate(messages) == expected
    assert "".join([p async for p in gen.astream(messages)]).strip() == expected


def test_langchain_generator_errors_are_typed() -> None:
    fake = GenericFakeChatModel(messages=iter([]))
    with pytest.raises(EndpointError, match="failed"):
        LangChainGenerator(fake).generate([Message("user", "hi")])
    with pytest.raises(InvalidInputError):
        LangChainGenerator(object())  # type: ignore[arg-type]


# -- embeddings -------------------------------------------------------------------------------------------------
class BertEmbeddings(Embeddings):
    """A user's LangChain embeddings (here backed by the tiny BERT, so results can be compared exactly)."""

    def __init__(self, encoder: TransformersDenseEncoder) -> None:
        self.encoder = encoder

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.encoder.encode_documents(texts).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.encoder.encode_queries([text])[0].tolist()


def test_langchain_embeddings_as_dense_encoder(bert_encoder: TransformersDenseEncoder, dense: DenseRetriever) -> None:
    encoder = LangChainEncoder(BertEmbeddings(bert_encoder), name="tiny-bert", token_counter=bert_encoder.token_counter)
    assert encoder.dim == bert_encoder.dim
    np.testing.assert_allclose(encoder.encode_queries(["lava"]), bert_encoder.encode_queries(["lava"]), atol=1e-5)
    assert encoder.encode_documents([]).shape == (0, bert_encoder.dim)
    retriever = DenseRetriever(encoder, chunk_size=24, overlap=4, name="dense")
    retriever.add(list(CONTRACT_DOCUMENTS))
    for query in QUERIES:
        assert _ids(retriever.search(query, 3)) == _ids(dense.search(query, 3))


def test_embedding_fingerprint_guards_the_index(tmp_path: Path, bert_encoder: TransformersDenseEncoder) -> None:
    from langchain_core.embeddings import DeterministicFakeEmbedding

    with pytest.warns(UserWarning, match="chunking by words"):
        retriever = DenseRetriever(LangChainEncoder(DeterministicFakeEmbedding(size=32), name="a"), tmp_path)
    retriever.add(list(CONTRACT_DOCUMENTS[:2]))
    assert retriever.search(CONTRACT_DOCUMENTS[1].text, 1)[0].chunk.doc_id == "bake"
    retriever.close()
    other = LangChainEncoder(DeterministicFakeEmbedding(size=32), name="b")
    with pytest.raises(EncoderMismatchError, match="model"), pytest.warns(UserWarning):
        DenseRetriever(other, tmp_path)


def test_bad_vectors_are_reported() -> None:
    class Broken(Embeddings):
        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return [[1.0, 2.0] for _ in texts]

        def embed_query(self, text: str) -> list[float]:
            return [1.0, 2.0, 3.0]

    encoder = LangChainEncoder(Broken())
    with pytest.raises(InvalidInputError, match=r"shape \(1, 2\)"):
        encoder.encode_documents(["x"])


# -- tools --------------------------------------------------------------------------------------------------------
def test_structured_tools(hybrid: Pipeline) -> None:
    search, ask = RagloomTools(hybrid).langchain()
    assert (search.name, ask.name) == ("ragloom_search", "ragloom_ask")
    assert search.args_schema.model_json_schema()["properties"]["k"]["maximum"] == 50  # type: ignore[union-attr]
    content = json.loads(search.invoke({"query": "lava flows", "k": 2}))
    assert [h["chunk_id"] for h in content["hits"]] == [h.chunk.id for h in hybrid.retrieve("lava flows", 2)]
    message = ask.invoke(
        {"type": "tool_call", "id": "c1", "name": "ragloom_ask", "args": {"question": "What did the court hold?"}}
    )
    assert message.tool_call_id == "c1" and message.artifact["citations"][0]["marker"] == 1
    assert json.loads(message.content)["answer"] == message.artifact["answer"]


async def test_structured_tool_async_and_errors(dense: DenseRetriever) -> None:
    (search,) = RagloomTools(dense).langchain()
    content = json.loads(await search.ainvoke({"query": "knead the dough", "k": 1}))
    assert content["hits"][0]["chunk_id"] == dense.search("knead the dough", 1)[0].chunk.id
    assert json.loads(await search.ainvoke({"query": "x", "filters": {"missing": "key"}}))["hits"] == []
    refused = await search.ainvoke({"query": "x", "k": 0})
    assert "Invalid arguments for tool 'ragloom_search'" in refused and "k:" in refused
