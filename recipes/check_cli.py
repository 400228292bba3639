"""``ragloom tune-check --index DIR``: fit the answerability check's threshold on the index itself (no labels).

The local generator writes a question for each sampled chunk; the check scores it once over passages that hold
the answer and once over the other documents' passages (:mod:`ragloom.answerability_fit`). The threshold, the
prompt and generator it was fitted with, and how it was fitted are written atomically into the index's
``ragloom.json`` (``generator``), so every later ``ragloom ask/serve --index DIR`` declines with it.
``--dry-run`` reports without writing.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from ragloom.errors import ConfigError, RagloomError
from ragloom.recipes.common_options import DryRunOpt, IndexOpt, JsonOpt, OfflineOpt
from ragloom.recipes.config import generator_spec_with
from ragloom.recipes.generator_options import PromptOpt

__all__ = ["tune_check"]


def tune_check(
    index: IndexOpt = Path(".ragloom/index"),
    generator: Annotated[str | None, typer.Option(help="local or llamacpp (default: the index's).")] = None,
    llm: Annotated[str | None, typer.Option(help="Generator model (alias or folder).")] = None,
    prompt: PromptOpt = None,
    questions: Annotated[
        str, typer.Option(help="Who writes the questions: llm (the generator itself) or spans (no model, faster).")
    ] = "llm",
    sample: Annotated[int, typer.Option(min=1, help="Chunks to write a question for (two check scores each).")] = 30,
    k: Annotated[int, typer.Option("-k", min=1, help="Passages the check reads, as ask gives the model.")] = 4,
    max_false_decline: Annotated[
        float, typer.Option(min=0.0, max=0.99, help="Share of answerable pairs the threshold may decline.")
    ] = 0.1,
    seed: Annotated[int, typer.Option(help="Sampling seed (same seed, same chunks).")] = 0,
    dry_run: DryRunOpt = False,
    as_json: JsonOpt = False,
    offline: OfflineOpt = False,
) -> None:
    """Fit the answerability check's decline threshold on questions the index's own chunks answer."""
    from ragloom.answerability import AnswerabilityCheck
    from ragloom.answerability_fit import fit_check_threshold
    from ragloom.calibration import index_chunks
    from ragloom.pseudo_queries import pseudo_query_generator
    from ragloom.recipes.cli import _fail, _loading
    from ragloom.recipes.config import NO_DECLINE_PHRASE, IndexSpec, open_pipeline
    from ragloom.recipes.console import console
    from ragloom.recipes.progress import progress_reporter

    try:
        spec = IndexSpec.load(index)
        gen_spec = generator_spec_with(spec.generator, kind=generator, model=llm, prompt=prompt, check_threshold=0.0)
        if questions not in ("llm", "spans"):
            raise ConfigError(f"--questions must be llm or spans, got {questions!r}")
        if gen_spec.kind not in ("local", "llamacpp"):
            raise ConfigError(
                f"tune-check reads a local model's log-probabilities; the index's generator is {gen_spec.kind!r}. "
                "Pass --generator llamacpp (or local) --llm MODEL"
            )
        with _loading("Loading models"):
            opened = dataclasses.replace(spec, generator=gen_spec)
            pipeline = open_pipeline(index, spec=opened, with_generator=True, allow_download=not offline)
        gen = pipeline.generator
        with pipeline, progress_reporter("Fitting the check", unit="chunks") as progress:
            if not pipeline.prompt.instructions:
                raise ConfigError(NO_DECLINE_PHRASE)
            fit = fit_check_threshold(
                AnswerabilityCheck(gen, mode="decline-phrase"),
                pipeline.prompt,
                lambda q: pipeline.retrieve(q, k=max(20, 4 * k)),
                index_chunks(pipeline.retrievers),
                questions=pseudo_query_generator(questions, gen),
                sample=sample,
                k=k,
                max_false_decline=max_false_decline,
                seed=seed,
                progress=progress,
            )
        record: dict[str, Any] = {**fit.to_dict(), "seed": seed, "k": k, "max_false_decline": max_false_decline}
        fitted = dataclasses.replace(gen_spec, check_threshold=fit.threshold, check_fit=record)
        if not dry_run:
            dataclasses.replace(IndexSpec.load(index), generator=fitted).save(index)
    except RagloomError as exc:
        _fail(exc)
    if as_json:
        print(json.dumps({"index": str(index), "written": not dry_run, "generator": dataclasses.asdict(fitted)}))
        return
    declined = sum(s < fit.threshold for s in fit.unanswerable)
    console.print(
        f"Check threshold [bold]{fit.threshold:.4f}[/]: declines {declined} of {len(fit.unanswerable)} questions "
        f"over other documents' passages and {sum(s < fit.threshold for s in fit.answerable)} of "
        f"{len(fit.answerable)} over their own ({fit.skipped} of {fit.tried} chunks skipped: source not retrieved "
        f"in the top {k}); questions by {fit.generator}; {fit.seconds:.0f}s"
    )
    console.print("Dry run: ragloom.json unchanged." if dry_run else f"Stored in {index / 'ragloom.json'}.")
