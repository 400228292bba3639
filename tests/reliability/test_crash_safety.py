"""Crash safety: real ingests in real processes, killed with SIGKILL at every write step and at random moments.

After each kill the index is reopened in a fresh process: every acknowledged document must be there at its
acknowledged version, no document may be half present (all its chunks or none), a two-retriever Pipeline must
hold the same documents in both indexes, and the index must take writes again. Steps are the named
``crash_point`` calls in ragloom's write paths (atomic file writes, the SQLite transaction, chroma's delete/add,
the pipeline journal), enumerated from a traced run. A full disk is a real tmpfs in a user namespace.
"""

from __future__ import annotations

import errno
import json
import os
import random
from pathlib import Path
from typing import Any

import pytest
from reliability_child import CHUNK_SIZE
from reliability_harness import ForkServer, Tally, crash_once, ingest_seconds, make_plan, trace_points

MODES = {
    "memory": ("retriever", "memory"),
    "chroma": ("retriever", "chroma"),
    "pipeline": ("pipeline", "memory+chroma"),
}
PLAN = make_plan(seed=7, steps=6)  # adds, a re-add with a new version, deletes
PIPELINE_PLAN = make_plan(seed=7, steps=4)


def _plan(mode: str) -> list[dict[str, Any]]:
    return PIPELINE_PLAN if mode == "pipeline" else PLAN


# The default tier kills at the steps that matter most (no trace run needed: a step never reached is an error).
FAST_STEPS = {
    "memory": ["atomic.written:2", "memory.inserted:1", "memory.committed:3"],
    "chroma": ["chroma.pending:1", "chroma.deleted:3"],  # the third replace is a new version of doc0000
    "pipeline": ["pipeline.added:1", "chroma.deleted:3", "pipeline.journal_removed:1"],
}


def _report(record: Any, scenario: str, tally: Tally, **extra: Any) -> None:
    record(scenario, **{k: v for k, v in tally.as_dict().items() if k != "failures"}, **extra)
    assert not tally.failures, "\n".join(tally.failures)
    assert tally.lost_acked == tally.half_present == tally.diverged == tally.open_errors == 0


def _kill_every_step(forkserver: ForkServer, tmp_path: Path, record: Any, mode: str, exhaustive: bool) -> None:
    kind, store = MODES[mode]
    plan = _plan(mode)
    if exhaustive:
        chosen, _ = trace_points(forkserver, tmp_path, kind, store, plan)
        assert len(chosen) > 10 and len(set(chosen)) == len(chosen)
    else:
        chosen = FAST_STEPS[mode]
    tally = Tally()
    for number, point in enumerate(chosen):
        code = crash_once(forkserver, tmp_path, f"{mode}-{number}", kind, store, plan, tally, crash_at=point)
        assert code == -9, f"the ingest was not killed at {point} (exit {code})"
    assert tally.killed == len(chosen)
    tier = "every" if exhaustive else "selected"
    _report(record, f"kill at {tier} write step: {mode}", tally)


@pytest.mark.parametrize("mode", list(MODES))
def test_kill_at_sampled_write_steps(forkserver: ForkServer, tmp_path: Path, record: Any, mode: str) -> None:
    _kill_every_step(forkserver, tmp_path, record, mode, exhaustive=False)


@pytest.mark.slow
@pytest.mark.parametrize("mode", list(MODES))
def test_kill_at_every_write_step(forkserver: ForkServer, tmp_path: Path, record: Any, mode: str) -> None:
    _kill_every_step(forkserver, tmp_path, record, mode, exhaustive=True)


def _random_kills(
    forkserver: ForkServer, tmp_path: Path, record: Any, mode: str, runs: int, seed: int, steps: int = 30
) -> None:
    kind, store = MODES[mode]
    rng = random.Random(seed)
    tally = Tally()
    long_plan = make_plan(seed=seed, steps=steps)
    window = ingest_seconds(forkserver, tmp_path, f"{mode}-calibrate", kind, store, long_plan)
    for number in range(runs):
        delay = rng.uniform(0.02, 0.9) * window  # anywhere from the first write to the last
        crash_once(forkserver, tmp_path, f"{mode}-r{number}", kind, store, long_plan, tally, kill_after=delay)
    _report(record, f"SIGKILL at random moments: {mode}", tally)
    assert tally.killed >= max(1, runs // 2), f"only {tally.killed}/{runs} runs were still ingesting when killed"


def _killed_recoveries(forkserver: ForkServer, tmp_path: Path, record: Any, runs: int, seed: int) -> Tally:
    """A pipeline ingest SIGKILLed at a random moment, then its recovery SIGKILLed twice (mid-replay, and before
    the document store commit), then a clean reopen: nothing acknowledged may be lost or split."""
    kind, store = MODES["pipeline"]
    rng = random.Random(seed)
    tally = Tally()
    plan = make_plan(seed=seed, steps=12)
    window = ingest_seconds(forkserver, tmp_path, "rk-calibrate", kind, store, plan)
    kills = ("pipeline.added:1", "docstore.put:1")
    for number in range(runs):
        delay = rng.uniform(0.05, 0.9) * window
        crash_once(
            forkserver, tmp_path, f"rk{number}", kind, store, plan, tally, kill_after=delay, recovery_kills=kills
        )
    _report(record, "SIGKILL, then the recovery SIGKILLed twice: pipeline", tally)
    return tally


def test_killed_recovery_loses_nothing(forkserver: ForkServer, tmp_path: Path, record: Any) -> None:
    _killed_recoveries(forkserver, tmp_path, record, runs=2, seed=11)


@pytest.mark.slow
def test_killed_recovery_loses_nothing_many(forkserver: ForkServer, tmp_path: Path, record: Any) -> None:
    tally = _killed_recoveries(forkserver, tmp_path, record, runs=12, seed=12)
    assert tally.recovery_kills >= 4, "too few kills landed inside a recovery"


@pytest.mark.parametrize("mode", ["memory", "pipeline"])
def test_random_kills(forkserver: ForkServer, tmp_path: Path, record: Any, mode: str) -> None:
    _random_kills(forkserver, tmp_path, record, mode, runs=1, seed=11, steps=12)


@pytest.mark.slow
@pytest.mark.parametrize("mode", list(MODES))
def test_random_kills_many(forkserver: ForkServer, tmp_path: Path, record: Any, mode: str) -> None:
    _random_kills(forkserver, tmp_path, record, mode, runs={"memory": 30, "chroma": 15, "pipeline": 15}[mode], seed=5)


def test_index_killed_in_its_first_batch_still_names_its_encoder(
    forkserver: ForkServer, tmp_path: Path, tiny_bert_other_dir: Path
) -> None:
    """The manifest is written before the first vectors: a half-built index refuses another model."""
    from ragloom.adapters.dense import DenseRetriever, TransformersDenseEncoder
    from ragloom.errors import EncoderMismatchError

    tally = Tally()
    plan = make_plan(seed=3, steps=2)
    crash_once(forkserver, tmp_path, "first", "retriever", "memory", plan, tally, crash_at="memory.committed:1")
    assert tally.killed == 1
    other = TransformersDenseEncoder(tiny_bert_other_dir, dtype="float32")
    with pytest.raises(EncoderMismatchError, match="weights"):
        DenseRetriever(other, tmp_path / "first" / "index", chunk_size=CHUNK_SIZE)


# -- a full disk ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["memory", pytest.param("chroma", marks=pytest.mark.slow), "pipeline"])
def test_full_disk_keeps_the_previous_state(forkserver: ForkServer, tmp_path: Path, record: Any, mode: str) -> None:
    """Fill a real 128 MiB tmpfs, then ingest with 0 KiB .. 1 MiB of room: every failure is an exception in the
    caller (never a crash or a hang), and what was acknowledged before stays exactly as it was."""
    kind, store = MODES[mode]
    result_file = tmp_path / "enospc.json"
    copy = tmp_path / "copy"
    cmd = {
        "op": "enospc",
        "mode": kind,
        "store": store if kind == "retriever" else "",
        "mount": str(tmp_path / "mnt"),
        "size_kb": 128 * 1024,
        "room_kb": [0, 4, 16, 64, 256, 1024],
        "copy_to": str(copy),
        "result": str(result_file),
        "watchdog": 120,
    }
    assert forkserver.run(cmd, timeout=200) == 0
    result = json.loads(result_file.read_text())
    if "error" in result and ("unshare" in result["error"] or "mount" in result["error"]):
        pytest.skip(f"cannot mount a tmpfs in a user namespace here: {result['error']}")
    assert "error" not in result, result
    attempts = result["attempts"]
    failed = [a for a in attempts if a["result"] != "ok"]
    assert failed, "the disk never filled up"
    for attempt in attempts:
        assert attempt["intact"], attempt
        assert attempt.get("in_step", True), attempt
    # and the final copy reopens cleanly in a fresh process, with exactly the acknowledged documents
    tally = Tally()
    verify = tmp_path / "verify.json"
    candidates = {d: [v] for d, v in result["acked"].items()}
    spec = {"index": str(copy), "mode": kind, "store": store}
    forkserver.run({"op": "verify", **spec, "candidates": candidates, "result": str(verify)})
    found = json.loads(verify.read_text())
    assert "error" not in found, found
    for name, state in found["retrievers"].items():
        assert {d: v for d, v in state["docs"].items() if v != "absent"} == result["acked"], name
    reasons = sorted({a["result"].split(":")[0] for a in failed})
    record(
        f"full disk (tmpfs): {mode}",
        runs=len(attempts),
        failed_writes=len(failed),
        previous_state_intact=sum(a["intact"] for a in attempts),
        errors=", ".join(reasons),
    )
    del tally


def test_atomic_write_with_injected_enospc_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process injection at the fsync layer (complements the tmpfs test): the old file and no temp file."""
    from ragloom import persistence

    target = tmp_path / "manifest.json"
    persistence.atomic_write_json(target, {"v": 1})

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(persistence.os, "fsync", full)
    with pytest.raises(OSError, match="No space"):
        persistence.atomic_write_json(target, {"v": 2})
    monkeypatch.undo()
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]


def test_crash_points_cost_nothing_when_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    from ragloom.persistence import crash_point

    monkeypatch.delenv("RAGLOOM_CRASH_AT", raising=False)
    monkeypatch.delenv("RAGLOOM_CRASH_TRACE", raising=False)
    for _ in range(1000):
        crash_point("atomic.written")
    assert os.getpid() > 0  # still alive


def test_an_interrupted_replay_is_rolled_forward_again_never_deleted(tmp_path: Path, encoder: Any) -> None:
    """A journal whose replay was itself interrupted (as often as you like) is replayed again by the next writer:
    every document of the batch ends up indexed, in every retriever, and none is deleted. Readers never replay."""
    from ragloom.adapters.dense import DenseRetriever
    from ragloom.journal import JournalEntry
    from ragloom.persistence import atomic_write_json
    from ragloom.pipeline import JOURNAL_NAME, Pipeline
    from ragloom.types import Document

    def build() -> Pipeline:
        return Pipeline([DenseRetriever(encoder, tmp_path / n, name=n, chunk_size=CHUNK_SIZE) for n in ("a", "b")])

    keep, edited = Document(id="keep", text="lava flows"), Document(id="edited", text="glaciers carving valleys")
    with build() as pipeline:
        pipeline.ingest([keep, edited])
    newer = Document(id="edited", text="glaciers carving valleys slowly")
    entry = JournalEntry.add([newer]).to_json()
    atomic_write_json(tmp_path / "a" / JOURNAL_NAME, {**entry, "attempts": 1})  # an older ragloom's marker too
    for _ in range(3):  # readers see a warning, every document, and leave the journal alone
        with pytest.warns(Warning, match="interrupted"), build() as pipeline:
            assert [r.doc_ids() for r in pipeline.retrievers] == [{"keep", "edited"}, {"keep", "edited"}]
            assert pipeline.retrieve("glaciers", k=2)
        assert (tmp_path / "a" / JOURNAL_NAME).exists()
    with pytest.warns(Warning, match="re-indexed in every retriever"), build() as pipeline:
        assert pipeline.recover() == 1
        assert [r.doc_ids() for r in pipeline.retrievers] == [{"keep", "edited"}, {"keep", "edited"}]
        hits = [h for r in pipeline.retrievers for h in r.search("glaciers", k=5) if h.chunk.doc_id == "edited"]
        texts = {h.chunk.text for h in hits}
        assert texts == {"glaciers carving valleys slowly"}
    assert not (tmp_path / "a" / JOURNAL_NAME).exists()
    with build() as pipeline:  # and nothing left to recover
        assert pipeline.recover() == 0
