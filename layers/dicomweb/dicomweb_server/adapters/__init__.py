"""Implementations of ``dicomweb_server.ports``: S3, DynamoDB and in-memory (tests and ``make dev``)."""
