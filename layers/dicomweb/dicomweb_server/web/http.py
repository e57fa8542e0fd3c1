"""Request helpers shared by the route modules: base URL, UIDs from the path, JSON responses."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ..settings import Settings
from ..uids import validate_uid

_NAMES = {"study": "Study Instance UID", "series": "Series Instance UID", "instance": "SOP Instance UID"}


def path_uid(request: Request, name: str) -> str:
    return validate_uid(str(request.path_params[name]), _NAMES.get(name, name))


_LOOPBACK = {"127.0.0.1", "localhost", "[::1]"}


def base_url(request: Request, settings: Settings) -> str:
    """The absolute DICOMweb base URL as the client addressed it (for RetrieveURL and friends).

    Behind API Gateway the stage (and any custom base path) is not part of the routed path, so it
    is recovered from the Lambda event: ``requestContext.path`` ends with the routed ``path``.
    A local emulator reached on loopback serves the API under ``/_aws/execute-api/{apiId}``
    (ministack, LocalStack), which the event does not show: it is added back from ``apiId``.
    ``PUBLIC_BASE_URL`` overrides all of this (custom domains, CloudFront).
    """
    if settings.public_base_url:
        return settings.public_base_url.rstrip("/")
    headers = request.headers
    event = request.scope.get("aws.event") or {}
    host = headers.get("x-forwarded-host") or headers.get("host") or "localhost"
    proto = headers.get("x-forwarded-proto") or request.url.scheme or "https"
    prefix = request.scope.get("root_path", "")
    if event:
        context = event.get("requestContext") or {}
        routed = str(event.get("path") or "")
        full = str(context.get("path") or "")
        if routed and full.endswith(routed):
            prefix = full[: len(full) - len(routed)]
        elif full and not routed:
            prefix = full.rstrip("/")
        if host.rsplit(":", 1)[0] in _LOOPBACK and context.get("apiId"):
            prefix = f"/_aws/execute-api/{context['apiId']}{prefix}"
            proto = headers.get("x-forwarded-proto") or "http"
    return f"{proto}://{host}{prefix}".rstrip("/")


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
