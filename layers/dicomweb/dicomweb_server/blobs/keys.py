"""Where objects live in the bucket.

=========================================================================  ==========================
key                                                                        what
=========================================================================  ==========================
``studies/{study}/series/{series}/instances/{sop}/{md5}-{writer}.dcm``     a stored Part-10 object
``studies/{study}/series/{series}/instances/{sop}.dcm``                    one stored before object
                                                                           keys carried a writer
``incoming/...``                                                           S3 drop area, indexed and
                                                                           emptied by the indexer
``studies/{study}/series/{series}/instances/{sop}/{md5}.frames``           the frame table of an
                                                                           instance with very many
                                                                           frames (sidecar)
``rejected/...``                                                           dropped files that were
                                                                           not valid instances
``derived/thumbnails/{study}/{series}/{sop}/{md5}/{variant}``              cached thumbnails
``uploads/{session}/{n}.dcm``                                              file n of an upload
                                                                           session, indexed and
                                                                           removed by the indexer
=========================================================================  ==========================

Every writer puts its object under a key of its own (the content's MD5 and a random writer tag),
so concurrent writers of one SOP Instance UID never overwrite or delete each other's bytes: the
index's conditional write decides which object the instance is, and the others remove their own.
The index entry names its object (``StoredInstance.object_key``).
"""

from __future__ import annotations

import secrets
from typing import Protocol

INCOMING_PREFIX = "incoming/"
REJECTED_PREFIX = "rejected/"
UPLOADS_PREFIX = "uploads/"


def upload_key(session_id: str, number: int) -> str:
    """Where file ``number`` (from 1) of an upload session is uploaded."""
    return f"{UPLOADS_PREFIX}{session_id}/{number}.dcm"


def instance_key(study_uid: str, series_uid: str, sop_uid: str) -> str:
    """Where an instance indexed before object keys carried a writer is stored."""
    return f"studies/{study_uid}/series/{series_uid}/instances/{sop_uid}.dcm"


def object_key(study_uid: str, series_uid: str, sop_uid: str, md5: str) -> str:
    """A new key for one writer's copy of an instance."""
    return f"studies/{study_uid}/series/{series_uid}/instances/{sop_uid}/{md5}-{secrets.token_hex(6)}.dcm"


def frames_key(study_uid: str, series_uid: str, sop_uid: str, md5: str) -> str:
    """The sidecar holding the frame table of an instance's content, when too large for the index
    (named by content, so every writer of the same bytes writes the same sidecar)."""
    return f"studies/{study_uid}/series/{series_uid}/instances/{sop_uid}/{md5}.frames"


class Located(Protocol):
    @property
    def study_uid(self) -> str: ...
    @property
    def series_uid(self) -> str: ...
    @property
    def sop_uid(self) -> str: ...
    @property
    def object_key(self) -> str: ...


def stored_key(instance: Located) -> str:
    """The key of an indexed instance's object."""
    return instance.object_key or instance_key(instance.study_uid, instance.series_uid, instance.sop_uid)


#: What the server derives from stored objects and may build again (thumbnails, cached documents).
DERIVED_PREFIX = "derived/"
THUMBNAILS_PREFIX = DERIVED_PREFIX + "thumbnails/"


def thumbnail_key(study_uid: str, series_uid: str, sop_uid: str, md5: str, variant: str) -> str:
    """Where a cached thumbnail of an instance lives: under the instance's content (its MD5), so an
    instance stored again with other content never shows an old thumbnail."""
    return f"{THUMBNAILS_PREFIX}{study_uid}/{series_uid}/{sop_uid}/{md5}/{variant}"
