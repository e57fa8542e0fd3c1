"""DICOM UID validation at the edge (PS3.5 §9.1): at most 64 characters, digits and dots, no empty
component. Leading zeros are tolerated: real archives contain them and rejecting them would strand data.
An invalid UID is a 400, never a storage error."""

from __future__ import annotations

import re

from .errors import BadRequest

_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def is_valid_uid(value: str) -> bool:
    return 0 < len(value) <= 64 and _UID.fullmatch(value) is not None


def validate_uid(value: str, what: str = "UID") -> str:
    """Return ``value`` if it is a valid UID, else raise ``BadRequest`` naming the problem."""
    if not value:
        raise BadRequest(f"{what} is empty")
    if len(value) > 64:
        raise BadRequest(f"{what} is {len(value)} characters long; a UID has at most 64")
    if not _UID.fullmatch(value):
        shown = value if len(value) <= 64 else value[:61] + "..."
        raise BadRequest(f"{what} {shown!r} is not a valid UID (digits separated by single dots)")
    return value
