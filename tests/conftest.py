"""Shared fixtures: no network, tiny random models built from configs, real-model folders when present."""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

_real_connect = socket.socket.connect


def _guarded_connect(self: socket.socket, address: object) -> object:
    host = address[0] if isinstance(address, tuple) else None
    if host is not None and self.family in (socket.AF_INET, socket.AF_INET6):
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = host == "localhost"
        if not loopback:
            raise ConnectionRefusedError(f"tests are offline: refused connection to {host}")
    return _real_connect(self, address)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test runs offline: only loopback connections are allowed."""
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)


@pytest.fixture(autouse=True)
def _isolated_ragloom_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never read or write the user's real model cache from tests."""
    monkeypatch.setenv("RAGLOOM_HOME", str(tmp_path / "ragloom-home"))


WORDS = [
    "the",
    "a",
    "of",
    "and",
    "to",
    "in",
    "is",
    "was",
    "for",
    "on",
    "that",
    "with",
    "by",
    "as",
    "at",
    "from",
    "it",
    "be",
    "this",
    "are",
    "or",
    "an",
    "which",
    "were",
    "not",
    "but",
    "has",
    "have",
    "had",
    "can",
    "will",
    "would",
    "should",
    "may",
    "been",
    "its",
    "their",
    "they",
    "there",
    "these",
    "than",
    "then",
    "into",
    "over",
    "under",
    "about",
    "after",
    "before",
    "telescope",
    "observed",
    "distant",
    "galaxy",
    "cluster",
    "bending",
    "light",
    "quasars",
    "gravitational",
    "lensing",
    "magnified",
    "faint",
    "background",
    "sources",
    "knead",
    "dough",
    "ten",
    "minutes",
    "let",
    "bread",
    "rise",
    "warm",
    "kitchen",
    "until",
    "doubles",
    "size",
    "court",
    "held",
    "statute",
    "did",
    "apply",
    "retroactively",
    "contracts",
    "signed",
    "enactment",
    "page",
    "one",
    "two",
    "talks",
    "volcanoes",
    "lava",
    "flows",
    "describes",
    "glaciers",
    "carving",
    "valleys",
    "food",
    "café",
    "anything",
    "ok",
    "query",
    "document",
    "answer",
    "question",
    "cat",
    "sat",
    "mat",
    "quarks",
    "gluons",
    "quantum",
    "yes",
    "no",
    "i",
    "know",
    "don",
    "provided",
    "documents",
    "based",
    "context",
    "passage",
    "cite",
]


def build_vocab() -> list[str]:
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = [chr(c) for c in range(ord("a"), ord("z") + 1)] + list("0123456789.,;:!?'\"()-[]/")
    pieces = ["##" + c for c in "abcdefghijklmnopqrstuvwxyz0123456789"]
    words = sorted(set(WORDS))
    return specials + chars + pieces + [w for w in words if w not in chars]


def _write_bert_tokenizer(folder: Path, model_max_length: int) -> int:
    from transformers import BertTokenizerFast

    vocab = build_vocab()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast(
        vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True, model_max_length=model_max_length
    )
    tokenizer.save_pretrained(folder)
    assert len(tokenizer) == len(vocab)
    return len(vocab)


def save_tiny_bert(
    folder: Path,
    *,
    seed: int,
    hidden: int = 32,
    layers: int = 2,
    masked_lm: bool = False,
    num_labels: int | None = None,
) -> Path:
    """Save a tiny random BERT with the shared WordPiece tokenizer (one vocabulary for every tiny BERT, so their
    chunk ids agree): an encoder, a ``BertForMaskedLM`` with ``masked_lm`` (SPLADE's architecture) or a
    ``BertForSequenceClassification`` with ``num_labels`` (a cross-encoder)."""
    import torch
    from transformers import BertConfig, BertForMaskedLM, BertForSequenceClassification, BertModel

    vocab_size = _write_bert_tokenizer(folder, model_max_length=64)
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        **({"num_labels": num_labels} if num_labels is not None else {}),
    )
    model_class = BertForSequenceClassification if num_labels is not None else BertModel
    (BertForMaskedLM if masked_lm else model_class)(config).save_pretrained(folder)
    return folder


TinyBertFactory = Callable[..., Path]


@pytest.fixture(scope="session")
def tiny_bert_factory(tmp_path_factory: pytest.TempPathFactory) -> TinyBertFactory:
    """``make(name, seed=..., **options)``: a tiny random BERT in a new folder (options: see
    :func:`save_tiny_bert`); every tiny BERT of the suite is built here."""

    def make(name: str, **options: Any) -> Path:
        return save_tiny_bert(tmp_path_factory.mktemp(name), **options)

    return make


@pytest.fixture(scope="session")
def tiny_bert_dir(tiny_bert_factory: TinyBertFactory) -> Path:
    """A tiny random BERT encoder (hidden 32, 2 layers) with its WordPiece tokenizer, saved like a real model."""
    return tiny_bert_factory("tiny-bert", seed=0)


@pytest.fixture(scope="session")
def tiny_bert_other_dir(tiny_bert_factory: TinyBertFactory) -> Path:
    """Same architecture and dimension as tiny_bert_dir, different weights (the silent-mismatch case)."""
    return tiny_bert_factory("tiny-bert-other", seed=1)


@pytest.fixture(scope="module")
def encoder(tiny_bert_dir: Path) -> Any:
    """A dense encoder over tiny_bert_dir (fp32, batches of 2); a test module may define its own ``encoder``."""
    from ragloom.adapters.dense import TransformersDenseEncoder

    return TransformersDenseEncoder(tiny_bert_dir, batch_size=2, dtype="float32")


@pytest.fixture(scope="module")
def other_encoder(tiny_bert_other_dir: Path) -> Any:
    """The same over tiny_bert_other_dir: same dimension, different weights (the mismatch case)."""
    from ragloom.adapters.dense import TransformersDenseEncoder

    return TransformersDenseEncoder(tiny_bert_other_dir, batch_size=2, dtype="float32")


CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|> {{ message['content'] }} <|end|> {% endfor %}"
    "{% if add_generation_prompt %}<|assistant|> {% endif %}"
)


TOPIC_SENTENCES = (
    "Volcanoes erupt molten basalt lava from magma chambers beneath oceanic ridges.",
    "Glaciers carve deep fjords while compacted snow slowly becomes blue ice.",
    "Honeybees dance in waggle patterns to share where nectar flowers grow.",
    "Lighthouses warn passing sailors with rotating Fresnel lenses at night.",
    "Sourdough bread rises because wild yeast ferments the flour overnight.",
    "Telescopes gather starlight with curved mirrors to image distant galaxies.",
    "Penguins huddle together through Antarctic winters to conserve warmth.",
    "Copper wires conduct electricity because free electrons drift along them.",
)


@pytest.fixture(scope="session")
def topic_sentences() -> tuple[str, ...]:
    """Eight one-sentence documents on unrelated topics: no two share a content word."""
    return TOPIC_SENTENCES


@pytest.fixture(scope="session")
def tiny_llm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama-architecture chat model with a word-level tokenizer and a chat template."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-llm")
    specials = ["<unk>", "<s>", "</s>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]
    vocab = specials + sorted(set(WORDS) | set("[]0123456789.,:?'\"()") | {"[1]", "[2]"})
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(vocab)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    backend.add_special_tokens(specials)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="</s>",
        model_max_length=512,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(folder)
    assert len(tokenizer) == len(vocab)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


def _offline_model(name: str) -> Path:
    base = Path(os.environ.get("OFFLINE_MODELS_DIR", Path.home() / ".cache" / "offline-models"))
    folder = base / name
    if not (folder / ".complete").exists():
        pytest.skip(f"real model '{name}' not built: run ../shared/tools/offline-models {name} (looked in {folder})")
    return folder


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    return _offline_model("minilm")


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    return _offline_model("smollm2")


@pytest.fixture(scope="session")
def splade_tiny_dir() -> Path:
    return _offline_model("splade-tiny")


@pytest.fixture(scope="session")
def nomic_dir() -> Path:
    return _offline_model("nomic")


REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.exists():
        pytest.skip(f"../shared/data not found at {SHARED_DATA}")
    return SHARED_DATA
