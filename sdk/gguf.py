"""GGUF chat models as plain transformers folders: a pulled GGUF is dequantised once into bf16 safetensors."""

from __future__ import annotations

import contextlib
from pathlib import Path

from ragloom.errors import RagloomError

__all__ = ["convert_gguf_causal_lm"]


def convert_gguf_causal_lm(gguf_file: Path, out: Path) -> None:
    """Dequantise a GGUF chat model into a bf16 safetensors folder (needs torch, transformers and gguf).

    The weights are dequantised straight to bf16 and moved (not copied) into a plain model built on the meta
    device, so the peak memory is about one bf16 copy of the model (3 GB for 1.5B parameters).
    """
    from ragloom._imports import require

    torch = require("torch", "local-llm", "GGUF conversion")
    require("gguf", "local-llm", "GGUF conversion")
    transformers = require("transformers", "local-llm", "GGUF conversion")
    folder, name = str(gguf_file.parent), gguf_file.name
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder, gguf_file=name)
    quantised = transformers.AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.bfloat16)
    config = quantised.config
    if hasattr(config, "quantization_config"):  # a transformers config attribute, not one of our capabilities
        delattr(config, "quantization_config")
    with torch.device("meta"):
        plain = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    state = quantised.state_dict()
    buffers = dict(quantised.named_buffers())  # non-persistent ones (rotary frequencies) are not in the state
    del quantised
    result = plain.load_state_dict(state, strict=False, assign=True)
    if result.unexpected_keys:
        raise RagloomError(f"GGUF conversion left unexpected weights: {result.unexpected_keys[:5]}")
    plain.tie_weights()
    for buffer_name, buffer in list(plain.named_buffers()):
        if buffer.is_meta and buffer_name in buffers:
            owner, _, leaf = buffer_name.rpartition(".")
            plain.get_submodule(owner)._buffers[leaf] = buffers[buffer_name]
    missing = [n for n, p in plain.named_parameters() if p.is_meta] + [n for n, b in plain.named_buffers() if b.is_meta]
    if missing:
        raise RagloomError(f"GGUF conversion left weights unset: {missing[:5]}")
    plain.save_pretrained(out)
    tokenizer.save_pretrained(out)
    with contextlib.suppress(OSError):
        (out / "README.md").write_text(f"Converted from {name} by ragloom.\n")
