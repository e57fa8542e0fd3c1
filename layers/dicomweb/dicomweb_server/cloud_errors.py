"""botocore's exceptions in the domain vocabulary, for the S3 and DynamoDB adapters.

An adapter wraps its boto3 client in ``translating(client, service, expected=...)``: a call that
fails with an error code the adapter handles itself (a conditional check, a missing key) raises
botocore's ``ClientError`` as usual; every other failure becomes ``ServiceUnavailable`` (throttling,
5xx, timeouts: a 503 with Retry-After) or ``StorageError`` (anything else: a logged 500). Messages
name the service, operation and error code only, never request parameters (they hold UIDs).

Throttling is retried by botocore itself first (``aws.runtime`` sets bounded standard retries).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, ConnectionError, HTTPClientError

from .errors import ServiceUnavailable, StorageError

#: Error codes that mean "slow down or try again soon" (DynamoDB, S3, STS, generic AWS).
RETRYABLE = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "Throttling",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "SlowDown",
        "ServiceUnavailable",
        "InternalServerError",
        "InternalError",
        "InternalFailure",
        "RequestTimeout",
        "RequestTimeoutException",
        "TransactionInProgressException",
        "503",
        "500",
    }
)


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def translate(exc: Exception, service: str, operation: str) -> StorageError:
    """The domain error for a failed boto3 call."""
    if isinstance(exc, ClientError):
        code = error_code(exc)
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code in RETRYABLE or status >= 500:
            return ServiceUnavailable(f"{service} is busy or unavailable ({operation}: {code}); try again shortly")
        return StorageError(f"{service} refused {operation} ({code})")
    if isinstance(exc, ConnectionError | HTTPClientError):
        return ServiceUnavailable(f"{service} could not be reached ({operation}: {type(exc).__name__})")
    return StorageError(f"{service} failed ({operation}: {type(exc).__name__})")


class _Translating:
    def __init__(self, client: Any, service: str, expected: Collection[str]) -> None:
        self._client = client
        self._service = service
        self._expected = frozenset(expected)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr) or name.startswith("_"):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return attr(*args, **kwargs)
            except ClientError as exc:
                if error_code(exc) in self._expected:
                    raise
                raise translate(exc, self._service, name) from exc
            except BotoCoreError as exc:
                raise translate(exc, self._service, name) from exc

        return call


def translating(client: Any, service: str, *, expected: Collection[str] = ()) -> Any:
    """``client`` whose calls raise the domain errors, except ``ClientError`` with an ``expected`` code."""
    return _Translating(client, service, expected)
