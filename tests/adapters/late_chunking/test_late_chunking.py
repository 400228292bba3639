"""Late chunking on a tiny random NomicBERT: exact spans, vectors equal to a straightforward reference pooling,
macro-window stitching, short and empty documents, RoPE scaling, the retriever contract and manifest checks."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ragloom.adapters.dense import DenseRetriever, TransformersDenseEncoder
from ragloom.adapters.late_chunking import (
    LateChunkingEncoder,
    LateChunkingRetriever,
    assign_windows,
    build_late,
    install_dynamic_ntk,
    plan_windows,
)
from ragloom.errors import ConfigError, EncoderMismatchError, InvalidInputError, RagloomWarning
from ragloom.recipes.config import RetrieverSpec
from ragloom.testing import CONTRACT_DOCUMENTS, RetrieverContract
from ragloom.types import Document

PREFIX = "search_document: "
LONG_TEXT = " ".join(
    [
        "The telescope observed a distant galaxy cluster bending light from quasars.",
        "Knead the dough for ten minutes, then let the bread rise in a warm kitchen.",
        "The court held that the statute did not apply retroactively to contracts.",
        "Page one talks about volcanoes and lava flows; page two describes glaciers carving valleys.",
        "The chair said the budget vote was held at the meeting.",
    ]
    * 3
)


@pytest.fixture(scope="module")
def encoder(tiny_nomic_dir: Path) -> LateChunkingEncoder:
    return LateChunkingEncoder(tiny_nomic_dir, window=64, overlap=8, dtype="float32", batch_size=4)


@pytest.fixture(scope="module")
def reference_model(tiny_nomic_dir: Path):  # type: ignore[no-untyped-def]
    from transformers import AutoModel, AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_nomic_dir), AutoModel.from_pretrained(tiny_nomic_dir).eval()


def _normalise(vector: np.ndarray) -> np.ndarray:
    return vector / np.linalg.norm(vector)


def reference_whole(reference_model, text: str, chunks, edges: bool = True) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Straightforward late chunking: one forward over [CLS] prefix text [SEP], mean of each chunk's tokens
    (with ``edges``, [CLS] and the prefix also in the first chunk's mean, [SEP] in the last's)."""
    import torch

    tokenizer, model = reference_model
    features = tokenizer(PREFIX + text, return_offsets_mapping=True, return_tensors="pt")
    offsets = features.pop("offset_mapping")[0].numpy()
    with torch.inference_mode():
        hidden = model(**features).last_hidden_state[0].float().numpy()
    is_text = (offsets[:, 1] > len(PREFIX)) & (offsets[:, 1] > offsets[:, 0])
    first_text, last_text = np.flatnonzero(is_text)[[0, -1]]
    rows = []
    for i, chunk in enumerate(chunks):
        a, b = chunk.start + len(PREFIX), chunk.end + len(PREFIX)
        mask = (offsets[:, 0] < b) & (offsets[:, 1] > a) & is_text
        if edges and i == 0:
            mask[:first_text] = True
        if edges and i == len(chunks) - 1:
            mask[last_text + 1 :] = True
        rows.append(_normalise(hidden[mask].mean(axis=0)))
    return np.stack(rows)


def test_tiny_model_loads_through_ragloom(encoder: LateChunkingEncoder) -> None:
    assert type(encoder.dense.model).__name__ == "NomicBertModel"
    assert len(encoder.dense.tokenizer) == encoder.dense.model.config.vocab_size == 180
    # nomic_bert defaults: the task prefixes, and a warning-free window under the trained 2048 tokens
    assert encoder.dense.query_prefix == "search_query: " and encoder.dense.document_prefix == PREFIX
    assert encoder.dim == 32 and encoder.settings.window == 64
    default = LateChunkingEncoder(encoder=encoder.dense)
    assert default.settings.window == 512 and default.settings.overlap == 64, "the model's limit is below 1024"


# -- macro-window planning (pure) -----------------------------------------------------------------------------
def _chunk_spans(n_tokens: int, size: int, step: int) -> list[tuple[int, int]]:
    spans, start = [], 0
    while True:
        spans.append((start, min(start + size, n_tokens)))
        if start + size >= n_tokens:
            return spans
        start += step


@settings(max_examples=200, deadline=None)
@given(
    n_tokens=st.integers(1, 3000),
    size=st.integers(1, 64),
    step_back=st.integers(0, 16),
    capacity=st.integers(100, 700),
    overlap=st.integers(0, 16),
)
def test_windows_hold_every_chunk_with_context(
    n_tokens: int, size: int, step_back: int, capacity: int, overlap: int
) -> None:
    size = min(size, capacity - 2 * overlap)
    spans = _chunk_spans(n_tokens, size, max(1, size - step_back))
    windows = plan_windows(spans, n_tokens, capacity, overlap)
    assert windows[0][0] == 0 and windows[-1][1] == n_tokens
    assert all(0 < b - a <= capacity for a, b in windows)
    assert all(b1 - a2 >= overlap for (_, b1), (a2, _) in zip(windows, windows[1:])), "windows overlap"
    assert [a for a, _ in windows] == sorted({a for a, _ in windows}), "windows advance"
    owners = assign_windows(spans, windows, n_tokens)
    for (s, e), owner in zip(spans, owners):
        a, b = windows[owner]
        assert a <= s and e <= b
        assert a == 0 or s - a >= overlap, "left context"
        assert b == n_tokens or b - e >= overlap, "right context"


def test_short_document_is_one_window() -> None:
    assert plan_windows([(0, 5)], 5, 100, 10) == [(0, 5)]
    assert assign_windows([(0, 5)], [(0, 5)], 5) == [0]


def test_chunk_goes_to_the_window_with_most_context() -> None:
    windows = [(0, 100), (60, 160), (100, 200)]
    # chunk 70..90: margin 10 in window 0, 10 (left) / 70 (right) -> 10 in window 1: tie, earliest wins
    # chunk 110..130: window 1 gives 50/30 -> 30, window 2 gives 10/inf -> 10
    assert assign_windows([(70, 90), (110, 130), (190, 200)], windows, 200) == [0, 1, 2]


# -- spans and vectors ----------------------------------------------------------------------------------------
def test_spans_cover_the_text_and_match_naive_chunks(tiny_nomic_dir: Path, encoder: LateChunkingEncoder) -> None:
    doc = Document(id="long", text=LONG_TEXT)
    late = LateChunkingRetriever(encoder, chunk_size=12, overlap=3)
    chunks = late.add([doc])
    assert len(chunks) > 5
    covered = np.zeros(len(doc.text), dtype=bool)
    for chunk in chunks:
        assert doc.text[chunk.start : chunk.end] == chunk.text
        covered[chunk.start : chunk.end] = True
    assert all(covered[i] for i, c in enumerate(doc.text) if not c.isspace()), "every character is in a chunk"
    naive = DenseRetriever(encoder.dense, chunk_size=12, overlap=3)
    assert [c.id for c in naive.add([doc])] == [c.id for c in chunks], "same chunks as naive chunking"


@pytest.mark.parametrize("edges", [True, False])
def test_chunk_vectors_equal_pooled_token_states(encoder: LateChunkingEncoder, reference_model, edges: bool) -> None:  # type: ignore[no-untyped-def]
    late = LateChunkingEncoder(encoder=encoder.dense, window=64, overlap=8, edge_tokens=edges)
    doc = Document(id="d", text=LONG_TEXT[:240])
    chunks = LateChunkingRetriever(late, chunk_size=12, overlap=3).chunker.chunk(doc)
    prefix_ids, ids, _ = late.document_tokens(doc.text)
    assert len(prefix_ids) + len(ids) + 2 <= 64, "fits one window"
    got = late.embed_chunks([(doc, chunks)])
    assert got.shape == (len(chunks), 32) and got.dtype == np.float32
    np.testing.assert_allclose(got, reference_whole(reference_model, doc.text, chunks, edges), atol=1e-5)


def test_macro_windows_stitch(encoder: LateChunkingEncoder, reference_model) -> None:  # type: ignore[no-untyped-def]
    import torch

    tokenizer, model = reference_model
    doc = Document(id="long", text=LONG_TEXT)
    chunks = LateChunkingRetriever(encoder, chunk_size=12, overlap=3).chunker.chunk(doc)
    prefix_ids, ids, offsets = encoder.document_tokens(doc.text)
    spans = encoder.chunk_token_spans(chunks, offsets)
    windows = plan_windows(spans, len(ids), 64 - 2 - len(prefix_ids), 8)
    owners = assign_windows(spans, windows, len(ids))
    assert len(windows) >= 3 and len(set(owners)) >= 3, "several windows are used"
    expected = []
    for (s, e), owner in zip(spans, owners):
        a, b = windows[owner]
        window_ids = [tokenizer.cls_token_id, *prefix_ids, *ids[a:b], tokenizer.sep_token_id]
        assert len(window_ids) <= 64
        with torch.inference_mode():
            hidden = model(input_ids=torch.tensor([window_ids])).last_hidden_state[0].numpy()
        first = 0 if len(expected) == 0 else 1 + len(prefix_ids) + s - a  # edge tokens: [CLS] and prefix
        stop = len(window_ids) if len(expected) == len(spans) - 1 else 1 + len(prefix_ids) + e - a  # and [SEP]
        expected.append(_normalise(hidden[first:stop].mean(axis=0)))
    got = encoder.embed_chunks([(doc, chunks)])
    np.testing.assert_allclose(got, np.stack(expected), atol=1e-5)
    # with a window holding the whole document, the same chunks get whole-document context instead
    wide = LateChunkingEncoder(encoder=encoder.dense, window=512, overlap=8)
    np.testing.assert_allclose(
        wide.embed_chunks([(doc, chunks)]), reference_whole(reference_model, doc.text, chunks), atol=1e-5
    )


def test_batching_does_not_change_vectors(encoder: LateChunkingEncoder) -> None:
    docs = [Document(id="long", text=LONG_TEXT), Document(id="short", text="the cat sat"), *CONTRACT_DOCUMENTS]
    chunker = LateChunkingRetriever(encoder, chunk_size=12, overlap=3).chunker
    pairs = [(d, chunker.chunk(d)) for d in docs]
    together = encoder.embed_chunks(pairs)
    alone = np.concatenate([encoder.embed_chunks([pair]) for pair in pairs])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_document_shorter_than_a_chunk(encoder: LateChunkingEncoder, reference_model) -> None:  # type: ignore[no-untyped-def]
    doc = Document(id="tiny", text="The cat sat.")
    retriever = LateChunkingRetriever(encoder, chunk_size=12, overlap=3)
    (chunk,) = retriever.add([doc])
    assert (chunk.start, chunk.end) == (0, len(doc.text))
    got = encoder.embed_chunks([(doc, [chunk])])
    np.testing.assert_allclose(got, reference_whole(reference_model, doc.text, [chunk]), atol=1e-5)
    # one chunk with its edge tokens is the whole input: exactly the naive (dense) vector
    np.testing.assert_allclose(got, encoder.dense.encode_documents([doc.text]), atol=1e-5)
    np.testing.assert_allclose(encoder.encode_documents([doc.text]), got, atol=1e-6)
    assert retriever.search("cat", k=3)[0].chunk == chunk
    text_only = LateChunkingEncoder(encoder=encoder.dense, window=64, overlap=8, edge_tokens=False)
    plain = text_only.embed_chunks([(doc, [chunk])])
    np.testing.assert_allclose(plain, reference_whole(reference_model, doc.text, [chunk], edges=False), atol=1e-5)
    assert float(plain[0] @ got[0]) < 0.99999


def test_empty_document(encoder: LateChunkingEncoder) -> None:
    retriever = LateChunkingRetriever(encoder, chunk_size=12, overlap=3)
    empty, blank = Document(id="empty", text=""), Document(id="blank", text=" \n\t ")
    with pytest.warns(RagloomWarning, match="no text"):
        assert retriever.add([empty, blank]) == []
    assert len(retriever) == 0 and retriever.search("anything", k=3) == []
    assert encoder.embed_chunks([(empty, [])]).shape == (0, 32)
    with pytest.warns(RagloomWarning):
        chunks = retriever.add([empty, Document(id="cat", text="the cat sat"), blank])
    assert [c.doc_id for c in chunks] == ["cat"] and len(retriever) == 1
    with pytest.raises(InvalidInputError):
        encoder.encode_documents(["  "])


def test_queries_encode_like_the_dense_encoder(encoder: LateChunkingEncoder) -> None:
    queries = ["galaxy lensing", "bread"]
    np.testing.assert_array_equal(encoder.encode_queries(queries), encoder.dense.encode_queries(queries))


# -- RoPE scaling ---------------------------------------------------------------------------------------------
def test_dynamic_ntk_matches_transformers_and_ignores_history(tiny_nomic_dir: Path) -> None:
    import torch
    from transformers import AutoConfig, AutoModel

    model = AutoModel.from_pretrained(tiny_nomic_dir).eval()
    plain = AutoModel.from_pretrained(tiny_nomic_dir).eval()
    install_dynamic_ntk(model, trained_context=40, factor=2.0)
    short, long = torch.randint(5, 130, (1, 30)), torch.randint(5, 130, (1, 100))
    config = AutoConfig.from_pretrained(tiny_nomic_dir)
    config.rope_parameters = {"rope_type": "dynamic", "rope_theta": 1000.0, "factor": 2.0}
    config.max_position_embeddings = 40
    with torch.inference_mode():
        ours_long = model(input_ids=long).last_hidden_state
        ours_short = model(input_ids=short).last_hidden_state  # after a long input: no cached scaling
        native = AutoModel.from_pretrained(tiny_nomic_dir, config=config).eval()
        torch.testing.assert_close(ours_long, native(input_ids=long).last_hidden_state)
        torch.testing.assert_close(ours_short, plain(input_ids=short).last_hidden_state)
        assert not torch.allclose(ours_long, plain(input_ids=long).last_hidden_state)


def test_rope_factor_sets_window_and_fingerprint(tiny_nomic_dir: Path) -> None:
    enc = LateChunkingEncoder(tiny_nomic_dir, rope_factor=2.0, trained_context=128, dtype="float32")
    assert enc.settings.overlap == 32, "default overlap: min(128, window // 8)"
    assert enc.settings.window == 256
    assert enc.fingerprint["late_chunking"] == {
        "window": 256,
        "overlap": 32,
        "rope_factor": 2.0,
        "trained_context": 128,
        "edge_tokens": True,
    }
    with pytest.warns(RagloomWarning, match="trained on"):
        LateChunkingEncoder(encoder=enc.dense, window=256, trained_context=128)


def test_bad_settings_are_config_errors(tiny_nomic_dir: Path, tiny_bert_dir: Path) -> None:
    with pytest.raises(ConfigError, match="rotary"):
        LateChunkingEncoder(tiny_bert_dir, rope_factor=2.0, trained_context=32, dtype="float32")
    with pytest.raises(ConfigError, match="exceeds the model's limit"):
        LateChunkingEncoder(tiny_nomic_dir, window=4096, dtype="float32")
    with pytest.raises(ConfigError, match="overlap"):
        LateChunkingEncoder(tiny_nomic_dir, window=32, overlap=16, dtype="float32")
    enc = LateChunkingEncoder(tiny_nomic_dir, window=64, overlap=8, dtype="float32")
    with pytest.raises(ConfigError, match="capacity"):
        LateChunkingRetriever(enc, chunk_size=60)
    with pytest.raises(ConfigError, match="LateChunkingEncoder"):
        LateChunkingRetriever(enc.dense)  # type: ignore[arg-type]


# -- the retriever ------------------------------------------------------------------------------------------------
class TestLateMemory(RetrieverContract):
    store = "memory"

    @pytest.fixture(autouse=True)
    def _encoders(self, encoder: LateChunkingEncoder, tiny_nomic_other_dir: Path) -> None:
        self.encoder = encoder
        self.other_dir = tiny_nomic_other_dir

    def make_retriever(self, path: Path) -> LateChunkingRetriever:
        return LateChunkingRetriever(self.encoder, path, store=self.store, chunk_size=24, overlap=4)

    def make_mismatched_retriever(self, path: Path) -> LateChunkingRetriever:
        other = LateChunkingEncoder(self.other_dir, window=64, overlap=8, dtype="float32")
        return LateChunkingRetriever(other, path, store=self.store, chunk_size=24, overlap=4)


class TestLateChroma(TestLateMemory):
    store = "chroma"


def test_naive_and_late_indexes_never_mix(tmp_path: Path, encoder: LateChunkingEncoder) -> None:
    naive_dir, late_dir = tmp_path / "naive", tmp_path / "late"
    with DenseRetriever(encoder.dense, naive_dir, store="memory", chunk_size=24, overlap=4) as naive:
        naive.add(list(CONTRACT_DOCUMENTS))
    with pytest.raises(EncoderMismatchError, match="late"):
        LateChunkingRetriever(encoder, naive_dir, chunk_size=24, overlap=4)
    with LateChunkingRetriever(encoder, late_dir, chunk_size=24, overlap=4) as late:
        late.add(list(CONTRACT_DOCUMENTS))
        assert late.manifest is not None and late.manifest.extra["vectors"] == "late-chunked"
    with pytest.raises(EncoderMismatchError):
        DenseRetriever(encoder.dense, late_dir, store="memory", chunk_size=24, overlap=4)
    wider = LateChunkingEncoder(encoder=encoder.dense, window=128, overlap=8)
    with pytest.raises(EncoderMismatchError, match="window"):
        LateChunkingRetriever(wider, late_dir, chunk_size=24, overlap=4)


def test_builder(tmp_path: Path, tiny_nomic_dir: Path) -> None:
    spec = RetrieverSpec(
        name="late",
        kind="late",
        model=str(tiny_nomic_dir),
        store="memory",
        chunk_size=24,
        options={"window": 64, "overlap": 8, "dtype": "float32"},
    )
    with build_late(spec, tmp_path / "late", False) as retriever:
        assert isinstance(retriever, LateChunkingRetriever)
        assert retriever.add([CONTRACT_DOCUMENTS[0]]) and retriever.chunker.chunk_size == 24
    from ragloom.recipes.config import DEFAULT_MODELS, build_retriever

    assert DEFAULT_MODELS["late"] == "nomic"
    with build_retriever(spec, tmp_path / "index") as registered:  # the "late" kind resolves through the registry
        assert isinstance(registered, LateChunkingRetriever) and registered.path == tmp_path / "index" / "late"
    bad = RetrieverSpec(kind="late", model=str(tiny_nomic_dir), options={"windw": 64})
    with pytest.raises(ConfigError, match="windw"):
        build_late(bad, None, False)


def test_shared_encoder_and_no_pooling_warning(tiny_nomic_dir: Path) -> None:
    dense = TransformersDenseEncoder(tiny_nomic_dir, dtype="float32", query_prefix="q: ", document_prefix="")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        late = LateChunkingEncoder(encoder=dense, window=64, overlap=8)
    assert late.dense is dense and late.fingerprint["query_prefix"] == "q: "
    assert late.document_tokens("the cat")[0] == [], "no prefix tokens without a document prefix"


# -- the real model ---------------------------------------------------------------------------------------------
@pytest.mark.realmodel
def test_nomic_late_chunking_matches_reference(nomic_dir: Path) -> None:
    import torch

    enc = LateChunkingEncoder(nomic_dir, dtype="float32")
    assert enc.settings.window == 1024 and enc.settings.overlap == 128 and enc.dense.document_prefix == PREFIX
    doc = Document(id="d", text=LONG_TEXT)
    chunks = LateChunkingRetriever(enc, chunk_size=32, overlap=4).chunker.chunk(doc)
    got = enc.embed_chunks([(doc, chunks)])
    reference = reference_whole((enc.dense.tokenizer, enc.dense.model), doc.text, chunks)
    np.testing.assert_allclose(got, reference, atol=1e-4)
    with torch.inference_mode():
        naive = enc.dense.encode_documents([c.text for c in chunks])
    assert np.all(np.sum(got * naive, axis=1) > 0.5), "late vectors stay close to the naive ones"


# -- the recipe -------------------------------------------------------------------------------------------------
def test_longdoc_recipe(tmp_path: Path, tiny_nomic_dir: Path) -> None:
    from ragloom.recipes.config import IndexSpec
    from ragloom.recipes.longdoc_qa import build_longdoc_qa, longdoc_spec

    spec = longdoc_spec(encoder=str(tiny_nomic_dir), hybrid=True, window=4096, rope_factor=2.0)
    assert [r.kind for r in spec.retrievers] == ["late", "bm25"]
    assert spec.retrievers[0].options == {"window": 4096, "rope_factor": 2.0}
    assert spec.retrievers[0].chunk_size == spec.retrievers[1].chunk_size == 256
    settings = {"encoder": str(tiny_nomic_dir), "store": "memory", "chunk_size": 24, "window": 64}
    with build_longdoc_qa(tmp_path / "index", with_generator=False, **settings) as pipeline:
        pipeline.ingest([Document(id="long", text=LONG_TEXT), *CONTRACT_DOCUMENTS])
        hits = pipeline.retrieve("budget vote meeting", k=3)
        assert hits and all(
            h.chunk.text == LONG_TEXT[h.chunk.start : h.chunk.end] for h in hits if h.chunk.doc_id == "long"
        )
    reopened = IndexSpec.load(tmp_path / "index")
    assert reopened.retrievers[0].options == {"window": 64}
    with build_longdoc_qa(
        tmp_path / "index", with_generator=False, window=128
    ) as again:  # the index's own settings win
        assert again.retrievers[0].encoder.settings.window == 64  # type: ignore[attr-defined]
