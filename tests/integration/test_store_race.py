"""Concurrent STOW-RS of one SOP Instance UID through the deployed stack (several Lambdas side by
side): one object stays, it is the one the index names, and each client is told the truth."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from pydicom.uid import generate_uid

from tests.corpus import make_instance, read_multipart, stow_body

from .conftest import Endpoint

pytestmark = pytest.mark.integration

FAILURE_REASON, FAILED_SOP_SEQUENCE = "00081197", "00081198"


def test_eight_concurrent_stows_of_two_versions_leave_the_winner_only(endpoint: Endpoint, s3: Any) -> None:
    study, series, sop = generate_uid(), generate_uid(), generate_uid()
    versions = [
        make_instance("ct", study_uid=study, series_uid=series, sop_uid=sop, PatientID=f"RACE-{n}") for n in range(2)
    ]

    def store(n: int) -> requests.Response:
        body, ctype = stow_body([versions[n % 2]])
        headers = {**endpoint.headers(), "Content-Type": ctype, "Accept": "application/dicom+json"}
        return requests.post(f"{endpoint.base_url}/studies", data=body, headers=headers, timeout=120)

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(store, range(8)))
    r = endpoint.get(
        f"/studies/{study}/series/{series}/instances/{sop}",
        headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'},
    )
    assert r.status_code == 200
    ((_, stored),) = read_multipart(r.content, r.headers["content-type"])
    winner = next(n for n, v in enumerate(versions) if v.data == stored)
    for n, answer in enumerate(answers):
        if n % 2 == winner:
            assert answer.status_code == 200, (n, answer.status_code, answer.text[:300])
        else:
            assert answer.status_code == 409, (n, answer.status_code, answer.text[:300])
            failed = answer.json()[FAILED_SOP_SEQUENCE]["Value"]
            assert [f[FAILURE_REASON]["Value"][0] for f in failed] == [0x0111]
    listed = s3.list_objects_v2(Bucket=endpoint.bucket, Prefix=versions[0].prefix).get("Contents", [])
    assert len(listed) == 1, [o["Key"] for o in listed]
    md5 = hashlib.md5(stored).hexdigest()  # noqa: S324
    assert listed[0]["Key"].rsplit("/", 1)[1].startswith(md5 + "-")
    found = endpoint.get("/studies", params={"StudyInstanceUID": study}).json()
    assert found[0]["00201208"]["Value"] == [1]  # NumberOfStudyRelatedInstances


def test_dicomweb_client_stores_datasets_built_in_memory(endpoint: Endpoint) -> None:
    """store_instances of datasets with no preamble (built in memory, as highdicom and pydicom
    make them) are stored as complete Part-10 files and retrieved intact."""
    import io

    import pydicom
    from dicomweb_client.api import DICOMwebClient
    from pydicom.dataset import Dataset

    built = []
    for n in range(3):
        source = pydicom.dcmread(io.BytesIO(make_instance("ct", PatientID=f"MEM-{n}").data))
        ds = Dataset()
        ds.update(source)
        ds.file_meta = source.file_meta
        built.append(ds)
    client = DICOMwebClient(url=endpoint.base_url, headers=endpoint.headers())
    response = client.store_instances(built)
    assert len(response.ReferencedSOPSequence) == 3 and "FailedSOPSequence" not in response
    back = client.retrieve_instance(built[1].StudyInstanceUID, built[1].SeriesInstanceUID, built[1].SOPInstanceUID)
    assert back.PatientID == "MEM-1" and back.pixel_array.shape == built[1].pixel_array.shape


def test_eight_clients_storing_into_one_study_at_once_leave_exact_counts(endpoint: Endpoint) -> None:
    study = generate_uid()
    series = {m: generate_uid() for m in ("CT", "MR", "OT")}
    batches = [
        [
            make_instance("mr" if m == "MR" else "ct", study_uid=study, series_uid=series[m], Modality=m)
            for m in ("CT", "MR", "OT", "CT")
        ]
        for _ in range(8)
    ]

    def store(batch: list) -> int:  # type: ignore[type-arg]
        body, ctype = stow_body(batch)
        headers = {**endpoint.headers(), "Content-Type": ctype}
        return requests.post(f"{endpoint.base_url}/studies", data=body, headers=headers, timeout=120).status_code

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(store, batches)) == [200] * 8
    (found,) = endpoint.get("/studies", params={"StudyInstanceUID": study, "includefield": "00080062"}).json()
    assert found["00201208"]["Value"] == [32]  # NumberOfStudyRelatedInstances
    assert found["00201206"]["Value"] == [3]  # NumberOfStudyRelatedSeries
    assert found["00080061"]["Value"] == ["CT", "MR", "OT"]  # ModalitiesInStudy
    assert len(found["00080062"]["Value"]) == 2  # SOPClassesInStudy: CT and MR images
    counts = {
        s["0020000E"]["Value"][0]: s["00201209"]["Value"][0] for s in endpoint.get(f"/studies/{study}/series").json()
    }
    assert counts == {series["CT"]: 16, series["MR"]: 8, series["OT"]: 8}


def test_the_indexer_sends_what_keeps_failing_to_its_dead_letter_queue(endpoint: Endpoint, s3: Any) -> None:
    """The deployed indexer retries a failing S3 event twice, then hands it to the stack's SQS
    dead-letter queue (its OnFailure destination), which the repair command drains."""
    if not endpoint.stack_name:
        pytest.skip("needs the stack's name to read its resources")
    resources = endpoint.boto3("cloudformation").describe_stack_resources(StackName=endpoint.stack_name)
    physical = {r["LogicalResourceId"]: r["PhysicalResourceId"] for r in resources["StackResources"]}
    config = endpoint.boto3("lambda").get_function_event_invoke_config(
        FunctionName=physical["IndexerFunction"], Qualifier="$LATEST"
    )
    assert config["MaximumRetryAttempts"] == 2
    queue_arn = config["DestinationConfig"]["OnFailure"]["Destination"]
    sqs = endpoint.boto3("sqs")
    url = sqs.get_queue_url(QueueName=queue_arn.rsplit(":", 1)[1])["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["MessageRetentionPeriod"])["Attributes"]
    assert attributes["MessageRetentionPeriod"] == "1209600"
