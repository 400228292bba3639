"""BM25 through ``bm25s``, behind the Retriever contract: chunked documents, stemming, stopwords, no pickle.

bm25s precomputes every (term, chunk) BM25 score into a sparse matrix, so a query sums a few columns. Because the
IDF of every term changes when the collection changes, bm25s has no incremental update: ``add`` and ``delete``
rebuild the matrix from the stored chunks (seconds for tens of thousands of chunks) and commit it as a new
generation. On disk::

    manifest.json                ragloom's manifest (BM25 settings as the fingerprint, chunker config, counts)
    bm25/current.json            the commit point: which generation is live, with sha256 of each of its files
    bm25/gen-000003/             bm25s's own files (.npy arrays saved with allow_pickle=False, JSON vocabulary
                                 and parameters) and chunks.jsonl

The generation directories are :class:`ragloom.stores.generations.GenerationStore`'s (the core's storage layer):
a generation is complete before ``current.json`` names it, so a crash leaves the previous one live.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ragloom._imports import require
from ragloom.adapters.sparse.retriever import explain_terms
from ragloom.chunking import OffsetTokenizer, TokenChunker, WordTokenizer
from ragloom.errors import ConfigError
from ragloom.index_folder import IndexFolder
from ragloom.persistence import Manifest
from ragloom.protocols import Filters
from ragloom.retrieval import (
    DEFAULT_CHUNK_TOKENS,
    ProgressCallback,
    RetrieverMethods,
    check_documents,
    check_query,
    warn_empty,
)
from ragloom.stores.generations import GenerationStore
from ragloom.stores.rows import check_filters, chunk_matches
from ragloom.types import Chunk, Document, Hit

__all__ = ["BM25Retriever", "tokenizer_chunker"]

_TOKEN_PATTERN = r"(?u)\b\w\w+\b"  # bm25s's default (scikit-learn's CountVectorizer pattern)


def tokenizer_chunker(
    model: str | os.PathLike[str], chunk_size: int | None = None, overlap: int = 32, allow_download: bool = False
) -> TokenChunker:
    """Chunks measured in a model's tokenizer, sized as that model's dense or SPLADE retriever would size them.

    BM25 itself needs no model; chunking with the same tokenizer and size as the other retrievers of a hybrid
    pipeline gives every retriever the same chunk ids, so fusion merges them exactly.
    """
    transformers = require("transformers", "sparse", "chunking with a model's tokenizer")
    from ragloom.hf import sentence_transformers_config
    from ragloom.models import resolve_model

    path = resolve_model(model, allow_download=allow_download)
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    limit = int(config.get("max_position_embeddings") or 512)
    max_length = sentence_transformers_config(path).get("max_length") or min(
        limit, int(getattr(tokenizer, "model_max_length", limit) or limit)
    )
    capacity = int(max_length) - int(tokenizer.num_special_tokens_to_add(pair=False))
    if chunk_size and chunk_size > capacity:
        raise ConfigError(f"chunk_size {chunk_size} exceeds {model}'s capacity of {capacity} tokens")
    size = chunk_size or min(capacity, DEFAULT_CHUNK_TOKENS)  # as default_chunker sizes the dense chunks
    name = str(model) if not Path(str(model)).is_dir() else path.name
    return TokenChunker(OffsetTokenizer(tokenizer, name=name), chunk_size=size, overlap=min(overlap, size // 2))


def _distribution_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


class BM25Retriever(RetrieverMethods):
    """BM25 (bm25s) over chunks, with Snowball stemming (PyStemmer) and stopwords, persisted without pickle.

    ``chunker``: pass the dense/SPLADE retriever's chunker (or use :func:`tokenizer_chunker`) for chunk ids that
    fuse exactly; the default chunks by words (``chunk_size`` words). ``method``: robertson, lucene, atire, bm25l
    or bm25+. ``stemmer``: a Snowball language name or None; ``stopwords``: "en", a list, or None.
    """

    kind = "bm25"

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        chunker: TokenChunker | None = None,
        chunk_size: int = 256,
        overlap: int = 32,
        k1: float = 1.5,
        b: float = 0.75,
        method: str = "lucene",
        stemmer: str | None = "english",
        stopwords: str | Sequence[str] | None = "en",
        name: str | None = None,
        explain: int = 5,
    ) -> None:
        self._bm25s = require("bm25s", "sparse", "BM25 retrieval")
        self.path = Path(path) if path is not None else None
        self.chunker = chunker or TokenChunker(WordTokenizer(), chunk_size=chunk_size, overlap=min(overlap, 16))
        self.k1, self.b, self.method = float(k1), float(b), method
        self._stemmer_name = stemmer
        self._stemmer_version: str | None = None
        self._stem = None
        if stemmer:
            stemmer_module = require("Stemmer", "sparse", "BM25 stemming (PyStemmer)")
            try:
                self._stem = stemmer_module.Stemmer(stemmer).stemWords
            except KeyError as exc:
                raise ConfigError(
                    f"No Snowball stemmer for {stemmer!r}; choose one of {sorted(stemmer_module.algorithms())}"
                ) from exc
            # Snowball's algorithms change between releases (PyStemmer 3 stems "university" to "universiti", 2.2 to
            # "univers"): an index must be queried with the stemmer that built it
            self._stemmer_version = _distribution_version("PyStemmer")
        # the stopword list actually used (bm25s resolves names such as "en"); its hash goes into the fingerprint
        self._stopwords = (
            None if stopwords is None else sorted(self._bm25s.tokenization.Tokenizer(stopwords=stopwords).stopwords)
        )
        self._stopwords_label = None if stopwords is None else (stopwords if isinstance(stopwords, str) else "custom")
        self._name = name or self.kind
        self.explain = explain
        self._chunks: list[Chunk] = []
        self._tokens: list[list[str]] | None = []
        self._model: Any = None
        self._names: dict[int, str] | None = None  # term id -> token, for explanations
        self._folder: IndexFolder | None = None
        self._store: GenerationStore | None = None
        if self.path is not None:
            self._folder = IndexFolder(
                self.path, kind=self.kind, fingerprint=self.fingerprint, units=self.chunker.config
            )
            self._store = GenerationStore(self.path / "bm25")
            self._load()
            if not self._store.committed:
                self._folder.check_not_emptied(len(self._chunks), str(self._store.current))

    @property
    def fingerprint(self) -> Mapping[str, object]:
        """Everything that changes the scores: BM25 variant and parameters, tokenisation, stemming, stopwords."""
        stopwords = None
        if self._stopwords is not None:
            digest = hashlib.sha256("\n".join(self._stopwords).encode("utf-8")).hexdigest()[:16]
            stopwords = f"{self._stopwords_label} ({len(self._stopwords)} words, sha256 {digest})"
        return {
            "family": "bm25",
            "library": "bm25s",
            "method": self.method,
            "k1": self.k1,
            "b": self.b,
            "lowercase": True,
            "token_pattern": _TOKEN_PATTERN,
            "stemmer": self._stemmer_name,
            "stemmer_version": self._stemmer_version,
            "stopwords": stopwords,
        }

    # -- the Retriever contract ---------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self._name

    def add(self, documents: Sequence[Document], *, progress: ProgressCallback | None = None) -> list[Chunk]:
        """Index documents (replacing any with the same id): one rebuild and one commit for the whole call."""
        docs = check_documents(documents)
        self._acquire_writer()
        pairs = [(doc, self.chunker.chunk(doc)) for doc in docs]
        warn_empty(pairs)
        added = [c for _, chunks in pairs for c in chunks]
        self._rebuild({doc.id for doc in docs}, added)  # re-adding a document replaces it
        if progress:
            progress(len(docs), len(docs))
        return added

    def delete(self, doc_ids: Sequence[str]) -> int:
        """Remove documents (a rebuild of the BM25 matrix from the remaining chunks)."""
        if isinstance(doc_ids, str):
            doc_ids = [doc_ids]
        self._acquire_writer()
        dropping = set(doc_ids)
        removed = sum(c.doc_id in dropping for c in self._chunks)
        if removed:
            self._rebuild(dropping, [])
        return removed

    def search(self, query: str, k: int = 10, filters: Filters | None = None) -> list[Hit]:
        check_query(query, k)
        check_filters(filters)
        if self._folder is not None:  # a reader picks up what another process committed since it loaded
            self._folder.refresh(self._reload)
        if self._model is None:
            return []
        terms = self._tokenize([query])[0]
        vocab = self._model.vocab_dict
        ids = [vocab[t] for t in terms if t in vocab]
        if not ids:
            return []  # no query term occurs in the collection
        scores = np.asarray(self._model.get_scores_from_ids(ids), dtype=np.float32)
        if filters:
            allowed = np.fromiter((chunk_matches(c, filters) for c in self._chunks), bool, len(self._chunks))
            scores = np.where(allowed, scores, 0.0)
        top = np.argpartition(-scores, k - 1)[:k] if scores.size > k else np.arange(scores.size)
        top = top[scores[top] > 0]
        top = top[np.lexsort((top, -scores[top]))]
        return [
            Hit(
                chunk=self._chunks[row],
                score=float(scores[row]),
                score_kind="bm25",
                retriever=self._name,
                rank=rank,
                explanation=self._explain(ids, int(row)),
            )
            for rank, row in enumerate(top.tolist(), start=1)
        ]

    def search_many(self, queries: Sequence[str], k: int = 10, filters: Filters | None = None) -> list[list[Hit]]:
        for query in queries:
            check_query(query, k)
        return [self.search(query, k, filters) for query in queries]

    def doc_ids(self) -> set[str]:
        return {c.doc_id for c in self._chunks}

    def chunks(self) -> list[Chunk]:
        """Every chunk indexed, in index order (what label-free calibration samples from)."""
        return list(self._chunks)

    def __len__(self) -> int:
        return len(self._chunks)

    # -- internals ----------------------------------------------------------------------------------------------
    def _tokenize(self, texts: list[str]) -> list[list[str]]:
        return self._bm25s.tokenize(
            texts,
            lower=True,
            token_pattern=_TOKEN_PATTERN,
            stopwords=self._stopwords,
            stemmer=self._stem,
            return_ids=False,
            show_progress=False,
        )

    def _explain(self, ids: list[int], row: int) -> str:
        if not self.explain:
            return ""
        scores = self._model.scores
        indptr, rows, data = scores["indptr"], scores["indices"], scores["data"]
        counts: dict[int, int] = {}
        for term in ids:
            counts[term] = counts.get(term, 0) + 1
        found = []
        for term, count in counts.items():
            start, end = int(indptr[term]), int(indptr[term + 1])
            where = start + int(np.searchsorted(rows[start:end], row))
            if where < end and rows[where] == row:
                found.append((term, count * float(data[where])))
        found.sort(key=lambda item: (-item[1], item[0]))
        if self._names is None:
            self._names = {index: token for token, index in self._model.vocab_dict.items()}
        names = self._names
        return explain_terms(found[: self.explain], lambda term: names.get(term, f"#{term}"))

    def _rebuild(self, dropping: set[str], added: list[Chunk]) -> None:
        if self._tokens is None:  # reopened from disk: tokenise the stored chunks once
            self._tokens = self._tokenize([c.text for c in self._chunks]) if self._chunks else []
        keep = [i for i, c in enumerate(self._chunks) if c.doc_id not in dropping]
        chunks = [self._chunks[i] for i in keep] + added
        tokens = [self._tokens[i] for i in keep] + (self._tokenize([c.text for c in added]) if added else [])
        model = self._index(tokens) if any(tokens) else None
        self._commit(chunks, model)
        self._chunks, self._tokens, self._model, self._names = chunks, tokens, model, None

    def _index(self, tokens: list[list[str]]) -> Any:
        model = self._bm25s.BM25(k1=self.k1, b=self.b, method=self.method)
        model.index(tokens, show_progress=False)
        self._sort_postings(model)
        return model

    @staticmethod
    def _sort_postings(model: Any) -> None:
        """Sort each term's rows so explanations can binary-search them (sums do not depend on the order)."""
        sparse = require("scipy.sparse", "sparse", "BM25 retrieval")
        scores = model.scores
        matrix = sparse.csr_matrix(
            (scores["data"], scores["indices"], scores["indptr"]),
            shape=(len(scores["indptr"]) - 1, int(scores["num_docs"])),
        )
        matrix.sort_indices()
        scores["data"], scores["indices"], scores["indptr"] = matrix.data, matrix.indices, matrix.indptr

    # -- persistence ----------------------------------------------------------------------------------------------
    @property
    def manifest(self) -> Manifest | None:
        """The index's manifest (None in memory, or before the first write to a new directory)."""
        return self._folder.manifest if self._folder is not None else None

    def _store_config(self) -> dict[str, str]:
        return {"kind": "bm25s", "version": str(getattr(self._bm25s, "__version__", ""))}

    def acquire_writer(self) -> None:
        """Take the index directory's writer lock (held until ``close``), reloading what another process committed
        since this one opened the index; raises IndexLockedError while another process writes."""
        self._acquire_writer()

    def _acquire_writer(self) -> None:
        if self._folder is not None:  # the fingerprint is on disk before the first commit
            self._folder.acquire(
                None,
                self._store_config(),
                lambda: {"chunks": len(self._chunks), "documents": len(self.doc_ids())},
                reload=self._reload,
            )

    def _reload(self) -> None:
        """Re-read the committed generation (another process wrote since this one loaded)."""
        self._chunks, self._tokens, self._model, self._names = [], [], None, None
        self._load()

    def _commit(self, chunks: list[Chunk], model: Any) -> None:
        if self._store is None:
            return

        def write(staging: Path) -> None:
            if model is not None:
                model.save(str(staging), corpus=None, allow_pickle=False, show_progress=False)

        self._store.commit(chunks, write)
        assert self._folder is not None
        self._folder.save(self._store_config(), {"chunks": len(chunks), "documents": len({c.doc_id for c in chunks})})

    def _load(self) -> None:
        assert self._store is not None
        loaded = self._store.load()
        if loaded is None:
            return
        folder, self._chunks = loaded
        self._tokens = None
        if (folder / "params.index.json").exists():
            self._model = self._bm25s.BM25.load(str(folder), load_corpus=False, mmap=False, allow_pickle=False)
            self._sort_postings(self._model)

    def close(self) -> None:
        """Release the writer lock (every write is already committed)."""
        if self._folder is not None:
            self._folder.release()
