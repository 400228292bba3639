"""The one MaxSim entry point: its numpy and torch backends agree, and the store and the reranker use it."""

from __future__ import annotations

import numpy as np
import pytest

from ragloom.errors import InvalidInputError
from ragloom.stores.maxsim import maxsim_scores


def _brute(q: np.ndarray, d: np.ndarray) -> float:
    return float(sum(max(float(a @ b) for b in d) for a in q)) if len(d) else 0.0


def test_backends_agree_with_the_definition() -> None:
    pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    queries = [rng.standard_normal((n, 8)).astype(np.float32) for n in (1, 3, 5)]
    documents = [rng.standard_normal((n, 8)).astype(np.float32) for n in (4, 0, 7, 7, 2)]
    expected = np.array([[_brute(q, d) for d in documents] for q in queries], dtype=np.float32)
    for backend in ("numpy", "torch"):
        got = maxsim_scores(queries, documents, backend=backend)
        assert got.shape == (3, 5) and got.dtype == np.float32
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    assert maxsim_scores(queries, documents, backend="torch")[:, 1].tolist() == [0.0, 0.0, 0.0]


def test_bad_shapes_and_backends_are_refused() -> None:
    q = np.ones((2, 4), np.float32)
    with pytest.raises(InvalidInputError, match="maxsim needs"):
        maxsim_scores([q], [np.ones((3, 5), np.float32)])
    with pytest.raises(InvalidInputError, match="backend"):
        maxsim_scores([q], [q], backend="cuda")  # type: ignore[arg-type]


def test_store_and_reranker_share_it() -> None:
    import ragloom.stores.multivector as store
    from ragloom.adapters.multivector import rerank
    from ragloom.stores import maxsim

    assert store.segment_max is maxsim.segment_max and store.streamed_maxsim is maxsim.streamed_maxsim
    assert rerank.maxsim_scores is maxsim.maxsim_scores
