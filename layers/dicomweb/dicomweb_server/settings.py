"""Settings, parsed once at cold start into a frozen dataclass.

Rule: an explicit argument beats an environment variable beats the default. No other module reads
``os.environ``. The bucket and table have no default: ``from_env`` refuses to start without them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

#: A buffered Lambda response is capped at 6 MB after base64 (4/3 growth): about 4.4 MB raw.
DEFAULT_MAX_RESPONSE_BYTES = 4_400_000
#: A buffered Lambda event is capped at 6 MB including base64: about 4.4-4.5 MB of raw body.
DEFAULT_MAX_REQUEST_BYTES = 4_500_000


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
    qido_default_limit: int = 100
    qido_max_limit: int = 1000
    #: Index items one search may read before it answers with what it found and a continuation.
    qido_read_budget: int = 2000
    #: Part-10 objects larger than this are indexed without their metadata in DynamoDB (read from S3).
    max_indexed_metadata_bytes: int = 300_000
    #: Binary values (OB, OW, OF, OD, OL, OV, UN) above this many bytes are sent as a BulkDataURI in
    #: metadata, smaller ones as InlineBinary; pixel data is always bulk data.
    bulk_data_threshold: int = 1024
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

    def __post_init__(self) -> None:
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
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
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
            "upload_session_seconds": "UPLOAD_SESSION_SECONDS",
            "upload_part_bytes": "UPLOAD_PART_BYTES",
            "upload_max_files": "UPLOAD_MAX_FILES",
            "upload_max_urls": "UPLOAD_MAX_URLS",
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
