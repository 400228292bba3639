"""The visual document-QA recipe: PDFs → pages → multi-vector index (fused with dense text) → cited answer."""

from __future__ import annotations

from pathlib import Path

from ragloom.prompting import PromptBuilder
from ragloom.recipes.visual_docqa import build_visual_docqa


def test_visual_docqa_end_to_end(
    tmp_path: Path, tiny_colpali_dir: Path, tiny_bert_dir: Path, tiny_llm_dir: Path, small_pdfs: list[Path]
) -> None:
    index = tmp_path / "index"
    options = {"dtype": "float32", "device": "cpu"}
    with build_visual_docqa(
        index, model=str(tiny_colpali_dir), text_model=str(tiny_bert_dir), llm=str(tiny_llm_dir), dpi=24,
        pool_factor=2, options=options, max_new_tokens=16,
    ) as pipeline:  # fmt: skip
        pipeline.prompt = PromptBuilder(context_tokens=150)  # the tiny LLM's window is 512 tokens
        report = pipeline.ingest([small_pdfs[0].parent])
        assert report.ok and len(report.documents) == 3
        assert report.chunks["pages"] == 6
        hits = pipeline.retrieve("what did the court hold", k=4)
        assert hits and all(h.chunk.page in (1, 2) for h in hits)
        assert len({(h.chunk.doc_id, h.chunk.page) for h in hits}) == len(hits)  # one hit per page
        assert any("pages#" in h.explanation for h in hits)
        answer = pipeline.ask("what did the court hold")
        assert answer.context and all(h.chunk.page for h in answer.context)
    with build_visual_docqa(index) as reopened:  # the index remembers its models and settings
        assert len(reopened.retrievers[0].doc_ids()) == 3
