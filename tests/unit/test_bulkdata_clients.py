"""What the Python dicomweb-client does with metadata and bulk data, over real HTTP (uvicorn on
loopback, in-memory ports): series metadata (gzip-encoded, as requests asks for it), every
BulkDataURI through ``retrieve_bulkdata`` (whole and as a byte range, byte for byte), and
InlineBinary read back by pydicom's ``Dataset.from_json``."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from dicomweb_client.api import DICOMwebClient
from pydicom.dataset import Dataset

from dicomweb_server.blobs.memory import MemoryBlobStore
from dicomweb_server.index.memory import MemoryIndex
from dicomweb_server.settings import Settings
from dicomweb_server.web import create_app

from .test_bulkdata import CREATOR, ct_slice


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # dicomweb-client sends Host without the port (its ``host`` is the URL's hostname), so the
    # base URL the server would derive from Host would lack it: PUBLIC_BASE_URL says it instead.
    settings = Settings(bucket_name="b", table_name="t", public_base_url=f"http://127.0.0.1:{port}")
    app = create_app(settings, index=MemoryIndex(), blobs=MemoryBlobStore())
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        thread.join(timeout=10)


def test_dicomweb_client_reads_series_metadata_and_resolves_every_bulk_data_uri(server):
    client = DICOMwebClient(url=server)
    first = ct_slice(seed=21)
    second = ct_slice(study_uid=first.study_uid, series_uid=first.series_uid, number=2, seed=22)
    client.store_instances([first.dataset(), second.dataset()])
    metadata = client.retrieve_series_metadata(first.study_uid, first.series_uid)
    assert [m["00080018"]["Value"][0] for m in metadata] == [first.sop_uid, second.sop_uid]
    for item, inst in zip(metadata, (first, second), strict=True):
        original = inst.dataset()
        (pixels,) = client.retrieve_bulkdata(item["7FE00010"]["BulkDataURI"])
        assert pixels == original.PixelData
        (head,) = client.retrieve_bulkdata(item["7FE00010"]["BulkDataURI"], byte_range=(0, 99))
        assert head == original.PixelData[:100]
        big = original.private_block(0x0009, CREATOR).get_tag(0x10)
        (value,) = client.retrieve_bulkdata(item[f"{big:08X}"]["BulkDataURI"])
        assert value == original[big].value
        nested = original.ReferencedImageSequence[1].private_block(0x0009, CREATOR).get_tag(0x12)
        (value,) = client.retrieve_bulkdata(item["00081140"]["Value"][1][f"{nested:08X}"]["BulkDataURI"])
        assert value == original.ReferencedImageSequence[1][nested].value


def test_dicomweb_client_instance_metadata_round_trips_inline_binary(server):
    client = DICOMwebClient(url=server)
    inst = ct_slice(seed=23)
    client.store_instances([inst.dataset()])
    item = client.retrieve_instance_metadata(inst.study_uid, inst.series_uid, inst.sop_uid)  # one dataset
    original = inst.dataset()
    small = original.private_block(0x0009, CREATOR).get_tag(0x11)
    assert Dataset.from_json(item, bulk_data_uri_handler=lambda uri: b"")[small].value == original[small].value
