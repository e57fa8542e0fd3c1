"""What every Lambda function builds once per cold start: powertools' logger and metrics, and the
storage ports on boto3 clients. Imports no web module, so the indexer stays free of Starlette."""

from __future__ import annotations

import logging
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers

from ..blobs.s3 import S3BlobStore
from ..blobs.uploads import S3UploadTargets
from ..index.dynamodb import DynamoDbIndex
from ..index.uploads import DynamoDbUploadSessions
from ..settings import Settings
from ..store.uploads import UploadPorts

logger = Logger()
metrics = Metrics()
copy_config_to_registered_loggers(source_logger=logger, include={"dicomweb"})
logging.getLogger("dicomweb").setLevel(logger.log_level)


def _config() -> Any:
    from botocore.config import Config

    # Bounded retries with backoff for throttling and 5xx; what still fails becomes a 503 (cloud_errors).
    return Config(retries={"max_attempts": 4, "mode": "standard"}, connect_timeout=3, read_timeout=20)


def aws_ports(settings: Settings) -> tuple[DynamoDbIndex, S3BlobStore]:
    """The DynamoDB index and the S3 blob store, with boto3 clients built once per cold start."""
    import boto3

    session = boto3.session.Session()
    return (
        DynamoDbIndex(session.client("dynamodb", config=_config()), settings.table_name),
        S3BlobStore(session.client("s3", config=_config()), settings.bucket_name),
    )


def upload_ports(settings: Settings) -> UploadPorts:
    """Upload sessions on the table, and presigned URLs signed with SigV4 for the endpoint
    clients reach (``S3_PUBLIC_ENDPOINT``, else the SDK's own)."""
    import boto3
    from botocore.config import Config

    session = boto3.session.Session()
    presign = session.client(
        "s3",
        endpoint_url=settings.s3_public_endpoint or None,
        config=Config(signature_version="s3v4"),
    )
    return UploadPorts(
        DynamoDbUploadSessions(session.client("dynamodb", config=_config()), settings.table_name),
        S3UploadTargets(session.client("s3", config=_config()), presign, settings.bucket_name),
    )
