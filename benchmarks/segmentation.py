"""Sentence segmentation on hard cases (numbers, abbreviations, list items, URLs): share of texts split exactly
right, and share of boundaries that fall inside a token, for ragloom's segmenter (pysbd + guards), its rule set
alone (pysbd not installed), pysbd alone, and the old one-regex splitter it replaced.

    python -m benchmarks segmentation
"""

from __future__ import annotations

import re
from collections.abc import Callable

# (text, the sentences it holds, whitespace stripped)
CASES: list[tuple[str, list[str]]] = [
    (
        "Revenue was $1.11 billion in 2021. It rose 1.5% from 2020.",
        ["Revenue was $1.11 billion in 2021.", "It rose 1.5% from 2020."],
    ),
    ("Net income grew 1.5% to $3.2 billion.", ["Net income grew 1.5% to $3.2 billion."]),
    (
        "Pfizer Inc. filed its 2021 Form 10-K. The U.S. market grew.",
        ["Pfizer Inc. filed its 2021 Form 10-K.", "The U.S. market grew."],
    ),
    ("Sales in the U.S. rose 4%. Europe fell.", ["Sales in the U.S. rose 4%.", "Europe fell."]),
    ("See No. 3 for details. It lists the risks.", ["See No. 3 for details.", "It lists the risks."]),
    ("Visit https://example.com/a.b?c=1 for more. Done.", ["Visit https://example.com/a.b?c=1 for more.", "Done."]),
    (
        "The filing is at www.sec.gov/cgi-bin/browse-edgar. It is public.",
        ["The filing is at www.sec.gov/cgi-bin/browse-edgar.", "It is public."],
    ),
    ("1. First item\n2. Second item\n- third item", ["1. First item", "2. Second item", "- third item"]),
    ("Key points:\n* Revenue rose.\n* Costs fell.", ["Key points:", "* Revenue rose.", "* Costs fell."]),
    (
        "Mr. Smith went to Washington D.C. on Jan. 5. Then he left.",
        ["Mr. Smith went to Washington D.C. on Jan. 5.", "Then he left."],
    ),
    ("Apple Inc. reported record sales. Shares rose.", ["Apple Inc. reported record sales.", "Shares rose."]),
    ("The court (see Fig. 2) agreed. The appeal failed!", ["The court (see Fig. 2) agreed.", "The appeal failed!"]),
    ("Is it 3.14? Yes, roughly.", ["Is it 3.14?", "Yes, roughly."]),
    ("The ratio was 0.5.", ["The ratio was 0.5."]),
    ("Dr. J. Doe, Ph.D., testified.", ["Dr. J. Doe, Ph.D., testified."]),
    ("Version 2.0.1 fixed it. Upgrade now.", ["Version 2.0.1 fixed it.", "Upgrade now."]),
    ('He said "stop." Then he left.', ['He said "stop."', "Then he left."]),
    ("Costs were $10,000.00 in total. That is high.", ["Costs were $10,000.00 in total.", "That is high."]),
    ("It grew e.g. in Asia. It fell elsewhere.", ["It grew e.g. in Asia.", "It fell elsewhere."]),
    ("The answer is 42", ["The answer is 42"]),
    (
        "The deadline for the annual report to the agency is \nJune 30 of each calendar year. It is strict.",
        ["The deadline for the annual report to the agency is \nJune 30 of each calendar year.", "It is strict."],
    ),
    (
        "Revenue grew in every region of the group,\nled by Asia. Costs fell.",
        ["Revenue grew in every region of the group,\nled by Asia.", "Costs fell."],
    ),
    ("Results\nThe model improved.", ["Results", "The model improved."]),
    (
        "## Findings of the committee in brief\nThe model improved.",
        ["## Findings of the committee in brief", "The model improved."],
    ),
    (
        "The report lists three risks for the year:\n- rates\n- currency",
        ["The report lists three risks for the year:", "- rates", "- currency"],
    ),
    (
        "Two paragraphs about the annual report here\n\nAnother one begins.",
        ["Two paragraphs about the annual report here", "Another one begins."],
    ),
]

_OLD = re.compile(r"[^.!?\n]+(?:[.!?]+|\n|$)")  # the splitter attribution used before (splits "1.11")


def _old(text: str) -> list[tuple[int, int]]:
    return [m.span() for m in _OLD.finditer(text)]


def _pysbd_only(text: str) -> list[tuple[int, int]]:
    import pysbd

    return [(s.start, s.end) for s in pysbd.Segmenter(language="en", clean=False, char_span=True).segment(text)]


def score(split: Callable[[str], list[tuple[int, int]]]) -> tuple[float, float]:
    """(share of cases split exactly right, share of boundaries inside a token)."""
    exact = inside = boundaries = 0
    for text, expected in CASES:
        spans = split(text)
        got = [text[s:e].strip() for s, e in spans if text[s:e].strip()]
        exact += got == expected
        for _, end in spans[:-1]:
            boundaries += 1
            inside += 0 < end < len(text) and not text[end].isspace() and not text[end - 1].isspace()
    return exact / len(CASES), inside / max(1, boundaries)


def main(argv: list[str] | None = None) -> None:
    from ragloom.sentences import sentence_spans

    splitters: dict[str, Callable[[str], list[tuple[int, int]]]] = {
        "ragloom (pysbd + guards)": sentence_spans,
        "ragloom rules (no pysbd)": lambda t: sentence_spans(t, use_pysbd=False),
        "pysbd alone": _pysbd_only,
        "old regex": _old,
    }
    print(f"{len(CASES)} hard cases")
    print(f"{'splitter':28s} {'exact':>7s} {'boundaries inside a token':>27s}")
    for name, split in splitters.items():
        exact, inside = score(split)
        print(f"{name:28s} {exact:7.2f} {inside:27.2f}")


if __name__ == "__main__":
    main()
