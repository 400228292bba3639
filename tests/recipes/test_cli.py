"""The ragloom CLI end to end on tiny models: ingest, search, ask, eval, models, error paths."""

from __future__ import annotations

import gzip
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
    (folder / "broken.pdf").write_bytes(b"%PDF-1.7 truncated garbage")
    return folder


def test_ingest_search_ask(tmp_path: Path, docs: Path, tiny_bert_dir: Path, tiny_llm_dir: Path) -> None:
    index = tmp_path / "index"
    result = runner.invoke(
        app,
        ["ingest", str(docs), "--index", str(index), "--model", str(tiny_bert_dir), "--store", "memory", "--offline"],
    )
    assert result.exit_code == 0, result.output
    assert "Indexed 2 documents" in result.output
    assert "broken.pdf" in result.output, "the bad file is reported"
    spec = json.loads((index / "ragloom.json").read_text())
    assert spec["retrievers"][0]["model"] == str(tiny_bert_dir)
    assert (index / "dense" / "manifest.json").exists()
    again = runner.invoke(app, ["ingest", str(docs), "--index", str(index), "--offline"])
    assert again.exit_code == 0, again.output
    assert "Indexed 0 documents" in again.output and "2 unchanged" in again.output
    assert not re.search(r"\d docs/(s|min|h)", again.output), "no indexing rate when nothing was indexed"
    options = ["--fusion", "rrf", "--per-chunk"]  # not silently ignored: the index keeps its own
    refused = runner.invoke(app, ["ingest", str(docs), "--index", str(index), "--offline", *options])
    said = " ".join(refused.output.split())
    assert refused.exit_code == 2 and "--fusion rrf (the index has minmax)" in said, refused.output
    assert "--per-page/--per-chunk chunk (the index has page)" in said and "ragloom tune" in said

    result = runner.invoke(
        app, ["search", "distant galaxy cluster", "--index", str(index), "-k", "1", "--json", "--offline"]
    )
    assert result.exit_code == 0, result.output
    hits = json.loads(result.stdout)
    assert hits[0]["doc_id"] == "space.txt" and hits[0]["rank"] == 1

    result = runner.invoke(
        app,
        [
            "ask",
            "What did the telescope observe?",
            "--index",
            str(index),
            "--llm",
            str(tiny_llm_dir),
            "--json",
            "--offline",
            "-k",
            "2",
        ],
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert set(payload) >= {"answer", "citations", "context", "timings", "citations_inferred", "verdict", "support"}
    assert len(payload["context"]) == 2
    assert payload["verdict"] in ("supported", "partly", "unsupported", "declined")
    assert payload["support"]["verdict"] == payload["verdict"]
    # on the terminal: the verdict line (on stderr, so --json stays parseable)
    shown = runner.invoke(
        app, ["ask", "What did the telescope observe?", "--index", str(index), "--llm", str(tiny_llm_dir), "--offline"]
    )
    assert shown.exit_code == 0, shown.output
    assert f"verdict: {payload['verdict']}" in shown.output
    extractive = runner.invoke(
        app,
        ["ask", "What did the telescope observe?", "--index", str(index), "--generator", "extractive", "--json"],
    )
    assert extractive.exit_code == 0, extractive.output
    answer = json.loads(extractive.stdout)
    assert answer["verdict"] in ("supported", "partly", "declined")
    assert answer["verdict"] == "declined" or "[" in answer["answer"]  # verbatim sentences, cited


def test_ask_without_index_is_a_clear_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["ask", "anything", "--index", str(tmp_path / "nope"), "--offline"])
    assert result.exit_code == 2
    assert "not a ragloom index" in result.output


def test_unknown_model_lists_what_was_tried(tmp_path: Path, docs: Path) -> None:
    result = runner.invoke(
        app, ["ingest", str(docs), "--index", str(tmp_path / "i"), "--model", "no-such-model", "--offline"]
    )
    assert result.exit_code == 2
    assert "could not be found" in result.output and "Tried" in result.output


def _tiny_beir(folder: Path) -> Path:
    (folder / "qrels").mkdir(parents=True)
    corpus = [
        {"_id": "d1", "title": "Galaxies", "text": "The telescope observed a distant galaxy cluster."},
        {"_id": "d2", "title": "Bread", "text": "Knead the dough and let the bread rise in a warm kitchen."},
        {"_id": "d3", "title": "Law", "text": "The court held that the statute did not apply retroactively."},
    ]
    with gzip.open(folder / "corpus.jsonl.gz", "wt") as handle:
        handle.writelines(json.dumps(d) + "\n" for d in corpus)
    queries = [
        {"_id": "q1", "text": "The telescope observed a distant galaxy cluster."},
        {"_id": "q2", "text": "Knead the dough and let the bread rise in a warm kitchen."},
    ]
    (folder / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t1\n")
    return folder


def test_eval_reports_metrics(tmp_path: Path, tiny_bert_dir: Path) -> None:
    data = _tiny_beir(tmp_path / "beir")
    result = runner.invoke(app, ["eval", str(data), "--model", str(tiny_bert_dir), "--json", "--offline"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["queries"] == 2 and payload["documents"] == 3
    assert payload["metrics"]["nDCG@10"] == pytest.approx(1.0), "exact-text queries rank their document first"
    assert set(payload["metrics"]) == {"nDCG@10", "Recall@100", "MRR@10"}


def test_models_list() -> None:
    result = runner.invoke(app, ["models", "list"])
    assert result.exit_code == 0, result.output
    assert "minilm" in result.output and "Apache-2.0" in result.output
