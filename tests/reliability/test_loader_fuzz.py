"""A short fuzz run over the loaders (hypothesis): arbitrary and mutated inputs for every format end as a
Document or a DocumentLoadError, never another exception, a crash or a hang (PDFs run in the parser worker under
its time and memory limits). The slow tier runs the same properties with many more examples."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hostile_corpus import text_pdf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ragloom.errors import DocumentLoadError
from ragloom.loaders import configure_parsing, load_file, load_folder
from ragloom.loaders.html import extract_html, html_to_text
from ragloom.loaders.text import decode_text, split_front_matter
from ragloom.types import Document

FAST, SLOW = 150, 2000
COUNTS: dict[str, int] = {}
SETTINGS = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
    "derandomize": False,
}


@pytest.fixture(scope="module", autouse=True)
def parser_limits() -> Any:
    previous = configure_parsing(timeout=5.0, memory_mb=768)
    yield
    configure_parsing(isolate=previous.isolate, timeout=previous.timeout, memory_mb=previous.memory_mb)


def _load(data: bytes, suffix: str) -> Document | None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"fuzz{suffix}"
        path.write_bytes(data)
        try:
            return load_file(path)
        except DocumentLoadError:
            return None


def _count(name: str) -> None:
    COUNTS[name] = COUNTS.get(name, 0) + 1


BASE_PDF = text_pdf(["fuzzing the loaders", "second line"])
mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, len(BASE_PDF) - 1), st.integers(1, 255)),
    st.tuples(st.just("cut"), st.integers(0, len(BASE_PDF)), st.just(0)),
    st.tuples(st.just("insert"), st.integers(0, len(BASE_PDF)), st.integers(0, 255)),
    st.tuples(st.just("repeat"), st.integers(0, len(BASE_PDF) - 1), st.integers(2, 50)),
)


def _mutate(data: bytes, steps: list[tuple[str, int, int]], junk: bytes) -> bytes:
    buffer = bytearray(data)
    for kind, position, value in steps:
        at = min(position, len(buffer))
        if kind == "flip" and buffer:
            buffer[min(at, len(buffer) - 1)] ^= value
        elif kind == "cut":
            del buffer[at:]
        elif kind == "insert":
            buffer[at:at] = junk[: value % 64] or b"\x00"
        elif kind == "repeat":
            buffer[at:at] = bytes(buffer[at : at + 16]) * value
    return bytes(buffer)


def pdf_property(steps: list[tuple[str, int, int]], junk: bytes) -> None:
    _count("mutated PDFs")
    doc = _load(_mutate(BASE_PDF, steps, junk), ".pdf")
    assert doc is None or isinstance(doc.text, str)


def bytes_property(data: bytes, suffix: str) -> None:
    _count("random bytes (txt/md/html/pdf)")
    doc = _load(data, suffix)
    assert doc is None or (isinstance(doc, Document) and "\x00" not in doc.text)


TAGS = ["div", "p", "span", "table", "tr", "td", "pre", "script", "style", "b", "li", "ul", "title", "br", "svg", "!--"]
html_piece = st.one_of(
    st.sampled_from(TAGS).map(lambda t: f"<{t}>"),
    st.sampled_from(TAGS).map(lambda t: f"</{t}>"),
    st.sampled_from(["&amp;", "&lt;", "&#0;", "&#x110000;", "&nbsp;", "&bogus;", "<!DOCTYPE x [<!ENTITY e 'x'>]>"]),
    st.text(max_size=20),
)


def html_property(pieces: list[str]) -> None:
    _count("random HTML token soups")
    html = "".join(pieces)
    text, title = extract_html(html, "fuzz.html")
    assert (text, title) == html_to_text(html)  # deterministic
    assert "\x00" not in title


def text_property(data: bytes) -> None:
    _count("random bytes through decode + front matter")
    try:
        text, encoding = decode_text(data, "fuzz.txt")
    except DocumentLoadError:
        return
    assert "\r" not in text and encoding in ("utf-8", "cp1252", "utf-16", "utf-32")
    body, meta = split_front_matter("---\n" + text[:200] + "\n---\n" + text)
    assert text.endswith(body) or body.endswith(text) or body in ("---\n" + text[:200] + "\n---\n" + text)
    assert all(key.startswith("fm.") for key in meta)


names = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="/\x00"), min_size=1, max_size=40
).filter(lambda n: n not in (".", "..") and len(n.encode()) < 200)


def folder_property(files: list[tuple[str, str, bytes]]) -> None:
    _count("random folder trees")
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        written = set()
        for sub, name, data in files:
            path = root / sub / (name + ".txt") if sub else root / (name + ".txt")
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
            except OSError:
                continue
            written.add(path.relative_to(root).as_posix())
        report = load_folder(root)
        for doc in report.documents:
            assert not doc.id.startswith("/") and "/../" not in f"/{doc.id}/"
            assert doc.id in written
        assert len(report.documents) + len(report.failures) <= len(written)


def _fuzz(prop: Callable[..., None], examples: int, *strategies: Any) -> Callable[[], None]:
    return settings(max_examples=examples, **SETTINGS)(given(*strategies)(prop))


STRATEGIES: dict[str, tuple[Callable[..., None], tuple[Any, ...]]] = {
    "pdf": (pdf_property, (st.lists(mutation, min_size=1, max_size=6), st.binary(max_size=64))),
    "bytes": (bytes_property, (st.binary(max_size=4096), st.sampled_from([".txt", ".md", ".html", ".pdf"]))),
    "html": (html_property, (st.lists(html_piece, max_size=200),)),
    "text": (text_property, (st.binary(max_size=2048),)),
    "folder": (
        folder_property,
        (
            st.lists(
                st.tuples(st.sampled_from(["", "a", "a/b", "..x", "é"]), names, st.binary(max_size=64)), max_size=8
            ),
        ),
    ),
}


@pytest.mark.parametrize("kind", list(STRATEGIES))
def test_loader_fuzz(kind: str, record: Any) -> None:
    prop, strategies = STRATEGIES[kind]
    before = dict(COUNTS)
    _fuzz(prop, FAST, *strategies)()
    name = next(k for k in COUNTS if COUNTS[k] != before.get(k))
    record(f"loader fuzz: {name}", runs=COUNTS[name] - before.get(name, 0), crashes=0, untyped_errors=0)


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(STRATEGIES))
def test_loader_fuzz_long(kind: str, record: Any) -> None:
    prop, strategies = STRATEGIES[kind]
    before = dict(COUNTS)
    _fuzz(prop, SLOW // 4 if kind == "folder" else SLOW, *strategies)()
    name = next(k for k in COUNTS if COUNTS[k] != before.get(k))
    record(f"loader fuzz: {name}", runs=COUNTS[name] - before.get(name, 0), crashes=0, untyped_errors=0)


def test_fuzz_harness_sees_real_documents() -> None:
    """The properties are not vacuous: the unmutated inputs load as documents."""
    doc = _load(BASE_PDF, ".pdf")
    assert doc is not None and "fuzzing the loaders" in doc.text
    assert _load(b"plain words", ".txt") is not None
    assert os.path.basename(__file__).startswith("test_")
