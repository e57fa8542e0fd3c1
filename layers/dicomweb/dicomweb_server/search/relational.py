"""Relational queries (PS3.18 §10.6.1.2): ``/series`` and ``/instances`` across every study.

Study-level keys (PatientName, PatientID, StudyDate, ...) drive the study search, so the walk has
the same plan, order and read budget as ``/studies``; a bare SeriesInstanceUID or SOPInstanceUID
first finds its studies through the lookup postings; each candidate study's series (or instances)
are then matched on the remaining keys. Results come study by study (newest first), then in the
study's own series (or instance) order. The continuation is the last study whose rows were all
handed out, plus how many rows of the next matching studies to skip.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from ..ports import MetadataIndex, Page
from ..records import SeriesSummary, StoredInstance, StudySummary
from ..uids import is_valid_uid
from .ordering import study_sort_text
from .query import Predicate, Query, split_study_keys

#: Studies asked for per step of the walk.
_STUDIES = 25
#: Matches the query's read budget allows per examined study (postings, study item, its rows).
_READS_PER_STUDY = 4
#: A cursor before every study (so "skip n rows from the start" can be carried in a token).
START = "99999999999999#9"
#: A valid UID no study has: the plan for "the lookup found nothing".
NO_STUDY = "0.0"


def _located(index: MetadataIndex, query: Query, study_query: Query) -> Query:
    """A bare SeriesInstanceUID or SOPInstanceUID names its studies (lookup postings): drive on them."""
    for keyword, kind in (("SOPInstanceUID", "IN"), ("SeriesInstanceUID", "SE")):
        p = query.predicate(keyword)
        if p and not study_query.predicate("StudyInstanceUID") and all(is_valid_uid(c) for c in p.choices):
            studies = index.studies_holding(kind, p.choices) or [NO_STUDY]
            key = Predicate("0020000D", "UI", "\\".join(studies))
            return replace(study_query, predicates=(*study_query.predicates, key))
    return study_query


def _walk[T](index: MetadataIndex, query: Query, rows_of: Callable[[StudySummary, Query], list[T]]) -> Page[T]:
    study_query, rest = split_study_keys(query)
    study_query = _located(index, query, study_query)
    everything = replace(rest, limit=10**9, offset=0, after=None)
    out: list[T] = []
    skipped, examined = 0, 0
    after = None if query.after in (None, START) else query.after
    done = query.after or START  # the last study whose rows were all handed out
    while True:
        page = index.search_studies(replace(study_query, limit=_STUDIES, offset=0, after=after))
        for study in page.items:
            taken = 0
            for row in rows_of(study, everything):
                taken += 1
                if skipped < query.offset:
                    skipped += 1
                    continue
                if len(out) == query.limit:
                    return Page(out, True, cursor=done, skip=taken - 1)
                out.append(row)
            done = f"{study_sort_text(study.attrs)}#{study.study_uid}"
            examined += 1
        if page.budget_spent is not None or examined * _READS_PER_STUDY >= query.read_budget:
            spent = page.budget_spent or examined * _READS_PER_STUDY
            cursor = page.cursor if page.budget_spent is not None and page.cursor else done
            return Page(out, True, cursor=cursor, budget_spent=spent, skip=query.offset - skipped)
        if not page.more or page.cursor is None:
            return Page(out, False)
        after = page.cursor


def search_series(index: MetadataIndex, query: Query) -> Page[SeriesSummary]:
    """``/series``: every matching series of every matching study (by the series Modality postings
    when the index says they drive better)."""
    driven = index.search_series_everywhere(query)
    if driven is not None:
        return driven
    return _walk(index, query, lambda study, q: index.search_series(study.study_uid, q).items)


def search_instances(index: MetadataIndex, query: Query) -> Page[StoredInstance]:
    """``/instances``: every matching instance of every matching study."""
    return _walk(index, query, lambda study, q: index.search_instances(study.study_uid, None, q).items)
