"""HTML to plain text with selectolax's lexbor (an HTML5 parser).

Only the visible text is kept: scripts, styles, templates and the head are dropped, block elements become
line breaks so paragraphs stay apart for chunkers, and nothing is ever fetched. An HTML5 parser does not
process DTDs, so XML entities (including ``SYSTEM "file:///..."`` ones) are never resolved.

lexbor's parse time grows with the square of the nesting depth (100,000 nested ``<div>`` take 20 s) and
misnested formatting tags make it build a quadratic number of nodes (9,001 ``<b><i>`` in a 75 KB page reached
6 GB), and no tag count tells a safe page from a hostile one; so every page is parsed in the parser worker under
its time and memory limits (see :mod:`ragloom.loaders._isolation`) unless isolation is switched off.
"""

from __future__ import annotations

import re
from typing import Any

from ragloom.errors import DocumentLoadError, MissingExtraError
from ragloom.loaders._isolation import current_limits, run_isolated

__all__ = ["extract_html", "html_to_text"]

_DROP = frozenset({"script", "style", "noscript", "template", "head", "title", "-comment", "!doctype"})
_PARAGRAPH = frozenset(
    {
        "p", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "blockquote", "table", "ul", "ol", "dl", "section",
        "article", "header", "footer", "nav", "aside", "main", "figure", "form", "fieldset", "details",
        "address", "hr",
    }
)  # fmt: skip
_LINE = frozenset(
    {"div", "li", "tr", "dt", "dd", "figcaption", "summary", "caption", "legend", "option", "body", "html"}
)
_CELL = frozenset({"td", "th"})
_PREFORMATTED = frozenset({"pre", "textarea", "listing", "plaintext"})
_SPACE = re.compile(r"[ \t\n\r\f\v]+")
_BLANK_RUNS = re.compile(r"\n{3,}")


class _TextBuilder:
    """Accumulates text, turning block boundaries into at most one blank line and collapsing inline spaces."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.newlines = 0  # pending line breaks, emitted before the next text
        self.at_line_start = True

    def text(self, value: str, preformatted: bool) -> None:
        if not preformatted:
            value = _SPACE.sub(" ", value)
            if self.at_line_start or (self.parts and self.parts[-1].endswith(" ")):
                value = value.lstrip(" ")
        if not value:
            return
        if self.newlines and self.parts:
            self.parts.append("\n" * self.newlines)
        self.newlines = 0
        self.parts.append(value)
        self.at_line_start = value.endswith("\n")

    def block(self, newlines: int) -> None:
        self.newlines = min(2, max(self.newlines, newlines))
        self.at_line_start = True

    def line_break(self) -> None:
        self.newlines = min(2, self.newlines + 1)
        self.at_line_start = True

    def result(self) -> str:
        text = "\n".join(line.rstrip() for line in "".join(self.parts).split("\n"))
        return _BLANK_RUNS.sub("\n\n", text).strip("\n")


def _parser(html: str) -> Any:
    try:
        from selectolax.lexbor import LexborHTMLParser
    except ImportError as exc:
        raise MissingExtraError("selectolax", "html", "HTML loading") from exc
    return LexborHTMLParser(html)


def html_to_text(html: str) -> tuple[str, str]:
    """Extract ``(text, title)`` from an HTML string; the title is ``""`` when the page has none."""
    tree = _parser(html)
    title_node = tree.css_first("title")
    title = _SPACE.sub(" ", title_node.text()).strip() if title_node is not None else ""
    out = _TextBuilder()
    root = tree.root
    if root is None:
        return "", title
    # Iterative depth-first walk (no recursion limit on deeply nested pages); ``True`` marks leaving a node.
    stack: list[tuple[Any, bool]] = [(root, False)]
    pre_depth = 0
    while stack:
        node, leaving = stack.pop()
        tag = node.tag
        if leaving:
            if tag in _PREFORMATTED:
                pre_depth -= 1
            if tag in _PARAGRAPH:
                out.block(2)
            elif tag in _LINE:
                out.block(1)
            elif tag in _CELL and not out.at_line_start:
                out.text("\t", preformatted=True)
            continue
        if tag == "-text":
            out.text(node.text_content or "", preformatted=pre_depth > 0)
            continue
        if tag in _DROP or not node.is_element_node:
            continue
        if tag == "br":
            out.line_break()
            continue
        if tag in _PARAGRAPH:
            out.block(2)
        elif tag in _LINE:
            out.block(1)
        if tag in _PREFORMATTED:
            pre_depth += 1
        stack.append((node, True))
        children = []
        child = node.child
        while child is not None:
            children.append(child)
            child = child.next
        stack.extend((c, False) for c in reversed(children))
    return out.result(), title


def extract_html(html: str, path: str) -> tuple[str, str]:
    """:func:`html_to_text`, in the parser worker (in this process only when isolation is off)."""
    limits = current_limits()
    if not limits.isolate:
        return html_to_text(html)
    _parser("")  # a missing extra is reported here, in the caller's process
    found = run_isolated(b"H", html.encode("utf-8", "surrogatepass"), path, "HTML", limits)
    if found.get("error"):
        raise DocumentLoadError(path, f"the html parser failed: {found.get('message')}")
    return str(found["text"]), str(found["title"])
