"""How the CLI shows an answer's support verdict: a coloured verdict line and a warning per uncited or
unsupported claim, off-topic citations and the reason for a decline (on stderr, so ``--json`` stays clean)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape

__all__ = ["print_support"]

_COLOURS = {"supported": "green", "partly": "yellow", "unsupported": "red", "declined": "cyan"}


def _short(claim: str, size: int = 100) -> str:
    claim = " ".join(claim.split())
    return claim if len(claim) <= size else claim[: size - 1] + "…"


def print_support(answer: Any, err: Console) -> None:
    """Print the verdict and what is wrong with the answer's support, if anything."""
    support = answer.support
    verdict = answer.verdict
    colour = _COLOURS.get(verdict, "white")
    reason = f" — {escape(support.reason)}" if support is not None and support.reason else ""
    err.print(f"[bold {colour}]verdict: {verdict}[/]{reason}", highlight=False)
    if support is None:
        return
    for claim in support.uncited:
        err.print(f"[yellow]warning:[/] uncited claim: {escape(_short(claim))}", highlight=False)
    for claim in support.unsupported:
        err.print(f"[yellow]warning:[/] claim not supported by its citation: {escape(_short(claim))}", highlight=False)
    if support.off_topic:
        err.print(
            "[yellow]warning:[/] the cited passages do not mention "
            f"{escape(', '.join(support.off_topic))} from the question; they may concern other documents",
            highlight=False,
        )
