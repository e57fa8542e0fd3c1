"""The ``dicomweb`` command (an entry point of this project): administration of a deployed stack.

``dicomweb repair`` reconciles the stack's index with its bucket (``store.repair``). Where the
stack is comes from flags, or from the ``.local/endpoint.json`` that ``make run`` writes.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

DEFAULT_ENDPOINT = Path(".local/endpoint.json")


def _stack(args: argparse.Namespace) -> dict[str, Any]:
    """bucket, table, region and (off AWS) the endpoint URL, from flags then the endpoint file."""
    found: dict[str, Any] = {}
    if args.endpoint_file.exists():
        found = json.loads(args.endpoint_file.read_text())
    elif args.endpoint_file != DEFAULT_ENDPOINT:
        raise SystemExit(f"{args.endpoint_file} does not exist")
    stack = {
        "bucket": args.bucket or found.get("bucket"),
        "table": args.table or found.get("table"),
        "region": args.region or found.get("region"),
        "aws_endpoint_url": args.aws_endpoint_url or found.get("aws_endpoint_url"),
    }
    if not stack["bucket"] or not stack["table"]:
        raise SystemExit("say which stack: --bucket and --table, or an --endpoint-file (make run writes one)")
    return stack


def _ports(stack: dict[str, Any]) -> tuple[Any, Any]:
    import boto3

    from .blobs.s3 import S3BlobStore
    from .index.dynamodb import DynamoDbIndex

    kwargs: dict[str, Any] = {"region_name": stack["region"]} if stack["region"] else {}
    if stack["aws_endpoint_url"]:  # a local cloud takes any credentials
        kwargs.update(endpoint_url=stack["aws_endpoint_url"], aws_access_key_id="test", aws_secret_access_key="test")
    index = DynamoDbIndex(boto3.client("dynamodb", **kwargs), stack["table"])
    blobs = S3BlobStore(boto3.client("s3", **kwargs), stack["bucket"])
    return index, blobs


def _repair(args: argparse.Namespace) -> int:
    from .store.repair import repair

    index, blobs = _ports(_stack(args))

    def progress(n: int) -> None:
        if n % 1000 == 0:
            print(f"  {n} objects examined", file=sys.stderr, flush=True)

    report = repair(index, blobs, grace=args.grace, progress=progress)
    print("\n".join(report.lines()))
    for key in report.indexed:
        print(f"indexed: {key}")
    for key in report.removed:
        print(f"removed leftover: {key}")
    for key, why in report.unreadable:
        print(f"unreadable: {key} ({why})")
    for entry in report.missing:
        print(f"entry without object: {entry}")
    return 1 if report.missing or report.unreadable else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dicomweb", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    fix = sub.add_parser("repair", help="index every stored object the index lacks; report entries without one")
    fix.add_argument("--endpoint-file", type=Path, default=DEFAULT_ENDPOINT)
    fix.add_argument("--bucket")
    fix.add_argument("--table")
    fix.add_argument("--region")
    fix.add_argument("--aws-endpoint-url", help="an S3/DynamoDB endpoint off AWS (ministack, LocalStack)")
    fix.add_argument(
        "--grace", type=float, default=900.0, help="seconds a leftover object is kept (a write may be in progress)"
    )
    fix.set_defaults(run=_repair)
    args = parser.parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    raise SystemExit(main())
