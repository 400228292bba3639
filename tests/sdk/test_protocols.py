"""A user's own classes plug in through the protocols alone: nothing of ours is inherited, every optional capability
is declared in ``ragloom.protocols`` and found by ``isinstance``, never by probing names."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import pytest

import ragloom
from ragloom import protocols
from ragloom.calibration import index_chunks
from ragloom.chunking import TokenChunker, WordTokenizer, tokenizer_name
from ragloom.errors import ConfigError
from ragloom.fusion import fuser_to_config
from ragloom.pipeline import Pipeline
from ragloom.prompting import PromptBuilder
from ragloom.retrieval import ChunkedVectorRetriever
from ragloom.testing import CONTRACT_DOCUMENTS
from ragloom.tokens import default_token_counter
from ragloom.types import Chunk, Document, Hit, Message


class KeywordRetriever:
    """A user's retriever: whole documents as chunks, scored by shared words. Subclasses nothing."""

    name = "keywords"

    def __init__(self) -> None:
        self._chunks: dict[str, Chunk] = {}
        self.progress_calls: list[tuple[int, int]] = []

    def add(self, documents: Sequence[Document], *, progress=None) -> list[Chunk]:  # type: ignore[no-untyped-def]
        added = []
        for done, doc in enumerate(documents, start=1):
            chunk = Chunk(id=f"{doc.id}#0", doc_id=doc.id, text=doc.text, start=0, end=len(doc.text))
            self._chunks[doc.id] = chunk
            added.append(chunk)
            if progress is not None:
                progress(done, len(documents))
                self.progress_calls.append((done, len(documents)))
        return added

    def delete(self, doc_ids: Sequence[str]) -> int:
        return sum(self._chunks.pop(i, None) is not None for i in doc_ids)

    def search(self, query: str, k: int = 10, filters: Mapping[str, object] | None = None) -> list[Hit]:
        return self.search_many([query], k, filters)[0]

    def search_many(
        self, queries: Sequence[str], k: int = 10, filters: Mapping[str, object] | None = None
    ) -> list[list[Hit]]:
        results = []
        for query in queries:
            words = set(query.lower().split())
            scored = sorted(
                ((len(words & set(c.text.lower().split())), c) for c in self._chunks.values()),
                key=lambda pair: (-pair[0], pair[1].id),
            )
            results.append(
                [
                    Hit(chunk=c, score=float(s), score_kind="bm25", retriever=self.name, rank=rank)
                    for rank, (s, c) in enumerate(scored[:k], start=1)
                    if s > 0
                ]
            )
        return results

    def doc_ids(self) -> set[str]:
        return set(self._chunks)

    def chunks(self) -> list[Chunk]:
        return list(self._chunks.values())

    def __len__(self) -> int:
        return len(self._chunks)


class QuoteGenerator:
    """A user's generator: quotes the first passage and cites it; counts tokens as words; a small window."""

    name = "quote"
    context_window = 400
    reply_tokens = 50

    def generate(self, messages: Sequence[Message]) -> str:
        user = messages[-1].content
        first = user.split("[1] (", 1)[1].split("\n", 1)[1].split("\n\n", 1)[0]
        return " ".join(first.split()[:6]) + " [1]."

    def stream(self, messages: Sequence[Message]) -> Iterator[str]:
        yield self.generate(messages)

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def prompt_tokens(self, messages: Sequence[Message]) -> int:
        return sum(self.count_tokens(m.content) + 4 for m in messages)


def test_user_classes_pass_the_protocol_checks() -> None:
    retriever, generator = KeywordRetriever(), QuoteGenerator()
    assert isinstance(retriever, ragloom.Retriever) and isinstance(retriever, ragloom.ChunkListing)
    assert not isinstance(retriever, ragloom.PersistentRetriever), "no path or writer lock: kept in memory"
    assert not isinstance(retriever, ragloom.Closeable)
    assert isinstance(generator, ragloom.Generator) and not isinstance(generator, ragloom.AsyncGenerator)
    for capability in (
        ragloom.TokenCountingGenerator,
        ragloom.PromptMeasuringGenerator,
        ragloom.ContextWindowAware,
        ragloom.ReplyLimited,
    ):
        assert isinstance(generator, capability), capability.__name__
    assert not isinstance(object(), ragloom.ContextWindowAware)


def test_every_protocol_is_public() -> None:
    assert set(protocols.__all__) <= set(ragloom.__all__)
    for name in protocols.__all__:
        assert getattr(ragloom, name) is getattr(protocols, name)


def test_user_retriever_and_generator_answer_through_the_pipeline() -> None:
    retriever, generator = KeywordRetriever(), QuoteGenerator()
    pipeline = Pipeline([retriever], generator=generator, k=2, candidates=5)
    seen: list[tuple[int, int]] = []
    pipeline.ingest(list(CONTRACT_DOCUMENTS), progress=lambda done, total: seen.append((done, total)))
    assert retriever.progress_calls and seen, "the pipeline passes progress through the declared argument"
    target = CONTRACT_DOCUMENTS[0]
    answer = pipeline.ask(target.text)
    assert answer.citations and answer.citations[0].hit.chunk.doc_id == target.id
    assert index_chunks([retriever]) == retriever.chunks()


def test_prompt_budget_uses_the_declared_window_reply_and_measure() -> None:
    generator = QuoteGenerator()
    builder = PromptBuilder(context_tokens=10_000)
    counter = default_token_counter(generator)
    assert counter.count("three small words") == 3, "the generator's own count_tokens is used"
    assert isinstance(default_token_counter(object()), type(default_token_counter(None)))
    budget = builder.budget("a question", counter, generator)
    scaffold = builder._messages("a question", [])
    assert budget == generator.context_window - generator.reply_tokens - generator.prompt_tokens(scaffold)
    assert builder.budget("a question", counter, object()) == 10_000, "no window declared: the configured budget"
    hits = [
        Hit(
            chunk=Chunk(id=f"d{i}#0", doc_id=f"d{i}", text="word " * 60, start=0, end=300),
            score=1.0,
            score_kind="bm25",
            retriever="keywords",
            rank=i + 1,
        )
        for i in range(10)
    ]
    parts = builder.build("a question", hits, counter, generator)
    assert parts.dropped > 0
    assert generator.prompt_tokens(parts.messages) <= generator.context_window - generator.reply_tokens


def test_a_configurable_user_fuser_is_saved_and_an_opaque_one_is_refused() -> None:
    class FirstListFuser:
        def fuse(self, results: Mapping[str, Sequence[Hit]], k: int) -> list[Hit]:
            return list(next(iter(results.values()), []))[:k]

        def to_config(self) -> Mapping[str, object]:
            return {"kind": "first"}

    class Opaque:
        def fuse(self, results: Mapping[str, Sequence[Hit]], k: int) -> list[Hit]:
            return []

    assert isinstance(FirstListFuser(), ragloom.ConfigurableFuser)
    assert fuser_to_config(FirstListFuser()) == {"kind": "first"}
    with pytest.raises(ConfigError, match="Cannot serialise"):
        fuser_to_config(Opaque())


def test_tokenizer_name_and_digest_are_declared_capabilities() -> None:
    class Plain:
        def token_spans(self, text: str) -> list[tuple[int, int]]:
            return WordTokenizer().token_spans(text)

    class Digested(Plain):
        name = "mine"
        digest = "abc123"

    assert tokenizer_name(WordTokenizer()) == "words" and tokenizer_name(Plain()) == "Plain"
    assert "tokenizer_sha256" not in TokenChunker(Plain()).config
    config = TokenChunker(Digested()).config
    assert config["tokenizer"] == "mine" and config["tokenizer_sha256"] == "abc123"


class HashEncoder:
    """A user's dense encoder with an async twin for queries (a remote embedding service, say)."""

    dim = 16
    fingerprint: Mapping[str, object] = {"model": "hash", "normalize": True}

    def __init__(self) -> None:
        self.awaited = 0

    def _vectors(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                out[row, sum(map(ord, word)) % self.dim] += 1.0
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._vectors(texts)

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self._vectors(texts)

    async def aencode_queries(self, texts: Sequence[str]) -> np.ndarray:
        self.awaited += 1
        await asyncio.sleep(0)
        return self._vectors(texts)


def test_an_async_query_encoder_is_awaited(tmp_path: Path) -> None:
    encoder = HashEncoder()
    assert isinstance(encoder, ragloom.DenseEncoder) and isinstance(encoder, ragloom.AsyncQueryEncoder)
    retriever = ChunkedVectorRetriever(encoder, chunker=TokenChunker(WordTokenizer(), chunk_size=64, overlap=0))
    retriever.add(list(CONTRACT_DOCUMENTS))
    hits = asyncio.run(retriever.asearch(CONTRACT_DOCUMENTS[1].text, k=2))
    assert encoder.awaited == 1 and hits[0].chunk.doc_id == CONTRACT_DOCUMENTS[1].id
    assert hits == retriever.search(CONTRACT_DOCUMENTS[1].text, k=2)
    assert isinstance(retriever, ragloom.ChunkListing) and len(retriever.chunks()) == len(retriever)
