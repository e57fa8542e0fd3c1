"""Ingest (PS3.18 §10.5 STOW-RS and the S3 drop): the one indexing path (``ingest``), STOW-RS
requests and responses (``stow``), instances composed from metadata plus bulk data (``compose``)
and dropped files (``drop``)."""
