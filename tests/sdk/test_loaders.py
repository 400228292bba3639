"""Tests for ragloom.loaders: every format, decoding, PDF pages, folder walks and their failure reports."""

from __future__ import annotations

import ctypes
import difflib
import hashlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ragloom.errors import DocumentLoadError, InvalidInputError, MissingExtraError, UnsupportedFormatError
from ragloom.loaders import LoadFailure, load_file, load_folder, load_paths

SAMPLE_PDFS = Path("/work/shared/data/sample_pdfs")
SAMPLE_PAGES = {
    "598us1r3_j4ek.pdf": 24,
    "598us1r4_1a7d.pdf": 32,
    "598us1r5_1b72.pdf": 18,
    "598us1r6_0813.pdf": 32,
}


def make_pdf(pages: list[list[str]]) -> bytes:
    """A PDF with one page per entry, each line drawn in Helvetica (an empty list: a page without text)."""
    pdfium = pytest.importorskip("pypdfium2")
    raw = pdfium.raw
    pdf = pdfium.PdfDocument.new()
    for lines in pages:
        page = pdf.new_page(300, 400)
        for i, line in enumerate(lines):
            obj = raw.FPDFPageObj_NewTextObj(pdf.raw, b"Helvetica", ctypes.c_float(12))
            text = ctypes.create_string_buffer((line + "\x00").encode("utf-16-le"))
            raw.FPDFText_SetText(obj, ctypes.cast(text, ctypes.POINTER(raw.FPDF_WCHAR)))
            raw.FPDFPageObj_Transform(obj, 1, 0, 0, 1, 20, 350 - 20 * i)
            raw.FPDFPage_InsertObject(page.raw, obj)
        page.gen_content()
        page.close()
    buffer = io.BytesIO()
    pdf.save(buffer)
    pdf.close()
    return buffer.getvalue()


def only_ligature_letters_added(before: str, after: str) -> bool:
    """``after`` is ``before`` with only "i"/"l" inserted after an "f" (what ligature repair may add)."""
    matcher = difflib.SequenceMatcher(None, before, after, autojunk=False)
    return all(
        op == "equal" or (op == "insert" and set(after[j1:j2]) <= {"i", "l", "f"} and "f" in after[j1 - 1 : j1 + 1])
        for op, _, _, j1, j2 in matcher.get_opcodes()
    )


def encrypted_pdf() -> bytes:
    """A hand-built PDF whose standard security handler needs a password we do not have."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] >>",
        b"<< /Filter /Standard /V 1 /R 2 /Length 40 /P -4 /O <" + b"11" * 32 + b"> /U <" + b"22" * 32 + b"> >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 5\n0000000000 65535 f \n" + b"".join(b"%010d 00000 n \n" % o for o in offsets)
    file_id = b"<" + b"ab" * 16 + b">"
    out += b"trailer\n<< /Size 5 /Root 1 0 R /Encrypt 4 0 R /ID [%s %s] >>\n" % (file_id, file_id)
    out += b"startxref\n%d\n%%%%EOF\n" % xref
    return bytes(out)


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def symlink_or_skip(link: Path, target: Path) -> None:
    try:
        link.symlink_to(target)
    except (OSError, NotImplementedError) as exc:
        pytest.skip(f"symlinks unavailable here: {exc}")


# -- text ------------------------------------------------------------------------------------------
def test_text_utf8_metadata_and_newlines(tmp_path: Path) -> None:
    path = write(tmp_path / "notes.txt", "Grüße, 東京 — naïve\r\nline two\rline three\n")
    doc = load_file(path)
    assert doc.text == "Grüße, 東京 — naïve\nline two\nline three\n"
    assert doc.id == "notes.txt" and doc.source == str(path.absolute()) and doc.pages == ()
    assert doc.metadata == {
        "filename": "notes.txt",
        "format": "text",
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "encoding": "utf-8",
    }


@pytest.mark.parametrize(
    ("data", "encoding"),
    [
        (b"\xef\xbb\xbfcaf\xc3\xa9", "utf-8"),
        ("\ufeffcafé".encode("utf-16-le"), "utf-16"),
        ("\ufeffcafé".encode("utf-16-be"), "utf-16"),
        ("\ufeffcafé".encode("utf-32-le"), "utf-32"),
    ],
)
def test_byte_order_marks(tmp_path: Path, data: bytes, encoding: str) -> None:
    doc = load_file(write(tmp_path / "bom.txt", data))
    assert doc.text == "café" and doc.metadata["encoding"] == encoding


def test_invalid_utf8_falls_back_to_cp1252(tmp_path: Path) -> None:
    doc = load_file(write(tmp_path / "legacy.log", b"caf\xe9 \x93quoted\x94 \x80 \x81\r\n"))
    assert doc.text == "café “quoted” € \x81\n"
    assert doc.metadata["encoding"] == "cp1252"


def test_nul_bytes_mean_binary(tmp_path: Path) -> None:
    with pytest.raises(DocumentLoadError, match="binary file"):
        load_file(write(tmp_path / "blob.txt", b"abc\x00\x01\x02"))


def test_bad_utf16_is_a_load_error(tmp_path: Path) -> None:
    with pytest.raises(DocumentLoadError, match="not valid UTF-16"):
        load_file(write(tmp_path / "odd.txt", b"\xff\xfea\x00\x00\xdc"))


@pytest.mark.parametrize("name", ["a.rst", "b.TXT", "c.text", "d.Log"])
def test_plain_text_suffixes(tmp_path: Path, name: str) -> None:
    assert load_file(write(tmp_path / name, "x")).metadata["format"] == "text"


def test_unsupported_missing_and_folder(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedFormatError, match=r"no loader for '\.xyz' files; supported: .*\.pdf"):
        load_file(write(tmp_path / "a.xyz", "x"))
    with pytest.raises(UnsupportedFormatError, match="without a suffix"):
        load_file(write(tmp_path / "README", "x"))
    with pytest.raises(DocumentLoadError, match="file not found"):
        load_file(tmp_path / "missing.txt")
    with pytest.raises(DocumentLoadError, match="is a folder"):
        load_file(tmp_path)


def test_size_guard(tmp_path: Path) -> None:
    path = write(tmp_path / "big.txt", "x" * 100)
    assert load_file(path, max_bytes=100).text == "x" * 100
    with pytest.raises(DocumentLoadError, match=r"larger than the 0\.0 MiB limit"):
        load_file(path, max_bytes=99)


def test_doc_id_and_root(tmp_path: Path) -> None:
    path = write(tmp_path / "sub" / "dir" / "a.txt", "x")
    assert load_file(path, doc_id="custom").id == "custom"
    assert load_file(path, root=tmp_path).id == "sub/dir/a.txt"
    with pytest.raises(InvalidInputError, match="not inside root"):
        load_file(path, root=tmp_path / "elsewhere")


# -- markdown --------------------------------------------------------------------------------------
def test_markdown_front_matter(tmp_path: Path) -> None:
    source = (
        '---\ntitle: "Hello: world"\nyear: 2023\nscore: 0.5\ndraft: false\nauthor: Ada  # comment\n'
        "huge: 1.0e999\ntags:\n  - a\n  - b\nnested:\n  key: v\nlist: [1, 2]\n---\n\n"
        "# Heading\n\nBody — ünïcode.\n"
    )
    doc = load_file(write(tmp_path / "post.md", source))
    assert doc.text == "# Heading\n\nBody — ünïcode.\n"
    fm = {k: v for k, v in doc.metadata.items() if k.startswith("fm.")}
    assert fm == {
        "fm.title": "Hello: world",
        "fm.year": 2023,
        "fm.score": 0.5,
        "fm.draft": False,
        "fm.author": "Ada",
        "fm.huge": "1.0e999",
    }
    assert doc.metadata["format"] == "markdown"


@pytest.mark.parametrize("text", ["# No front matter\n\n---\nrule above\n", "---\nnot: closed\n\nbody\n"])
def test_markdown_without_front_matter_is_unchanged(tmp_path: Path, text: str) -> None:
    doc = load_file(write(tmp_path / "x.markdown", text))
    assert doc.text == text and not any(k.startswith("fm.") for k in doc.metadata)


# -- html ------------------------------------------------------------------------------------------
HTML = """<!doctype html><html><head><title>  My   Page </title><style>p{color:red}</style>
<script>var leaked = "SCRIPT";</script></head><body>
<noscript>NOSCRIPT</noscript><template><p>TEMPLATE</p></template>
<h1>Heading</h1><p>Hello <b>bold</b>   world &amp; friends.</p>



<div>line<br>break</div><ul><li>one</li><li>two</li></ul>
<table><tr><th>k</th><td>v</td></tr></table><pre>  code
    indented</pre><p>Ünïcode ✓</p></body></html>"""


def test_html_text_and_title(tmp_path: Path) -> None:
    pytest.importorskip("selectolax")
    doc = load_file(write(tmp_path / "page.html", HTML))
    assert doc.metadata["title"] == "My Page" and doc.metadata["format"] == "html"
    assert doc.text == (
        "Heading\n\nHello bold world & friends.\n\nline\nbreak\n\none\ntwo\n\nk\tv\n\n  code\n    indented\n\nÜnïcode ✓"
    )
    for hidden in ("SCRIPT", "NOSCRIPT", "TEMPLATE", "color:red"):
        assert hidden not in doc.text


def test_html_external_entities_are_not_resolved(tmp_path: Path) -> None:
    pytest.importorskip("selectolax")
    secret = write(tmp_path / "secret.txt", "TOP-SECRET-CONTENT")
    for target in (secret.absolute().as_uri(), "file:///etc/passwd"):
        html = f'<!DOCTYPE html [<!ENTITY xxe SYSTEM "{target}">]><html><body><p>A &xxe; B</p></body></html>'
        doc = load_file(write(tmp_path / "xxe.htm", html))
        assert "TOP-SECRET-CONTENT" not in doc.text and "root:" not in doc.text
        assert "A &xxe; B" in doc.text


def test_deeply_nested_html(tmp_path: Path) -> None:
    pytest.importorskip("selectolax")
    doc = load_file(write(tmp_path / "deep.html", "<div>" * 5000 + "deep" + "</div>" * 5000))
    assert doc.text == "deep"


def test_parser_crash_becomes_load_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ragloom.loaders.html as html_module

    def boom(html: str) -> tuple[str, str]:
        raise ValueError("parser exploded")

    from ragloom.loaders import configure_parsing

    monkeypatch.setattr(html_module, "html_to_text", boom)
    previous = configure_parsing(isolate=False)  # in this process, where the monkeypatch applies
    try:
        with pytest.raises(DocumentLoadError, match="html parser failed: ValueError: parser exploded"):
            load_file(write(tmp_path / "a.html", "<p>x</p>"))
    finally:
        configure_parsing(isolate=previous.isolate, timeout=previous.timeout, memory_mb=previous.memory_mb)


@pytest.mark.parametrize(
    ("modules", "name", "extra"),
    [
        (("pypdfium2",), "a.pdf", "pdf"),
        (("spellchecker",), "a.pdf", "pdf"),
        (("selectolax", "selectolax.lexbor"), "a.html", "html"),
    ],
)
def test_missing_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, modules: tuple[str, ...], name: str, extra: str
) -> None:
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(MissingExtraError, match=rf"ragloom\[{extra}\]"):
        load_file(write(tmp_path / name, "%PDF-1.4" if extra == "pdf" else "<p>x</p>"))


# -- pdf -------------------------------------------------------------------------------------------
def test_pdf_pages_are_exact(tmp_path: Path) -> None:
    path = write(tmp_path / "three.pdf", make_pdf([["Page one café", "second line"], [], ["Third page"]]))
    doc = load_file(path)
    assert [doc.page_text(n) for n in (1, 2, 3)] == ["Page one café\nsecond line", "", "Third page"]
    assert doc.text == "Page one café\nsecond line\n\n\n\nThird page"
    assert [(p.start, p.end) for p in doc.pages] == [(0, 25), (27, 27), (29, 39)]
    assert doc.metadata["pages"] == 3 and doc.metadata["empty_pages"] == 1 and doc.metadata["format"] == "pdf"
    assert doc.page_at(doc.text.index("Third")) == 3


def test_scanned_only_pdf_is_still_a_document(tmp_path: Path) -> None:
    doc = load_file(write(tmp_path / "scan.pdf", make_pdf([[], []])))
    assert len(doc.pages) == 2 and doc.page_text(1) == "" and doc.metadata["empty_pages"] == 2


@pytest.mark.parametrize("kind", ["random", "truncated", "empty", "encrypted"])
def test_bad_pdfs(tmp_path: Path, kind: str) -> None:
    pytest.importorskip("pypdfium2")
    data = {
        "random": os.urandom(2048),
        "truncated": make_pdf([["hello"]])[:-40],
        "empty": b"",
        "encrypted": encrypted_pdf(),
    }[kind]
    with pytest.raises(DocumentLoadError, match="encrypted" if kind == "encrypted" else "not a readable PDF"):
        load_file(write(tmp_path / f"{kind}.pdf", data))


@pytest.mark.skipif(not SAMPLE_PDFS.is_dir(), reason=f"{SAMPLE_PDFS} not present (shared sample data)")
def test_sample_pdfs(tmp_path: Path) -> None:
    report = load_folder(SAMPLE_PDFS, include=["*.pdf"])
    assert report.failures == () and {d.id: d.metadata["pages"] for d in report.documents} == SAMPLE_PAGES
    for doc in report.documents:
        assert doc.metadata["empty_pages"] == 0 and "Supreme" in doc.text
        assert not any(c in doc.text for c in "\ufffe\x02\r\x00")
    pdfium = pytest.importorskip("pypdfium2")
    doc = report.documents[0]
    pdf = pdfium.PdfDocument(doc.source)
    for index in range(len(pdf)):  # each page span holds what PDFium extracts, plus the letters ligatures lost
        extracted = pdf[index].get_textpage().get_text_bounded().replace("\r\n", "\n").replace("\x02", "")
        assert only_ligature_letters_added(extracted, doc.page_text(index + 1))
    pdf.close()
    assert all(d.metadata["ligatures_repaired"] > 0 for d in report.documents)  # "signifcant", "fled" (filed)
    data = (SAMPLE_PDFS / "598us1r5_1b72.pdf").read_bytes()
    with pytest.raises(DocumentLoadError):
        load_file(write(tmp_path / "cut.pdf", data[: len(data) // 2]))


@pytest.mark.skipif(not (SAMPLE_PDFS / "hard_cases").is_dir(), reason="sample_pdfs/hard_cases not present")
def test_hard_case_pdfs_load_or_fail_cleanly() -> None:
    for path in sorted((SAMPLE_PDFS / "hard_cases").glob("*.pdf")):
        try:
            doc = load_file(path)
        except DocumentLoadError:
            continue
        assert doc.metadata["pages"] == len(doc.pages)


# -- folders ---------------------------------------------------------------------------------------
@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    write(root / "good.txt", "good text")
    write(root / "sub" / "deeper.md", "# deep")
    write(root / "bad.pdf", b"not a pdf at all")
    write(root / "notes.docx", b"PK\x03\x04")
    write(root / ".hidden.txt", "hidden")
    write(root / ".git" / "config.txt", "hidden dir")
    outside = write(tmp_path / "outside" / "secret.txt", "outside secret")
    symlink_or_skip(root / "link_out.txt", outside)
    symlink_or_skip(root / "link_in.txt", root / "good.txt")
    return root


def test_folder_report(folder: Path) -> None:
    report = load_folder(folder)
    assert [d.id for d in report.documents] == ["good.txt", "sub/deeper.md"]
    assert [(Path(f.path).name, f.error_type) for f in report.failures] == [
        ("bad.pdf", "DocumentLoadError"),
        ("link_out.txt", "DocumentLoadError"),
    ]
    assert "not a readable PDF" in report.failures[0].reason
    assert report.failures[1].reason.startswith("symlink outside the folder")
    assert [Path(p).name for p in report.skipped] == ["link_in.txt", "notes.docx"]
    assert all(Path(p).is_absolute() for p in report.skipped)
    assert all("outside secret" not in d.text for d in report.documents)


def test_folder_options(folder: Path) -> None:
    followed = load_folder(folder, follow_symlinks=True)
    assert [d.id for d in followed.documents] == ["good.txt", "link_in.txt", "sub/deeper.md"]
    assert [Path(f.path).name for f in followed.failures] == ["bad.pdf", "link_out.txt"]
    assert [d.id for d in load_folder(folder, include=["*.MD"]).documents] == ["sub/deeper.md"]
    assert [d.id for d in load_folder(folder, include="sub/*").documents] == ["sub/deeper.md"]
    assert [d.id for d in load_folder(folder, recursive=False).documents] == ["good.txt"]


def test_folder_strict_raises(folder: Path) -> None:
    with pytest.raises(DocumentLoadError, match=r"bad\.pdf"):
        load_folder(folder, strict=True)


def test_symlink_cycle_is_not_followed_forever(tmp_path: Path) -> None:
    write(tmp_path / "a" / "x.txt", "x")
    symlink_or_skip(tmp_path / "a" / "loop", tmp_path / "a")
    report = load_folder(tmp_path, follow_symlinks=True)
    assert [d.id for d in report.documents] == ["a/x.txt"] and report.failures == ()


def test_load_folder_bad_root(tmp_path: Path) -> None:
    with pytest.raises(DocumentLoadError, match="folder not found"):
        load_folder(tmp_path / "nope")
    with pytest.raises(DocumentLoadError, match="not a folder"):
        load_folder(write(tmp_path / "f.txt", "x"))


def test_load_paths(tmp_path: Path) -> None:
    a = write(tmp_path / "a" / "x.txt", "from a")
    b = write(tmp_path / "b" / "x.txt", "from b")
    write(tmp_path / "c" / "y.md", "y")
    report = load_paths([a, tmp_path / "c", a, b, tmp_path / "missing.txt", write(tmp_path / "z.bin", b"z")])
    assert [d.text for d in report.documents] == ["from a", "y"]
    assert {Path(f.path).name: f.error_type for f in report.failures} == {
        "missing.txt": "DocumentLoadError",
        "z.bin": "UnsupportedFormatError",
        "x.txt": "DocumentLoadError",
    }
    assert any("duplicate document id 'x.txt'" in f.reason for f in report.failures)
    assert [d.id for d in load_paths(str(tmp_path / "c")).documents] == ["y.md"]
    with pytest.raises(DocumentLoadError, match="not found"):
        load_paths([tmp_path / "missing.txt"], strict=True)


def test_load_failure_is_frozen() -> None:
    failure = LoadFailure("p", "r", "DocumentLoadError")
    with pytest.raises(AttributeError):
        failure.reason = "x"  # type: ignore[misc]


def test_import_is_light() -> None:
    code = "import sys, ragloom.loaders; print([m for m in ('pypdfium2', 'selectolax') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
