"""Fusion: RRF with weights, score fusion, page keys, fitting weights; hypothesis properties."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ragloom.errors import ConfigError, InvalidInputError
from ragloom.fusion import (
    ConvexFusion,
    MinMaxFusion,
    ReciprocalRankFusion,
    ZScoreFusion,
    fit_weights,
    fuser_from_config,
    fuser_to_config,
)
from ragloom.types import Chunk, Hit


def hit(doc: str, score: float, rank: int, retriever: str, page: int | None = None, cid: str | None = None) -> Hit:
    chunk = Chunk(id=cid or f"{doc}#0-1", doc_id=doc, text=f"text of {doc}", start=0, end=1, page=page)
    return Hit(chunk=chunk, score=score, score_kind="cosine", retriever=retriever, rank=rank)


def ranked(retriever: str, docs: list[str]) -> list[Hit]:
    return [hit(d, 1.0 - i / 10, i + 1, retriever) for i, d in enumerate(docs)]


def test_rrf_matches_formula() -> None:
    results = {"a": ranked("a", ["x", "y", "z"]), "b": ranked("b", ["y", "x"])}
    fused = ReciprocalRankFusion(k=60).fuse(results, 10)
    scores = {h.chunk.doc_id: h.score for h in fused}
    assert scores["x"] == pytest.approx(1 / 61 + 1 / 62)
    assert scores["y"] == pytest.approx(1 / 62 + 1 / 61)
    assert scores["z"] == pytest.approx(1 / 63)
    assert [h.rank for h in fused] == [1, 2, 3]
    assert all(h.score_kind == "rrf" and h.retriever == "fusion" for h in fused)
    assert "a#1" in fused[0].explanation or "b#1" in fused[0].explanation


def test_rrf_weights_are_honoured() -> None:
    results = {"a": ranked("a", ["x", "y"]), "b": ranked("b", ["y", "x"])}
    assert ReciprocalRankFusion(weights={"a": 3.0}).fuse(results, 2)[0].chunk.doc_id == "x"
    assert ReciprocalRankFusion(weights={"b": 3.0}).fuse(results, 2)[0].chunk.doc_id == "y"


def test_page_key_fuses_page_and_text_hits() -> None:
    page_hit = Hit(Chunk(id="d#p3", doc_id="d", text="", start=0, end=0, page=3), 0.9, "maxsim", "colpali", 1)
    text_hit = hit("d", 0.5, 1, "dense", page=3, cid="d#10-50")
    other = hit("e", 0.4, 2, "dense", page=1, cid="e#0-5")
    fused = ReciprocalRankFusion(key="page").fuse({"colpali": [page_hit], "dense": [text_hit, other]}, 5)
    assert fused[0].chunk.id == "d#10-50", "the text chunk represents the fused page (it carries text)"
    assert fused[0].score == pytest.approx(2 / 61)
    assert len(fused) == 2


def test_minmax_and_zscore() -> None:
    results = {
        "a": [hit("x", 10.0, 1, "a"), hit("y", 0.0, 2, "a")],
        "b": [hit("y", 0.9, 1, "b"), hit("x", 0.8, 2, "b")],
    }
    fused = MinMaxFusion().fuse(results, 2)
    assert {h.chunk.doc_id: round(h.score, 6) for h in fused} == {"x": 1.0, "y": 1.0}
    fused = MinMaxFusion(weights={"a": 2.0}).fuse(results, 2)
    assert fused[0].chunk.doc_id == "x" and fused[0].score == pytest.approx(2.0)
    z = ZScoreFusion().fuse(results, 2)
    assert z[0].chunk.doc_id in ("x", "y") and len(z) == 2


def test_convex() -> None:
    results = {
        "a": [hit("x", 1.0, 1, "a"), hit("y", 0.0, 2, "a")],
        "b": [hit("y", 1.0, 1, "b"), hit("x", 0.0, 2, "b")],
    }
    assert ConvexFusion("a", "b", alpha=0.8).fuse(results, 1)[0].chunk.doc_id == "x"
    assert ConvexFusion("a", "b", alpha=0.2).fuse(results, 1)[0].chunk.doc_id == "y"
    with pytest.raises(ConfigError):
        ConvexFusion("a", "b", alpha=1.5)
    with pytest.raises(InvalidInputError):
        ConvexFusion("a", "c").fuse(results, 1)


def test_bad_weights_refused() -> None:
    with pytest.raises(ConfigError):
        ReciprocalRankFusion(weights={"a": -1.0})
    with pytest.raises(ConfigError):
        ReciprocalRankFusion(weights={"a": float("nan")})


def test_fit_weights_finds_the_useful_retriever() -> None:
    # retriever "good" ranks the relevant doc first; "noise" ranks it last
    runs = {
        "noise": [ranked("noise", [f"n{i}", f"m{i}", f"rel{i}"]) for i in range(5)],
        "good": [ranked("good", [f"rel{i}", f"n{i}", f"m{i}"]) for i in range(5)],
    }

    def mrr(fused: list[list[Hit]]) -> float:
        total = 0.0
        for i, hits in enumerate(fused):
            ids = [h.chunk.doc_id for h in hits]
            total += 1 / (ids.index(f"rel{i}") + 1)
        return total / len(fused)

    weights, best = fit_weights(ReciprocalRankFusion(), runs, mrr)
    assert best == pytest.approx(1.0)
    assert weights["good"] > weights["noise"]


def test_config_round_trip() -> None:
    for fuser in (
        ReciprocalRankFusion(k=10, weights={"a": 2.0}),
        MinMaxFusion(weights={"b": 0.5}),
        ZScoreFusion(),
    ):
        assert fuser_from_config(fuser_to_config(fuser)) == fuser


hit_lists = st.lists(
    st.tuples(st.sampled_from("abcdefgh"), st.floats(-5, 5, allow_nan=False)),
    min_size=0,
    max_size=8,
    unique_by=lambda t: t[0],
)


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.sampled_from(["r1", "r2", "r3"]), hit_lists, max_size=3), st.integers(1, 10))
def test_fusion_properties(lists: dict[str, list[tuple[str, float]]], k: int) -> None:
    results = {
        name: [hit(doc, score, i + 1, name) for i, (doc, score) in enumerate(sorted(items, key=lambda t: -t[1]))]
        for name, items in lists.items()
    }
    all_docs = {d for items in lists.values() for d, _ in items}
    for fuser in (ReciprocalRankFusion(), MinMaxFusion(), ZScoreFusion()):
        fused = fuser.fuse(results, k)
        ids = [h.chunk.id for h in fused]
        assert len(ids) == len(set(ids)) == min(k, len(all_docs))
        assert [h.rank for h in fused] == list(range(1, len(fused) + 1))
        assert all(a.score >= b.score for a, b in zip(fused, fused[1:]))
