"""``BlobStore`` on Amazon S3 (any S3 API: AWS, ministack, LocalStack, moto).

botocore's errors become the domain's (``cloud_errors``); only a missing key is handled here."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ..cloud_errors import translate, translating
from ..ports import BlobChanged, BlobNotFound, OpenedBlob, Readable

#: The codes S3 answers for a missing key (GetObject says NoSuchKey, HEAD-like paths 404).
_MISSING = ("NoSuchKey", "404", "NotFound", "NoSuchVersion")
#: What S3 answers when a copy's ``CopySourceIfMatch`` no longer holds.
_CHANGED = ("PreconditionFailed", "412")
#: CopyObject copies at most 5 GiB; larger objects are copied in parts of this size.
COPY_LIMIT = 5 * 1024**3
COPY_PART = 512 * 1024**2
#: Parts of a streamed upload (``put_stream``): S3 takes parts of 5 MiB or more (but the last)
#: and at most 10,000 of them.
STREAM_PART = 8 * 1024**2
_MAX_PARTS = 10_000


class _Body:
    """A GetObject body whose broken connection becomes the domain's error."""

    def __init__(self, body: Any) -> None:
        self._body = body

    def read(self, size: int = -1, /) -> bytes:
        try:
            return bytes(self._body.read(size if size >= 0 else None))
        except BotoCoreError as exc:
            raise translate(exc, "S3", "GetObject") from exc

    def close(self) -> None:
        """Give the connection back (a body read only in part would hold it until collected)."""
        self._body.close()


class S3BlobStore:
    def __init__(
        self,
        client: Any,
        bucket: str,
        *,
        copy_limit: int = COPY_LIMIT,
        copy_part: int = COPY_PART,
        stream_part: int = STREAM_PART,
    ) -> None:
        if stream_part < 5 * 1024**2:
            raise ValueError("S3 multipart parts are at least 5 MiB")
        self._client = client
        self.stream_part = stream_part
        self._s3 = translating(client, "S3", expected=_MISSING + _CHANGED)
        self.bucket = bucket
        self.copy_limit = copy_limit
        self.copy_part = copy_part

    def put(self, key: str, data: bytes, content_type: str = "application/dicom") -> None:
        self._s3.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)

    def get(self, key: str) -> bytes:
        return self.get_version(key)[0]

    def get_range(self, key: str, start: int, end: int) -> bytes:
        try:
            response = self._s3.get_object(Bucket=self.bucket, Key=key, Range=f"bytes={start}-{end}")
        except ClientError:
            raise BlobNotFound(key) from None
        try:
            return bytes(response["Body"].read())
        except BotoCoreError as exc:
            raise translate(exc, "S3", "GetObject") from exc

    def get_version(self, key: str) -> tuple[bytes, str | None]:
        try:
            response = self._s3.get_object(Bucket=self.bucket, Key=key)
        except ClientError:  # only the _MISSING codes come through untranslated
            raise BlobNotFound(key) from None
        try:
            data = response["Body"].read()
        except BotoCoreError as exc:  # the connection broke while the body was read
            raise translate(exc, "S3", "GetObject") from exc
        version = response.get("VersionId")
        return data, (version if version and version != "null" else None)

    def exists(self, key: str) -> bool:
        try:
            self._s3.head_object(Bucket=self.bucket, Key=key)
        except ClientError:  # only the _MISSING codes come through untranslated
            return False
        return True

    def chunks(self, key: str, chunk_size: int) -> Iterator[bytes]:
        try:
            response = self._s3.get_object(Bucket=self.bucket, Key=key)
        except ClientError:
            raise BlobNotFound(key) from None
        return self._pieces(response["Body"], chunk_size)

    @staticmethod
    def _pieces(body: Any, chunk_size: int) -> Iterator[bytes]:
        try:
            yield from body.iter_chunks(chunk_size)
        except BotoCoreError as exc:  # the connection broke mid-object
            raise translate(exc, "S3", "GetObject") from exc
        finally:
            body.close()

    def presign(self, key: str, seconds: int, content_type: str) -> str | None:
        """A SigV4 presigned GET (the client must be configured with ``signature_version="s3v4"``:
        boto3's default against a custom endpoint is V2, which some emulators do not check). In
        Lambda the URL also stops working when the role's session credentials expire."""
        url: str = self._client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.bucket, "Key": key, "ResponseContentType": content_type},
            ExpiresIn=seconds,
        )
        return url

    def open(self, key: str, *, version: str | None = None, if_match: str | None = None) -> OpenedBlob:
        kwargs: dict[str, str] = {"VersionId": version} if version else {}
        if if_match:
            kwargs["IfMatch"] = if_match
        try:
            response = self._s3.get_object(Bucket=self.bucket, Key=key, **kwargs)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _CHANGED:
                raise BlobChanged(key) from None
            raise BlobNotFound(key) from None
        version = response.get("VersionId")
        return OpenedBlob(
            body=_Body(response["Body"]),
            size=int(response["ContentLength"]),
            version=version if version and version != "null" else None,
            etag=str(response.get("ETag", "")),
        )

    def copy(
        self,
        source_key: str,
        target_key: str,
        *,
        if_match: str | None = None,
        version: str | None = None,
        size: int | None = None,
    ) -> None:
        source: dict[str, str] = {"Bucket": self.bucket, "Key": source_key}
        if version:
            source["VersionId"] = version
        condition = {"CopySourceIfMatch": if_match} if if_match else {}
        try:
            if size is not None and size > self.copy_limit:
                return self._copy_parts(source, target_key, size, condition)
            self._s3.copy_object(
                Bucket=self.bucket,
                Key=target_key,
                CopySource=source,
                ContentType="application/dicom",
                MetadataDirective="REPLACE",
                **condition,
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _CHANGED:
                raise BlobChanged(source_key) from None
            raise BlobNotFound(source_key) from None

    def _copy_parts(self, source: dict[str, str], target_key: str, size: int, condition: dict[str, str]) -> None:
        """Multipart copy (UploadPartCopy) of an object above CopyObject's 5 GiB."""
        upload = self._s3.create_multipart_upload(Bucket=self.bucket, Key=target_key, ContentType="application/dicom")
        uid = upload["UploadId"]
        parts = []
        try:
            for number, start in enumerate(range(0, size, self.copy_part), start=1):
                end = min(size, start + self.copy_part) - 1
                got = self._s3.upload_part_copy(
                    Bucket=self.bucket,
                    Key=target_key,
                    UploadId=uid,
                    PartNumber=number,
                    CopySource=source,
                    CopySourceRange=f"bytes={start}-{end}",
                    **condition,
                )
                parts.append({"PartNumber": number, "ETag": got["CopyPartResult"]["ETag"]})
            self._s3.complete_multipart_upload(
                Bucket=self.bucket, Key=target_key, UploadId=uid, MultipartUpload={"Parts": parts}
            )
        except BaseException:
            self._s3.abort_multipart_upload(Bucket=self.bucket, Key=target_key, UploadId=uid)
            raise

    def put_stream(
        self, key: str, source: Readable, *, size_hint: int = 0, content_type: str = "application/dicom"
    ) -> int:
        """A multipart upload of what ``source`` gives, in parts of ``stream_part`` bytes (more when
        ``size_hint`` would need more than 10,000 parts); one part is held at a time. An object
        smaller than one part is one PutObject. A failure aborts the upload: nothing is stored."""
        part_size = max(self.stream_part, -(-size_hint // _MAX_PARTS))
        first = _read_full(source, part_size)
        if len(first) < part_size:  # the whole object fits one part
            self._s3.put_object(Bucket=self.bucket, Key=key, Body=bytes(first), ContentType=content_type)
            return len(first)
        upload = self._s3.create_multipart_upload(Bucket=self.bucket, Key=key, ContentType=content_type)
        uid = upload["UploadId"]
        parts: list[dict[str, Any]] = []
        written = 0
        try:
            chunk = first
            while chunk:
                got = self._s3.upload_part(
                    Bucket=self.bucket, Key=key, UploadId=uid, PartNumber=len(parts) + 1, Body=bytes(chunk)
                )
                parts.append({"PartNumber": len(parts) + 1, "ETag": got["ETag"]})
                written += len(chunk)
                chunk = bytearray() if len(chunk) < part_size else _read_full(source, part_size)
            self._s3.complete_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=uid, MultipartUpload={"Parts": parts}
            )
        except BaseException:
            self._s3.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=uid)
            raise
        return written

    def delete(self, key: str, version: str | None = None) -> None:
        if version:
            self._s3.delete_object(Bucket=self.bucket, Key=key, VersionId=version)
        else:
            self._s3.delete_object(Bucket=self.bucket, Key=key)

    def list(self, prefix: str) -> Iterator[tuple[str, float]]:
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
            if token:
                kwargs["ContinuationToken"] = token
            page = self._s3.list_objects_v2(**kwargs)
            for obj in page.get("Contents", []):
                yield obj["Key"], obj["LastModified"].timestamp()
            token = page.get("NextContinuationToken")
            if not token:
                return


def _read_full(source: Readable, size: int) -> bytearray:
    """Up to ``size`` bytes of ``source`` (fewer only at its end)."""
    out = bytearray()
    while len(out) < size:
        got = source.read(size - len(out))
        if not got:
            break
        out += got
    return out
