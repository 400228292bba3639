"""Model and index mismatch: an index reopened with anything that changes its vectors or chunks is refused with
an EncoderMismatchError naming both sides, for both stores, including the silent same-dimension cases."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ragloom.adapters.dense import DenseRetriever, TransformersDenseEncoder
from ragloom.errors import EncoderMismatchError
from ragloom.testing import CONTRACT_DOCUMENTS

BASE = {"pooling": "mean", "query_prefix": "", "document_prefix": ""}


def _cases(tiny_bert_dir: Path, wide: Path, other: Path) -> dict[str, tuple[dict[str, Any], dict[str, Any], str, str]]:
    """name -> (encoder kwargs, retriever kwargs, the fingerprint key that differs, what must be named)."""
    return {
        "other model, other dimension": ({"model": wide}, {}, "encoder.dim", "48"),
        "other model, same dimension": ({"model": other}, {}, "encoder.weights", "weights"),
        "other pooling (cls)": ({"pooling": "cls"}, {}, "encoder.pooling", "'cls'"),
        "other pooling (last)": ({"pooling": "last"}, {}, "encoder.pooling", "'last'"),
        "other query prefix": ({"query_prefix": "query: "}, {}, "encoder.query_prefix", "'query: '"),
        "other document prefix": ({"document_prefix": "passage: "}, {}, "encoder.document_prefix", "'passage: '"),
        "no normalisation": ({"normalize": False}, {}, "encoder.normalize", "False"),
        "Matryoshka truncation": ({"truncate_dim": 16}, {}, "encoder.truncate_dim", "16"),
        "other max length": ({"max_length": 48}, {}, "encoder.max_length", "48"),
        "other chunk size": ({}, {"chunk_size": 32}, "chunker.chunk_size", "32"),
        "other overlap": ({}, {"overlap": 8}, "chunker.overlap", "8"),
    }


@pytest.mark.parametrize("store", ["memory", "chroma"])
def test_every_mismatch_is_refused_naming_both_sides(
    tmp_path: Path, tiny_bert_dir: Path, tiny_bert_wide_dir: Path, tiny_bert_other_dir: Path, store: str, record: Any
) -> None:
    index = tmp_path / "index"
    built = TransformersDenseEncoder(tiny_bert_dir, dtype="float32", **BASE)
    with DenseRetriever(built, index, store=store, chunk_size=24, overlap=4) as retriever:
        retriever.add(list(CONTRACT_DOCUMENTS))
    refused = 0
    cases = _cases(tiny_bert_dir, tiny_bert_wide_dir, tiny_bert_other_dir)
    for name, (encoder_kw, retriever_kw, key, given) in cases.items():
        options = {**BASE, **encoder_kw}
        model = options.pop("model", tiny_bert_dir)
        encoder = TransformersDenseEncoder(model, dtype="float32", **options)
        settings = {"chunk_size": 24, "overlap": 4, **retriever_kw}
        with pytest.raises(EncoderMismatchError) as info:
            DenseRetriever(encoder, index, store=store, **settings)
        message = str(info.value)
        assert key in info.value.differences, (name, info.value.differences)
        stored, offered = info.value.differences[key]
        assert stored != offered, name
        assert f"index has {stored!r}" in message and given in message, (name, message)
        assert str(index) in message and "re-index" in message
        refused += 1
    # the same settings reopen fine (the matrix is not refusing everything)
    with DenseRetriever(built, index, store=store, chunk_size=24, overlap=4) as again:
        assert again.search("galaxy", k=1)
    record(f"mismatch matrix: {store}", runs=len(cases), refused=refused, accepted_when_equal=1)
