"""A tiny long-context encoder: a random NomicBERT (RoPE, 512 positions) with a WordPiece tokenizer, saved like a
real model folder and loaded through ragloom's own loading code."""

from __future__ import annotations

from pathlib import Path

import pytest

WORDS = (
    "the a of and to in is was for on that with by as at from it be this are or an which were not but has have "
    "telescope observed distant galaxy cluster bending light quasars gravitational lensing magnified faint "
    "background sources knead dough ten minutes let bread rise warm kitchen until doubles size court held statute "
    "did apply retroactively contracts signed enactment page one two talks volcanoes lava flows describes glaciers "
    "carving valleys food café anything ok cat sat mat search query document meeting budget chair said vote"
).split()


def build_vocab() -> list[str]:
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = [chr(c) for c in range(ord("a"), ord("z") + 1)] + list("0123456789.,;:!?'\"()-[]/_")
    pieces = ["##" + c for c in "abcdefghijklmnopqrstuvwxyz0123456789"]
    return specials + chars + pieces + sorted(set(WORDS) - set(chars))


def _save_tiny_nomic(folder: Path, seed: int) -> Path:
    import torch
    from transformers import BertTokenizerFast, NomicBertConfig, NomicBertModel

    vocab = build_vocab()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True, model_max_length=512)
    tokenizer.save_pretrained(folder)
    assert len(tokenizer) == len(vocab) == tokenizer.vocab_size
    torch.manual_seed(seed)
    config = NomicBertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
        rope_parameters={"rope_type": "default", "rope_theta": 1000.0},
    )
    NomicBertModel(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_nomic_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random NomicBERT (hidden 32, 2 layers, RoPE, 512 positions) and its tokenizer."""
    return _save_tiny_nomic(tmp_path_factory.mktemp("tiny-nomic"), seed=0)


@pytest.fixture(scope="session")
def tiny_nomic_other_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Same architecture and dimension, other weights (the silent-mismatch case)."""
    return _save_tiny_nomic(tmp_path_factory.mktemp("tiny-nomic-other"), seed=1)
