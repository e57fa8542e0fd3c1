"""``BlobStore`` on Amazon S3 (any S3 API: AWS, ministack, LocalStack, moto)."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from ..ports import BlobNotFound

_MISSING = {"NoSuchKey", "404", "NotFound"}


class S3BlobStore:
    def __init__(self, client: Any, bucket: str) -> None:
        self._s3 = client
        self.bucket = bucket

    def put(self, key: str, data: bytes, content_type: str = "application/dicom") -> None:
        self._s3.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)

    def get(self, key: str) -> bytes:
        try:
            response = self._s3.get_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _MISSING:
                raise BlobNotFound(key) from None
            raise
        return response["Body"].read()  # type: ignore[no-any-return]

    def copy(self, source_key: str, target_key: str) -> None:
        try:
            self._s3.copy_object(
                Bucket=self.bucket,
                Key=target_key,
                CopySource={"Bucket": self.bucket, "Key": source_key},
                ContentType="application/dicom",
                MetadataDirective="REPLACE",
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _MISSING:
                raise BlobNotFound(source_key) from None
            raise

    def delete(self, key: str) -> None:
        self._s3.delete_object(Bucket=self.bucket, Key=key)
