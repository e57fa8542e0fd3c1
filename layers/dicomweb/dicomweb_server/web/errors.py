"""The one place where errors become HTTP answers: every error, ours or Starlette's, is the same
JSON shape ``{"status", "error", "message"}`` with the headers that belong to it (Allow,
Retry-After). Paths with no resource are a 404 and undeclared methods a 405, in our words, not
API Gateway's ``403 Missing Authentication Token``."""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import Response

from ..errors import DicomwebError, MethodNotAllowed, NotFound
from ..logsafe import exception_summary
from .http import json_response
from .resources import RESOURCES, allowed_methods, resource_of

log = logging.getLogger("dicomweb")

_REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    409: "Conflict",
    410: "Gone",
    413: "Payload Too Large",
    415: "Unsupported Media Type",
    416: "Range Not Satisfiable",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
#: Every method the catch-all route takes (Starlette routes need a list).
ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT"]


def error_body(status: int, message: str) -> dict[str, object]:
    return {"status": status, "error": _REASONS.get(status, "Error"), "message": message}


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return json_response(error_body(status, message), status, "application/json", headers=headers)


async def dicomweb_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DicomwebError)
    if exc.status >= 500:
        log.error("storage error", extra={"method": request.method, "status": exc.status, **exception_summary(exc)})
    return error_response(exc.status, exc.message, exc.headers())


async def http_error(request: Request, exc: Exception) -> Response:
    status = int(getattr(exc, "status_code", 500))
    return error_response(status, str(getattr(exc, "detail", "")), dict(getattr(exc, "headers", None) or {}))


async def unexpected(request: Request, exc: Exception) -> Response:
    log.error("unhandled error", extra={"method": request.method, **exception_summary(exc)})
    return error_response(500, "internal error; the server log has the details")


def no_route(request: Request) -> Response:
    """The last route of every app: a resource this app does not serve with this method."""
    path = request.url.path
    template = resource_of(path)
    if template is None:
        raise NotFound(f"no DICOMweb resource at {path}")
    allow = allowed_methods(template)
    if request.method == "OPTIONS":
        return Response(status_code=204, headers={"Allow": ", ".join(allow)})
    if request.method in allow:
        service = RESOURCES[template].get(request.method) or RESOURCES[template].get("GET", "")
        raise NotFound(f"{request.method} {path} is served by the {service} function, not by this one")
    raise MethodNotAllowed(f"{request.method} is not allowed on {path}; allowed: {', '.join(allow)}", allow=allow)
