"""Fixtures for the reliability suite: the crash harness's fork server, a scenario recorder, extra tiny models.

Set ``RAGLOOM_RELIABILITY_REPORT=path.json`` to have every scenario's counts written there (docs/reliability.md
is filled from that file).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

_RECORDS: dict[str, dict[str, Any]] = {}


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    target = os.environ.get("RAGLOOM_RELIABILITY_REPORT")
    if not target or not _RECORDS:
        return
    path = Path(target)
    existing = json.loads(path.read_text()) if path.exists() else {}
    existing.update(_RECORDS)
    path.write_text(json.dumps(existing, indent=2, sort_keys=True) + "\n")


class Recorder:
    """Counts for docs/reliability.md: ``record("scenario", runs=10, failures=0, ...)``."""

    def __call__(self, scenario: str, **counts: Any) -> None:
        entry = _RECORDS.setdefault(scenario, {})
        for key, value in counts.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and key in entry:
                entry[key] = entry[key] + value
            else:
                entry[key] = value


@pytest.fixture(scope="session")
def record() -> Recorder:
    return Recorder()


@pytest.fixture(scope="session")
def _forkserver_process(tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from reliability_harness import ForkServer

    server = ForkServer(tiny_bert_dir, tmp_path_factory.mktemp("forkserver"))  # loads in the background
    yield server
    server.close()


@pytest.fixture(autouse=True)
def _start_forkserver_early(request: pytest.FixtureRequest) -> None:
    """Start the fork server with the first test of this folder that runs, so its ~10 s of imports overlap the
    tests that do not need it (those run first: see pytest_collection_modifyitems)."""
    if any(item.nodeid in _USES_FORKSERVER for item in request.session.items):  # after -k/-m deselection
        request.getfixturevalue("_forkserver_process")


@pytest.fixture(scope="session")
def forkserver(_forkserver_process: Any) -> Any:
    """The crash harness's fork server (torch, chromadb and the tiny encoder loaded once), ready."""
    return _forkserver_process.ensure_ready()


_USES_FORKSERVER: set[str] = set()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Within this folder, run the tests that need the fork server last (it starts loading with the first)."""
    mine = [i for i in items if HERE in Path(str(i.fspath)).parents]
    if not mine:
        return
    needs = [i for i in mine if "forkserver" in getattr(i, "fixturenames", ())]
    _USES_FORKSERVER.update(i.nodeid for i in needs)
    others = [i for i in mine if i not in needs]
    start = items.index(mine[0])
    rest = [i for i in items if i not in mine]
    items[:] = rest[:start] + others + needs + rest[start:]


@pytest.fixture(scope="session")
def encoder(tiny_bert_dir: Path) -> Any:
    from ragloom.adapters.dense import TransformersDenseEncoder

    return TransformersDenseEncoder(tiny_bert_dir, dtype="float32")


@pytest.fixture(scope="session")
def tiny_bert_wide_dir(tiny_bert_factory: Any) -> Path:
    """A tiny BERT with hidden size 48 (another dimension than tiny_bert_dir's 32)."""
    path: Path = tiny_bert_factory("tiny-bert-wide", seed=2, hidden=48, layers=1)
    return path
