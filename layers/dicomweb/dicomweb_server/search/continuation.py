"""The keyset continuation of a search (``docs/data-model.md``, Paging): an opaque token that
carries where the next page starts and a fingerprint of the query it belongs to.

The token is base64url of ``{"c": cursor, "o": matches still to skip, "f": fingerprint}`` (``o`` is
set when the read budget ran out while an ``offset`` was being skipped). It is only ever used as a
bound on a sort key (never as an expression). A malformed token, or one whose fingerprint is not
this query's, is a 400. The token is not signed: a client can build a well-formed one, which only
moves where its own page starts.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re

from ..errors import BadRequest
from .query import Query

#: What a cursor looks like: a posting sort key, {sort14}#{study uid}, and for a series posting
#: #{series rank} after it (``index.keys.series_rank``).
_CURSOR = re.compile(r"^[0-9]{14}#[0-9.]{1,64}(#(![0-9:]|[0-9]{12}~[0-9:])[0-9:]{0,63}~)?$")


def fingerprint(query: Query) -> str:
    """Identifies the matches of ``query`` (its level, predicates and fuzzy flag, not its paging)."""
    keyed = sorted((p.key, p.raw) for p in query.predicates)
    text = json.dumps([query.level.value, keyed, query.fuzzy], separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def encode(query: Query, cursor: str, skip: int = 0) -> str:
    raw = json.dumps({"c": cursor, "o": skip, "f": fingerprint(query)}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(token: str, query: Query) -> tuple[str, int]:
    """The cursor and the matches still to skip in ``token``, or ``BadRequest`` when the token is
    forged, garbled or stale."""
    try:
        doc = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise BadRequest("continuation is not a token this server issued") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("c"), str) or not _CURSOR.fullmatch(doc["c"]):
        raise BadRequest("continuation is not a token this server issued")
    skip = doc.get("o", 0)
    if not isinstance(skip, int) or isinstance(skip, bool) or not 0 <= skip <= 10**9:
        raise BadRequest("continuation is not a token this server issued")
    if doc.get("f") != fingerprint(query):
        raise BadRequest("continuation belongs to another query; repeat the query's keys unchanged, or start again")
    return str(doc["c"]), skip
