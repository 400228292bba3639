"""The process side of the crash harness: a fork server that runs ingests and verifications in fresh children.

``python reliability_child.py MODEL_DIR`` imports torch, transformers, chromadb and ragloom and loads the tiny
encoder once (about five seconds here), then reads one JSON command per line on stdin. Every command runs in a
``fork()``ed child — a real, separate process that the test can SIGKILL — and the server answers
``{"pid": N}`` when the child starts and ``{"pid": N, "exit": code, "signal": sig}`` when it ends. Children
write their results to files named in the command, never to stdout (the protocol pipe).

Commands: ``ingest`` runs a plan of adds and deletes against one retriever or a two-retriever Pipeline and
appends ``ack I`` to an ack file after each step returns; ``verify`` reopens the index (running the pipeline's
recovery), classifies every document and writes a JSON verdict; ``read`` opens readers repeatedly while a writer
works and checks each snapshot.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import select
import signal
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

WORDS = (
    "telescope observed distant galaxy cluster bending light quasars gravitational lensing magnified faint "
    "background sources knead dough ten minutes let bread rise warm kitchen until doubles size court held statute "
    "apply retroactively contracts signed enactment volcanoes lava flows describes glaciers carving valleys"
).split()
CHUNK_SIZE = 24


def doc_text(doc_id: str, version: int) -> str:
    """Deterministic text for a document version: 8 to 110 words (one to several 24-token chunks)."""
    rng = random.Random(f"{doc_id}/{version}")
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 110))) + f" v{version}."


def make_plan(seed: int, steps: int, per_step: int = 3) -> list[dict[str, Any]]:
    """Adds of new documents, re-adds (new versions) of earlier ones, and deletes, in a seeded order."""
    rng = random.Random(seed)
    plan: list[dict[str, Any]] = []
    known: list[str] = []
    next_id = 0
    for step in range(steps):
        roll = rng.random()
        if step >= 2 and roll < 0.15 and known:
            victims = rng.sample(known, min(len(known), rng.randint(1, 2)))
            plan.append({"op": "delete", "ids": victims})
            known = [k for k in known if k not in victims]
            continue
        docs = []
        for _ in range(rng.randint(1, per_step)):
            if step >= 2 and known and rng.random() < 0.3:
                doc_id = rng.choice(known)
                docs.append([doc_id, 2 + step])
            else:
                doc_id = f"doc{next_id:04d}"
                next_id += 1
                docs.append([doc_id, 1])
                known.append(doc_id)
        unique = {d[0]: d for d in docs}
        plan.append({"op": "add", "docs": list(unique.values())})
    return plan


def states(plan: list[dict[str, Any]]) -> list[dict[str, int]]:
    """``states[i]``: document -> version after the first ``i`` steps."""
    out = [{}]
    current: dict[str, int] = {}
    for step in plan:
        current = dict(current)
        if step["op"] == "add":
            current.update({d: v for d, v in step["docs"]})
        else:
            for d in step["ids"]:
                current.pop(d, None)
        out.append(current)
    return out


# -- building the index under test --------------------------------------------------------------------------------


def build(cmd: dict[str, Any], encoder: Any) -> Any:
    """A DenseRetriever (``mode`` retriever) or a Pipeline over a memory and a chroma retriever."""
    from ragloom.adapters.dense import DenseRetriever
    from ragloom.pipeline import Pipeline

    index = Path(cmd["index"])
    if cmd["mode"] == "retriever":
        return DenseRetriever(encoder, index, store=cmd["store"], chunk_size=CHUNK_SIZE)
    retrievers = [
        DenseRetriever(encoder, index / name, store=store, chunk_size=CHUNK_SIZE, name=name)
        for name, store in (("a", "memory"), ("b", "chroma"))
    ]
    return Pipeline(retrievers, ingest_batch=cmd.get("ingest_batch", 2))


def retrievers_of(target: Any) -> list[Any]:
    return list(getattr(target, "retrievers", [target]))


def run_ingest(cmd: dict[str, Any], encoder: Any) -> None:
    from ragloom.types import Document

    target = build(cmd, encoder)
    ack = os.open(cmd["ack"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(ack, b"ready\n")
    for index, step in enumerate(cmd["plan"]):
        if step["op"] == "add":
            docs = [Document(id=d, text=doc_text(d, v), source=f"{d}.txt") for d, v in step["docs"]]
            if hasattr(target, "ingest"):
                target.ingest(docs)
            else:
                target.add(docs)
        else:
            target.delete(step["ids"])
        os.write(ack, f"ack {index}\n".encode())  # printed only after the step returned
        if cmd.get("pause"):
            time.sleep(cmd["pause"])
    os.write(ack, b"done\n")
    if cmd.get("hold"):  # keep the writer lock (for the second-writer test) until killed
        time.sleep(cmd["hold"])
    target.close()


def classify(retriever: Any, candidates: dict[str, list[int]]) -> dict[str, Any]:
    """For each document: which version its stored chunks are exactly ("absent", a version, or "MIXED")."""
    from ragloom.types import Document

    stored: dict[str, list[tuple[str, str]]] = {}
    for chunk in retriever.store._chunks if hasattr(retriever.store, "_chunks") else _chroma_chunks(retriever):
        stored.setdefault(chunk.doc_id, []).append((chunk.id, hashlib.sha1(chunk.text.encode()).hexdigest()))
    verdict: dict[str, Any] = {}
    for doc_id in sorted(set(stored) | set(candidates)):
        have = sorted(stored.get(doc_id, []))
        if not have:
            verdict[doc_id] = "absent"
            continue
        match: Any = "MIXED"
        for version in candidates.get(doc_id, []):
            doc = Document(id=doc_id, text=doc_text(doc_id, version), source=f"{doc_id}.txt")
            want = sorted((c.id, hashlib.sha1(c.text.encode()).hexdigest()) for c in retriever.chunker.chunk(doc))
            if want == have:
                match = version
                break
        verdict[doc_id] = match
    return verdict


def _chroma_chunks(retriever: Any) -> list[Any]:
    from ragloom.types import Chunk

    found = retriever.store._collection.get(include=["metadatas", "documents"])
    chunks = []
    for text, meta in zip(found["documents"], found["metadatas"]):
        data = json.loads(str(meta["_chunk"]))
        data["text"] = text or ""
        chunks.append(Chunk.from_dict(data))
    return chunks


def finish_interrupted_writes(target: Any) -> None:
    """What the next writer (or `ragloom index recover`) does: readers never finish a write, writers always do."""
    if hasattr(target, "recover"):
        target.recover()
    else:
        target.acquire_writer()


def run_verify(cmd: dict[str, Any], encoder: Any) -> dict[str, Any]:
    """Reopen, classify every document in every retriever, then prove the index still takes writes."""
    from ragloom.types import Document

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        target = build(cmd, encoder)
        finish_interrupted_writes(target)
    result: dict[str, Any] = {"warnings": [str(w.message)[:200] for w in caught], "retrievers": {}}
    index = Path(cmd["index"])
    for retriever in retrievers_of(target):
        verdict = classify(retriever, cmd["candidates"])
        hits = retriever.search("lava flows in the kitchen", k=3) if len(retriever) else []
        result["retrievers"][retriever.name] = {
            "docs": verdict,
            "chunks": len(retriever),
            "searched": len(hits),
            "journal": (Path(retriever.path) / "ingest-journal.json").exists(),
        }
    probe = [Document(id="probe-after-crash", text="glaciers carving valleys", source="probe.txt")]
    if cmd.get("probe") is False:  # a recovery that a test kills: no write of its own
        target.close()
        return result
    if hasattr(target, "ingest"):
        target.ingest(probe)
        target.delete(["probe-after-crash"])
    else:
        target.add(probe)
        target.delete(["probe-after-crash"])
    result["writable"] = True
    result["leftover_tmp"] = sorted(p.name for p in index.rglob(".*.tmp"))
    target.close()
    return result


def run_read(cmd: dict[str, Any], encoder: Any) -> dict[str, Any]:
    """Open a fresh reader every few ms while another process writes; check each snapshot is whole."""
    from ragloom.adapters.dense import DenseRetriever
    from ragloom.types import Document

    deadline = time.monotonic() + cmd["seconds"]
    snapshots = bad = 0
    problems: list[str] = []
    sizes: list[int] = []
    while time.monotonic() < deadline:
        acked = _acked(cmd["ack"])
        reader = DenseRetriever(encoder, cmd["index"], store="memory", chunk_size=CHUNK_SIZE)
        chunks: dict[str, list[Any]] = {}
        for chunk in reader.store._chunks:
            chunks.setdefault(chunk.doc_id, []).append(chunk)
        for doc_id in cmd["expected"][acked]:
            if doc_id not in chunks:
                bad += 1
                problems.append(f"acked {doc_id} missing")
        for doc_id, have in chunks.items():
            want = reader.chunker.chunk(Document(id=doc_id, text=doc_text(doc_id, 1), source=f"{doc_id}.txt"))
            if sorted(c.id for c in have) != sorted(c.id for c in want):
                bad += 1
                problems.append(f"{doc_id} half present")
        reader.search("galaxy cluster", k=5)
        sizes.append(len(chunks))
        snapshots += 1
        reader.close()
    return {"snapshots": snapshots, "bad": bad, "problems": problems[:10], "sizes": sizes}


def _acked(path: str) -> int:
    try:
        lines = Path(path).read_text().split("\n")
    except FileNotFoundError:
        return 0
    return sum(1 for line in lines if line.startswith("ack "))


# -- a full disk ---------------------------------------------------------------------------------------------------


def enter_tmpfs(mountpoint: Path, size_kb: int) -> None:
    """Mount a ``size_kb`` tmpfs at ``mountpoint``, visible to this process only (user + mount namespace)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    clone_newns, clone_newuser = 0x00020000, 0x10000000
    ms_rec, ms_private = 0x4000, 1 << 18
    uid, gid = os.getuid(), os.getgid()
    if libc.unshare(clone_newuser | clone_newns) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWUSER | CLONE_NEWNS) refused")
    Path("/proc/self/setgroups").write_text("deny")
    Path("/proc/self/uid_map").write_text(f"0 {uid} 1")
    Path("/proc/self/gid_map").write_text(f"0 {gid} 1")
    if libc.mount(None, b"/", None, ms_rec | ms_private, None) != 0:
        raise OSError(ctypes.get_errno(), "making / private failed")
    mountpoint.mkdir(parents=True, exist_ok=True)
    options = f"size={size_kb}k".encode()
    if libc.mount(b"tmpfs", str(mountpoint).encode(), b"tmpfs", 0, options) != 0:
        raise OSError(ctypes.get_errno(), f"mounting a tmpfs at {mountpoint} failed")


def fill(path: Path) -> int:
    """Write ``path`` until the disk is full; returns its size."""
    block = b"\0" * 4096
    with open(path, "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(block)
        except OSError:
            pass
    return path.stat().st_size


def _documents(ids: list[str], version: int) -> list[Any]:
    from ragloom.types import Document

    return [Document(id=d, text=doc_text(d, version), source=f"{d}.txt") for d in ids]


def run_enospc(cmd: dict[str, Any], encoder: Any) -> dict[str, Any]:
    """Build an index on a small tmpfs, fill the disk, try ingests with a little room each time, then check
    after each failure (with fresh objects) that the index holds exactly what was acknowledged."""
    import shutil

    mount = Path(cmd["mount"])
    enter_tmpfs(mount, cmd["size_kb"])
    _watchdog(cmd)
    index = mount / "index"
    spec = {"index": str(index), "mode": cmd["mode"], "store": cmd["store"], "ingest_batch": 4}
    acked: dict[str, int] = {}
    target = build(spec, encoder)
    first = [f"base{i}" for i in range(4)]
    _ingest(target, _documents(first, 1))
    acked.update({d: 1 for d in first})
    target.close()
    filler = mount / "filler"
    size = fill(filler)
    attempts: list[dict[str, Any]] = []
    for n, room_kb in enumerate(cmd["room_kb"]):
        os.truncate(filler, max(0, size - room_kb * 1024))
        ids = [f"full{n}-{i}" for i in range(12)] + ["base0"]  # new documents and a new version of an old one
        version = 10 + n
        outcome: dict[str, Any] = {"room_kb": room_kb}
        target = None
        try:
            target = build(spec, encoder)
            _ingest(target, _documents(ids, version))
            outcome["result"] = "ok"
            acked.update({d: version for d in ids})
        except Exception as exc:
            outcome["result"] = f"{type(exc).__name__}: {str(exc)[:160]}"
        try:
            if target is not None:
                target.close()
        except Exception as exc:
            outcome["close"] = f"{type(exc).__name__}: {exc}"
        os.truncate(filler, 0)  # room to reopen (recovery may need to write)
        check = build(spec, encoder)
        finish_interrupted_writes(check)
        candidates = {d: [v] for d, v in acked.items()}
        for d in ids:
            candidates[d] = sorted({*candidates.get(d, []), version})
        verdicts = {r.name: classify(r, candidates) for r in retrievers_of(check)}
        outcome["state"] = verdicts
        outcome["intact"] = all(
            docs.get(d) == v or (d in ids and docs.get(d) in (v, version))
            for docs in verdicts.values()
            for d, v in acked.items()
        ) and all("MIXED" not in docs.values() for docs in verdicts.values())
        if cmd["mode"] == "pipeline":
            first_docs, *rest = verdicts.values()
            outcome["in_step"] = all(first_docs == other for other in rest)
        # a failed attempt may have left its new documents (whole) or not; the journal replays them in step
        for docs in verdicts.values():
            for d in ids:
                if docs.get(d) == version:
                    acked[d] = version
        check.close()
        size = fill(filler)
        attempts.append(outcome)
    os.truncate(filler, 0)
    shutil.copytree(index, cmd["copy_to"], symlinks=True)
    return {"attempts": attempts, "acked": acked}


def _ingest(target: Any, docs: list[Any]) -> None:
    if hasattr(target, "ingest"):
        target.ingest(docs)
    else:
        target.add(docs)


# -- the fork server -----------------------------------------------------------------------------------------------


def _watchdog(cmd: dict[str, Any]) -> None:
    import faulthandler

    faulthandler.dump_traceback_later(cmd.get("watchdog", 240), exit=True)  # a hang shows where, then ends


def _child(cmd: dict[str, Any], encoder: Any) -> int:
    log = os.open(cmd["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    sys.stdout = os.fdopen(1, "w", buffering=1)
    sys.stderr = os.fdopen(2, "w", buffering=1)
    os.environ.update(cmd.get("env", {}))
    if cmd["op"] != "enospc":  # unshare() needs a single-threaded process: that one starts its watchdog later
        _watchdog(cmd)
    try:
        if cmd["op"] == "ingest":
            run_ingest(cmd, encoder)
            return 0
        runner = {"verify": run_verify, "read": run_read, "enospc": run_enospc}[cmd["op"]]
        result = runner(cmd, encoder)
    except BaseException as exc:
        traceback.print_exc()
        result = {"error": f"{type(exc).__name__}: {exc}"}
    Path(cmd["result"]).write_text(json.dumps(result))
    return 0


def main() -> None:
    import torch

    torch.set_num_threads(1)  # no OpenMP team exists before fork()
    import chromadb  # noqa: F401  (imported once here, so children start fast)

    from ragloom.adapters.dense import TransformersDenseEncoder

    encoder = TransformersDenseEncoder(sys.argv[1], dtype="float32")
    protocol = sys.stdout
    sys.stdout = sys.stderr
    protocol.write(json.dumps({"ready": True}) + "\n")
    protocol.flush()
    running: set[int] = set()
    source = sys.stdin.buffer
    pending = b""
    while True:
        ready = select.select([source], [], [], 0.02)[0]
        if ready:
            data = os.read(source.fileno(), 1 << 16)
            if not data:
                break
            pending += data
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                cmd = json.loads(line)
                pid = os.fork()
                if pid == 0:
                    signal.signal(signal.SIGINT, signal.SIG_DFL)
                    code = 1
                    try:
                        code = _child(cmd, encoder)
                    finally:
                        os._exit(code)
                running.add(pid)
                protocol.write(json.dumps({"pid": pid}) + "\n")
                protocol.flush()
        for pid in list(running):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                running.discard(pid)
                protocol.write(json.dumps({"pid": pid, "exit": os.waitstatus_to_exitcode(status)}) + "\n")
                protocol.flush()
    for pid in running:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


if __name__ == "__main__":
    main()
