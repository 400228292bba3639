"""PDF text extraction with pypdfium2, one string per page.

PDFium is not thread-safe, so every call into it here holds :data:`PDFIUM_LOCK`; other ragloom code that
touches PDFium (page rendering for visual retrievers) should take the same lock.

PDFium runs in the parser worker process by default, under the time and memory limits of
:mod:`ragloom.loaders._isolation` (``configure_parsing``): a PDF whose form draws itself hangs PDFium for ever, and
a 1 MB flate bomb makes it allocate gigabytes; isolated, each is one :class:`DocumentLoadError`.
"""

from __future__ import annotations

import ctypes
import threading
from dataclasses import dataclass
from typing import Any

from ragloom.errors import DocumentLoadError, MissingExtraError
from ragloom.loaders._isolation import current_limits, run_isolated
from ragloom.loaders.ligatures import english_frequency, in_word, repair_ligatures, require_word_list, wide_f_glyphs
from ragloom.loaders.text import normalise_newlines

__all__ = ["PDFIUM_LOCK", "PdfText", "extract_pdf_text"]

PDFIUM_LOCK = threading.RLock()

# PDFium marks a word hyphenated across a line end with U+FFFE (get_text_range) or U+0002 (get_text_bounded)
# and joins the two halves; dropping the marker restores the word ("Su-\npreme" -> "Supreme").
_SOFT_HYPHEN_MARKERS = str.maketrans({"\ufffe": None, "\x02": None, "\x00": None})
_FPDF_ERR_PASSWORD = 4
_FPDF_ERR_SECURITY = 5


@dataclass(frozen=True)
class PdfText:
    """The text layer of a PDF: one string per page (``""`` for pages without text) and the document title, with
    the letters that ligature glyphs lost restored (``ligatures_repaired`` words)."""

    pages: list[str]
    title: str
    ligatures_repaired: int = 0  # words whose ligature glyphs had lost letters (ragloom.loaders.ligatures)

    @property
    def empty_pages(self) -> int:
        """Pages with no text layer at all (typically scans that would need OCR)."""
        return sum(1 for page in self.pages if not page.strip())


def _pdfium() -> Any:
    try:
        import pypdfium2
    except ImportError as exc:
        raise MissingExtraError("pypdfium2", "pdf", "PDF loading") from exc
    return pypdfium2


def _open_reason(code: object, message: str) -> str:
    if code == _FPDF_ERR_PASSWORD:
        return "the PDF is encrypted with a password; decrypt it first (e.g. `qpdf --decrypt in.pdf out.pdf`)"
    if code == _FPDF_ERR_SECURITY:
        return "the PDF uses an unsupported security handler (encryption); decrypt it first"
    return f"not a readable PDF (corrupt or truncated?): {message}"


def _font_name(pdfium: Any, textpage: Any, index: int) -> str:
    buffer = ctypes.create_string_buffer(128)
    pdfium.raw.FPDFText_GetFontInfo(textpage, index, buffer, len(buffer), None)
    return buffer.value.decode("utf-8", errors="replace")


def _page_text(pdfium: Any, pdf: Any, page_number: int, samples: list[tuple[int, int, str, float, bool]]) -> str:
    """The page's text as PDFium returns it; appends ``(page, index, font, width / height, ends a word)`` of each "f" to
    ``samples`` (what :func:`ragloom.loaders.ligatures.wide_f_glyphs` reads)."""
    page = pdf.get_page(page_number)
    try:
        textpage = page.get_textpage()
        try:
            # get_text_bounded returns full Unicode (get_text_range is limited to UCS-2).
            text: str = textpage.get_text_bounded(errors="replace")
            if len(text) == textpage.count_chars():  # one character per PDFium char index (else: no glyph geometry)
                for index in (i for i, ch in enumerate(text) if ch == "f"):
                    try:
                        left, bottom, right, top = textpage.get_charbox(index)
                    except pdfium.PdfiumError:  # no box for this glyph: it is not judged, the page still loads
                        continue
                    if top > bottom:
                        ratio = (right - left) / (top - bottom)
                        ends = index + 1 == len(text) or not in_word(text[index + 1])
                        samples.append((page_number, index, _font_name(pdfium, textpage, index), ratio, ends))
        finally:
            textpage.close()
    finally:
        page.close()
    return text


def _clean(text: str) -> str:
    return normalise_newlines(text).translate(_SOFT_HYPHEN_MARKERS)


def _extract(data: bytes) -> dict[str, Any]:
    """Parse in this process; a plain dict (the worker's wire format): pages + title, or what went wrong."""
    pdfium = _pdfium()
    with PDFIUM_LOCK:
        try:
            pdf = pdfium.PdfDocument(data)
        except pdfium.PdfiumError as exc:
            code = getattr(exc, "err_code", None)  # pypdfium2's error code, absent in some versions
            return {"error": "open", "code": code, "message": str(exc)}
        try:
            raw_pages: list[str] = []
            samples: list[tuple[int, int, str, float, bool]] = []
            for index in range(len(pdf)):
                try:
                    raw_pages.append(_page_text(pdfium, pdf, index, samples))
                except pdfium.PdfiumError as exc:
                    return {"error": "page", "page": index + 1, "message": str(exc)}
            try:
                title = str(pdf.get_metadata_value("Title") or "").replace("\x00", "").strip()
            except pdfium.PdfiumError:
                title = ""
        finally:
            pdf.close()
    wide = wide_f_glyphs(samples, len(raw_pages))
    frequency = english_frequency() if any(wide) else None  # the word list loads only for a PDF that needs it
    pages, repaired = [], 0
    for raw_text, glyphs in zip(raw_pages, wide):
        text, changed = repair_ligatures(raw_text, glyphs, frequency) if frequency else (raw_text, 0)
        pages.append(_clean(text))
        repaired += changed
    return {"pages": pages, "title": title, "ligatures_repaired": repaired}


def _result(found: dict[str, Any], path: str) -> PdfText:
    error = found.get("error")
    if error == "open":
        raise DocumentLoadError(path, _open_reason(found.get("code"), str(found.get("message"))))
    if error == "page":
        raise DocumentLoadError(path, f"page {found['page']} cannot be read: {found.get('message')}")
    if error:
        raise DocumentLoadError(path, f"the pdf parser failed: {found.get('message')}")
    return PdfText(list(found["pages"]), str(found["title"]), int(found.get("ligatures_repaired", 0)))


def extract_pdf_text(data: bytes, path: str) -> PdfText:
    """Extract the text of every page of the PDF in ``data``.

    Raises :class:`DocumentLoadError` for encrypted, corrupt or truncated files (naming the page when a single
    page cannot be read), and for files that exceed the parsing time or memory limit.
    """
    _pdfium()  # a missing extra is reported here, in the caller's process
    require_word_list()
    limits = current_limits()
    if limits.isolate:
        return _result(run_isolated(b"P", data, path, "PDF", limits), path)
    return _result(_extract(data), path)
