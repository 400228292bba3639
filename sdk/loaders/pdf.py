"""PDF text extraction with pypdfium2, one string per page.

PDFium is not thread-safe, so every call into it here holds :data:`PDFIUM_LOCK`; other ragloom code that
touches PDFium (page rendering for visual retrievers) should take the same lock.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from ragloom.errors import DocumentLoadError, MissingExtraError
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
    """The text layer of a PDF: one string per page (``""`` for pages without text) and the document title."""

    pages: list[str]
    title: str

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


def _open_reason(exc: Exception) -> str:
    code = getattr(exc, "err_code", None)
    if code == _FPDF_ERR_PASSWORD:
        return "the PDF is encrypted with a password; decrypt it first (e.g. `qpdf --decrypt in.pdf out.pdf`)"
    if code == _FPDF_ERR_SECURITY:
        return "the PDF uses an unsupported security handler (encryption); decrypt it first"
    return f"not a readable PDF (corrupt or truncated?): {exc}"


def _page_text(pdf: Any, index: int) -> str:
    page = pdf.get_page(index)
    try:
        textpage = page.get_textpage()
        try:
            # get_text_bounded returns full Unicode (get_text_range is limited to UCS-2).
            text: str = textpage.get_text_bounded(errors="replace")
        finally:
            textpage.close()
    finally:
        page.close()
    return normalise_newlines(text).translate(_SOFT_HYPHEN_MARKERS)


def extract_pdf_text(data: bytes, path: str) -> PdfText:
    """Extract the text of every page of the PDF in ``data``.

    Raises :class:`DocumentLoadError` for encrypted, corrupt or truncated files, naming the page when a single
    page cannot be read.
    """
    pdfium = _pdfium()
    with PDFIUM_LOCK:
        try:
            pdf = pdfium.PdfDocument(data)
        except pdfium.PdfiumError as exc:
            raise DocumentLoadError(path, _open_reason(exc)) from exc
        try:
            pages: list[str] = []
            for index in range(len(pdf)):
                try:
                    pages.append(_page_text(pdf, index))
                except pdfium.PdfiumError as exc:
                    raise DocumentLoadError(path, f"page {index + 1} cannot be read: {exc}") from exc
            try:
                title = str(pdf.get_metadata_value("Title") or "").replace("\x00", "").strip()
            except pdfium.PdfiumError:
                title = ""
        finally:
            pdf.close()
    return PdfText(pages, title)
