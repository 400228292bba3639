"""The generator flags ``ragloom ask`` and ``ragloom serve`` share.

An index folder remembers its generator (``ragloom.json``); a flag given on the command line wins for that run
only (:func:`ragloom.recipes.config.generator_spec_with`). ``--prompt`` and ``--check-threshold`` default to what
the registered model was measured with (:func:`ragloom.recipes.config.answer_options`; docs/generators.md).
"""

from __future__ import annotations

from typing import Annotated

import typer

__all__ = ["CheckThresholdOpt", "PromptOpt"]

PromptOpt = Annotated[
    str | None,
    typer.Option(
        help="Answer prompt: auto (the registered model's; Qwen: guided), default, guided, detailed or words "
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
