"""Page images for visual retrievers: PDF pages rendered with pypdfium2, or image files read with Pillow.

Rendering is bounded: a page renders at ``dpi`` unless its longest side would exceed ``max_side`` pixels, in which
case it is scaled down to fit (recorded on the :class:`PageImage`). A page (or image file) whose size at the
requested resolution exceeds ``max_source_pixels`` is refused as a likely decompression bomb. PDFium is not
thread-safe, so every call into it holds :data:`ragloom.loaders.pdf.PDFIUM_LOCK`. Pages are rendered one at a time
(:func:`iter_pdf_pages` is lazy), so indexing a long PDF never holds all of its images in memory.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ragloom._imports import require
from ragloom.errors import ConfigError, DocumentLoadError
from ragloom.loaders.pdf import PDFIUM_LOCK
from ragloom.types import Document

__all__ = [
    "IMAGE_SUFFIXES",
    "PageImage",
    "RenderSettings",
    "document_page_images",
    "iter_pdf_pages",
    "load_image",
    "pdf_page_count",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp")


@dataclass(frozen=True)
class RenderSettings:
    """``dpi``: render resolution; ``max_side``: cap on the longest side (pixels); ``max_source_pixels``: refuse
    pages or images larger than this at the requested resolution (Pillow's own bomb limit by default)."""

    dpi: int = 96
    max_side: int = 2048
    max_source_pixels: int = 178_956_970

    def __post_init__(self) -> None:
        if not 18 <= self.dpi <= 1200:
            raise ConfigError(f"dpi must be in 18..1200, got {self.dpi}")
        if self.max_side < 32:
            raise ConfigError(f"max_side must be >= 32 pixels, got {self.max_side}")
        if self.max_source_pixels < 1024:
            raise ConfigError("max_source_pixels must be >= 1024")

    @property
    def config(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class PageImage:
    """One rendered page: its 1-based number, the RGB image and the resolution it was rendered at."""

    page: int
    image: Any
    dpi: float
    downscaled: bool


def _pdfium() -> Any:
    return require("pypdfium2", "multivector", "rendering PDF pages")


def _open(source: str | os.PathLike[str] | bytes, where: str) -> Any:
    pdfium = _pdfium()
    try:
        return pdfium.PdfDocument(source if isinstance(source, bytes) else str(source))
    except pdfium.PdfiumError as exc:
        raise DocumentLoadError(where, f"not a readable PDF: {exc}") from exc
    except FileNotFoundError as exc:
        raise DocumentLoadError(where, "file not found") from exc


def pdf_page_count(source: str | os.PathLike[str] | bytes) -> int:
    where = "<bytes>" if isinstance(source, bytes) else str(source)
    with PDFIUM_LOCK:
        pdf = _open(source, where)
        try:
            return len(pdf)
        finally:
            pdf.close()


def _scale_for(width_pt: float, height_pt: float, settings: RenderSettings, where: str, page: int) -> float:
    if not (width_pt > 0 and height_pt > 0):
        raise DocumentLoadError(where, f"page {page} has an empty size ({width_pt} x {height_pt} pt)")
    scale = settings.dpi / 72.0
    pixels = width_pt * scale * height_pt * scale
    if pixels > settings.max_source_pixels:
        raise DocumentLoadError(
            where,
            f"page {page} is {width_pt:.0f} x {height_pt:.0f} pt: at {settings.dpi} dpi it would be "
            f"{pixels / 1e6:.0f} megapixels, over the {settings.max_source_pixels / 1e6:.0f}-megapixel limit "
            "(a decompression bomb?). Lower dpi or raise max_source_pixels if the page is genuine.",
        )
    return min(scale, settings.max_side / max(width_pt, height_pt))


def iter_pdf_pages(
    source: str | os.PathLike[str] | bytes,
    settings: RenderSettings | None = None,
    pages: Sequence[int] | None = None,
) -> Iterator[PageImage]:
    """Render the pages of a PDF (all, or the 1-based ``pages``) lazily, one RGB image at a time."""
    settings = settings or RenderSettings()
    where = "<bytes>" if isinstance(source, bytes) else str(source)
    pdfium = _pdfium()
    with PDFIUM_LOCK:
        pdf = _open(source, where)
        count = len(pdf)
    try:
        wanted = list(pages) if pages is not None else list(range(1, count + 1))
        for number in wanted:
            if not 1 <= number <= count:
                raise DocumentLoadError(where, f"has {count} pages; page {number} does not exist")
            with PDFIUM_LOCK:
                try:
                    page = pdf[number - 1]
                    try:
                        width, height = page.get_size()
                        scale = _scale_for(width, height, settings, where, number)
                        bitmap = page.render(scale=scale)
                        try:
                            image = bitmap.to_pil().convert("RGB")  # convert copies out of PDFium's buffer
                        finally:
                            bitmap.close()
                    finally:
                        page.close()
                except pdfium.PdfiumError as exc:
                    raise DocumentLoadError(where, f"page {number} cannot be rendered: {exc}") from exc
            yield PageImage(number, image, scale * 72.0, scale < settings.dpi / 72.0)
    finally:
        with PDFIUM_LOCK:
            pdf.close()


def load_image(path: str | os.PathLike[str], settings: RenderSettings | None = None) -> PageImage:
    """Read an image file as one page, refusing decompression bombs and capping its longest side."""
    settings = settings or RenderSettings()
    image_module = require("PIL.Image", "multivector", "reading page images")
    where = str(path)
    try:
        with image_module.open(path) as handle:  # reads the header only
            width, height = handle.size
            if width * height > settings.max_source_pixels:
                raise DocumentLoadError(
                    where,
                    f"image is {width} x {height} = {width * height / 1e6:.0f} megapixels, over the "
                    f"{settings.max_source_pixels / 1e6:.0f}-megapixel limit (a decompression bomb?)",
                )
            image = handle.convert("RGB")
    except image_module.DecompressionBombError as exc:
        raise DocumentLoadError(where, f"refused as a decompression bomb: {exc}") from exc
    except (OSError, image_module.UnidentifiedImageError) as exc:
        raise DocumentLoadError(where, f"not a readable image: {exc}") from exc
    downscaled = max(image.size) > settings.max_side
    if downscaled:
        image.thumbnail((settings.max_side, settings.max_side))
    return PageImage(1, image, float(settings.dpi), downscaled)


def document_page_images(document: Document, settings: RenderSettings | None = None) -> Iterator[PageImage] | None:
    """The page images of a document whose source is a PDF or an image file; None when it has none."""
    source = Path(document.source) if document.source else None
    if source is None:
        return None
    suffix = source.suffix.lower()
    if suffix == ".pdf":
        return iter_pdf_pages(source, settings)
    if suffix in IMAGE_SUFFIXES:
        return iter([load_image(source, settings)])
    return None
