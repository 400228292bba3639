"""Page images for visual retrievers: PDF pages rendered with pypdfium2, or image files read with Pillow.

Rendering is bounded: a page renders at ``dpi`` unless its longest side would exceed ``max_side`` pixels, in which
case it is scaled down to fit (recorded on the :class:`PageImage`). A page (or image file) whose size at the
requested resolution exceeds ``max_source_pixels`` is refused as a likely decompression bomb. PDF pages render in
the parser worker process, under the time and memory limits of ``ragloom.loaders.configure_parsing`` (see
:mod:`ragloom.loaders.pdf_render`). Pages are rendered one at a time (:func:`iter_pdf_pages` is lazy), so indexing
a long PDF never holds all of its images in memory.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ragloom._imports import require
from ragloom.errors import ConfigError, DocumentLoadError
from ragloom.loaders.pdf_render import PageLimits, PdfPageRenderer
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


def _limits(settings: RenderSettings) -> PageLimits:
    return PageLimits(float(settings.dpi), settings.max_side, settings.max_source_pixels)


def pdf_page_count(source: str | os.PathLike[str] | bytes) -> int:
    with PdfPageRenderer(source, _limits(RenderSettings())) as renderer:
        return renderer.count


def iter_pdf_pages(
    source: str | os.PathLike[str] | bytes,
    settings: RenderSettings | None = None,
    pages: Sequence[int] | None = None,
) -> Iterator[PageImage]:
    """Render the pages of a PDF (all, or the 1-based ``pages``) lazily, one RGB image at a time."""
    settings = settings or RenderSettings()
    image_module = require("PIL.Image", "multivector", "reading page images")
    with PdfPageRenderer(source, _limits(settings)) as renderer:
        wanted = list(pages) if pages is not None else list(range(1, renderer.count + 1))
        for number in wanted:
            if not 1 <= number <= renderer.count:
                raise DocumentLoadError(renderer.where, f"has {renderer.count} pages; page {number} does not exist")
            page = renderer.render(number)
            image = image_module.frombytes("RGB", (page.width, page.height), page.pixels)
            yield PageImage(number, image, page.dpi, page.downscaled)


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
