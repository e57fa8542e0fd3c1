"""The orders results are returned in, shared by every index implementation."""

from __future__ import annotations

from ..formats import dicom_json as dj
from ..records import SeriesSummary, StoredInstance, StudySummary


def _number(attrs: dj.DicomJson, key: str) -> float:
    value = dj.first(attrs, key)
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("inf")


def study_sort_text(attrs: dj.DicomJson) -> str:
    """StudyDate and StudyTime as 14 digits (missing parts as zeros): the study order key."""
    date = "".join(c for c in str(dj.first(attrs, "00080020", "")) if c.isdigit())[:8]
    time = str(dj.first(attrs, "00080030", "")).replace(":", "").split(".")[0]
    return (date or "00000000").ljust(8, "0") + "".join(c for c in time if c.isdigit()).ljust(6, "0")[:6]


def study_order(study: StudySummary) -> tuple[str, str]:
    """Sort key for newest StudyDate (then StudyTime) first, then UID; use with reverse=True."""
    return (study_sort_text(study.attrs), study.study_uid)


def series_order(series: SeriesSummary) -> tuple[float, str]:
    return (_number(series.attrs, "00200011"), series.series_uid)


def instance_order(instance: StoredInstance) -> tuple[float, str, float, str]:
    return (
        _number(instance.series_attrs, "00200011"),
        instance.series_uid,
        _number(instance.attrs, "00200013"),
        instance.sop_uid,
    )
