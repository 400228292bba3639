"""Tiny random ColPali, ColQwen2 and ColBERT models built from configs, and small PDFs cut from the sample data."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ragloom.testing import CONTRACT_DOCUMENTS

SAMPLE_DATA = Path(__file__).resolve().parents[3] / "recipes" / "sample_data"
EMBEDDING_DIM = 16


def _gemma_tokenizer():
    from transformers import GemmaTokenizer

    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]
    chars = ["▁", *[chr(c) for c in range(ord("a"), ord("z") + 1)], *[chr(c) for c in range(ord("A"), ord("Z") + 1)]]
    chars += list("0123456789.,;:!?'\"()-")
    byte_tokens = [f"<0x{i:02X}>" for i in range(256)]
    vocab = {tok: i for i, tok in enumerate(specials + chars + byte_tokens)}
    tokenizer = GemmaTokenizer(vocab=vocab, merges=[])
    assert len(tokenizer) == len(vocab)
    return tokenizer


def _build_colpali(folder: Path, seed: int) -> Path:
    import torch
    from transformers import ColPaliConfig, ColPaliForRetrieval, ColPaliProcessor, SiglipImageProcessorPil

    image_processor = SiglipImageProcessorPil(size={"height": 32, "width": 32})
    image_processor.image_seq_length = 16  # (32 / 8) ** 2 patches
    processor = ColPaliProcessor(image_processor=image_processor, tokenizer=_gemma_tokenizer())
    vocab_size = len(processor.tokenizer)
    assert vocab_size == 79 + 256 + 1 + 1152  # base vocab + bytes + <image> + ColPali's <loc>/<seg> tokens
    config = ColPaliConfig(
        vlm_config={
            "model_type": "paligemma",
            "vision_config": {
                "model_type": "siglip_vision_model", "hidden_size": 32, "intermediate_size": 64,
                "num_hidden_layers": 2, "num_attention_heads": 2, "image_size": 32, "patch_size": 8,
                "projection_dim": 32,
            },
            "text_config": {
                "model_type": "gemma", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 16, "vocab_size": vocab_size,
            },
            "image_token_id": processor.image_token_id,
            "projection_dim": 32,
            "vocab_size": vocab_size,
        },
        embedding_dim=EMBEDDING_DIM,
    )  # fmt: skip
    torch.manual_seed(seed)
    ColPaliForRetrieval(config).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def _build_colqwen2(folder: Path, seed: int) -> Path:
    import torch
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import (
        ColQwen2Config,
        ColQwen2ForRetrieval,
        ColQwen2Processor,
        Qwen2Tokenizer,
        Qwen2VLImageProcessorPil,
    )

    vocab = {"<|endoftext|>": 0, **{c: i + 1 for i, c in enumerate(sorted(ByteLevel.alphabet()))}}
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=[], bos_token=None)
    specials = ["<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
    tokenizer.add_special_tokens({"additional_special_tokens": specials})
    assert len(tokenizer) == 257 + len(specials)
    ids = dict(zip(specials, tokenizer.convert_tokens_to_ids(specials)))
    image_processor = Qwen2VLImageProcessorPil(
        min_pixels=16 * 16, max_pixels=64 * 64, patch_size=8, merge_size=2, temporal_patch_size=2
    )
    processor = ColQwen2Processor(image_processor=image_processor, tokenizer=tokenizer)
    config = ColQwen2Config(
        vlm_config={
            "model_type": "qwen2_vl", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": len(tokenizer),
            "rope_scaling": {"mrope_section": [2, 3, 3], "rope_type": "default", "type": "default"},
            "image_token_id": ids["<|image_pad|>"], "video_token_id": ids["<|video_pad|>"],
            "vision_start_token_id": ids["<|vision_start|>"], "vision_end_token_id": ids["<|vision_end|>"],
            "eos_token_id": 0, "pad_token_id": 0,
            "vision_config": {
                "depth": 2, "embed_dim": 32, "hidden_size": 32, "num_heads": 2, "mlp_ratio": 2, "patch_size": 8,
                "spatial_merge_size": 2, "temporal_patch_size": 2, "in_chans": 3,
            },
        },
        embedding_dim=EMBEDDING_DIM,
    )  # fmt: skip
    torch.manual_seed(seed)
    ColQwen2ForRetrieval(config).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_colpali_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ColPaliForRetrieval: tiny SigLIP (32 px, 8 px patches) + tiny Gemma, 16-d embeddings, char tokenizer."""
    return _build_colpali(tmp_path_factory.mktemp("tiny-colpali"), seed=0)


@pytest.fixture(scope="session")
def tiny_colpali_other_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Same architecture and dimension as tiny_colpali_dir, other weights (the silent-mismatch case)."""
    return _build_colpali(tmp_path_factory.mktemp("tiny-colpali-other"), seed=1)


@pytest.fixture(scope="session")
def tiny_colqwen2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ColQwen2ForRetrieval: tiny Qwen2-VL (8 px patches, 2x2 merge, <= 64x64 px images), byte-level tokenizer."""
    return _build_colqwen2(tmp_path_factory.mktemp("tiny-colqwen2"), seed=0)


def _colbert_vocab() -> list[str]:
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[Q]", "[D]"]
    chars = [chr(c) for c in range(ord("a"), ord("z") + 1)] + list("0123456789.,;:!?'\"()-[]/")
    pieces = ["##" + c for c in "abcdefghijklmnopqrstuvwxyz0123456789"]
    text = " ".join(d.text for d in CONTRACT_DOCUMENTS).lower()
    words = sorted(set(re.findall(r"[a-z]+", text)) | {"food", "kitchen", "anything", "galaxy", "court"})
    return specials + chars + pieces + [w for w in words if w not in chars]


def _build_colbert(folder: Path, seed: int) -> Path:
    import torch
    from safetensors.torch import save_file
    from transformers import BertConfig, BertModel, BertTokenizerFast

    vocab = _colbert_vocab()
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True, model_max_length=64)
    tokenizer.add_special_tokens({"additional_special_tokens": ["[Q]", "[D]"]})
    assert len(tokenizer) == len(vocab)
    tokenizer.save_pretrained(folder)
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=64,
    )  # fmt: skip
    BertModel(config).save_pretrained(folder)
    dense = folder / "1_Dense"
    dense.mkdir()
    save_file({"linear.weight": torch.randn(EMBEDDING_DIM, 32) / 32**0.5}, str(dense / "model.safetensors"))
    (dense / "config.json").write_text(json.dumps({"in_features": 32, "out_features": EMBEDDING_DIM, "bias": False}))
    (folder / "config_sentence_transformers.json").write_text(
        json.dumps({
            "query_prefix": "[Q] ", "document_prefix": "[D] ", "query_length": 24, "document_length": 48,
            "do_query_expansion": True, "attend_to_expansion_tokens": False,
        })
    )  # fmt: skip
    return folder


@pytest.fixture(scope="session")
def tiny_colbert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A PyLate-layout ColBERT: tiny BERT + 1_Dense 32->16 projection, [Q]/[D] markers, 24/48-token lengths."""
    return _build_colbert(tmp_path_factory.mktemp("tiny-colbert"), seed=0)


@pytest.fixture(scope="session")
def tiny_colbert_other_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build_colbert(tmp_path_factory.mktemp("tiny-colbert-other"), seed=1)


@pytest.fixture(scope="session")
def small_pdfs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Three 2-page PDFs cut from the sample court opinions (real text layers), written with pypdfium2."""
    import pypdfium2 as pdfium

    folder = tmp_path_factory.mktemp("pdfs")
    out = []
    for source in sorted(SAMPLE_DATA.glob("*.pdf"))[:3]:
        src = pdfium.PdfDocument(source)
        pdf = pdfium.PdfDocument.new()
        pdf.import_pages(src, [0, 1])
        target = folder / f"{source.stem}-2p.pdf"
        pdf.save(target)
        pdf.close()
        src.close()
        out.append(target)
    return out
