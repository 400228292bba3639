"""``ragloom tune`` and ``ragloom eval --tune`` on tiny models: the fitted fusion is stored in the index and used
when the index is reopened; dry runs, one-retriever and too-small indexes are clear errors."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ragloom.recipes.cli import app
from ragloom.recipes.config import IndexSpec, open_pipeline
from ragloom.recipes.hybrid_docqa import build_hybrid, hybrid_spec
from ragloom.types import Document

runner = CliRunner()
TOPICS = "galaxy telescope quasar bread dough oven court statute contract volcano lava glacier".split()


def _docs(n: int) -> list[Document]:
    rng = random.Random(0)
    docs = []
    for i in range(n):
        words = rng.sample(TOPICS, 4)
        docs.append(Document(id=f"doc{i}", text=f"Note {i} about {' and '.join(words)}. The {words[0]} was {i}."))
    return docs


def _index(tmp_path: Path, tiny_bert_dir: Path, n: int, name: str = "idx") -> Path:
    index = tmp_path / name
    spec = hybrid_spec(dense=str(tiny_bert_dir), splade=None, bm25=True, chunk_size=24)
    with build_hybrid(index, spec=spec) as pipeline:
        pipeline.ingest(_docs(n))
    return index


def test_tune_stores_the_fitted_fusion_and_reopening_uses_it(tmp_path: Path, tiny_bert_dir: Path) -> None:
    index = _index(tmp_path, tiny_bert_dir, 40)
    before = (index / "ragloom.json").read_text()
    dry = runner.invoke(app, ["tune", "--index", str(index), "--sample", "40", "--dry-run", "--offline"])
    assert dry.exit_code == 0, dry.output
    assert "Calibrated" in dry.output and "held out" in dry.output
    assert (index / "ragloom.json").read_text() == before, "a dry run writes nothing"

    result = runner.invoke(app, ["tune", "--index", str(index), "--sample", "40", "--seed", "3", "--json", "--offline"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    fusion = IndexSpec.load(index).fusion
    assert payload["written"] and fusion == payload["fusion"]
    assert fusion["calibration"]["seed"] == 3 and fusion["calibration"]["sample_size"] == 40
    assert fusion["calibration"]["generator"].startswith("keywords: salient-spans")
    assert set(fusion["weights"]) == {"dense", "bm25"}
    with open_pipeline(index) as pipeline:
        assert dict(pipeline.fuser.weights) == fusion["weights"]  # type: ignore[union-attr]

    routed = runner.invoke(app, ["tune", "--index", str(index), "--sample", "40", "--route", "--json", "--offline"])
    assert routed.exit_code == 0, routed.output
    assert IndexSpec.load(index).fusion["kind"] == "routed"
    with open_pipeline(index) as pipeline:
        assert type(pipeline.fuser).__name__ == "RoutedFusion"
        assert pipeline.retrieve("galaxy telescope", k=2)


def test_tune_errors_are_clear(tmp_path: Path, tiny_bert_dir: Path) -> None:
    small = _index(tmp_path, tiny_bert_dir, 6, "small")
    result = runner.invoke(app, ["tune", "--index", str(small), "--offline"])
    assert result.exit_code == 2 and "chunks; calibrating fusion needs at least 20" in result.output
    single = tmp_path / "single"
    ingest = ["ingest", str(tmp_path), "--index", str(single), "--model", str(tiny_bert_dir), "--store", "memory"]
    (tmp_path / "a.txt").write_text("a short note about bread")
    assert runner.invoke(app, [*ingest, "--include", "*.txt", "--offline"]).exit_code == 0
    result = runner.invoke(app, ["tune", "--index", str(single), "--offline"])
    assert result.exit_code == 2 and "one retriever" in result.output


def _beir(folder: Path, n: int) -> Path:
    (folder / "qrels").mkdir(parents=True)
    docs = _docs(n)
    with open(folder / "corpus.jsonl", "w", encoding="utf-8") as handle:
        for doc in docs:
            handle.write(json.dumps({"_id": doc.id, "title": "", "text": doc.text}) + "\n")
    with open(folder / "queries.jsonl", "w", encoding="utf-8") as handle:
        for i in range(5):
            handle.write(json.dumps({"_id": f"q{i}", "text": docs[i].text.split(".")[0]}) + "\n")
    rows = ["query-id\tcorpus-id\tscore"] + [f"q{i}\tdoc{i}\t1" for i in range(5)]
    (folder / "qrels" / "test.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return folder


def test_eval_tune_calibrates_on_the_corpus_then_scores_the_qrels(tmp_path: Path, tiny_bert_dir: Path) -> None:
    data = _beir(tmp_path / "beir", 30)
    args = [
        "eval",
        str(data),
        "-r",
        "dense",
        "-r",
        "bm25",
        "--model",
        str(tiny_bert_dir),
        "--model",
        str(tiny_bert_dir),
    ]
    result = runner.invoke(app, [*args, "--chunk-size", "24", "--tune", "--json", "--offline"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["fusion"]["calibration"]["sample_size"] >= 30  # one pseudo-query per chunk (76 chunks)
    assert "calibrated:" in payload["retrievers"]
    assert 0.0 <= payload["metrics"]["nDCG@10"] <= 1.0
    both = runner.invoke(app, [*args, "--tune", "--fit-split", "test", "--offline"])
    assert both.exit_code == 2 and "choose one" in both.output


@pytest.mark.parametrize("mode", ["average", "passage"])
def test_hyde_searches_the_wrapped_index_with_a_generated_passage(
    tmp_path: Path, tiny_bert_dir: Path, tiny_llm_dir: Path, mode: str
) -> None:
    import numpy as np

    from ragloom.adapters.dense import DenseRetriever, TransformersDenseEncoder
    from ragloom.adapters.generators.local import TransformersGenerator
    from ragloom.hyde import HydeRetriever

    dense = DenseRetriever(TransformersDenseEncoder(tiny_bert_dir, dtype="float32"), name="dense")
    generator = TransformersGenerator(tiny_llm_dir, max_new_tokens=8)
    hyde = HydeRetriever(dense, generator, mode=mode)  # type: ignore[arg-type]
    hyde.add(_docs(10))
    assert hyde.name == "dense" and len(hyde) == len(dense) and hyde.chunks()
    query = "galaxy telescope"
    passage = hyde.passage(query)
    vector = hyde.query_vector(query)
    q = dense.encoder.encode_queries([query])[0]
    p = dense.encoder.encode_documents([passage])[0] if passage else q
    expected = p if mode == "passage" else (q + p) / np.linalg.norm(q + p)
    np.testing.assert_allclose(vector, expected / np.linalg.norm(expected), atol=1e-5)
    hits = hyde.search(query, 3)
    assert [h.retriever for h in hits] == ["dense"] * 3 and hits[0].explanation == "hyde"
    assert [h.chunk.id for h in hits] == [c.id for c, _ in dense.store.search(vector[None, :], 3)[0]]
