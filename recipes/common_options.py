"""Command-line options several ``ragloom`` commands share (one definition, one help text)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = ["DryRunOpt", "IndexOpt", "JsonOpt", "OfflineOpt"]

IndexOpt = Annotated[Path, typer.Option("--index", "-i", help="Index directory.")]
OfflineOpt = Annotated[bool, typer.Option("--offline", help="Never download models.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]
DryRunOpt = Annotated[bool, typer.Option(help="Report only; leave ragloom.json as it is.")]
