"""Torch helpers shared by the multi-vector encoders: adaptive batches and last-layer attention capture."""

from __future__ import annotations

import gc
import warnings
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from ragloom.errors import RagloomError, RagloomWarning

__all__ = ["AdaptiveBatcher", "LastAttention", "is_out_of_memory"]

T = TypeVar("T")
R = TypeVar("R")

_OOM_MARKERS = ("out of memory", "can't allocate memory", "cannot allocate memory", "not enough memory")


def is_out_of_memory(exc: BaseException) -> bool:
    """True for CUDA/MPS out-of-memory errors and CPU allocator failures."""
    if type(exc).__name__ == "OutOfMemoryError" or isinstance(exc, MemoryError):
        return True
    return isinstance(exc, RuntimeError) and any(m in str(exc).lower() for m in _OOM_MARKERS)


class AdaptiveBatcher:
    """Runs a batch function over items, halving the batch size on out-of-memory and retrying.

    The reduced size is kept for later calls, so one OOM costs one retry, not one per batch.
    """

    def __init__(self, batch_size: int, what: str = "inputs") -> None:
        if batch_size < 1:
            raise RagloomError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self.what = what

    def run(self, items: Sequence[T], fn: Callable[[Sequence[T]], list[R]]) -> list[R]:
        out: list[R] = []
        start = 0
        while start < len(items):
            size = min(self.batch_size, len(items) - start)
            try:
                out.extend(fn(items[start : start + size]))
            except Exception as exc:
                if not is_out_of_memory(exc):
                    raise
                _free_memory()
                if size == 1:
                    raise RagloomError(
                        f"Out of memory encoding a single one of the {self.what}: use a smaller model dtype "
                        "(bfloat16), a smaller image (RenderSettings.max_side / dpi), or another device"
                    ) from exc
                self.batch_size = max(1, (size + 1) // 2)
                warnings.warn(
                    f"Out of memory at batch size {size}; retrying {self.what} with batch size {self.batch_size}",
                    RagloomWarning,
                    stacklevel=3,
                )
                continue
            start += size
        return out


def _free_memory() -> None:
    gc.collect()
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is what raised
        return
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def last_attention_module(model: Any, suffixes: tuple[str, ...] = ("self_attn", "attention.self")) -> str:
    """Name of the last text self-attention module (vision towers excluded)."""
    names = [
        name
        for name, _ in model.named_modules()
        if name.endswith(suffixes) and "vision" not in name and "visual" not in name
    ]
    if not names:
        raise RagloomError(f"{type(model).__name__} has no self-attention module to read attention from")
    return names[-1]


class LastAttention:
    """Captures the attention weights of a model's last text attention layer during a forward pass.

    Needs the model loaded with ``attn_implementation="eager"`` (fused kernels do not expose weights). Only this
    one layer's weights are kept, never all layers' (``output_attentions`` would keep every layer).
    """

    def __init__(self, model: Any) -> None:
        self.module_name = last_attention_module(model)
        self._weights: Any = None
        module = model.get_submodule(self.module_name)
        self._handle = module.register_forward_hook(self._hook)

    def _hook(self, module: Any, args: Any, output: Any) -> None:
        if isinstance(output, tuple) and len(output) > 1:
            self._weights = output[1]

    def pop(self) -> Any:
        """The weights of the last forward pass, shape (batch, heads, queries, keys)."""
        weights, self._weights = self._weights, None
        if weights is None:
            raise RagloomError(
                f"No attention weights were captured from {self.module_name}; load the model with "
                "attn_implementation='eager' (pruning needs it)"
            )
        return weights
