"""Post-hoc attribution (kept for compatibility): the implementation lives in :mod:`ragloom.citations`."""

from __future__ import annotations

from ragloom.citations import attribute_sentences, has_markers, strip_inserted_markers

__all__ = ["attribute_sentences", "has_markers", "strip_inserted_markers"]
