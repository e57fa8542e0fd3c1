"""The Lambda handler for S3 ObjectCreated events (the indexer function).

A file that is not a valid instance (not DICOM, truncated, empty) is handled, not failed: the
drop moves it to ``rejected/``, the handler reports it on the dead-letter queue with its key and
FailureReason and counts it (``drop_rejected``), and the other records of the event go on. Only
what the handler cannot handle (storage down after the retries) fails the invocation, so the
function's OnFailure destination (the same queue) receives the event after its retries."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import unquote_plus

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import S3Event

from ..blobs.keys import INCOMING_PREFIX, REJECTED_PREFIX, UPLOADS_PREFIX
from ..settings import Settings
from ..store.drop import DropOutcome, index_dropped
from ..store.uploads import index_upload
from .runtime import aws_clients, aws_ports, dead_letters, logger, metrics, upload_ports


def s3_handler(settings: Settings | None = None) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    settings = settings or Settings.from_env()
    clients = aws_clients()
    index, blobs = aws_ports(settings, clients)
    report = dead_letters(settings.dead_letter_queue_url)
    sessions = upload_ports(settings, clients).sessions

    @logger.inject_lambda_context(log_event=False, clear_state=True)
    @metrics.log_metrics
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for record in S3Event(event).records:
            if record.s3.bucket.name != settings.bucket_name:
                continue
            # S3 event keys arrive URL-encoded ("my+scan%281%29.dcm"); the data class leaves them so.
            key = unquote_plus(record.s3.get_object.key)
            # The version this event is about, where the bucket keeps versions ("null": it did not).
            version = record.s3.get_object.version_id
            version = version if version and version != "null" else None
            if key.startswith(UPLOADS_PREFIX):  # a file of an upload session (store/uploads.py)
                uploaded = index_upload(
                    key,
                    sessions=sessions,
                    index=index,
                    blobs=blobs,
                    max_metadata_bytes=settings.max_indexed_metadata_bytes,
                    bulk_threshold=settings.bulk_data_threshold,
                    max_frame_table_bytes=settings.max_indexed_frame_table_bytes,
                    duplicate_policy=settings.duplicate_policy,
                    attempts=settings.indexer_attempts,
                    version=version,
                )
                counts[f"upload_{uploaded.value}"] = counts.get(f"upload_{uploaded.value}", 0) + 1
                metrics.add_metric(name=f"upload_{uploaded.value}", unit=MetricUnit.Count, value=1)
                continue
            outcome, reason = index_dropped(
                key,
                index=index,
                blobs=blobs,
                max_metadata_bytes=settings.max_indexed_metadata_bytes,
                bulk_threshold=settings.bulk_data_threshold,
                max_frame_table_bytes=settings.max_indexed_frame_table_bytes,
                duplicate_policy=settings.duplicate_policy,
                version=version,
            )
            counts[outcome.value] = counts.get(outcome.value, 0) + 1
            if outcome is DropOutcome.REJECTED:
                logger.warning("dropped file rejected", extra={"failure_reason": f"{reason or 0:04X}"})
                if report is not None:
                    report(
                        {
                            "kind": "rejected-drop",
                            "bucket": settings.bucket_name,
                            "key": key,
                            "moved_to": REJECTED_PREFIX + key[len(INCOMING_PREFIX) :],
                            "failure_reason": f"{reason or 0:04X}",
                        }
                    )
            metrics.add_metric(name=f"drop_{outcome.value}", unit=MetricUnit.Count, value=1)
        logger.info("indexed S3 drop", extra=counts)
        return counts

    return handler
