"""Fast JSON encoding for the hot paths (API responses, the args size check), through orjson.

orjson refuses integers beyond 64 bits, which JSON allows and an agent may send; such a value falls back to
the standard library, so the output is always valid JSON for whatever the API accepted.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
