"""Index specs: what a CLI index directory holds and how to rebuild its pipeline.

An index directory keeps ``ragloom.json`` (the retrievers, fusion and generator it was built with) and one
subdirectory per retriever, so ``ragloom ask --index DIR`` needs no model flags: the index knows its models.
Builders for each retriever kind live in ``RETRIEVER_BUILDERS`` (a kind maps to a builder function or a
``module:function`` path resolved on first use).

An index folder is data that may come from someone else, so a spec read from disk is trusted with nothing that
runs code or spends credentials: it cannot turn on ``trust_remote_code`` (only the caller can, with
``open_pipeline(..., trust_remote_code=True)``), models load as data only (safetensors and JSON), and the
generator's endpoint and API-key variable come from the caller (flags, ``OPENAI_BASE_URL``/``OPENAI_API_KEY``),
never from the file.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ragloom.errors import ConfigError, IndexCorruptError
from ragloom.fusion import fuser_from_config
from ragloom.grouping import check_group_by
from ragloom.pipeline import Pipeline
from ragloom.protocols import Generator, Retriever
from ragloom.stores.files import atomic_write_json, check_index_tree, read_json

__all__ = [
    "RETRIEVER_BUILDERS",
    "GeneratorSpec",
    "IndexSpec",
    "RetrieverSpec",
    "answer_options",
    "build_generator",
    "build_retriever",
    "generator_spec_with",
    "open_pipeline",
]

SPEC_NAME = "ragloom.json"
SPEC_VERSION = 1
SPEC_MAX_BYTES = 1 << 20
_CALLER_ONLY = frozenset({"base_url", "api_key_env"})
"""Generator settings a spec file may hold (older ragloom wrote them) but that only the caller decides."""


@dataclass(frozen=True)
class RetrieverSpec:
    """One retriever of an index: its kind (dense, ...), model, store and chunking."""

    name: str = "dense"
    kind: str = "dense"
    model: str = "minilm"
    store: str = "chroma"
    chunk_size: int | None = None
    overlap: int = 32
    options: dict[str, Any] = field(default_factory=dict)
    chroma: dict[str, str] = field(default_factory=dict)
    """A Chroma server for a dense retriever's vectors: ``url``, ``collection``, optional ``tenant``/``database``.
    The token is never stored: it comes from ``RAGLOOM_CHROMA_TOKEN`` and is sent only when ``RAGLOOM_CHROMA_URL``
    names the same server."""


CHROMA_TOKEN_ENV = "RAGLOOM_CHROMA_TOKEN"
CHROMA_URL_ENV = "RAGLOOM_CHROMA_URL"
"""The server the caller vouches for: the token goes only there."""
CHROMA_KEYS = ("url", "collection", "tenant", "database")


def chroma_server_store(chroma: Mapping[str, str], normalized: bool) -> Any:
    """The ChromaVectorStore of a Chroma server described by a spec's ``chroma`` (token from the environment)."""
    import os

    from ragloom.stores.chroma import ChromaVectorStore

    unknown = sorted(set(chroma) - set(CHROMA_KEYS))
    if unknown or not chroma.get("url"):
        raise ConfigError(
            f"A Chroma server needs 'url' (and may name {', '.join(CHROMA_KEYS[1:])}); got {dict(chroma)}"
        )
    token = os.environ.get(CHROMA_TOKEN_ENV)
    if token and os.environ.get(CHROMA_URL_ENV, "").rstrip("/") != chroma["url"].rstrip("/"):
        # a spec file is data: it may not send the caller's credential to a server of its choosing
        raise ConfigError(
            f"{CHROMA_TOKEN_ENV} is set but the index names the Chroma server {chroma['url']!r}; confirm that server "
            f"by setting {CHROMA_URL_ENV}={chroma['url']} (the token is only sent to the URL the caller names)"
        )
    return ChromaVectorStore(
        url=chroma["url"],
        collection=chroma.get("collection") or "ragloom",
        tenant=chroma.get("tenant"),
        database=chroma.get("database"),
        headers={"Authorization": f"Bearer {token}"} if token else None,
        metric="cosine" if normalized else "ip",
    )


@dataclass(frozen=True)
class GeneratorSpec:
    """The generator ``ask`` uses unless told otherwise: ``local`` (transformers), ``llamacpp`` (a GGUF run by
    llama.cpp), ``openai`` (HTTP) or ``extractive`` (no model)."""

    kind: str = "local"
    model: str = "smollm2"
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    max_new_tokens: int = 256
    prompt: str = "auto"
    """A name of :data:`ragloom.qa_prompts.QA_PROMPTS`, or ``"auto"``: the prompt the registered model was measured
    with (its ``qa_prompt`` note in :mod:`ragloom.model_registry`), else ``"default"``."""
    check_threshold: float | None = None
    """Decline before generating when ``1 - P(the reply starts with the decline phrase)`` is under it
    (:class:`ragloom.answerability.AnswerabilityCheck`, ``mode="decline-phrase"``); 0 turns the check off; ``None``
    uses the threshold measured for the registered model with its prompt (docs/generators.md), else none."""
    check_fit: dict[str, Any] = field(default_factory=dict)
    """How ``check_threshold`` was fitted, when ``ragloom tune-check`` fitted it (pairs, seed, scores, seconds)."""


@dataclass(frozen=True)
class IndexSpec:
    """Everything needed to reopen an index directory as a Pipeline."""

    retrievers: tuple[RetrieverSpec, ...] = (RetrieverSpec(),)
    fusion: dict[str, Any] = field(default_factory=lambda: {"kind": "minmax"})
    generator: GeneratorSpec = field(default_factory=GeneratorSpec)
    k: int = 5
    candidates: int = 50
    group_by: str = "chunk"  # "page": one hit per (document, page) by default

    def save(self, directory: Path) -> None:
        data = {"format_version": SPEC_VERSION, **asdict(self)}
        atomic_write_json(directory / SPEC_NAME, data)

    @classmethod
    def load(cls, directory: Path) -> IndexSpec:
        """Read ``ragloom.json`` as untrusted data (see the module docs)."""
        path = directory / SPEC_NAME
        if not os.path.lexists(path):
            raise IndexCorruptError(
                f"{directory} is not a ragloom index (no {SPEC_NAME}); create one with `ragloom ingest PATH "
                f"--index {directory}`"
            )
        data = read_json(path, max_bytes=SPEC_MAX_BYTES)
        if not isinstance(data, dict) or data.get("format_version") != SPEC_VERSION:
            version = data.get("format_version") if isinstance(data, dict) else None
            raise IndexCorruptError(f"{path}: unsupported format version {version}")
        try:
            retrievers = tuple(RetrieverSpec(**r) for r in data["retrievers"])
            generator = dict(data.get("generator") or {})
            spec = cls(
                retrievers=retrievers,
                fusion=dict(data.get("fusion") or {}),
                generator=GeneratorSpec(**{k: v for k, v in generator.items() if k not in _CALLER_ONLY}),
                k=int(data.get("k", 5)),
                candidates=int(data.get("candidates", 50)),
                group_by=str(data.get("group_by", "chunk")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise IndexCorruptError(f"{path} is malformed: {exc}") from exc
        try:
            check_generator_spec(spec.generator)
        except ConfigError as exc:
            raise IndexCorruptError(f"{path}: {exc}") from exc
        for retriever in spec.retrievers:
            if not isinstance(retriever.options, dict) or not isinstance(retriever.model, str):
                raise IndexCorruptError(f"{path}: retriever {retriever.name!r} is malformed")
            if "trust_remote_code" in retriever.options:
                raise ConfigError(
                    f"{path} asks to run the model code of retriever {retriever.name!r} (trust_remote_code). An index "
                    "folder never turns that on: remove the option from the file, and if you have read that model's "
                    "code and trust it, pass trust_remote_code=True to open_pipeline yourself."
                )
        return spec


RetrieverBuilder = Callable[[RetrieverSpec, "Path | None", bool], Retriever]
"""Builds a retriever from its spec; ``directory`` None means in memory only."""


def _build_dense(spec: RetrieverSpec, directory: Path | None, allow_download: bool) -> Retriever:
    from ragloom.adapters.dense import DenseRetriever, TransformersDenseEncoder

    options = dict(spec.options)
    encoder = TransformersDenseEncoder(spec.model, allow_download=allow_download, **options)
    store: Any = spec.store
    if spec.chroma:
        if spec.store != "chroma":
            raise ConfigError(f"Retriever {spec.name!r}: a Chroma server needs store 'chroma', not {spec.store!r}")
        store = chroma_server_store(spec.chroma, bool(encoder.fingerprint.get("normalize", False)))
    return DenseRetriever(
        encoder, directory, store=store, chunk_size=spec.chunk_size, overlap=spec.overlap, name=spec.name
    )


DEFAULT_MODELS: dict[str, str] = {
    "dense": "minilm",
    "colpali": "vidore/colqwen2-v1.0-hf",
    "colqwen2": "vidore/colqwen2-v1.0-hf",
    "colbert": "colbert-ir/colbertv2.0",
    "splade": "splade-tiny",
    "bm25": "minilm",  # the tokenizer that measures BM25 chunks (same chunk ids as the dense default)
    "late": "nomic",  # nomic-embed-text-v1.5: long context (2048 trained, 8192 with dynamic NTK RoPE)
}
"""The model each retriever kind uses when none is named."""

# kind -> builder, or a "module:function" path imported on first use (so an unused adapter never loads). Adapters do
# not register themselves (they never import recipes): a new kind is added here (docs/architecture.md, checklist).
RETRIEVER_BUILDERS: dict[str, RetrieverBuilder | str] = {
    "dense": _build_dense,
    "colpali": "ragloom.adapters.multivector.builders:build_colpali",
    "colqwen2": "ragloom.adapters.multivector.builders:build_colpali",
    "colbert": "ragloom.adapters.multivector.builders:build_colbert",
    "splade": "ragloom.adapters.sparse.builders:build_splade",
    "bm25": "ragloom.adapters.sparse.builders:build_bm25",
    "late": "ragloom.adapters.late_chunking:build_late",
}


CHROMA_KINDS = ("dense",)
"""Kinds whose vectors can live on a Chroma server."""


def build_retriever(spec: RetrieverSpec, index_dir: Path | None, allow_download: bool = False) -> Retriever:
    """Build (or reopen) the retriever ``spec`` describes, under ``index_dir / spec.name`` when given."""
    builder = RETRIEVER_BUILDERS.get(spec.kind)
    if builder is None:
        raise ConfigError(f"Unknown retriever kind {spec.kind!r}; known: {', '.join(sorted(RETRIEVER_BUILDERS))}")
    if spec.chroma and spec.kind not in CHROMA_KINDS:
        raise ConfigError(
            f"Retriever {spec.name!r} ({spec.kind}) keeps its own index in the index directory; only "
            f"{', '.join(CHROMA_KINDS)} retrievers store vectors on a Chroma server"
        )
    if isinstance(builder, str):
        module, _, function = builder.partition(":")
        builder = getattr(importlib.import_module(module), function)  # a "module:function" reference
    return builder(spec, index_dir / spec.name if index_dir is not None else None, allow_download)


def build_generator(
    spec: GeneratorSpec,
    allow_download: bool = False,
    *,
    base_url: str | None = None,
    api_key_env: str | None = None,
) -> Generator:
    """The generator a spec names. For ``openai`` the endpoint is ``base_url``, else ``spec.base_url`` as the caller
    built it, else ``$OPENAI_BASE_URL``, else a local server on 127.0.0.1:8000; the key is read from ``api_key_env``
    (default ``OPENAI_API_KEY``). A spec loaded from an index folder carries neither (module docs)."""
    if spec.kind == "local":
        from ragloom.adapters.generators.local import TransformersGenerator

        return TransformersGenerator(spec.model, max_new_tokens=spec.max_new_tokens, allow_download=allow_download)
    if spec.kind == "llamacpp":  # the registry's GGUF (or a .gguf path) run by llama.cpp: faster on CPUs
        from ragloom.adapters.generators.llamacpp import LlamaCppGenerator

        return LlamaCppGenerator(spec.model, max_new_tokens=spec.max_new_tokens, allow_download=allow_download)
    if spec.kind == "openai":
        from ragloom.adapters.generators.openai_http import OpenAICompatibleGenerator

        return OpenAICompatibleGenerator(
            spec.model,
            base_url=base_url or spec.base_url or os.environ.get("OPENAI_BASE_URL") or "http://127.0.0.1:8000/v1",
            api_key_env=api_key_env or spec.api_key_env,
            max_tokens=spec.max_new_tokens,
        )
    if spec.kind == "extractive":  # no model: the best passage sentences, verbatim and cited
        from ragloom.adapters.generators.extractive import ExtractiveGenerator

        return ExtractiveGenerator()
    raise ConfigError(f"Unknown generator kind {spec.kind!r}; use 'local', 'llamacpp', 'openai' or 'extractive'")


NO_DECLINE_PHRASE = (
    "The answerability check reads the decline phrase the prompt names; the default prompt names none. Choose a "
    "prompt (guided, detailed or words) or set the check threshold to 0"
)


def check_generator_spec(spec: GeneratorSpec) -> None:
    """Refuse a prompt name or check threshold that :func:`answer_options` could not apply."""
    from ragloom.qa_prompts import QA_PROMPTS

    if spec.prompt != "auto" and spec.prompt not in QA_PROMPTS:
        raise ConfigError(f"Unknown prompt {spec.prompt!r}; use 'auto' or one of: {', '.join(QA_PROMPTS)}")
    threshold = spec.check_threshold
    if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, (int, float))):
        raise ConfigError(f"check_threshold must be a number between 0 and 1, got {threshold!r}")
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise ConfigError(f"check_threshold must be between 0 and 1 (0 turns the check off), got {threshold}")
    if not isinstance(spec.check_fit, dict):
        raise ConfigError(f"check_fit must be a JSON object, got {type(spec.check_fit).__name__}")
    if threshold and spec.prompt == "default":
        raise ConfigError(NO_DECLINE_PHRASE)


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
        spec = replace(spec, prompt="auto", check_threshold=None, check_fit={})
    updated = replace(
        spec,
        kind=kind or spec.kind,
        model=model or spec.model,
        base_url=base_url or spec.base_url,
        prompt=prompt or spec.prompt,
        check_threshold=spec.check_threshold if check_threshold is None else check_threshold,
    )
    check_generator_spec(updated)
    return updated


def answer_options(spec: GeneratorSpec, generator: Generator) -> dict[str, Any]:
    """``Pipeline`` keyword arguments for ``spec``'s prompt and answerability check.

    ``prompt="auto"`` takes the prompt the registered model was measured with and, with that prompt and a generator
    that can score next-token log-probabilities (a local model), its measured decline-phrase threshold unless
    ``check_threshold`` is set; an unregistered model or an endpoint gets the default prompt and no check. An
    explicit ``check_threshold`` needs a prompt that names the decline phrase (every named prompt but
    ``"default"``)."""
    from ragloom.answerability import AnswerabilityCheck
    from ragloom.model_registry import find_spec
    from ragloom.protocols import LogprobGenerator
    from ragloom.qa_prompts import qa_prompt

    check_generator_spec(spec)
    registered = find_spec(spec.model)
    notes = registered.notes if registered is not None else {}
    name = notes.get("qa_prompt", "default") if spec.prompt == "auto" else spec.prompt
    options: dict[str, Any] = {"prompt": qa_prompt(name)}
    threshold = spec.check_threshold
    measured = "decline_check" in notes and name == notes.get("qa_prompt")  # fitted with that prompt only
    if threshold is None and measured and isinstance(generator, LogprobGenerator):
        threshold = float(notes["decline_check"])
    if threshold:
        if name == "default":
            raise ConfigError(NO_DECLINE_PHRASE)
        options["answerability"] = AnswerabilityCheck(generator, threshold=threshold, mode="decline-phrase")
    return options


def open_pipeline(
    index_dir: Path,
    *,
    spec: IndexSpec | None = None,
    with_generator: bool = False,
    generator: Generator | None = None,
    allow_download: bool = False,
    trust_remote_code: bool = False,
) -> Pipeline:
    """Open (or create, when ``spec`` is given for a new directory) the pipeline of an index directory.

    With ``with_generator`` the generator is built from ``spec.generator`` and answers with its prompt and
    answerability check (:func:`answer_options`; override settings with :func:`generator_spec_with`). A
    ``generator`` passed in answers with the default prompt and no check: the index's settings were fitted for
    the model the index names, which need not be this one.

    ``trust_remote_code`` lets the index's models run their own code; only the caller can say so (module docs)."""
    index_dir = Path(index_dir)
    if index_dir.exists() and not index_dir.is_dir():
        raise ConfigError(f"{index_dir} is a file, not an index directory; pass a directory path (new or existing)")
    existing = os.path.lexists(index_dir / SPEC_NAME)
    if spec is None:
        spec = IndexSpec.load(index_dir)
    elif not existing:
        index_dir.mkdir(parents=True, exist_ok=True)
    check_index_tree(index_dir)
    building = spec.retrievers
    if trust_remote_code:  # for this process only: the file never records it
        building = tuple(
            r if r.kind == "bm25" else replace(r, options={**r.options, "trust_remote_code": True}) for r in building
        )
    retrievers = [build_retriever(r, index_dir, allow_download) for r in building]
    if not existing:  # written only once every retriever was built: a typo in a model or store leaves no spec
        spec.save(index_dir)
    answering: dict[str, Any] = {}
    if with_generator and generator is None:
        generator = build_generator(spec.generator, allow_download)
        answering = answer_options(spec.generator, generator)
    fuser = fuser_from_config(spec.fusion) if len(retrievers) > 1 else None
    return Pipeline(
        retrievers,
        fuser=fuser,
        generator=generator,
        **answering,
        k=spec.k,
        candidates=spec.candidates,
        group_by=check_group_by(spec.group_by),
        path=index_dir,
    )
