"""``BlobStore`` on Amazon S3 (any S3 API: AWS, ministack, LocalStack, moto).

botocore's errors become the domain's (``cloud_errors``); only a missing key is handled here."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ..cloud_errors import translate, translating
from ..ports import BlobNotFound

#: The codes S3 answers for a missing key (GetObject says NoSuchKey, HEAD-like paths 404).
_MISSING = ("NoSuchKey", "404", "NotFound")


class S3BlobStore:
    def __init__(self, client: Any, bucket: str) -> None:
        self._client = client
        self._s3 = translating(client, "S3", expected=_MISSING)
        self.bucket = bucket

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

    def copy(self, source_key: str, target_key: str) -> None:
        try:
            self._s3.copy_object(
                Bucket=self.bucket,
                Key=target_key,
                CopySource={"Bucket": self.bucket, "Key": source_key},
                ContentType="application/dicom",
                MetadataDirective="REPLACE",
            )
        except ClientError:
            raise BlobNotFound(source_key) from None

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
