"""Which postings a study search reads (``docs/data-model.md``, Access paths), chosen without I/O
so it can be tested alone. ``core`` walks the plan and checks every predicate on what it reads.

Order: StudyInstanceUID list > AccessionNumber > PatientID (exact, then prefix) > PatientName (its
literal prefix) > ModalitiesInStudy > a StudyDate range or literal > all studies by date. Every walk
yields postings newest first: groups (a year or a month) in descending order, the partitions of a
group (its shards, or one per modality) merged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..search.query import Predicate, Query, fuzzy_literal, split_study_keys
from . import keys


@dataclass(frozen=True)
class Group:
    """Postings of one bucket: these partitions merged, within ``low``..``high`` on the sort key.

    ``bucket`` is the year or month the group covers ("" for an unbucketed partition), so a walk
    resumed at a cursor skips the groups that lie wholly after it. ``check`` is a prefix the posting's
    indexed value must start with (a literal longer than the prefix postings are)."""

    partitions: tuple[str, ...]
    bucket: str = ""
    low: str | None = None
    high: str | None = None
    check: str | None = None


@dataclass(frozen=True)
class ByUids:
    """The query names its studies: read them directly."""

    uids: tuple[str, ...]


@dataclass(frozen=True)
class Walk:
    """Read these groups in order; ``driving`` names the key, for tests and benchmarks."""

    driving: str
    groups: tuple[Group, ...]


Plan = ByUids | Walk
#: The months that hold studies, newest first (read from the catalog only when a plan needs them);
#: ``months(kind, prefix)``: those that hold a dense prefix's postings.
Months = Callable[..., Sequence[str]]


def _years(months: Months) -> list[str]:
    return sorted({m[:4] for m in months()}, reverse=True)


def _prefix_walk(driving: str, kind: str, literal: str, months: Months, *, whole: bool = False) -> Walk:
    """Postings of values starting with ``literal``: its own partition when it has one (up to
    PREFIX_MAX characters, or ``whole`` name components), else the PREFIX_MAX one checked on ``v``.
    A dense prefix (``keys.DENSE`` characters or fewer) is read month by month from its catalog,
    a longer one year by year."""
    prefix = literal if whole else literal[: keys.PREFIX_MAX]
    check = literal if len(literal) > len(prefix) else None
    buckets = months(kind, prefix) if len(prefix) <= keys.DENSE else _years(months)
    groups = tuple(
        Group(tuple(keys.prefix_partition(kind, prefix, b, s) for s in range(keys.SHARDS)), bucket=b, check=check)
        for b in buckets
    )
    return Walk(driving, groups)


def _literal_prefix(p: Predicate) -> str:
    """What every value matching a PatientID / AccessionNumber pattern starts with."""
    return p.raw.split("*", 1)[0].split("?", 1)[0]


def _date_bounds(p: Predicate | None) -> tuple[str, str] | None:
    """Sort-key bounds of a StudyDate range or literal (None: no date condition)."""
    if p is None:
        return None
    if p.date_range is not None:
        low, high = p.date_range
    elif p.is_literal:
        low = high = "".join(c for c in p.raw if c.isdigit())
    else:
        return None
    low, high = low.replace(".", ""), high.replace(".", "")
    low = (low or "00000001").ljust(14, "0")
    return low, (high or "99999999").ljust(14, "9") + "#\uffff"


def plan_studies(query: Query, months: Months) -> Plan:
    p = query.predicate("StudyInstanceUID")
    if p:
        return ByUids(tuple(dict.fromkeys(p.choices)))
    for keyword, exact in (("AccessionNumber", "ACC"), ("PatientID", "PID")):
        p = query.predicate(keyword)
        if p and p.is_literal:
            return Walk(keyword, (Group((keys.exact_partition(exact, p.raw),)),))
    for keyword, prefix in (("AccessionNumber", "ACCP"), ("PatientID", "PIDP")):
        p = query.predicate(keyword)
        if p and _literal_prefix(p):
            return _prefix_walk(keyword + " prefix", prefix, _literal_prefix(p), months)
    p = query.predicate("PatientName")
    if p and p.fuzzy and fuzzy_literal(p.raw):  # the query word with the longest literal start
        return _prefix_walk("PatientName fuzzy", "PNW", fuzzy_literal(p.raw)[: keys.WORD_PREFIX], months)
    if p and p.literal_prefix():
        literal = p.literal_prefix()
        if p.is_literal and len(literal) > keys.PREFIX_MAX:  # whole components: their own partition
            return _prefix_walk("PatientName", "PNP", literal, months, whole=True)
        return _prefix_walk("PatientName prefix", "PNP", literal, months)
    bounds = _date_bounds(query.predicate("StudyDate"))
    low, high = bounds if bounds else (None, None)
    wanted = [m for m in months() if bounds is None or bounds[0][:6] <= m <= bounds[1][:6]]
    p = query.predicate("ModalitiesInStudy")
    if p and all("*" not in c and "?" not in c for c in p.choices):
        groups = tuple(
            Group(
                tuple(keys.modality_partition(mod, month, s) for mod in p.choices for s in range(keys.SHARDS)),
                bucket=month,
                low=low,
                high=high,
            )
            for month in wanted
        )
        return Walk("ModalitiesInStudy", groups)
    groups = tuple(
        Group(tuple(keys.date_partition(month, s) for s in range(keys.SHARDS)), bucket=month, low=low, high=high)
        for month in wanted
    )
    return Walk("StudyDate" if bounds else "all studies", groups)


def plan_series(query: Query, months: Months) -> Walk | None:
    """``/series`` with a Modality (a list of literal values) and no sharper study-level key walks
    the series Modality postings (``P#SMOD#…``), bounded by a StudyDate range when one is given:
    every posting read is a series of that modality, so reads follow the page. None: the study
    walk (``search.relational``) is the better plan."""
    study_query, rest = split_study_keys(query)
    p = rest.predicate("Modality")
    if p is None or any("*" in c or "?" in c for c in p.choices):
        return None
    if rest.predicate("SeriesInstanceUID") or rest.predicate("SOPInstanceUID"):
        return None  # the lookup postings name their studies
    studies = plan_studies(study_query, months)
    if not isinstance(studies, Walk) or studies.driving not in ("StudyDate", "all studies"):
        return None  # a patient, accession, name, UID or ModalitiesInStudy is sharper
    groups = tuple(
        Group(
            tuple(keys.series_modality_partition(m, g.bucket, s) for m in p.choices for s in range(keys.SHARDS)),
            bucket=g.bucket,
            low=g.low,
            high=g.high,
        )
        for g in studies.groups
    )
    return Walk("Modality (series)", groups)
