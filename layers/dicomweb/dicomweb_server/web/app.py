"""``create_app``: the one Starlette application, with only the routes of the services asked for.

The same app runs in Lambda (through ``lambda_entry``), under uvicorn (``make dev``) and in tests.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import DicomwebError
from ..logsafe import exception_summary
from ..ports import BlobStore, MetadataIndex
from ..settings import Settings
from . import pixel_routes, retrieve_routes, search_routes, store_routes
from .http import json_response
from .security import KeyProvider, secure
from .services import Services

log = logging.getLogger("dicomweb")
SERVICES = ("search", "retrieve", "store")
_ROUTES = {
    "search": [search_routes.routes],
    "retrieve": [retrieve_routes.routes, pixel_routes.routes],
    "store": [store_routes.routes],
}
_REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    409: "Conflict",
    413: "Payload Too Large",
    415: "Unsupported Media Type",
    500: "Internal Server Error",
}


def error_body(status: int, message: str) -> dict[str, object]:
    return {"status": status, "error": _REASONS.get(status, "Error"), "message": message}


async def _dicomweb_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DicomwebError)
    return json_response(error_body(exc.status, exc.message), exc.status, "application/json")


async def _http_error(request: Request, exc: Exception) -> Response:
    status = int(getattr(exc, "status_code", 500))
    message = {
        404: f"no DICOMweb resource at {request.url.path}",
        405: f"{request.method} is not allowed on {request.url.path}",
    }.get(status, str(getattr(exc, "detail", "")))
    return json_response(error_body(status, message), status, "application/json")


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.error("unhandled error", extra={"method": request.method, **exception_summary(exc)})
    return json_response(error_body(500, "internal error; the server log has the details"), 500, "application/json")


class _StripTrailingSlash:
    """``/studies/`` is ``/studies`` (the seeds use both); no redirect, which would lose the stage."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and len(scope["path"]) > 1 and scope["path"].endswith("/"):
            scope = {**scope, "path": scope["path"].rstrip("/") or "/"}
            if "raw_path" in scope and scope["raw_path"]:
                scope["raw_path"] = scope["raw_path"].rstrip(b"/") or b"/"
        await self.app(scope, receive, send)


def create_app(
    settings: Settings,
    *,
    index: MetadataIndex,
    blobs: BlobStore,
    services: Iterable[str] = SERVICES,
    api_key: KeyProvider | None = None,
) -> ASGIApp:
    """Build the DICOMweb ASGI app serving ``services`` (any of search, retrieve, store).

    ``api_key`` returns the key every request must present (None or empty: no key needed); by
    default it is ``settings.api_key``.
    """
    chosen = list(services)
    unknown = set(chosen) - set(SERVICES)
    if unknown:
        raise ValueError(f"unknown services {sorted(unknown)}; choose from {SERVICES}")
    svc = Services(settings=settings, index=index, blobs=blobs)
    routes: list[BaseRoute] = []
    for name in chosen:
        for make_routes in _ROUTES[name]:
            routes.extend(make_routes(svc))
    app = Starlette(
        routes=routes,
        exception_handlers={DicomwebError: _dicomweb_error, HTTPException: _http_error, Exception: _unexpected},
    )
    app.router.redirect_slashes = False
    key = api_key or (lambda: settings.api_key or None)
    return secure(_StripTrailingSlash(app), key=key, allowed_origins=settings.allowed_origins)
