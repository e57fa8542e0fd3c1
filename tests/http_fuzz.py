"""What the HTTP fuzz tests (tests/unit/test_http_fuzz.py in process, tests/integration/test_http_fuzz.py
against the deployed stack) share: the schemathesis schema built from ``web.openapi``, a serializer
that wraps each generated STOW-RS body in a ``multipart/related`` part, and the step that points a
case at stored instances."""

from __future__ import annotations

from typing import Any

import schemathesis
from schemathesis import GenerationMode

from dicomweb_server.web.openapi import describe
from tests.corpus import Instance

#: The boundary of every generated STOW-RS body (``content_type`` adds it to the case's media type).
BOUNDARY = "fuzz-boundary"


@schemathesis.serializer("multipart/related")
def _multipart_related(ctx: Any, value: Any) -> bytes:
    """One part holding the generated value, typed as the request's ``type`` parameter says."""
    data = value if isinstance(value, bytes) else str(value).encode("utf-8", "surrogatepass")
    media = ctx.case.media_type or ""
    part_type = media.split('type="', 1)[1].split('"', 1)[0] if 'type="' in media else "application/dicom"
    return f"--{BOUNDARY}\r\nContent-Type: {part_type}\r\n\r\n".encode() + data + f"\r\n--{BOUNDARY}--\r\n".encode()


def schema(base_url: str | None = None) -> Any:
    loaded = schemathesis.openapi.from_dict(describe(base_url or "/"))
    loaded.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
    return loaded


def headers_for(case: Any, api_key: str | None) -> dict[str, str]:
    out = {"apikey": api_key} if api_key else {}
    if case.media_type and case.media_type.startswith("multipart/related"):
        out["Content-Type"] = f"{case.media_type}; boundary={BOUNDARY}"
    return out


def use_stored(case: Any, inst: Instance) -> None:
    """Point the case's UIDs at a stored instance (otherwise nearly every case is a 404)."""
    uids = {"study": inst.study_uid, "series": inst.series_uid, "instance": inst.sop_uid}
    params = case.path_parameters if isinstance(case.path_parameters, dict) else {}
    for name in [n for n in params if n in uids]:
        params[name] = uids[name]
    if case.operation.path == "/wadouri" and isinstance(case.query, dict):
        case.query.update(studyUID=inst.study_uid, seriesUID=inst.series_uid, objectUID=inst.sop_uid)
