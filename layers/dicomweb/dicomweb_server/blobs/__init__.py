"""The ``BlobStore`` port's implementations: where objects live in the bucket (``keys``), Amazon S3
(``s3``) and an in-memory store for tests and ``make dev`` (``memory``)."""
