"""The answer prompt and answerability check an index's generator settings choose (CLI flags, registry defaults)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ragloom.adapters.generators.local import TransformersGenerator
from ragloom.answerability import AnswerabilityCheck
from ragloom.errors import ConfigError, IndexCorruptError
from ragloom.model_registry import find_spec
from ragloom.prompting import PromptBuilder
from ragloom.qa_prompts import DETAILED_PROMPT, GUIDED_PROMPT, qa_prompt
from ragloom.recipes.cli import app
from ragloom.recipes.config import GeneratorSpec, IndexSpec, answer_options, generator_spec_with

runner = CliRunner()


@pytest.fixture(scope="module")
def tiny_generator(tiny_llm_dir: Path) -> TransformersGenerator:
    return TransformersGenerator(tiny_llm_dir, max_new_tokens=4)


@pytest.fixture()
def index(tmp_path: Path, tiny_bert_dir: Path) -> Path:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "space.txt").write_text("The telescope observed a distant galaxy cluster bending light from quasars.")
    (docs / "bread.md").write_text("# Bread\n\nKnead the dough for ten minutes, then let the bread rise.")
    folder = tmp_path / "index"
    args = ["ingest", str(docs), "--index", str(folder), "--model", str(tiny_bert_dir), "--store", "memory"]
    result = runner.invoke(app, [*args, "--offline"])
    assert result.exit_code == 0, result.output
    return folder


def test_registered_qwen_models_answer_with_the_measured_prompt_and_check(
    tiny_generator: TransformersGenerator,
) -> None:
    for alias in ("qwen2.5-coder-1.5b", "qwen2.5-coder-0.5b"):
        registered = find_spec(alias)
        assert registered is not None
        options = answer_options(GeneratorSpec(kind="llamacpp", model=alias), tiny_generator)
        assert options["prompt"] is qa_prompt(registered.notes["qa_prompt"])
        check = options.get("answerability")
        if "decline_check" in registered.notes:
            assert isinstance(check, AnswerabilityCheck) and check.mode == "decline-phrase"
            assert check.threshold == float(registered.notes["decline_check"])
        else:
            assert check is None
    # the caller's choices win: another prompt, no check
    options = answer_options(
        GeneratorSpec(kind="llamacpp", model="qwen2.5-coder-1.5b", prompt="guided", check_threshold=0.0),
        tiny_generator,
    )
    assert options == {"prompt": GUIDED_PROMPT}


def test_unregistered_models_keep_the_default_prompt_and_no_check(tiny_generator: TransformersGenerator) -> None:
    options = answer_options(GeneratorSpec(model="some/other-model"), tiny_generator)
    assert options == {"prompt": PromptBuilder()}
    chosen = answer_options(GeneratorSpec(model="x", prompt="detailed", check_threshold=0.9), tiny_generator)
    assert chosen["prompt"] is DETAILED_PROMPT and chosen["answerability"].threshold == 0.9


def test_bad_settings_are_refused(tiny_generator: TransformersGenerator, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="Unknown prompt 'chatty'"):
        answer_options(GeneratorSpec(prompt="chatty"), tiny_generator)
    with pytest.raises(ConfigError, match="between 0 and 1"):
        answer_options(GeneratorSpec(check_threshold=1.5), tiny_generator)
    with pytest.raises(ConfigError, match="default prompt names none"):  # nothing to read the decline phrase from
        answer_options(GeneratorSpec(model="x", prompt="default", check_threshold=0.9), tiny_generator)
    # an index folder is data: a bad value there is a corrupt index, named as such
    IndexSpec(generator=GeneratorSpec(prompt="guided")).save(tmp_path)
    spec_file = tmp_path / "ragloom.json"
    data = json.loads(spec_file.read_text())
    data["generator"]["check_threshold"] = "high"
    spec_file.write_text(json.dumps(data))
    with pytest.raises(IndexCorruptError, match="check_threshold"):
        IndexSpec.load(tmp_path)


def test_ask_declines_under_the_check_threshold(index: Path, tiny_llm_dir: Path) -> None:
    base = ["ask", "What did the telescope observe?", "--index", str(index), "--llm", str(tiny_llm_dir), "--json"]
    # 1 - P(the decline phrase's first token) is below 1 for any model: threshold 1 always declines, unanswered
    result = runner.invoke(app, [*base, "--prompt", "guided", "--check-threshold", "1", "--offline"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["verdict"] == "declined"
    assert payload["answer"].startswith("I could not find the answer in the indexed documents.")
    assert "judged by the model" in payload["answer"]
    assert 0.0 <= payload["timings"]["answerable_p"] < 1.0
    # threshold 0: no check, the model answers
    result = runner.invoke(app, [*base, "--prompt", "guided", "--check-threshold", "0", "--offline"])
    assert result.exit_code == 0, result.output
    assert "answerable_p" not in json.loads(result.stdout)["timings"]


def test_ask_refuses_a_bad_prompt_before_loading_models(index: Path) -> None:
    result = runner.invoke(app, ["ask", "q", "--index", str(index), "--llm", "/nonexistent", "--prompt", "chatty"])
    assert result.exit_code == 2
    assert "Unknown prompt 'chatty'" in result.output
    args = ["--llm", "/nonexistent", "--prompt", "default", "--check-threshold", "0.5"]
    result = runner.invoke(app, ["ask", "q", "--index", str(index), *args])
    assert result.exit_code == 2
    assert "default prompt names none" in result.output


def test_tune_check_fits_and_stores_the_threshold_that_ask_then_uses(
    tmp_path: Path, tiny_bert_dir: Path, tiny_llm_dir: Path, topic_sentences: tuple[str, ...]
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    for i, text in enumerate(topic_sentences[:6]):
        (docs / f"topic{i}.txt").write_text(f"{text} {text}")
    index = tmp_path / "index"
    ingest = ["ingest", str(docs), "--index", str(index), "-r", "dense", "-r", "bm25", "--store", "memory"]
    result = runner.invoke(app, [*ingest, "--model", str(tiny_bert_dir), "--chunk-size", "16", "--offline"])
    assert result.exit_code == 0, result.output
    tune = ["tune-check", "--index", str(index), "--llm", str(tiny_llm_dir), "--prompt", "guided", "-k", "3"]
    args = [*tune, "--questions", "spans", "--sample", "12", "--offline"]
    dry = runner.invoke(app, [*args, "--dry-run", "--json"])
    assert dry.exit_code == 0, dry.output
    report = json.loads(dry.stdout)
    assert report["written"] is False and report["generator"]["prompt"] == "guided"
    assert "check_threshold" not in json.loads((index / "ragloom.json").read_text())["generator"] or (
        json.loads((index / "ragloom.json").read_text())["generator"]["check_threshold"] is None
    )
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "Check threshold" in result.output and "Stored in" in result.output
    stored = IndexSpec.load(index).generator
    assert stored.check_threshold == report["generator"]["check_threshold"]  # seeded: the same fit
    assert stored.prompt == "guided" and stored.model == str(tiny_llm_dir)
    assert stored.check_fit["pairs"] >= 5 and stored.check_fit["generator"].startswith("salient-spans")
    # ask now checks with the stored threshold, no flags needed
    asked = runner.invoke(app, ["ask", "What do glaciers carve?", "--index", str(index), "--json", "--offline"])
    assert asked.exit_code == 0, asked.output
    assert "answerable_p" in json.loads(asked.stdout)["timings"]


def test_tune_check_refuses_an_endpoint_or_the_default_prompt(index: Path, tiny_llm_dir: Path) -> None:
    result = runner.invoke(app, ["tune-check", "--index", str(index), "--generator", "openai", "--llm", "m"])
    assert result.exit_code == 2 and "local model's log-probabilities" in result.output
    args = ["tune-check", "--index", str(index), "--llm", str(tiny_llm_dir), "--prompt", "default", "--offline"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "default prompt names none" in result.output


def test_another_model_drops_the_index_s_fitted_check() -> None:
    fitted = GeneratorSpec(kind="llamacpp", model="a", prompt="guided", check_threshold=0.9, check_fit={"pairs": 9})
    assert generator_spec_with(fitted) == fitted
    assert generator_spec_with(fitted, check_threshold=0.5).check_threshold == 0.5
    other = generator_spec_with(fitted, model="b")
    assert (other.prompt, other.check_threshold, other.check_fit) == ("auto", None, {})
    assert generator_spec_with(fitted, model="b", prompt="detailed").prompt == "detailed"


def test_a_generator_passed_in_keeps_the_default_prompt_not_the_index_s_fitted_check(
    index: Path, tiny_generator: TransformersGenerator, tiny_llm_dir: Path
) -> None:
    """The index's prompt and threshold were fitted for the model it names; a caller's own generator (here an
    endpoint, which has no log-probabilities) is not given them, so opening never fails on them."""
    from ragloom.adapters.generators.openai_http import OpenAICompatibleGenerator
    from ragloom.recipes.config import open_pipeline

    spec = IndexSpec.load(index)
    fitted = GeneratorSpec(kind="llamacpp", model="qwen2.5-coder-1.5b", prompt="guided", check_threshold=0.9)
    dataclasses.replace(spec, generator=fitted).save(index)
    endpoint = OpenAICompatibleGenerator("m", base_url="http://127.0.0.1:9/v1")
    for generator in (endpoint, tiny_generator):
        with open_pipeline(index, generator=generator) as pipeline:
            assert pipeline.prompt == PromptBuilder() and pipeline.answerability is None
    # built from the spec, the generator answers with the spec's prompt and check
    local = dataclasses.replace(fitted, kind="local", model=str(tiny_llm_dir))
    with open_pipeline(index, spec=dataclasses.replace(spec, generator=local), with_generator=True) as pipeline:
        assert pipeline.prompt is GUIDED_PROMPT and pipeline.answerability is not None
        assert pipeline.answerability.threshold == 0.9
