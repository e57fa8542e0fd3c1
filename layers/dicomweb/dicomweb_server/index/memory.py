"""An in-memory ``MetadataIndex`` for unit tests and ``make dev``. Thread-safe."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from ..ports import AddOutcome
from ..records import InstanceRecord, SeriesSummary, StoredInstance, StudySummary
from ..search import results
from ..search.ordering import instance_order, series_order, study_order
from ..search.query import Query


@dataclass
class _Study:
    attrs: dict[str, object]
    series: dict[str, dict[str, object]] = field(default_factory=dict)
    instances: dict[tuple[str, str], StoredInstance] = field(default_factory=dict)
    modalities: set[str] = field(default_factory=set)


class MemoryIndex:
    def __init__(self) -> None:
        self.studies: dict[str, _Study] = {}
        self._lock = threading.Lock()

    def indexed_md5(self, study_uid: str, series_uid: str, sop_uid: str) -> str | None:
        study = self.studies.get(study_uid)
        found = study.instances.get((series_uid, sop_uid)) if study else None
        return found.md5 if found else None

    def add_instance(self, record: InstanceRecord) -> AddOutcome:
        with self._lock:
            study = self.studies.setdefault(record.study_uid, _Study(attrs=dict(record.study)))
            key = (record.series_uid, record.sop_uid)
            if key in study.instances:
                return AddOutcome.ALREADY_INDEXED
            study.series.setdefault(record.series_uid, dict(record.series))
            if record.modality:
                study.modalities.add(record.modality)
            study.instances[key] = StoredInstance.from_record(record, study.series[record.series_uid])
            return AddOutcome.ADDED

    def _summary(self, uid: str, study: _Study) -> StudySummary:
        return StudySummary(
            uid, dict(study.attrs), tuple(sorted(study.modalities)), len(study.series), len(study.instances)
        )

    def get_study(self, study_uid: str) -> StudySummary | None:
        study = self.studies.get(study_uid)
        return self._summary(study_uid, study) if study else None

    def search_studies(self, query: Query) -> tuple[list[StudySummary], bool]:
        found = [
            s
            for uid, st in list(self.studies.items())
            if query.matches(results.study_attrs_with_aggregates(s := self._summary(uid, st)))
        ]
        found.sort(key=study_order, reverse=True)
        return results.page(found, query)

    def search_series(self, study_uid: str, query: Query) -> tuple[list[SeriesSummary], bool]:
        study = self.studies.get(study_uid)
        if study is None:
            return [], False
        counts: dict[str, int] = {}
        for series_uid, _ in study.instances:
            counts[series_uid] = counts.get(series_uid, 0) + 1
        found = [
            s
            for uid, attrs in study.series.items()
            if query.matches(
                results.series_attrs_with_aggregates(
                    s := SeriesSummary(study_uid, uid, dict(attrs), counts.get(uid, 0))
                )
            )
        ]
        found.sort(key=series_order)
        return results.page(found, query)

    def search_instances(
        self, study_uid: str, series_uid: str | None, query: Query
    ) -> tuple[list[StoredInstance], bool]:
        found = [i for i in self.list_instances(study_uid, series_uid) if query.matches(results.instance_attrs(i))]
        return results.page(found, query)

    def list_instances(
        self,
        study_uid: str,
        series_uid: str | None = None,
        sop_uid: str | None = None,
        *,
        with_metadata: bool = False,
    ) -> list[StoredInstance]:
        study = self.studies.get(study_uid)
        if study is None:
            return []
        found = [
            i
            for (se, sop), i in study.instances.items()
            if (series_uid is None or se == series_uid) and (sop_uid is None or sop == sop_uid)
        ]
        return sorted(found, key=instance_order)
