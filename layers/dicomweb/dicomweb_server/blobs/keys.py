"""Where objects live in the bucket.

=================================================  ==========================================
key                                                what
=================================================  ==========================================
``studies/{study}/series/{series}/instances/{sop}.dcm``  canonical Part-10 object, one per SOP Instance UID
``incoming/...``                                   S3 drop area, indexed and emptied by the indexer
``rejected/...``                                   dropped files that were not valid instances
=================================================  ==========================================
"""

from __future__ import annotations

INCOMING_PREFIX = "incoming/"
REJECTED_PREFIX = "rejected/"


def instance_key(study_uid: str, series_uid: str, sop_uid: str) -> str:
    return f"studies/{study_uid}/series/{series_uid}/instances/{sop_uid}.dcm"
