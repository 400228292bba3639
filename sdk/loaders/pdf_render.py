"""Rendering PDF pages to RGB pixels with PDFium, in the parser worker by default.

A PDF that hangs or bombs PDFium's text extraction does the same to its renderer, so page images for visual
retrievers come from the same worker process as text (:mod:`ragloom.loaders._isolation`), under the same time and
memory limits (per page here): a hostile page is one :class:`~ragloom.errors.DocumentLoadError`. The worker keeps
the last PDF open, so a document's pages are rendered without reopening it (or resending its bytes), until the
renderer closes. With ``configure_parsing(
isolate=False)`` pages render in this process, holding :data:`~ragloom.loaders.pdf.PDFIUM_LOCK`.

A page renders at ``dpi`` unless its longest side would exceed ``max_side`` pixels, in which case it is scaled
down to fit; a page whose size at ``dpi`` exceeds ``max_source_pixels`` is refused as a likely decompression bomb.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any

from ragloom._imports import require
from ragloom.errors import DocumentLoadError
from ragloom.loaders._isolation import FRAME, current_limits, run_isolated
from ragloom.loaders.pdf import PDFIUM_LOCK

__all__ = ["PageLimits", "PdfPageRenderer", "RenderedPage"]


@dataclass(frozen=True)
class PageLimits:
    """Resolution and bounds of a rendered page (see the module docstring)."""

    dpi: float
    max_side: int
    max_source_pixels: int


@dataclass(frozen=True)
class RenderedPage:
    """One page as packed RGB bytes (``width * height * 3``), and the resolution it was rendered at."""

    number: int
    width: int
    height: int
    dpi: float
    downscaled: bool
    pixels: bytes


def _pdfium() -> Any:
    return require("pypdfium2", "multivector", "rendering PDF pages")


# -- the PDFium side (this process, or the worker) -----------------------------------------------------------------
def _scale_for(width_pt: float, height_pt: float, limits: PageLimits, number: int) -> float | str:
    """The render scale, or why the page is refused."""
    if not (width_pt > 0 and height_pt > 0):
        return f"page {number} has an empty size ({width_pt} x {height_pt} pt)"
    scale = limits.dpi / 72.0
    pixels = width_pt * scale * height_pt * scale
    if pixels > limits.max_source_pixels:
        return (
            f"page {number} is {width_pt:.0f} x {height_pt:.0f} pt: at {limits.dpi:g} dpi it would be "
            f"{pixels / 1e6:.0f} megapixels, over the {limits.max_source_pixels / 1e6:.0f}-megapixel limit "
            "(a decompression bomb?). Lower dpi or raise max_source_pixels if the page is genuine."
        )
    return min(scale, limits.max_side / max(width_pt, height_pt))


def _open(source: str | bytes) -> Any | dict[str, Any]:
    pdfium = _pdfium()
    try:
        return pdfium.PdfDocument(source)
    except pdfium.PdfiumError as exc:
        return {"error": f"not a readable PDF: {exc}"}
    except FileNotFoundError:
        return {"error": "file not found"}


def _render(pdf: Any, number: int, limits: PageLimits) -> dict[str, Any]:
    """One page in the wire format: size, dpi, downscaled and ``pixels`` (bytes), or ``error``."""
    pdfium = _pdfium()
    with PDFIUM_LOCK:
        if not 1 <= number <= len(pdf):
            return {"error": f"has {len(pdf)} pages; page {number} does not exist"}
        try:
            page = pdf[number - 1]
            try:
                width_pt, height_pt = page.get_size()
                scale = _scale_for(width_pt, height_pt, limits, number)
                if isinstance(scale, str):
                    return {"error": scale}
                bitmap = page.render(scale=scale)
                try:
                    image = bitmap.to_pil().convert("RGB")  # convert copies out of PDFium's buffer
                finally:
                    bitmap.close()
            finally:
                page.close()
        except pdfium.PdfiumError as exc:
            return {"error": f"page {number} cannot be rendered: {exc}"}
    width, height = image.size
    downscaled = scale < limits.dpi / 72.0
    return {"width": width, "height": height, "dpi": scale * 72.0, "downscaled": downscaled, "pixels": image.tobytes()}


_worker_pdf: tuple[object, Any] | None = None  # (what was opened, the open document): the worker's last PDF


def _drop_worker_pdf() -> None:
    global _worker_pdf
    if _worker_pdf is not None:
        _worker_pdf[1].close()
        _worker_pdf = None


def handle_render_request(payload: bytes) -> dict[str, Any]:
    """The worker's side of a b"R" request: a JSON spec, then the PDF's bytes when it is not a file and the worker
    does not hold it yet. ``page`` 0 asks for the page count, ``drop`` releases the open PDF."""
    global _worker_pdf
    (size,) = FRAME.unpack(payload[: FRAME.size])
    spec = json.loads(payload[FRAME.size : FRAME.size + size])
    if spec.get("drop"):
        _drop_worker_pdf()
        return {"dropped": True}
    path = spec.get("path")
    if path is not None:
        try:
            stat = os.stat(path)
        except FileNotFoundError:
            return {"error": "file not found"}
        key: object = (path, stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
    else:
        key = spec["digest"]
    if _worker_pdf is None or _worker_pdf[0] != key:
        _drop_worker_pdf()
        data = payload[FRAME.size + size :]
        if path is None and not data:
            return {"send": True}  # the caller sends the bytes once
        opened = _open(path if path is not None else data)
        del data
        if isinstance(opened, dict):
            return opened
        _worker_pdf = (key, opened)
    pdf = _worker_pdf[1]
    if spec["page"] == 0:
        return {"count": len(pdf)}
    return _render(pdf, int(spec["page"]), PageLimits(**spec["limits"]))


# -- the caller's side ---------------------------------------------------------------------------------------------
class PdfPageRenderer:
    """Renders the pages of one PDF (a path or bytes), isolated or in this process per ``configure_parsing``.

    Use as a context manager; :attr:`count` is the number of pages, :meth:`render` one page (1-based).
    """

    def __init__(self, source: str | os.PathLike[str] | bytes, limits: PageLimits) -> None:
        _pdfium()  # a missing extra is reported here, in the caller's process
        self.where = "<bytes>" if isinstance(source, bytes) else str(source)
        self.limits = limits
        self._parsing = current_limits()
        self._data = source if isinstance(source, bytes) else None
        self._digest = hashlib.sha256(source).hexdigest() if isinstance(source, bytes) else None
        self._path = None if isinstance(source, bytes) else os.path.abspath(source)
        self._pdf: Any = None
        if self._parsing.isolate:
            self.count = int(self._call(0)["count"])
        else:
            with PDFIUM_LOCK:
                opened = _open(self._data if self._data is not None else str(self._path))
                if isinstance(opened, dict):
                    raise DocumentLoadError(self.where, opened["error"])
                self._pdf = opened
                self.count = len(opened)

    def _call(self, page: int, **extra: object) -> dict[str, Any]:
        spec = {"path": self._path, "digest": self._digest, "page": page, "limits": self.limits.__dict__, **extra}
        found = self._send(spec, b"")
        if found.get("send"):  # the worker does not hold these bytes (yet, or any more): send them once
            found = self._send(spec, self._data or b"")
        if "error" in found:
            raise DocumentLoadError(self.where, str(found.get("message") or found["error"]))
        return found

    def _send(self, spec: dict[str, Any], data: bytes) -> dict[str, Any]:
        header = json.dumps(spec).encode("utf-8")
        return run_isolated(b"R", FRAME.pack(len(header)) + header + data, self.where, "PDF page", self._parsing)

    def render(self, number: int) -> RenderedPage:
        if not 1 <= number <= self.count:
            raise DocumentLoadError(self.where, f"has {self.count} pages; page {number} does not exist")
        if self._pdf is not None:
            found = _render(self._pdf, number, self.limits)
            if "error" in found:
                raise DocumentLoadError(self.where, found["error"])
        else:
            found = self._call(number)
        return RenderedPage(
            number, int(found["width"]), int(found["height"]), float(found["dpi"]), found["downscaled"], found["pixels"]
        )

    def close(self) -> None:
        """Release the PDF (in this process, or the worker's copy)."""
        if self._pdf is not None:
            with PDFIUM_LOCK:
                self._pdf.close()
            self._pdf = None
        elif self._parsing.isolate:
            with contextlib.suppress(DocumentLoadError):  # a worker that died holds nothing any more
                self._call(0, drop=True)

    def __enter__(self) -> PdfPageRenderer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
