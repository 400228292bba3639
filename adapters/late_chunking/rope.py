"""Dynamic NTK RoPE scaling for long-context encoders (nomic-embed-text-v1.5: trained on 2048 tokens,
``rope_factor=2.0`` reaches 4096 and more), stateless so a vector never depends on what was encoded before it."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from ragloom._imports import require
from ragloom.errors import ConfigError

__all__ = ["install_dynamic_ntk"]


@lru_cache(maxsize=1)
def _dynamic_ntk_class() -> type:
    torch = require("torch", "dense", "late chunking")

    class DynamicNTKRotary(torch.nn.Module):  # type: ignore[name-defined]  # torch is a run-time import (require)
        """Stateless dynamic NTK RoPE: frequencies from the length of each call's own input.

        transformers' "dynamic" rope caches the longest length seen, so a vector would depend on what was encoded
        before it; this computes the same formula per call (and the trained frequencies up to ``trained``).
        """

        def __init__(self, inner: Any, trained: int, factor: float, theta: float) -> None:
            super().__init__()
            self.inner = inner
            self.trained, self.factor, self.theta = trained, factor, theta
            self.base_inv_freq = inner.original_inv_freq.detach().clone().float()

        def forward(self, x: Any, position_ids: Any) -> tuple[Any, Any]:
            seq_len = int(position_ids.max()) + 1
            inv_freq = self.base_inv_freq.to(x.device)
            if seq_len > self.trained:
                dim = 2 * inv_freq.numel()
                base = self.theta * ((self.factor * seq_len / self.trained) - (self.factor - 1)) ** (dim / (dim - 2))
                exponents = torch.arange(0, dim, 2, dtype=torch.int64, device=x.device).float() / dim
                inv_freq = 1.0 / (base**exponents)
            freqs = position_ids[..., None].float() * inv_freq
            emb = torch.cat((freqs, freqs), dim=-1)
            scale = getattr(self.inner, "attention_scaling", 1.0)
            return (emb.cos() * scale).to(x.dtype), (emb.sin() * scale).to(x.dtype)

    return DynamicNTKRotary


def install_dynamic_ntk(model: Any, trained_context: int, factor: float) -> None:
    """Give a transformers RoPE encoder (NomicBERT, ModernBERT-style ``rotary_emb``) dynamic NTK scaling."""
    rotary = getattr(model, "rotary_emb", None)
    params = getattr(model.config, "rope_parameters", None) or {}
    if rotary is None or not hasattr(rotary, "original_inv_freq") or "rope_theta" not in params:
        raise ConfigError(
            f"{type(model).__name__} has no standard rotary embedding (rotary_emb, rope_parameters); RoPE scaling "
            "applies to RoPE models such as nomic-embed-text. Leave rope_factor unset."
        )
    if params.get("rope_type", "default") != "default":
        raise ConfigError(f"the model already uses {params['rope_type']!r} RoPE; leave rope_factor unset")
    cls = _dynamic_ntk_class()
    if not isinstance(rotary, cls):
        model.rotary_emb = cls(rotary, trained_context, factor, float(params["rope_theta"]))
