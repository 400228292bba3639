"""E²Rank-style embedding reranker: the enriched query vector, the blend with the first stage, edge cases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ragloom.adapters.dense import TransformersDenseEncoder
from ragloom.adapters.rerankers import EmbeddingListwiseReranker
from ragloom.errors import ConfigError, InvalidInputError
from ragloom.protocols import Reranker
from ragloom.types import Chunk, Hit

TEXTS = [
    "the telescope observed a distant galaxy",
    "bread dough rises in the oven",
    "a galaxy cluster bends light from quasars",
    "the court ruled on the statute",
    "lava flows from the volcano",
    "quasars are distant and bright",
]


@pytest.fixture(scope="module")
def encoder(tiny_bert_dir: Path) -> TransformersDenseEncoder:
    return TransformersDenseEncoder(tiny_bert_dir, dtype="float32")


def _hits(texts: list[str]) -> list[Hit]:
    return [
        Hit(Chunk(f"c{i}", f"d{i}", t, 0, len(t)), score=1.0 - i / 10, score_kind="rrf", retriever="fusion", rank=i + 1)
        for i, t in enumerate(texts)
    ]


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


@pytest.mark.parametrize(("feedback", "beta"), [(0, 1.0), (3, 1.0), (2, 0.5)])
def test_scores_are_cosines_with_the_feedback_enriched_query(
    encoder: TransformersDenseEncoder, feedback: int, beta: float
) -> None:
    reranker = EmbeddingListwiseReranker(encoder, feedback=feedback, beta=beta, mix=0.0)
    assert isinstance(reranker, Reranker)
    query = "distant galaxy quasars"
    out = reranker.rerank(query, _hits(TEXTS), k=6)
    docs = _unit(encoder.encode_documents(TEXTS).astype(np.float64))
    q = _unit(encoder.encode_queries([query])[0].astype(np.float64))
    enriched = _unit(q + beta * docs[:feedback].mean(axis=0)) if feedback else q
    cosine = docs @ enriched
    assert [h.chunk.id for h in out] == [f"c{i}" for i in np.lexsort((np.arange(6), -cosine))]
    assert [h.rank for h in out] == list(range(1, 7))
    assert {h.retriever for h in out} == {"e2rank"} and {h.score_kind for h in out} == {"rerank"}
    assert out[0].explanation.startswith("e2rank cos")


def test_mix_one_keeps_the_first_stage_order_and_k_cuts(encoder: TransformersDenseEncoder) -> None:
    out = EmbeddingListwiseReranker(encoder, mix=1.0).rerank("bread", _hits(TEXTS), k=3)
    assert [h.chunk.id for h in out] == ["c0", "c1", "c2"]


def test_passages_without_text_go_last_and_bad_input_is_typed(encoder: TransformersDenseEncoder) -> None:
    hits = _hits(["", *TEXTS[:3]])
    out = EmbeddingListwiseReranker(encoder).rerank("galaxy", hits, k=4)
    assert out[-1].chunk.id == "c0"
    assert EmbeddingListwiseReranker(encoder).rerank("galaxy", [], k=3) == []
    with pytest.raises(InvalidInputError):
        EmbeddingListwiseReranker(encoder).rerank("", hits, k=3)
    with pytest.raises(ConfigError):
        EmbeddingListwiseReranker(encoder, mix=1.5)
