"""QIDO-RS: query parsing, attribute matching and result building (PS3.18 §10.6, PS3.4 §C.2.2.2).

Matching is done here, on the stored DICOM JSON, for every backend: the index adapters only choose
which candidates to read (a driving key), so in-memory and DynamoDB searches cannot disagree.

Person names (PN) match case- and accent-insensitively. A query without ``^`` is a family name:
``THOMPSON`` finds ``THOMPSON^ALEX``. With ``^`` each given component must match the component at
the same position (``SIIM^Joe`` finds ``SIIM^JOE``) and components left out match anything.
``*`` and ``?`` are wildcards, inside a component or across the whole name (``*JOE*``).
``fuzzymatching=true`` makes every word of the query match the start of some word of the name.
Other string attributes match case-sensitively, with the same wildcards; UIDs and code strings take
comma- or backslash-separated lists; dates and times take ranges ``a-b``, ``-b``, ``a-``.
"""

from __future__ import annotations

import datetime
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from functools import cached_property
from typing import Any

from pydicom.datadict import dictionary_VR

from ..errors import BadRequest
from ..formats import dicom_json as dj
from ..records import (
    INSTANCE_DEFAULT,
    INSTANCE_KEYWORDS,
    SERIES_DEFAULT,
    SERIES_KEYWORDS,
    STUDY_DEFAULT,
    STUDY_KEYWORDS,
    DicomJson,
)
from ..uids import validate_uid
from .ordering import study_sort_text


class Level(Enum):
    STUDY = "study"
    SERIES = "series"
    INSTANCE = "instance"


MODALITIES_IN_STUDY = "00080061"
STUDY_DATE, STUDY_TIME = "00080020", "00080030"
SOP_CLASSES_IN_STUDY = "00080062"
_COMPUTED_STUDY = {
    MODALITIES_IN_STUDY: "CS",
    SOP_CLASSES_IN_STUDY: "UI",
    "00201206": "IS",
    "00201208": "IS",
    "00080056": "CS",
}
_COMPUTED_SERIES = {"00201209": "IS", "00080056": "CS"}
_COMPUTED_INSTANCE = {"00080056": "CS"}
RETRIEVE_URL = "00081190"
#: The longest matching value taken (a list of about 150 UIDs; single DICOM values are far shorter).
MAX_VALUE = 10_000
CONTROL_PARAMS = {"limit", "offset", "includefield", "fuzzymatching", "continuation"}
_NUMERIC = {"IS", "DS", "US", "UL", "SS", "SL", "FL", "FD", "UV", "SV"}
_LIST_VRS = {"UI", "CS"}


def _keys(keywords: Iterable[str]) -> tuple[str, ...]:
    return tuple(dj.tag_key(k) for k in keywords)


_SEARCHABLE = {
    Level.STUDY: set(_keys(STUDY_KEYWORDS)) | {MODALITIES_IN_STUDY, SOP_CLASSES_IN_STUDY},
    Level.SERIES: set(_keys(SERIES_KEYWORDS)),
    Level.INSTANCE: set(_keys(INSTANCE_KEYWORDS)) | set(_keys(SERIES_KEYWORDS)),
}
_DEFAULT_RETURN = {
    Level.STUDY: set(_keys(STUDY_DEFAULT)) | (set(_COMPUTED_STUDY) - {SOP_CLASSES_IN_STUDY}),
    Level.SERIES: set(_keys(SERIES_DEFAULT)) | set(_COMPUTED_SERIES) | {"00080005", "00080201"},
    Level.INSTANCE: set(_keys(INSTANCE_DEFAULT)) | set(_COMPUTED_INSTANCE) | {"00080005", "00080201"},
}


def _name(key: str) -> str:
    """A matching key as a client would write it: keywords joined by dots."""
    return ".".join(dj.keyword_of(k) for k in key.split("."))


def _vr(key: str) -> str:
    try:
        return _COMPUTED_STUDY.get(key) or str(dictionary_VR(int(key, 16))).split(" ")[0]
    except KeyError:  # a private or unknown tag: no index holds it
        return "UN"


def _path(name: str) -> tuple[str, ...]:
    """The tags of a matching key: ``PatientID``, ``00100020``, or a sequence path
    ``RequestAttributesSequence.ScheduledProcedureStepID`` (every step but the last a sequence)."""
    try:
        path = tuple(dj.tag_key(part) for part in name.split("."))
    except BadRequest as exc:
        raise BadRequest(
            f"unknown query parameter {name!r}: expected a DICOM keyword or tag (dotted for a sequence), "
            f"or one of {', '.join(sorted(CONTROL_PARAMS))}"
        ) from exc
    for step in path[:-1]:
        if _vr(step) != "SQ":
            raise BadRequest(f"{name!r}: {dj.keyword_of(step)} is not a sequence, so nothing can follow it")
    return path


def normalize_pn(text: str) -> str:
    """Upper-case, accent-free person name with trimmed components and no trailing empty ones."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c)).upper().replace("ß", "SS")
    parts = [p.strip() for p in plain.split("=")[0].split("^")]
    while parts and not parts[-1]:
        parts.pop()
    return "^".join(parts)


def name_words(normalized: str) -> list[str]:
    """The words of a name for ``fuzzymatching`` (split at spaces, ``^`` and commas)."""
    return [w for w in re.split(r"[\s^,]+", normalized) if w]


def fuzzy_literal(raw: str) -> str:
    """The longest literal start (before any wildcard) of a fuzzy name query's words: every
    matching name has a word starting with it."""
    starts = [re.split(r"[*?]", w, maxsplit=1)[0] for w in name_words(normalize_pn(raw))]
    return max(starts, key=len, default="")


def wildcard_match(pattern: str, text: str) -> bool:
    """Whether ``text`` matches ``pattern`` whole, ``*`` standing for any run and ``?`` for one
    character (PS3.4 C.2.2.2.4). Greedy with one backtrack point, so the time is at most
    len(pattern) × len(text) whatever the pattern (a regular expression of many ``*`` can take
    exponential time on a near miss)."""
    p = t = 0
    star, mark = -1, 0
    while t < len(text):
        if p < len(pattern) and (pattern[p] == "?" or pattern[p] == text[t]):
            p, t = p + 1, t + 1
        elif p < len(pattern) and pattern[p] == "*":
            star, mark = p, t
            p += 1
        elif star >= 0:
            p, mark = star + 1, mark + 1
            t = mark
        else:
            return False
    return all(c == "*" for c in pattern[p:])


def _digits(text: str) -> str:
    return "".join(c for c in text if c.isdigit() or c == ".")


def _hhmmss(text: str) -> str:
    return text.replace(":", "").split(".")[0][:6]


def _is_calendar_date(yyyymmdd: str) -> bool:
    try:
        datetime.date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:8]))
    except ValueError:
        return False
    return True


def _time_key(text: str) -> float:
    text = text.replace(":", "").strip()
    whole, _, frac = text.partition(".")
    whole = (whole + "000000")[:6]
    try:
        return float(f"{whole}.{frac or '0'}")
    except ValueError as exc:
        raise BadRequest(f"{text!r} is not a DICOM time (HHMMSS.FFFFFF)") from exc


@dataclass(frozen=True)
class Predicate:
    """One matching key of a query, e.g. ``PatientName=SMITH*``."""

    key: str
    vr: str
    raw: str
    fuzzy: bool = False

    @cached_property
    def universal(self) -> bool:
        return self.raw == "" or self.raw == "*"

    @cached_property
    def choices(self) -> tuple[str, ...]:
        if self.vr in _LIST_VRS:
            return tuple(v.strip() for v in re.split(r"[\\,]", self.raw) if v.strip())
        return (self.raw,)

    @cached_property
    def date_range(self) -> tuple[str, str] | None:
        """(low, high) inclusive for DA/DT/TM range queries; '' means open."""
        if self.vr not in ("DA", "DT", "TM") or "-" not in self.raw:
            return None
        low, _, high = self.raw.partition("-")
        return _digits(low), _digits(high)

    def validate(self) -> None:
        if self.vr == "SQ":
            raise BadRequest(
                f"{_name(self.key)}: name an attribute inside the sequence "
                f"({_name(self.key)}.ScheduledProcedureStepID), not the sequence itself"
            )
        if self.vr == "DA" and not self.universal:
            for part in self.date_range or (self.raw,):
                digits = _digits(part).replace(".", "")
                if part and (len(digits) != 8 or not digits.isdigit()):
                    raise BadRequest(f"{_name(self.key)}={self.raw!r}: dates are YYYYMMDD or ranges a-b")
                if part and not _is_calendar_date(digits):
                    raise BadRequest(f"{_name(self.key)}={self.raw!r}: {digits} is not a calendar date")
        if self.vr == "TM" and not self.universal:
            for part in self.date_range or (self.raw,):
                if part:
                    _time_key(part)
                    hhmmss = _hhmmss(part).ljust(6, "0")
                    if not hhmmss.isdigit() or int(hhmmss[:2]) > 23 or int(hhmmss[2:4]) > 59 or int(hhmmss[4:]) > 60:
                        raise BadRequest(f"{_name(self.key)}={self.raw!r}: {part} is not a time of day")
        if self.vr == "UI" and not self.universal:
            for uid in self.choices:
                validate_uid(uid, _name(self.key))
        if self.vr in _NUMERIC and not self.universal:
            try:
                float(self.raw)
            except ValueError as exc:
                raise BadRequest(f"{_name(self.key)}={self.raw!r} is not a number") from exc

    @cached_property
    def path(self) -> tuple[str, ...]:
        """The tags from the top-level sequence down to the matched attribute (one tag if flat)."""
        return tuple(self.key.split("."))

    def matches(self, attrs: DicomJson) -> bool:
        if self.universal:
            return True
        if len(self.path) > 1:
            # Sequence matching (PS3.4 C.2.2.2.6): some item of the sequence matches the rest.
            items = [i for i in dj.values(attrs, self.path[0]) if isinstance(i, dict)]
            inner = replace(self, key=".".join(self.path[1:]))
            return any(inner.matches(item) for item in items)
        found = dj.pn_groups(attrs, self.key) if self.vr == "PN" else dj.values(attrs, self.key)
        if not found:
            return False
        return any(self._match_one(v) for v in found)

    def _match_one(self, value: Any) -> bool:
        if self.vr == "PN":
            return self._match_pn(str(value))
        if self.vr in _NUMERIC:
            try:
                return float(value) == float(self.raw)
            except (TypeError, ValueError):
                return False
        text = str(value)
        if self.date_range is not None:
            low, high = self.date_range
            if self.vr == "TM":
                key = _time_key(text)
                return (not low or key >= _time_key(low)) and (not high or key <= _time_key(high))
            key_s = _digits(text).replace(".", "") if self.vr == "DA" else _digits(text)
            return (not low or key_s >= low.replace(".", "")) and (
                not high or key_s[: len(high.replace(".", ""))] <= high.replace(".", "")
            )
        if self.vr in ("DA",):
            return _digits(text).replace(".", "") == _digits(self.raw).replace(".", "")
        if self.vr == "TM":
            return _time_key(text) == _time_key(self.raw)
        return any(wildcard_match(choice, text) for choice in self.choices)

    @cached_property
    def _pn_query(self) -> str:
        return normalize_pn(self.raw)

    def _match_pn(self, value: str) -> bool:
        name = normalize_pn(value)
        query = self._pn_query
        if self.fuzzy:
            words = name_words(name)
            return all(any(wildcard_match(q + "*", w) for w in words) for q in name_words(query))
        if ("*" in query or "?" in query) and wildcard_match(query, name):
            return True
        have = name.split("^")
        for i, component in enumerate(query.split("^")):
            if component == "" or component == "*":
                continue
            if i >= len(have) or not wildcard_match(component, have[i]):
                return False
        return True

    def literal_prefix(self) -> str:
        """For PN: normalized text every matching name starts with (empty if none or fuzzy).

        It stops before the first wildcard and before an empty or ``*`` component, which matches
        anything, even a missing component (``^JOE`` finds ``SIIM^JOE``, ``SIIM^*`` finds ``SIIM``).
        """
        if self.fuzzy:
            return ""
        known: list[str] = []
        for component in self._pn_query.split("^"):
            if component in ("", "*"):
                break
            literal = re.split(r"[*?]", component, maxsplit=1)[0]
            known.append(literal)
            if literal != component:
                break
        return "^".join(known)

    @property
    def is_literal(self) -> bool:
        return not self.universal and "*" not in self.raw and "?" not in self.raw


@dataclass(frozen=True)
class Query:
    """A parsed QIDO-RS request at one level (PS3.18 §10.6.1)."""

    level: Level
    predicates: tuple[Predicate, ...] = ()
    includefields: frozenset[str] = frozenset()
    include_all: bool = False
    limit: int = 100
    offset: int = 0
    fuzzy: bool = False
    warnings: tuple[str, ...] = field(default=())
    #: Resume after this sort key (keyset continuation); None starts at the newest match.
    after: str | None = None
    #: Index items a search may read before it answers with what it has and a continuation.
    read_budget: int = 2000

    def predicate(self, keyword_or_tag: str) -> Predicate | None:
        key = dj.tag_key(keyword_or_tag)
        for p in self.predicates:
            if p.key == key and not p.universal:
                return p
        return None

    def matches(self, attrs: DicomJson) -> bool:
        combined = self._combined_range
        if combined is None:
            return all(p.matches(attrs) for p in self.predicates)
        if not dj.first(attrs, STUDY_DATE):
            return False
        low, high = combined
        when = study_sort_text(attrs)
        if (low and when < low) or (high and when > high):
            return False
        return all(p.matches(attrs) for p in self.predicates if p.key not in (STUDY_DATE, STUDY_TIME))

    @cached_property
    def _combined_range(self) -> tuple[str, str] | None:
        """StudyDate and StudyTime both given as ranges match as one date-time range (PS3.4
        C.2.2.2.5.1): ``StudyDate=20230101-20230105&StudyTime=120000-080000`` runs from noon on the
        first day to 8 a.m. on the last, as 14-digit texts ("" where open)."""
        day, time = self.predicate(STUDY_DATE), self.predicate(STUDY_TIME)
        if day is None or time is None or day.date_range is None or time.date_range is None:
            return None
        (day_low, day_high), (time_low, time_high) = day.date_range, time.date_range
        day_low, day_high = day_low.replace(".", ""), day_high.replace(".", "")
        low = day_low + _hhmmss(time_low).ljust(6, "0") if day_low else ""
        high = day_high + _hhmmss(time_high).ljust(6, "9") if day_high else ""
        return low, high

    def wants(self, key: str) -> bool:
        return (
            self.include_all
            or key in _DEFAULT_RETURN[self.level]
            or key in self.includefields
            or any(p.path[0] == key for p in self.predicates)
        )


def parse_query(
    params: Sequence[tuple[str, str]],
    level: Level,
    *,
    default_limit: int = 100,
    max_limit: int = 1000,
    read_budget: int = 2000,
    relational: bool = False,
) -> Query:
    """Parse QIDO-RS query parameters (name/value pairs, repeats allowed) or raise ``BadRequest``.

    ``relational``: the query is not scoped to a study (``/series``, ``/instances``), so study-level
    keys are searchable too (PS3.18 §10.6.1.2, relational queries)."""
    searchable = _SEARCHABLE[level] | (_SEARCHABLE[Level.STUDY] if relational else set())
    predicates: dict[str, Predicate] = {}
    includes: set[str] = set()
    include_all = False
    limit, offset, fuzzy = default_limit, 0, False
    token: str | None = None
    warnings: list[str] = []
    for name, value in params:
        lname = name.strip().lower()
        if lname == "includefield":
            for item in value.split(","):
                item = item.strip()
                if not item:
                    continue
                if item.lower() == "all":
                    include_all = True
                else:
                    includes.add(_path(item)[0])
        elif lname in ("limit", "offset"):
            try:
                number = int(value)
            except ValueError as exc:
                raise BadRequest(f"{lname}={value!r} is not a whole number") from exc
            if number < 0 or (lname == "limit" and number == 0):
                raise BadRequest(f"{lname}={value} is out of range")
            if lname == "offset":
                offset = number
            elif number > max_limit:
                warnings.append(f"The limit {number} exceeds the maximum of {max_limit}; it was lowered to {max_limit}")
                limit = max_limit
            else:
                limit = number
        elif lname == "continuation":
            token = value.strip()
        elif lname == "fuzzymatching":
            if value.lower() not in ("true", "false"):
                raise BadRequest(f"fuzzymatching={value!r}: expected true or false")
            fuzzy = value.lower() == "true"
        else:
            path = _path(name)
            key, top = ".".join(path), path[0]
            if len(value) > MAX_VALUE:
                raise BadRequest(f"{_name(key)}: the value has {len(value)} characters, at most {MAX_VALUE} are taken")
            vr = _vr(path[-1])
            if top not in searchable:
                # A DICOM attribute this level does not hold: ignored, and said so (never silently).
                warnings.append(f"{_name(key)} ({key}) cannot be matched at the {level.value} level and was ignored")
                continue
            if vr == "SQ" and not value.strip():
                includes.add(top)  # universal matching of a sequence: return it (PS3.4 C.2.2.2.6)
                continue
            if key in predicates and predicates[key].raw != value:
                raise BadRequest(f"{_name(key)} is given twice with different values")
            predicates[key] = Predicate(key, vr, value.strip())
    preds = tuple(Predicate(p.key, p.vr, p.raw, fuzzy) for p in predicates.values())
    for p in preds:
        p.validate()
    query = Query(
        level, preds, frozenset(includes), include_all, limit, offset, fuzzy, tuple(warnings), read_budget=read_budget
    )
    if token:
        from .continuation import decode  # continuation imports this module

        if offset:
            raise BadRequest("offset does not go with continuation: the token says where the next page starts")
        after, skip = decode(token, query)
        query = replace(query, after=after, offset=skip)
    return query


def split_study_keys(query: Query) -> tuple[Query, Query]:
    """A relational query as (its study-level keys as a study query, the rest at its own level)."""
    study_keys = _SEARCHABLE[Level.STUDY]
    mine = tuple(p for p in query.predicates if p.key in study_keys)
    rest = tuple(p for p in query.predicates if p.key not in study_keys)
    study = Query(Level.STUDY, mine, fuzzy=query.fuzzy, read_budget=query.read_budget)
    return study, replace(query, predicates=rest)
