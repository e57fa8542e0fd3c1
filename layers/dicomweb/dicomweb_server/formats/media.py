"""Media types: parsing Content-Type and Accept (RFC 9110 §8.3, §12.5.1) for DICOMweb (PS3.18 §8.7).

Parsing and matching live here, with the one negotiation shared by search results and metadata
(``negotiate_dicom_model``); which representations a retrieve resource offers is
``retrieve.negotiation``, the Store Instances Response's is ``store.stow``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import BadRequest, NotAcceptable

DICOM = "application/dicom"
DICOM_JSON = "application/dicom+json"
DICOM_XML = "application/dicom+xml"
JSON = "application/json"
MULTIPART_RELATED = "multipart/related"
OCTET_STREAM = "application/octet-stream"
#: Spellings of JPEG seen in Accept headers and parts; ``image/dicom+jpeg`` is not standard but in use.
JPEG_TYPES = frozenset({"image/jpeg", "image/dicom+jpeg", "image/jpg", "image/pjpeg"})
#: Rendered image types (PS3.18 §8.7.4) and their Pillow format names.
RENDERED_TYPES = {"image/jpeg": "JPEG", "image/png": "PNG", "image/gif": "GIF"}


@dataclass(frozen=True)
class MediaType:
    """A media range with its parameters (names lower-cased, values unquoted) and quality."""

    type: str
    params: dict[str, str] = field(default_factory=dict)
    q: float = 1.0

    @property
    def main(self) -> str:
        return self.type.split("/", 1)[0]

    def param(self, name: str) -> str | None:
        return self.params.get(name)

    def covers(self, concrete: str) -> bool:
        """True when this (possibly wildcard) range covers the concrete type ``concrete``."""
        if self.type in ("*/*", "*"):
            return True
        if self.type.endswith("/*"):
            return concrete.split("/", 1)[0] == self.main
        return self.type == concrete

    def __str__(self) -> str:
        parts = [self.type] + [f"{k}={_quote(v)}" for k, v in self.params.items()]
        return "; ".join(parts)


def _quote(value: str) -> str:
    if value and all(c.isalnum() or c in "!#$%&'*+-.^_`|~" for c in value):
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _split_outside_quotes(text: str, sep: str) -> list[str]:
    out, buf, quoted, escaped = [], [], False, False
    for ch in text:
        if escaped:
            buf.append(ch)
            escaped = False
        elif ch == "\\" and quoted:
            buf.append(ch)
            escaped = True
        elif ch == '"':
            buf.append(ch)
            quoted = not quoted
        elif ch == sep and not quoted:
            out.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
    if quoted:
        raise BadRequest(f"unbalanced quotes in media type {text!r}")
    out.append("".join(buf))
    return out


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        inner = value[1:-1]
        out, escaped = [], False
        for ch in inner:
            if escaped:
                out.append(ch)
                escaped = False
            elif ch == "\\":
                escaped = True
            else:
                out.append(ch)
        return "".join(out)
    return value


def parse_media_type(text: str, *, header: str = "Content-Type") -> MediaType:
    """Parse one media type such as ``multipart/related; type="application/dicom"; boundary=x``."""
    pieces = _split_outside_quotes(text, ";")
    mtype = pieces[0].strip().lower()
    if mtype == "*":
        mtype = "*/*"
    if "/" not in mtype or not all(mtype.split("/", 1)):
        raise BadRequest(f"{header}: {text.strip()!r} is not a media type (expected type/subtype)")
    params: dict[str, str] = {}
    q = 1.0
    for piece in pieces[1:]:
        if not piece.strip():
            continue
        if "=" not in piece:
            raise BadRequest(f"{header}: parameter {piece.strip()!r} has no value")
        name, value = piece.split("=", 1)
        name = name.strip().lower()
        value = _unquote(value)
        if name == "q":
            try:
                q = float(value)
            except ValueError as exc:
                raise BadRequest(f"{header}: q={value!r} is not a number") from exc
            if not 0.0 <= q <= 1.0:
                raise BadRequest(f"{header}: q={value} is outside 0..1")
            continue
        params[name] = value
    return MediaType(mtype, params, q)


def parse_accept(header: str | None, *, keep_refusals: bool = False) -> list[MediaType]:
    """Parse an Accept header into media ranges, best first (stable for equal q).

    An absent or empty header is ``*/*``. Ranges with q=0 (they say "not this") are dropped unless
    ``keep_refusals``: then they stay, last, for a negotiation that weighs the most specific range.
    """
    if header is None or not header.strip():
        return [MediaType("*/*")]
    ranges = [parse_media_type(p, header="Accept") for p in _split_outside_quotes(header, ",") if p.strip()]
    if not keep_refusals:
        ranges = [r for r in ranges if r.q > 0]
    return sorted(ranges, key=lambda r: -r.q)


def negotiate_dicom_model(accept: str | None, what: str) -> str:
    """JSON (``application/dicom+json`` / ``application/json``) or multipart XML
    (``multipart/related; type="application/dicom+xml"``) for QIDO-RS results and WADO-RS metadata.
    Returns the chosen media type; JSON when the client accepts anything."""
    for r in parse_accept(accept):
        if r.type in (DICOM_JSON, JSON):
            return r.type
        if r.type == MULTIPART_RELATED and (r.param("type") or "").lower() == DICOM_XML:
            return DICOM_XML
        if r.type in ("*/*", "application/*"):
            return DICOM_JSON
    raise NotAcceptable(
        f"cannot satisfy Accept: {accept}; {what} is available as {DICOM_JSON}, {JSON} "
        f'or multipart/related; type="{DICOM_XML}"'
    )
