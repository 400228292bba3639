"""The settings of :class:`ragloom.stores.compressed.CompressedVectorStore`: which first stages and rescorings
exist, their default oversampling, the checks run before a store opens.

Three stages (``middle="int8"``): the binary first stage proposes ``k * oversample`` candidates, int8 codes held in
RAM (one byte a dimension) rescore them all, and only the best ``k * rescore_oversample`` are rescored with the
float32 vectors read from the memory-mapped file — many cheap candidates, few expensive reads."""

from __future__ import annotations

from typing import Literal

from ragloom.errors import InvalidInputError
from ragloom.stores.binary_ivf import check_ivf_options

__all__ = [
    "DEFAULT_MIDDLE_OVERSAMPLE",
    "DEFAULT_OVERSAMPLE",
    "DEFAULT_RESCORE_OVERSAMPLE",
    "FirstStage",
    "Middle",
    "Rescore",
    "checked_middle",
    "checked_oversample",
    "middle_oversample",
]

FirstStage = Literal["binary", "int8", "fp32"]
Rescore = Literal["fp32", "int8"]
Middle = Literal["int8"]
DEFAULT_OVERSAMPLE: dict[str, int] = {"binary": 100, "int8": 2, "fp32": 1}
"""Candidates per result when ``oversample`` is not given, from ``python -m benchmarks scale dense`` (docs/
compression.md): binary reached recall@10 1.000 of exact at 100 (0.94 at 30) on 1M clustered vectors; int8
was exact at 1."""
DEFAULT_MIDDLE_OVERSAMPLE = 100
"""First-stage candidates per result with the int8 middle stage, per :data:`MIDDLE_ROWS_PER_STEP` rows (docs/
compression.md, ``scale dense`` and ``scale ten-million``)."""
MIDDLE_ROWS_PER_STEP = 2_000_000
"""With the middle stage and no ``oversample`` given, the candidates grow with the store: a fixed number of probed
lists holds more rows, and the true neighbours sit deeper in the Hamming order (10M rows: 100 candidates per
result gave recall@10 0.763, 500 gave 1.000; 1M rows: 50 already gave 1.000)."""


def middle_oversample(rows: int) -> int:
    """The default first-stage oversampling of a three-stage store holding ``rows`` rows."""
    return DEFAULT_MIDDLE_OVERSAMPLE * max(1, -(-rows // MIDDLE_ROWS_PER_STEP))


DEFAULT_RESCORE_OVERSAMPLE = 5
"""Candidates per result the int8 middle stage hands to the float32 rescoring (docs/compression.md)."""


def checked_oversample(
    first_stage: str,
    rescore: str | None,
    oversample: int | None,
    flush_rows: int,
    *,
    use_faiss: bool | None = None,
    ivf_lists: int | None = None,
    nprobe: int | None = None,
) -> int:
    """Refuse settings that cannot work (a typed error saying what to pass instead); returns the oversampling."""
    if first_stage not in ("binary", "int8", "fp32"):
        raise InvalidInputError(f"first_stage must be 'binary', 'int8' or 'fp32', got {first_stage!r}")
    if rescore not in ("fp32", "int8", None):
        raise InvalidInputError(f"rescore must be 'fp32', 'int8' or None, got {rescore!r}")
    if first_stage == "binary" and rescore is None:
        raise InvalidInputError("A binary first stage needs rescore='int8' or 'fp32' (Hamming is not a score)")
    if first_stage == "fp32" and rescore is not None:
        raise InvalidInputError("The fp32 first stage is exact already; use rescore=None")
    if first_stage == rescore:
        raise InvalidInputError(f"rescore={rescore!r} repeats the first stage; use rescore=None")
    check_ivf_options(first_stage, ivf_lists, nprobe, use_faiss)
    oversample = DEFAULT_OVERSAMPLE[first_stage] if oversample is None else oversample
    if oversample < 1 or flush_rows < 1:
        raise InvalidInputError("oversample and flush_rows must be >= 1")
    return oversample


def checked_middle(
    first_stage: str, rescore: str | None, middle: str | None, rescore_oversample: int | None
) -> int | None:
    """Refuse a middle stage that cannot help; returns the candidates per result sent on to the final rescoring
    (None without a middle stage)."""
    if middle is None:
        if rescore_oversample is not None:
            raise InvalidInputError("rescore_oversample needs middle='int8' (a three-stage search)")
        return None
    if middle != "int8":
        raise InvalidInputError(f"middle must be 'int8' or None, got {middle!r}")
    if first_stage != "binary" or rescore != "fp32":
        raise InvalidInputError(
            "middle='int8' sits between a binary first stage and fp32 rescoring: pass first_stage='binary', "
            f"rescore='fp32' (got {first_stage!r}, {rescore!r})"
        )
    rescore_oversample = DEFAULT_RESCORE_OVERSAMPLE if rescore_oversample is None else rescore_oversample
    if rescore_oversample < 1:
        raise InvalidInputError(f"rescore_oversample must be >= 1, got {rescore_oversample}")
    return rescore_oversample
