"""One error vocabulary: every failure a client can cause is a ``DicomwebError`` with an HTTP status.

STOW-RS per-instance failures are not exceptions: they are data (``stow.FailedInstance``).
"""

from __future__ import annotations


class DicomwebError(Exception):
    """A request failure with the HTTP status and a message that says what was wrong."""

    status = 500

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status


class BadRequest(DicomwebError):
    status = 400


class Unauthorized(DicomwebError):
    status = 401


class Forbidden(DicomwebError):
    status = 403


class NotFound(DicomwebError):
    status = 404


class NotAcceptable(DicomwebError):
    status = 406


class Conflict(DicomwebError):
    status = 409


class PayloadTooLarge(DicomwebError):
    status = 413


class UnsupportedMediaType(DicomwebError):
    status = 415


class StorageError(Exception):
    """A backend (S3, DynamoDB) failed in a way the client did not cause: a 5xx, logged."""
