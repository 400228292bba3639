"""ColPali / ColQwen2 page encoders through transformers' native classes.

``ColPaliForRetrieval`` + ``ColPaliProcessor`` and ``ColQwen2ForRetrieval`` + ``ColQwen2Processor`` (transformers
5.x) are chosen from the model folder's ``model_type``. Queries are text, documents are page images; every input
becomes one L2-normalised vector per token (padding removed). Image processing uses Pillow (``backend="pil"``),
so torchvision is never imported. Batches shrink automatically on out-of-memory; the GPU is used when present.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ragloom._imports import require
from ragloom.adapters.multivector._torch import AdaptiveBatcher, LastAttention
from ragloom.adapters.multivector.pages import PageImage, load_image
from ragloom.errors import ConfigError, InputTooLongError, InvalidInputError
from ragloom.hf import DType, pick_device, resolve_dtype
from ragloom.models import resolve_model, weights_sha256

__all__ = ["FAMILIES", "ColVisionEncoder"]

FAMILIES: dict[str, tuple[str, str]] = {
    "colpali": ("ColPaliForRetrieval", "ColPaliProcessor"),
    "colqwen2": ("ColQwen2ForRetrieval", "ColQwen2Processor"),
}
_IMAGE_KEYS = (
    "size", "min_pixels", "max_pixels", "patch_size", "merge_size", "temporal_patch_size", "image_mean",
    "image_std", "rescale_factor", "resample", "do_resize", "do_normalize", "do_convert_rgb",
)  # fmt: skip
_MODEL_INPUTS = ("input_ids", "attention_mask", "pixel_values", "image_grid_thw", "token_type_ids")


class ColVisionEncoder:
    """A ColPali-family model as a :class:`ragloom.protocols.MultiVectorEncoder` over page images.

    ``model``: a local folder or a hub id (default ``vidore/colqwen2-v1.0-hf``), resolved without network unless
    ``allow_download``. ``dtype="auto"``: bf16 on GPUs, fp32 on CPUs. ``capture_attention`` loads eager attention
    so :meth:`encode_documents_with_importance` can feed DocPruner-style pruning.
    """

    modality = "image"

    def __init__(
        self,
        model: str | os.PathLike[str] = "vidore/colqwen2-v1.0-hf",
        *,
        dtype: DType = "auto",
        device: str | None = None,
        batch_size: int = 4,
        query_batch_size: int = 32,
        allow_download: bool = False,
        capture_attention: bool = False,
    ) -> None:
        transformers = require("transformers", "multivector", "ColPali/ColQwen2 encoders")
        self._torch = require("torch", "multivector", "ColPali/ColQwen2 encoders")
        path = resolve_model(model, allow_download=allow_download)
        model_type = json.loads((Path(path) / "config.json").read_text(encoding="utf-8")).get("model_type")
        if model_type not in FAMILIES:
            raise ConfigError(
                f"{model} is a {model_type!r} model; ColVisionEncoder loads {sorted(FAMILIES)} checkpoints "
                "(the transformers-native '-hf' ones, e.g. vidore/colqwen2-v1.0-hf or vidore/colpali-v1.3-hf)"
            )
        model_cls, processor_cls = (getattr(transformers, name) for name in FAMILIES[model_type])
        self.device = pick_device(device)
        kwargs: dict[str, Any] = {"attn_implementation": "eager"} if capture_attention else {}
        self.model = model_cls.from_pretrained(
            path, dtype=resolve_dtype(dtype, self.device), use_safetensors=True, **kwargs
        )
        self.model.to(self.device)
        self.model.eval()
        self.processor = processor_cls.from_pretrained(path, backend="pil")
        self.family = str(model_type)
        self._name = str(model) if not Path(str(model)).is_dir() else Path(path).name
        self._weights = weights_sha256(path)
        self._dim = int(self.model.config.embedding_dim)
        self._max_positions = _max_positions(self.model.config)
        self._attention = LastAttention(self.model) if capture_attention else None
        self._documents = AdaptiveBatcher(batch_size, "page images")
        self._queries = AdaptiveBatcher(query_batch_size, "queries")

    # -- the MultiVectorEncoder protocol ----------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return self._dim

    @property
    def fingerprint(self) -> Mapping[str, object]:
        image = self.processor.image_processor
        return {
            "family": self.family,
            "model": self._name,
            "weights": self._weights,
            "dim": self._dim,
            "normalize": True,
            "query_prefix": getattr(self.processor, "query_prefix", ""),
            "visual_prompt_prefix": getattr(self.processor, "visual_prompt_prefix", ""),
            "image_processor": {k: _jsonable(getattr(image, k)) for k in _IMAGE_KEYS if hasattr(image, k)},
        }

    @property
    def batch_size(self) -> int:
        return self._documents.batch_size

    def encode_queries(self, texts: Sequence[str]) -> list[np.ndarray]:
        texts = list(texts)
        for text in texts:
            if not isinstance(text, str) or not text.strip():
                raise InvalidInputError(f"A query must be a non-empty string, got {text!r}")
        return self._queries.run(texts, lambda batch: self._forward(self.processor.process_queries(text=list(batch))))

    def encode_documents(self, items: Sequence[object]) -> list[np.ndarray]:
        """One matrix per page image (PIL image, :class:`PageImage` or an image file path)."""
        images = [_as_image(item) for item in items]
        return self._documents.run(
            images, lambda batch: self._forward(self.processor.process_images(images=list(batch)))
        )

    def encode_documents_with_importance(self, items: Sequence[object]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Vectors plus each token's importance: the attention the last token pays it in the last layer."""
        if self._attention is None:
            raise ConfigError("Pruning needs attention weights: create the encoder with capture_attention=True")
        images = [_as_image(item) for item in items]
        return self._documents.run(
            images, lambda batch: self._forward(self.processor.process_images(images=list(batch)), importance=True)
        )

    # -- internals --------------------------------------------------------------------------------------------------
    def _forward(self, features: Any, importance: bool = False) -> list[Any]:
        torch = self._torch
        inputs = {k: v.to(self.device) for k, v in features.items() if k in _MODEL_INPUTS}
        mask = inputs["attention_mask"].bool()
        longest = int(mask.sum(dim=1).max())
        if self._max_positions and longest > self._max_positions:
            raise InputTooLongError(
                f"An input has {longest} tokens; {self._name} accepts {self._max_positions}. Shorten the query "
                "or lower the page image size (RenderSettings.max_side)."
            )
        with torch.inference_mode():
            embeddings = self.model(**inputs).embeddings.float()
            weights = self._attention.pop() if importance and self._attention is not None else None
        out: list[Any] = []
        for row in range(embeddings.shape[0]):
            vectors = embeddings[row][mask[row]].cpu().numpy()
            if weights is None:
                out.append(vectors)
                continue
            last = int(torch.nonzero(mask[row])[-1])
            attention = weights[row, :, last, :].float().mean(dim=0)[mask[row]].cpu().numpy()
            out.append((vectors, attention))
        return out


def _as_image(item: object) -> Any:
    if isinstance(item, PageImage):
        return item.image
    if isinstance(item, (str, os.PathLike)):
        return load_image(item).image
    if hasattr(item, "convert") and hasattr(item, "size"):
        return item.convert("RGB") if getattr(item, "mode", "RGB") != "RGB" else item
    raise InvalidInputError(
        f"ColVisionEncoder.encode_documents takes page images (PIL images, PageImage or image paths), got "
        f"{type(item).__name__}; render PDF pages with ragloom.adapters.multivector.pages.iter_pdf_pages"
    )


def _max_positions(config: Any) -> int | None:
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    value = getattr(text, "max_position_embeddings", None)
    return int(value) if value else None


def _jsonable(value: object) -> object:
    if hasattr(value, "to_dict"):
        value = value.to_dict()
    return json.loads(json.dumps(value, default=str))
