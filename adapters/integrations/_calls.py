"""What a framework call brings besides messages: per-call options (refused with a fix), token usage, the model's
label, and the framework's errors (translated into ragloom's)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

from ragloom.errors import EndpointError, InvalidInputError, RagloomError
from ragloom.protocols import PromptMeasuringGenerator, TokenCountingGenerator
from ragloom.types import Message

__all__ = ["ForeignErrors", "model_label", "refuse_call_options", "usage_counts"]


def refuse_call_options(owner: str, options: Mapping[str, Any]) -> None:
    """Per-call generation settings (``max_tokens``, ``temperature``, ``seed``...) that a ragloom generator
    cannot take per call are an error naming where to set them, never silently dropped."""
    if options:
        raise InvalidInputError(
            f"{owner} cannot apply {sorted(options)} per call: a ragloom generator's settings are fixed when it is "
            "built; set them there, e.g. OpenAICompatibleGenerator(model, max_tokens=..., temperature=..., "
            "extra_body={'seed': ...}) or TransformersGenerator(model, max_new_tokens=...)"
        )


def usage_counts(generator: object, messages: Sequence[Message], text: str) -> dict[str, int] | None:
    """Input/output/total tokens by the generator's own tokenizer, when it can count them (local models)."""
    if not (isinstance(generator, PromptMeasuringGenerator) and isinstance(generator, TokenCountingGenerator)):
        return None
    given, written = int(generator.prompt_tokens(messages)), int(generator.count_tokens(text))
    return {"input_tokens": given, "output_tokens": written, "total_tokens": given + written}


def model_label(model: object) -> str:
    """A framework model's name: its ``model``/``model_name``/``model_id`` attribute, else its class."""
    for attribute in ("model", "model_name", "model_id", "deployment_name"):
        value = getattr(model, attribute, None)
        if isinstance(value, str) and value and value != "unknown":
            return value
    return type(model).__name__


class ForeignErrors:
    """A context manager that turns a framework's exception into ``error(message)`` (the original is the
    ``__cause__``); ragloom's own errors and non-``Exception`` signals (cancellation, Ctrl-C) pass through.

    ``with ForeignErrors(f"{name} failed", "Check the model's configuration."):`` wraps one call to a framework;
    the message reads ``"{what}: {Type}: {exc}. {fix}"``.
    """

    def __init__(self, what: str, fix: str, error: type[RagloomError] = EndpointError) -> None:
        self.what, self.fix, self.error = what, fix, error

    def __enter__(self) -> ForeignErrors:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if exc is None or isinstance(exc, RagloomError) or not isinstance(exc, Exception):
            return
        raise self.error(f"{self.what}: {type(exc).__name__}: {exc}. {self.fix}") from exc
