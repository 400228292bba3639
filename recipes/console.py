"""Safe terminal output for the CLI: file names and user text are shown, never interpreted.

A path holding ``[/b]`` must not crash rich's markup parser, ``[bold red]`` must not restyle a report, and a
newline (or any control character) in a file name must not print a line of its own that reads like ragloom's. On
a terminal, errors and warnings get colour; anywhere else (a pipe, a log file, CI) they are plain text.
"""

from __future__ import annotations

import sys
from typing import NoReturn

import typer
from rich.console import Console
from rich.text import Text

from ragloom.types import escape_undecodable

__all__ = ["console", "err", "fail", "safe", "safe_text", "warn"]

console = Console(soft_wrap=True)  # a long path stays on one line in a pipe
err = Console(stderr=True, soft_wrap=True)

_CONTROL = {code: f"\\x{code:02x}" for code in (*range(0x20), 0x7F)} | {0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t"}
_CONTROL.update({code: f"\\u{code:04x}" for code in (*range(0x80, 0xA0), 0x2028, 0x2029, 0x85)})


def safe(value: object) -> str:
    """``value`` as one printable line: control characters (newlines included) and bytes that are not UTF-8
    written as escapes. Still plain text: wrap it with :func:`safe_text` (or print with ``markup=False``)."""
    return escape_undecodable(str(value)).translate(_CONTROL)


def safe_text(value: object, style: str = "") -> Text:
    """A rich ``Text`` of :func:`safe` ``(value)``: table cells and prints that can never be read as markup."""
    return Text(safe(value), style=style)


def _labelled(label: str, style: str, message: str) -> None:
    if err.is_terminal:
        line = Text.assemble((f"{label}:", style), " ", safe_multiline(message))
        err.print(line, soft_wrap=True, highlight=False)
    else:
        print(f"{label}: {safe_multiline(message)}", file=sys.stderr, flush=True)


def safe_multiline(message: str) -> str:
    """Like :func:`safe` but keeps the line breaks of a multi-line message, each continuation indented so that
    no line can pass for one of ragloom's own."""
    return "\n  ".join(safe(line) for line in escape_undecodable(message).split("\n"))


def fail(exc: BaseException | str, code: int = 2) -> NoReturn:
    """Print ``error: <message>`` on stderr (red on a terminal, plain elsewhere) and exit with ``code``."""
    _labelled("error", "bold red", str(exc))
    raise typer.Exit(code=code)


def warn(message: str, label: str = "warning") -> None:
    """Print ``<label>: <message>`` on stderr (yellow on a terminal, plain elsewhere)."""
    _labelled(label, "yellow", message)
