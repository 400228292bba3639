"""The ragloom error hierarchy.

Every error ragloom raises on purpose derives from :class:`RagloomError`, and every message says what went wrong
and how to fix it. Catch the narrow class when you can recover (a bad file in a folder, a busy index), the root
class when you only want to report.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DocumentLoadError",
    "EncoderMismatchError",
    "EndpointError",
    "IndexCorruptError",
    "IndexLockedError",
    "IndexTooSmallError",
    "InputTooLongError",
    "InvalidInputError",
    "MissingExtraError",
    "ModelNotFoundError",
    "RagloomError",
    "RagloomWarning",
    "StoreMismatchError",
    "TruncationWarning",
    "UnsupportedFormatError",
]


class RagloomError(Exception):
    """Root of every error ragloom raises deliberately."""


class InvalidInputError(RagloomError, ValueError):
    """An argument or a piece of data is malformed (empty id, NaN vector, bad k...)."""


class ConfigError(RagloomError, ValueError):
    """A configuration is inconsistent or incomplete."""


class MissingExtraError(RagloomError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""

    def __init__(self, module: str, extra: str, purpose: str = "") -> None:
        what = f" for {purpose}" if purpose else ""
        super().__init__(
            f"'{module}' is needed{what} but is not installed. Install it with: pip install 'ragloom[{extra}]'"
        )
        self.module = module
        self.extra = extra


class ModelNotFoundError(RagloomError, FileNotFoundError):
    """A model could not be resolved; the message lists every place that was tried."""

    def __init__(self, name: str, tried: list[str], hint: str = "") -> None:
        lines = "\n".join(f"  - {t}" for t in tried)
        fix = hint or (
            "Pass a local directory, run `ragloom models pull NAME`, or allow downloads "
            "(allow_download=True / --allow-download)."
        )
        super().__init__(f"Model '{name}' could not be found. Tried:\n{lines}\n{fix}")
        self.name = name
        self.tried = list(tried)


class EncoderMismatchError(RagloomError):
    """An index was built with one encoder and is being opened or queried with another."""

    def __init__(self, index_path: str, differences: dict[str, tuple[object, object]]) -> None:
        parts = "; ".join(f"{k}: index has {a!r}, given {b!r}" for k, (a, b) in sorted(differences.items()))
        super().__init__(
            f"The index at {index_path} was built with a different encoder or chunker ({parts}). "
            "Open it with the encoder it was built with, or re-index into a new directory."
        )
        self.index_path = index_path
        self.differences = differences


class StoreMismatchError(ConfigError):
    """An index's store was built with other settings (compression, rescoring, dimension) than it is opened with."""

    def __init__(self, index_path: str, differences: dict[str, tuple[object, object]]) -> None:
        parts = "; ".join(f"{k}: index has {a!r}, given {b!r}" for k, (a, b) in sorted(differences.items()))
        super().__init__(
            f"The store at {index_path} was built with other settings ({parts}). Open it with the settings it "
            "was built with, or re-index into a new directory."
        )
        self.index_path = index_path
        self.differences = differences


class IndexLockedError(RagloomError):
    """Another writer holds the index directory's lock."""


class IndexCorruptError(RagloomError):
    """An index directory is unreadable, of an unknown format, or fails its integrity check."""


class IndexRecoveryError(RagloomError):
    """An interrupted write could not be finished; nothing was removed and the next write tries again."""


class IndexTooSmallError(RagloomError, ValueError):
    """An index holds too few chunks (or yields too few pseudo-queries) to calibrate fusion on."""


class DocumentLoadError(RagloomError):
    """A file could not be read or parsed into a Document."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"Could not load {path}: {reason}")
        self.path = path
        self.reason = reason


class UnsupportedFormatError(DocumentLoadError):
    """No loader handles this file type."""


class InputTooLongError(RagloomError, ValueError):
    """An input exceeds a model's limit and would have to be cut; ragloom never cuts silently."""


class EndpointError(RagloomError):
    """A remote model endpoint failed, timed out or answered something malformed."""

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class RagloomWarning(UserWarning):
    """Base class for ragloom warnings."""


class TruncationWarning(RagloomWarning):
    """An input was cut to fit a model; the warning says which and by how much."""
