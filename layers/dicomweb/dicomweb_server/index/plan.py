"""Which posting list a study search drives on (PS3.18 §10.6 queries on the DynamoDB layout of
``keys``): the most selective key the query has, chosen here without any I/O so it can be tested
alone. ``dynamodb`` runs the plan and checks every predicate on what it reads.

Order: StudyInstanceUID list > AccessionNumber > PatientID > PatientName prefix >
ModalitiesInStudy > the date postings (a StudyDate range or literal, else all studies by date).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..search.query import Query
from . import keys


@dataclass(frozen=True)
class ByUids:
    """The query names its studies: read them directly."""

    uids: tuple[str, ...]


@dataclass(frozen=True)
class ByPostings:
    """Read these posting lists (each a partition, optionally a sort-key prefix) and hydrate."""

    partitions: tuple[str, ...]
    begins: str | None = None


@dataclass(frozen=True)
class ByDate:
    """Walk the date postings newest first, within ``low``..``high`` or under ``prefix``."""

    low: str | None = None
    high: str | None = None
    prefix: str | None = None


Plan = ByUids | ByPostings | ByDate


def plan_studies(query: Query) -> Plan:
    p = query.predicate("StudyInstanceUID")
    if p:
        return ByUids(tuple(dict.fromkeys(p.choices)))
    for keyword, prefix in (("AccessionNumber", keys.ACCESSION_POSTING), ("PatientID", keys.PATIENT_ID_POSTING)):
        p = query.predicate(keyword)
        if p and p.is_literal:
            return ByPostings((prefix + p.raw,))
    p = query.predicate("PatientName")
    if p and p.literal_prefix():
        return ByPostings((keys.NAME_POSTINGS,), begins=p.literal_prefix())
    p = query.predicate("ModalitiesInStudy")
    if p and all("*" not in c and "?" not in c for c in p.choices):
        return ByPostings(tuple(keys.modality_posting(m) for m in p.choices))
    p = query.predicate("StudyDate")
    if p and p.date_range is not None:
        low, high = p.date_range
        return ByDate(low=low or "0", high=(high or "99999999") + "\uffff")
    if p and p.is_literal:
        return ByDate(prefix="".join(c for c in p.raw if c.isdigit()))
    return ByDate()
