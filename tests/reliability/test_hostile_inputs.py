"""Hostile inputs: a corpus of malformed and adversarial files ingested through Pipeline.ingest and the real
``ragloom ingest`` command. Zero crashes or hangs of the host process; every file a document, a typed failure
or a clean skip. PDFs are parsed in the isolated worker under time and memory limits (ragloom.loaders.pdf)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hostile_corpus import add_special_files, build_corpus

from ragloom.adapters.dense import DenseRetriever
from ragloom.loaders import configure_parsing
from ragloom.pipeline import Pipeline

TYPED = {"DocumentLoadError", "UnsupportedFormatError"}
PDF_LIMITS = {"timeout": 2.0, "memory_mb": 768}


@pytest.fixture
def pdf_limits() -> Any:
    previous = configure_parsing(**PDF_LIMITS)
    yield
    configure_parsing(isolate=previous.isolate, timeout=previous.timeout, memory_mb=previous.memory_mb)


def _corpus(tmp_path: Path, big: bool, slow_parsers: bool = True) -> tuple[Path, dict[str, str]]:
    root = tmp_path / "corpus"
    cases = build_corpus(root, big=big, slow_parsers=slow_parsers)
    cases.update(add_special_files(root, tmp_path / "outside"))
    return root, cases


def _outcomes(root: Path, cases: dict[str, str], report: Any) -> dict[str, str]:
    """Each case: 'document', 'failure:<type>', 'skipped' or 'hidden' (dot-files are never walked)."""
    outcome: dict[str, str] = {}
    by_path = {os.path.abspath(root / name): name for name in cases}
    for doc_id in report.documents:  # folder ingest: ids are paths relative to the folder
        outcome[doc_id] = "document"
    for failure in report.failures:
        outcome[by_path.get(failure.path, failure.path)] = f"failure:{failure.error_type}"
    for path in report.skipped:
        outcome[by_path.get(path, path)] = "skipped"
    for name in cases:
        if name not in outcome and any(part.startswith(".") for part in Path(name).parts):
            outcome[name] = "hidden"
    return outcome


def _check(root: Path, cases: dict[str, str], outcome: dict[str, str], texts: dict[str, str]) -> None:
    missing = sorted(set(cases) - set(outcome))
    assert not missing, f"files neither loaded, failed nor skipped: {missing}"
    for name, result in outcome.items():
        assert result in ("document", "skipped", "hidden") or result.split(":")[1] in TYPED, (name, result)
    expect = {
        "pdf/valid.pdf": "document",
        "pdf/truncated.pdf": "failure",
        "pdf/encrypted.pdf": "failure",
        "pdf/self_drawing_form.pdf": "failure",  # PDFium hangs on it: stopped by the time limit
        "archives/bomb.zip": "skipped",
        "archives/zip_as.txt": "failure",
        "garbage/random.txt": "failure",
        "text/invalid_utf8.txt": "document",
        "text/bad_utf16.txt": "failure",
        "html/xxe.html": "document",
        "xml/xxe.xml": "skipped",
        "links/passwd.txt": "failure",
        "links/secret.txt": "failure",
        "links/outside_dir": "failure",
        "links/up.txt": "failure",
        "links/zero.txt": "failure",
        "links/dangling.txt": "failure",
        "links/loop_a.txt": "failure",
        "fifo.txt": "failure",
        "sparse_huge.txt": "failure",
        "names/....txt": "hidden",
        "names/..\\..\\evil.txt": "hidden",
        "names/a\\..\\..\\evil.txt": "document",
        "html/deep_divs.html": "failure",  # lexbor is quadratic in depth: stopped by the time limit
    }
    for name, wanted in expect.items():
        if name in cases:
            assert outcome[name].split(":")[0] == wanted, (name, outcome[name])
    assert "lava" in texts["pdf/valid.pdf"]
    xxe = texts["html/xxe.html"]
    assert "root:" not in xxe and "lollollol" not in xxe and "steal" not in xxe


def _ids_are_contained(ids: list[str]) -> None:
    for doc_id in ids:
        assert not doc_id.startswith("/") and "/../" not in f"/{doc_id}/", doc_id


def test_hostile_corpus_through_pipeline_ingest(tmp_path: Path, encoder: Any, pdf_limits: Any, record: Any) -> None:
    from ragloom.loaders import load_file

    root, cases = _corpus(tmp_path, big=False)
    pipeline = Pipeline([DenseRetriever(encoder, tmp_path / "index")])
    started = time.perf_counter()
    with pytest.warns(Warning, match="no text"):  # the bombs that parse yield empty pages: reported, not hidden
        report = pipeline.ingest([root])
    elapsed = time.perf_counter() - started
    outcome = _outcomes(root, cases, report)
    texts = {name: load_file(root / name).text for name in ("pdf/valid.pdf", "html/xxe.html")}
    _check(root, cases, outcome, texts)
    _ids_are_contained(list(report.documents))
    hits = pipeline.retrieve("lava flows", k=50)
    assert hits and not any("outside secret" in h.chunk.text or "root:x:" in h.chunk.text for h in hits)
    pipeline.close()
    counts = {
        k: sum(1 for o in outcome.values() if o.split(":")[0] == k)
        for k in ("document", "failure", "skipped", "hidden")
    }
    record(
        "hostile files via Pipeline.ingest",
        runs=len(cases),
        host_crashes=0,
        **counts,
        untyped_errors=0,
        seconds=round(elapsed, 1),
    )


def _cli(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    env = dict(
        os.environ,
        RAGLOOM_PARSER_TIMEOUT=str(PDF_LIMITS["timeout"]),
        RAGLOOM_PARSER_MEMORY_MB=str(PDF_LIMITS["memory_mb"]),
        COLUMNS="4000",  # one report line per file
    )
    command = shutil.which("ragloom", path=os.path.dirname(sys.executable)) or "ragloom"
    return subprocess.run([command, *args], capture_output=True, text=True, timeout=timeout, env=env, check=False)


def _cli_run(tmp_path: Path, tiny_bert_dir: Path, record: Any, big: bool) -> None:
    root, cases = _corpus(tmp_path, big=big, slow_parsers=big)
    index = tmp_path / "index"
    base = ["--index", str(index), "--model", str(tiny_bert_dir), "--store", "memory", "--offline"]
    started = time.perf_counter()
    result = _cli(["ingest", str(root), *base], timeout=900)
    elapsed = time.perf_counter() - started
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and "Indexed" in result.stdout
    reported = [line for line in result.stderr.splitlines() if line.startswith("skipped")]
    assert any("encrypted.pdf" in line and "password" in line for line in reported), reported
    assert any("passwd.txt" in line and "outside the folder" in line for line in reported), reported
    if big:
        assert any("self_drawing_form.pdf" in line for line in reported), reported
        strict = _cli(["ingest", str(root), *base, "--strict"], timeout=900)
        assert strict.returncode == 2 and "error:" in strict.stderr and "Traceback" not in strict.stderr
    from ragloom.recipes.config import open_pipeline

    with open_pipeline(index) as pipeline:  # what the command wrote opens, holds the good files, and answers
        stored = [d for batch in pipeline.documents.iter_documents() for d in batch]
        assert any("lava" in d.text for d in stored)
        assert pipeline.retrieve("lava flows", k=5)  # ranking by a tiny random model: only that it answers
    record(
        f"hostile files via `ragloom ingest`{' (large bombs, --strict too)' if big else ''}",
        runs=len(cases),
        host_crashes=0,
        exit_code=result.returncode,
        reported_failures=len(reported),
        seconds=round(elapsed, 1),
    )


@pytest.mark.slow
def test_hostile_corpus_through_the_cli(tmp_path: Path, tiny_bert_dir: Path, record: Any) -> None:
    _cli_run(tmp_path, tiny_bert_dir, record, big=False)


@pytest.mark.slow
def test_large_bombs_through_the_cli(tmp_path: Path, tiny_bert_dir: Path, record: Any) -> None:
    _cli_run(tmp_path, tiny_bert_dir, record, big=True)


def _read_text(path: Path) -> str:
    from ragloom.loaders import load_file

    return load_file(path).text


def _render_pages(path: Path) -> str:
    from ragloom.adapters.multivector.pages import RenderSettings, iter_pdf_pages

    return f"{len(list(iter_pdf_pages(path, RenderSettings(dpi=36))))} page(s)"


@pytest.mark.parametrize("use", ["text", "pages"])
@pytest.mark.parametrize(
    ("builder", "reason"),
    [
        ("self_drawing_form_pdf", "longer than|memory limit"),
        ("flate_bomb_pdf", "memory limit"),
    ],
)
def test_pdf_guard_stops_hangs_and_bombs(tmp_path: Path, builder: str, reason: str, use: str, record: Any) -> None:
    """The two PDFs that take down an unguarded PDFium (a hang; gigabytes from a 1 MB file) are contained, whether
    their text is read (loaders) or their pages are rendered (visual retrievers)."""
    import hostile_corpus

    from ragloom.errors import DocumentLoadError

    read = {"text": _read_text, "pages": _render_pages}[use]
    data = getattr(hostile_corpus, builder)(*([1 << 30] if builder == "flate_bomb_pdf" else []))
    path = tmp_path / "hostile.pdf"
    path.write_bytes(data)
    previous = configure_parsing(timeout=3.0, memory_mb=512)
    try:
        started = time.perf_counter()
        with pytest.raises(DocumentLoadError, match=reason):
            read(path)
        elapsed = time.perf_counter() - started
        after = tmp_path / "after.pdf"
        after.write_bytes(hostile_corpus.text_pdf(["still works"]))
        result = read(after)
        assert "still works" in result or result == "1 page(s)"  # a fresh worker takes over
    finally:
        configure_parsing(isolate=previous.isolate, timeout=previous.timeout, memory_mb=previous.memory_mb)
    label = "PDF guard" if use == "text" else "page rendering guard"
    record(f"{label}: {builder}", runs=1, contained=1, seconds=round(elapsed, 1), file_kib=len(data) >> 10)


def test_pdf_isolation_can_be_turned_off(tmp_path: Path) -> None:
    import hostile_corpus

    from ragloom.loaders import _isolation, load_file

    path = tmp_path / "ok.pdf"
    path.write_bytes(hostile_corpus.text_pdf(["in process"]))
    previous = configure_parsing(isolate=False)
    try:
        _isolation.stop_worker()
        assert "in process" in load_file(path).text
        assert _isolation._worker is None  # no worker was started
    finally:
        configure_parsing(isolate=previous.isolate)
