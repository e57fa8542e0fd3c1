"""The ``dicomweb`` command (an entry point of this project): bulk transfer and administration.

``dicomweb import PATH…`` stores files, folders and zip files; ``dicomweb export`` writes studies
to a folder (``transfer``); ``dicomweb repair`` reconciles the stack's index with its bucket
(``store.repair``). Where the stack is comes from flags, or from the ``.local/endpoint.json``
that ``make run`` writes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .settings import DuplicatePolicy

DEFAULT_ENDPOINT = Path(".local/endpoint.json")


def _found(args: argparse.Namespace) -> dict[str, Any]:
    """The endpoint file's contents ({} when the default one is absent)."""
    if args.endpoint_file.exists():
        return dict(json.loads(args.endpoint_file.read_text()))
    if args.endpoint_file != DEFAULT_ENDPOINT:
        raise SystemExit(f"{args.endpoint_file} does not exist")
    return {}


def _stack(args: argparse.Namespace, *, required: tuple[str, ...] = ("bucket", "table")) -> dict[str, Any]:
    """bucket, table, region and (off AWS) the endpoint URL, from flags then the endpoint file
    (not when ``--url`` names another stack than the file's)."""
    found = {} if getattr(args, "url", None) else _found(args)
    stack = {k: getattr(args, k, None) or found.get(k) for k in ("bucket", "table", "region", "aws_endpoint_url")}
    if any(not stack[k] for k in required):
        raise SystemExit("say which stack: --bucket and --table, or an --endpoint-file (make run writes one)")
    return stack


def _api(args: argparse.Namespace) -> tuple[str, dict[str, str]]:
    """The DICOMweb base URL and the headers (API key) to reach it."""
    found = {} if args.url else _found(args)
    url = (args.url or found.get("base_url") or "").rstrip("/")
    if not url:
        raise SystemExit("say where: --url, or an --endpoint-file (make run writes .local/endpoint.json)")
    key = args.api_key if args.api_key is not None else found.get("api_key")
    return url, ({"apikey": key} if key else {})


def _client_kwargs(stack: dict[str, Any]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"region_name": stack["region"]} if stack["region"] else {}
    if stack["aws_endpoint_url"]:  # a local cloud takes any credentials
        kwargs.update(endpoint_url=stack["aws_endpoint_url"], aws_access_key_id="test", aws_secret_access_key="test")
    return kwargs


def _import(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .transfer import import_files, journal_for, sources

    url, headers = _api(args)
    drop = None
    stack = _stack(args, required=()) if args.s3_drop else {}
    if args.s3_drop:  # else files too large for one request go through upload sessions
        if not stack["bucket"]:
            raise SystemExit("--s3-drop needs the stack's bucket: --bucket, or an --endpoint-file")
        import boto3

        s3 = boto3.client("s3", **_client_kwargs(stack))

        def drop(key: str, data: bytes) -> None:
            s3.put_object(Bucket=stack["bucket"], Key=key, Body=data, ContentType="application/dicom")

    total = sum(s.size for s in sources(args.paths))
    journal = None if args.no_resume else journal_for(url)
    started = time.perf_counter()
    with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc="import", disable=args.quiet) as bar:
        summary = import_files(
            args.paths,
            url=url,
            headers=headers,
            max_request_bytes=args.max_request_bytes,
            workers=args.workers,
            drop=drop,
            journal=journal,
            progress=bar,
        )
    elapsed = max(time.perf_counter() - started, 1e-6)
    rate = summary.stored + summary.dropped + summary.uploaded
    print("\n".join(summary.lines()))
    print(f"{rate / elapsed:.1f} instances/s, {summary.bytes_sent / elapsed / 1e6:.1f} MB/s")
    return 1 if summary.failed else 0


def _export(args: argparse.Namespace) -> int:
    import requests
    from tqdm import tqdm

    from .transfer import export, studies_matching

    url, headers = _api(args)
    studies = list(args.study or [])
    if args.search:
        query = [tuple(item.split("=", 1)) for item in args.search]
        if any(len(q) != 2 for q in query):
            raise SystemExit("--search takes KEY=VALUE (for example PatientID=12345)")
        studies += studies_matching(requests.Session(), url, headers, query)
    if not studies:
        raise SystemExit("nothing to export: name a study (--study UID) or a search (--search KEY=VALUE)")
    with tqdm(unit="instance", desc="export", disable=args.quiet) as bar:
        summary = export(studies, args.to, url=url, headers=headers, workers=args.workers, progress=bar)
    print(f"{len(studies)} studies to {args.to}")
    print("\n".join(summary.lines()))
    return 1 if summary.failed else 0


def _ports(stack: dict[str, Any]) -> tuple[Any, Any]:
    import boto3

    from .blobs.s3 import S3BlobStore
    from .index.dynamodb import DynamoDbIndex

    kwargs = _client_kwargs(stack)
    index = DynamoDbIndex(boto3.client("dynamodb", **kwargs), stack["table"])
    blobs = S3BlobStore(boto3.client("s3", **kwargs), stack["bucket"])
    return index, blobs


def _repair(args: argparse.Namespace) -> int:
    from .store.repair import repair

    index, blobs = _ports(_stack(args))

    def progress(n: int) -> None:
        if n % 1000 == 0:
            print(f"  {n} objects examined", file=sys.stderr, flush=True)

    policy = DuplicatePolicy(args.duplicate_policy)
    report = repair(index, blobs, grace=args.grace, progress=progress, duplicate_policy=policy)
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

    def stack_flags(p: argparse.ArgumentParser) -> None:
        p.add_argument("--endpoint-file", type=Path, default=DEFAULT_ENDPOINT)
        p.add_argument("--bucket")
        p.add_argument("--table")
        p.add_argument("--region")
        p.add_argument("--aws-endpoint-url", help="an S3/DynamoDB endpoint off AWS (ministack, LocalStack)")

    def api_flags(p: argparse.ArgumentParser) -> None:
        p.add_argument("--url", help="the DICOMweb base URL (default: from the endpoint file)")
        p.add_argument("--api-key", help="the apikey header (default: from the endpoint file)")
        p.add_argument("--workers", type=int, default=4, help="requests in flight at once")
        p.add_argument("--quiet", action="store_true", help="no progress bar")

    imp = sub.add_parser("import", help="store DICOM files, folders and zip files (resumes after an interruption)")
    imp.add_argument("paths", nargs="+", type=Path)
    stack_flags(imp)
    api_flags(imp)
    imp.add_argument(
        "--max-request-bytes", type=int, default=4_000_000, help="the largest STOW-RS request (the stack's limit)"
    )
    imp.add_argument("--no-resume", action="store_true", help="send everything again, ignoring the journal")
    imp.add_argument(
        "--s3-drop",
        action="store_true",
        help="put files too large for one request into the bucket's incoming/ prefix with AWS credentials, "
        "instead of uploading them through an upload session (which needs only the API key)",
    )
    imp.set_defaults(run=_import)

    exp = sub.add_parser("export", help="write studies (by UID, or those a search finds) as Part-10 files")
    exp.add_argument("--study", action="append", help="a Study Instance UID (repeatable)")
    exp.add_argument("--search", action="append", help="a QIDO-RS key, KEY=VALUE (repeatable)")
    exp.add_argument("--to", type=Path, required=True, help="the folder to write to")
    exp.add_argument("--endpoint-file", type=Path, default=DEFAULT_ENDPOINT)
    api_flags(exp)
    exp.set_defaults(run=_export)

    fix = sub.add_parser("repair", help="index every stored object the index lacks; report entries without one")
    stack_flags(fix)
    fix.add_argument(
        "--grace", type=float, default=900.0, help="seconds a leftover object is kept (a write may be in progress)"
    )
    fix.add_argument(
        "--duplicate-policy",
        choices=[p.value for p in DuplicatePolicy],
        default=DuplicatePolicy.ACCEPT_IDENTICAL.value,
        help="the stack's DuplicatePolicy, for files waiting in incoming/ (docs/duplicates.md)",
    )
    fix.set_defaults(run=_repair)
    args = parser.parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    raise SystemExit(main())
