"""One spelling, one key: the folding every comparison of serials and emails goes through."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from velory_cli.folding import fold


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("ÅB1", "åb1"),
        ("ß1", "SS1"),
        ("Å1", "A\u030a1"),  # composed and decomposed
        ("ＰＦ１", "pf1"),  # full-width
        (" a1 ", "A1"),
        ("\u00a0a1\u00a0", "a1"),  # a non-breaking space is a space
        ("Åsa.Ek@X.se", "åsa.ek@x.se"),
    ],
)
def test_spellings_of_one_serial_share_a_key(one: str, other: str) -> None:
    assert fold(one) == fold(other)


@pytest.mark.parametrize(("one", "other"), [("A1", "A2"), ("ı1", "i1"), ("Ø1", "O1")])
def test_different_serials_keep_different_keys(one: str, other: str) -> None:
    assert fold(one) != fold(other)


@given(st.text())
def test_folding_is_idempotent_and_normalised(text: str) -> None:
    key = fold(text)
    assert fold(key) == key
    assert unicodedata.normalize("NFKC", key) == key


@given(st.text(alphabet=st.characters(max_codepoint=127)))
def test_the_ascii_fast_path_is_the_plain_fold(text: str) -> None:
    plain = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold()).strip()
    assert fold(text) == plain
