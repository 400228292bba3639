"""Token pooling, attention-based pruning, quantisation, MUVERA and the memory estimate."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ragloom.compression import (
    MultiVectorSettings,
    dequantize_int8,
    estimate_memory,
    pool_tokens,
    pooled_count,
    prune_by_importance,
    quantize_binary,
    quantize_int8,
    unpack_binary,
)
from ragloom.errors import ConfigError, InvalidInputError
from ragloom.muvera import Muvera, MuveraConfig


@pytest.mark.parametrize(("n", "factor"), [(1030, 3), (100, 2), (37, 4), (5, 1), (3, 8)])
def test_pooling_keeps_the_expected_fraction(n: int, factor: int) -> None:
    rng = np.random.default_rng(n)
    vectors = rng.standard_normal((n, 16)).astype(np.float32)
    pooled = pool_tokens(vectors, factor)
    assert pooled.shape == (pooled_count(n, factor), 16) == (math.ceil(n / factor), 16)


def test_pooling_merges_near_duplicates() -> None:
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((4, 8))
    vectors = np.repeat(centres, 3, axis=0) + 1e-3 * rng.standard_normal((12, 8))
    pooled = pool_tokens(vectors, 3)
    assert pooled.shape == (4, 8)
    assert np.allclose(np.sort(pooled, axis=0), np.sort(centres, axis=0), atol=1e-2)


def test_pruning_keeps_tokens_above_mean_plus_k_std() -> None:
    vectors = np.eye(10, dtype=np.float32)
    importance = np.array([0.01] * 8 + [0.5, 0.4])
    kept, mask = prune_by_importance(vectors, importance, k=0.0)
    assert mask.tolist() == [False] * 8 + [True, True] and kept.shape == (2, 10)
    kept, _ = prune_by_importance(vectors, importance, k=0.0, min_tokens=5)
    assert kept.shape[0] == 5
    kept, _ = prune_by_importance(vectors, importance, k=-10.0)
    assert kept.shape[0] == 10
    with pytest.raises(InvalidInputError):
        prune_by_importance(vectors, importance[:3])


def test_quantisation_round_trips() -> None:
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((50, 24)).astype(np.float32)
    codes, scales = quantize_int8(vectors)
    assert codes.dtype == np.int8 and np.abs(dequantize_int8(codes, scales) - vectors).max() < 0.03
    packed = quantize_binary(vectors)
    assert packed.shape == (50, 3) and packed.dtype == np.uint8
    assert np.array_equal(unpack_binary(packed, 24), np.where(vectors > 0, 1.0, -1.0))


def test_muvera_approximates_chamfer_similarity() -> None:
    rng = np.random.default_rng(2)
    dim = 32
    docs = [rng.standard_normal((int(rng.integers(20, 60)), dim)) for _ in range(40)]
    docs = [d / np.linalg.norm(d, axis=1, keepdims=True) for d in docs]
    query = docs[7][:6] + 0.2 * rng.standard_normal((6, dim))
    encoder = Muvera(MuveraConfig(k_sim=3, d_proj=16, repetitions=16), dim)
    approx = encoder.encode_documents(docs) @ encoder.encode_queries([query])[0]
    exact = np.array([(query @ d.T).max(1).sum() for d in docs])
    assert encoder.encode_documents(docs).shape == (40, 16 * 8 * 16)
    assert np.corrcoef(approx, exact)[0, 1] > 0.4  # unrelated documents score alike; the match stands out
    assert int(np.argmax(approx)) == 7
    again = Muvera(MuveraConfig(k_sim=3, d_proj=16, repetitions=16), dim).encode_documents(docs[:2])
    assert np.array_equal(again, encoder.encode_documents(docs[:2]))  # deterministic per seed


def test_estimate_memory_before_indexing() -> None:
    plain = estimate_memory(1000)
    assert plain.tokens_per_page == 1030
    assert plain.disk_bytes >= 1000 * 1030 * 128 * 2
    assert plain.scan_bytes_per_query == 1000 * 1030 * 128 * 2
    pooled = estimate_memory(1000, MultiVectorSettings(pool_factor=3))
    assert pooled.tokens_per_page == 344 and pooled.disk_bytes < plain.disk_bytes / 2.9
    binary = estimate_memory(1000, MultiVectorSettings(first_stage="binary", candidates=100))
    assert binary.first_stage_bytes == 1000 * 1030 * 16
    assert binary.scan_bytes_per_query < plain.scan_bytes_per_query / 5
    muvera = estimate_memory(1000, MultiVectorSettings(first_stage="muvera"))
    assert muvera.first_stage_bytes == 1000 * 5120 * 2
    assert "pages" in str(muvera)
    with pytest.raises(ConfigError):
        MultiVectorSettings(pool_factor=0)
    with pytest.raises(ConfigError):
        MultiVectorSettings(first_stage="faiss")  # type: ignore[arg-type]
    assert MultiVectorSettings.from_dict(MultiVectorSettings(pool_factor=2).to_dict()) == MultiVectorSettings(
        pool_factor=2
    )
