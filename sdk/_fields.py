"""Typed readers for the JSON form of the value types (``from_dict``): a wrong or missing field is an
:class:`~ragloom.errors.InvalidInputError` naming the field, never a KeyError or a silently coerced value."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from ragloom.errors import InvalidInputError

_SURROGATE = re.compile("[\ud800-\udfff]")

_FIX = "pass the dict that to_dict() wrote"
_MISSING = object()
_T = TypeVar("_T")


def check_text(value: str, what: str) -> None:
    if not value.isascii() and _SURROGATE.search(value) is not None:
        raise InvalidInputError(
            f"{what} holds a lone surrogate (bytes that are not UTF-8, e.g. from a file name in another encoding), "
            "which no store can save; clean it with ragloom.types.escape_undecodable (the loaders do this)"
        )


def check_metadata(metadata: Mapping[str, object], where: str) -> dict[str, str | int | float | bool]:
    clean: dict[str, str | int | float | bool] = {}
    for key, value in metadata.items():
        if not isinstance(key, str) or not key:
            raise InvalidInputError(f"{where}: metadata keys must be non-empty strings, got {key!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidInputError(f"{where}: metadata[{key!r}] is {value}; use a finite number")
        if not isinstance(value, (str, int, float, bool)):
            raise InvalidInputError(
                f"{where}: metadata[{key!r}] is {type(value).__name__}; values must be str, int, float or bool "
                "(serialise lists or dicts to a string first)"
            )
        check_text(key, f"{where}: metadata key {key!r}")
        if isinstance(value, str):
            check_text(value, f"{where}: metadata[{key!r}]")
        clean[key] = value
    return clean


def _fail(where: str, key: str, wanted: str, value: object) -> InvalidInputError:
    got = "nothing" if value is _MISSING else type(value).__name__
    return InvalidInputError(f"{where}: {key!r} must be {wanted}, got {got}; {_FIX}")


def mapping(data: object, where: str) -> Mapping[str, Any]:
    """``data`` itself, checked to be a JSON object."""
    if not isinstance(data, Mapping):
        raise InvalidInputError(f"{where} must be a JSON object (a dict), got {type(data).__name__}; {_FIX}")
    return data


def text(data: Mapping[str, Any], key: str, where: str, default: str | None = None) -> str:
    value = data.get(key, _MISSING if default is None else default)
    if not isinstance(value, str):
        raise _fail(where, key, "a string", value)
    return value


def integer(data: Mapping[str, Any], key: str, where: str) -> int:
    value = data.get(key, _MISSING)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(where, key, "an integer", value)
    return value


def optional_integer(data: Mapping[str, Any], key: str, where: str) -> int | None:
    return None if data.get(key) is None else integer(data, key, where)


def number(value: object, key: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _fail(where, key, "a finite number", value)
    return float(value)


def flag(data: Mapping[str, Any], key: str, where: str, default: bool | None = None) -> bool:
    value = data.get(key, _MISSING if default is None else default)
    if not isinstance(value, bool):
        raise _fail(where, key, "true or false", value)
    return value


def items(data: Mapping[str, Any], key: str, where: str) -> Sequence[Any]:
    """A JSON array (absent: empty)."""
    value = data.get(key, ())
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise _fail(where, key, "a list", value)
    return value


def integers(data: Mapping[str, Any], key: str, where: str) -> tuple[int, ...]:
    values = items(data, key, where)
    if any(isinstance(v, bool) or not isinstance(v, int) for v in values):
        raise InvalidInputError(f"{where}: {key!r} must be a list of integers; {_FIX}")
    return tuple(values)


def texts(data: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    values = items(data, key, where)
    if any(not isinstance(v, str) for v in values):
        raise InvalidInputError(f"{where}: {key!r} must be a list of strings; {_FIX}")
    return tuple(values)


def submapping(data: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    """A JSON object (absent or null: empty); its values are checked by the type it builds."""
    value = data.get(key) or {}
    if not isinstance(value, Mapping):
        raise _fail(where, key, "an object", value)
    return value


def choice(data: Mapping[str, Any], key: str, options: Sequence[_T], where: str) -> _T:
    """One of ``options`` (a Literal's values)."""
    value = data.get(key)
    for option in options:
        if value == option:
            return option
    raise InvalidInputError(f"{where}: {key!r} must be one of {', '.join(map(str, options))}, got {value!r}; {_FIX}")


def int_triples(data: Mapping[str, Any], key: str, where: str) -> list[tuple[int, int, int]]:
    """A list of ``[a, b, c]`` integer triples (pages as ``[number, start, end]``)."""
    out = []
    for triple in items(data, key, where):
        if (
            not isinstance(triple, (list, tuple))
            or len(triple) != 3
            or any(isinstance(v, bool) or not isinstance(v, int) for v in triple)
        ):
            raise InvalidInputError(f"{where}: each of {key!r} must be three integers, got {triple!r}; {_FIX}")
        out.append((triple[0], triple[1], triple[2]))
    return out
