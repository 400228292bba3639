"""Hostile files a tester brought from outside: each is parsed under the parser worker's limits or is bounded by
construction, so none can hold the host process for minutes or gigabytes."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ragloom.errors import DocumentLoadError
from ragloom.loaders import configure_parsing, load_file


@pytest.fixture()
def parsing() -> Iterator[None]:
    previous = configure_parsing()
    yield
    configure_parsing(isolate=previous.isolate, timeout=previous.timeout, memory_mb=previous.memory_mb)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("size", [300_000, 1_000_000])
def test_front_matter_with_a_long_blank_run_loads_at_once(tmp_path: Path, size: int) -> None:
    """A value followed by a long run of spaces took 74 s (300 KB) and more than 25 min (1 MB): a regex that
    backtracked over the run looking for a trailing comment."""
    path = tmp_path / "notes.md"
    path.write_text(f"---\ntitle: Notes{' ' * size}x\nauthor: Ann  # a comment\n---\nBody text.\n")
    doc = load_file(path)
    assert doc.text == "Body text.\n"
    assert doc.metadata["fm.title"] == "Notes" + " " * size + "x"
    assert doc.metadata["fm.author"] == "Ann"


def test_every_html_page_is_parsed_under_the_worker_limits(tmp_path: Path, parsing: None) -> None:
    """19,000 nested tags (under the old 20,000-tag threshold that kept small pages in this process) take lexbor
    far longer than 50 ms; under a 50 ms parser limit the page is a load error, not time spent in the host."""
    path = tmp_path / "nested.html"
    path.write_text("<div>" * 19_000 + "deep" + "</div>" * 19_000)
    configure_parsing(isolate=True, timeout=0.05)
    with pytest.raises(DocumentLoadError, match="took longer than"):
        load_file(path)
    configure_parsing(timeout=60)
    assert load_file(path).text == "deep"


_CHUNK_BIG_TEXT = """
import json, resource, sys
from ragloom.adapters.dense import TransformersDenseEncoder
from ragloom.chunking import TokenChunker
from ragloom.loaders import load_file

encoder = TransformersDenseEncoder(sys.argv[1])
chunker = TokenChunker(encoder.token_counter, chunk_size=128, overlap=16)
doc = load_file(sys.argv[2])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
chunks = chunker.chunk(doc)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"chunks": len(chunks), "growth_mb": (after - before) / 1024, "chars": len(doc.text)}))
"""


def test_a_large_text_file_is_chunked_in_bounded_memory(tmp_path: Path, tiny_bert_dir: Path) -> None:
    """A 40 MB .txt reached 7.9 GB: its tokens' offsets were computed for the whole file at once. Chunking goes
    section by section, so memory grows with a section, not the file (4 MB of text: ~550 MB before, <150 now)."""
    words = "the telescope observed a distant galaxy cluster bending light from quasars . "
    path = tmp_path / "big.txt"
    path.write_text(words * (4_000_000 // len(words)))
    done = subprocess.run(
        [sys.executable, "-c", _CHUNK_BIG_TEXT, str(tiny_bert_dir), str(path)],
        check=True,
        capture_output=True,
        text=True,
        timeout=240,
    )
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["chunks"] > 1000
    assert found["growth_mb"] < 250, found
