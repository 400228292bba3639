"""The generator flags ``ragloom ask`` and ``ragloom serve`` share, and the index settings they override.

An index folder remembers its generator (``ragloom.json``); a flag given on the command line wins for that run
only. ``--prompt`` and ``--check-threshold`` default to what the registered model was measured with
(:func:`ragloom.recipes.config.answer_options`; docs/generators.md).
"""

from __future__ import annotations

import dataclasses
from typing import Annotated

import typer

from ragloom.recipes.config import GeneratorSpec, check_generator_spec

__all__ = ["CheckThresholdOpt", "PromptOpt", "generator_spec_with"]

PromptOpt = Annotated[
    str | None,
    typer.Option(
        help="Answer prompt: auto (the registered model's; Qwen: detailed), default, guided, detailed or words "
        "(default: the index's).",
    ),
]
CheckThresholdOpt = Annotated[
    float | None,
    typer.Option(
        help="Decline without generating when 1 - P(the reply starts with the decline phrase) is under this "
        "(a local model; 0: no check; default: the registered model's measured threshold).",
        min=0.0,
        max=1.0,
    ),
]


def generator_spec_with(
    spec: GeneratorSpec,
    *,
    kind: str | None = None,
    model: str | None = None,
    base_url: str | None = None,
    prompt: str | None = None,
    check_threshold: float | None = None,
) -> GeneratorSpec:
    """``spec`` with each given flag over it; a bad prompt name or threshold is refused before any model loads.

    Another model (or kind) drops the index's prompt choice and fitted check threshold: they were fitted for the
    model the index names, not for this one."""
    if (model and model != spec.model) or (kind and kind != spec.kind):
        spec = dataclasses.replace(spec, prompt="auto", check_threshold=None, check_fit={})
    updated = dataclasses.replace(
        spec,
        kind=kind or spec.kind,
        model=model or spec.model,
        base_url=base_url or spec.base_url,
        prompt=prompt or spec.prompt,
        check_threshold=spec.check_threshold if check_threshold is None else check_threshold,
    )
    check_generator_spec(updated)
    return updated
