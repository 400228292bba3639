"""A corpus of malformed and adversarial files, generated on the spot (nothing hostile is checked in).

``build_corpus(folder)`` writes every case and returns ``{relative name: what it is}``; the PDF builders are
also used on their own by the fuzz tests. Sizes are parameters so the slow tier can use bigger bombs.
"""

from __future__ import annotations

import os
import struct
import zipfile
import zlib
from pathlib import Path

# -- PDF building blocks -------------------------------------------------------------------------------------------


def pdf_from_objects(objects: list[bytes], trailer_extra: bytes = b"", root: int = 1) -> bytes:
    """A syntactically complete PDF (header, objects, xref, trailer) from object bodies numbered 1..n."""
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root %d 0 R %s>>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        root,
        trailer_extra,
        xref,
    )
    return bytes(out)


def stream(data: bytes, dictionary: bytes = b"", compress: bool = False) -> bytes:
    if compress:
        data = zlib.compress(data, 9)
        dictionary += b" /Filter /FlateDecode"
    return b"<< /Length %d %s >>\nstream\n" % (len(data), dictionary) + data + b"\nendstream"


def text_pdf(lines: list[str]) -> bytes:
    """A one-page PDF drawing ``lines`` in Helvetica (ASCII only)."""
    ops = b"BT /F1 12 Tf 20 350 Td " + b" 0 -16 Td ".join(b"(%s) Tj" % line.encode("ascii") for line in lines)
    ops += b" ET"
    return pdf_from_objects(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 300 400] /Resources << /Font << /F1 5 0 R >> >> "
            b"/Contents 4 0 R >>",
            stream(ops),
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        ]
    )


def encrypted_pdf() -> bytes:
    """A standard-security-handler PDF whose (unknown) user password is required."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] >>",
        b"<< /Filter /Standard /V 1 /R 2 /Length 40 /P -4 /O <" + b"11" * 32 + b"> /U <" + b"22" * 32 + b"> >>",
    ]
    file_id = b"<" + b"ab" * 16 + b">"
    return pdf_from_objects(objects, b"/Encrypt 4 0 R /ID [%s %s] " % (file_id, file_id))


def recursive_pages_pdf() -> bytes:
    """A page tree whose /Kids contains itself (and a page whose /Parent is itself)."""
    return pdf_from_objects(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [2 0 R 3 0 R 2 0 R] /Count 3 >>",
            b"<< /Type /Page /Parent 3 0 R /MediaBox [0 0 200 200] /Contents 4 0 R >>",
            stream(b"BT ET"),
        ]
    )


def self_drawing_form_pdf() -> bytes:
    """A page that draws a form XObject which draws itself: unbounded recursion unless the parser stops it."""
    return pdf_from_objects(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] /Resources 5 0 R /Contents 4 0 R >>",
            stream(b"/X1 Do BT /F1 12 Tf 10 10 Td (loop) Tj ET"),
            b"<< /XObject << /X1 6 0 R >> /Font << /F1 7 0 R >> >>",
            stream(b"/X1 Do /X1 Do", b"/Type /XObject /Subtype /Form /BBox [0 0 200 200] /Resources 5 0 R"),
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        ]
    )


def self_referencing_objects_pdf() -> bytes:
    """Objects that are references to themselves, a /Length that points at itself, and an xref /Prev loop."""
    body = pdf_from_objects(
        [
            b"<< /Type /Catalog /Pages 2 0 R /Loop 5 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] /Contents 4 0 R >>",
            b"<< /Length 4 0 R >>\nstream\nBT ET\nendstream",
            b"5 0 R",
        ],
        b"/Prev 9 ",
    )
    return body.replace(b"/Prev 9 ", b"/Prev %d " % body.rindex(b"xref"))


def deep_nesting_pdf(depth: int = 100_000) -> bytes:
    """Arrays and dictionaries nested ``depth`` deep inside the page dictionary and its content stream."""
    nested = b"[" * depth + b"]" * depth
    dicts = b"<< /A " * (depth // 10) + b"1" + b" >>" * (depth // 10)
    return pdf_from_objects(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] /Contents 4 0 R /Deep " + nested + b" >>",
            stream(b"BT " + nested + b" " + dicts + b" ET"),
        ]
    )


def huge_count_pdf() -> bytes:
    """A page tree that claims a billion pages."""
    return pdf_from_objects(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1000000000 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] >>",
        ]
    )


def _deflate_zeros(size: int, byte: bytes = b" ") -> bytes:
    """zlib stream of ``size`` copies of ``byte``, built without holding the expanded data."""
    packer = zlib.compressobj(9)
    block = byte * (1 << 20)
    parts = [packer.compress(block) for _ in range(size >> 20)]
    parts.append(packer.compress(byte * (size & ((1 << 20) - 1))))
    parts.append(packer.flush())
    return b"".join(parts)


def flate_bomb_pdf(expanded: int = 512 << 20) -> bytes:
    """A page whose content stream inflates to ``expanded`` bytes of whitespace (a zip bomb inside a PDF)."""
    data = _deflate_zeros(expanded)
    return pdf_from_objects(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] /Contents 4 0 R >>",
            b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(data) + data + b"\nendstream",
        ]
    )


def image_bomb_pdf(side: int = 60_000) -> bytes:
    """A page showing a ``side`` x ``side`` 8-bit grey image that inflates to side**2 bytes."""
    data = _deflate_zeros(side * side, b"\x00")
    image = (
        (
            b"<< /Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceGray /BitsPerComponent 8 "
            b"/Length %d /Filter /FlateDecode >>\nstream\n" % (side, side, len(data))
        )
        + data
        + b"\nendstream"
    )
    return pdf_from_objects(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] /Resources << /XObject << /Im 5 0 R >> >> "
            b"/Contents 4 0 R >>",
            stream(b"q 200 0 0 200 0 0 cm /Im Do Q"),
            image,
        ]
    )


# -- other formats -------------------------------------------------------------------------------------------------


def zip_bomb(expanded: int = 256 << 20) -> bytes:
    """A zip archive holding one member that inflates to ``expanded`` bytes."""
    import io

    buffer = io.BytesIO()
    with (
        zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive,
        archive.open("bomb.txt", "w", force_zip64=True) as member,
    ):
        block = b"0" * (1 << 20)
        for _ in range(expanded >> 20):
            member.write(block)
    return buffer.getvalue()


def png_bomb(side: int = 50_000) -> bytes:
    """A PNG header claiming ``side`` x ``side`` RGBA pixels with a small (bogus-length) compressed body."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", side, side, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", _deflate_zeros(8 << 20, b"\x00"))


XXE_HTML = """<?xml version="1.0"?>
<!DOCTYPE lolz [
  <!ENTITY xxe SYSTEM "file:///etc/passwd">
  <!ENTITY remote SYSTEM "http://203.0.113.9/steal">
  <!ENTITY lol "lol">
  <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<html><body><p>entity: &xxe; remote: &remote; laughs: &lol3;</p></body></html>
"""

XXE_XML = XXE_HTML.replace("<html><body>", "<root>").replace("</body></html>", "</root>")


def build_corpus(folder: Path, *, big: bool = False, slow_parsers: bool = True) -> dict[str, str]:
    """Write every hostile case under ``folder``; returns ``{relative path: description}``.

    ``big`` makes the bombs, the garbage and the long line larger (slow tier); ``slow_parsers=False`` leaves
    out the two files that only stop at a parser limit (a PDF form drawing itself, 100k-deep HTML).
    """
    folder.mkdir(parents=True, exist_ok=True)
    cases: dict[str, str] = {}

    def put(name: str, data: bytes | str, what: str) -> None:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
        cases[name] = what

    good = text_pdf(["A valid page about lava flows"])
    put("pdf/valid.pdf", good, "a valid PDF (control)")
    put("pdf/truncated.pdf", good[: len(good) // 2], "truncated PDF")
    put("pdf/encrypted.pdf", encrypted_pdf(), "encrypted PDF (password needed)")
    put("pdf/recursive_pages.pdf", recursive_pages_pdf(), "page tree containing itself")
    if slow_parsers:
        put("pdf/self_drawing_form.pdf", self_drawing_form_pdf(), "form XObject drawing itself (hangs PDFium)")
    put("pdf/self_reference.pdf", self_referencing_objects_pdf(), "self-referencing objects, xref /Prev loop")
    put("pdf/deep_nesting.pdf", deep_nesting_pdf(200_000 if big else 50_000), "arrays nested 50k+ deep")
    put("pdf/billion_pages.pdf", huge_count_pdf(), "page tree claiming 1e9 pages")
    put("pdf/flate_bomb.pdf", flate_bomb_pdf((2048 if big else 64) << 20), "content stream flate bomb")
    put("pdf/image_bomb.pdf", image_bomb_pdf(80_000 if big else 30_000), "image decompression bomb in a PDF")
    put("pdf/random.pdf", os.urandom(64 << 10), "random bytes named .pdf")
    put("pdf/empty.pdf", b"", "empty .pdf")
    put("pdf/header_only.pdf", b"%PDF-1.7\n", "PDF header only")
    bomb = zip_bomb((512 if big else 8) << 20)
    put("archives/bomb.zip", bomb, "zip bomb (unsupported suffix)")
    put("archives/bomb.docx", bomb, "zip bomb named .docx")
    put("archives/zip_as.txt", bomb, "zip bomb named .txt (binary)")
    put("archives/zip_as.pdf", bomb, "zip bomb named .pdf")
    put("images/bomb.png", png_bomb(), "PNG decompression bomb (unsupported suffix)")
    put("images/png_as.html", png_bomb(), "PNG bomb named .html")
    garbage = (32 if big else 8) << 10
    put("garbage/random.txt", os.urandom(256 << 10), "binary garbage .txt")
    put("garbage/random.md", os.urandom(garbage).replace(b"\x00", b"\x01"), "binary garbage without NULs .md")
    put("garbage/random.html", os.urandom(garbage).replace(b"\x00", b"\x01"), "binary garbage .html")
    put("text/invalid_utf8.txt", b"caf\xe9 \xff\xfe\xfd lava \xc3\x28 \xed\xa0\x80 end", "invalid UTF-8")
    put("text/bad_utf16.txt", b"\xff\xfe" + b"a\x00b", "UTF-16 BOM, odd length")
    put("text/empty.txt", b"", "empty file")
    put("text/only_spaces.md", " \n\t\n" * 1000, "whitespace only")
    line_kb = 1024 if big else 128
    put("text/huge_line.txt", "lava flows " * ((line_kb << 10) // 11), f"{line_kb} KiB single line of words")
    put("text/huge_word.txt", "x" * ((32 if big else 1) << 20), "one multi-MiB word (a single line)")
    put("text/front_matter_bomb.md", "---\n" + "a: &a [x]\n" * 20000 + "---\nbody", "20k-line YAML front matter")
    depth = 500_000 if big else 100_000
    if slow_parsers:
        put("html/deep_divs.html", "<div>" * depth + "deep" + "</div>" * depth, f"{depth} nested divs")
    put("html/deep_unclosed.html", "<b><i><span>" * (depth // 3) + "x", "unclosed nested inline tags")
    put("html/xxe.html", XXE_HTML, "external entities + billion laughs in HTML")
    put("xml/xxe.xml", XXE_XML, "external-entity XML (unsupported suffix)")
    put("xml/xxe.svg", XXE_XML, "external-entity SVG (unsupported suffix)")
    put("names/..\\..\\evil.txt", "backslash traversal name", "backslash path-traversal name (a dot-file)")
    put("names/a\\..\\..\\evil.txt", "backslash traversal name", "backslash path-traversal name")
    put("names/....txt", "dots", "dots-only name")
    put("names/-rf --no-preserve-root.txt", "dash", "option-like name")
    put("names/new\nline.txt", "newline", "newline in name")
    put("names/%2e%2e%2fescape.txt", "encoded", "URL-encoded traversal name")
    put("names/\u202etxt.exe.md", "rtl", "right-to-left override in name")
    put("names/" + "n" * 240 + ".txt", "long", "240-byte name")
    put("names/名前 ünïcödé.txt", "unicode name", "non-ASCII name")
    return cases


def add_special_files(folder: Path, outside: Path) -> dict[str, str]:
    """Symlinks out of the folder, a symlink loop, a FIFO and a sparse huge file; returns the cases added."""
    cases: dict[str, str] = {}
    links = folder / "links"
    links.mkdir(parents=True, exist_ok=True)
    outside.mkdir(parents=True, exist_ok=True)
    (outside / "secret.txt").write_text("outside secret")
    for name, target, what in (
        ("passwd.txt", Path("/etc/passwd"), "symlink to /etc/passwd"),
        ("secret.txt", outside / "secret.txt", "symlink to a file outside the folder"),
        ("outside_dir", outside, "symlink to a folder outside"),
        ("dangling.txt", folder / "does-not-exist.txt", "dangling symlink"),
        ("up.txt", Path("../../../../../../etc/hostname"), "relative symlink climbing out"),
        ("zero.txt", Path("/dev/zero"), "symlink to /dev/zero"),
    ):
        (links / name).symlink_to(target)
        cases[f"links/{name}"] = what
    (links / "loop_a.txt").symlink_to(links / "loop_b.txt")
    (links / "loop_b.txt").symlink_to(links / "loop_a.txt")
    cases["links/loop_a.txt"] = cases["links/loop_b.txt"] = "symlink loop"
    (links / "self_dir").symlink_to(folder)
    cases["links/self_dir"] = "symlink to an ancestor folder (cycle)"
    os.mkfifo(folder / "fifo.txt")
    cases["fifo.txt"] = "named pipe (FIFO) named .txt"
    with open(folder / "sparse_huge.txt", "wb") as handle:
        handle.truncate(300 << 20)  # 300 MiB of holes: over the 200 MiB default limit, never read
    cases["sparse_huge.txt"] = "300 MiB sparse file (over max_bytes)"
    return cases
