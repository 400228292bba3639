"""Dense retrieval on a real Chroma server (`chroma run` from the chromadb wheel) on a free loopback port.

The retriever contract suite against the server, two processes ingesting into one collection, a server restart in
the middle of an ingest, and the CLI's --chroma-url recorded in the index spec.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

pytest.importorskip("chromadb")

from ragloom.adapters.dense import DenseRetriever, TransformersDenseEncoder
from ragloom.errors import EndpointError
from ragloom.pipeline import Pipeline
from ragloom.recipes.cli import app as cli
from ragloom.stores.chroma import ChromaVectorStore
from ragloom.testing import RetrieverContract
from ragloom.types import Document


def _chroma_binary() -> str | None:
    beside = Path(sys.executable).parent / "chroma"
    return str(beside) if beside.exists() else shutil.which("chroma")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ChromaServer:
    """A `chroma run` process on a loopback port; ``restart`` keeps its data directory and port."""

    def __init__(self, binary: str, path: Path, log: Path) -> None:
        self.binary, self.path, self.log = binary, path, log
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as log:
            command = [self.binary, "run", "--path", str(self.path), "--host", "127.0.0.1", "--port", str(self.port)]
            self.process = subprocess.Popen(command, stdout=log, stderr=log)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/api/v2/heartbeat", timeout=1).status_code == 200:
                    return
            assert self.process.poll() is None, self.log.read_text(errors="replace")[-2000:]
            time.sleep(0.2)
        raise AssertionError("chroma run did not answer within 60 s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=20)


@contextlib.contextmanager
def _server(tmp: Path) -> Iterator[ChromaServer]:
    binary = _chroma_binary()
    if binary is None:
        pytest.skip("the `chroma` command (installed with chromadb) is not on this machine")
    server = ChromaServer(binary, tmp / "chroma-data", tmp / "chroma.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChromaServer]:
    with _server(tmp_path_factory.mktemp("chroma-server")) as server:
        yield server


def _collection(path: Path) -> str:
    """One collection per index directory, so contract tests sharing the server never see each other's data."""
    return "t" + hashlib.sha1(str(path).encode()).hexdigest()[:20]


class TestDenseChromaServer(RetrieverContract):
    @pytest.fixture(autouse=True)
    def _setup(
        self, chroma_server: ChromaServer, encoder: TransformersDenseEncoder, other_encoder: TransformersDenseEncoder
    ) -> None:
        self.url, self.encoder, self.other = chroma_server.url, encoder, other_encoder

    def _retriever(self, encoder: TransformersDenseEncoder, path: Path) -> DenseRetriever:
        store = ChromaVectorStore(url=self.url, collection=_collection(path))
        return DenseRetriever(encoder, path, store=store, chunk_size=24, overlap=4)

    def make_retriever(self, path: Path) -> DenseRetriever:
        return self._retriever(self.encoder, path)

    def make_mismatched_retriever(self, path: Path) -> DenseRetriever:
        return self._retriever(self.other, path)


WORDS = "telescope galaxy cluster quasars lensing knead dough bread court statute contracts lava flows glaciers".split()


def _documents(prefix: str, n: int, reverse: bool = False) -> list[Document]:
    words = WORDS[::-1] if reverse else WORDS
    return [
        Document(id=f"{prefix}{i:03d}.txt", text=" ".join(words[(i + j) % len(words)] for j in range(12)))
        for i in range(n)
    ]


def test_two_processes_ingest_into_one_server(chroma_server: ChromaServer, tiny_bert_dir: Path, tmp_path: Path) -> None:
    for name, prefix in (("a", "alpha"), ("b", "beta")):
        folder = tmp_path / f"docs-{name}"
        folder.mkdir()
        for doc in _documents(prefix, 20):
            (folder / doc.id).write_text(doc.text)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ragloom.recipes.cli",
                "ingest",
                str(tmp_path / f"docs-{name}"),
                "--index",
                str(tmp_path / f"index-{name}"),
                "--model",
                str(tiny_bert_dir),
                "--chroma-url",
                chroma_server.url,
                "--chroma-collection",
                "shared",
                "--offline",
                "--quiet",
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for name in ("a", "b")
    ]
    outputs = [p.communicate(timeout=240)[0].decode() for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    spec = json.loads((tmp_path / "index-a" / "ragloom.json").read_text())
    assert spec["retrievers"][0]["chroma"] == {"url": chroma_server.url, "collection": "shared"}

    result = CliRunner().invoke(
        cli, ["search", "knead dough", "--index", str(tmp_path / "index-a"), "-k", "40", "--json", "--offline"]
    )
    assert result.exit_code == 0, result.output
    found = {h["doc_id"] for h in json.loads(result.stdout)}
    assert any(d.startswith("alpha") for d in found) and any(d.startswith("beta") for d in found), (
        "one collection serves what both processes wrote"
    )
    store = ChromaVectorStore(url=chroma_server.url, collection="shared")
    assert len(store) == 40

    search = ["search", "knead dough", "--index", str(tmp_path / "index-a"), "--json", "--offline", "--chroma-url"]
    moved = CliRunner().invoke(cli, [*search, f"http://localhost:{chroma_server.port}"])
    assert moved.exit_code == 0 and json.loads(moved.stdout), moved.output
    gone = CliRunner().invoke(cli, [*search, f"http://127.0.0.1:{_free_port()}"])
    assert gone.exit_code == 2 and "did not answer" in gone.output
    spec_after = json.loads((tmp_path / "index-a" / "ragloom.json").read_text())
    assert spec_after == spec, "--chroma-url on a query command is for that call only"


def test_server_restart_mid_ingest_loses_nothing(encoder: TransformersDenseEncoder, tmp_path: Path) -> None:
    with _server(tmp_path) as server:

        def pipeline() -> Pipeline:
            store = ChromaVectorStore(url=server.url, collection="restart")
            retriever = DenseRetriever(encoder, tmp_path / "index" / "dense", store=store, chunk_size=24, overlap=4)
            return Pipeline([retriever], ingest_batch=10)

        first, second = _documents("one", 10), _documents("two", 10, reverse=True)
        with pipeline() as pipe:
            pipe.ingest(first)
            server.stop()  # the server goes away between two batches of one ingest run
            with pytest.raises(EndpointError, match=r"Chroma server at .* did not answer"):
                pipe.ingest(second)
        server.start()
        with pipeline() as pipe:
            assert pipe.pending_write, "the batch in flight is journaled"
            assert pipe.recover() == len(second), "a writer rolls the journaled batch forward"
            ids = pipe.retrievers[0].doc_ids()
            assert ids == {d.id for d in first + second}
            assert pipe.retrieve(second[3].text, k=1)[0].chunk.doc_id == second[3].id


def test_chroma_url_needs_a_dense_retriever(tmp_path: Path) -> None:
    (tmp_path / "d.txt").write_text("lava flows")
    result = CliRunner().invoke(
        cli,
        ["ingest", str(tmp_path / "d.txt"), "--index", str(tmp_path / "i"), "-r", "bm25",
         "--chroma-url", "http://127.0.0.1:9", "--offline"],
    )  # fmt: skip
    assert result.exit_code == 2 and "add `-r dense`" in result.output


def test_the_token_goes_only_to_the_server_the_caller_names(
    chroma_server: ChromaServer, tiny_bert_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ragloom.errors import ConfigError
    from ragloom.recipes.config import RetrieverSpec, build_retriever

    spec = RetrieverSpec(model=str(tiny_bert_dir), chroma={"url": chroma_server.url, "collection": "tokens"})
    monkeypatch.setenv("RAGLOOM_CHROMA_TOKEN", "a-secret-token-0123456789")
    monkeypatch.delenv("RAGLOOM_CHROMA_URL", raising=False)
    with pytest.raises(ConfigError, match="RAGLOOM_CHROMA_URL"):
        build_retriever(spec, tmp_path)  # an index file may not pick where the caller's credential goes
    monkeypatch.setenv("RAGLOOM_CHROMA_URL", chroma_server.url)
    retriever = build_retriever(spec, tmp_path)  # the server accepts any token (no auth configured)
    try:
        assert len(retriever) == 0
    finally:
        retriever.close()
