"""The only Lambda-aware code: the API Gateway entry (Mangum and powertools, ``api``), the S3 event
entry of the indexer (``s3_events``), and what both build once per cold start (``runtime``).

``s3_events`` imports no web module: the indexer's cold start loads neither Starlette nor Mangum."""
