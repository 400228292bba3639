"""ragloom: document question answering with pluggable retrievers.

``import ragloom`` is light: the core types load now; torch, transformers and chromadb load on first use by an
adapter. The names below are the public API — the value types, the pipeline and fusion, the errors every
method raises, and the protocols a user's own component implements; adapters live in ``ragloom.adapters``, recipes
and the CLI in ``ragloom.recipes``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ragloom._imports import lazy_exports
from ragloom.errors import (
    ConfigError,
    DocumentLoadError,
    EncoderMismatchError,
    EndpointError,
    IndexCorruptError,
    IndexLockedError,
    IndexRecoveryError,
    InputTooLongError,
    InvalidInputError,
    MissingExtraError,
    ModelNotFoundError,
    RagloomError,
    RagloomWarning,
    TruncationWarning,
    UnsupportedFormatError,
)
from ragloom.protocols import (
    AsyncGenerator,
    AsyncQueryEncoder,
    AsyncRetriever,
    ChunkListing,
    Closeable,
    ConfigurableFuser,
    ContextWindowAware,
    DenseEncoder,
    DigestTokenCounter,
    Filters,
    Fuser,
    Generator,
    ImportanceEncoder,
    LogprobGenerator,
    MultiVectorEncoder,
    NamedTokenCounter,
    PersistentRetriever,
    PersistentStore,
    ProgressCallback,
    PromptMeasuringGenerator,
    RecoverableStore,
    ReplyLimited,
    Reranker,
    Retriever,
    SparseEncoder,
    TokenAwareEncoder,
    TokenCounter,
    TokenCountingGenerator,
    TokenizingGenerator,
    VerifiableStore,
)
from ragloom.types import Answer, Chunk, Citation, Document, Hit, Message, Page, SparseVector

__version__ = "0.1.0"

__all__ = [
    "Answer",
    "AsyncGenerator",
    "AsyncQueryEncoder",
    "AsyncRetriever",
    "Chunk",
    "ChunkListing",
    "Citation",
    "Closeable",
    "ConfigError",
    "ConfigurableFuser",
    "ContextWindowAware",
    "ConvexFusion",
    "DenseEncoder",
    "DigestTokenCounter",
    "Document",
    "DocumentLoadError",
    "EncoderMismatchError",
    "EndpointError",
    "Filters",
    "Fuser",
    "Generator",
    "Hit",
    "ImportanceEncoder",
    "IndexCorruptError",
    "IndexLockedError",
    "IndexRecoveryError",
    "IngestReport",
    "InputTooLongError",
    "InvalidInputError",
    "LogprobGenerator",
    "Message",
    "MinMaxFusion",
    "MissingExtraError",
    "ModelNotFoundError",
    "MultiVectorEncoder",
    "NamedTokenCounter",
    "Page",
    "PersistentRetriever",
    "PersistentStore",
    "Pipeline",
    "ProgressCallback",
    "PromptBuilder",
    "PromptMeasuringGenerator",
    "RagloomError",
    "RagloomWarning",
    "ReciprocalRankFusion",
    "RecoverableStore",
    "ReplyLimited",
    "Reranker",
    "Retriever",
    "SparseEncoder",
    "SparseVector",
    "TokenAwareEncoder",
    "TokenChunker",
    "TokenCounter",
    "TokenCountingGenerator",
    "TokenizingGenerator",
    "TruncationWarning",
    "UnsupportedFormatError",
    "VerifiableStore",
    "ZScoreFusion",
    "__version__",
    "load_file",
    "load_folder",
]

_LAZY = {
    "Pipeline": "ragloom.pipeline",
    "IngestReport": "ragloom.pipeline",
    "PromptBuilder": "ragloom.prompting",
    "ReciprocalRankFusion": "ragloom.fusion",
    "MinMaxFusion": "ragloom.fusion",
    "ZScoreFusion": "ragloom.fusion",
    "ConvexFusion": "ragloom.fusion",
    "TokenChunker": "ragloom.chunking",
    "load_file": "ragloom.loaders",
    "load_folder": "ragloom.loaders",
}

if TYPE_CHECKING:
    from ragloom.chunking import TokenChunker
    from ragloom.fusion import ConvexFusion, MinMaxFusion, ReciprocalRankFusion, ZScoreFusion
    from ragloom.loaders import load_file, load_folder
    from ragloom.pipeline import IngestReport, Pipeline
    from ragloom.prompting import PromptBuilder


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)
