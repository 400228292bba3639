"""Index stats (bytes on disk / in RAM / memory-mapped per component) and ingest estimates, library and CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from ragloom.adapters.dense import DenseRetriever, TransformersDenseEncoder
from ragloom.errors import IndexCorruptError
from ragloom.recipes.stats_cli import dry_run, stats
from ragloom.stats import estimate_ingest, index_stats, retriever_stats
from ragloom.types import Document

DOCS = [Document(id=f"d{i}", text=f"document {i} says alpha beta gamma delta number {i} " * 6) for i in range(12)]


@pytest.fixture(scope="module")
def encoder(tiny_bert_dir: Path) -> TransformersDenseEncoder:
    return TransformersDenseEncoder(tiny_bert_dir, batch_size=4, dtype="float32")


def _component(found: object, name: str) -> object:
    return next(c for c in found.components if c.name == name)  # type: ignore[attr-defined]


def _binary_index(encoder: TransformersDenseEncoder, folder: Path, options: dict[str, Any]) -> tuple[Any, Any]:
    """A binary-store index of ``DOCS``: the live store's own stats, and ``retriever_stats`` read from its files."""
    with DenseRetriever(encoder, folder, store="binary", store_options=options, chunk_size=24) as retriever:
        retriever.add(DOCS)
        live = retriever.store.stats()
    return live, retriever_stats(folder)


def test_memory_and_compressed_indexes(tmp_path: Path, encoder: TransformersDenseEncoder) -> None:
    with DenseRetriever(encoder, tmp_path / "exact", store="memory", chunk_size=24) as exact:
        exact.add(DOCS)
        chunks = len(exact)
    found = retriever_stats(tmp_path / "exact")
    assert found.kind == "dense" and found.store == "memory" and found.chunks == chunks
    assert _component(found, "float32 matrix").ram == chunks * encoder.dim * 4  # type: ignore[attr-defined]
    assert found.disk == sum(p.stat().st_size for p in (tmp_path / "exact").rglob("*") if p.is_file())

    live, found = _binary_index(encoder, tmp_path / "bin", {"flush_rows": 8})
    assert found.store == "compressed binary+fp32"
    codes = _component(found, "first-stage codes")
    assert codes.ram == codes.disk > live["bytes_in_ram"]["codes"]  # type: ignore[attr-defined]  # .npy headers
    assert _component(found, "rescoring vectors").mapped >= live["bytes_memory_mapped"]  # type: ignore[attr-defined]
    tail = _component(found, "unflushed tail (float32, searched exactly)")
    assert tail.ram == live["tail_rows"] * encoder.dim * 4  # type: ignore[attr-defined]
    assert found.disk == sum(p.stat().st_size for p in (tmp_path / "bin").rglob("*") if p.is_file())

    # the three-stage store: its int8 codes are counted in RAM
    live, found = _binary_index(encoder, tmp_path / "three", {"flush_rows": 8, "middle": "int8"})
    assert found.store == "compressed binary+int8+fp32"
    middle = _component(found, "middle-stage int8 codes")
    assert middle.ram == middle.disk > live["bytes_in_ram"]["middle_codes"] > 0  # type: ignore[attr-defined]
    assert found.disk == sum(p.stat().st_size for p in (tmp_path / "three").rglob("*") if p.is_file())


def test_cli_stats_and_errors(tmp_path: Path, encoder: TransformersDenseEncoder) -> None:
    with DenseRetriever(encoder, tmp_path / "dense", store="int8", chunk_size=24) as retriever:
        retriever.add(DOCS[:3])
    (tmp_path / "ragloom.json").write_text(
        json.dumps({"format_version": 1, "retrievers": [{"name": "dense", "kind": "dense", "store": "int8"}]})
    )
    assert [s.name for s in index_stats(tmp_path)] == ["dense"]
    app = typer.Typer()
    app.command()(stats)
    result = CliRunner().invoke(app, [str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["retrievers"][0]["store"] == "compressed int8+fp32"
    assert data["total"]["bytes_on_disk"] == data["retrievers"][0]["bytes_on_disk"] > 0
    table = CliRunner().invoke(app, [str(tmp_path)], env={"COLUMNS": "200"})
    assert table.exit_code == 0 and "first-stage codes" in table.output
    with pytest.raises(IndexCorruptError, match="ragloom index"):
        index_stats(tmp_path / "dense" / "compressed")
    bad = CliRunner().invoke(app, [str(tmp_path / "nowhere")])
    assert bad.exit_code == 2


def test_estimates_scale_with_text_and_settings(tmp_path: Path) -> None:
    specs = [
        {"name": "exact", "store": "memory", "dim": 384, "chunk_size": 256, "overlap": 32},
        {"name": "binary", "store": "binary", "dim": 384, "chunk_size": 256, "overlap": 32},
        {"name": "splade", "kind": "splade", "store": "sparse", "chunk_size": 256, "overlap": 32},
    ]
    exact, binary, splade = estimate_ingest(4_200_000 * 256, 1_000_000, specs)  # ~1M chunks of 256 tokens
    assert 1_000_000 <= exact.chunks <= 1_200_000 and binary.chunks == exact.chunks
    assert _component(exact, "float32 matrix").ram == exact.chunks * 384 * 4  # type: ignore[attr-defined]
    assert _component(binary, "first-stage codes").ram == binary.chunks * 48  # type: ignore[attr-defined]
    assert binary.ram * 8 < exact.ram and binary.mapped == exact.chunks * 384 * 4
    assert splade.ram > 0 and all(c.estimated for c in splade.components)
    (staged,) = estimate_ingest(4_200_000 * 256, 1_000_000, [{**specs[1], "middle": "int8"}])
    assert _component(staged, "middle-stage int8 codes").ram == staged.chunks * 384  # type: ignore[attr-defined]

    folder = tmp_path / "docs"
    folder.mkdir()
    for doc in DOCS:
        (folder / f"{doc.id}.txt").write_text(doc.text)
    app = typer.Typer()
    app.command()(dry_run)
    result = CliRunner().invoke(app, [str(folder), "--index", str(tmp_path / "new"), "--store", "binary", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["retrievers"][0]["store"] == "binary" and data["retrievers"][0]["chunks"] >= len(DOCS)
    assert not (tmp_path / "new").exists()  # a dry run writes nothing


def test_ingest_dry_run_estimates_every_retriever_and_writes_nothing(tmp_path: Path) -> None:
    from ragloom.recipes.cli import app

    folder = tmp_path / "docs"
    folder.mkdir()
    for doc in DOCS:
        (folder / f"{doc.id}.txt").write_text(doc.text)
    index = tmp_path / "new"
    result = CliRunner().invoke(
        app, ["ingest", str(folder), "--index", str(index), "-r", "bm25", "--dry-run"], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    assert f"estimate for {len(DOCS)} documents" in result.output and "bm25 (bm25, bm25s" in result.output
    assert not index.exists()  # a dry run writes nothing
