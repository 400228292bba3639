"""The settings of :class:`ragloom.stores.compressed.CompressedVectorStore`: which first stages and rescorings
exist, their default oversampling, the checks run before a store opens."""

from __future__ import annotations

from typing import Literal

from ragloom.errors import InvalidInputError
from ragloom.stores.binary_ivf import check_ivf_options

__all__ = ["DEFAULT_OVERSAMPLE", "FirstStage", "Rescore", "checked_oversample"]

FirstStage = Literal["binary", "int8", "fp32"]
Rescore = Literal["fp32", "int8"]
DEFAULT_OVERSAMPLE: dict[str, int] = {"binary": 100, "int8": 2, "fp32": 1}
"""Candidates per result when ``oversample`` is not given, from ``python -m benchmarks scale dense`` (docs/
compression.md): binary reached recall@10 1.000 of exact at 100 (0.94 at 30) on 1M clustered vectors; int8
was exact at 1."""


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
