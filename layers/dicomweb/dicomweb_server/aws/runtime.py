"""What every Lambda function builds once per cold start: powertools' logger and metrics, and the
storage ports on boto3 clients. Imports no web module, so the indexer stays free of Starlette."""

from __future__ import annotations

import logging
from collections.abc import Callable
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


def aws_clients() -> tuple[Any, Any]:
    """The boto3 DynamoDB and S3 clients every function uses, built once per cold start."""
    import boto3
    from botocore.config import Config

    # Bounded retries with backoff for throttling and 5xx; what still fails becomes a 503 (cloud_errors).
    config = Config(retries={"max_attempts": 4, "mode": "standard"}, connect_timeout=3, read_timeout=20)
    session = boto3.session.Session()
    # SigV4 for presigned redirects (boto3 signs V2 against a custom endpoint such as an emulator).
    s3_config = config.merge(Config(signature_version="s3v4"))
    return session.client("dynamodb", config=config), session.client("s3", config=s3_config)


def aws_ports(settings: Settings, clients: tuple[Any, Any] | None = None) -> tuple[DynamoDbIndex, S3BlobStore]:
    """The DynamoDB index and the S3 blob store on ``clients`` (default: new ``aws_clients``)."""
    dynamodb, s3 = clients or aws_clients()
    return DynamoDbIndex(dynamodb, settings.table_name), S3BlobStore(s3, settings.bucket_name)


def upload_ports(settings: Settings, clients: tuple[Any, Any] | None = None) -> UploadPorts:
    """Upload sessions on the table, and presigned URLs signed with SigV4 for the endpoint
    clients reach (``S3_PUBLIC_ENDPOINT``, else the SDK's own); on ``clients`` (pass the ones
    ``aws_ports`` got, so a cold start builds each client once)."""
    import boto3
    from botocore.config import Config

    dynamodb, s3 = clients or aws_clients()
    presign = boto3.session.Session().client(
        "s3",
        endpoint_url=settings.s3_public_endpoint or None,
        config=Config(signature_version="s3v4"),
    )
    return UploadPorts(
        DynamoDbUploadSessions(dynamodb, settings.table_name),
        S3UploadTargets(s3, presign, settings.bucket_name),
    )


def dead_letters(queue_url: str) -> Callable[[dict[str, Any]], None] | None:
    """A sender of JSON messages to the SQS queue ``queue_url`` (None without a queue)."""
    if not queue_url:
        return None
    import json

    import boto3
    from botocore.config import Config

    config = Config(retries={"max_attempts": 4, "mode": "standard"}, connect_timeout=3, read_timeout=10)
    sqs = boto3.session.Session().client("sqs", config=config)

    def send(message: dict[str, Any]) -> None:
        sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(message, sort_keys=True))

    return send
