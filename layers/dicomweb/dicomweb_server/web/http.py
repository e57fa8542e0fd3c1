"""Request helpers shared by the route modules: base URL, UIDs from the path, JSON responses."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

from ..settings import Settings
from ..uids import validate_uid

_NAMES = {"study": "Study Instance UID", "series": "Series Instance UID", "instance": "SOP Instance UID"}


def path_uid(request: Request, name: str) -> str:
    return validate_uid(str(request.path_params[name]), _NAMES.get(name, name))


_LOOPBACK = {"127.0.0.1", "localhost", "[::1]"}
#: host, or host:port, or [IPv6]:port (RFC 3986 §3.2.2), and nothing else.
_HOST = re.compile(r"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)(?::[0-9]{1,5})?$")
_PREFIX = re.compile(r"^(?:/[A-Za-z0-9._~!$&'()*+,;=:@%-]*)*$")
_DEFAULT_PORT = {"http": "80", "https": "443"}


def _first_forwarded(value: str) -> dict[str, str]:
    """The first element of an RFC 7239 ``Forwarded`` header (the hop nearest the client), as
    lower-cased names and unquoted values."""
    from ..formats.media import _split_outside_quotes, _unquote

    first = _split_outside_quotes(value, ",")[0]
    pairs: dict[str, str] = {}
    for pair in _split_outside_quotes(first, ";"):
        name, sep, val = pair.partition("=")
        if sep and name.strip():
            pairs.setdefault(name.strip().lower(), _unquote(val))
    return pairs


def _first_value(value: str | None) -> str | None:
    """The first of a comma-separated X-Forwarded-* list (the proxy nearest the client)."""
    if value is None:
        return None
    return value.split(",", 1)[0].strip() or None


def _scheme(value: str | None) -> str | None:
    value = (value or "").strip().lower()
    return value if value in ("http", "https") else None


def _host(value: str | None) -> str | None:
    value = (value or "").strip()
    return value if value and _HOST.match(value) else None


def base_url(request: Request, settings: Settings) -> str:
    """The absolute DICOMweb base URL as the client addressed it (RetrieveURL, Content-Location, ...).

    In order: the ``PUBLIC_BASE_URL`` setting (custom domains, CloudFront); else the first element
    of RFC 7239 ``Forwarded`` (``proto``, ``host``); else ``X-Forwarded-Proto``, ``-Host``,
    ``-Port`` and ``-Prefix`` (first value of each); else ``Host``. A value that is not a host or a
    scheme is ignored. The scheme, when no proxy header names it, is the request's own: https for
    an API Gateway event (Mangum's default, as API Gateway serves HTTPS only), http from a local
    emulator on loopback, and the server's for uvicorn.

    Behind API Gateway the stage (and any custom base path) is not part of the routed path, so it
    is recovered from the Lambda event: ``requestContext.path`` ends with the routed ``path``.
    A local emulator reached on loopback serves the API under ``/_aws/execute-api/{apiId}``
    (ministack, LocalStack), which the event does not show: it is added back from ``apiId``.
    ``X-Forwarded-Prefix`` replaces the prefix (a proxy that maps paths says where it mounted us).
    Under the Lambda Web Adapter there is no event in the scope: the adapter passes the event's
    request context as the ``x-amzn-request-context`` header, and the routed path is the request's.
    """
    if settings.public_base_url:
        return settings.public_base_url.rstrip("/")
    headers = request.headers
    forwarded = _first_forwarded(headers["forwarded"]) if "forwarded" in headers else {}
    proto = _scheme(forwarded.get("proto")) or _scheme(_first_value(headers.get("x-forwarded-proto")))
    proxied_host = _host(forwarded.get("host")) or _host(_first_value(headers.get("x-forwarded-host")))
    host = proxied_host or _host(headers.get("host")) or "localhost"
    event = request.scope.get("aws.event") or _adapter_event(request)
    prefix = request.scope.get("root_path", "")
    if event:
        context = event.get("requestContext") or {}
        routed = str(event.get("path") or "")
        full = str(context.get("path") or "")
        if routed and full.endswith(routed):
            prefix = full[: len(full) - len(routed)]
        elif full and not routed:
            prefix = full.rstrip("/")
        if not proxied_host and host.rsplit(":", 1)[0] in _LOOPBACK and context.get("apiId"):
            prefix = f"/_aws/execute-api/{context['apiId']}{prefix}"
        # API Gateway always adds X-Forwarded-Proto; an event without it comes from an emulator
        if proto is None and not proxied_host:
            host = _with_emulator_port(host)
        proto = proto or "http"
    proto = proto or _scheme(request.url.scheme) or "https"
    port = _first_value(headers.get("x-forwarded-port"))
    has_port = ":" in host.rsplit("]", 1)[-1]
    if proxied_host and not forwarded.get("host") and port and port.isdigit() and not has_port:
        host = host if port == _DEFAULT_PORT[proto] else f"{host}:{port}"
    if "x-forwarded-prefix" in headers:
        forwarded_prefix = _first_value(headers["x-forwarded-prefix"]) or ""
        if forwarded_prefix.strip("/") == "":
            prefix = ""
        elif _PREFIX.match(forwarded_prefix):
            prefix = "/" + forwarded_prefix.strip("/")
    return f"{proto}://{host}{prefix}".rstrip("/")


def _with_emulator_port(host: str) -> str:
    """A loopback Host without a port, in an emulator's event, is the emulator's own address with
    the port left out by the client (the Python dicomweb-client sends ``Host: 127.0.0.1`` whatever
    the port): the functions' ``AWS_ENDPOINT_URL`` (set by the local cloud) says which port."""
    if host not in _LOOPBACK:
        return host
    endpoint = urlsplit(os.environ.get("AWS_ENDPOINT_URL", ""))
    if endpoint.hostname in {"127.0.0.1", "localhost", "::1"} and endpoint.port:
        return f"{host}:{endpoint.port}"
    return host


def _adapter_event(request: Request) -> dict[str, Any]:
    """The parts of the Lambda event the Web Adapter forwards: its request context, and the path."""
    text = request.headers.get("x-amzn-request-context")
    if not text:
        return {}
    try:
        context = json.loads(text)
    except ValueError:
        return {}
    return {"requestContext": context, "path": request.url.path} if isinstance(context, dict) else {}


def json_response(
    body: Any, status: int = 200, media_type: str = "application/dicom+json", headers: dict[str, str] | None = None
) -> Response:
    payload = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return Response(payload, status_code=status, media_type=media_type, headers=headers)


def dicom_model_response(datasets: list[Any], media: str, headers: dict[str, str] | None = None) -> Response:
    """A list of datasets as a JSON array, or as multipart/related XML parts (PS3.18 §8.7.3.2)."""
    if media == "application/dicom+xml":
        from ..formats import dicom_xml, multipart

        body, content_type = multipart.encode(dicom_xml.to_xml_multipart_parts(datasets), "application/dicom+xml")
        return Response(body, headers={**(headers or {}), "Content-Type": content_type})
    return json_response(datasets, media_type=media, headers=headers)


def warning_header(messages: list[str], request: Request) -> dict[str, str]:
    if not messages:
        return {}
    agent = _header_text(request.headers.get("host", "dicomweb")).replace(" ", "")
    return {"Warning": ", ".join(f'299 {agent} "{_header_text(m).replace(chr(34), chr(39))}"' for m in messages)}


def _header_text(text: str) -> str:
    """Printable ASCII only: a message can quote bytes of the client's input, and a header value
    outside ASCII breaks clients (and HTTP/1.1 field syntax)."""
    return "".join(c if " " <= c <= "~" else "?" for c in text)


def accepts_gzip(request: Request) -> bool:
    """Whether ``Accept-Encoding`` allows gzip (RFC 9110 §12.5.3: ``gzip`` or ``*`` with q > 0)."""
    header = request.headers.get("accept-encoding", "")
    allowed: dict[str, float] = {}
    for part in header.split(","):
        name, _, params = part.strip().partition(";")
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if name.strip():
            allowed[name.strip().lower()] = q
    if "gzip" in allowed or "x-gzip" in allowed:
        return max(allowed.get("gzip", 0.0), allowed.get("x-gzip", 0.0)) > 0
    return allowed.get("*", 0.0) > 0


def gzip_etag(etag: str) -> str:
    """The entity tag of the gzip-encoded form of a representation tagged ``etag`` (a content
    coding is another representation, so a strong tag must differ)."""
    return etag[:-1] + '-gz"'


def not_modified(request: Request, etag: str) -> bool:
    """``If-None-Match`` names this representation (either encoding of it), or is ``*``
    (RFC 9110 §13.1.2: weak comparison)."""
    header = request.headers.get("if-none-match")
    if not header:
        return False
    if header.strip() == "*":
        return True
    tags = {t.strip().removeprefix("W/") for t in header.split(",")}
    return etag in tags or gzip_etag(etag) in tags


def encoded_response(
    request: Request,
    *,
    identity: Callable[[], bytes],
    gzipped: Callable[[], bytes],
    content_type: str,
    etag: str,
    check: Callable[[int, bool], None],
) -> Response:
    """A JSON or XML answer, gzip-compressed when the client accepts it, with its ETag and
    ``Vary: Accept-Encoding``; a 304 when ``If-None-Match`` names it. ``check(length, gzipped)``
    is the size policy's decision on what is actually sent."""
    if not_modified(request, etag):
        return not_modified_response(request, etag)
    use_gzip = accepts_gzip(request)
    headers = {"ETag": gzip_etag(etag) if use_gzip else etag, "Vary": "Accept-Encoding"}
    body = gzipped() if use_gzip else identity()
    check(len(body), use_gzip)
    if use_gzip:
        headers["Content-Encoding"] = "gzip"
    return Response(body, headers={**headers, "Content-Type": content_type})


def not_modified_response(request: Request, etag: str) -> Response:
    """304 for a representation tagged ``etag`` (its gzip form's tag when the client takes gzip)."""
    tag = gzip_etag(etag) if accepts_gzip(request) else etag
    return Response(status_code=304, headers={"ETag": tag, "Vary": "Accept-Encoding"})
