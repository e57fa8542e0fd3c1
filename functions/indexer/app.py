"""Lambda composition root for the S3-drop indexer (S3 ObjectCreated under incoming/)."""

from dicomweb_server.web.s3_entry import s3_handler

handler = s3_handler()
