"""Serverless DICOMweb: the framework-free domain package shared by every Lambda function.

Modules, one concept each:

- ``errors``: the one error vocabulary (``DicomwebError`` and its HTTP statuses)
- ``settings``: configuration parsed once at cold start
- ``uids``: UID validation (PS3.5 §9)
- ``media``: Accept / Content-Type parsing and negotiation (PS3.18 §8.7)
- ``multipart``: ``multipart/related`` decoding and encoding (RFC 2387)
- ``dicom_json``: dataset <-> DICOM JSON (PS3.18 §F) on top of pydicom
- ``records``: what is indexed about an instance (study / series / instance attributes)
- ``qido``: QIDO-RS query parsing and attribute matching (PS3.18 §10.6, PS3.4 §C.2.2.2)
- ``ingest``: the one indexing code path shared by STOW-RS and S3-drop
- ``stow``: STOW-RS (PS3.18 §10.5)
- ``wado``: WADO-RS retrieve (PS3.18 §10.4)
- ``ports``: the storage interfaces (``BlobStore``, ``MetadataIndex``)
- ``adapters``: S3, DynamoDB and in-memory implementations of the ports
- ``web``: the Starlette app factory and the Lambda entry point (the only Mangum import)
"""
