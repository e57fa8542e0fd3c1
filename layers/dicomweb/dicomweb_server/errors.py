"""One error vocabulary: every failure is a ``DicomwebError`` with an HTTP status: 4xx for what the
client can fix, ``StorageError`` (500) and ``ServiceUnavailable`` (503 with Retry-After) for the
backends, which the adapters raise instead of botocore's exceptions. ``web.errors`` maps them to
HTTP in one place.

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

    def headers(self) -> dict[str, str]:
        """HTTP headers that belong with this error (Allow, Retry-After)."""
        return {}


class BadRequest(DicomwebError):
    status = 400


class Unauthorized(DicomwebError):
    status = 401


class Forbidden(DicomwebError):
    status = 403


class NotFound(DicomwebError):
    status = 404


class MethodNotAllowed(DicomwebError):
    status = 405

    def __init__(self, message: str, *, allow: list[str]) -> None:
        super().__init__(message)
        self.allow = allow

    def headers(self) -> dict[str, str]:
        return {"Allow": ", ".join(self.allow)}


class NotAcceptable(DicomwebError):
    status = 406


class Conflict(DicomwebError):
    status = 409


class Gone(DicomwebError):
    status = 410


class PayloadTooLarge(DicomwebError):
    status = 413


class UnsupportedMediaType(DicomwebError):
    status = 415


class RangeNotSatisfiable(DicomwebError):
    """416: no byte of the requested range exists (RFC 9110 §15.5.17); says the length."""

    status = 416

    def __init__(self, message: str, *, length: int) -> None:
        super().__init__(message)
        self.length = length

    def headers(self) -> dict[str, str]:
        return {"Content-Range": f"bytes */{self.length}"}


class StorageError(DicomwebError):
    """A backend (S3, DynamoDB) failed in a way the client did not cause: a 500, logged by type."""

    status = 500


class ServiceUnavailable(StorageError):
    """A backend is throttling, briefly unavailable or busy with conflicting writes: a 503 that
    tells the client when to try again (``Retry-After``, in seconds)."""

    status = 503

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}
