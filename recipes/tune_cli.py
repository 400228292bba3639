"""``ragloom tune --index DIR``: calibrate an index's fusion on pseudo-queries made from its own chunks (no labels).

The fitted fuser config and how it was fitted (generator, sample size, seed, held-out fit score beside each
member alone and equal-weight RRF) are written atomically into the index's ``ragloom.json`` (``fusion``), so
every later ``ragloom search/ask --index DIR`` uses the tuned fusion. ``--dry-run`` reports without writing.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from ragloom.errors import ConfigError, RagloomError
from ragloom.recipes.common_options import DryRunOpt, IndexOpt, JsonOpt, OfflineOpt

console = Console()
err = Console(stderr=True)


def calibrated_fusion(
    retrievers: Sequence[Any],
    *,
    candidates: int,
    sample: int = 300,
    seed: int = 0,
    route: bool = False,
    strategy: str = "robust",
    progress: Any = None,
) -> Any:
    """LLM-free calibration of ``retrievers`` (what ``ragloom eval --tune`` runs); returns the Calibration."""
    from ragloom.calibration import calibrate
    from ragloom.robust_calibration import robust_calibrate
    from ragloom.routing import fit_router

    if strategy not in ("robust", "grid"):
        raise ConfigError(f"--strategy must be robust or grid, got {strategy!r}")
    fit = robust_calibrate if strategy == "robust" else calibrate
    result = fit(retrievers, sample=sample, seed=seed, candidates=candidates, progress=progress)
    return fit_router(result) if route else result


def report_table(report: Any) -> Table:
    """The calibration report as a table: the chosen fusion and the held-out baselines."""
    table = Table("held-out pseudo-queries", "nDCG@10", title=f"Calibrated: {report.chosen}")
    table.add_row(f"[bold]chosen[/] ({report.holdout_queries} held out)", f"{report.fit_score:.4f}")
    for name, value in report.baselines.items():
        table.add_row(name, f"{value:.4f}")
    return table


def tune(
    index: IndexOpt = Path(".ragloom/index"),
    generator: Annotated[str, typer.Option(help="Pseudo-query generator: spans (no model) or llm.")] = "spans",
    sample: Annotated[int, typer.Option(help="Chunks to write pseudo-queries for.")] = 300,
    seed: Annotated[int, typer.Option(help="Sampling seed (same seed, same fit).")] = 0,
    holdout: Annotated[float, typer.Option(help="Share of pseudo-queries held out to report the fit.")] = 0.3,
    route: Annotated[bool, typer.Option(help="Add a per-query router over the calibrated fusion.")] = False,
    strategy: Annotated[
        str, typer.Option(help="robust: equal weights, method chosen over query families; grid: fit weights too.")
    ] = "robust",
    llm: Annotated[str | None, typer.Option(help="Generator model for --generator llm (default: the index's).")] = None,
    base_url: Annotated[str | None, typer.Option(help="OpenAI-compatible endpoint for --generator llm.")] = None,
    dry_run: DryRunOpt = False,
    as_json: JsonOpt = False,
    offline: OfflineOpt = False,
) -> None:
    """Fit the index's fusion on pseudo-queries from its own chunks and store it in the index (no labels needed)."""
    from ragloom.recipes.cli import _fail, _loading
    from ragloom.recipes.config import IndexSpec, generator_spec_with, open_pipeline
    from ragloom.recipes.hybrid_docqa import save_fusion
    from ragloom.recipes.progress import progress_reporter

    try:
        spec = IndexSpec.load(index)
        if len(spec.retrievers) < 2:
            raise ConfigError(
                f"{index} has one retriever ({spec.retrievers[0].name}); tuning fuses several. Build the index with "
                "more retrievers (e.g. the hybrid recipe: dense + splade + bm25)"
            )
        gen_spec = generator_spec_with(
            spec.generator, kind="openai" if base_url else None, model=llm, base_url=base_url
        )
        opened = dataclasses.replace(spec, generator=gen_spec)
        with _loading("Loading models"):
            pipeline = open_pipeline(index, spec=opened, with_generator=generator == "llm", allow_download=not offline)
        with pipeline, progress_reporter("Calibrating", unit="queries") as progress:
            result = pipeline.calibrate(
                generator,
                sample=sample,
                seed=seed,
                holdout=holdout,
                route=route,
                apply=False,
                strategy=strategy,
                progress=progress,
            )
        if not dry_run:
            save_fusion(index, result.config)
    except RagloomError as exc:
        _fail(exc)
    if as_json:
        print(json.dumps({"index": str(index), "written": not dry_run, "fusion": result.config}, indent=2))
        return
    console.print(report_table(result.report))
    rep = result.report
    console.print(
        f"[dim]{rep.sample_size} pseudo-queries ({rep.generator}, seed {rep.seed}, {rep.skipped} skipped) from "
        f"{rep.chunks_in_index} chunks; {rep.candidates_tried} fusions tried on {rep.fit_queries}; "
        f"{rep.seconds:.1f}s[/]"
    )
    console.print("Dry run: ragloom.json unchanged." if dry_run else f"Stored in {index / 'ragloom.json'}.")
