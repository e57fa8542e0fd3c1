"""HTTP layer: the Starlette app factory (``create_app``) and one route module per service. It
knows nothing of Lambda (that is ``dicomweb_server.aws``)."""

from .app import create_app

__all__ = ["create_app"]
