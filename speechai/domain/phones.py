"""Which of a person's phones to dial next: a stable round-robin in list order (never hash order)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class PhoneView(Protocol):
    @property
    def number(self) -> str: ...

    @property
    def bad(self) -> bool: ...


def next_usable_phone(phones: Sequence[PhoneView], start_index: int) -> int | None:
    """Index of the first phone not marked bad after ``start_index``, wrapping around (``start_index``
    itself comes last, so a single good phone is reused). ``start_index=-1`` starts at the first phone.
    None when every phone is bad or there are none."""
    n = len(phones)
    for step in range(1, n + 1):
        i = (start_index + step) % n
        if not phones[i].bad:
            return i
    return None
