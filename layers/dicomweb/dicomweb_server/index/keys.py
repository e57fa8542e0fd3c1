"""The DynamoDB key layout: one table, ``pk`` / ``sk`` strings. Every key the index writes or reads
is built here.

Items (``pk`` / ``sk``, both strings):

=================  ===========================  ===============================================
item               pk                           sk
=================  ===========================  ===============================================
study              ``ST#{study}``               ``#META``  (attrs JSON, n_inst, series SS, mods SS)
series             ``ST#{study}``               ``SE#{series}``  (attrs JSON, n_inst)
instance           ``ST#{study}``               ``IN#{series}#{sop}``  (attrs, ts, size, md5, frames, meta)
date posting       ``X#DT``                     ``{YYYYMMDDHHMMSS}#{study}``  (every study has one)
name posting       ``X#PN``                     ``{normalized name}#{study}``
patient posting    ``X#PID#{PatientID}``        ``{study}``
accession posting  ``X#ACC#{AccessionNumber}``  ``{study}``
modality posting   ``X#MOD#{modality}``         ``{study}``
=================  ===========================  ===============================================

Study, series and instance items share one partition per study. Postings are an inverted index
(one item per study and searchable value) written in the same transaction as the study item.
"""

from __future__ import annotations

from typing import Any

from ..formats import dicom_json as dj
from ..records import InstanceRecord
from ..search.ordering import study_sort_text
from ..search.query import normalize_pn

META = "#META"
DATE_POSTINGS = "X#DT"
NAME_POSTINGS = "X#PN"
PATIENT_ID_POSTING = "X#PID#"
ACCESSION_POSTING = "X#ACC#"
MODALITY_POSTING = "X#MOD#"

#: ``StoredInstance`` fields and the instance item attributes that hold them.
INSTANCE_FIELDS = {
    "sop_class_uid": "sop_class",
    "transfer_syntax_uid": "ts",
    "size": "size",
    "md5": "md5",
    "number_of_frames": "frames",
}


def study_pk(study_uid: str) -> str:
    return f"ST#{study_uid}"


def series_sk(series_uid: str) -> str:
    return f"SE#{series_uid}"


def instance_sk(series_uid: str, sop_uid: str) -> str:
    return f"IN#{series_uid}#{sop_uid}"


def instance_fields(record: InstanceRecord) -> dict[str, Any]:
    """The instance item's attributes that ``INSTANCE_FIELDS`` names, from a record."""
    return {attr: getattr(record, field) for field, attr in INSTANCE_FIELDS.items()}


def fields_of_item(item: dict[str, Any]) -> dict[str, Any]:
    """The ``StoredInstance`` fields an instance item holds (the inverse of ``instance_fields``)."""
    fields = {field: item[attr] for field, attr in INSTANCE_FIELDS.items() if attr in item}
    fields["size"] = int(fields["size"])
    fields["number_of_frames"] = int(fields.get("number_of_frames", 1))
    return fields


def modality_posting(modality: str) -> str:
    return MODALITY_POSTING + modality


def postings(record: InstanceRecord) -> list[tuple[str, str]]:
    """The (pk, sk) of every posting a new study writes."""
    study, uid = record.study, record.study_uid
    keys = [(DATE_POSTINGS, f"{study_sort_text(study)}#{uid}")]
    names = dj.text_values(study, "00100010")
    if names and normalize_pn(names[0]):
        keys.append((NAME_POSTINGS, f"{normalize_pn(names[0])}#{uid}"))
    for tag, prefix in (("00100020", PATIENT_ID_POSTING), ("00080050", ACCESSION_POSTING)):
        value = str(dj.first(study, tag, "") or "").strip()
        if value:
            keys.append((prefix + value, uid))
    if record.modality:
        keys.append((modality_posting(record.modality), uid))
    return keys
