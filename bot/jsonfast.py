"""Fast JSON for the hot paths (request bodies, API responses, the args size check), through orjson.

orjson refuses integers beyond 64 bits, which JSON allows and an agent may send; such a value falls back to
the standard library, so the output is always valid JSON for whatever the API accepted. Parsing gives what
the standard library gives: a body orjson would read differently (a number of 19 digits or more, which it
turns into a float) or refuses (NaN, lone surrogates, deep nesting) is parsed by the standard library, with
its errors.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import orjson


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


_LONG_NUMBER = re.compile(rb"[0-9]{19}")


def loads(raw: bytes, *, parse_constant: Callable[[str], Any] | None = None) -> Any:
    """``json.loads(raw, parse_constant=…)``, through orjson when that gives the same value."""
    if _LONG_NUMBER.search(raw) is None:
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass  # the standard library decides, and words the error
    return json.loads(raw, parse_constant=parse_constant)
