"""Cross-encoder reranker on tiny random sequence-classification models loaded through the real loading code."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragloom.adapters.dense import DenseRetriever, TransformersDenseEncoder
from ragloom.adapters.rerankers.cross_encoder import CrossEncoderReranker
from ragloom.errors import ConfigError, InputTooLongError, InvalidInputError, ModelNotFoundError
from ragloom.pipeline import Pipeline
from ragloom.protocols import Reranker
from ragloom.testing import CONTRACT_DOCUMENTS
from ragloom.types import Chunk, Hit

QUERY = "distant galaxy cluster"
TEXTS = [
    "bread rise in a warm kitchen",
    "the telescope observed a distant galaxy cluster",
    "glaciers carving valleys",
    "court held the statute did not apply",
]
LONG = " ".join(["knead the dough ten minutes and let it rise until it doubles in size"] * 12)


def hit(i: int, text: str, retriever: str = "dense") -> Hit:
    return Hit(Chunk(f"d{i}#0-{len(text)}", f"d{i}", text, 0, len(text)), 1.0 - i / 10, "cosine", retriever, i + 1)


HITS = [hit(i, t) for i, t in enumerate(TEXTS)]


@pytest.fixture(scope="module")
def reranker(tiny_cross_encoder_dir: Path) -> CrossEncoderReranker:
    return CrossEncoderReranker(tiny_cross_encoder_dir, batch_size=2)


def direct_scores(folder: Path, query: str, texts: list[str], label: int | None = None) -> list[float]:
    """The model's own logits for short pairs, computed with plain transformers (no ragloom code)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    out = []
    with torch.inference_mode():
        for text in texts:
            logits = model(**tokenizer(query, text, return_tensors="pt")).logits[0]
            out.append(float(logits[0]) if label is None else float(logits[1] - logits[0]))
    return out


def test_rerank_returns_rerank_hits_ranked_by_model_score(
    reranker: CrossEncoderReranker, tiny_cross_encoder_dir
) -> None:
    assert isinstance(reranker, Reranker)
    out = reranker.rerank(QUERY, HITS, k=3)
    expected = direct_scores(tiny_cross_encoder_dir, QUERY, TEXTS)
    best_first = sorted(range(len(TEXTS)), key=lambda i: -expected[i])[:3]
    assert [h.chunk.doc_id for h in out] == [f"d{i}" for i in best_first]
    assert [h.rank for h in out] == [1, 2, 3]
    assert all(h.score_kind == "rerank" and h.retriever == "cross-encoder" and not h.explanation for h in out)
    for h in out:
        assert h.score == pytest.approx(expected[int(h.chunk.doc_id[1:])], abs=1e-5)


def test_batching_does_not_change_scores(tiny_cross_encoder_dir: Path) -> None:
    one = CrossEncoderReranker(tiny_cross_encoder_dir, batch_size=1).score_pairs(QUERY, [*TEXTS, LONG])
    many = CrossEncoderReranker(tiny_cross_encoder_dir, batch_size=64).score_pairs(QUERY, [*TEXTS, LONG])
    assert [s.score for s in one] == pytest.approx([s.score for s in many], abs=1e-5)


def test_long_passage_is_windowed_and_reported(reranker: CrossEncoderReranker, tiny_cross_encoder_dir: Path) -> None:
    (score,) = reranker.score_pairs(QUERY, [LONG])
    assert score.windows > 1 and score.window_tokens == reranker.window_tokens(QUERY)
    start, end = score.best_span
    best_text = LONG[start:end]
    # the passage's score is its best window's, which scores the same when given alone
    assert score.score == pytest.approx(direct_scores(tiny_cross_encoder_dir, QUERY, [best_text])[0], abs=1e-4)
    out = reranker.rerank(QUERY, [*HITS, hit(9, LONG)], k=5)
    long_hit = next(h for h in out if h.chunk.doc_id == "d9")
    assert "windowed" in long_hit.explanation and f"{score.windows} windows" in long_hit.explanation
    assert long_hit.chunk.text == LONG, "the passage itself is never cut"


def test_first_stage_explanation_is_kept(reranker: CrossEncoderReranker) -> None:
    first = Hit(Chunk("x#0-5", "x", "bread", 0, 5), 3.0, "splade", "splade", 1, explanation="terms: bread")
    (out,) = reranker.rerank("bread", [first], k=1)
    assert out.explanation == "terms: bread"


def test_two_label_model_scores_log_odds(tiny_cross_encoder_2label_dir: Path) -> None:
    reranker = CrossEncoderReranker(tiny_cross_encoder_2label_dir, activation="none")
    scores = [s.score for s in reranker.score_pairs(QUERY, TEXTS)]
    assert scores == pytest.approx(direct_scores(tiny_cross_encoder_2label_dir, QUERY, TEXTS, label=1), abs=1e-5)
    sigmoid = CrossEncoderReranker(tiny_cross_encoder_2label_dir, activation="sigmoid")
    probs = [s.score for s in sigmoid.score_pairs(QUERY, TEXTS)]
    assert all(0 < p < 1 for p in probs)
    assert sorted(range(4), key=lambda i: probs[i]) == sorted(range(4), key=lambda i: scores[i])


def test_classifier_and_bad_settings_are_refused(tiny_classifier_dir: Path, tiny_cross_encoder_dir: Path) -> None:
    with pytest.raises(ConfigError, match="3 output labels"):
        CrossEncoderReranker(tiny_classifier_dir)
    with pytest.raises(ConfigError, match="max_length"):
        CrossEncoderReranker(tiny_cross_encoder_dir, max_length=1000)
    with pytest.raises(ConfigError, match="activation"):
        CrossEncoderReranker(tiny_cross_encoder_dir, activation="softmax")  # type: ignore[arg-type]
    with pytest.raises(ModelNotFoundError, match="Tried"):
        CrossEncoderReranker("cross-encoder/not-cached-here")


def test_bad_input(reranker: CrossEncoderReranker) -> None:
    with pytest.raises(InvalidInputError):
        reranker.rerank("", HITS, k=2)
    with pytest.raises(InvalidInputError):
        reranker.rerank(QUERY, HITS, k=0)
    with pytest.raises(InvalidInputError, match="Hit"):
        reranker.rerank(QUERY, ["not a hit"], k=1)  # type: ignore[list-item]
    assert reranker.rerank(QUERY, [], k=3) == []
    with pytest.raises(InputTooLongError, match="Shorten the query"):
        reranker.rerank("galaxy " * 60, HITS, k=2)


def test_in_a_pipeline(reranker: CrossEncoderReranker, tiny_bert_dir: Path) -> None:
    retriever = DenseRetriever(TransformersDenseEncoder(tiny_bert_dir), chunk_size=24)
    pipeline = Pipeline([retriever], reranker=reranker, k=2, candidates=6)
    pipeline.ingest(list(CONTRACT_DOCUMENTS))
    candidates = retriever.search(QUERY, 6)
    hits = pipeline.retrieve(QUERY)
    assert [h.chunk.id for h in hits] == [h.chunk.id for h in reranker.rerank(QUERY, candidates, 2)]
    assert all(h.retriever == "cross-encoder" for h in hits) and [h.rank for h in hits] == [1, 2]
