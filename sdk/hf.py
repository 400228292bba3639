"""Loading transformers models and tokenizers the one way every adapter shares.

torch and transformers are imported on first use. ``trust_remote_code`` is off unless the caller passes it;
weights load from safetensors only; fp16 is never used on a CPU (it is ~500x slower there than fp32).
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ragloom._imports import require
from ragloom.errors import ConfigError, ModelNotFoundError, RagloomWarning
from ragloom.models import resolve_model, weights_sha256

__all__ = [
    "DType",
    "LoadedModel",
    "load_model",
    "pick_device",
    "resolve_dtype",
    "sentence_transformers_config",
]

DType = Literal["auto", "float32", "bfloat16", "float16"]


def pick_device(device: str | None = None) -> str:
    """``device`` if given, else cuda when available, else cpu."""
    if device:
        return device
    torch = require("torch", "torch", "running models")
    return "cuda" if torch.cuda.is_available() else "cpu"


def cpu_has_bf16() -> bool:
    """True when this CPU computes bf16 natively (AVX512-BF16 or AMX), where bf16 matmul beats fp32 ~3x."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            flags = handle.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_dtype(dtype: DType, device: str) -> Any:
    """The torch dtype to compute in. ``auto``: bf16 on GPUs and on CPUs with native bf16, else fp32.

    bf16 asked for on a CPU without native bf16 works but is emulated: a warning says so (measured on an AVX2-only
    CPU: bf16 matmul 4-8x slower than fp32, a whole MiniLM encode ~3x slower).
    """
    torch = require("torch", "torch", "running models")
    if dtype == "auto":
        native = device.startswith("cuda") or (device == "cpu" and cpu_has_bf16())
        return torch.bfloat16 if native else torch.float32
    if dtype == "float16" and device == "cpu":
        raise ConfigError("float16 on a CPU is hundreds of times slower than float32; use bfloat16 or float32")
    if dtype == "bfloat16" and device == "cpu" and not cpu_has_bf16():
        warnings.warn(
            "this CPU has no native bf16 (no avx512_bf16 or amx_bf16 in /proc/cpuinfo), so bfloat16 is emulated and "
            "several times slower than float32; use dtype='auto' or 'float32'",
            RagloomWarning,
            stacklevel=3,
        )
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]


@dataclass(frozen=True)
class LoadedModel:
    """A model, its tokenizer, where they came from and a digest of the weights."""

    model: Any
    tokenizer: Any
    path: Path
    name: str
    weights_hash: str
    device: str


def load_model(
    name_or_path: str | os.PathLike[str],
    *,
    auto_class: str = "AutoModel",
    dtype: DType = "float32",
    device: str | None = None,
    allow_download: bool = False,
    trust_remote_code: bool = False,
    model_kwargs: dict[str, Any] | None = None,
) -> LoadedModel:
    """Resolve (see ragloom.models) and load a transformers model with its fast tokenizer, in eval mode."""
    transformers = require("transformers", "torch", "running transformers models")
    path = resolve_model(name_or_path, allow_download=allow_download)
    device = pick_device(device)
    torch_dtype = resolve_dtype(dtype, device)
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except ValueError as exc:
        raise _remote_code_error(exc, path) from exc
    model_cls = getattr(transformers, auto_class)  # the transformers Auto class named by the caller
    hf_logging = transformers.utils.logging
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # ragloom shows its own progress; per-tensor bars are noise
    try:
        model = model_cls.from_pretrained(
            path, dtype=torch_dtype, trust_remote_code=trust_remote_code, use_safetensors=True, **(model_kwargs or {})
        )
    except ValueError as exc:
        raise _remote_code_error(exc, path) from exc
    except OSError as exc:
        pickled = sorted(p.name for p in Path(path).glob("*") if p.suffix in (".bin", ".pt", ".pth", ".pkl", ".ckpt"))
        if pickled and not any(Path(path).glob("*.safetensors")):
            raise ModelNotFoundError(
                str(name_or_path),
                [f"{path}: only pickle-format weights ({', '.join(pickled)}); ragloom loads safetensors only"],
                "Loading a pickle can run arbitrary code. Convert the weights to safetensors once, in an environment "
                "you trust (e.g. model.save_pretrained(dir, safe_serialization=True)), or use a safetensors release.",
            ) from exc
        raise
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    model.to(device)
    model.eval()
    name = str(name_or_path) if not Path(str(name_or_path)).is_dir() else path.name
    return LoadedModel(model, tokenizer, path, name, weights_sha256(path), device)


def _remote_code_error(exc: ValueError, path: Path) -> Exception:
    """transformers' refusal to run a model folder's own code, as a ragloom ConfigError (other errors as is)."""
    if "trust_remote_code" not in str(exc):
        return exc
    return ConfigError(
        f"The model at {path} needs its own Python code to load (auto_map in config.json), and ragloom never runs "
        "a model's code unless you pass trust_remote_code=True. Read that code first, or use a model that loads "
        "with the standard transformers classes."
    )


def sentence_transformers_config(path: Path) -> dict[str, Any]:
    """Pooling, normalisation, max length and prompts from a sentence-transformers folder, when present."""
    found: dict[str, Any] = {}
    modules_file = path / "modules.json"
    if modules_file.exists():
        modules = json.loads(modules_file.read_text())
        found["normalize"] = any(m.get("type", "").endswith("Normalize") for m in modules)
        for module in modules:
            if module.get("type", "").endswith("Pooling"):
                pooling_file = path / module.get("path", "") / "config.json"
                if pooling_file.exists():
                    pooling = json.loads(pooling_file.read_text())
                    if pooling.get("pooling_mode_cls_token"):
                        found["pooling"] = "cls"
                    elif pooling.get("pooling_mode_lasttoken"):
                        found["pooling"] = "last"
                    elif pooling.get("pooling_mode_mean_tokens"):
                        found["pooling"] = "mean"
    bert_config = path / "sentence_bert_config.json"
    if bert_config.exists():
        max_len = json.loads(bert_config.read_text()).get("max_seq_length")
        if max_len:
            found["max_length"] = int(max_len)
    st_config = path / "config_sentence_transformers.json"
    if st_config.exists():
        prompts = json.loads(st_config.read_text()).get("prompts") or {}
        if isinstance(prompts, dict):
            found["prompts"] = {k: v for k, v in prompts.items() if isinstance(v, str)}
    return found
