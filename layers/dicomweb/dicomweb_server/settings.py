"""Settings, parsed once at cold start into a frozen dataclass.

Rule: an explicit argument beats an environment variable beats the default. No other module reads
``os.environ``. The bucket and table have no default: ``from_env`` refuses to start without them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

#: A buffered Lambda response is capped at 6 MB after base64 (4/3 growth): about 4.4 MB raw.
DEFAULT_MAX_RESPONSE_BYTES = 4_400_000
#: A buffered Lambda event is capped at 6 MB including base64: about 4.4-4.5 MB of raw body.
DEFAULT_MAX_REQUEST_BYTES = 4_500_000
#: Lambda streams at most 200 MB per response; 190 MiB leaves room for multipart framing and headers.
MAX_STREAM_RESPONSE_BYTES = 190 * 1024 * 1024
#: When a single-part answer may be a 303 to a presigned S3 URL instead (``redirect_policy``).
REDIRECT_POLICIES = ("never", "above-limit", "always")
#: SigV4 presigned URLs are valid for at most 7 days (and never longer than the signing credentials).
MAX_PRESIGN_SECONDS = 7 * 24 * 3600


class DuplicatePolicy(StrEnum):
    """What storing a SOP Instance UID that is stored already does (template parameter
    ``DuplicatePolicy``; ``docs/duplicates.md``)."""

    #: Any second copy fails (FailureReason 0x0111).
    REJECT = "reject"
    #: The same bytes succeed and change nothing; other bytes fail (0x0111).
    ACCEPT_IDENTICAL = "accept-identical"
    #: Other bytes replace the stored version (kept as a noncurrent S3 version); the same bytes
    #: change nothing.
    OVERWRITE = "overwrite"


#: Environment variables every function needs: a missing one fails the cold start, naming it.
REQUIRED = {"bucket_name": "BUCKET_NAME", "table_name": "TABLE_NAME"}


class MissingSetting(ValueError):
    """A required environment variable is not set (raised at cold start, not at the first request)."""


@dataclass(frozen=True)
class Settings:
    bucket_name: str
    table_name: str
    #: Absolute base URL of the DICOMweb service as clients see it; derived from each request when empty.
    public_base_url: str = ""
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    #: Largest answer sent as a stream (a buffered answer stops at ``max_response_bytes``); 0: the
    #: deployment cannot stream (Mangum, the local emulator). At most 190 MiB behind Lambda.
    stream_response_bytes: int = 0
    #: Objects of a study or series retrieve read at once (a bounded thread pool).
    retrieve_concurrency: int = 8
    #: never | above-limit (a single-part answer too large to send inline) | always (every single-part answer).
    redirect_policy: str = "never"
    #: Lifetime of a redirect's presigned S3 URL.
    presign_seconds: int = 300
    qido_default_limit: int = 100
    qido_max_limit: int = 1000
    #: Index items one search may read before it answers with what it found and a continuation.
    qido_read_budget: int = 2000
    #: Part-10 objects larger than this are indexed without their metadata in DynamoDB (read from S3).
    max_indexed_metadata_bytes: int = 300_000
    #: Binary values (OB, OW, OF, OD, OL, OV, UN) above this many bytes are sent as a BulkDataURI in
    #: metadata, smaller ones as InlineBinary; pixel data is always bulk data.
    bulk_data_threshold: int = 1024
    #: Frame tables larger than this go to a sidecar object beside the Part-10 object (a DynamoDB
    #: item holds at most 400 KB).
    max_indexed_frame_table_bytes: int = 350_000
    #: Origins allowed to call the API from a browser (comma-separated; ``*`` for any).
    cors_allowed_origins: str = "*"
    #: The API key itself (development and tests); in AWS it comes from ``api_key_secret_arn``.
    api_key: str = ""
    #: Secrets Manager secret holding the API key; empty when the stack has no API key.
    api_key_secret_arn: str = ""
    #: Largest width or height of a rendered image's viewport (a bigger one is a 400).
    rendered_max_viewport: int = 4096
    #: Thumbnails fit in a square of this many pixels unless the request gives a viewport.
    thumbnail_size: int = 128
    #: How long an upload session's presigned URLs are valid (and the longest a client may ask for).
    upload_session_seconds: int = 3600
    #: Files above this size are uploaded in parts of this size (S3 multipart; at least 5 MiB on S3).
    upload_part_bytes: int = 64 * 1024 * 1024
    #: Most files one upload session may announce.
    upload_max_files: int = 1000
    #: Most presigned URLs one session answer may carry (the answer is a buffered Lambda response).
    upload_max_urls: int = 2000
    #: The S3 endpoint presigned URLs name, when clients reach S3 elsewhere than the SDK's default.
    s3_public_endpoint: str = ""
    #: The indexer's dead-letter queue: a dropped file that is not a valid instance is reported
    #: there by the handler itself (with its key and reason), besides being moved to rejected/.
    dead_letter_queue_url: str = ""
    #: How many times the indexer runs for one S3 event (the IndexerFunction's
    #: MaximumRetryAttempts + 1): the last attempt at an upload session's file that fails on
    #: storage records the file failed, so the session reaches its final answer.
    indexer_attempts: int = 3
    #: A STOW-RS request starts no new instance once less than this is left of the Lambda's time
    #: (or of ``stow_time_budget_ms``): the rest are answered 0xA700 with Retry-After instead of
    #: the function being killed midway.
    stow_time_margin_ms: int = 5000
    #: A time limit of STOW-RS requests of its own (0: only the Lambda's); tests use tiny ones.
    stow_time_budget_ms: int = 0
    #: What a second copy of a stored SOP Instance UID does (STOW-RS and the S3 drop).
    duplicate_policy: DuplicatePolicy = DuplicatePolicy.ACCEPT_IDENTICAL

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "duplicate_policy", DuplicatePolicy(self.duplicate_policy))
        except ValueError:
            allowed = ", ".join(p.value for p in DuplicatePolicy)
            raise ValueError(f"duplicate_policy must be one of {allowed}, not {self.duplicate_policy!r}") from None
        if not self.bucket_name or not self.table_name:
            raise ValueError("bucket_name and table_name must be set")
        for name in (
            "max_request_bytes",
            "max_response_bytes",
            "qido_default_limit",
            "qido_max_limit",
            "qido_read_budget",
            "bulk_data_threshold",
            "rendered_max_viewport",
            "thumbnail_size",
            "upload_session_seconds",
            "upload_part_bytes",
            "upload_max_files",
            "upload_max_urls",
            "indexer_attempts",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.stream_response_bytes < 0:
            raise ValueError("stream_response_bytes must be 0 (no streaming) or positive")
        if self.retrieve_concurrency < 1:
            raise ValueError("retrieve_concurrency must be at least 1")
        if self.redirect_policy not in REDIRECT_POLICIES:
            raise ValueError(
                f"redirect_policy must be one of {', '.join(REDIRECT_POLICIES)}, got {self.redirect_policy!r}"
            )
        if not 1 <= self.presign_seconds <= MAX_PRESIGN_SECONDS:
            raise ValueError(f"presign_seconds must be between 1 and {MAX_PRESIGN_SECONDS}")
        if self.qido_default_limit > self.qido_max_limit:
            raise ValueError("qido_default_limit must not exceed qido_max_limit")

    @property
    def allowed_origins(self) -> list[str]:
        return [o.strip() for o in self.cors_allowed_origins.split(",") if o.strip()]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        env = os.environ if environ is None else environ
        missing = [var for field, var in REQUIRED.items() if field not in overrides and not env.get(var)]
        if missing:
            raise MissingSetting(
                f"{' and '.join(missing)} must be set (template.yaml sets them for every function); "
                "the function cannot start without them"
            )
        values: dict[str, object] = {}
        text = {
            "bucket_name": "BUCKET_NAME",
            "table_name": "TABLE_NAME",
            "public_base_url": "PUBLIC_BASE_URL",
            "cors_allowed_origins": "CORS_ALLOWED_ORIGINS",
            "api_key": "API_KEY",
            "api_key_secret_arn": "API_KEY_SECRET_ARN",
            "s3_public_endpoint": "S3_PUBLIC_ENDPOINT",
            "dead_letter_queue_url": "DEAD_LETTER_QUEUE_URL",
            "duplicate_policy": "DUPLICATE_POLICY",
            "redirect_policy": "REDIRECT_POLICY",
        }
        numbers = {
            "max_request_bytes": "MAX_REQUEST_BYTES",
            "max_response_bytes": "MAX_RESPONSE_BYTES",
            "qido_default_limit": "QIDO_DEFAULT_LIMIT",
            "qido_max_limit": "QIDO_MAX_LIMIT",
            "qido_read_budget": "QIDO_READ_BUDGET",
            "max_indexed_metadata_bytes": "MAX_INDEXED_METADATA_BYTES",
            "bulk_data_threshold": "BULK_DATA_THRESHOLD",
            "rendered_max_viewport": "RENDERED_MAX_VIEWPORT",
            "thumbnail_size": "THUMBNAIL_SIZE",
            "max_indexed_frame_table_bytes": "MAX_INDEXED_FRAME_TABLE_BYTES",
            "upload_session_seconds": "UPLOAD_SESSION_SECONDS",
            "upload_part_bytes": "UPLOAD_PART_BYTES",
            "upload_max_files": "UPLOAD_MAX_FILES",
            "upload_max_urls": "UPLOAD_MAX_URLS",
            "indexer_attempts": "INDEXER_ATTEMPTS",
            "stow_time_margin_ms": "STOW_TIME_MARGIN_MS",
            "stow_time_budget_ms": "STOW_TIME_BUDGET_MS",
            "stream_response_bytes": "STREAM_RESPONSE_BYTES",
            "retrieve_concurrency": "RETRIEVE_CONCURRENCY",
            "presign_seconds": "PRESIGN_SECONDS",
        }
        for field, var in text.items():
            if env.get(var):
                values[field] = env[var]
        for field, var in numbers.items():
            if env.get(var):
                try:
                    values[field] = int(env[var])
                except ValueError as exc:
                    raise ValueError(f"{var} must be an integer, got {env[var]!r}") from exc
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]
