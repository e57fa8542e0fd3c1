"""Unit-test fixtures: S3 and DynamoDB on moto as template.yaml declares them, the in-memory fakes,
and HTTP clients on ``create_app`` over either."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from moto import mock_aws
from starlette.testclient import TestClient

from dicomweb_server.blobs.memory import MemoryBlobStore
from dicomweb_server.blobs.s3 import S3BlobStore
from dicomweb_server.index.dynamodb import DynamoDbIndex
from dicomweb_server.index.memory import MemoryIndex
from dicomweb_server.ports import BlobStore, MetadataIndex
from dicomweb_server.settings import Settings
from dicomweb_server.web import create_app
from tests.corpus import create_bucket, create_table, list_keys

from .doubles import Serialized, Untransacted

REGION = "eu-west-1"
BUCKET = "dicomweb-unit-bucket"
TABLE = "dicomweb-unit-index"


@contextmanager
def moto_aws() -> Iterator[None]:
    """Everything boto3 does inside goes to moto, with fake credentials (never real ones)."""
    with pytest.MonkeyPatch.context() as mp:
        for name in (
            "AWS_PROFILE",
            "AWS_SESSION_TOKEN",
            "AWS_ENDPOINT_URL",
            "AWS_ENDPOINT_URL_S3",
            "AWS_ENDPOINT_URL_DYNAMODB",
        ):
            mp.delenv(name, raising=False)
        mp.setenv("AWS_ACCESS_KEY_ID", "testing")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        mp.setenv("AWS_DEFAULT_REGION", REGION)
        with mock_aws():
            yield


@pytest.fixture(scope="module")
def moto_clients() -> Iterator[tuple[Any, Any]]:
    """One moto session per test module: boto3 clients are slow to build, and a module-scoped mock
    never outlives the unit tests (the integration tests talk to a real endpoint)."""
    with moto_aws():
        yield boto3.client("s3", region_name=REGION), boto3.client("dynamodb", region_name=REGION)


@dataclass
class Aws:
    """moto clients, and a bucket and table (fresh for each test) made as template.yaml makes them."""

    s3: Any
    dynamodb: Any
    bucket: str
    table: str


_names = itertools.count()


@pytest.fixture
def aws(moto_clients: tuple[Any, Any]) -> Iterator[Aws]:
    s3, dynamodb = moto_clients
    n = next(_names)
    env = Aws(s3, dynamodb, f"{BUCKET}-{n}", f"{TABLE}-{n}")
    create_bucket(s3, env.bucket)
    create_table(dynamodb, env.table)
    yield env
    # moto copies every table on each transaction: keep only the running test's table
    dynamodb.delete_table(TableName=env.table)


@dataclass
class Backend:
    """A pair of ports, and ``objects()``: every stored object key, whatever is behind them."""

    name: str
    index: MetadataIndex
    blobs: BlobStore
    objects: Callable[[], list[str]]
    #: The same index, for loading many instances quickly (see ``doubles.Untransacted``).
    bulk: MetadataIndex


def memory_backend() -> Backend:
    blobs, index = MemoryBlobStore(), MemoryIndex()
    return Backend("memory", index, blobs, lambda: sorted(blobs.objects), index)


@pytest.fixture(params=["memory", "aws"])
def backend(request: pytest.FixtureRequest) -> Backend:
    """The in-memory fakes, or the S3/DynamoDB adapters on moto: tests using this run against both."""
    if request.param == "memory":
        return memory_backend()
    env: Aws = request.getfixturevalue("aws")
    return Backend(
        "aws",
        DynamoDbIndex(Serialized(env.dynamodb), env.table),
        S3BlobStore(Serialized(env.s3), env.bucket),
        lambda: list_keys(env.s3, env.bucket),
        DynamoDbIndex(Untransacted(env.dynamodb), env.table),
    )


@pytest.fixture
def memory() -> Backend:
    """The in-memory fakes only: for behaviour decided at the edge, before storage is involved."""
    return memory_backend()


@pytest.fixture
def settings() -> Settings:
    return Settings(bucket_name=BUCKET, table_name=TABLE)


@pytest.fixture
def make_client(backend: Backend, settings: Settings) -> Callable[..., TestClient]:
    """``make_client(settings=..., index=...)``: a TestClient on create_app over the backend's ports."""

    def make(settings: Settings = settings, index: MetadataIndex | None = None, **kwargs: Any) -> TestClient:
        return TestClient(create_app(settings, index=index or backend.index, blobs=backend.blobs), **kwargs)

    return make


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client()


@pytest.fixture
def memory_client(memory: Backend, settings: Settings) -> TestClient:
    return TestClient(create_app(settings, index=memory.index, blobs=memory.blobs))
