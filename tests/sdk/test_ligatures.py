"""Ligature repair: letters a PDF's text layer lost in fi/fl glyphs come back; nothing else changes."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ragloom.loaders.ligatures import CLEAR, WideGlyph, english_frequency, repair_ligatures, wide_f_glyphs

SAMPLE = Path(__file__).resolve().parents[2] / "recipes" / "sample_data"
WORDS = {
    "significant": 900,
    "filed": 500,
    "fled": 400,
    "reflect": 300,
    "official": 200,
    "of": 9000,
    "off": 800,
    "for": 5000,
    "flor": 10,
}


def freq(word: str) -> int:
    return WORDS.get(word, 0)


def glyphs_at(text: str, *words: str, excess: float = 1.38) -> list[WideGlyph]:
    """A wide glyph at the last "f" of each word's first occurrence."""
    out = []
    for word in words:
        start = text.index(word)
        out.append(WideGlyph(start + word.rindex("f"), excess))
    return out


def test_the_most_frequent_known_word_wins_and_only_glyph_letters_change() -> None:
    text = "a signifcant case was fled; it may refect offcial policy."
    repaired, changed = repair_ligatures(text, glyphs_at(text, "signifcant", "fled", "refect", "offcial"), freq)
    assert repaired == "a significant case was filed; it may reflect official policy."
    assert changed == 4


def test_a_known_word_with_a_barely_wide_glyph_is_kept_but_a_clear_ligature_is_not() -> None:
    assert repair_ligatures("they fled", glyphs_at("they fled", "fled", excess=1.12), freq) == ("they fled", 0)
    assert repair_ligatures("they fled", glyphs_at("they fled", "fled", excess=CLEAR), freq)[0] == "they filed"


def test_an_unknown_word_becomes_fi_only_when_the_glyph_is_clearly_a_ligature() -> None:
    assert repair_ligatures("bona fde", glyphs_at("bona fde", "fde"), freq)[0] == "bona fide"
    assert repair_ligatures("bona fde", glyphs_at("bona fde", "fde", excess=1.1), freq)[0] == "bona fde"


def test_a_word_split_by_pdfium_s_hyphen_mark_is_judged_whole() -> None:
    text = "was sig\x02nifcant"  # PDFium's mark of "sig-\nnificant"; the loader drops it afterwards
    assert repair_ligatures(text, glyphs_at(text, "nifcant"), freq)[0] == "was sig\x02nificant"


def test_glyphs_that_are_not_an_f_or_out_of_range_are_ignored() -> None:
    assert repair_ligatures("of", [WideGlyph(0, 2.0), WideGlyph(9, 2.0)], freq) == ("of", 0)


@settings(deadline=None)  # the first example loads the word list
@given(st.text(alphabet="abcdeflis \n.\x02", max_size=40), st.lists(st.integers(0, 45), max_size=6))
def test_repair_only_inserts_ligature_letters(text: str, positions: list[int]) -> None:
    repaired, _ = repair_ligatures(text, [WideGlyph(p, 1.4) for p in positions], english_frequency())
    rest = iter(repaired)
    assert all(ch in rest for ch in text)  # every character kept, in order
    assert set(Counter(repaired) - Counter(text)) <= {"i", "l", "f"}


def test_wide_glyphs_are_judged_against_their_own_font_s_usual_f() -> None:
    samples = [(0, i, "Upright", 0.52, False) for i in range(20)] + [(1, i, "Italic", 0.66, False) for i in range(20)]
    samples += [(0, 50, "Upright", 0.72, False), (1, 60, "Italic", 0.74, False), (1, 61, "Upright", 0.53, False)]
    found = wide_f_glyphs(samples, pages=3)
    assert [[g.index for g in page] for page in found] == [[50], [60], []]
    assert found[0][0].excess == pytest.approx(0.72 / 0.52)


def test_a_stretched_font_whose_wide_fs_end_words_gives_no_glyphs() -> None:
    """Letter-spaced text makes every "f" wide, "of" and "if" too; a ligature always has letters after it."""
    samples = [(0, i, "Body", 0.52, False) for i in range(20)] + [(0, 30 + i, "Body", 0.72, False) for i in range(5)]
    stretched = [(0, 100 + i, "Title", 0.70, i % 2 == 0) for i in range(6)] + [(0, 200, "Title", 0.52, False)] * 9
    found = wide_f_glyphs(samples + stretched, pages=1)
    assert [g.index for g in found[0]] == [30, 31, 32, 33, 34]


def test_the_sample_opinions_read_affirmed_and_filed_again() -> None:
    pytest.importorskip("pypdfium2")
    from ragloom.loaders import load_file

    doc = load_file(SAMPLE / "598us1r4_1a7d.pdf")
    assert "affirmed" in doc.text and "affrmed" not in doc.text
    assert "signifcant" not in doc.text and "significant" in doc.text
    assert doc.metadata["ligatures_repaired"] > 50
