"""Canonical contact fields (``syncd.contact``): normalisers and the content hash."""

from __future__ import annotations

import hypothesis.strategies as st
from hypothesis import given

from syncd.contact import FIELDS, content_hash, normalise

text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=30)


@given(field=st.sampled_from(FIELDS), value=text)
def test_normalise_is_idempotent(field: str, value: str) -> None:
    once = normalise(field, value)
    assert normalise(field, once) == once


@given(digits=st.from_regex(r"[0-9]{6,12}", fullmatch=True),
       sep=st.sampled_from([" ", ".", "-", "/", ""]))
def test_phones_compare_on_digits(digits: str, sep: str) -> None:
    formatted = "+" + sep.join(digits[i:i + 3] for i in range(0, len(digits), 3))
    assert normalise("phone", formatted) == digits
    a = {f: "" for f in FIELDS} | {"phone": formatted}
    b = {f: "" for f in FIELDS} | {"phone": digits}
    assert content_hash(a) == content_hash(b)
