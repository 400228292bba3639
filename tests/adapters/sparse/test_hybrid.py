"""Hybrid search: dense + SPLADE + BM25 over identical chunk ids, fused through Pipeline; fitted fusion weights
saved with the index; the splade/bm25 builders behind ``ragloom eval``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragloom.adapters.dense import DenseRetriever, TransformersDenseEncoder
from ragloom.adapters.sparse import BM25Retriever, SparseRetriever, SpladeEncoder, tokenizer_chunker
from ragloom.eval import load_beir
from ragloom.fusion import ReciprocalRankFusion
from ragloom.pipeline import Pipeline
from ragloom.recipes.config import IndexSpec, RetrieverSpec, build_retriever, open_pipeline
from ragloom.recipes.hybrid_docqa import build_hybrid, compare_fusions, fit_fusion, hybrid_spec, main, save_fusion
from ragloom.testing import CONTRACT_DOCUMENTS

QUERIES = {
    "q1": ("distant galaxy quasars", "astro"),
    "q2": ("bread dough kitchen", "bake"),
    "q3": ("court statute contracts", "law"),
    "q4": ("volcanoes lava", "paged"),
    "q5": ("glaciers carving valleys", "paged"),
    "q6": ("café", "unicode"),
}


@pytest.fixture()
def beir_dir(tmp_path: Path) -> Path:
    """A tiny BEIR folder over the contract documents (train and test qrels)."""
    folder = tmp_path / "beir"
    (folder / "qrels").mkdir(parents=True)
    with open(folder / "corpus.jsonl", "w", encoding="utf-8") as handle:
        for doc in CONTRACT_DOCUMENTS:
            handle.write(json.dumps({"_id": doc.id, "title": "", "text": doc.text}, ensure_ascii=False) + "\n")
    with open(folder / "queries.jsonl", "w", encoding="utf-8") as handle:
        for qid, (text, _) in QUERIES.items():
            handle.write(json.dumps({"_id": qid, "text": text}) + "\n")
    for split, ids in (("train", ["q1", "q2", "q3", "q4"]), ("test", ["q5", "q6"])):
        rows = ["query-id\tcorpus-id\tscore"] + [f"{q}\t{QUERIES[q][1]}\t1" for q in ids]
        (folder / "qrels" / f"{split}.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return folder


@pytest.fixture()
def members(tiny_bert_dir: Path, lexical_splade_dir: Path) -> list:  # type: ignore[type-arg]
    dense = DenseRetriever(TransformersDenseEncoder(tiny_bert_dir), chunk_size=24, overlap=4)
    splade = SparseRetriever(SpladeEncoder(lexical_splade_dir), chunk_size=24, overlap=4)
    bm25 = BM25Retriever(chunker=tokenizer_chunker(tiny_bert_dir, chunk_size=24, overlap=4))
    return [dense, splade, bm25]


def test_members_share_chunk_ids_and_fuse_exactly(members) -> None:  # type: ignore[no-untyped-def]
    text = " ".join(f"Sentence {i} talks about galaxy {i} and lava flows." for i in range(30))
    documents = [*CONTRACT_DOCUMENTS, CONTRACT_DOCUMENTS[0].__class__(id="long", text=text)]
    ids = [[c.id for c in retriever.add(documents)] for retriever in members]
    assert ids[0] == ids[1] == ids[2] and len(ids[0]) > len(documents)
    pipeline = Pipeline(members, k=3, candidates=10)
    hits = pipeline.retrieve("telescope quasars lensing")
    assert hits[0].chunk.doc_id == "astro" and hits[0].retriever == "fusion"
    assert {"dense#", "splade#", "bm25#"} <= {part.split("#")[0] + "#" for part in hits[0].explanation.split(" + ")}


def test_fitted_weights_are_saved_with_the_index(members, beir_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    for retriever in members:
        retriever.add(list(CONTRACT_DOCUMENTS))
    train = load_beir(beir_dir, "train")
    fit = fit_fusion(members, train, kind="rrf", grid=(0.0, 1.0, 2.0))
    assert fit.config["kind"] == "rrf" and set(fit.config["weights"]) == {"dense", "splade", "bm25"}
    assert fit.ndcg >= fit.equal_weights_ndcg and fit.queries == 4
    IndexSpec().save(tmp_path)
    spec = save_fusion(tmp_path, fit.config)
    assert IndexSpec.load(tmp_path).fusion == spec.fusion == fit.config
    rows = compare_fusions(members, load_beir(beir_dir, "test"), fit=train, kinds=["rrf"])
    assert [r["system"] for r in rows][:4] == ["dense", "splade", "bm25", "rrf (equal weights)"]
    assert len(rows) == 5 and all(0.0 <= r["nDCG@10"] <= 1.0 for r in rows)


def test_hybrid_index_reopens_with_its_models_and_fusion(
    tiny_bert_dir: Path, lexical_splade_dir: Path, tmp_path: Path
) -> None:
    spec = hybrid_spec(
        dense=str(tiny_bert_dir),
        splade=str(lexical_splade_dir),
        chunk_size=24,
        fusion={"kind": "rrf", "k": 60, "weights": {"dense": 0.5, "splade": 1.0, "bm25": 2.0}},
    )
    with build_hybrid(tmp_path / "idx", spec=spec) as pipeline:
        assert [r.name for r in pipeline.retrievers] == ["dense", "splade", "bm25"]
        report = pipeline.ingest(list(CONTRACT_DOCUMENTS))
        assert len(set(report.chunks.values())) == 1, "one chunking for every retriever"
        first = [(h.chunk.id, round(h.score, 6)) for h in pipeline.retrieve("bread dough rise", k=3)]
    with open_pipeline(tmp_path / "idx") as reopened:
        assert isinstance(reopened.fuser, ReciprocalRankFusion)
        assert reopened.fuser.weights == {"dense": 0.5, "splade": 1.0, "bm25": 2.0}
        assert [(h.chunk.id, round(h.score, 6)) for h in reopened.retrieve("bread dough rise", k=3)] == first


def test_builders_for_ragloom_eval(tiny_bert_dir: Path, lexical_splade_dir: Path, tmp_path: Path) -> None:
    splade = build_retriever(
        RetrieverSpec("splade", "splade", str(lexical_splade_dir), "memory", 24, 4, {"query_top_k": 8}), tmp_path
    )
    bm25 = build_retriever(RetrieverSpec("bm25", "bm25", str(tiny_bert_dir), "memory", 24, 4, {"k1": 1.2}), tmp_path)
    assert isinstance(splade, SparseRetriever) and splade.encoder.fingerprint["query_top_k"] == 8
    assert isinstance(bm25, BM25Retriever) and bm25.fingerprint["k1"] == 1.2 and bm25.chunker.chunk_size == 24
    assert splade.path == tmp_path / "splade" and bm25.path == tmp_path / "bm25"


def test_recipe_eval_command(
    tiny_bert_dir: Path, lexical_splade_dir: Path, beir_dir: Path, tmp_path: Path, capsys
) -> None:  # type: ignore[no-untyped-def]
    main(
        [
            "eval",
            str(beir_dir),
            "--index",
            str(tmp_path / "idx"),
            "--fit-split",
            "train",
            "--chunk-size",
            "24",
            "-r",
            "splade",
            "-r",
            "bm25",
            "--model",
            str(lexical_splade_dir),
            "--model",
            str(tiny_bert_dir),
            "--fusion",
            "rrf",
        ]
    )
    out = capsys.readouterr().out
    assert "| splade |" in out and "| bm25 |" in out and "rrf (weights fitted on 4 other queries)" in out


def test_every_member_lists_its_live_chunks_for_calibration(members, tiny_bert_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    chroma = DenseRetriever(
        TransformersDenseEncoder(tiny_bert_dir), tmp_path / "chroma", store="chroma", chunk_size=24, overlap=4
    )
    everyone = [*members, chroma]
    for retriever in everyone:
        retriever.add(CONTRACT_DOCUMENTS)
        retriever.delete([CONTRACT_DOCUMENTS[0].id])
    listed = [sorted((c.id, c.text) for c in retriever.chunks()) for retriever in everyone]
    assert listed[0] and all(other == listed[0] for other in listed[1:])
    assert CONTRACT_DOCUMENTS[0].id not in {c.doc_id for c in members[1].chunks()}
    chroma.close()
