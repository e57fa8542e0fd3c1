"""HTTP layer: a Starlette app factory (``create_app``), one route module per service, and the
Lambda entry point (``lambda_entry``, the only module that imports Mangum)."""

from .app import create_app

__all__ = ["create_app"]
