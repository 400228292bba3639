"""Page rendering with pypdfium2: DPI, bounded size, decompression bombs, bad files, threads."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from ragloom.adapters.multivector.pages import (
    RenderSettings,
    document_page_images,
    iter_pdf_pages,
    load_image,
    pdf_page_count,
)
from ragloom.errors import ConfigError, DocumentLoadError
from ragloom.loaders import load_file
from ragloom.types import Document


def test_renders_at_the_requested_dpi(small_pdfs: list[Path]) -> None:
    pages = list(iter_pdf_pages(small_pdfs[0], RenderSettings(dpi=36)))
    assert [p.page for p in pages] == [1, 2] and pdf_page_count(small_pdfs[0]) == 2
    assert pages[0].image.size == (306, 396)  # 612 x 792 pt at 36 dpi
    assert pages[0].image.mode == "RGB" and not pages[0].downscaled
    assert pages[0].image.getextrema() != ((255, 255), (255, 255), (255, 255))  # something was drawn


def test_long_side_is_bounded(small_pdfs: list[Path]) -> None:
    (page,) = iter_pdf_pages(small_pdfs[0], RenderSettings(dpi=300, max_side=200), pages=[2])
    assert max(page.image.size) <= 200 and page.downscaled and page.page == 2
    assert page.dpi < 300


def test_decompression_bomb_page_is_refused(tmp_path: Path) -> None:
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument.new()
    pdf.new_page(14400, 14400)  # 200 x 200 inches: 368 megapixels at 96 dpi
    pdf.save(tmp_path / "bomb.pdf")
    pdf.close()
    with pytest.raises(DocumentLoadError, match="decompression bomb"):
        list(iter_pdf_pages(tmp_path / "bomb.pdf"))
    (page,) = iter_pdf_pages(tmp_path / "bomb.pdf", RenderSettings(dpi=18, max_side=64))
    assert max(page.image.size) == 64


def test_image_files(tmp_path: Path) -> None:
    from PIL import Image

    Image.new("RGB", (300, 100), "red").save(tmp_path / "scan.png")
    page = load_image(tmp_path / "scan.png", RenderSettings(max_side=150))
    assert page.image.size == (150, 50) and page.downscaled
    with pytest.raises(DocumentLoadError, match="decompression bomb"):
        load_image(tmp_path / "scan.png", RenderSettings(max_source_pixels=10_000))
    (tmp_path / "broken.png").write_bytes(b"not an image")
    with pytest.raises(DocumentLoadError):
        load_image(tmp_path / "broken.png")


def test_bad_pdfs_and_settings(tmp_path: Path, small_pdfs: list[Path]) -> None:
    (tmp_path / "bad.pdf").write_bytes(b"%PDF-1.7 truncated")
    with pytest.raises(DocumentLoadError):
        list(iter_pdf_pages(tmp_path / "bad.pdf"))
    with pytest.raises(DocumentLoadError, match="page 5"):
        list(iter_pdf_pages(small_pdfs[0], pages=[5]))
    with pytest.raises(ConfigError):
        RenderSettings(dpi=5)
    with pytest.raises(ConfigError):
        RenderSettings(max_side=4)


def test_documents_know_their_page_images(small_pdfs: list[Path]) -> None:
    doc = load_file(small_pdfs[1])
    assert len(list(document_page_images(doc, RenderSettings(dpi=24)) or [])) == 2
    assert document_page_images(Document(id="t", text="plain", source="notes.txt")) is None


def test_concurrent_rendering_is_safe(small_pdfs: list[Path]) -> None:
    sizes: list[tuple[int, int]] = []
    errors: list[BaseException] = []

    def work(path: Path) -> None:
        try:
            sizes.extend(p.image.size for p in iter_pdf_pages(path, RenderSettings(dpi=24)))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(p,)) for p in small_pdfs * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(sizes) == 12


def test_isolated_and_in_process_rendering_give_the_same_pixels(small_pdfs: list[Path]) -> None:
    """Pages render in the parser worker by default; the pixels are exactly those PDFium gives in-process."""
    from ragloom.loaders import configure_parsing

    settings = RenderSettings(dpi=36)
    isolated = list(iter_pdf_pages(small_pdfs[0], settings))
    previous = configure_parsing(isolate=False)
    try:
        local = list(iter_pdf_pages(small_pdfs[0], settings))
        from_bytes = list(iter_pdf_pages(small_pdfs[0].read_bytes(), settings))
    finally:
        configure_parsing(isolate=previous.isolate)
    isolated_bytes = list(iter_pdf_pages(small_pdfs[0].read_bytes(), settings))
    for pages in (local, from_bytes, isolated_bytes):
        assert [(p.page, p.dpi, p.downscaled) for p in pages] == [(p.page, p.dpi, p.downscaled) for p in isolated]
        assert [p.image.tobytes() for p in pages] == [p.image.tobytes() for p in isolated]
