"""Label-free calibration: pseudo-queries, the vectorised fit (checked against the real fusers), determinism,
the too-small error, routing, and the synthetic set where dense retrieval collapses."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from ragloom import Pipeline
from ragloom.calibration import (
    CalibrationSet,
    FusionCandidate,
    calibrate,
    candidate_set,
    fit_calibration,
    sample_chunks,
    score_candidates,
)
from ragloom.errors import ConfigError, IndexTooSmallError
from ragloom.fusion import fuser_from_config, fuser_to_config
from ragloom.pseudo_queries import LLMQueries, SalientSpanQueries, pseudo_query_generator
from ragloom.routing import RoutedFusion, fit_router, route_features
from ragloom.testing import profile_documents
from ragloom.types import Chunk, Document, Hit

sys.path.insert(0, str(Path(__file__).parents[1] / "adapters"))
from openai_fake import FakeOpenAIServer, Reply


def _chunk(i: int, doc: str | None = None, text: str = "") -> Chunk:
    return Chunk(id=f"c{i:04d}", doc_id=doc or f"d{i}", text=text or f"text {i}", start=0, end=1)


def _random_set(n_queries: int = 60, pool: int = 400, seed: int = 1) -> CalibrationSet:
    """Three retrievers with random lists (and ties) over a shared pool; relevant chunks sometimes missing."""
    rng = np.random.default_rng(seed)
    chunks = [_chunk(i) for i in range(pool)]
    runs: dict[str, list[list[Hit]]] = {"a": [], "b": [], "c": []}
    relevant = []
    for q in range(n_queries):
        for name, lists in runs.items():
            ids = rng.choice(pool, size=rng.integers(5, 40), replace=False)
            scores = np.sort(rng.integers(0, 8, size=len(ids)).astype(float))[::-1]  # many ties
            lists.append(
                [Hit(chunks[int(i)], float(s), "dot", name, r) for r, (i, s) in enumerate(zip(ids, scores), start=1)]
            )
        relevant.append(chunks[int(rng.integers(0, pool))].id if q % 7 else chunks[0].id)
    return CalibrationSet(
        tuple(f"q{q}" for q in range(n_queries)), tuple(relevant), runs, "test", 0, n_queries, 0, pool, 40
    )


def _reference(data: CalibrationSet, cand: FusionCandidate) -> tuple[float, float]:
    fuser = fuser_from_config(cand.config(list(data.runs)))
    ndcg = recall = 0.0
    for qi, target in enumerate(data.relevant):
        fused = fuser.fuse({n: data.runs[n][qi] for n in data.runs}, 10_000)
        ids = [h.chunk.id for h in fused]
        if target in ids:
            rank = ids.index(target) + 1
            ndcg += 1 / np.log2(rank + 1) if rank <= 10 else 0.0
            recall += rank <= data.candidates
    return ndcg / len(data), recall / len(data)


@pytest.mark.parametrize("kind", ["rrf", "minmax", "zscore"])
def test_vectorised_scores_match_the_real_fusers(kind: str) -> None:
    data = _random_set()
    cands = [c for c in candidate_set(3, methods=(kind,), rrf_ks=(10, 60)) if c.kind == kind][::7]
    assert len(cands) > 5
    for cand, got in zip(cands, score_candidates(data, cands, depth=data.candidates)):
        assert got == pytest.approx(_reference(data, cand), abs=1e-9), cand


def test_candidates_include_every_single_member_and_put_default_rrf_first() -> None:
    cands = candidate_set(3)
    assert cands[0] == FusionCandidate("rrf", (1.0, 1.0, 1.0), 60)
    for i in range(3):
        assert any(c.weights == tuple(1.0 if j == i else 0.0 for j in range(3)) for c in cands)
    assert len(cands) == len(set(cands))


def test_sample_chunks_takes_one_chunk_per_document_first_and_is_seeded() -> None:
    chunks = [_chunk(i, doc=f"d{i % 5}") for i in range(40)]
    first = sample_chunks(chunks, 5, seed=3)
    assert len({c.doc_id for c in first}) == 5
    assert [c.id for c in sample_chunks(chunks, 12, seed=3)] == [c.id for c in sample_chunks(chunks, 12, seed=3)]
    assert [c.id for c in sample_chunks(chunks, 12, seed=3)] != [c.id for c in sample_chunks(chunks, 12, seed=4)]
    assert len(sample_chunks(chunks, 100, seed=0)) == 40


def test_salient_span_queries_are_seeded_and_come_from_the_chunk() -> None:
    text = (
        "Magnesium supplements lowered nocturnal leg cramps in pregnant women. The randomized trial enrolled "
        "eighty participants across three clinics. Placebo groups reported no change."
    )
    chunks = [_chunk(i, text=text) for i in range(20)]
    gen = SalientSpanQueries(min_words=3, max_words=6)
    queries = gen.generate(chunks, seed=7)
    assert queries == gen.generate(chunks, seed=7)
    words = set(text.replace(".", " ").split())
    for query in queries:
        assert query is not None and 1 <= len(query.split()) <= 6
        assert set(query.split()) <= words
    assert gen.generate([_chunk(0, text="of an")], seed=0) == [None]
    with pytest.raises(ConfigError):
        SalientSpanQueries(min_words=5, max_words=2)


def test_llm_queries_through_an_openai_compatible_endpoint() -> None:
    from ragloom.adapters.generators.openai_http import OpenAICompatibleGenerator

    with FakeOpenAIServer() as server:
        server.script(
            Reply(content="Question: What lowers leg cramps in pregnancy?\n(extra words)"),
            Reply(content="   "),
            Reply(kind="status", status=400),
        )
        with OpenAICompatibleGenerator("fake", base_url=server.base_url, max_retries=0) as gen:
            queries = LLMQueries(gen).generate([_chunk(i, text="Magnesium and cramps.") for i in range(3)], 0)
        assert "Magnesium and cramps." in server.requests[0].body["messages"][0]["content"]
    assert queries == ["What lowers leg cramps in pregnancy?", None, None]
    with pytest.raises(ConfigError, match="needs a generator"):
        pseudo_query_generator("llm")


def test_fit_is_deterministic_holds_out_queries_and_stores_its_provenance() -> None:
    data = _random_set(n_queries=80)
    one, two = fit_calibration(data, holdout=0.25), fit_calibration(data, holdout=0.25)
    assert one.config["weights"] == two.config["weights"] and one.report.chosen == two.report.chosen
    report = one.report
    assert (report.fit_queries, report.holdout_queries, report.sample_size) == (60, 20, 80)
    assert set(report.baselines) == {"rrf k=60 (equal weights)", "a alone", "b alone", "c alone"}
    stored = one.config["calibration"]
    assert stored["seed"] == 0 and stored["generator"] == "test" and stored["fit_score"] == round(report.fit_score, 4)
    rebuilt = fuser_from_config(one.config)  # the extra provenance key does not disturb the fuser
    assert fuser_to_config(rebuilt)["weights"] == one.config["weights"]


def test_a_tiny_index_raises_a_typed_error() -> None:
    from ragloom.adapters.sparse import BM25Retriever

    a, b = BM25Retriever(name="a"), BM25Retriever(name="b")
    docs = [Document(id=f"d{i}", text=f"short note number {i} about apples") for i in range(5)]
    for r in (a, b):
        r.add(docs)
    with pytest.raises(IndexTooSmallError, match="5 chunks"):
        calibrate([a, b])
    with pytest.raises(ConfigError, match="two retrievers"):
        calibrate([a])


def test_router_round_trips_and_reweights_per_query() -> None:
    data = _random_set(n_queries=80)
    routed = fit_router(fit_calibration(data), holdout=0.3)
    assert isinstance(routed.fuser, RoutedFusion)
    assert routed.config["kind"] == "routed" and "calibration" in routed.config
    again = fuser_from_config(routed.config)
    assert isinstance(again, RoutedFusion) and again.models == routed.fuser.models
    results = {n: data.runs[n][0] for n in data.runs}
    assert route_features(results, list(results)).shape == (3, 5)
    assert again.fuse(results, 10) == routed.fuser.fuse(results, 10)
    rule = RoutedFusion({"kind": "rrf", "k": 60}, {"a": [1, 0, 0, 0, 0], "b": [0.1, 0, 0, 0, 0]}, gamma=1.0)
    weights = rule.weights_for({"a": data.runs["a"][0], "b": data.runs["b"][0]})
    assert weights["a"] == pytest.approx(1.0) and weights["b"] == pytest.approx(0.1)
    with pytest.raises(ConfigError, match="features"):
        fuser_from_config({**routed.config, "features": ["x"]})


# -- the synthetic set where dense retrieval collapses ------------------------------------------------------------
@pytest.fixture(scope="module")
def profile_pipeline(tiny_bert_dir: Path) -> Iterator[tuple[Pipeline, dict[str, set[str]]]]:
    from ragloom.adapters.dense import DenseRetriever, TransformersDenseEncoder
    from ragloom.adapters.sparse import BM25Retriever

    dense = DenseRetriever(TransformersDenseEncoder(tiny_bert_dir, dtype="float32"), name="dense")  # random weights
    bm25 = BM25Retriever(chunker=dense.chunker, name="bm25")
    docs, fans = profile_documents()
    pipeline = Pipeline([dense, bm25], candidates=20)
    pipeline.ingest(docs)
    yield pipeline, fans
    pipeline.close()


def _recall_at_2(hits_for: dict[str, list[Hit]], fans: dict[str, set[str]]) -> float:
    return float(np.mean([len({h.chunk.doc_id for h in hits_for[h_][:2]} & fans[h_]) / 2 for h_ in fans]))


def test_calibration_keeps_bm25_recall_where_dense_collapses(
    profile_pipeline: tuple[Pipeline, dict[str, set[str]]],
) -> None:
    """A random dense model: the grid strategy (weights fitted on spans) keeps BM25's recall@2 within 0.02; the
    robust default keeps equal weights (a random encoder still matches tokens, so on pseudo-queries it looks
    like a weaker real one) and beats equal-weight RRF. With real MiniLM equal min-max keeps BM25's recall@2
    (benchmarks/hybrid_profiles.py)."""
    pipeline, fans = profile_pipeline
    queries = {hobby: f"Who likes {hobby}?" for hobby in fans}
    bm25 = pipeline.retrievers[1]
    alone = _recall_at_2({h: bm25.search(q, 2) for h, q in queries.items()}, fans)
    pipeline.fuser = fuser_from_config({"kind": "rrf", "k": 60})
    rrf = _recall_at_2({h: pipeline.retrieve(q, k=2) for h, q in queries.items()}, fans)
    progress: list[tuple[int, int]] = []
    result = pipeline.calibrate(
        "spans", sample=46, seed=0, strategy="grid", progress=lambda d, t: progress.append((d, t))
    )
    assert pipeline.fuser is result.fuser
    calibrated = _recall_at_2({h: pipeline.retrieve(q, k=2) for h, q in queries.items()}, fans)
    assert alone > 0.9 and rrf < alone - 0.1  # equal-weight RRF throws BM25's lead away
    assert calibrated >= alone - 0.02, (alone, rrf, calibrated, result.report)
    assert result.report.sample_size == 46 and progress[-1][0] == progress[-1][1]
    assert result.config["weights"]["bm25"] > result.config["weights"]["dense"]
    again = pipeline.calibrate("spans", sample=46, seed=0, strategy="grid", apply=False)
    assert again.config == {
        **result.config,
        "calibration": {**again.config["calibration"], "seconds": again.config["calibration"]["seconds"]},
    }


def test_robust_calibration_keeps_equal_weights_and_beats_rrf(
    profile_pipeline: tuple[Pipeline, dict[str, set[str]]],
) -> None:
    pipeline, fans = profile_pipeline
    queries = {hobby: f"Who likes {hobby}?" for hobby in fans}
    pipeline.fuser = fuser_from_config({"kind": "rrf", "k": 60})
    rrf = _recall_at_2({h: pipeline.retrieve(q, k=2) for h, q in queries.items()}, fans)
    robust = pipeline.calibrate("spans", sample=60, seed=0)
    equal = _recall_at_2({h: pipeline.retrieve(q, k=2) for h, q in queries.items()}, fans)
    assert set(robust.config["weights"].values()) == {1.0} and robust.config["kind"] in ("minmax", "zscore", "rrf")
    assert robust.report.sample_size == 60 and robust.report.generator.startswith("keywords: salient-spans")
    assert equal > rrf + 0.1, (rrf, equal, robust.report)
    with pytest.raises(ConfigError, match="strategy"):
        pipeline.calibrate(strategy="labels")


def test_pipeline_calibrate_can_route(profile_pipeline: tuple[Pipeline, dict[str, set[str]]]) -> None:
    pipeline, _ = profile_pipeline
    before = pipeline.fuser
    result = pipeline.calibrate(sample=46, route=True, apply=False)
    assert pipeline.fuser is before
    assert isinstance(result.fuser, RoutedFusion) and result.report.chosen.startswith("routed")
    hits = pipeline.retrieve("Who likes chess?", k=2)
    assert hits
