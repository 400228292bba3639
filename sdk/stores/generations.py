"""A store of immutable generation directories with one JSON commit point (what BM25 persists through).

For an index that is rebuilt as a whole on every write (bm25s has no incremental update), the simplest durable
layout is a complete directory per generation::

    ROOT/current.json       the commit point: which generation is live, its chunk count, sha256 of each of its files
    ROOT/gen-000003/        chunks.jsonl plus whatever the owner writes (e.g. bm25s's .npy arrays and JSON)

A generation is written into a staging directory, fsynced, renamed into place, and only then named by
``current.json`` (an atomic write), so a crash leaves the previous generation live. Older generations are removed
after the commit; opening verifies every file of the live generation against its recorded sha256.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

from ragloom.errors import IndexCorruptError
from ragloom.stores.files import atomic_write_json, folder_sha256, fsync_tree, read_json
from ragloom.stores.rows import chunks_jsonl, read_chunks_jsonl
from ragloom.types import Chunk

__all__ = ["CHUNKS_NAME", "CURRENT_NAME", "GenerationStore"]

CURRENT_NAME = "current.json"
CHUNKS_NAME = "chunks.jsonl"


class GenerationStore:
    """Chunks plus an owner's files, committed as whole generations under ``root`` (see the module docstring)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.generation = 0

    @property
    def current(self) -> Path:
        return self.root / CURRENT_NAME

    @property
    def committed(self) -> bool:
        """True once a generation has been committed (``current.json`` exists)."""
        return self.current.exists()

    def commit(self, chunks: Sequence[Chunk], write: Callable[[Path], None] | None = None) -> Path:
        """Write ``chunks`` and (through ``write(staging_dir)``) the owner's files as the next generation, make it
        the live one, and drop the older ones; returns the new generation's directory."""
        self.root.mkdir(exist_ok=True)
        generation = self.generation + 1
        final = self.root / f"gen-{generation:06d}"
        staging = self.root / f".gen-{generation:06d}.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(final, ignore_errors=True)  # an uncommitted leftover of a crashed writer
        staging.mkdir()
        if write is not None:
            write(staging)
        (staging / CHUNKS_NAME).write_bytes(chunks_jsonl(chunks))
        fsync_tree(staging)
        os.replace(staging, final)
        fsync_tree(self.root)
        state = {"generation": generation, "chunks": len(chunks), "files": folder_sha256(final)}
        atomic_write_json(self.current, state)
        for old in self.root.iterdir():
            if old.is_dir() and old.name != final.name:
                shutil.rmtree(old, ignore_errors=True)
        self.generation = generation
        return final

    def load(self) -> tuple[Path, list[Chunk]] | None:
        """The live generation's directory and chunks (None before the first commit); a generation whose files
        are missing or fail their sha256 check raises IndexCorruptError."""
        if not os.path.lexists(self.current):
            return None
        state = read_json(self.current)
        folder = self.root / f"gen-{int(state['generation']):06d}"
        expected = dict(state.get("files") or {})
        if not folder.is_dir() or folder_sha256(folder) != expected:
            raise IndexCorruptError(
                f"{folder} is missing or fails its sha256 check; restore the index directory or re-index"
            )
        chunks = read_chunks_jsonl((folder / CHUNKS_NAME).read_text(encoding="utf-8"))
        self.generation = int(state["generation"])
        return folder, chunks
