"""MaxSim reranking: rescore any first stage's hits with a late-interaction encoder.

With a text encoder (ColBERT) the hits' chunk text is encoded; long passages are encoded whole in windows, never
cut. With a page-image encoder (ColPali/ColQwen2) each hit's page is rendered from its source PDF (or image), so
text-chunk hits from dense or SPLADE retrieval are rescored by how their page looks.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ragloom.adapters.multivector.pages import IMAGE_SUFFIXES, RenderSettings, iter_pdf_pages, load_image
from ragloom.errors import InvalidInputError
from ragloom.protocols import MultiVectorEncoder
from ragloom.retrieval import check_query
from ragloom.stores.maxsim import maxsim_scores
from ragloom.types import Hit

__all__ = ["MaxSimReranker", "maxsim"]


def maxsim(query: np.ndarray, document: np.ndarray) -> float:
    """Σ over query tokens of the best dot product with any document token (float32; numpy backend of
    :func:`ragloom.stores.maxsim.maxsim_scores`)."""
    return float(maxsim_scores([query], [document])[0, 0])


class MaxSimReranker:
    """Implements :class:`ragloom.protocols.Reranker`: late-interaction rescoring of first-stage hits."""

    def __init__(
        self, encoder: MultiVectorEncoder, *, name: str = "maxsim", render: RenderSettings | None = None
    ) -> None:
        self.encoder = encoder
        self.name = name
        self.render = render or RenderSettings()
        self._images = getattr(encoder, "modality", "text") == "image"

    def rerank(self, query: str, hits: Sequence[Hit], k: int) -> list[Hit]:
        check_query(query, k)
        hits = list(hits)
        if not hits:
            return []
        items = self._page_images(hits) if self._images else [h.chunk.text for h in hits]
        q = self.encoder.encode_queries([query])[0]
        docs = self.encoder.encode_documents(items)
        scores = [float(s) for s in maxsim_scores([q], list(docs))[0]]
        order = sorted(range(len(hits)), key=lambda i: (-scores[i], i))[:k]
        return [
            Hit(
                chunk=hits[i].chunk,
                score=scores[i],
                score_kind="maxsim",
                retriever=self.name,
                rank=rank,
                explanation=f"maxsim rerank of {hits[i].retriever} #{hits[i].rank} ({hits[i].score:.4g})",
            )
            for rank, i in enumerate(order, start=1)
        ]

    def _page_images(self, hits: list[Hit]) -> list[object]:
        """One rendered page per hit (each distinct page rendered once)."""
        cache: dict[tuple[str, int], object] = {}
        wanted: dict[str, set[int]] = {}
        for hit in hits:
            chunk = hit.chunk
            suffix = Path(chunk.source).suffix.lower() if chunk.source else ""
            if chunk.page is None and suffix not in IMAGE_SUFFIXES:
                raise InvalidInputError(
                    f"Hit {chunk.id!r} has no page number, so its page image cannot be rendered for "
                    f"{type(self.encoder).__name__}; rerank page or PDF-chunk hits, or use a text encoder"
                )
            if suffix not in (".pdf", *IMAGE_SUFFIXES):
                raise InvalidInputError(
                    f"Hit {chunk.id!r} comes from {chunk.source!r}, not a PDF or image: no page image to score"
                )
            wanted.setdefault(chunk.source, set()).add(chunk.page or 1)
        for source, pages in wanted.items():
            if Path(source).suffix.lower() == ".pdf":
                for page in iter_pdf_pages(source, self.render, sorted(pages)):
                    cache[(source, page.page)] = page.image
            else:
                cache[(source, 1)] = load_image(source, self.render).image
        return [cache[(h.chunk.source, h.chunk.page or 1)] for h in hits]
