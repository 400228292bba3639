"""Every ```python block in docs/*.md and README.md runs as pasted.

Each block runs on its own (a fresh namespace: it must import what it uses) in a working folder holding what the
docs assume a reader has: ``contracts/`` (a few text files) and ``.ragloom/index`` (an index as ``ragloom ingest``
builds it, on the tiny test models). Aliases of real models (minilm, splade-tiny, smollm2, nomic) resolve from
``~/.cache/offline-models``; a block naming one that is not built there is skipped. An HTML comment on the line
before a block can say ``<!-- docs-test: skip=REASON -->`` (weights or a server that no test machine has) or
``<!-- docs-test: slow -->`` (generates with a real LLM: the slow tier).
"""

from __future__ import annotations

import os
import re
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_FENCE = re.compile(r"(?:<!--\s*docs-test:\s*(?P<directive>.*?)\s*-->\s*\n)?```python\n(?P<code>.*?)\n```", re.S)
_ALIASES = ("minilm", "splade-tiny", "smollm2", "nomic")
README_DIRECTIVES = {1: "slow"}  # README.md cannot carry directives in this branch: its quick start generates


@dataclass(frozen=True)
class Block:
    path: Path
    number: int
    line: int
    code: str
    directive: str

    @property
    def id(self) -> str:
        return f"{self.path.name}#{self.number}"


def _blocks() -> list[Block]:
    found = []
    for path in [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]:
        text = path.read_text(encoding="utf-8")
        for number, match in enumerate(_FENCE.finditer(text), start=1):
            directive = match.group("directive") or ""
            if path.name == "README.md":
                directive = directive or README_DIRECTIVES.get(number, "")
            line = text.count("\n", 0, match.start("code")) + 1
            found.append(Block(path, number, line, match.group("code"), directive))
    return found


BLOCKS = _blocks()


def _param(block: Block) -> object:
    marks = [pytest.mark.slow] if block.directive.strip() == "slow" else []
    return pytest.param(block, id=block.id, marks=marks)


def _offline_dir() -> Path:
    return Path(os.environ.get("OFFLINE_MODELS_DIR", Path.home() / ".cache" / "offline-models"))


def _missing_models(code: str) -> list[str]:
    base = _offline_dir()
    return [a for a in _ALIASES if f'"{a}"' in code and not (base / a / ".complete").exists()]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory, tiny_bert_dir: Path, tiny_llm_dir: Path) -> Path:
    from ragloom.recipes.config import GeneratorSpec, IndexSpec, RetrieverSpec, open_pipeline

    folder = tmp_path_factory.mktemp("docs-work")
    contracts = folder / "contracts"
    contracts.mkdir()
    (contracts / "lease.txt").write_text(
        "Either party may terminate the agreement with ninety days written notice. The Court held that the "
        "notice must be delivered in person."
    )
    (contracts / "supply.md").write_text("# Supply\n\nThe supplier ships monthly. Payment is due in thirty days.")
    smollm2 = _offline_dir() / "smollm2"  # a real chat model when built (LlamaIndex needs its 8k window)
    llm = smollm2 if (smollm2 / ".complete").exists() else tiny_llm_dir
    spec = IndexSpec(
        retrievers=(RetrieverSpec(model=str(tiny_bert_dir), store="memory", chunk_size=32, overlap=4),),
        generator=GeneratorSpec(kind="local", model=str(llm), max_new_tokens=16),
    )
    with open_pipeline(folder / ".ragloom" / "index", spec=spec) as pipeline:
        pipeline.ingest([contracts])
    return folder


def test_every_block_is_collected() -> None:
    assert len(BLOCKS) >= 25, [b.id for b in BLOCKS]


@pytest.mark.parametrize("block", [_param(b) for b in BLOCKS])
def test_block_runs(block: Block, workdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if block.directive.startswith("skip="):
        pytest.skip(f"{block.id}: {block.directive[5:]}")
    missing = _missing_models(block.code)
    if missing:
        pytest.skip(f"{block.id} needs {missing}: build with ../shared/tools/offline-models")
    here = tmp_path / "work"  # each block gets its own copy: no block sees another's indexes
    shutil.copytree(workdir, here)
    monkeypatch.chdir(here)
    namespace: dict[str, object] = {"__name__": "__docs__"}
    compiled = compile(block.code, f"{block.path}:{block.line}", "exec")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exec(compiled, namespace)  # the repository's own documentation
    for value in namespace.values():  # release index locks and models before the next block
        close = getattr(value, "close", None)
        if callable(close) and not isinstance(value, type) and hasattr(value, "__enter__"):
            close()
