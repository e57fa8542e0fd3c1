"""Computed attributes (NumberOfStudyRelatedSeries/Instances, NumberOfSeriesRelatedInstances,
ModalitiesInStudy, SOPClassesInStudy) stay exact when many writers store into one study at once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from pydicom.uid import generate_uid

from dicomweb_server.search.query import Level, parse_query
from dicomweb_server.store.ingest import ingest
from tests.corpus import make_instance
from tests.unit.conftest import memory_backend

SOURCES = {"CT": "ct", "MR": "mr", "OT": "ct"}


def test_eight_writers_into_one_study_leave_exact_aggregates() -> None:
    backend = memory_backend()
    study = generate_uid()
    series = {modality: generate_uid() for modality in SOURCES}
    batches = [
        [
            make_instance(SOURCES[m], study_uid=study, series_uid=series[m], Modality=m)
            for m in ("CT", "MR", "OT", "CT", "MR")
        ]
        for _ in range(8)
    ]

    def write(batch):  # type: ignore[no-untyped-def]
        return [ingest(i.data, index=backend.index, blobs=backend.blobs).outcome.value for i in batch]

    with ThreadPoolExecutor(8) as pool:
        outcomes = [o for batch in pool.map(write, batches) for o in batch]
    assert outcomes == ["new"] * 40
    found = backend.index.search_studies(parse_query([("StudyInstanceUID", study)], Level.STUDY))
    (summary,) = found.items
    assert summary.instance_count == 40 and summary.series_count == 3
    assert summary.modalities == ("CT", "MR", "OT")
    assert set(summary.sop_classes) == {b.sop_class_uid for batch in batches for b in batch}
    by_series = {
        s.series_uid: s.instance_count for s in backend.index.search_series(study, parse_query([], Level.SERIES)).items
    }
    assert by_series == {series["CT"]: 16, series["MR"]: 16, series["OT"]: 8}
    assert len(backend.index.list_instances(study)) == 40
