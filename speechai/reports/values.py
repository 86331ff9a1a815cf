"""Stored values as the report shows them (exact decimals)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any


def cents(value: Any) -> Decimal:
    """A stored cost as an exact decimal: the float's shortest repr is the number the provider sent."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return Decimal(0)
    return Decimal(repr(float(value))) if isinstance(value, float) else Decimal(value)
