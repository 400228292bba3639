"""What a LangChain or LlamaIndex user found from the outside: bookkeeping in prompts, filters misread, settings
silently ignored, a fingerprint tied to a class path, async embeddings unused, image blocks dropped silently."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("langchain_core")
pytest.importorskip("llama_index.core")

from langchain_core.embeddings import Embeddings
from langchain_core.messages import HumanMessage
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.base.llms.types import ChatMessage, ImageBlock, MessageRole, TextBlock
from llama_index.core.schema import MetadataMode

from ragloom.adapters.dense import DenseRetriever, TransformersDenseEncoder
from ragloom.adapters.integrations.langchain import LangChainEncoder, RagloomChatModel, RagloomRetriever
from ragloom.adapters.integrations.llamaindex import (
    LlamaIndexEncoder,
    RagloomLLM,
    RagloomNodeRetriever,
    RagloomQueryEngine,
)
from ragloom.errors import InvalidInputError, RagloomWarning
from ragloom.loaders import load_folder
from ragloom.pipeline import Pipeline
from ragloom.testing import CONTRACT_DOCUMENTS

BAD_FILTERS = [
    {"doc_id": {"$in": ["bake", "space"]}},
    {"topic": ["food", "science"]},
    {"$or": [{"topic": "food"}, {"topic": "science"}]},
    {"topic": None},
]


@pytest.fixture(scope="module", params=["memory", "chroma"])
def store_retriever(request: pytest.FixtureRequest, bert_encoder: TransformersDenseEncoder, tmp_path_factory: Any):
    folder = tmp_path_factory.mktemp(f"filters-{request.param}")
    retriever = DenseRetriever(bert_encoder, folder / "index", store=request.param, chunk_size=24, overlap=4)
    retriever.add(list(CONTRACT_DOCUMENTS))
    yield retriever
    retriever.close()


@pytest.mark.parametrize("filters", BAD_FILTERS, ids=["$in", "list", "$or", "null"])
def test_unsupported_filters_are_the_same_typed_error_on_every_store(
    store_retriever: DenseRetriever, filters: dict[str, Any]
) -> None:
    with pytest.raises(InvalidInputError, match="filter"):
        RagloomRetriever(store_retriever).invoke("bread", filters=filters)
    with pytest.raises(InvalidInputError, match="filter"):
        RagloomNodeRetriever(store_retriever, filters=filters).retrieve("bread")
    good = RagloomRetriever(store_retriever).invoke("bread", filters={"topic": "food"})
    assert good and {d.metadata["topic"] for d in good} == {"food"}


def test_llamaindex_nodes_keep_file_bookkeeping_out_of_prompts_and_embeddings(
    tmp_path: Path, bert_encoder: TransformersDenseEncoder
) -> None:
    (tmp_path / "notes.md").write_text("---\ntitle: Bread notes\n---\nKnead the dough for ten minutes.\n")
    retriever = DenseRetriever(bert_encoder, chunk_size=24, overlap=4)
    retriever.add(list(load_folder(tmp_path).documents))
    node = RagloomNodeRetriever(retriever).retrieve("knead the dough")[0].node
    shown, embedded = node.get_content(MetadataMode.LLM), node.get_content(MetadataMode.EMBED)
    for key in ("sha256", "filename", "format", "encoding", "chunk_id", "score"):
        assert key not in shown and key not in embedded, key
    assert node.metadata["sha256"], "still available to code"
    assert "Bread notes" in shown and "Bread notes" in embedded, "the document's own metadata is content"


def test_langchain_retriever_follows_conventions_or_refuses(dense: DenseRetriever) -> None:
    assert len(RagloomRetriever(dense, search_kwargs={"k": 2}).invoke("bread")) == 2
    only_food = RagloomRetriever(dense, search_kwargs={"k": 3, "filter": {"topic": "food"}}).invoke("bread")
    assert {d.metadata["topic"] for d in only_food} == {"food"}
    for wrong in ({"top_k": 3}, {"search_kwargs": {"score_threshold": 0.5}}, {"k": 0}, {"similarity_top_k": 2}):
        with pytest.raises(InvalidInputError):
            RagloomRetriever(dense, **wrong)
    with pytest.raises(InvalidInputError, match="k must be a positive integer"):
        RagloomRetriever(dense).invoke("bread", k=0)


def test_llamaindex_takes_similarity_top_k_and_refuses_what_it_cannot_do(dense: DenseRetriever, hybrid: Pipeline):
    assert len(RagloomNodeRetriever(dense, similarity_top_k=2).retrieve("bread")) == 2
    with pytest.raises(InvalidInputError):
        RagloomNodeRetriever(dense, k=0)
    with pytest.raises(InvalidInputError, match="does not stream"):
        RagloomQueryEngine(hybrid, streaming=True)
    with pytest.raises(InvalidInputError, match="positive integer"):
        RagloomQueryEngine(hybrid, k=0)
    assert len(RagloomQueryEngine(hybrid, similarity_top_k=1).query("bread").source_nodes) == 1


def test_chat_model_refuses_settings_it_cannot_apply_and_reports_usage(local_llm: Any) -> None:
    model = RagloomChatModel(generator=local_llm)
    for options in ({"max_tokens": 5}, {"temperature": 0.3}, {"seed": 7}):
        with pytest.raises(InvalidInputError, match="per call"):
            model.invoke("the cat sat", **options)
        with pytest.raises(InvalidInputError, match="per call"):
            model.bind(**options).invoke("the cat sat")
    result = model.invoke("the cat sat")
    assert result.response_metadata["model_name"] == local_llm.name
    usage = result.usage_metadata
    assert usage is not None and usage["output_tokens"] == local_llm.count_tokens(result.content)
    assert usage["input_tokens"] > 0 and usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]


def test_image_content_is_reported_not_dropped_silently(generator: Any) -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    with pytest.warns(RagloomWarning, match="image_url"):
        RagloomChatModel(generator=generator).invoke([HumanMessage(content=[{"type": "text", "text": "hi"}, image])])
    message = ChatMessage(role=MessageRole.USER, blocks=[TextBlock(text="hi"), ImageBlock(url="http://x/a.png")])
    with pytest.warns(RagloomWarning, match="ImageBlock"):
        RagloomLLM(generator=generator).chat([message])


class CountingEmbeddings(Embeddings):
    """A user's LangChain embeddings with a native async path (backed by the tiny BERT)."""

    def __init__(self, encoder: TransformersDenseEncoder) -> None:
        self.encoder, self.async_calls = encoder, 0

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.encoder.encode_documents(texts).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.encoder.encode_queries([text])[0].tolist()

    async def aembed_query(self, text: str) -> list[float]:
        self.async_calls += 1
        return self.embed_query(text)


class CountingEmbedding(BaseEmbedding):
    """A user's LlamaIndex embedding model with a native async path."""

    async_calls: int = 0

    def __init__(self, encoder: TransformersDenseEncoder) -> None:
        super().__init__(model_name="tiny-bert")
        self._encoder = encoder

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._encoder.encode_queries([query])[0].tolist()

    async def _aget_query_embedding(self, query: str) -> list[float]:
        self.async_calls += 1
        return self._get_query_embedding(query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._encoder.encode_documents([text])[0].tolist()


def test_async_search_uses_the_frameworks_async_embeddings(bert_encoder: TransformersDenseEncoder) -> None:
    lc = CountingEmbeddings(bert_encoder)
    li = CountingEmbedding(bert_encoder)
    for encoder in (
        LangChainEncoder(lc, name="tiny-bert", token_counter=bert_encoder.token_counter),
        LlamaIndexEncoder(li, name="tiny-bert", token_counter=bert_encoder.token_counter),
    ):
        retriever = DenseRetriever(encoder, chunk_size=24, overlap=4)
        retriever.add(list(CONTRACT_DOCUMENTS))
        hits = asyncio.run(retriever.asearch("knead the dough", 2))
        assert [h.chunk.id for h in hits] == [h.chunk.id for h in retriever.search("knead the dough", 2)]
    assert lc.async_calls == 1 and li.async_calls == 1


def test_the_fingerprint_names_the_model_not_the_python_class_path(
    tmp_path: Path, bert_encoder: TransformersDenseEncoder
) -> None:
    """An index built from a script (class in ``__main__``) opens when the same class is imported from a module."""
    as_script = type("MyEmbeddings", (CountingEmbeddings,), {"__module__": "__main__"})
    as_module = type("MyEmbeddings", (CountingEmbeddings,), {"__module__": "my_project.embeddings"})
    built = DenseRetriever(
        LangChainEncoder(as_script(bert_encoder), name="tiny-bert", token_counter=bert_encoder.token_counter),
        tmp_path / "i",
        store="memory",
    )
    built.add(list(CONTRACT_DOCUMENTS))
    built.close()
    reopened = DenseRetriever(
        LangChainEncoder(as_module(bert_encoder), name="tiny-bert", token_counter=bert_encoder.token_counter),
        tmp_path / "i",
        store="memory",
    )
    assert reopened.search("bread", 1)
    reopened.close()
