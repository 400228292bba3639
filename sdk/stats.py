"""Memory honesty: what an index directory costs on disk and in RAM, per retriever and component, and what an
ingest will cost before it runs.

Nothing here loads a model or an index: sizes come from the files, the manifests and a few SQLite counts, so
``index_stats`` is cheap on a 10M-chunk index. RAM figures are what a search process holds once the retriever is
open (models excluded); memory-mapped bytes are listed apart (the OS pages them in on demand and can drop them).
Estimates are marked as such.
"""

from __future__ import annotations

import json
import math
import re
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ragloom.errors import IndexCorruptError
from ragloom.persistence import MANIFEST_NAME
from ragloom.stores.files import read_json

__all__ = ["Component", "RetrieverStats", "estimate_ingest", "index_stats", "retriever_stats"]

_CHUNK_OBJECT_BYTES = 600
"""RAM of one ``Chunk`` held by a store (Python object, id, doc id, metadata; text excluded), measured ~500-700."""


@dataclass(frozen=True)
class Component:
    """One part of a retriever's index: its files' bytes on disk, bytes in RAM, bytes memory-mapped."""

    name: str
    disk: int = 0
    ram: int = 0
    mapped: int = 0
    estimated: bool = False
    note: str = ""


@dataclass(frozen=True)
class RetrieverStats:
    """A retriever's components and totals (``chunks``: the manifest's count)."""

    name: str
    kind: str
    store: str
    chunks: int
    components: tuple[Component, ...] = field(default_factory=tuple)

    @property
    def disk(self) -> int:
        return sum(c.disk for c in self.components)

    @property
    def ram(self) -> int:
        return sum(c.ram for c in self.components)

    @property
    def mapped(self) -> int:
        return sum(c.mapped for c in self.components)

    def to_dict(self) -> dict[str, Any]:
        return {
            **{k: v for k, v in asdict(self).items() if k != "components"},
            "bytes_on_disk": self.disk,
            "bytes_in_ram": self.ram,
            "bytes_memory_mapped": self.mapped,
            "components": [asdict(c) for c in self.components],
        }


def _files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.is_dir() else []


def _size(paths: Iterable[Path]) -> int:
    return sum(p.stat().st_size for p in paths)


def index_stats(index: str | Path) -> list[RetrieverStats]:
    """Stats of every retriever of an index directory (a CLI index with ``ragloom.json``, or one retriever's
    directory with its ``manifest.json``)."""
    root = Path(index)
    if (root / MANIFEST_NAME).exists():
        return [retriever_stats(root)]
    spec = root / "ragloom.json"
    if not spec.exists():
        raise IndexCorruptError(f"{root} holds neither ragloom.json nor {MANIFEST_NAME}; is it a ragloom index?")
    names = [str(r.get("name")) for r in read_json(spec).get("retrievers", [])]
    return [retriever_stats(root / name, name=name) for name in names if (root / name).is_dir()]


def retriever_stats(folder: str | Path, name: str | None = None) -> RetrieverStats:
    """One retriever directory's components, told apart by the store its manifest names."""
    folder = Path(folder)
    manifest_path = folder / MANIFEST_NAME
    manifest: Mapping[str, Any] = read_json(manifest_path) if manifest_path.exists() else {}
    store = dict(manifest.get("store") or {})
    kind = str(manifest.get("kind", "unknown"))
    chunks = int((manifest.get("counts") or {}).get("chunks", 0) or 0)
    dim = int((manifest.get("encoder") or {}).get("dim", 0) or 0)
    store_kind = str(store.get("kind", "unknown"))
    parts: list[Component] = [Component("manifest", disk=_size(p for p in folder.glob("*") if p.is_file()))]
    handler = _HANDLERS.get(store_kind)
    seen = {p for p in folder.glob("*") if p.is_file()}
    if handler is not None:
        found, used = handler(folder, chunks, dim)
        parts.extend(found)
        seen |= used
    rest = [p for p in _files(folder) if p not in seen]
    if rest:
        parts.append(Component("other files", disk=_size(rest), note="not read by search"))
    label = store_kind
    if store_kind == "compressed":
        middle = f"+{store['middle']}" if store.get("middle") else ""
        label = f"compressed {store.get('first_stage')}{middle}+{store.get('rescore')}"
    return RetrieverStats(name or folder.name, kind, label, chunks, tuple(parts))


def _memory(folder: Path, chunks: int, dim: int) -> tuple[list[Component], set[Path]]:
    files = set(_files(folder / "memory"))
    return [
        Component("chunks + float32 vectors (SQLite)", disk=_size(files)),
        Component("float32 matrix", ram=chunks * dim * 4, note="rebuilt from SQLite on open"),
        Component("chunk objects", ram=chunks * _CHUNK_OBJECT_BYTES, estimated=True),
    ], files


def _compressed(folder: Path, chunks: int, dim: int) -> tuple[list[Component], set[Path]]:
    from ragloom.stores.compressed_segments import bytes_on_disk  # the store's own file kinds

    store = folder / "compressed"
    files = set(_files(store))
    by_part = bytes_on_disk(store) if store.is_dir() else {}
    tail = 0
    database = folder / "compressed" / "chunks.sqlite"
    if database.exists():
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
            tail = int(db.execute("SELECT COUNT(*) FROM chunks WHERE vector IS NOT NULL").fetchone()[0])
    rows_bytes = by_part.get("rows", 0)
    return [
        Component("first-stage codes", disk=by_part.get("codes", 0), ram=by_part.get("codes", 0)),
        Component("rescoring vectors", disk=by_part.get("vectors", 0), mapped=by_part.get("vectors", 0)),
        Component(
            "row maps + calibration",
            disk=rows_bytes + by_part.get("calib", 0),
            ram=rows_bytes * 9 // 8 + by_part.get("calib", 0),
        ),
        Component(
            "chunks (SQLite)", disk=by_part.get("sqlite", 0) + by_part.get("other", 0), note="read for the top k only"
        ),
        Component("unflushed tail (float32, searched exactly)", ram=tail * dim * 4, note=f"{tail} rows"),
        *_ivf_component(by_part),
        *(
            [Component("middle-stage int8 codes", disk=by_part["middle"], ram=by_part["middle"])]
            if "middle" in by_part
            else []
        ),
    ], files


def _ivf_component(by_part: dict[str, int]) -> list[Component]:
    """The binary IVF's ids (8 B a row) and centres; its lists files are read once when the store opens."""
    if "ivf" not in by_part:
        return []
    rows = by_part.get("rows", 0) // 8
    return [
        Component(
            "binary IVF ids + centres", disk=by_part["ivf"] + by_part.get("lists", 0), ram=rows * 8 + by_part["ivf"]
        )
    ]


def _chroma(folder: Path, chunks: int, dim: int) -> tuple[list[Component], set[Path]]:
    files = set(_files(folder / "chroma"))
    hnsw = {p for p in files if p.suffix == ".bin"}
    return [
        Component("HNSW graph + vectors", disk=_size(hnsw), ram=_size(hnsw), note="chromadb loads it whole"),
        Component("chroma SQLite (documents, metadata)", disk=_size(files - hnsw)),
        Component("chunk objects", ram=0, note="returned per query only"),
    ], files


def _sparse(folder: Path, chunks: int, dim: int) -> tuple[list[Component], set[Path]]:
    files = set(_files(folder / "sparse"))
    arrays = {p for p in files if p.suffix == ".npy"}
    texts = {p for p in files if p.suffix == ".jsonl"}
    return [
        Component("postings (CSC arrays)", disk=_size(arrays), ram=_size(arrays)),
        Component("chunks (JSON lines)", disk=_size(texts), ram=chunks * _CHUNK_OBJECT_BYTES, estimated=True),
        Component("state", disk=_size(files - arrays - texts)),
    ], files


def _bm25(folder: Path, chunks: int, dim: int) -> tuple[list[Component], set[Path]]:
    files = set(_files(folder / "bm25"))
    current = folder / "bm25" / "current.json"
    live: set[Path] = set()
    if current.exists():
        generation = read_json(current).get("generation")
        if generation is not None:
            live = set(_files(folder / "bm25" / f"gen-{int(generation):06d}"))
    arrays = {p for p in live if p.suffix == ".npy"}
    return [
        Component("bm25s score matrix + vocabulary", disk=_size(live), ram=_size(arrays) + _size(live - arrays)),
        Component("older generations / state", disk=_size(files - live), note="not loaded"),
    ], files


def _multivector(folder: Path, chunks: int, dim: int) -> tuple[list[Component], set[Path]]:
    files = set(_files(folder / "store"))
    tokens = {p for p in files if p.name.endswith(".tokens.npy")}
    first = {p for p in files if re.search(r"\.(int8|scales|binary|fde)\.npy$", p.name)}
    rest = files - tokens - first
    return [
        Component("token matrices (float16)", disk=_size(tokens), mapped=_size(tokens)),
        Component("first-stage data", disk=_size(first), mapped=_size(first)),
        Component("offsets + chunks + state", disk=_size(rest), ram=_size(rest)),
    ], files


_HANDLERS = {
    "memory": _memory,
    "compressed": _compressed,
    "chroma": _chroma,
    "sparse": _sparse,
    "bm25s": _bm25,
    "multivector": _multivector,
    "pages": _multivector,
}


# -- estimates before ingest -------------------------------------------------------------------------------------
_CHARS_PER_TOKEN = 4.2  # English text, WordPiece/BPE tokenizers (MiniLM on SciFact: 4.3)
_SPLADE_TERMS = 150  # non-zero terms per SPLADE document vector after pruning (typical)
_UNIQUE_TOKEN_SHARE = 0.6  # distinct tokens per chunk / tokens (BM25 postings)


def estimate_ingest(
    characters: int,
    documents: int,
    retrievers: Iterable[Mapping[str, Any]],
) -> list[RetrieverStats]:
    """What indexing ``characters`` of text in ``documents`` will cost, per retriever spec (``kind``, ``store``,
    ``dim``, ``chunk_size``, ``overlap``, ``name``; compressed stores also ``first_stage``/``rescore``/``middle``).

    Chunks are counted from ~4.2 characters a token (the exact count needs the tokenizer, i.e. the real ingest)."""
    tokens = characters / _CHARS_PER_TOKEN
    out = []
    for spec in retrievers:
        size = int(spec.get("chunk_size") or 256)
        overlap = min(int(spec.get("overlap", 32)), size // 2)
        chunks = max(documents, math.ceil(max(0.0, tokens - overlap * documents) / max(1, size - overlap)))
        dim = int(spec.get("dim") or 384)
        kind, store = str(spec.get("kind", "dense")), str(spec.get("store", "memory"))
        text = int(characters * (1 + overlap / max(1, size - overlap)))  # chunk texts, overlap included
        parts: list[Component]
        if kind in ("splade", "bm25"):
            per = _SPLADE_TERMS if kind == "splade" else int(size * _UNIQUE_TOKEN_SHARE)
            postings = chunks * per * 8  # int32 row + float32 weight
            parts = [
                Component("postings", disk=postings, ram=postings, estimated=True),
                Component("chunks", disk=text + chunks * 200, ram=chunks * _CHUNK_OBJECT_BYTES, estimated=True),
            ]
        elif store in ("binary", "int8", "compressed"):
            first = str(spec.get("first_stage") or ("int8" if store == "int8" else "binary"))
            rescore = spec.get("rescore", "fp32")
            code = dim // 8 if first == "binary" else dim * (4 if first == "fp32" else 1)
            vectors = chunks * dim * (4 if rescore == "fp32" or first == "fp32" else 1 if rescore == "int8" else 0)
            parts = [
                Component("first-stage codes", disk=chunks * code, ram=chunks * code, estimated=True),
                Component("rescoring vectors", disk=vectors, mapped=vectors, estimated=True),
                *(
                    [Component("middle-stage int8 codes", disk=chunks * dim, ram=chunks * dim, estimated=True)]
                    if spec.get("middle") == "int8"
                    else []
                ),
                Component("row maps", disk=chunks * 8, ram=chunks * 9, estimated=True),
                Component("chunks (SQLite)", disk=text + chunks * 250, estimated=True),
            ]
        elif store == "chroma":
            parts = [
                Component(
                    "HNSW graph + vectors", disk=chunks * (dim * 4 + 200), ram=chunks * (dim * 4 + 200), estimated=True
                ),
                # chroma keeps a full-text (trigram) index of the texts beside them and the vectors: measured here
                # 184 KiB empty, then ~8x the text + the vector + ~300 B a chunk (3,000 chunks: 30.6 MiB)
                Component("chroma SQLite", disk=188_416 + text * 8 + chunks * (dim * 4 + 300), estimated=True),
            ]
        else:
            parts = [
                Component("chunks + float32 vectors (SQLite)", disk=text + chunks * (dim * 4 + 250), estimated=True),
                Component("float32 matrix", ram=chunks * dim * 4, estimated=True),
                Component("chunk objects", ram=chunks * _CHUNK_OBJECT_BYTES, estimated=True),
            ]
        out.append(RetrieverStats(str(spec.get("name", kind)), kind, store, chunks, tuple(parts)))
    return out


def human(n: float) -> str:
    """Bytes as B/KiB/MiB/GiB."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover


def to_json(stats: Iterable[RetrieverStats]) -> str:
    items = [s.to_dict() for s in stats]
    total = {k: sum(i[k] for i in items) for k in ("bytes_on_disk", "bytes_in_ram", "bytes_memory_mapped")}
    return json.dumps({"retrievers": items, "total": total}, indent=2)
