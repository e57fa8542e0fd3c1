"""An OpenAPI 3.1 description of the API, generated from the route table (``resources.RESOURCES``),
so it lists every resource and method the server routes and cannot drift from it.

It describes the path parameters (UIDs, frame lists, tag paths), the main QIDO-RS query
parameters, the media types each operation produces or takes, and the API-key header. It is what
the HTTP fuzz tests (schemathesis) generate requests from; ``scripts/openapi.py`` writes it to a file.
"""

from __future__ import annotations

import re
from typing import Any

from ..formats.media import DICOM, DICOM_JSON, DICOM_XML, JPEG_TYPES, JSON, MULTIPART_RELATED, OCTET_STREAM
from ..search.query import MAX_VALUE
from .resources import RESOURCES

_UID = {
    "type": "string",
    "pattern": r"^[0-9]+(\.[0-9]+)*$",
    "maxLength": 64,
    "description": "a DICOM UID: digits and dots, at most 64 characters",
}
_PATH_PARAMS: dict[str, dict[str, Any]] = {
    "study": {"description": "StudyInstanceUID", "schema": _UID},
    "series": {"description": "SeriesInstanceUID", "schema": _UID},
    "instance": {"description": "SOPInstanceUID", "schema": _UID},
    "frames": {
        "description": "frame numbers, from 1, separated by commas",
        "schema": {"type": "string", "pattern": r"^[1-9][0-9]*(,[1-9][0-9]*)*$"},
    },
    "session": {"description": "an upload session's id (from POST /uploads)", "schema": {"type": "string"}},
    "file": {"description": "a file's number in its upload session, from 1", "schema": {"type": "integer"}},
    "tagpath": {
        "description": "the bulk data element's tag path (e.g. 7FE00010, or 00540016/0/00181072 in a sequence)",
        "schema": {"type": "string"},
    },
}
_PATH_PARAM = re.compile(r"{(\w+)}")

#: Matching keys per search level (a selection of the searchable attributes, by keyword).
_STUDY_KEYS = (
    "PatientName", "PatientID", "StudyDate", "StudyTime", "AccessionNumber", "ModalitiesInStudy",
    "StudyInstanceUID", "ReferringPhysicianName", "StudyDescription", "StudyID",
)  # fmt: skip
_SERIES_KEYS = ("Modality", "SeriesInstanceUID", "SeriesNumber", "SeriesDescription")
_INSTANCE_KEYS = ("SOPInstanceUID", "SOPClassUID", "InstanceNumber")
_KEY_SCHEMAS: dict[str, dict[str, Any]] = {
    "StudyDate": {"type": "string", "maxLength": 17, "description": "YYYYMMDD, or a range a-b, -b, a-"},
    "StudyTime": {"type": "string", "maxLength": 27, "description": "HHMMSS.FFFFFF, or a range"},
    "SeriesNumber": {"type": "integer"},
    "InstanceNumber": {"type": "integer"},
}
_SEARCH_KEYS: dict[str, tuple[str, ...]] = {
    "/studies": _STUDY_KEYS,
    "/series": _STUDY_KEYS + _SERIES_KEYS,
    "/instances": _STUDY_KEYS + _SERIES_KEYS + _INSTANCE_KEYS,
    "/studies/{study}/series": _SERIES_KEYS,
    "/studies/{study}/instances": _SERIES_KEYS + _INSTANCE_KEYS,
    "/studies/{study}/series/{series}/instances": _INSTANCE_KEYS,
}
_CONTROL_PARAMS: list[dict[str, Any]] = [
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1}, "description": "matches per page"},
    {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0}, "description": "matches to skip"},
    {
        "name": "includefield",
        "in": "query",
        "description": "attributes to return besides the defaults (keywords or tags, comma-separated, or all)",
        "schema": {"type": "array", "items": {"type": "string"}},
        "style": "form",
        "explode": True,
    },
    {"name": "fuzzymatching", "in": "query", "schema": {"type": "boolean"}},
    {
        "name": "continuation",
        "in": "query",
        "schema": {"type": "string"},
        "description": "the token of a next link (Link: rel=next); it only goes with the same query",
    },
]
_VIEWPORT: dict[str, Any] = {
    "name": "viewport",
    "in": "query",
    "schema": {"type": "string"},
    "description": "columns,rows (and optionally a region)",
}
_ACCEPT_PARAM: dict[str, Any] = {
    "name": "accept",
    "in": "query",
    "schema": {"type": "string"},
    "description": "the media type, instead of the Accept header",
}
_RENDER_PARAMS: list[dict[str, Any]] = [
    {"name": "window", "in": "query", "schema": {"type": "string"}, "description": "center,width,function"},
    {"name": "quality", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100}},
    _VIEWPORT,
]
_WADO_URI_PARAMS: list[dict[str, Any]] = [
    {"name": "requestType", "in": "query", "required": True, "schema": {"type": "string", "enum": ["WADO"]}},
    {"name": "studyUID", "in": "query", "required": True, "schema": _UID},
    {"name": "seriesUID", "in": "query", "required": True, "schema": _UID},
    {"name": "objectUID", "in": "query", "required": True, "schema": _UID},
    {"name": "contentType", "in": "query", "schema": {"type": "string"}},
    {"name": "frameNumber", "in": "query", "schema": {"type": "integer", "minimum": 1}},
    {"name": "rows", "in": "query", "schema": {"type": "integer", "minimum": 1}},
    {"name": "columns", "in": "query", "schema": {"type": "integer", "minimum": 1}},
    {"name": "windowCenter", "in": "query", "schema": {"type": "number"}},
    {"name": "windowWidth", "in": "query", "schema": {"type": "number"}},
    {"name": "transferSyntax", "in": "query", "schema": _UID},
]
_ERROR = {
    "description": "what was wrong, as JSON",
    "content": {
        JSON: {
            "schema": {
                "type": "object",
                "properties": {
                    "status": {"type": "integer"},
                    "error": {"type": "string"},
                    "message": {"type": "string"},
                },
                "required": ["status", "error", "message"],
            }
        }
    },
}
_ANY: dict[str, Any] = {"schema": {}}
_DICOM_MODEL = {DICOM_JSON: _ANY, JSON: _ANY, f'{MULTIPART_RELATED}; type="{DICOM_XML}"': _ANY}
_MULTIPART_DICOM = {f'{MULTIPART_RELATED}; type="{DICOM}"': _ANY}
_IMAGES = {"image/jpeg": _ANY, "image/png": _ANY}


def _parameter(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, **_PATH_PARAMS[name]}


def _responses(path: str, method: str) -> tuple[str, dict[str, Any]]:
    """(summary, responses) of one operation, from the shape of its path."""
    if path.startswith("/uploads"):
        return "Upload sessions (presigned S3 uploads, docs/uploads.md)", {
            "200": {"description": "the session's Store Instances Response", "content": {JSON: _ANY}},
            "201": {"description": "a session with presigned URLs per file", "content": {JSON: _ANY}},
            "202": {"description": "files still pending (Retry-After)", "content": {JSON: _ANY}},
            "409": _ERROR,
        }
    if method == "POST":
        return "STOW-RS: store instances", {
            "200": {"description": "every instance stored", "content": {DICOM_JSON: _ANY}},
            "202": {"description": "some instances stored, the others failed", "content": {DICOM_JSON: _ANY}},
            "409": _ERROR,
        }
    if path in _SEARCH_KEYS:
        return "QIDO-RS: search", {
            "200": {"description": "the matches", "content": _DICOM_MODEL},
            "204": {"description": "nothing matched"},
        }
    if path == "/wadouri":
        return "WADO-URI: one instance", {
            "200": {"description": "the instance", "content": {DICOM: _ANY, **_IMAGES}},
        }
    if path.endswith("/metadata"):
        return "WADO-RS: metadata", {"200": {"description": "the metadata", "content": _DICOM_MODEL}}
    if path.endswith("/rendered"):
        return "WADO-RS: rendered", {
            "200": {"description": "a consumer image", "content": {**_IMAGES, "image/gif": _ANY}}
        }
    if path.endswith("/thumbnail"):
        return "WADO-RS: thumbnail", {"200": {"description": "a small consumer image", "content": _IMAGES}}
    if "/frames/" in path:
        content = {f'{MULTIPART_RELATED}; type="{OCTET_STREAM}"': _ANY, OCTET_STREAM: _ANY}
        content.update({f'{MULTIPART_RELATED}; type="{t}"': _ANY for t in sorted(JPEG_TYPES)})
        return "WADO-RS: frames", {"200": {"description": "the frames' pixel data", "content": content}}
    if "/bulkdata/" in path:
        return "WADO-RS: bulk data", {
            "200": {"description": "the element's value", "content": {OCTET_STREAM: _ANY}},
            "206": {"description": "the requested range", "content": {OCTET_STREAM: _ANY}},
            "416": _ERROR,
        }
    return "WADO-RS: instances", {
        "200": {"description": "the instances", "content": {**_MULTIPART_DICOM, DICOM: _ANY}},
    }


def _query_parameters(path: str) -> list[dict[str, Any]]:
    if path in _SEARCH_KEYS:
        keys = [
            {"name": key, "in": "query", "schema": _KEY_SCHEMAS.get(key, {"type": "string", "maxLength": MAX_VALUE})}
            for key in _SEARCH_KEYS[path]
        ]
        return keys + _CONTROL_PARAMS
    if path.endswith("/rendered"):
        return _RENDER_PARAMS + [_ACCEPT_PARAM]
    if path.endswith("/thumbnail"):
        return [_VIEWPORT, _ACCEPT_PARAM]
    if path == "/wadouri":
        return _WADO_URI_PARAMS
    return []


def _operation(path: str, method: str, service: str) -> dict[str, Any]:
    summary, responses = _responses(path, method)
    op: dict[str, Any] = {
        "operationId": f"{method.lower()}_{'_'.join(_PATH_PARAM.sub(r'\1', path).strip('/').split('/'))}",
        "summary": summary,
        "tags": [service],
        "responses": {
            **responses,
            "400": _ERROR,
            "401": _ERROR,
            "403": _ERROR,
            "404": _ERROR,
            "406": _ERROR,
            "413": _ERROR,
            "503": _ERROR,
        },
    }
    params = _query_parameters(path) if method == "GET" else []
    if params:
        op["parameters"] = params
    if method == "POST" and path == "/uploads":
        op["requestBody"] = {"required": True, "content": {JSON: {"schema": {"type": "object"}}}}
        op["responses"]["415"] = _ERROR
    elif method == "POST" and not path.startswith("/uploads"):
        op["requestBody"] = {
            "required": True,
            "content": {
                f'{MULTIPART_RELATED}; type="{DICOM}"': {"schema": {"type": "string", "format": "binary"}},
                f'{MULTIPART_RELATED}; type="{DICOM_JSON}"': {"schema": {"type": "string", "format": "binary"}},
                f'{MULTIPART_RELATED}; type="{DICOM_XML}"': {"schema": {"type": "string", "format": "binary"}},
            },
        }
        op["responses"]["415"] = _ERROR
    return op


def describe(server_url: str = "/", *, title: str = "Serverless DICOMweb") -> dict[str, Any]:
    """The OpenAPI 3.1 document of every route in ``RESOURCES`` (PS3.18 §10: QIDO, WADO, STOW)."""
    paths: dict[str, Any] = {}
    for path, methods in RESOURCES.items():
        item: dict[str, Any] = {}
        names = _PATH_PARAM.findall(path)
        if names:
            item["parameters"] = [_parameter(name) for name in names]
        for method, service in methods.items():
            item[method.lower()] = _operation(path, method, service)
        paths[path] = item
    return {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": "1.0.0",
            "description": "DICOMweb (PS3.18): QIDO-RS search, WADO-RS and WADO-URI retrieve, STOW-RS store.",
        },
        "servers": [{"url": server_url}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "apiKey": {"type": "apiKey", "in": "header", "name": "apikey"},
                "xApiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
            }
        },
        "security": [{"apiKey": []}, {"xApiKey": []}],
    }
