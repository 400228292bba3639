"""Fixtures for the framework bridges: real retrieval on the tiny BERT, a scripted stand-in for an LLM endpoint."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import pytest

from ragloom.adapters.dense import DenseRetriever, TransformersDenseEncoder
from ragloom.pipeline import Pipeline
from ragloom.recipes.config import GeneratorSpec, IndexSpec, RetrieverSpec, open_pipeline
from ragloom.testing import CONTRACT_DOCUMENTS
from ragloom.types import Hit, Message

QUERIES = ("distant galaxy cluster quasars", "knead the dough", "court statute contracts", "lava flows")
_PASSAGE = re.compile(r"\[1\] \([^)]*\)\n([^\n]+)")


class ScriptedGenerator:
    """Stands in for an LLM endpoint: answers with the first sentence of passage [1], citing it; records prompts."""

    name = "scripted"

    def __init__(self) -> None:
        self.prompts: list[list[Message]] = []

    def generate(self, messages: Sequence[Message]) -> str:
        self.prompts.append(list(messages))
        found = _PASSAGE.search(messages[-1].content)
        return f"{found.group(1).split('. ')[0].rstrip('.')} [1]." if found else "I don't know."

    def stream(self, messages: Sequence[Message]) -> Iterator[str]:
        words = self.generate(messages).split(" ")
        for i, word in enumerate(words):
            yield word if i == len(words) - 1 else word + " "


class SlowQueryEncoder:
    """Delegates to a real encoder but takes ``delay`` seconds per query batch, like a model on a busy CPU."""

    def __init__(self, inner: TransformersDenseEncoder, delay: float = 0.3) -> None:
        self.inner, self.delay = inner, delay

    @property
    def dim(self) -> int:
        return self.inner.dim

    @property
    def fingerprint(self) -> Mapping[str, object]:
        return self.inner.fingerprint

    @property
    def token_counter(self) -> object:
        return self.inner.token_counter

    @property
    def document_capacity(self) -> int:
        return self.inner.document_capacity

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self.inner.encode_documents(texts)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        time.sleep(self.delay)
        return self.inner.encode_queries(texts)


async def ticks_during(awaitable: object, interval: float = 0.01) -> tuple[object, int]:
    """Run ``awaitable`` while a ticker task counts; a blocked event loop stops the count."""
    count = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal count
        while not done.is_set():
            await asyncio.sleep(interval)
            count += 1

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    try:
        result = await awaitable  # type: ignore[misc]
    finally:
        done.set()
        await task
    return result, count


@pytest.fixture(scope="session")
def bert_encoder(tiny_bert_dir: Path) -> TransformersDenseEncoder:
    return TransformersDenseEncoder(tiny_bert_dir, batch_size=4)


@pytest.fixture(scope="session")
def other_encoder(tiny_bert_other_dir: Path) -> TransformersDenseEncoder:
    return TransformersDenseEncoder(tiny_bert_other_dir, batch_size=4)


@pytest.fixture(scope="session")
def dense(bert_encoder: TransformersDenseEncoder) -> DenseRetriever:
    retriever = DenseRetriever(bert_encoder, chunk_size=24, overlap=4, name="dense")
    retriever.add(list(CONTRACT_DOCUMENTS))
    return retriever


@pytest.fixture(scope="session")
def dense_other(other_encoder: TransformersDenseEncoder) -> DenseRetriever:
    retriever = DenseRetriever(other_encoder, chunk_size=24, overlap=4, name="dense_b")
    retriever.add(list(CONTRACT_DOCUMENTS))
    return retriever


@pytest.fixture(scope="session")
def slow_dense(bert_encoder: TransformersDenseEncoder) -> DenseRetriever:
    retriever = DenseRetriever(SlowQueryEncoder(bert_encoder), chunk_size=24, overlap=4, name="slow")
    retriever.add(list(CONTRACT_DOCUMENTS))
    return retriever


@pytest.fixture()
def generator() -> ScriptedGenerator:
    return ScriptedGenerator()


@pytest.fixture()
def hybrid(dense: DenseRetriever, dense_other: DenseRetriever, generator: ScriptedGenerator) -> Pipeline:
    """Two retrievers fused with RRF, answering through the scripted generator."""
    return Pipeline([dense, dense_other], generator=generator, k=3, candidates=10)


@pytest.fixture()
def ticker():  # type: ignore[no-untyped-def]
    """``await ticker(awaitable)`` → (result, ticks counted while it ran)."""
    return ticks_during


class ReverseReranker:
    """A deterministic ragloom Reranker: reverses the order, scoring by new position; records what it saw."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, list[str]]] = []

    def rerank(self, query: str, hits: Sequence[Hit], k: int) -> list[Hit]:
        self.seen.append((query, [h.chunk.id for h in hits]))
        ordered = list(reversed(hits))[:k]
        return [
            Hit(chunk=h.chunk, score=float(len(ordered) - i), score_kind="rerank", retriever="reverse", rank=i + 1)
            for i, h in enumerate(ordered)
        ]


@pytest.fixture()
def reverse_reranker() -> ReverseReranker:
    return ReverseReranker()


@pytest.fixture(scope="session")
def local_llm(tiny_llm_dir: Path):  # type: ignore[no-untyped-def]
    from ragloom.adapters.generators.local import TransformersGenerator

    return TransformersGenerator(tiny_llm_dir, max_new_tokens=6)


@pytest.fixture(scope="session")
def index_dir(tmp_path_factory: pytest.TempPathFactory, tiny_bert_dir: Path, tiny_llm_dir: Path) -> Path:
    """An index directory as `ragloom ingest` builds it, with the tiny BERT and the tiny chat model in its spec."""
    directory = tmp_path_factory.mktemp("index")
    spec = IndexSpec(
        retrievers=(RetrieverSpec(model=str(tiny_bert_dir), store="memory", chunk_size=24, overlap=4),),
        generator=GeneratorSpec(kind="local", model=str(tiny_llm_dir), max_new_tokens=8),
    )
    with open_pipeline(directory, spec=spec) as pipeline:
        pipeline.ingest(list(CONTRACT_DOCUMENTS))
    return directory
