"""Acknowledged documents are never lost, and an index folder is data, never code — driven from outside.

Each test runs the real ``ragloom`` command in subprocesses (real SIGKILL and SIGINT at named write steps, real
hostile files in the index folder) over a 30-file corpus, and checks what a user would: ``ragloom index verify``
and ``ragloom search`` see every acknowledged document.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

RAGLOOM = str(Path(sys.executable).parent / "ragloom")
WORDS = "lava glaciers galaxy bread court statute telescope valley dough kitchen quasar contract".split()


def _corpus(folder: Path, n: int = 30, version: int = 1) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        words = " ".join(WORDS[(i + j) % len(WORDS)] for j in range(6))
        (folder / f"doc{i:02d}.txt").write_text(f"Document {i} version {version}: {words}.\n", encoding="utf-8")
    return folder


def _run(*args: str, env: dict[str, str] | None = None, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run(
        [RAGLOOM, *args],
        check=False,
        capture_output=True,
        text=True,
        env=full,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def _verify(index: Path) -> dict[str, Any]:
    """What `ragloom index verify --json` prints (run in this process: the CLI test below runs the command)."""
    from ragloom.recipes.index_maintenance import verify_index

    return verify_index(index).to_dict()


def _held(report: dict[str, Any]) -> list[int]:
    return [r["documents"] for r in report["retrievers"]]


@pytest.fixture
def built(tmp_path: Path, tiny_bert_dir: Path) -> tuple[Path, Path]:
    """A 30-document hybrid index (dense in memory + BM25) built by the CLI."""
    docs = _corpus(tmp_path / "docs")
    index = tmp_path / "index"
    from ragloom.recipes.config import IndexSpec, RetrieverSpec

    index.mkdir()
    IndexSpec(
        retrievers=(
            RetrieverSpec(name="dense", kind="dense", model=str(tiny_bert_dir), store="memory"),
            RetrieverSpec(name="bm25", kind="bm25", model=str(tiny_bert_dir)),
        )
    ).save(index)
    done = _run("ingest", str(docs), "--index", str(index), "--offline")
    assert done.returncode == 0, done.stderr
    report = _verify(index)
    assert report["ok"] and report["acknowledged"] == 30 and _held(report) == [30, 30], report
    return docs, index


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_interrupted_recovery_and_ctrl_c_never_delete(built: tuple[Path, Path]) -> None:
    """Items 1 and 3: a re-ingest killed after its journal, then a recovery killed mid-replay, then a re-ingest
    stopped by Ctrl-C: every acknowledged document stays in every retriever at every point, and the next writer
    finishes the batch."""
    docs, index = built
    _corpus(docs, version=2)  # every file edited: the whole batch is re-encoded
    killed = _run("ingest", str(docs), "--index", str(index), "--offline", env={"RAGLOOM_CRASH_AT": "pipeline.added:1"})
    assert killed.returncode == -signal.SIGKILL
    report = _verify(index)
    assert report["pending_write"] and _held(report) == [30, 30], report
    search = _run("search", "lava glaciers", "--index", str(index), "--offline", "--json")  # a reader: no recovery
    assert search.returncode == 0, search.stderr
    assert _verify(index)["pending_write"]
    for step in ("pipeline.added:1", "docstore.put:1"):  # the recovery itself killed, thrice
        again = _run("index", "recover", str(index), "--offline", env={"RAGLOOM_CRASH_AT": step})
        assert again.returncode == -signal.SIGKILL, (step, again.stderr)
        assert _held(_verify(index)) == [30, 30]
    finished = _run("index", "recover", str(index), "--offline")
    assert finished.returncode == 0 and "30 document" in finished.stdout, finished.stderr
    report = _verify(index)
    assert report["ok"] and _held(report) == [30, 30], report
    # Ctrl-C during a re-ingest of an indexed corpus (a real SIGINT, at the step after the first retriever)
    _corpus(docs, version=3)
    stopped = _run(
        "ingest",
        str(docs),
        "--index",
        str(index),
        "--offline",
        env={"RAGLOOM_CRASH_AT": "pipeline.added:1", "RAGLOOM_CRASH_SIGNAL": "INT"},
    )
    assert stopped.returncode != 0
    assert _held(_verify(index)) == [30, 30]
    resumed = _run("ingest", str(docs), "--index", str(index), "--offline")  # the next writer rolls forward
    assert resumed.returncode == 0, resumed.stderr
    report = _verify(index)
    assert report["ok"] and _held(report) == [30, 30], report
    found = _run("search", "Document version", "--index", str(index), "--offline", "--json", "-k", "30")
    texts = [h["text"] for h in json.loads(found.stdout)]
    assert texts and all("version 3" in t for t in texts), texts


def test_unchanged_documents_do_no_work_and_one_edit_reencodes_one(built: tuple[Path, Path]) -> None:
    docs, index = built
    (docs / "doc07.txt").write_text("Document 7 was edited: lava statute.\n", encoding="utf-8")
    result = _run("ingest", str(docs), "--index", str(index), "--offline")
    assert result.returncode == 0, result.stderr
    assert "Indexed 1 documents" in result.stdout and "29 unchanged" in result.stdout, result.stdout


def test_stale_writer_loses_no_other_process_documents(built: tuple[Path, Path], tmp_path: Path) -> None:
    """Item 4: a process that opened the hybrid index before another process's ingest, and writes after it,
    keeps that ingest's documents in every retriever (it reloads before writing). Item 5: that reader took no lock
    (the other ingest was not refused) and its searches see the other process's commit."""
    _, index = built
    from ragloom.recipes.config import open_pipeline
    from ragloom.types import Document

    with open_pipeline(index) as early:  # opened before the other process writes
        more = _corpus(tmp_path / "more", n=5)
        for path in more.iterdir():
            path.rename(more / f"extra-{path.name}")
        other = _run("ingest", str(more), "--index", str(index), "--offline")
        assert other.returncode == 0, other.stderr  # the open reader holds no lock
        seen = {h.chunk.doc_id for h in early.retrievers[1].search("Document", k=50)}
        assert {f"extra-doc0{i}.txt" for i in range(5)} <= seen  # a long-lived reader sees the new commit
        early.ingest([Document(id="late.txt", text="A late document about lava.")])
    report = _verify(index)
    assert report["ok"] and _held(report) == [36, 36], report


def test_a_long_lived_chroma_reader_sees_later_ingests(tmp_path: Path, tiny_bert_dir: Path) -> None:
    """Item 5 on chroma: a reader kept open (a server, an MCP process) answers from what another process ingested
    after it opened, without chroma errors, and never blocks that ingest."""
    from ragloom.recipes.config import open_pipeline

    index = tmp_path / "index"
    first = _run("ingest", str(_corpus(tmp_path / "a", n=10)), "--index", str(index), "--model", str(tiny_bert_dir))
    assert first.returncode == 0, first.stderr
    with open_pipeline(index) as reader:
        assert len({h.chunk.doc_id for h in reader.retrieve("Document", k=30)}) == 10
        more = _corpus(tmp_path / "b", n=10)
        for path in more.iterdir():
            path.rename(more / f"b-{path.name}")
        second = _run("ingest", str(more), "--index", str(index), "--offline")
        assert second.returncode == 0, second.stderr
        assert len({h.chunk.doc_id for h in reader.retrieve("Document", k=30)}) == 20


def test_index_folder_cannot_run_code_or_spend_credentials(built: tuple[Path, Path], tmp_path: Path) -> None:
    """Items 6 and 7: ragloom.json asking for remote code is refused before any model loads; its generator URL and
    key variable are ignored, so a secret in the environment never reaches the index's endpoint."""
    _, index = built
    spec_path = index / "ragloom.json"
    original = json.loads(spec_path.read_text())
    hostile = json.loads(json.dumps(original))
    hostile["retrievers"][0]["options"] = {"trust_remote_code": True}
    spec_path.write_text(json.dumps(hostile))
    refused = _run("search", "lava", "--index", str(index), "--offline")
    assert refused.returncode == 2 and "trust_remote_code" in refused.stderr, refused.stderr

    seen: list[dict[str, str]] = []

    class Endpoint(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            seen.append(dict(self.headers))
            self.send_response(500)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Endpoint)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        lured = json.loads(json.dumps(original))
        lured["generator"] = {"kind": "openai", "model": "m", "base_url": url, "api_key_env": "GITHUB_TOKEN"}
        spec_path.write_text(json.dumps(lured))
        env = {"GITHUB_TOKEN": "ghp_SECRET_TOKEN_1234", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}
        env.pop("OPENAI_API_KEY", None)
        _run("ask", "lava?", "--index", str(index), "--offline", "--json", env=env, timeout=120)
        assert seen == []  # the index's URL was never contacted
        _run("ask", "lava?", "--index", str(index), "--offline", "--json", "--base-url", url, env=env, timeout=120)
        assert seen and all("ghp_SECRET" not in " ".join(h.values()) for h in seen)
    finally:
        server.shutdown()


def test_index_files_must_be_regular_files(built: tuple[Path, Path], tmp_path: Path) -> None:
    """Item 8: a spec that is a symlink to /dev/zero, a manifest that is a FIFO, a store file linked out of the
    folder: each a clear error at once, nothing outside the folder written."""
    _, index = built
    spec = index / "ragloom.json"
    saved = spec.read_bytes()
    spec.unlink()
    spec.symlink_to("/dev/zero")
    result = _run("search", "lava", "--index", str(index), "--offline", timeout=60)
    assert result.returncode == 2 and "ragloom.json" in result.stderr, result.stderr
    spec.unlink()
    spec.write_bytes(saved)

    manifest = index / "bm25" / "manifest.json"
    kept = manifest.read_bytes()
    manifest.unlink()
    os.mkfifo(manifest)
    result = _run("search", "lava", "--index", str(index), "--offline", timeout=60)
    assert result.returncode == 2 and "manifest.json" in result.stderr, result.stderr
    manifest.unlink()
    manifest.write_bytes(kept)

    database = index / "dense" / "memory" / "vectors.sqlite"
    outside = tmp_path / "outside.sqlite"
    shutil.copy(database, outside)
    before = outside.read_bytes()
    database.unlink()
    database.symlink_to(outside)
    result = _run("ingest", str(tmp_path / "docs"), "--index", str(index), "--offline", timeout=60)
    assert result.returncode == 2 and "symbolic link" in result.stderr, result.stderr
    assert outside.read_bytes() == before


def test_damaged_stores_are_errors_not_silent_answers(built: tuple[Path, Path]) -> None:
    """Item 9: a rewritten chunk text, a flipped vector byte, a deleted database or BM25 state: a typed error that
    names the file (exit 2 for search, exit 1 with the problem for verify), never an answer from damaged data."""
    _, index = built
    database = index / "dense" / "memory" / "vectors.sqlite"
    saved = database.read_bytes()
    with sqlite3.connect(database) as db:
        db.execute("UPDATE chunks SET chunk = replace(chunk, 'lava', 'LAVA') WHERE rowid = 1")
    result = _run("search", "lava", "--index", str(index), "--offline")
    assert result.returncode == 2 and "checksum" in result.stderr, result.stderr
    verify = _run("index", "verify", str(index), "--json", "--offline")
    assert verify.returncode == 1 and not json.loads(verify.stdout)["ok"], verify.stdout
    database.write_bytes(saved)
    with sqlite3.connect(database) as db:
        blob = bytearray(db.execute("SELECT vector FROM chunks WHERE rowid = 2").fetchone()[0])
        blob[5] ^= 0x40
        db.execute("UPDATE chunks SET vector = ? WHERE rowid = 2", (bytes(blob),))
    assert _run("search", "lava", "--index", str(index), "--offline").returncode == 2
    database.unlink()
    for extra in ("vectors.sqlite-wal", "vectors.sqlite-shm"):
        (database.parent / extra).unlink(missing_ok=True)
    result = _run("search", "lava", "--index", str(index), "--offline")
    assert result.returncode == 2 and "missing or empty" in result.stderr, result.stderr
    database.write_bytes(saved)
    (index / "bm25" / "bm25" / "current.json").unlink()
    result = _run("search", "lava", "--index", str(index), "--offline")
    assert result.returncode == 2 and "current.json" in result.stderr, result.stderr


def test_an_edited_tokenizer_is_a_mismatch(tmp_path: Path, tiny_bert_dir: Path, encoder: Any) -> None:
    """Item 10: the same weights with an edited tokenizer must not open an index built with the original."""
    from ragloom.adapters.dense import DenseRetriever, TransformersDenseEncoder
    from ragloom.errors import EncoderMismatchError
    from ragloom.types import Document

    model = tmp_path / "model"
    shutil.copytree(tiny_bert_dir, model)
    with DenseRetriever(TransformersDenseEncoder(str(model)), tmp_path / "idx", store="memory") as retriever:
        retriever.add([Document(id="a", text="lava flows down the valley")])
    vocab = (model / "vocab.txt").read_text(encoding="utf-8").split("\n")
    i, j = vocab.index("lava") if "lava" in vocab else 10, 11
    vocab[i], vocab[j] = vocab[j], vocab[i]
    (model / "vocab.txt").write_text("\n".join(vocab), encoding="utf-8")
    (model / "tokenizer.json").unlink(missing_ok=True)
    with pytest.raises(EncoderMismatchError, match="tokenizer_sha256"):
        DenseRetriever(TransformersDenseEncoder(str(model)), tmp_path / "idx", store="memory")
