"""What can go wrong in a load: file-level errors stop it; row errors are reported per row."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum


class LoadError(Exception):
    """A load that cannot proceed. The message is written for the operator."""


class UnreadableFileError(LoadError):
    """Corrupt, empty, password-protected, or not a spreadsheet at all."""


class LimitError(UnreadableFileError):
    """A file over one of the loader's size limits (``speechai.loader.limits``); the message names it."""


class MissingColumnsError(LoadError):
    def __init__(self, fmt: str, missing: list[str], expected: list[str], found: list[str]) -> None:
        self.format = fmt
        self.missing = missing
        self.expected = expected
        self.found = found
        super().__init__(
            f"missing required column(s) for the {fmt} format: {', '.join(missing)}. "
            f"Expected headers (any of the spellings): {'; '.join(expected)}. "
            f"Found headers: {', '.join(found) if found else '(none)'}"
        )


class Reason(StrEnum):
    INVALID_RUT = "invalid_rut"
    NO_VALID_PHONE = "no_valid_phone"
    MISSING_NAME = "missing_name"
    BAD_AMOUNT = "bad_amount"
    BAD_DATE = "bad_date"
    TOO_LONG = "too_long"  # a used cell over the per-field length limit
    NAME_CONFLICT = "name_conflict"  # one RUT (or phone) with two different names
    PERSON_REJECTED = "person_rejected"  # another row of the same person was rejected
    INVALID_PHONE = "invalid_phone"  # a warning: the number was dropped, the row kept


@dataclass(frozen=True)
class RowError:
    row: int  # as the operator sees it: sheet row number (1 = header row in most files)
    column: str  # the header as written in the file
    value: str
    reason: Reason
    detail: str = ""

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["reason"] = str(self.reason)
        return d
