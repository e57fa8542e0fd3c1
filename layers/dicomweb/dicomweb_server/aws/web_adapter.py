"""The retrieve function behind the Lambda Web Adapter: the same app, served by uvicorn
(``functions/retrieve/run.sh``), whose answers the adapter streams back through API Gateway
(``AWS_LWA_INVOKE_MODE=response_stream``). No Mangum and no Lambda event here: the adapter turns
each invocation into an HTTP request and passes the event's request context in the
``x-amzn-request-context`` header (``web.http.base_url`` reads the stage from it)."""

from __future__ import annotations

from starlette.types import ASGIApp

from ..settings import Settings
from ..web.app import create_app
from .api import api_key_provider
from .runtime import aws_ports


def asgi_app(service: str, settings: Settings | None = None) -> ASGIApp:
    """The ASGI app serving one DICOMweb service on the AWS storage ports."""
    settings = settings or Settings.from_env()
    index, blobs = aws_ports(settings)
    return create_app(settings, index=index, blobs=blobs, services=[service], api_key=api_key_provider(settings))
