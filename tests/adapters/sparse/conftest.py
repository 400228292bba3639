"""Tiny masked-LM checkpoints for SPLADE tests, built from configs and saved like real models.

``lexical_splade_dir`` is a real BertForMaskedLM whose weights are set so that SPLADE reproduces each input's own
wordpieces (a bag of words with weight ≈ log(1 + 9.6)): every token gets a sparse binary code as its embedding,
the transformer layer passes the embedding through (its output projections are zero), and the tied decoder
scores each vocabulary entry by its code overlap with the token, minus a bias that silences partial overlaps.
Retrieval with it is lexical and predictable, which the contract tests need. ``random_mlm_dir`` is an ordinary
random masked LM for checking the pooling arithmetic against a straightforward reference.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def _copy_tokenizer(source: Path, folder: Path) -> int:
    from transformers import AutoTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        if (source / name).exists():
            shutil.copy(source / name, folder / name)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    vocab_size = len(tokenizer)
    assert vocab_size == len((source / "vocab.txt").read_text(encoding="utf-8").split())
    return vocab_size


def _codes(vocab_size: int, hidden: int, ones: int, seed: int):  # type: ignore[no-untyped-def]
    """Binary codes with ``ones`` set bits; any two share at most 2 bits, so only a token matches itself."""
    import numpy as np

    rng = np.random.default_rng(seed)
    codes = np.zeros((vocab_size, hidden), dtype=np.float32)
    for row in range(vocab_size):
        while True:
            code = np.zeros(hidden, dtype=np.float32)
            code[rng.choice(hidden, size=ones, replace=False)] = 1.0
            if row == 0 or (codes[:row] @ code).max() <= 2:
                codes[row] = code
                break
    return codes


def _lexical_model(tokenizer_dir: Path, folder: Path, seed: int) -> Path:
    import torch
    from transformers import BertConfig, BertForMaskedLM

    vocab_size = _copy_tokenizer(tokenizer_dir, folder)
    hidden, ones = 64, 6
    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        hidden_act="relu",
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = BertForMaskedLM(config)
    with torch.no_grad():
        embeddings = model.bert.embeddings
        embeddings.word_embeddings.weight.copy_(torch.from_numpy(_codes(vocab_size, hidden, ones, seed)))
        embeddings.position_embeddings.weight.zero_()
        embeddings.token_type_embeddings.weight.zero_()
        layer = model.bert.encoder.layer[0]
        for projection in (layer.attention.output.dense, layer.output.dense):
            projection.weight.zero_()
            projection.bias.zero_()
        transform = model.cls.predictions.transform
        transform.dense.weight.copy_(torch.eye(hidden))
        transform.dense.bias.zero_()
        model.cls.predictions.bias.fill_(-9.0)
    assert model.get_output_embeddings().weight.data_ptr() == embeddings.word_embeddings.weight.data_ptr()
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def lexical_splade_dir(tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _lexical_model(tiny_bert_dir, tmp_path_factory.mktemp("lexical-splade"), seed=0)


@pytest.fixture(scope="session")
def lexical_splade_other_dir(tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Same vocabulary and shapes as lexical_splade_dir, other codes (the same-shape mismatch case)."""
    return _lexical_model(tiny_bert_dir, tmp_path_factory.mktemp("lexical-splade-other"), seed=1)


@pytest.fixture(scope="session")
def random_mlm_dir(tiny_bert_factory: Callable[..., Path]) -> Path:
    """A tiny random BertForMaskedLM (untrained SPLADE) with the tiny BERT's vocabulary."""
    return tiny_bert_factory("random-mlm", seed=0, masked_lm=True)
