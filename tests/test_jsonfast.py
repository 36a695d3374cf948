"""``bot.jsonfast.loads`` parses request bodies through orjson only where that gives exactly what the standard
library gives; everything else (long numbers, NaN, lone surrogates, a BOM, deep nesting) keeps the standard
library's result or error."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot import jsonfast

_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


def _reject(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


@given(_values, st.booleans())
def test_same_value_and_type_as_the_standard_library(value: Any, ascii_only: bool) -> None:
    raw = json.dumps(value, ensure_ascii=ascii_only).encode()
    assert _same(jsonfast.loads(raw, parse_constant=_reject), json.loads(raw, parse_constant=_reject))


@pytest.mark.parametrize("raw", [
    b'{"big": 123456789012345678901234567890}', b'{"u64": 18446744073709551615}', b'[-9223372036854775809]',
    b'{"id": "1234567890123456789012"}', b'\xef\xbb\xbf{"bom": 1}', b'{"lone": "\\ud800"}', b'{"a": 1, "a": 2}',
    b"[1e400]", b'{"e": "\\u00e9"}',
])
def test_edge_cases_match(raw: bytes) -> None:
    assert _same(jsonfast.loads(raw, parse_constant=_reject), json.loads(raw, parse_constant=_reject))


@pytest.mark.parametrize("raw", [b'{"a": NaN}', b"[-Infinity]", b'{"a": 1', b"[" * 100_000, b"\xff\xfe"])
def test_errors_are_the_standard_librarys(raw: bytes) -> None:
    with pytest.raises((ValueError, RecursionError)) as expected:
        json.loads(raw, parse_constant=_reject)
    with pytest.raises(type(expected.value), match=None) as got:
        jsonfast.loads(raw, parse_constant=_reject)
    assert str(got.value) == str(expected.value)
