"""A grounded-QA prompt that small instruct models (Qwen2.5-Coder 0.5B/1.5B) follow.

With :data:`ragloom.prompting.DEFAULT_SYSTEM_PROMPT` alone, the Qwen2.5-Coder models mostly reply with a bare
``[1]``: the passages open with ``[1] (source)`` and the rules sit far above them, so the model continues the
pattern it sees last. :data:`GUIDED_PROMPT` puts the rules after the passages, right before the question (a
complete sentence, the ``[n]`` marker at its end, an exact decline phrase), and shows one worked turn in the
model's own chat template (a user turn with two passages, the assistant's cited sentence). Measured on ClapNQ in
docs/generators.md.

    from ragloom.qa_prompts import GUIDED_PROMPT
    pipeline = Pipeline([retriever], generator=generator, prompt=GUIDED_PROMPT)
"""

from __future__ import annotations

from ragloom.errors import ConfigError
from ragloom.prompting import PromptBuilder
from ragloom.types import Message

__all__ = [
    "DECLINE_PHRASE",
    "DETAILED_INSTRUCTIONS",
    "DETAILED_PROMPT",
    "GUIDED_INSTRUCTIONS",
    "GUIDED_PROMPT",
    "GUIDED_SYSTEM_PROMPT",
    "PASSAGE_WORDS_INSTRUCTIONS",
    "PASSAGE_WORDS_PROMPT",
    "QA_PROMPTS",
    "qa_prompt",
]

DECLINE_PHRASE = "I don't know based on the provided documents."

GUIDED_SYSTEM_PROMPT = "You answer questions using only the numbered passages the user gives you, and you cite them."

GUIDED_INSTRUCTIONS = (
    "Answer the question using only the passages above. Write one or two complete sentences. End each sentence "
    "with the number of the passage it comes from in square brackets, like [2]. If the passages do not contain "
    f"the answer, reply exactly: {DECLINE_PHRASE}"
)

_EXAMPLE_CONTEXT = (
    "Context passages:\n\n"
    "[1] (Golden Gate Bridge)\nThe Golden Gate Bridge is a suspension bridge in San Francisco. It opened to "
    "traffic on May 27, 1937.\n\n"
    "[2] (Brooklyn Bridge)\nThe Brooklyn Bridge in New York City opened in 1883."
)

GUIDED_EXAMPLES = (
    Message("user", f"{_EXAMPLE_CONTEXT}\n\n{GUIDED_INSTRUCTIONS}\n\nQuestion: when did the golden gate bridge open"),
    Message("assistant", "The Golden Gate Bridge opened to traffic on May 27, 1937 [1]."),
)

GUIDED_PROMPT = PromptBuilder(
    system_prompt=GUIDED_SYSTEM_PROMPT, instructions=GUIDED_INSTRUCTIONS, examples=GUIDED_EXAMPLES
)
"""Rules after the passages and one worked, cited answer: the prompt for the registry's small Qwen models."""

PASSAGE_WORDS_INSTRUCTIONS = (
    "Answer the question using only the passages above, in one to three sentences that keep the passage's own "
    "words: copy the sentences that answer the question rather than rephrasing them. End each sentence with the "
    "number of the passage it comes from in square brackets, like [2]. If the passages do not contain the answer, "
    f"reply exactly: {DECLINE_PHRASE}"
)

PASSAGE_WORDS_PROMPT = PromptBuilder(
    system_prompt=GUIDED_SYSTEM_PROMPT, instructions=PASSAGE_WORDS_INSTRUCTIONS, examples=GUIDED_EXAMPLES
)
""":data:`GUIDED_PROMPT` asking for the answer in the passage's own words (1-3 sentences), for long-form answers.
Its system prompt, worked turn and passages are the guided prompt's, so a prompt cache serves both."""

DETAILED_INSTRUCTIONS = (
    "Answer the question using only the passages above, in two or three complete sentences: first the answer, "
    "then the details the passages give about it. End each sentence with the number of the passage it comes from "
    f"in square brackets, like [2]. If the passages do not contain the answer, reply exactly: {DECLINE_PHRASE}"
)

DETAILED_EXAMPLES = (
    Message("user", f"{_EXAMPLE_CONTEXT}\n\n{DETAILED_INSTRUCTIONS}\n\nQuestion: when did the golden gate bridge open"),
    Message(
        "assistant",
        "The Golden Gate Bridge opened to traffic on May 27, 1937 [1]. It is a suspension bridge in San Francisco [1].",
    ),
)

DETAILED_PROMPT = PromptBuilder(
    system_prompt=GUIDED_SYSTEM_PROMPT, instructions=DETAILED_INSTRUCTIONS, examples=DETAILED_EXAMPLES
)
""":data:`GUIDED_PROMPT` asking for the answer and the passages' details about it (2-3 sentences), with a worked
turn of that length: long-form answers, as ClapNQ's gold answers are (~50 words)."""

QA_PROMPTS: dict[str, PromptBuilder] = {
    "default": PromptBuilder(),
    "guided": GUIDED_PROMPT,
    "detailed": DETAILED_PROMPT,
    "words": PASSAGE_WORDS_PROMPT,
}
"""The grounded-QA prompts by name (``ragloom ask --prompt``; a registered model names its own in the registry)."""


def qa_prompt(name: str) -> PromptBuilder:
    """The prompt :data:`QA_PROMPTS` holds under ``name``; an unknown name is refused with the known ones."""
    try:
        return QA_PROMPTS[name]
    except KeyError:
        raise ConfigError(f"Unknown prompt {name!r}; use one of: {', '.join(QA_PROMPTS)}") from None
