"""A multi-vector store: fp16 token matrices with per-page offsets, memory-mapped, with exact MaxSim search.

On disk an index is a list of immutable segments plus ``state.json``, the single commit point::

    state.json                 segments, tombstones (deleted pages), dim, first stage
    seg-000001.tokens.npy      float16 (tokens, dim): every page's vectors, one after another
    seg-000001.offsets.npy     int64 (pages + 1,): page i owns rows offsets[i]:offsets[i + 1]
    seg-000001.chunks.json     the Chunk of each page
    seg-000001.{int8,scales,binary,fde}.npy   first-stage data, when configured

An append writes a new segment (temp file, fsync, rename) and then ``state.json``; a crash before the state write
leaves orphan files that the next writer removes, so an index is never half-written. Deletes are tombstones in
the state; compaction rewrites the live pages into one segment (streamed, never all in RAM) when a quarter of the
tokens are dead or there are too many segments. Search streams blocks of pages from the memory map into torch,
scores ``max over page tokens`` of every query token and sums over query tokens (exact MaxSim); an optional
first stage (int8, binary or MUVERA) picks candidates that are then rescored exactly.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ragloom._imports import require
from ragloom.compression import MultiVectorSettings, quantize_binary, quantize_int8
from ragloom.errors import ConfigError, IndexCorruptError, InvalidInputError
from ragloom.muvera import Muvera
from ragloom.protocols import Filters
from ragloom.stores.files import atomic_write_json, fsync_dir, read_json, save_npy
from ragloom.stores.maxsim import query_indicator, segment_max, streamed_maxsim
from ragloom.stores.rows import check_filters, check_token_matrices, chunk_matches, top_k
from ragloom.types import Chunk

__all__ = ["MultiVectorStore", "segment_max"]  # segment_max: re-exported from ragloom.stores.maxsim

STATE_NAME = "state.json"
STATE_VERSION = 1
_SEGMENT_FILE = re.compile(r"^(seg-\d{6})\.")


@dataclass(frozen=True)
class _Segment:
    """One immutable batch of pages. ``alive`` is replaced (never mutated) when pages are deleted."""

    name: str
    tokens: np.ndarray
    offsets: np.ndarray
    chunks: tuple[Chunk, ...]
    alive: np.ndarray
    extras: dict[str, np.ndarray]

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)


class MultiVectorStore:
    """Pages (or text chunks) as token-vector matrices, searched by exact MaxSim. ``path=None``: in memory."""

    def __init__(
        self,
        path: str | Path | None,
        dim: int,
        settings: MultiVectorSettings | None = None,
        *,
        device: str | None = None,
        max_segments: int = 16,
        compact_ratio: float = 0.25,
    ) -> None:
        if dim < 1:
            raise ConfigError(f"dim must be >= 1, got {dim}")
        self.path = Path(path) if path is not None else None
        self.dim = dim
        self.settings = settings or MultiVectorSettings()
        self.max_segments = max_segments
        self.compact_ratio = compact_ratio
        self._device = device
        self._lock = threading.RLock()
        self._segments: list[_Segment] = []
        self._docs: dict[str, list[tuple[str, int]]] = {}  # live pages of each document: (segment, page)
        self._next_id = 1
        self._cleaned = False
        self._muvera = Muvera(self.settings.muvera, dim) if self.settings.first_stage == "muvera" else None
        if self.path is not None:
            self.path.mkdir(parents=True, exist_ok=True)
            self._load()

    # -- properties ------------------------------------------------------------------------------------------------
    @property
    def config(self) -> dict[str, object]:
        return {"kind": "multivector", "dim": self.dim, "first_stage": self.settings.first_stage}

    def __len__(self) -> int:
        return sum(int(s.alive.sum()) for s in self._segments)

    def doc_ids(self) -> set[str]:
        with self._lock:
            return set(self._docs)

    def token_count(self) -> int:
        """Live token vectors (after pooling/pruning)."""
        return sum(int(s.lengths[s.alive].sum()) for s in self._segments)

    def disk_bytes(self) -> dict[str, int]:
        """Bytes on disk by file kind (tokens, offsets, chunks, int8, ...)."""
        sizes: dict[str, int] = {}
        if self.path is not None:
            for file in self.path.iterdir():
                if _SEGMENT_FILE.match(file.name):
                    kind = file.name.split(".")[1]
                    sizes[kind] = sizes.get(kind, 0) + file.stat().st_size
        return sizes

    # -- loading ---------------------------------------------------------------------------------------------------
    def reload(self) -> None:
        """Re-read the committed state (another process wrote since this one loaded)."""
        assert self.path is not None
        with self._lock:
            self._segments, self._docs, self._next_id = [], {}, 1
            self._load()

    @property
    def state_missing(self) -> bool:
        """True when no committed state file exists (a new index, or one whose state was deleted)."""
        return self.path is None or not (self.path / STATE_NAME).exists()

    def _load(self) -> None:
        assert self.path is not None
        state_file = self.path / STATE_NAME
        if not state_file.exists():
            return
        state = read_json(state_file)
        if not isinstance(state, dict) or state.get("format_version") != STATE_VERSION:
            raise IndexCorruptError(f"{state_file} is not a multi-vector store state of version {STATE_VERSION}")
        if state.get("dim") != self.dim:
            raise ConfigError(f"The store at {self.path} holds {state.get('dim')}-d vectors; asked for {self.dim}")
        stored = state.get("first_stage", "exact")
        if stored != self.settings.first_stage:
            raise ConfigError(
                f"The store at {self.path} was built with first_stage={stored!r}; open it with that setting "
                f"(asked for {self.settings.first_stage!r}) or re-index"
            )
        self._next_id = int(state.get("next_id", 1))
        segments = [self._load_segment(str(e["name"]), e.get("dead", [])) for e in state.get("segments", [])]
        self._commit_in_memory(segments)

    def _load_segment(self, name: str, dead: list[int]) -> _Segment:
        assert self.path is not None
        try:
            # mode "c" (copy-on-write): read-only on disk, yet torch can wrap slices without a copy
            tokens = np.load(self.path / f"{name}.tokens.npy", mmap_mode="c", allow_pickle=False)
            offsets = np.load(self.path / f"{name}.offsets.npy", allow_pickle=False)
            chunks = tuple(Chunk.from_dict(c) for c in read_json(self.path / f"{name}.chunks.json", max_bytes=1 << 40))
            extras = {
                kind: np.load(self.path / f"{name}.{kind}.npy", mmap_mode="c", allow_pickle=False)
                for kind in self._extra_kinds()
            }
        except (OSError, ValueError, KeyError) as exc:
            raise IndexCorruptError(f"Segment {name} of {self.path} is unreadable ({exc}); re-index") from exc
        if tokens.ndim != 2 or tokens.shape[1] != self.dim or offsets.shape != (len(chunks) + 1,):
            raise IndexCorruptError(f"Segment {name} of {self.path} has inconsistent shapes; re-index")
        if int(offsets[-1]) != tokens.shape[0]:
            raise IndexCorruptError(f"Segment {name} of {self.path}: offsets do not cover the token matrix")
        alive = np.ones(len(chunks), dtype=bool)
        alive[np.asarray(dead, dtype=np.int64)] = False
        return _Segment(name, tokens, offsets, chunks, alive, extras)

    def _extra_kinds(self) -> tuple[str, ...]:
        return {"exact": (), "int8": ("int8", "scales"), "binary": ("binary",), "muvera": ("fde",)}[
            self.settings.first_stage
        ]

    # -- writing ---------------------------------------------------------------------------------------------------
    def _clean_orphans(self) -> None:
        """Remove files a crashed writer left behind (called on the first write, under the writer lock)."""
        if self.path is None or self._cleaned:
            return
        live = {s.name for s in self._segments}
        for file in self.path.iterdir():
            match = _SEGMENT_FILE.match(file.name)
            orphan = (match and match.group(1) not in live) or (
                file.name.startswith(".seg-") and file.name.endswith(".tmp")
            )
            if orphan:
                with contextlib.suppress(OSError):
                    file.unlink()
        self._cleaned = True

    def _make_segment(self, chunks: Sequence[Chunk], vectors: list[np.ndarray]) -> _Segment:
        name = f"seg-{self._next_id:06d}"
        torch = require("torch", "multivector", "multi-vector stores")
        tokens = np.empty((sum(v.shape[0] for v in vectors), self.dim), dtype=np.float16)
        row = 0
        for matrix in vectors:  # torch converts to float16 with vector instructions (numpy does it in software)
            tokens[row : row + matrix.shape[0]] = torch.from_numpy(np.ascontiguousarray(matrix)).half().numpy()
            row += matrix.shape[0]
        offsets = np.zeros(len(vectors) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([v.shape[0] for v in vectors])
        extras = self._first_stage_data(tokens, offsets)
        if self.path is not None:
            for kind, array in (("tokens", tokens), ("offsets", offsets), *extras.items()):
                save_npy(self.path / f"{name}.{kind}.npy", array)
            atomic_write_json(self.path / f"{name}.chunks.json", [c.to_dict() for c in chunks])
            fsync_dir(self.path)
            return self._load_segment(name, [])
        return _Segment(name, tokens, offsets, tuple(chunks), np.ones(len(chunks), dtype=bool), extras)

    def _first_stage_data(self, tokens: np.ndarray, offsets: np.ndarray) -> dict[str, np.ndarray]:
        kind = self.settings.first_stage
        if kind == "int8":
            codes, scales = quantize_int8(tokens)
            return {"int8": codes, "scales": scales}
        if kind == "binary":
            return {"binary": quantize_binary(tokens)}
        if kind == "muvera":
            assert self._muvera is not None
            pages = [tokens[a:b].astype(np.float32) for a, b in zip(offsets[:-1], offsets[1:])]
            return {"fde": self._muvera.encode_documents(pages).astype(np.float16)}
        return {}

    def _commit_in_memory(
        self, segments: list[_Segment], dropped: set[str] | None = None, added: _Segment | None = None
    ) -> None:
        """Make ``segments`` live; the document index is updated for ``dropped``/``added`` or rebuilt (None)."""
        docs = self._docs if dropped is not None else {}
        for doc_id in dropped or ():
            docs.pop(doc_id, None)
        for seg in ([added] if added is not None else []) if dropped is not None else segments:
            for i in np.nonzero(seg.alive)[0]:
                docs.setdefault(seg.chunks[i].doc_id, []).append((seg.name, int(i)))
        self._segments = segments
        self._docs = docs

    def _commit(self, segments: list[_Segment], dropped: set[str] | None = None, added: _Segment | None = None) -> None:
        """Write the state (the commit point), then make ``segments`` the live set."""
        if self.path is not None:
            atomic_write_json(
                self.path / STATE_NAME,
                {
                    "format_version": STATE_VERSION,
                    "dim": self.dim,
                    "first_stage": self.settings.first_stage,
                    "next_id": self._next_id,
                    "segments": [
                        {
                            "name": s.name,
                            "pages": len(s.chunks),
                            "tokens": int(s.offsets[-1]),
                            "dead": np.nonzero(~s.alive)[0].tolist(),
                        }
                        for s in segments
                    ],
                },
            )
        self._commit_in_memory(segments, dropped, added)

    def _without(self, doc_ids: set[str]) -> tuple[list[_Segment], int]:
        """The segments with every live page of ``doc_ids`` tombstoned, and how many pages that is."""
        dead: dict[str, list[int]] = {}
        for doc_id in doc_ids:
            for name, page in self._docs.get(doc_id, ()):
                dead.setdefault(name, []).append(page)
        segments = []
        for seg in self._segments:
            pages = dead.get(seg.name)
            if pages:
                alive = seg.alive.copy()
                alive[pages] = False
                seg = _Segment(seg.name, seg.tokens, seg.offsets, seg.chunks, alive, seg.extras)  # noqa: PLW2901
            segments.append(seg)
        return segments, sum(len(p) for p in dead.values())

    def replace_documents(self, doc_ids: Sequence[str], chunks: Sequence[Chunk], vectors: Sequence[np.ndarray]) -> None:
        """Drop every page of ``doc_ids`` (and of the chunks' documents) and add ``chunks`` in one commit."""
        checked = check_token_matrices(chunks, vectors, self.dim)
        with self._lock:
            self._clean_orphans()
            dropped = set(doc_ids) | {c.doc_id for c in chunks}
            segments, _ = self._without(dropped)
            added = self._make_segment(chunks, checked) if chunks else None
            if added is not None:
                segments.append(added)
                self._next_id += 1
            self._commit(segments, dropped, added)
            self._maybe_compact()

    def delete_documents(self, doc_ids: Sequence[str]) -> int:
        with self._lock:
            self._clean_orphans()
            segments, removed = self._without(set(doc_ids))
            if removed:
                self._commit(segments, set(doc_ids))
                self._maybe_compact()
            return removed

    def _maybe_compact(self) -> None:
        total = sum(int(s.offsets[-1]) for s in self._segments)
        dead = total - self.token_count()
        if total and dead / total > self.compact_ratio:
            self.compact()
        elif len(self._segments) > self.max_segments:
            self.compact(first=self.max_segments // 2)  # merge the newest (smallest) half: amortised O(n log n)

    def compact(self, first: int = 0) -> None:
        """Rewrite the live pages of segments ``first:`` (all by default) into one segment, streamed through a
        memory map, and delete the old files once the new state is committed."""
        with self._lock:
            self._clean_orphans()
            keep, old = self._segments[:first], self._segments[first:]
            live = [(s, np.nonzero(s.alive)[0]) for s in old]
            chunks = [s.chunks[i] for s, idx in live for i in idx]
            merged = []
            if chunks:
                merged = [self._write_compacted(live, chunks)]
                self._next_id += 1
            self._commit(keep + merged)
            if self.path is not None:
                for seg in old:
                    for file in self.path.glob(f"{seg.name}.*"):
                        with contextlib.suppress(OSError):
                            file.unlink()

    def _write_compacted(self, live: list[tuple[_Segment, np.ndarray]], chunks: list[Chunk]) -> _Segment:
        name = f"seg-{self._next_id:06d}"
        lengths = np.concatenate([s.lengths[idx] for s, idx in live])
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum(lengths)
        arrays: dict[str, np.ndarray] = {}
        kinds = ("tokens", *self._extra_kinds())
        if self.path is None:
            for kind in kinds:
                arrays[kind] = np.concatenate(list(self._live_rows(live, kind)))
            return _Segment(name, arrays.pop("tokens"), offsets, tuple(chunks), np.ones(len(chunks), bool), arrays)
        for kind in kinds:
            first = live[0][0].tokens if kind == "tokens" else live[0][0].extras[kind]
            rows = int(offsets[-1]) if kind != "fde" else len(chunks)
            final = self.path / f"{name}.{kind}.npy"
            tmp = self.path / f".{name}.{kind}.npy.tmp"
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=first.dtype, shape=(rows, *first.shape[1:]))
            cursor = 0
            for block in self._live_rows(live, kind):
                out[cursor : cursor + block.shape[0]] = block
                cursor += block.shape[0]
            out.flush()
            del out
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
            os.replace(tmp, final)
        save_npy(self.path / f"{name}.offsets.npy", offsets)
        atomic_write_json(self.path / f"{name}.chunks.json", [c.to_dict() for c in chunks])
        fsync_dir(self.path)
        return self._load_segment(name, [])

    @staticmethod
    def _live_rows(live: list[tuple[_Segment, np.ndarray]], kind: str) -> Iterator[np.ndarray]:
        for seg, idx in live:
            source = seg.tokens if kind == "tokens" else seg.extras[kind]
            if kind == "fde":
                yield np.asarray(source[idx])
                continue
            if len(idx) == 0:
                continue
            breaks = np.nonzero(np.diff(idx) != 1)[0] + 1  # runs of consecutive live pages copy in one slice
            for run in np.split(idx, breaks):
                yield np.asarray(source[seg.offsets[run[0]] : seg.offsets[run[-1] + 1]])

    def close(self) -> None:
        self._segments = []

    # -- search ----------------------------------------------------------------------------------------------------
    def _torch(self) -> tuple[Any, str, Any]:
        torch = require("torch", "multivector", "MaxSim search")
        device = self._device or ("cuda" if torch.cuda.is_available() else "cpu")
        wanted = self.settings.compute_dtype
        if wanted == "auto":
            wanted = "float16" if device.startswith("cuda") else "float32"
        if wanted == "float16" and device == "cpu":
            raise ConfigError("float16 math on a CPU is very slow; use compute_dtype='float32' or 'bfloat16'")
        return torch, device, getattr(torch, wanted)  # the torch dtype named by the setting

    def search(
        self, queries: Sequence[np.ndarray], k: int, filters: Filters | None = None, *, exact: bool = False
    ) -> list[list[tuple[Chunk, float]]]:
        """Top ``k`` pages by MaxSim for each query matrix, best first (ties broken by insertion order).

        With a first stage configured and more live pages than ``candidates``, each query's best ``candidates``
        pages by the approximate score are rescored exactly; ``exact=True`` scores every page exactly.
        """
        check_filters(filters)
        queries = [self._check_query(q) for q in queries]
        segments = self._segments
        selections = [
            np.nonzero(s.alive & np.array([chunk_matches(c, filters) for c in s.chunks], dtype=bool))[0]
            if filters
            else np.nonzero(s.alive)[0]
            for s in segments
        ]
        n_pages = sum(len(sel) for sel in selections)
        if not queries or n_pages == 0 or k < 1:
            return [[] for _ in queries]
        torch, device, dtype = self._torch()
        qmat = torch.from_numpy(np.concatenate(queries)).to(device=device, dtype=dtype)
        qsum = query_indicator(torch, queries, device)
        use_first = self.settings.first_stage != "exact" and not exact and n_pages > self.settings.candidates
        if use_first:
            approx = np.concatenate(
                [self._approx_scores(torch, s, sel, queries, qmat, qsum) for s, sel in zip(segments, selections)],
                axis=1,
            )
            refs = [(si, int(p)) for si, sel in enumerate(selections) for p in sel]
            wanted = [top_k(row, self.settings.candidates) for row in approx]
            union = np.unique(np.concatenate(wanted))
            chosen = [[refs[i] for i in union if refs[i][0] == si] for si in range(len(segments))]
            exact_sel = [np.array([p for _, p in c], dtype=np.int64) for c in chosen]
            scores = self._exact_all(torch, segments, exact_sel, qmat, qsum, device, dtype)
            flat_refs = [(si, int(p)) for si, sel in enumerate(exact_sel) for p in sel]
            index = {ref: i for i, ref in enumerate(flat_refs)}
            mask = np.full_like(scores, -np.inf)
            for q, best in enumerate(wanted):
                mask[q, [index[refs[i]] for i in best]] = 0.0
            scores = scores + mask
        else:
            scores = self._exact_all(torch, segments, selections, qmat, qsum, device, dtype)
            flat_refs = [(si, int(p)) for si, sel in enumerate(selections) for p in sel]
        results = []
        for row in scores:
            finite = int(np.isfinite(row).sum())
            best = top_k(np.where(np.isfinite(row), row, -np.inf), min(k, finite))
            results.append([(segments[flat_refs[i][0]].chunks[flat_refs[i][1]], float(row[i])) for i in best])
        return results

    def _check_query(self, matrix: np.ndarray) -> np.ndarray:
        array = np.asarray(matrix, dtype=np.float32)
        if array.ndim != 2 or array.shape[1] != self.dim or array.shape[0] < 1:
            raise InvalidInputError(f"A query must be a (tokens >= 1, {self.dim}) matrix, got shape {array.shape}")
        if not np.all(np.isfinite(array)):
            raise InvalidInputError("Query vectors contain NaN or Inf")
        return array

    def _exact_all(
        self,
        torch: Any,
        segments: list[_Segment],
        selections: list[np.ndarray],
        qmat: Any,
        qsum: Any,
        device: str,
        dtype: Any,
    ) -> np.ndarray:
        parts = [
            streamed_maxsim(torch, seg, sel, qmat, qsum, self.settings.block_tokens, device=device, dtype=dtype)
            for seg, sel in zip(segments, selections)
        ]
        return np.concatenate(parts, axis=1) if parts else np.zeros((qsum.shape[0], 0), np.float32)

    def _approx_scores(
        self, torch: Any, seg: _Segment, sel: np.ndarray, queries: list[np.ndarray], qmat: Any, qsum: Any
    ) -> np.ndarray:
        _, device, dtype = self._torch()
        kind = self.settings.first_stage
        if kind == "muvera":
            assert self._muvera is not None
            qfde = torch.from_numpy(self._muvera.encode_queries(queries))
            out = np.empty((len(queries), len(sel)), dtype=np.float32)
            step = max(1, self.settings.block_tokens // 8)
            for i in range(0, len(sel), step):
                block = torch.from_numpy(np.asarray(seg.extras["fde"][sel[i : i + step]], dtype=np.float32))
                out[:, i : i + step] = (qfde @ block.T).numpy()
            return out
        if kind == "int8":

            def rows(s: _Segment, a: int, b: int) -> Any:
                codes = torch.from_numpy(s.extras["int8"][a:b]).to(device=device, dtype=dtype)
                return codes * torch.from_numpy(s.extras["scales"][a:b]).to(device=device, dtype=dtype)[:, None]

        else:
            lut = torch.from_numpy(np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1) * 2.0 - 1.0)
            lut = lut.to(device=device, dtype=dtype)

            def rows(s: _Segment, a: int, b: int) -> Any:
                packed = torch.from_numpy(s.extras["binary"][a:b]).to(device).long()
                return lut[packed].reshape(b - a, -1)[:, : self.dim]

        return streamed_maxsim(torch, seg, sel, qmat, qsum, self.settings.block_tokens, rows=rows)
