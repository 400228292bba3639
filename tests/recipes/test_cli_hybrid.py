"""`ragloom ingest -r ... -r ...`: one index, several retrievers, fused by search/ask/eval; progress and --quiet."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ragloom.recipes.cli import app

runner = CliRunner()


@pytest.fixture()
def docs(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "space.txt").write_text("The telescope observed a distant galaxy cluster bending light from quasars.")
    (folder / "bread.md").write_text("# Bread\n\nKnead the dough for ten minutes, then let the bread rise.")
    (folder / "court.txt").write_text("The court held the statute did not apply retroactively to contracts.")
    return folder


def _ingest(docs: Path, index: Path, *extra: str) -> object:
    return runner.invoke(app, ["ingest", str(docs), "--index", str(index), "--offline", *extra])


def test_hybrid_ingest_records_every_retriever_and_search_fuses_them(
    tmp_path: Path, docs: Path, tiny_bert_dir: Path, tiny_mlm_dir: Path
) -> None:
    index = tmp_path / "index"
    result = _ingest(
        docs,
        index,
        "-r", "dense", "-r", "splade", "-r", "bm25",
        "--model", f"dense={tiny_bert_dir}", "--model", f"splade={tiny_mlm_dir}",
        "--store", "memory", "--fusion-key", "page",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (
        "dense: 3 chunks" in result.output and "splade: 3 chunks" in result.output and "bm25: 3 chunks" in result.output
    )
    spec = json.loads((index / "ragloom.json").read_text())
    kinds = {r["kind"]: r for r in spec["retrievers"]}
    assert list(kinds) == ["dense", "splade", "bm25"]
    assert kinds["bm25"]["model"] == str(tiny_bert_dir), "BM25 chunks with the dense tokenizer"
    sizes = {r["chunk_size"] for r in spec["retrievers"]}
    assert sizes == {62}, "one chunk size for all (the tiny BERT's 64 positions less [CLS]/[SEP])"
    assert kinds["splade"]["store"] == "sparse" and kinds["bm25"]["store"] == "bm25s"
    assert spec["fusion"] == {"kind": "minmax", "key": "page"}
    assert spec["group_by"] == "page", "new indexes answer one hit per page (measured in benchmarks/page_grouping)"
    for name in ("dense", "splade", "bm25"):
        assert (index / name).is_dir()

    result = runner.invoke(app, ["search", "knead the dough", "--index", str(index), "-k", "3", "--json", "--offline"])
    assert result.exit_code == 0, result.output
    hits = json.loads(result.stdout)
    assert hits[0]["doc_id"] == "bread.md", "BM25 finds the exact words; fusion keeps it first"
    assert {h["doc_id"] for h in hits} == {"bread.md", "space.txt", "court.txt"}


def test_ingest_into_an_index_without_that_retriever_says_how_to_add_it(
    tmp_path: Path, docs: Path, tiny_bert_dir: Path
) -> None:
    index = tmp_path / "index"
    assert _ingest(docs, index, "--model", str(tiny_bert_dir), "--store", "memory", "-q").exit_code == 0
    result = _ingest(docs, index, "-r", "bm25")
    assert result.exit_code == 2
    assert "ragloom index add-retriever" in result.output and "-r bm25" in result.output


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["-r", "nosuch"], "Unknown retriever kind"),
        (["-r", "bm25", "-r", "bm25"], "given twice"),
        (["-r", "dense", "--model", "splade=x"], "no -r splade retriever"),
        (["-r", "dense", "-r", "bm25", "--fusion", "median"], "Unknown fusion kind"),
        (["-r", "dense", "--fusion-key", "doc"], "--fusion-key must be chunk or page"),
        (["-r", "dense", "--store", "bogus"], "Unknown store 'bogus'; use one of chroma, memory, binary"),
    ],
)
def test_bad_retriever_flags_are_typed_errors(tmp_path: Path, docs: Path, flags: list[str], message: str) -> None:
    result = _ingest(docs, tmp_path / "index", *flags)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not (tmp_path / "index").exists(), "nothing is written for a refused spec"


def test_non_tty_progress_lines_and_quiet(
    tmp_path: Path, docs: Path, tiny_bert_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAGLOOM_PROGRESS_INTERVAL", "0")
    flags = ("-r", "dense", "-r", "bm25", "--model", str(tiny_bert_dir), "--store", "memory")
    result = _ingest(docs, tmp_path / "a", *flags)
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("Indexing")]
    assert any(re.search(r"docs/(s|min|h)\b", line) and "/3 docs" in line for line in lines), result.stderr
    assert lines[-1].startswith("Indexing: 3 docs in"), "a closing line with the rate"
    assert re.search(r"chunks/(s|min|h)\b", result.stdout), result.stdout

    result = _ingest(docs, tmp_path / "b", *flags, "--quiet")
    assert result.exit_code == 0
    assert "Indexing" not in result.stderr


def test_search_per_page_flag_reaches_the_pipeline(tmp_path: Path, tiny_bert_dir: Path) -> None:
    from ragloom.types import Document, Page

    text = "Knead the dough. " * 40 + "The court held the statute. " * 40
    half = len("Knead the dough. " * 40)
    doc = Document(id="book.pdf", text=text, pages=(Page(1, 0, half), Page(2, half, len(text))))
    from ragloom.recipes.config import IndexSpec, RetrieverSpec, open_pipeline

    index = tmp_path / "index"
    spec = IndexSpec(retrievers=(RetrieverSpec(model=str(tiny_bert_dir), store="memory", chunk_size=16),))
    with open_pipeline(index, spec=spec) as pipeline:
        pipeline.ingest([doc])
    base = ["search", "knead the dough", "--index", str(index), "-k", "5", "--json", "--offline"]
    chunks = json.loads(runner.invoke(app, base).stdout)
    pages = json.loads(runner.invoke(app, [*base, "--per-page"]).stdout)
    assert len({(h["doc_id"], h["page"]) for h in chunks}) < len(chunks), "per chunk, pages repeat"
    assert len(pages) == 2 and sorted(h["page"] for h in pages) == [1, 2], "one hit per page"
    assert all(h["start"] < h["end"] and h["chunk_id"] for h in pages)


def test_ask_help_shows_the_citation_marker() -> None:
    result = runner.invoke(app, ["ask", "--help"])
    assert "citing them as [n]" in " ".join(result.output.split())


def test_add_retriever_indexes_the_stored_documents(tmp_path: Path, docs: Path, tiny_bert_dir: Path) -> None:
    index = tmp_path / "index"
    assert _ingest(docs, index, "--model", str(tiny_bert_dir), "--store", "memory", "-q").exit_code == 0
    (docs / "court.txt").unlink()  # add-retriever reads the index's document store, not the files
    result = runner.invoke(app, ["index", "add-retriever", str(index), "-r", "bm25", "--offline", "-q"])
    assert result.exit_code == 0, result.output
    assert "Added bm25 over 3 documents (bm25: 3 chunks)" in result.output
    spec = json.loads((index / "ragloom.json").read_text())
    dense, bm25 = spec["retrievers"]
    assert bm25["kind"] == "bm25" and bm25["model"] == str(tiny_bert_dir) == dense["model"]
    assert bm25["chunk_size"] == dense["chunk_size"], "the index's chunk size, so chunk ids match"

    search = ["search", "court statute", "--index", str(index), "-k", "3", "--json", "--offline"]
    hits = json.loads(runner.invoke(app, search).stdout)
    assert hits[0]["doc_id"] == "court.txt"
    from ragloom.recipes.config import open_pipeline

    with open_pipeline(index) as pipeline:
        assert [r.name for r in pipeline.retrievers] == ["dense", "bm25"]
        assert pipeline.retrievers[1].doc_ids() == pipeline.retrievers[0].doc_ids()
        assert hits[0]["chunk_id"] == pipeline.retrieve("court statute", k=1)[0].chunk.id
        assert "bm25#" in pipeline.retrieve("court statute", k=1)[0].explanation, "fused with the new retriever"

    again = runner.invoke(app, ["index", "add-retriever", str(index), "-r", "bm25", "--offline"])
    assert again.exit_code == 2 and "already in the index" in again.output


def test_eval_uses_the_retrievers_and_fuser_of_an_index(
    tmp_path: Path, tiny_bert_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gzip

    data = tmp_path / "beir"
    (data / "qrels").mkdir(parents=True)
    corpus = [
        {"_id": "d1", "title": "Galaxies", "text": "The telescope observed a distant galaxy cluster."},
        {"_id": "d2", "title": "Bread", "text": "Knead the dough and let the bread rise in a warm kitchen."},
    ]
    with gzip.open(data / "corpus.jsonl.gz", "wt") as handle:
        handle.writelines(json.dumps(d) + "\n" for d in corpus)
    (data / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "knead the dough"}) + "\n")
    (data / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td2\t1\n")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "note.txt").write_text("lava flows")
    index = tmp_path / "index"
    flags = ("-r", "dense", "-r", "bm25", "--model", str(tiny_bert_dir), "--store", "memory", "--fusion", "minmax")
    assert _ingest(empty, index, *flags, "-q").exit_code == 0
    monkeypatch.setenv("RAGLOOM_PROGRESS_INTERVAL", "0")
    result = runner.invoke(app, ["eval", str(data), "--index", str(index), "--json", "--offline"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)  # progress went to stderr: stdout is one JSON document
    assert payload["retrievers"].startswith("dense(") and " + bm25(" in payload["retrievers"]
    assert payload["fusion"]["kind"] == "minmax", "the index's fuser"
    assert payload["metrics"]["nDCG@10"] == pytest.approx(1.0)
    assert "Searching: 1 queries in" in result.stderr
