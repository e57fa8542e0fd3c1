"""Serverless DICOMweb: the package shared by every Lambda function, one subpackage per capability.

Small shared core (no framework, no boto3):

- ``errors``: the one error vocabulary (``DicomwebError`` and its HTTP statuses)
- ``settings``: configuration parsed once at cold start
- ``uids``: UID validation (PS3.5 §9)
- ``records``: what is indexed about an instance (study / series / instance attributes)
- ``ports``: the storage interfaces (``BlobStore``, ``MetadataIndex``)
- ``logsafe``: exceptions logged without patient data

Capabilities:

- ``formats``: media types, multipart, DICOM JSON, DICOM XML, JPEG headers
- ``search``: QIDO-RS parsing, matching, ordering and results (PS3.18 §10.6)
- ``retrieve``: WADO-RS and WADO-URI: negotiation, instances, metadata, frames, rendering, size policy
- ``store``: STOW-RS, composing instances from metadata, the one ingest path, the S3 drop
- ``index``: the DynamoDB key layout and the DynamoDB / in-memory ``MetadataIndex``
- ``blobs``: the bucket's key layout and the S3 / in-memory ``BlobStore``
- ``web``: the Starlette app and its routes (imports the domain; the domain never imports it)
- ``aws``: the only Lambda-aware code (Mangum and powertools; the S3 event entry)

Imports point down this list's dependency order: ``aws`` → ``web`` → capabilities → core.
"""
