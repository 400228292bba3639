"""Abstention: a threshold fitted from the index's own pseudo-queries, and the pipeline declining with it."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragloom.abstention import DeclinePolicy, describe_search
from ragloom.adapters.generators.extractive import ExtractiveGenerator
from ragloom.adapters.sparse import BM25Retriever
from ragloom.errors import ConfigError, InvalidInputError
from ragloom.pipeline import Pipeline
from ragloom.types import Chunk, Document, Hit

TOPICS = {
    "bread": "Knead the dough for ten minutes, then let the bread rise in a warm kitchen until it doubles.",
    "telescope": "The telescope observed a distant galaxy cluster through the infrared camera at night.",
    "statute": "The statute imposes a maximum penalty for nonwillful violations of the reporting rules.",
    "volcano": "Magma rises under the volcano and erupts as lava flows down the mountain slopes.",
    "orchestra": "The orchestra rehearsed the symphony while the conductor marked every tempo change.",
    "glacier": "The glacier retreated several kilometres as summer temperatures melted the ancient ice.",
}


def documents() -> list[Document]:
    return [Document(id=name, text=text, source=f"{name}.txt") for name, text in TOPICS.items()]


def make_pipeline(tmp_path: Path, decline: DeclinePolicy | None = None) -> Pipeline:
    retriever = BM25Retriever(path=tmp_path / "bm25")
    pipeline = Pipeline([retriever], generator=ExtractiveGenerator(), k=2, candidates=5, decline=decline)
    pipeline.ingest(documents())
    return pipeline


def test_fit_separates_in_index_from_off_index_pseudo_queries(tmp_path: Path) -> None:
    pipeline = make_pipeline(tmp_path)
    policy = DeclinePolicy.fit(lambda q: pipeline.retrieve(q, k=1), list(TOPICS.values()), samples=60, words=4)
    assert policy.score_kind == "bm25" and policy.min_score is not None and policy.min_score > 0
    assert "pseudo-queries" in policy.fitted
    assert policy.weak(pipeline.retrieve("dough bread rise kitchen", k=1)) == ""
    assert "under the threshold" in policy.weak(pipeline.retrieve("mountain", k=1))
    with pytest.raises(InvalidInputError, match="at least 2 texts"):
        DeclinePolicy.fit(pipeline.retrieve, ["one text only with words enough"])


def test_pipeline_declines_on_weak_evidence_and_says_what_it_searched(tmp_path: Path) -> None:
    pipeline = make_pipeline(tmp_path, DeclinePolicy(min_score=50.0, score_kind="bm25", fitted="set by hand"))
    answer = pipeline.ask("How long should the dough be kneaded?")
    assert answer.verdict == "declined" and not answer.citations
    assert "Searched bm25" in answer.text and "bread.txt" in answer.text
    assert answer.support is not None and "under the threshold 50.000, set by hand" in answer.support.reason
    assert answer.timings["generate_s"] == 0.0
    streamed = list(pipeline.ask_stream("How long should the dough be kneaded?"))
    assert streamed[0] == answer.text and streamed[-1].verdict == "declined"


def test_pipeline_answers_when_evidence_is_strong(tmp_path: Path) -> None:
    pipeline = make_pipeline(tmp_path, DeclinePolicy(min_score=0.1, score_kind="bm25"))
    answer = pipeline.ask("How long should the dough be kneaded?")
    assert answer.verdict == "supported", answer.support
    assert answer.citations[0].doc_id == "bread"


def test_generator_decline_is_a_declined_verdict_with_what_was_searched(tmp_path: Path) -> None:
    pipeline = make_pipeline(tmp_path)
    answer = pipeline.ask("Which penalty applies to nonwillful football transfers?", k=1)
    if answer.verdict != "declined":  # the extractive generator found a matching sentence: fine, but check
        assert answer.citations
    answer = pipeline.ask("Who painted the ceiling of the chapel?")
    assert answer.verdict == "declined"
    assert answer.support is not None and "Searched bm25" in answer.support.reason


def test_policy_refuses_scores_of_another_kind() -> None:
    hit = Hit(Chunk(id="a#0-1", doc_id="a", text="x", start=0, end=1), 0.5, "rrf", "fused", 1)
    with pytest.raises(ConfigError, match="fit it again"):
        DeclinePolicy(min_score=0.3, score_kind="cosine").weak([hit])
    assert DeclinePolicy().weak([hit]) == "" and DeclinePolicy().weak([]) != ""
    assert "nothing matched" in describe_search("q", [], ["dense"])
