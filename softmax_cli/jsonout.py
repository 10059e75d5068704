"""Every ``--json`` document softmax prints: valid JSON (RFC 8259), whatever the numbers.

Python's ``json.dumps`` writes a NaN or an infinity as ``NaN`` or ``Infinity``, which no
strict JSON parser accepts (a diverged model's loss is one). :func:`dumps` writes each as
``null`` instead and says so in a ``"note"`` key of the top-level object naming the fields.
"""

from __future__ import annotations

import json
import math
from typing import Any


def _clean(value: Any, where: str, found: list[str]) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        found.append(f"{where or 'value'} ({value})")
        return None
    if isinstance(value, dict):
        return {k: _clean(v, f"{where}.{k}" if where else str(k), found) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v, f"{where}[{i}]", found) for i, v in enumerate(value)]
    return value


def dumps(obj: Any) -> str:
    """``obj`` (dicts, lists, strings, numbers, booleans, None) as one line of strict JSON.

    A float that is NaN or infinite becomes ``null``; when ``obj`` is a dict, a ``"note"``
    key is added naming each such field and its value (``loss (nan)``), at most five.
    ``allow_nan=False`` makes sure no other non-finite number gets through.
    """
    found: list[str] = []
    clean = _clean(obj, "", found)
    if found and isinstance(clean, dict):
        shown = ", ".join(found[:5]) + (f" and {len(found) - 5} more" if len(found) > 5 else "")
        clean["note"] = f"not finite, written as null: {shown}"
    return json.dumps(clean, allow_nan=False)
