"""The segments of :class:`ragloom.stores.compressed.CompressedVectorStore`: what a segment holds, how its files are
encoded, written and opened (sizes checked, ``.npy`` without pickle), and which files in a store folder are ours.

A segment's files::

    seg-000001.rows.npy      int64 rowids of a segment's rows
    seg-000001.codes.npy     first-stage codes (uint8 packed bits, or int8)
    seg-000001.vectors.npy   rescoring vectors (float32 or int8), memory-mapped
    seg-000001.calib.npy     int8 calibration (low, step) of the segment
    seg-000001.lists.npy     binary IVF only: the IVF list of each row (int32; :mod:`ragloom.stores.binary_ivf`)
    seg-000001.middle.npy    three-stage search only: int8 codes under the store-wide calibration, held in RAM
"""

from __future__ import annotations

import contextlib
import mmap
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ragloom.errors import IndexCorruptError
from ragloom.stores.binary_ivf import IVF_FILE
from ragloom.stores.codes import Int8Calibration, matvec, pack_bits
from ragloom.stores.files import atomic_write_bytes, npy_bytes
from ragloom.stores.rows import top_k

__all__ = [
    "OWNED",
    "Segment",
    "bytes_on_disk",
    "encode_segment",
    "map_random",
    "open_segment",
    "rescored",
    "segment_candidates",
    "write_segment_files",
]

OWNED = re.compile(r"^seg-(\d{6})\.(rows|codes|vectors|calib|lists|middle)\.npy$")
"""The segment files of a store folder (anything else there is SQLite's or not ours)."""


@dataclass
class Segment:
    id: int
    rows: np.ndarray  # int64 rowids, ascending
    offset: int  # first slot in the concatenated first stage
    codes: Any  # Int8Codes (int8 first stage); binary codes until attached (then they live in BinaryCodes)
    vectors: np.ndarray | None  # memory-mapped rescoring (or fp32 first-stage) vectors
    calibration: Int8Calibration | None
    lists: np.ndarray | None = None  # IVF list of each row (binary IVF first stage) until attached
    middle: np.ndarray | None = None  # int8 middle-stage codes until attached (then they live in Int8Rows)


def map_random(array: np.ndarray) -> np.ndarray:
    """Tell the OS a memory-mapped rescoring file is read at random rows: without it every candidate's page fault
    reads ahead ~128 KiB around a 1.5 KiB row (a 10M-row file is larger than the page cache)."""
    if sys.platform != "win32" and isinstance(array, np.memmap):
        # A foreign-object probe: numpy keeps a memmap's mmap in the private ``_mmap`` (None for a view of one).
        handle = getattr(array, "_mmap", None)
        if isinstance(handle, mmap.mmap):
            with contextlib.suppress(OSError, ValueError):
                handle.madvise(mmap.MADV_RANDOM)
    return array


def encode_segment(
    vectors: np.ndarray,
    rows: np.ndarray,
    first_stage: str,
    rescore: str | None,
    threshold: np.ndarray | None,
    middle: Int8Calibration | None = None,
) -> dict[str, np.ndarray]:
    """The files of a segment: rowids, first-stage codes, rescoring vectors, int8 calibration and, with a middle
    stage, its int8 codes under the store-wide ``middle`` calibration."""
    parts: dict[str, np.ndarray] = {"rows": rows}
    if middle is not None:
        parts["middle"] = middle.encode(vectors)
    calibration = Int8Calibration.fit(vectors) if "int8" in (first_stage, rescore) else None
    if calibration is not None:
        parts["calib"] = calibration.to_array()
    if first_stage == "binary":
        assert threshold is not None
        parts["codes"] = pack_bits(vectors, threshold)
    elif first_stage == "int8":
        assert calibration is not None
        parts["codes"] = calibration.encode(vectors)
    if first_stage == "fp32" or rescore == "fp32":
        parts["vectors"] = np.ascontiguousarray(vectors, dtype=np.float32)
    elif rescore == "int8":
        assert calibration is not None
        parts["vectors"] = calibration.encode(vectors)
    return parts


def write_segment_files(path: Path, seg_id: int, parts: dict[str, np.ndarray]) -> dict[str, int]:
    """Write each part atomically; returns file name → size (what the store records). The rescoring vectors are
    replaced in ``parts`` by their memory map: from now on only the codes stay in RAM."""
    files: dict[str, int] = {}
    for part, array in parts.items():
        name = f"seg-{seg_id:06d}.{part}.npy"
        data = npy_bytes(array)
        atomic_write_bytes(path / name, data)
        files[name] = len(data)
        if part == "vectors":
            parts[part] = map_random(np.load(path / name, mmap_mode="r", allow_pickle=False))
    return files


def open_segment(path: Path, seg_id: int, n_rows: int, files: dict[str, int]) -> Segment:
    """A committed segment from its files, each checked against its recorded size and row count."""

    def array(part: str, mapped: bool = False, rows: int | None = n_rows) -> np.ndarray | None:
        name = f"seg-{seg_id:06d}.{part}.npy"
        if name not in files:
            return None
        file = path / name
        if not file.exists() or file.stat().st_size != files[name]:
            raise IndexCorruptError(f"{file} is missing or of the wrong size; restore the directory or re-index")
        try:
            loaded: np.ndarray = np.load(file, mmap_mode="r" if mapped else None, allow_pickle=False)
        except ValueError as exc:
            raise IndexCorruptError(f"{file} is not a valid .npy file ({exc}); re-index") from exc
        if rows is not None and loaded.shape[0] != rows:
            raise IndexCorruptError(f"{file} holds {loaded.shape[0]} rows, expected {rows}; re-index")
        return loaded

    rows = array("rows")
    if rows is None:
        raise IndexCorruptError(f"{path}: segment {seg_id} has no rows file; re-index")
    calib = array("calib", rows=2)
    vectors = array("vectors", mapped=True)
    seg = Segment(seg_id, rows, 0, None, map_random(vectors) if vectors is not None else None, None)
    if calib is not None:
        seg.calibration = Int8Calibration.from_array(calib)
    seg.codes = array("codes")
    seg.lists = array("lists")
    seg.middle = array("middle")
    return seg


def bytes_on_disk(path: Path) -> dict[str, int]:
    """Bytes of a store folder by file kind (rows, codes, vectors, calib, lists, ivf, sqlite, other)."""
    disk: dict[str, int] = {}
    for file in path.iterdir():
        if file.is_file():
            match = OWNED.match(file.name)
            kind = match.group(2) if match else ("sqlite" if "sqlite" in file.name else "other")
            kind = "ivf" if file.name == IVF_FILE else kind
            disk[kind] = disk.get(kind, 0) + file.stat().st_size
    return disk


def segment_candidates(
    seg: Segment, query: np.ndarray, count: int, allowed: np.ndarray | None, first_stage: str
) -> np.ndarray:
    """The best ``count`` allowed slots of one segment by its first-stage score (int8 codes or fp32 scan)."""
    end = seg.offset + seg.rows.size
    if allowed is not None:
        mine = allowed[(allowed >= seg.offset) & (allowed < end)] - seg.offset
        if mine.size == 0:
            return np.zeros(0, dtype=np.int64)
    if first_stage == "int8":
        dead = seg.rows.size - (mine.size if allowed is not None else seg.rows.size)
        if allowed is None or mine.size > seg.rows.size // 2:
            local = seg.codes.search(query, count + dead)
            if allowed is not None:
                local = local[np.isin(local, mine, assume_unique=True)]
        else:  # a small subset: decode it and score exactly
            scores = seg.codes.decode(mine) @ query
            local = mine[np.argpartition(-scores, count - 1)[:count]] if mine.size > count else mine
        result: np.ndarray = local + seg.offset
        return result
    assert seg.vectors is not None
    scores = np.asarray(seg.vectors @ query, dtype=np.float32)
    if allowed is not None:
        masked = np.full(scores.shape, -np.inf, dtype=np.float32)
        masked[mine] = scores[mine]
        scores = masked
        count = min(count, mine.size)
    return top_k(scores, count) + seg.offset


_NO_SLOT = np.iinfo(np.int64).max  # past the last segment's slots


def rescored(segments: list[Segment], query: np.ndarray, slots: np.ndarray, codes_only: bool) -> np.ndarray:
    """Scores of the candidate ``slots``: from the memory-mapped rescoring vectors (fp32, or int8 decoded), or from
    the int8 first stage's codes (``codes_only``). Slots are sorted once and split at the segments' offsets, so
    each segment's rows are read in ascending order with no per-segment mask over all candidates."""
    out = np.empty(slots.size, dtype=np.float32)
    order = np.argsort(slots)
    ordered = slots[order]
    bounds = np.searchsorted(ordered, [seg.offset for seg in segments] + [_NO_SLOT]).tolist()
    for index, seg in enumerate(segments):
        start, end = bounds[index], bounds[index + 1]
        if start == end:
            continue
        local = ordered[start:end] - seg.offset
        if codes_only:
            vectors = seg.codes.decode(local)
        else:
            assert seg.vectors is not None
            block = np.asarray(seg.vectors[local])
            if block.dtype == np.float32:
                vectors = block
            else:
                assert seg.calibration is not None
                vectors = seg.calibration.decode(block)
        out[order[start:end]] = matvec(vectors, query)
    return out
