"""S3 events can arrive out of order: each event of a versioned bucket names its object's version,
and the indexer reads that version, so an older event never indexes (or removes) a newer upload
under the same name."""

from __future__ import annotations

import io
import json

from pydicom import dcmread

from dicomweb_server.aws.s3_events import s3_handler
from dicomweb_server.index.dynamodb import DynamoDbIndex
from dicomweb_server.settings import Settings
from tests.conftest import load_event
from tests.corpus import list_keys, make_instance


def _event(bucket: str, key: str, version: str) -> dict:
    record = json.loads(json.dumps(load_event("s3-object-created")["Records"][0]))
    record["s3"]["bucket"]["name"] = bucket
    record["s3"]["object"]["key"] = key
    record["s3"]["object"]["versionId"] = version
    return {"Records": [record]}


def test_two_uploads_under_one_name_are_each_indexed_from_their_own_event(aws, lambda_context, monkeypatch) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    first, second = make_instance("ct", PatientID="V-FIRST"), make_instance("mr", PatientID="V-SECOND")
    v1 = aws.s3.put_object(Bucket=aws.bucket, Key="incoming/scan.dcm", Body=first.data)["VersionId"]
    v2 = aws.s3.put_object(Bucket=aws.bucket, Key="incoming/scan.dcm", Body=second.data)["VersionId"]
    handler = s3_handler(Settings(bucket_name=aws.bucket, table_name=aws.table))
    index = DynamoDbIndex(aws.dynamodb, aws.table)

    # The first upload's event arrives while the second upload is the current version.
    assert handler(_event(aws.bucket, "incoming/scan.dcm", v1), lambda_context) == {"indexed": 1}
    assert index.get_study(first.study_uid) is not None and index.get_study(second.study_uid) is None
    assert handler(_event(aws.bucket, "incoming/scan.dcm", v2), lambda_context) == {"indexed": 1}
    assert index.get_study(second.study_uid) is not None
    # A redelivered first event finds its version gone and changes nothing.
    assert handler(_event(aws.bucket, "incoming/scan.dcm", v1), lambda_context) == {"gone": 1}
    stored = [k for k in list_keys(aws.s3, aws.bucket) if k.startswith("studies/")]
    assert len(stored) == 2 and not [k for k in list_keys(aws.s3, aws.bucket) if k.startswith("incoming/")]
    names = sorted(
        str(dcmread(io.BytesIO(aws.s3.get_object(Bucket=aws.bucket, Key=k)["Body"].read())).PatientID) for k in stored
    )
    assert names == ["V-FIRST", "V-SECOND"]
