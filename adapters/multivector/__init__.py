"""Multi-vector (late-interaction) retrieval: ColPali/ColQwen2 over page images, ColBERT over text.

Importing this package is cheap; torch, transformers, pypdfium2 and Pillow load on first use.

- :class:`ColVisionEncoder` (transformers' ColPaliForRetrieval / ColQwen2ForRetrieval) and :class:`ColBERTEncoder`
- :class:`ColPaliRetriever` (pages) and :class:`ColBERTRetriever` (text chunks) over the memory-mapped
  :class:`ragloom.stores.multivector.MultiVectorStore`, with compression from :mod:`ragloom.compression`
- :class:`MaxSimReranker`, usable after any first stage
- :func:`iter_pdf_pages` / :class:`RenderSettings`: bounded, bomb-safe page rendering with pypdfium2
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ragloom._imports import lazy_exports

__all__ = [
    "ColBERTEncoder",
    "ColBERTRetriever",
    "ColPaliRetriever",
    "ColVisionEncoder",
    "MaxSimReranker",
    "MultiVectorRetriever",
    "MultiVectorSettings",
    "PageImage",
    "RenderSettings",
    "estimate_memory",
    "iter_pdf_pages",
    "maxsim",
]

_LAZY = {
    "ColBERTEncoder": "ragloom.adapters.multivector.colbert",
    "ColVisionEncoder": "ragloom.adapters.multivector.colvision",
    "ColBERTRetriever": "ragloom.adapters.multivector.retriever",
    "ColPaliRetriever": "ragloom.adapters.multivector.retriever",
    "MultiVectorRetriever": "ragloom.adapters.multivector.retriever",
    "MaxSimReranker": "ragloom.adapters.multivector.rerank",
    "maxsim": "ragloom.adapters.multivector.rerank",
    "PageImage": "ragloom.adapters.multivector.pages",
    "RenderSettings": "ragloom.adapters.multivector.pages",
    "iter_pdf_pages": "ragloom.adapters.multivector.pages",
    "MultiVectorSettings": "ragloom.compression",
    "estimate_memory": "ragloom.compression",
}

if TYPE_CHECKING:
    from ragloom.adapters.multivector.colbert import ColBERTEncoder
    from ragloom.adapters.multivector.colvision import ColVisionEncoder
    from ragloom.adapters.multivector.pages import PageImage, RenderSettings, iter_pdf_pages
    from ragloom.adapters.multivector.rerank import MaxSimReranker, maxsim
    from ragloom.adapters.multivector.retriever import ColBERTRetriever, ColPaliRetriever, MultiVectorRetriever
    from ragloom.compression import MultiVectorSettings, estimate_memory


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)
