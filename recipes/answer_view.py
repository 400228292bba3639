"""How the CLI shows an answer's support verdict: a coloured verdict line and a warning per uncited or
unsupported claim, off-topic citations and the reason for a decline (on stderr, so ``--json`` stays clean)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.console import Console
from rich.markup import escape

__all__ = ["print_support"]

_COLOURS = {"supported": "green", "partly": "yellow", "unsupported": "red", "declined": "cyan"}


def _short(claim: str, size: int = 100) -> str:
    claim = " ".join(claim.split())
    return claim if len(claim) <= size else claim[: size - 1] + "…"


def print_support(answer: Mapping[str, Any], err: Console) -> None:
    """Print the verdict and what is wrong with the answer's support, if anything, from the answer's JSON form
    (``ragloom.recipes.output.answer_json``, or what ``ragloom serve`` sent)."""
    support = answer.get("support") or None
    verdict = str(answer.get("verdict") or (support or {}).get("verdict") or "unknown")
    colour = _COLOURS.get(verdict, "white")
    reason = f" — {escape(str(support['reason']))}" if support and support.get("reason") else ""
    err.print(f"[bold {colour}]verdict: {escape(verdict)}[/]{reason}", highlight=False)
    if not support:
        return
    for claim in support.get("uncited_claims", ()):
        err.print(f"[yellow]warning:[/] uncited claim: {escape(_short(claim))}", highlight=False)
    for claim in support.get("unsupported_claims", ()):
        err.print(f"[yellow]warning:[/] claim not supported by its citation: {escape(_short(claim))}", highlight=False)
    if support.get("off_topic_terms"):
        err.print(
            "[yellow]warning:[/] the cited passages do not mention "
            f"{escape(', '.join(support['off_topic_terms']))} from the question; they may concern other documents",
            highlight=False,
        )
