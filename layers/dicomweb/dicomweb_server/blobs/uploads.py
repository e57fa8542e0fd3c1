"""Where clients upload (``ports.UploadTargets``): presigned S3 requests, and an in-memory twin.

Presigned URLs are signed with SigV4 by a client whose endpoint is the one clients reach (the
SDK's regional endpoint on AWS; ``S3_PUBLIC_ENDPOINT`` where that differs, e.g. a local
emulator). A URL is valid until the session expires, and on AWS no longer than the signing
function's temporary credentials.
"""

from __future__ import annotations

import secrets
import threading
from typing import Any
from urllib.parse import quote

from botocore.exceptions import ClientError

from ..cloud_errors import translating

_GONE = ("NoSuchUpload", "NoSuchKey", "404", "NotFound")


class S3UploadTargets:
    def __init__(self, client: Any, presign_client: Any, bucket: str) -> None:
        self._s3 = translating(client, "S3", expected=_GONE)
        self._presign = presign_client
        self.bucket = bucket

    def presign_put(self, key: str, expires_in: int) -> str:
        url: str = self._presign.generate_presigned_url(
            "put_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires_in
        )
        return url

    def start_multipart(self, key: str) -> str:
        started = self._s3.create_multipart_upload(Bucket=self.bucket, Key=key, ContentType="application/dicom")
        return str(started["UploadId"])

    def presign_part(self, key: str, upload_id: str, part: int, expires_in: int) -> str:
        url: str = self._presign.generate_presigned_url(
            "upload_part",
            Params={"Bucket": self.bucket, "Key": key, "UploadId": upload_id, "PartNumber": part},
            ExpiresIn=expires_in,
        )
        return url

    def uploaded_parts(self, key: str, upload_id: str) -> list[tuple[int, str, int]] | None:
        parts: list[tuple[int, str, int]] = []
        marker = 0
        while True:
            try:
                page = self._s3.list_parts(Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumberMarker=marker)
            except ClientError:
                return None
            parts += [(int(p["PartNumber"]), str(p["ETag"]), int(p["Size"])) for p in page.get("Parts", [])]
            if not page.get("IsTruncated"):
                return parts
            marker = int(page["NextPartNumberMarker"])

    def complete_multipart(self, key: str, upload_id: str, parts: list[tuple[int, str]]) -> bool:
        try:
            self._s3.complete_multipart_upload(
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": [{"PartNumber": n, "ETag": etag} for n, etag in parts]},
            )
        except ClientError:
            return False
        return True

    def exists(self, key: str) -> bool:
        try:
            self._s3.head_object(Bucket=self.bucket, Key=key)
        except ClientError:
            return False
        return True


class MemoryUploadTargets:
    """In memory: a "URL" is ``memory://{key}`` (with the part), uploads go through ``upload``."""

    def __init__(self, blobs: Any) -> None:
        self._blobs = blobs
        self._open: dict[str, dict[int, bytes]] = {}
        self._lock = threading.Lock()

    def presign_put(self, key: str, expires_in: int) -> str:
        return f"memory://{quote(key)}"

    def start_multipart(self, key: str) -> str:
        upload = secrets.token_hex(8)
        with self._lock:
            self._open[upload] = {}
        return upload

    def presign_part(self, key: str, upload_id: str, part: int, expires_in: int) -> str:
        return f"memory://{quote(key)}?uploadId={upload_id}&partNumber={part}"

    def upload_part(self, upload_id: str, part: int, data: bytes) -> None:
        with self._lock:
            self._open[upload_id][part] = data

    def uploaded_parts(self, key: str, upload_id: str) -> list[tuple[int, str, int]] | None:
        with self._lock:
            parts = self._open.get(upload_id)
            return None if parts is None else [(n, f'"{n}"', len(d)) for n, d in sorted(parts.items())]

    def complete_multipart(self, key: str, upload_id: str, parts: list[tuple[int, str]]) -> bool:
        with self._lock:
            held = self._open.pop(upload_id, None)
        if held is None:
            return False
        self._blobs.put(key, b"".join(held[n] for n, _ in parts))
        return True

    def exists(self, key: str) -> bool:
        try:
            self._blobs.get(key)
        except KeyError:
            return False
        return True
