"""Fixtures for rerankers and generators: tiny cross-encoders built from configs, a tiny GGUF chat model."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ragloom.adapters.dense import DenseRetriever, TransformersDenseEncoder
from ragloom.testing import CONTRACT_DOCUMENTS

if str(Path(__file__).resolve().parents[1]) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from openai_fake import FakeOpenAIServer


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    """A loopback OpenAI-compatible server speaking the real protocol (the generator's outside endpoint)."""
    with FakeOpenAIServer() as fake:
        yield fake


@pytest.fixture(scope="module")
def retriever(tiny_bert_dir: Path) -> DenseRetriever:
    """A tiny dense retriever over the contract documents; a test module may define its own ``retriever``."""
    dense = DenseRetriever(TransformersDenseEncoder(tiny_bert_dir), chunk_size=24)
    dense.add(list(CONTRACT_DOCUMENTS))
    return dense


@pytest.fixture(scope="session")
def tiny_cross_encoder_dir(tiny_bert_factory: Callable[..., Path]) -> Path:
    """A one-label (relevance logit) cross-encoder, like cross-encoder/ms-marco-MiniLM-L6-v2 (64-token limit)."""
    return tiny_bert_factory("tiny-ce", seed=3, num_labels=1)


@pytest.fixture(scope="session")
def tiny_cross_encoder_2label_dir(tiny_bert_factory: Callable[..., Path]) -> Path:
    """A two-label (not relevant / relevant) cross-encoder."""
    return tiny_bert_factory("tiny-ce2", seed=4, num_labels=2)


@pytest.fixture(scope="session")
def tiny_classifier_dir(tiny_bert_factory: Callable[..., Path]) -> Path:
    """A three-label classifier: not a reranker."""
    return tiny_bert_factory("tiny-cls", seed=5, num_labels=3)


GGUF_CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object]]:
    """A tiny Llama chat model written as GGUF the way llama.cpp writes it (byte-level BPE, permuted q/k).

    Returns the .gguf path and the original fp32 state dict, so a conversion can be checked weight by weight.
    """
    import gguf
    import numpy as np
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    folder = tmp_path_factory.mktemp("tiny-gguf")
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    merges = ["t h", "th e", "Ġ th", "Ġth e", "c a", "ca t", "Ġ ca", "Ġca t"]
    tokens = specials + list(bytes_to_unicode().values()) + [m.replace(" ", "") for m in merges]
    assert len(set(tokens)) == len(tokens) == 3 + 256 + len(merges)
    heads, kv_heads = 4, 2
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokens),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=256,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
        tie_word_embeddings=False,
        rms_norm_eps=1e-5,
    )
    model = LlamaForCausalLM(config).eval()
    path = folder / "tiny-chat.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(256)
    writer.add_embedding_length(32)
    writer.add_block_count(2)
    writer.add_feed_forward_length(64)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_freq_base(10000.0)
    writer.add_rope_dimension_count(32 // heads)
    writer.add_vocab_size(len(tokens))
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types([3] * len(specials) + [1] * (len(tokens) - len(specials)))
    writer.add_token_merges(merges)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_pad_token_id(0)
    writer.add_chat_template(GGUF_CHAT_TEMPLATE)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, 2)

    def permute(weights: np.ndarray, n_head: int) -> np.ndarray:  # llama.cpp's rotary layout for q and k
        return (
            weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2)
            .reshape(weights.shape)
        )

    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    for key, tensor in state.items():
        array = tensor.float().numpy()
        if key.endswith("q_proj.weight"):
            array = permute(array, heads)
        elif key.endswith("k_proj.weight"):
            array = permute(array, kv_heads)
        writer.add_tensor(names.get_name(key, try_suffixes=(".weight", ".bias")), np.ascontiguousarray(array))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path, state
