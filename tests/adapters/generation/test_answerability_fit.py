"""Fitting the answerability check's threshold without labels: answerable and unanswerable pairs made from the
index's own chunks, scored by a real (tiny) model through the real check."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragloom.adapters.dense import DenseRetriever, TransformersDenseEncoder
from ragloom.adapters.generators.local import TransformersGenerator
from ragloom.adapters.sparse.bm25 import BM25Retriever
from ragloom.answerability import AnswerabilityCheck, fit_threshold
from ragloom.answerability_fit import CheckFit, fit_check_threshold
from ragloom.errors import InvalidInputError
from ragloom.pipeline import Pipeline
from ragloom.prompting import PromptBuilder
from ragloom.pseudo_queries import SalientSpanQueries
from ragloom.types import Document

PROMPT = PromptBuilder(system_prompt="Answer.", instructions="Cite, or say: the end", context_tokens=400)


@pytest.fixture(scope="module")
def hf(tiny_gguf) -> TransformersGenerator:  # type: ignore[no-untyped-def]
    return TransformersGenerator(gguf_file=tiny_gguf[0], max_new_tokens=6, dtype="float32")


@pytest.fixture(scope="module")
def pipeline(hf: TransformersGenerator, tiny_bert_dir: Path, topic_sentences: tuple[str, ...]) -> Pipeline:
    """BM25 finds a span's source chunk; the (random) dense member returns every chunk, so other documents'
    passages fill the unanswerable side."""
    documents = [Document(id=f"doc{i}", text=f"{text} {text}") for i, text in enumerate(topic_sentences)]
    dense = DenseRetriever(TransformersDenseEncoder(tiny_bert_dir), chunk_size=16, overlap=0, name="dense")
    bm25 = BM25Retriever(chunker=dense.chunker, name="bm25")
    for member in (bm25, dense):
        member.add(documents)
    return Pipeline([bm25, dense], generator=hf, k=3, prompt=PROMPT)


def _fit(pipeline: Pipeline, hf: TransformersGenerator, seed: int = 0, sample: int = 8) -> CheckFit:
    check = AnswerabilityCheck(hf, mode="decline-phrase", decline_phrase="the end")
    chunks = list(pipeline.retrievers[0].chunks())  # type: ignore[attr-defined]
    return fit_check_threshold(
        check,
        PROMPT,
        lambda q: pipeline.retrieve(q, k=10),
        chunks,
        questions=SalientSpanQueries(),
        sample=sample,
        seed=seed,
    )


def test_pairs_are_scored_by_the_check_and_the_threshold_fitted_on_them(
    pipeline: Pipeline, hf: TransformersGenerator
) -> None:
    fit = _fit(pipeline, hf)
    assert len(fit.answerable) == len(fit.unanswerable) >= 5
    assert fit.tried == 8 and fit.skipped == fit.tried - len(fit.answerable)
    assert all(0.0 <= s <= 1.0 for s in (*fit.answerable, *fit.unanswerable))
    assert fit.threshold == fit_threshold(list(fit.answerable), list(fit.unanswerable), 0.1)
    assert fit.answerable != fit.unanswerable  # the two passage sets differ, so do the model's scores
    assert fit.to_dict()["pairs"] == len(fit.answerable) and fit.generator == SalientSpanQueries().name
    again = _fit(pipeline, hf)
    assert (again.threshold, again.answerable) == (fit.threshold, fit.answerable)  # seeded: the same pairs


def test_too_few_pairs_or_one_document_is_a_clear_error(pipeline: Pipeline, hf: TransformersGenerator) -> None:
    with pytest.raises(InvalidInputError, match="need 5"):
        _fit(pipeline, hf, sample=2)
    check = AnswerabilityCheck(hf, mode="decline-phrase", decline_phrase="the end")
    chunks = [c for c in pipeline.retrievers[0].chunks() if c.doc_id == "doc0"]  # type: ignore[attr-defined]
    with pytest.raises(InvalidInputError, match="at least two documents"):
        fit_check_threshold(check, PROMPT, pipeline.retrieve, chunks)
