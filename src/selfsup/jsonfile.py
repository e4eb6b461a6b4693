"""JSON as strict readers take it: a value that is not a finite number (NaN, ±inf) is written as
``null``, since ``NaN`` and ``Infinity`` are not JSON (jq, JavaScript's JSON.parse and other strict
parsers reject a file holding them; Python's json module writes them by default)."""

from __future__ import annotations

import json
import math
from typing import Any


def strict(value: Any) -> Any:
    """``value`` with every non-finite float (NumPy's included) in nested dicts, lists and tuples
    replaced by None."""
    if isinstance(value, dict):
        return {key: strict(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "dtype") and hasattr(value, "item") and getattr(value, "ndim", 1) == 0:  # NumPy scalars
        return strict(value.item())
    return value


def to_json(value: Any, indent: int | None = None) -> str:
    """``value`` as strict JSON text (see :func:`strict`); raises ValueError for what JSON cannot hold."""
    return json.dumps(strict(value), indent=indent, allow_nan=False)
