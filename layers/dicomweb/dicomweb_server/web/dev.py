"""``make dev``: every route under uvicorn on loopback, with in-memory storage (nothing persists),
or (``--aws``) with S3 and DynamoDB as boto3 finds them: ``AWS_ENDPOINT_URL`` for moto or the local stack.

STOW-RS parses instances in a pool of processes (``--parse-workers``, one per core): the server is
one process holding the in-memory index, which would otherwise parse on one core only.

uvicorn streams, so retrieve answers above the buffered limit are written part by part up to
``--stream-limit``, as behind the Lambda Web Adapter."""

from __future__ import annotations

import argparse
import os

from ..blobs.memory import MemoryBlobStore
from ..index.memory import MemoryIndex
from ..ports import BlobStore, MetadataIndex
from ..settings import Settings
from ..store.parallel import ParsePool
from .app import create_app

#: The dev server is no Lambda: it streams what its memory and the client allow.
DEV_STREAM_LIMIT = 4 * 1024**3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--stream-limit", type=int, default=DEV_STREAM_LIMIT, help="largest streamed answer (bytes)")
    parser.add_argument("--aws", action="store_true", help="S3 and DynamoDB (boto3's configuration) instead of memory")
    parser.add_argument("--bucket", default="dicomweb-dev")
    parser.add_argument("--table", default="dicomweb-dev")
    parser.add_argument(
        "--parse-workers",
        type=int,
        default=os.cpu_count() or 1,
        help="processes that parse STOW-RS instances (default: one per core; 0: in the server process)",
    )
    args = parser.parse_args()
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        parser.error("the development server binds to loopback only")
    import uvicorn

    index: MetadataIndex
    blobs: BlobStore
    settings = Settings(bucket_name=args.bucket, table_name=args.table, stream_response_bytes=args.stream_limit)
    if args.aws:
        from ..aws.runtime import aws_ports  # a composition root, like functions/*/app.py

        index, blobs = aws_ports(settings)
        where = f"S3 bucket {args.bucket}, table {args.table}"
    else:
        index, blobs, where = MemoryIndex(), MemoryBlobStore(), "in memory"
    pool = ParsePool(args.parse_workers) if args.parse_workers > 0 else None
    if pool is not None:
        pool.warm()
    app = create_app(settings, index=index, blobs=blobs, parser=pool.parse if pool else None)
    print(f"DICOMweb ({where}) at http://{args.host}:{args.port}")
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    finally:
        if pool is not None:
            pool.close()


if __name__ == "__main__":
    main()
