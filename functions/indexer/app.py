"""Lambda composition root for the S3-drop indexer (S3 ObjectCreated under incoming/)."""

from dicomweb_server.aws.s3_events import s3_handler

handler = s3_handler()
