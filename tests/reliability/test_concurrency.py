"""Concurrency: one writer per index directory, consistent readers while it writes, thread-safe encoders."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from reliability_child import CHUNK_SIZE, doc_text, make_plan, states
from reliability_harness import ForkServer

from ragloom.adapters.dense import DenseRetriever
from ragloom.errors import IndexLockedError
from ragloom.pipeline import Pipeline
from ragloom.types import Document


def _wait_for(path: Path, text: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text():
            return
        time.sleep(0.01)
    raise TimeoutError(f"{text!r} never appeared in {path}")


def _new_docs_plan(steps: int) -> list[dict[str, Any]]:
    return [{"op": "add", "docs": [[f"doc{i:04d}", 1]]} for i in range(steps)]


@pytest.mark.parametrize("store", ["memory", "chroma"])
def test_second_writer_is_refused_at_once(
    forkserver: ForkServer, tmp_path: Path, encoder: Any, record: Any, store: str
) -> None:
    """Another process holds the writer lock: a second writer (retriever or pipeline) fails fast and clearly;
    once the holder dies (SIGKILL) the OS drops its lock and a new writer gets in immediately."""
    index, ack = tmp_path / "index", tmp_path / "acks"
    plan = make_plan(seed=1, steps=2)
    pid = forkserver.start(
        {
            "op": "ingest",
            "index": str(index),
            "mode": "retriever",
            "store": store,
            "plan": plan,
            "ack": str(ack),
            "hold": 60,
        }
    )
    _wait_for(ack, "done")
    doc = Document(id="intruder", text="lava flows")
    timings = []
    for attempt in range(3):
        second = DenseRetriever(encoder, index, store=store, chunk_size=CHUNK_SIZE)
        started = time.perf_counter()
        with pytest.raises(IndexLockedError, match="Another process is writing"):
            if attempt == 2:
                Pipeline([second]).ingest([doc])
            else:
                second.add([doc])
        timings.append(time.perf_counter() - started)
        assert len(second.search("lava", k=1)) <= 1  # reading is still allowed
        second.close()
    assert max(timings) < 1.0, timings
    os.kill(pid, signal.SIGKILL)
    assert forkserver.wait(pid) == -signal.SIGKILL
    started = time.perf_counter()
    with DenseRetriever(encoder, index, store=store, chunk_size=CHUNK_SIZE) as writer:
        writer.add([doc])
        assert "intruder" in writer.doc_ids()
    record(
        f"second writer refused: {store}",
        runs=len(timings),
        refused=len(timings),
        slowest_refusal_ms=round(1000 * max(timings), 1),
        writer_after_holder_killed_s=round(time.perf_counter() - started, 2),
    )


def test_readers_see_whole_documents_while_a_process_writes(
    forkserver: ForkServer, tmp_path: Path, encoder: Any, record: Any
) -> None:
    """A writer process ingests document after document; a reader process and four reader threads here keep
    opening the index: every snapshot holds every acknowledged document, and each document whole."""
    index, ack = tmp_path / "index", tmp_path / "acks"
    plan = _new_docs_plan(60)
    expected = states(plan)
    writer = forkserver.start(
        {
            "op": "ingest",
            "index": str(index),
            "mode": "retriever",
            "store": "memory",
            "plan": plan,
            "ack": str(ack),
            "pause": 0.02,
        }
    )
    _wait_for(ack, "ack 0")
    result_file = tmp_path / "reader.json"
    reader = forkserver.start(
        {
            "op": "read",
            "index": str(index),
            "ack": str(ack),
            "expected": expected,
            "seconds": 3.0,
            "result": str(result_file),
        }
    )
    problems: list[str] = []
    snapshots = [0]
    stop = time.monotonic() + 3.0

    def read_loop() -> None:
        while time.monotonic() < stop:
            acked = sum(1 for line in ack.read_text().split("\n") if line.startswith("ack "))
            with DenseRetriever(encoder, index, store="memory", chunk_size=CHUNK_SIZE) as view:
                present = view.doc_ids()
                missing = set(expected[acked]) - present
                if missing:
                    problems.append(f"acknowledged but missing: {sorted(missing)[:3]}")
                for doc_id in list(present)[:5]:
                    hits = view.search("lava", k=100, filters={"doc_id": doc_id})
                    want = view.chunker.chunk(Document(id=doc_id, text=doc_text(doc_id, 1), source=f"{doc_id}.txt"))
                    if sorted(h.chunk.id for h in hits) != sorted(c.id for c in want):
                        problems.append(f"{doc_id} half present in a snapshot")
            snapshots[0] += 1

    threads = [threading.Thread(target=read_loop) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert forkserver.wait(reader) == 0
    assert forkserver.wait(writer) == 0
    other = json.loads(result_file.read_text())
    assert "error" not in other, other
    assert not problems, problems[:5]
    assert other["bad"] == 0, other["problems"]
    assert other["snapshots"] > 3 and snapshots[0] > 3
    assert len(set(other["sizes"])) > 1, "the reader never saw the index grow"
    record(
        "readers during a write (memory store)",
        runs=other["snapshots"] + snapshots[0],
        reader_process_snapshots=other["snapshots"],
        reader_thread_snapshots=snapshots[0],
        inconsistent=other["bad"] + len(problems),
    )


def test_readers_and_a_writer_thread_share_one_retriever(
    tiny_bert_dir: Path, tmp_path: Path, encoder: Any, record: Any
) -> None:
    """In one process: a writer thread adds while four threads search the same retriever; a document's chunks
    appear all at once (a filter on its id returns all of them or none)."""
    retriever = DenseRetriever(encoder, tmp_path / "index", chunk_size=CHUNK_SIZE)
    docs = [Document(id=f"d{i}", text=doc_text(f"d{i}", 1)) for i in range(20)]
    wanted = {d.id: sorted(c.id for c in retriever.chunker.chunk(d)) for d in docs}
    done = threading.Event()
    problems: list[str] = []
    searches = [0]

    def write() -> None:
        for doc in docs:
            retriever.add([doc])
        done.set()

    def read(seed: int) -> None:
        rng = np.random.default_rng(seed)
        while not done.is_set():
            doc_id = f"d{rng.integers(0, 20)}"
            got = sorted(h.chunk.id for h in retriever.search("galaxy", k=100, filters={"doc_id": doc_id}))
            if got and got != wanted[doc_id]:
                problems.append(f"{doc_id}: {len(got)} of {len(wanted[doc_id])} chunks")
            searches[0] += 1

    threads = [threading.Thread(target=write)] + [threading.Thread(target=read, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    retriever.close()
    assert not problems, problems[:5]
    record(
        "readers and a writer thread on one retriever", runs=len(docs), searches=searches[0], inconsistent=len(problems)
    )


def test_encoders_and_chunkers_are_thread_safe(encoder: Any, record: Any) -> None:
    """Concurrent encode and chunk calls from many threads give exactly the serial results."""
    from ragloom.chunking import TokenChunker

    texts = [[doc_text(f"t{i}-{j}", 1)[:300] for j in range(12)] for i in range(8)]
    queries = [[f"galaxy cluster {i}", "lava " * 80] for i in range(8)]  # the long one warns and is cut
    serial_docs = [encoder.encode_documents(t) for t in texts]
    with pytest.warns(Warning):
        serial_queries = [encoder.encode_queries(q) for q in queries]
    chunker = TokenChunker(encoder.token_counter, chunk_size=CHUNK_SIZE, overlap=4)
    documents = [Document(id=f"c{i}", text=doc_text(f"c{i}", 1)) for i in range(8)]
    serial_chunks = [chunker.chunk(d) for d in documents]
    results: dict[tuple[str, int], Any] = {}
    errors: list[str] = []

    def work(i: int) -> None:
        try:
            for _ in range(4):
                results[("d", i)] = encoder.encode_documents(texts[i])
                results[("q", i)] = encoder.encode_queries(queries[i])
                results[("c", i)] = chunker.chunk(documents[i])
        except Exception as exc:  # pragma: no cover - the failure being tested for
            errors.append(repr(exc))

    with pytest.warns(Warning):
        threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert not errors, errors
    for i in range(8):
        np.testing.assert_array_equal(results[("d", i)], serial_docs[i])
        np.testing.assert_array_equal(results[("q", i)], serial_queries[i])
        assert results[("c", i)] == serial_chunks[i]
    record("encoders and chunkers under 8 threads", runs=8 * 4 * 3, mismatches=0)
