"""``make dev``: every route under uvicorn on loopback, with in-memory storage (nothing persists),
or (``--aws``) with S3 and DynamoDB as boto3 finds them: ``AWS_ENDPOINT_URL`` for moto or the local stack.

STOW-RS parses instances in a pool of processes (``--parse-workers``, one per core): the server is
one process holding the in-memory index, which would otherwise parse on one core only.

uvicorn streams, so retrieve answers above the buffered limit are written part by part up to
``--stream-limit``, as behind the Lambda Web Adapter."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..blobs.memory import MemoryBlobStore
from ..index.memory import MemoryIndex
from ..ports import BlobStore, MetadataIndex
from ..settings import Settings
from ..store.parallel import ParsePool
from .app import create_app

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

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
    if pool is not None:
        app = _closing_at_shutdown(app, pool.close)
    print(f"DICOMweb ({where}) at http://{args.host}:{args.port}")
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")


def _closing_at_shutdown(app: ASGIApp, close: Callable[[], None]) -> ASGIApp:
    """``app``, calling ``close`` when the server shuts down (its lifespan's shutdown: uvicorn ends
    the process by the signal that stopped it right after, so no ``finally`` would run)."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await app(scope, receive, send)
            return

        async def received() -> Message:
            message = await receive()
            if message["type"] == "lifespan.shutdown":
                close()
            return message

        await app(scope, received, send)

    return wrapped


if __name__ == "__main__":
    main()
