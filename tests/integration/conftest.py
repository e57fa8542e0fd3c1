"""One endpoint-agnostic fixture for the integration tests: the same tests run against

1. an endpoint you give (real AWS, or a stack you deployed into LocalStack): ``--dicomweb-url`` or
   ``DICOMWEB_BASE_URL`` (with ``DICOMWEB_API_KEY``; for the S3-drop tests also ``DICOMWEB_BUCKET``
   and, off AWS, ``DICOMWEB_AWS_ENDPOINT_URL``);
2. else LocalStack through pytest-localstack, where a Docker daemon answers (the stack is built and
   deployed into it with sam);
3. else the embedded ministack cloud (``scripts/localcloud.py``), which is what CI here uses.

Every test talks HTTP to the deployed API Gateway URL; nothing is imported from the server.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import localcloud  # noqa: E402


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)


@dataclass
class Endpoint:
    """A deployed stack as the tests see it."""

    base_url: str
    api_key: str | None
    kind: str
    region: str = "us-east-1"
    aws_endpoint_url: str | None = None
    bucket: str | None = None
    stack_name: str | None = None
    cloud: Any = field(default=None, repr=False)

    def restart(self) -> None:
        """Stop the embedded cloud gracefully and start it again on the same port (ministack only)."""
        assert self.cloud is not None, "only an embedded cloud can be restarted"
        workdir, port = self.cloud.workdir, self.cloud.port
        self.cloud.stop()
        self.cloud = localcloud.start_cloud(workdir, port=port, persist=True, api_key=self.api_key)
        self.base_url = self.cloud.base_url

    @classmethod
    def of_cloud(cls, cloud: Any, api_key: str | None) -> Endpoint:
        """The endpoint of an embedded cloud (``localcloud.start_cloud``)."""
        return cls(
            cloud.base_url,
            api_key,
            "ministack",
            cloud.region,
            cloud.aws_endpoint_url,
            cloud.bucket,
            cloud.stack_name,
            cloud,
        )

    def crash_and_restart(self, *, lose_saved_state: bool = False) -> list[str]:
        """Kill every process of the embedded cloud at once (SIGKILL to ministack's process group,
        its Lambda workers included: nothing is saved), optionally remove its saved state too,
        then start it as ``make run`` would; returns what the recovery printed."""
        assert self.cloud is not None, "only an embedded cloud can crash"
        workdir, port = self.cloud.workdir, self.cloud.port
        os.killpg(self.cloud.process.pid, signal.SIGKILL)
        self.cloud.process.wait(30)
        self.cloud.stop()  # releases the workdir; the marker of the unclean stop stays
        if lose_saved_state:
            shutil.rmtree(workdir / "state", ignore_errors=True)
        self.cloud = localcloud.start_cloud(workdir, port=port, persist=True, api_key=self.api_key)
        self.base_url = self.cloud.base_url
        self.bucket = self.cloud.bucket
        return list(self.cloud.recovery)

    @property
    def wado_uri_url(self) -> str:
        return f"{self.base_url}/wadouri"

    def headers(self, **extra: str) -> dict[str, str]:
        out = {"apikey": self.api_key} if self.api_key else {}
        out.update({k.replace("_", "-"): v for k, v in extra.items()})
        return out

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        headers = {**self.headers(), **kwargs.pop("headers", {})}
        return requests.get(self.base_url + path, headers=headers, timeout=60, **kwargs)

    def post(self, path: str, data: bytes, content_type: str, **kwargs: Any) -> requests.Response:
        headers = {**self.headers(), "Content-Type": content_type, **kwargs.pop("headers", {})}
        return requests.post(self.base_url + path, data=data, headers=headers, timeout=60, **kwargs)

    def boto3(self, service: str) -> Any:
        import boto3

        if self.aws_endpoint_url:
            return boto3.client(
                service,
                endpoint_url=self.aws_endpoint_url,
                region_name=self.region,
                aws_access_key_id="test",
                aws_secret_access_key="test",
            )
        return boto3.client(service, region_name=self.region)


def _docker_answers() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


class _ExternalProcess:
    """Stands in for the ministack process when the cloud is a LocalStack container."""

    returncode = None

    def poll(self) -> None:
        return None


def _localstack(workdir: Path, api_key: str) -> Iterator[Endpoint]:
    import docker
    from pytest_localstack.session import LocalstackSession

    services = [
        "s3",
        "dynamodb",
        "lambda",
        "apigateway",
        "cloudformation",
        "iam",
        "sts",
        "secretsmanager",
        "logs",
        "ssm",
    ]
    with LocalstackSession(docker.from_env(), services=services) as session:
        port = int(session.endpoint_url("s3").rsplit(":", 1)[1].split("/")[0])
        cloud = localcloud.Cloud(
            workdir=workdir,
            port=port,
            process=_ExternalProcess(),  # type: ignore[arg-type]
            persist=False,
            api_key=api_key,
        )
        (workdir / "logs").mkdir(parents=True, exist_ok=True)
        localcloud.deploy(cloud, localcloud.with_api_key(None, api_key), force=True)
        yield Endpoint(
            cloud.base_url, api_key, "localstack", cloud.region, cloud.aws_endpoint_url, cloud.bucket, cloud.stack_name
        )


@pytest.fixture(scope="session")
def endpoint(pytestconfig: pytest.Config) -> Iterator[Endpoint]:
    url = pytestconfig.getoption("--dicomweb-url") or os.environ.get("DICOMWEB_BASE_URL")
    if url:
        yield Endpoint(
            base_url=url.rstrip("/"),
            api_key=pytestconfig.getoption("--dicomweb-api-key") or os.environ.get("DICOMWEB_API_KEY"),
            kind="given",
            region=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
            aws_endpoint_url=os.environ.get("DICOMWEB_AWS_ENDPOINT_URL"),
            bucket=os.environ.get("DICOMWEB_BUCKET"),
        )
        return
    api_key = secrets.token_urlsafe(18)
    workdir = ROOT / ".local" / "test-cloud"
    if _docker_answers() and os.environ.get("DICOMWEB_TEST_CLOUD", "") != "ministack":
        yield from _localstack(workdir, api_key)
        return
    for stale in ("state", "s3", localcloud.PARKED):  # every session starts from an empty, persistent cloud
        shutil.rmtree(workdir / stale, ignore_errors=True)
    (workdir / localcloud.RUNNING_MARKER).unlink(missing_ok=True)
    cloud = localcloud.start_cloud(workdir, persist=True, api_key=api_key)
    found = Endpoint.of_cloud(cloud, api_key)
    try:
        yield found
    finally:
        found.cloud.stop()


@pytest.fixture(scope="session")
def s3(endpoint: Endpoint) -> Any:
    """S3 access to the stack's bucket (for the S3-drop tests); skipped for a given endpoint without one."""
    if not endpoint.bucket:
        pytest.skip("set DICOMWEB_BUCKET (and DICOMWEB_AWS_ENDPOINT_URL off AWS) to test S3 drops")
    return endpoint.boto3("s3")
