"""QIDO-RS result datasets (PS3.18 §10.6.3): the attributes each level returns, computed
attributes (counts, ModalitiesInStudy, availability), RetrieveURLs, and paging."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..formats import dicom_json as dj
from ..records import DicomJson, SeriesSummary, StoredInstance, StudySummary
from .query import MODALITIES_IN_STUDY, RETRIEVE_URL, SOP_CLASSES_IN_STUDY, Query


def _filtered(attrs: DicomJson, query: Query) -> DicomJson:
    return {k: v for k, v in attrs.items() if query.wants(k)}


def _sorted(attrs: DicomJson) -> DicomJson:
    return {k: attrs[k] for k in sorted(attrs)}


def study_attrs_with_aggregates(study: StudySummary) -> DicomJson:
    """A study's stored attributes plus the computed ones (ModalitiesInStudy, SOPClassesInStudy,
    counts, availability)."""
    attrs = dict(study.attrs)
    attrs[MODALITIES_IN_STUDY] = dj.element("CS", *sorted(study.modalities))
    attrs["00201206"] = dj.element("IS", study.series_count)
    attrs["00201208"] = dj.element("IS", study.instance_count)
    attrs["00080056"] = dj.element("CS", "ONLINE")
    if study.sop_classes:
        attrs[SOP_CLASSES_IN_STUDY] = dj.element("UI", *sorted(study.sop_classes))
    return attrs


def study_result(study: StudySummary, query: Query, base_url: str) -> DicomJson:
    attrs = _filtered(study_attrs_with_aggregates(study), query)
    attrs[RETRIEVE_URL] = dj.element("UR", f"{base_url}/studies/{study.study_uid}")
    return _sorted(attrs)


def series_attrs_with_aggregates(series: SeriesSummary) -> DicomJson:
    attrs = dict(series.attrs)
    attrs["00201209"] = dj.element("IS", series.instance_count)
    attrs["00080056"] = dj.element("CS", "ONLINE")
    return attrs


def series_result(series: SeriesSummary, query: Query, base_url: str, *, with_study: bool = False) -> DicomJson:
    """``with_study`` adds StudyInstanceUID, which a series found outside its study needs."""
    attrs = _filtered(series_attrs_with_aggregates(series), query)
    if with_study:
        attrs["0020000D"] = dj.element("UI", series.study_uid)
    attrs[RETRIEVE_URL] = dj.element("UR", f"{base_url}/studies/{series.study_uid}/series/{series.series_uid}")
    return _sorted(attrs)


def instance_attrs(instance: StoredInstance) -> DicomJson:
    attrs = {**instance.series_attrs, **instance.attrs}
    attrs["00080056"] = dj.element("CS", "ONLINE")
    attrs.setdefault("0020000D", dj.element("UI", instance.study_uid))
    return attrs


def instance_result(instance: StoredInstance, query: Query, base_url: str) -> DicomJson:
    everything = instance_attrs(instance)
    attrs = _filtered(everything, query)
    # What a client needs to place the instance: its study, and its series' UID, number and modality.
    for key in ("0020000D", "00080060", "0020000E", "00200011"):
        if key in everything:
            attrs[key] = everything[key]
    attrs[RETRIEVE_URL] = dj.element(
        "UR",
        f"{base_url}/studies/{instance.study_uid}/series/{instance.series_uid}/instances/{instance.sop_uid}",
    )
    return _sorted(attrs)


def page(items: Sequence[Any], query: Query) -> tuple[list[Any], bool]:
    """Apply offset/limit to a list of matches; True when more results exist beyond the page."""
    window = list(items[query.offset : query.offset + query.limit + 1])
    return window[: query.limit], len(window) > query.limit
