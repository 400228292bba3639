"""Fixtures for the CLI and server tests: a tiny random masked LM (for SPLADE) sharing the tiny BERT's tokenizer."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_mlm_dir(tiny_bert_factory: Callable[..., Path]) -> Path:
    """A tiny random BertForMaskedLM (SPLADE's architecture) with the tiny BERT's WordPiece vocabulary."""
    return tiny_bert_factory("tiny-mlm", seed=1, layers=1, masked_lm=True)
