"""``create_app``: the one Starlette application, with only the routes of the services asked for.

The same app runs in Lambda (through ``aws.api``), under uvicorn (``make dev``) and in tests.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import DicomwebError
from ..ports import BlobStore, MetadataIndex
from ..settings import Settings
from ..store.uploads import UploadPorts
from . import errors
from .security import KeyProvider, secure
from .services import Services

if TYPE_CHECKING:
    from ..store.parallel import Parser

SERVICES = ("search", "retrieve", "render", "store")
#: Route modules per service, imported only for the services an app serves (a function's cold start
#: loads its own routes only: search never imports the retrieve or store modules).
_ROUTES = {
    "search": ("search_routes",),
    "retrieve": ("retrieve_routes", "pixel_routes"),
    "render": ("rendered_routes",),
    "store": ("store_routes", "upload_routes"),
}


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
    uploads: UploadPorts | None = None,
    parser: Parser | None = None,
) -> ASGIApp:
    """Build the DICOMweb ASGI app serving ``services`` (any of search, retrieve, render, store).

    ``api_key`` returns the key every request must present (None or empty: no key needed); by
    default it is ``settings.api_key``. ``uploads``: the upload sessions' ports (in memory when
    not given). ``parser``: how STOW-RS parses instances (``store.parallel``; by default in the
    request's thread).
    """
    chosen = list(services)
    unknown = set(chosen) - set(SERVICES)
    if unknown:
        raise ValueError(f"unknown services {sorted(unknown)}; choose from {SERVICES}")
    if uploads is None and "store" in chosen:
        from ..blobs.uploads import MemoryUploadTargets
        from ..index.uploads import MemoryUploadSessions

        uploads = UploadPorts(MemoryUploadSessions(), MemoryUploadTargets(blobs))
    svc = Services(settings=settings, index=index, blobs=blobs, uploads=uploads, parser=parser)
    routes: list[BaseRoute] = []
    for name in chosen:
        for module in _ROUTES[name]:
            routes.extend(importlib.import_module(f"{__package__}.{module}").routes(svc))
    routes.append(Route("/{path:path}", errors.no_route, methods=errors.ALL_METHODS))
    app = Starlette(
        routes=routes,
        exception_handlers={
            DicomwebError: errors.dicomweb_error,
            HTTPException: errors.http_error,
            Exception: errors.unexpected,
        },
    )
    app.router.redirect_slashes = False
    key = api_key or (lambda: settings.api_key or None)
    return secure(_StripTrailingSlash(app), key=key, allowed_origins=settings.allowed_origins)
