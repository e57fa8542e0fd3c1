#!/usr/bin/env python3
"""The embedded local cloud: ministack on 127.0.0.1 with template.yaml deployed into it.

CLI (run it with the dev venv's python, which has boto3):

    python scripts/localcloud.py run [--port N] [--parameter-overrides "K=V K2=V2"]
    python scripts/localcloud.py stop      # stop a `run` started elsewhere (SIGTERM, graceful)
    python scripts/localcloud.py status    # print .local/endpoint.json if that cloud is up

`run` starts ministack (state under .local/state and .local/s3), runs `sam build --cached
--parallel` and `sam deploy`, prints the DICOMweb base URL, writes .local/endpoint.json and
stays in the foreground until Ctrl-C / SIGTERM / SIGHUP, which stop ministack with SIGTERM:
ministack saves non-S3 state (DynamoDB, Lambda, API Gateway, CloudFormation) only on a
graceful shutdown, so never kill -9 it. Tool output goes to .local/logs/*.log.

Python API (for the integration tests: an isolated cloud on a free port):

    from localcloud import start_cloud
    cloud = start_cloud(tmp_workdir, persist=False)
    ... cloud.base_url, cloud.aws_endpoint_url, cloud.bucket, cloud.table, cloud.boto3_client("s3")
    cloud.stop()

Only the standard library and boto3 are used.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_WORKDIR = ROOT / ".local"
DEFAULT_PORT = 4566
HOST = "127.0.0.1"
REGION = "us-east-1"
STACK_NAME = "dicomweb-local"
DEFAULT_STAGE = "Prod"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}
#: Seconds a graceful stop may take: ministack writes every table to disk then, which takes minutes
#: for a large archive on a busy machine (killing it then would lose all of it).
STOP_TIMEOUT = float(os.environ.get("LOCALCLOUD_STOP_TIMEOUT", "600"))

# Environment variables that must not leak from the caller into ministack (whose whole
# environment is inherited by the Lambda functions it runs) or into sam.
_SCRUBBED_ENV = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_ENDPOINT_URL",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_CA_BUNDLE",
    "PYTHONPATH",
    "PYTHONHOME",
    "PYTHONSTARTUP",
    "VIRTUAL_ENV",
    "LOCALSTACK_HOSTNAME",
    "GATEWAY_PORT",
    "EDGE_PORT",
    "PERSIST_STATE",
    "STATE_DIR",
    "S3_PERSIST",
    "S3_DATA_DIR",
    "BIND_HOST",
    "LOCALSTACK_PERSISTENCE",
    "USE_SSL",
    "IOT_MTLS_ENABLED",
    "IOT_MTLS_PORT",
    "SFTP_ENABLED",
    "MINISTACK_HOST",
    "MINISTACK_REGION",
)


class LocalCloudError(RuntimeError):
    """Something failed while starting the local cloud; the message carries the log tail."""


class _Stop(BaseException):
    """Raised from a signal handler to unwind `run` (SIGTERM/SIGHUP/SIGINT)."""


# --------------------------------------------------------------------------- helpers


def _log(msg: str) -> None:
    print(f"[localcloud] {msg}", file=sys.stderr, flush=True)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text[-lines:])


def _fail(step: str, log: Path, detail: str = "") -> LocalCloudError:
    msg = f"{step} failed{': ' + detail if detail else ''}\n--- last lines of {log} ---\n{_tail(log)}\n---"
    return LocalCloudError(msg)


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    # Also refuse a port something answers on (bound to another interface, say).
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex((HOST, port)) != 0


def free_port() -> int:
    """A port free on 127.0.0.1 now (there is a small race until ministack binds it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _find_python312() -> Path:
    try:
        out = subprocess.run(
            [str(ROOT / "scripts" / "find-python.sh"), "3.12"],
            check=True,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as e:
        err = getattr(e, "stderr", "") or str(e)
        raise LocalCloudError(f"no Python 3.12 for sam build: {err.strip()}") from e
    return Path(out)


def _venv_bin(name: str, exe: str) -> Path:
    path = ROOT / ".local" / "venvs" / name / "bin" / exe
    if not path.exists():
        raise LocalCloudError(f"{path} is missing: run `make tools` first")
    return path


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED_ENV}
    # Never read the user's real AWS configuration: everything here is local and dummy.
    env["AWS_CONFIG_FILE"] = os.devnull
    env["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    env.update(CREDENTIALS)
    env["AWS_DEFAULT_REGION"] = REGION
    env["AWS_REGION"] = REGION
    return env


def _set_pdeathsig() -> None:  # runs in the child between fork and exec
    """Ask Linux to SIGTERM the child (a graceful ministack shutdown) if we die, even by kill -9."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


#: Where the local stack differs from AWS: ministack cannot stream (it ignores responseTransferMode
#: STREAM and runs no Lambda Web Adapter), so the retrieve function answers buffered through
#: Mangum; and it enforces no payload limit, so the buffered limit is raised for real-size studies
#: (docs/large-answers.md). Overrides given to ``deploy`` win over these.
LOCAL_PARAMETERS: dict[str, Any] = {"Streaming": "Disabled", "MaxResponseBytes": 400_000_000}


def with_local_parameters(params: Mapping[str, Any] | str | None) -> Mapping[str, Any] | str:
    """``params`` with every LOCAL_PARAMETERS entry it does not set itself."""
    if isinstance(params, str):
        given = {item.split("=", 1)[0] for item in shlex.split(params)}
        extra = format_parameter_overrides({k: v for k, v in LOCAL_PARAMETERS.items() if k not in given})
        return " ".join(p for p in (extra, params) if p)
    return {**LOCAL_PARAMETERS, **(params or {})}


def format_parameter_overrides(params: Mapping[str, Any] | str | None) -> str | None:
    if params is None or isinstance(params, str):
        return params or None
    parts = []
    for key, value in params.items():
        text = str(value)
        parts.append(f'{key}="{text}"' if any(c.isspace() for c in text) or not text else f"{key}={text}")
    return " ".join(parts) or None


def _http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    req = urllib.request.Request(url, method="GET")
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (local URL)
        return resp.status, resp.read()


# --------------------------------------------------------------------------- the cloud


@dataclass
class Cloud:
    """A running ministack with the stack deployed into it."""

    workdir: Path
    port: int
    process: subprocess.Popen[bytes]
    persist: bool
    project: Path = ROOT
    stack_name: str = STACK_NAME
    region: str = REGION
    api_id: str = ""
    stage: str = DEFAULT_STAGE
    bucket: str = ""
    table: str = ""
    outputs: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    #: The key every route requires (apikey / x-api-key header), or None when the stack has none.
    api_key: str | None = None
    #: Why the last run's state cannot be trusted ("" when it stopped cleanly): see ``recover``.
    unclean: str = ""
    #: What the recovery did, in lines for the terminal (empty when none was needed).
    recovery: list[str] = field(default_factory=list)
    _lock: IO[str] | None = field(default=None, repr=False)

    # --- addresses
    @property
    def aws_endpoint_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def base_url(self) -> str:
        """The DICOMweb base URL (no trailing slash): <base_url>/studies etc."""
        return f"{self.aws_endpoint_url}/_aws/execute-api/{self.api_id}/{self.stage}"

    @property
    def wado_uri_url(self) -> str:
        return f"{self.base_url}/wadouri"

    @property
    def logs(self) -> Path:
        return self.workdir / "logs"

    def endpoint(self) -> dict[str, Any]:
        return {
            "base_url": self.base_url,
            "wado_uri_url": self.wado_uri_url,
            "api_key": self.api_key,
            "aws_endpoint_url": self.aws_endpoint_url,
            "region": self.region,
            "stack_name": self.stack_name,
            "bucket": self.bucket,
            "table": self.table,
        }

    def boto3_client(self, service: str) -> Any:
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.aws_endpoint_url,
            region_name=self.region,
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )

    def alive(self) -> bool:
        return self.process.poll() is None

    def healthy(self) -> bool:
        try:
            return _http_get(f"{self.aws_endpoint_url}/_ministack/health")[0] == 200
        except (OSError, urllib.error.URLError):
            return False

    def reset(self) -> None:
        """POST /_ministack/reset: wipes EVERYTHING (the deployed stack too). Rarely what you want."""
        req = urllib.request.Request(f"{self.aws_endpoint_url}/_ministack/reset", method="POST", data=b"")
        urllib.request.urlopen(req, timeout=30).read()  # noqa: S310

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """Stop ministack gracefully (SIGTERM; it saves its state then) and release the workdir."""
        try:
            graceful = _stop_ministack(self.process, timeout)
            # A recovery that did not finish leaves the marker: the next start recovers again.
            if graceful and self.persist and (not self.unclean or self.recovery):
                (self.workdir / RUNNING_MARKER).unlink(missing_ok=True)
            return self.process.returncode
        finally:
            for name in ("endpoint.json", "localcloud.pid"):
                with contextlib.suppress(OSError):
                    if name == "endpoint.json" and not self._owns_endpoint_file():
                        continue
                    (self.workdir / name).unlink()
            if self._lock is not None:
                self._lock.close()
                self._lock = None

    def _owns_endpoint_file(self) -> bool:
        try:
            data = json.loads((self.workdir / "endpoint.json").read_text())
        except (OSError, ValueError):
            return False
        return bool(data.get("aws_endpoint_url") == self.aws_endpoint_url)

    def write_endpoint_file(self) -> Path:
        path = self.workdir / "endpoint.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.endpoint(), indent=2) + "\n")
        tmp.replace(path)
        return path

    def __enter__(self) -> Cloud:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _lock_workdir(workdir: Path) -> IO[str]:
    lock = open(workdir / "localcloud.lock", "w")  # noqa: SIM115 (held for the cloud's life)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.close()
        pid = ""
        with contextlib.suppress(OSError):
            pid = (workdir / "localcloud.pid").read_text().split()[0]
        raise LocalCloudError(
            f"another local cloud (pid {pid or '?'}) is using {workdir}; "
            "stop it first (python scripts/localcloud.py stop) or use another workdir"
        ) from None
    return lock


def _sam_translator_path() -> Path:
    """site-packages of the sam venv, which holds aws-sam-translator (and pydantic, jsonschema).

    ministack applies the AWS::Serverless transform server-side with samtranslator, an optional
    dependency. Installing it into the ministack venv would make pydantic & co. importable from
    every Lambda function (they run with ministack's interpreter), hiding missing dependencies.
    So ministack's own process appends this directory to sys.path at startup instead; the
    Lambda workers it spawns do not inherit an in-process sys.path change.
    """
    for site in sorted((ROOT / ".local" / "venvs" / "sam" / "lib").glob("python3*/site-packages")):
        if (site / "samtranslator").is_dir():
            return site
    raise LocalCloudError("aws-sam-translator not found in .local/venvs/sam: run `make tools` first")


_MINISTACK_LAUNCHER = (
    "import sys; sys.path.append(sys.argv.pop(1)); sys.argv[0] = 'ministack'; "
    "from ministack.app import main; sys.exit(main())"
)


def _start_ministack(workdir: Path, port: int, persist: bool) -> subprocess.Popen[bytes]:
    python = _venv_bin("ministack", "python")
    translator = _sam_translator_path()
    env = _clean_env()
    env.update(
        BIND_HOST=HOST,
        GATEWAY_PORT=str(port),
        MINISTACK_HOST="localhost",
        MINISTACK_REGION=REGION,
        # Lambda functions inherit ministack's environment: point their SDKs back at it.
        AWS_ENDPOINT_URL=f"http://{HOST}:{port}",
        PYTHONUNBUFFERED="1",
        # Side listeners that ignore BIND_HOST and bind 0.0.0.0: the IoT MQTT/mTLS broker (port
        # 8883, started at boot whenever `cryptography` is importable, as it is from the sam
        # venv's packages) and Transfer Family SFTP. This stack uses neither.
        IOT_MTLS_ENABLED="0",
        SFTP_ENABLED="0",
    )
    # tempfile.gettempdir() holds ministack's pid file ministack-<port>.pid; keep it per workdir.
    tmp = workdir / "tmp"
    tmp.mkdir(exist_ok=True)
    for stale in tmp.glob("ministack-lambda-*"):  # unpacked code of the last run's warm workers
        shutil.rmtree(stale, ignore_errors=True)
    env["TMPDIR"] = str(tmp)
    if persist:
        (workdir / "state").mkdir(exist_ok=True)
        (workdir / "s3").mkdir(exist_ok=True)
        env.update(PERSIST_STATE="1", STATE_DIR=str(workdir / "state"), S3_PERSIST="1", S3_DATA_DIR=str(workdir / "s3"))
    else:
        # Some services write to STATE_DIR even without persistence (cognito's signing key):
        # keep that inside the workdir, not in /tmp/ministack-state.
        (workdir / "scratch-state").mkdir(exist_ok=True)
        env.update(
            PERSIST_STATE="0",
            STATE_DIR=str(workdir / "scratch-state"),
            S3_PERSIST="0",
            S3_DATA_DIR=str(workdir / "scratch-s3"),
        )
    log = workdir / "logs" / "ministack.log"
    with open(log, "ab") as fh:
        fh.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} ministack on {HOST}:{port} =====\n".encode())
        fh.flush()
        return subprocess.Popen(
            [str(python), "-c", _MINISTACK_LAUNCHER, str(translator)],
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a terminal's Ctrl-C reaches us, and we stop it with SIGTERM
            preexec_fn=_set_pdeathsig,  # noqa: PLW1509
        )


def _wait_healthy(proc: subprocess.Popen[bytes], port: int, log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    url = f"http://{HOST}:{port}/_ministack/health"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise _fail("ministack", log, f"exited with code {proc.returncode} before becoming healthy")
        try:
            if _http_get(url, timeout=1.0)[0] == 200:
                return
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.1)
    raise _fail("ministack", log, f"no answer on {url} within {timeout:.0f}s")


def _stop_ministack(proc: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT) -> bool:
    """SIGTERM (ministack saves its state then) and wait; True when it stopped that way."""
    if proc.poll() is not None:
        return False  # it was gone already: whatever it had not saved is lost
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
        return True
    except subprocess.TimeoutExpired:
        _log(f"ministack did not stop within {timeout:.0f}s; killing it (state since its start is lost)")
        proc.kill()
        proc.wait(10)
        return False


# --------------------------------------------------------------------------- crash recovery
#
# ministack writes S3 objects to disk at once but saves every other service (the stack, the
# functions, the API, the tables, the bucket's notification and versioning settings, queued
# messages) only on a graceful stop. A run that did not stop that way (power loss, kill -9, an
# OOM kill) leaves a marker; the next start then trusts only S3: it redeploys the stack, and
# reconciles the index with the bucket (the repair command) before anyone is told the URL.

RUNNING_MARKER = "running"
ACCOUNT = "000000000000"
PARKED = "parked-buckets"


def _bucket_dirs(workdir: Path, stack_name: str) -> list[Path]:
    """The stack's bucket folders in ministack's S3 data (``<stack>-dicom-<account>-<region>``)."""
    base = workdir / "s3" / ACCOUNT
    return sorted(p for p in base.glob(f"{stack_name}-dicom-*") if p.is_dir()) if base.is_dir() else []


def unclean_reason(workdir: Path, stack_name: str = STACK_NAME) -> str:
    """Why the saved state of ``workdir`` cannot be trusted, or "" when the last run stopped cleanly."""
    if (workdir / RUNNING_MARKER).exists():
        return "the last run did not stop cleanly"
    if (workdir / PARKED).exists():
        return "a recovery was interrupted"
    if _bucket_dirs(workdir, stack_name) and not (workdir / "state" / "cloudformation.json").exists():
        return "the saved state is missing, the bucket is not"
    return ""


def _move_tree(source: Path, target: Path) -> None:
    """Move every file of ``source`` to the same place under ``target`` (a file of ``source``
    replaces one of ``target``: it is the newer copy in both uses), then remove ``source``.
    Renames only: nothing is copied."""
    target.mkdir(parents=True, exist_ok=True)
    for entry in sorted(source.iterdir()):
        dest = target / entry.name
        if entry.is_dir() and dest.is_dir():
            _move_tree(entry, dest)
        else:
            if dest.is_dir():
                shutil.rmtree(dest)
            os.replace(entry, dest)
    source.rmdir()


def _restart_ministack(cloud: Cloud, between: Callable[[], None] | None = None) -> None:
    """Stop ministack gracefully (its state saved), run ``between``, start it again on the same port."""
    if not _stop_ministack(cloud.process):
        raise LocalCloudError("ministack did not stop gracefully during the recovery")
    if between is not None:
        between()
    cloud.process = _start_ministack(cloud.workdir, cloud.port, cloud.persist)
    (cloud.workdir / "localcloud.pid").write_text(f"{os.getpid()} {cloud.process.pid} {cloud.port}\n")
    _wait_healthy(cloud.process, cloud.port, cloud.logs / "ministack.log")


def recover(cloud: Cloud, parameter_overrides: Mapping[str, Any] | str | None = None) -> list[str]:
    """After an unclean stop: redeploy, then index what S3 holds and the index lacks.

    When the stack itself was lost but its bucket was not (a crash before the first graceful
    stop, or a removed state folder), CloudFormation cannot create the bucket again over the
    objects: they are moved aside while ministack is stopped, the stack is deployed with a new,
    empty bucket, and the objects are moved back into it (renames, no copies). Then the repair
    command runs with no grace period: no write can be in flight, the stack was down.
    """
    started = time.monotonic()
    lines = [f"{cloud.unclean}: redeploying and reconciling the index with the bucket"]
    parked_root = cloud.workdir / PARKED
    if not _stack_intact(cloud):
        buckets = _bucket_dirs(cloud.workdir, cloud.stack_name)
        leftovers = sorted(parked_root.iterdir()) if parked_root.is_dir() else []
        if buckets or leftovers:

            def park() -> None:
                for bucket in buckets:
                    _move_tree(bucket, parked_root / bucket.name)

            def unpark() -> None:
                for parked in sorted(parked_root.iterdir()):
                    _move_tree(parked, cloud.workdir / "s3" / ACCOUNT / parked.name)
                parked_root.rmdir()

            _restart_ministack(cloud, park)
            _forget_lost_stack(cloud, [b.name for b in buckets])
            deploy(cloud, parameter_overrides, force=True)
            _restart_ministack(cloud, unpark)
            read_outputs(cloud)
            lines.append("  the stack was lost with ministack's state: deployed again around the kept objects")
        else:
            _forget_lost_stack(cloud, [])
            deploy(cloud, parameter_overrides, force=True)
    else:
        deploy(cloud, parameter_overrides, force=True)
    report = reconcile(cloud)
    lines += ["  " + line for line in report.lines()]
    lines.append(f"  recovered in {time.monotonic() - started:.1f}s")
    return lines


def _stack_intact(cloud: Cloud) -> bool:
    """The stack is complete and what it made still exists: a state saved halfway (a kill during
    the save) can name a stack whose table or API is gone."""
    if not _stack_complete(cloud):
        return False
    try:
        read_outputs(cloud)
        cloud.boto3_client("dynamodb").describe_table(TableName=cloud.table)
        cloud.boto3_client("s3").head_bucket(Bucket=cloud.bucket)
        cloud.boto3_client("apigateway").get_rest_api(restApiId=cloud.api_id)
    except Exception:  # noqa: BLE001 - any part missing means: deploy it again from scratch
        return False
    return True


def _forget_lost_stack(cloud: Cloud, buckets: list[str]) -> None:
    """Before deploying again: remove the empty husks ministack kept of the parked buckets (its
    saved bucket settings outlive the objects' folder) and a stack that a failed attempt left."""
    s3 = cloud.boto3_client("s3")
    for name in buckets:
        with contextlib.suppress(s3.exceptions.NoSuchBucket):
            for version in s3.list_object_versions(Bucket=name).get("Versions", []):
                raise LocalCloudError(f"bucket {name} still holds {version['Key']} after parking its objects")
            s3.delete_bucket(Bucket=name)
    cfn = cloud.boto3_client("cloudformation")
    with contextlib.suppress(cfn.exceptions.ClientError):
        status = cfn.describe_stacks(StackName=cloud.stack_name)["Stacks"][0].get("StackStatus", "")
        if status:  # a failed attempt, or a stack whose resources are gone (its bucket is Retain)
            cfn.delete_stack(StackName=cloud.stack_name)
            cfn.get_waiter("stack_delete_complete").wait(
                StackName=cloud.stack_name, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
            )


def reconcile(cloud: Cloud) -> Any:
    """The repair command (``dicomweb_server.store.repair``) against the cloud, no grace period."""
    layer = str(cloud.project / "layers" / "dicomweb")
    if layer not in sys.path:
        sys.path.insert(0, layer)
    from dicomweb_server.blobs.s3 import S3BlobStore
    from dicomweb_server.index.dynamodb import DynamoDbIndex
    from dicomweb_server.store.repair import repair

    index = DynamoDbIndex(cloud.boto3_client("dynamodb"), cloud.table)
    blobs = S3BlobStore(cloud.boto3_client("s3"), cloud.bucket)
    return repair(index, blobs, grace=0.0)


def deploy_or_recover(cloud: Cloud, parameter_overrides: Mapping[str, Any] | str | None, force: bool = False) -> None:
    if cloud.unclean:
        cloud.recovery = recover(cloud, parameter_overrides)
    else:
        deploy(cloud, parameter_overrides, force=force)


_current_child: subprocess.Popen[bytes] | None = None


def _run_tool(step: str, argv: list[str], env: dict[str, str], cwd: Path, log: Path) -> None:
    global _current_child
    with open(log, "ab") as fh:
        fh.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} {shlex.join(argv)} =====\n".encode())
        fh.flush()
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT)
        _current_child = proc
        try:
            rc = proc.wait()
        except BaseException:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
            if proc.poll() is None:
                proc.kill()
            raise
        finally:
            _current_child = None
    if rc != 0:
        raise _fail(step, log, f"exit code {rc}")


def _sam_env(port: int) -> dict[str, str]:
    env = _clean_env()
    py312 = _find_python312()
    env["PATH"] = f"{py312.parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(
        AWS_ENDPOINT_URL=f"http://{HOST}:{port}",
        SAM_CLI_TELEMETRY="0",
        SAM_CLI_POLL_DELAY="0.2",  # seconds between changeset/stack polls (sam default 0.5)
        PIP_DISABLE_PIP_VERSION_CHECK="1",
    )
    return env


# Inputs of `sam build`: when none changed since the last successful deploy into a stack that
# still exists, build and deploy are skipped (a restart then takes about a second).
_SOURCE_ROOTS = ("template.yaml", "functions", "layers")
_SKIPPED_PARTS = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"}


def source_fingerprint(project: Path, overrides: str | None, stack_name: str) -> str:
    digest = hashlib.sha256(f"{stack_name}\0{overrides or ''}\0".encode())
    for root in _SOURCE_ROOTS:
        base = project / root
        files = [base] if base.is_file() else sorted(p for p in base.rglob("*") if p.is_file())
        for path in files:
            rel = path.relative_to(project)
            if (
                _SKIPPED_PARTS.intersection(rel.parts)
                or path.suffix == ".pyc"
                or any(part.endswith(".egg-info") for part in rel.parts)
            ):
                continue
            digest.update(str(rel).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _stack_complete(cloud: Cloud) -> bool:
    try:
        stack = cloud.boto3_client("cloudformation").describe_stacks(StackName=cloud.stack_name)["Stacks"][0]
    except Exception:  # noqa: BLE001 (no such stack, or ministack lost it)
        return False
    return stack.get("StackStatus") in ("CREATE_COMPLETE", "UPDATE_COMPLETE")


def deploy(cloud: Cloud, parameter_overrides: Mapping[str, Any] | str | None = None, force: bool = False) -> None:
    """sam build --cached --parallel, then sam deploy into the cloud; fills the cloud's outputs.

    Both are skipped (cloud.timings["skipped"] = 1) when the template, functions/ and layers/
    and the overrides are unchanged since the last successful deploy from this workdir and
    the stack is still there; force=True always runs them.
    """
    workdir, project = cloud.workdir, cloud.project
    samdir = workdir / "sam"
    samdir.mkdir(exist_ok=True)
    overrides = format_parameter_overrides(with_local_parameters(parameter_overrides))
    stamp = samdir / "deployed.json"
    fingerprint = source_fingerprint(project, overrides, cloud.stack_name)
    try:
        recorded = json.loads(stamp.read_text())
    except (OSError, ValueError):
        recorded = {}
    if (
        not force
        and recorded.get("fingerprint") == fingerprint
        and recorded.get("project") == str(project)
        and _stack_complete(cloud)
    ):
        cloud.timings.update(sam_build=0.0, sam_deploy=0.0, skipped=1.0)
        read_outputs(cloud)
        return
    with contextlib.suppress(OSError):
        stamp.unlink()

    sam = _venv_bin("sam", "sam")
    env = _sam_env(cloud.port)
    # An explicit, empty config: never pick up a samconfig.toml written by `sam deploy --guided`.
    config = samdir / "samconfig.toml"
    config.write_text("version = 0.1\n")
    build_dir, cache_dir = samdir / "build", samdir / "cache"
    common = ["--config-file", str(config)]

    t0 = time.monotonic()
    _run_tool(
        "sam build",
        [
            str(sam),
            "build",
            "--cached",
            "--parallel",
            "--template-file",
            str(project / "template.yaml"),
            "--build-dir",
            str(build_dir),
            "--cache-dir",
            str(cache_dir),
            *common,
        ],
        env,
        project,
        workdir / "logs" / "sam-build.log",
    )
    cloud.timings["sam_build"] = time.monotonic() - t0

    t0 = time.monotonic()
    argv = [
        str(sam),
        "deploy",
        "--template-file",
        str(build_dir / "template.yaml"),
        "--stack-name",
        cloud.stack_name,
        "--region",
        cloud.region,
        "--resolve-s3",
        "--capabilities",
        "CAPABILITY_IAM",
        "--no-confirm-changeset",
        "--no-fail-on-empty-changeset",
        "--no-progressbar",
        *common,
    ]
    if overrides:
        argv += ["--parameter-overrides", overrides]
    _run_tool("sam deploy", argv, env, project, workdir / "logs" / "sam-deploy.log")
    cloud.timings["sam_deploy"] = time.monotonic() - t0
    read_outputs(cloud)
    stamp.write_text(json.dumps({"fingerprint": fingerprint, "project": str(project)}) + "\n")


def read_outputs(cloud: Cloud) -> None:
    cfn = cloud.boto3_client("cloudformation")
    stack = cfn.describe_stacks(StackName=cloud.stack_name)["Stacks"][0]
    status = stack.get("StackStatus", "")
    if not status.endswith("_COMPLETE") or "ROLLBACK" in status:
        raise _fail("sam deploy", cloud.workdir / "logs" / "sam-deploy.log", f"stack status {status}")
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    params = {p["ParameterKey"]: p.get("ParameterValue", "") for p in stack.get("Parameters", [])}
    cloud.outputs = outputs
    cloud.api_id = outputs.get("ApiId", "")
    cloud.bucket = outputs.get("BucketName", "")
    cloud.table = outputs.get("TableName", "")
    cloud.stage = params.get("StageName") or DEFAULT_STAGE
    if not cloud.api_id:
        apis = cloud.boto3_client("apigateway").get_rest_apis().get("items", [])
        match = [a["id"] for a in apis if a.get("name") == f"{cloud.stack_name}-dicomweb"]
        if not match:
            raise LocalCloudError(f"stack {cloud.stack_name} has no ApiId output and no REST API was found")
        cloud.api_id = match[0]


def _rotate_logs(logs: Path, max_bytes: int = 20_000_000) -> None:
    for log in logs.glob("*.log"):
        with contextlib.suppress(OSError):
            if log.stat().st_size > max_bytes:
                log.replace(log.with_name(log.name + ".1"))


def with_api_key(overrides: Mapping[str, Any] | str | None, api_key: str | None) -> Mapping[str, Any] | str | None:
    """Add ApiKey=<key> to the deploy's parameter overrides (no-op without a key)."""
    if not api_key:
        return overrides
    if overrides is None:
        return {"ApiKey": api_key}
    if isinstance(overrides, str):
        return f"{overrides} ApiKey={api_key}"
    return {**overrides, "ApiKey": api_key}


def local_api_key(workdir: Path) -> str:
    """The API key of the local stack: $DICOMWEB_API_KEY, else one generated once and kept in
    <workdir>/api_key (so restarts keep the same key)."""
    if os.environ.get("DICOMWEB_API_KEY"):
        return os.environ["DICOMWEB_API_KEY"]
    path = workdir / "api_key"
    if path.exists() and path.read_text().strip():
        return path.read_text().strip()
    import secrets

    key = secrets.token_urlsafe(24)
    path.write_text(key + "\n")
    path.chmod(0o600)
    return key


def start_cloud(
    workdir: Path | str,
    port: int | None = None,
    persist: bool = True,
    parameter_overrides: Mapping[str, Any] | str | None = None,
    *,
    project: Path | str = ROOT,
    stack_name: str = STACK_NAME,
    deploy_stack: bool = True,
    force_deploy: bool = False,
    write_endpoint: bool = False,
    api_key: str | None = None,
) -> Cloud:
    """Start ministack in `workdir` (state/, s3/, logs/, sam/ live there) and deploy the stack.

    port None picks a free port. persist=False keeps all state in memory (nothing survives
    stop()). `project` is the directory holding template.yaml (default: this repository).
    Raises LocalCloudError (with the relevant log tail) on failure; ministack is stopped then.
    Call .stop() (or use it as a context manager) to stop ministack gracefully. If the calling
    process dies without stopping it, Linux sends ministack SIGTERM (PR_SET_PDEATHSIG); that
    is tied to the calling *thread*, so call this from a thread that outlives the cloud.
    """
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "logs").mkdir(exist_ok=True)
    lock = _lock_workdir(workdir)
    try:
        _rotate_logs(workdir / "logs")
        if port is None:
            port = free_port()
        elif not _port_free(port):
            raise LocalCloudError(f"port {HOST}:{port} is already in use")
        unclean = unclean_reason(workdir, stack_name) if persist else ""
        t0 = time.monotonic()
        proc = _start_ministack(workdir, port, persist)
        if persist:
            (workdir / RUNNING_MARKER).write_text(f"{os.getpid()} {proc.pid} {time.time():.0f}\n")
    except BaseException:
        lock.close()
        raise
    cloud = Cloud(
        workdir=workdir,
        port=port,
        process=proc,
        persist=persist,
        project=Path(project).resolve(),
        stack_name=stack_name,
        _lock=lock,
        api_key=api_key,
        unclean=unclean,
    )
    parameter_overrides = with_api_key(parameter_overrides, api_key)
    try:
        (workdir / "localcloud.pid").write_text(f"{os.getpid()} {proc.pid} {port}\n")
        _wait_healthy(proc, port, workdir / "logs" / "ministack.log")
        cloud.timings["ministack"] = time.monotonic() - t0
        if deploy_stack:
            deploy_or_recover(cloud, parameter_overrides, force=force_deploy)
        if write_endpoint:
            cloud.write_endpoint_file()
    except BaseException:
        cloud.stop()
        raise
    return cloud


def _cmdline_has(pid: int, marker: bytes) -> bool:
    try:
        return marker in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def stop(workdir: Path | str = DEFAULT_WORKDIR, timeout: float = 90.0) -> bool:
    """Stop the cloud running from `workdir` (started by `run` in another process).

    Sends SIGTERM to the `run` process (which stops ministack gracefully), or straight to an
    orphaned ministack. Returns False if nothing was running.
    """
    workdir = Path(workdir)
    try:
        run_pid, ms_pid, _port = (int(x) for x in (workdir / "localcloud.pid").read_text().split()[:3])
    except (OSError, ValueError):
        return False
    stopped = False
    for pid, marker in ((run_pid, b"localcloud"), (ms_pid, b"ministack")):
        if pid == os.getpid() or not _cmdline_has(pid, marker):
            continue  # gone, or the pid was reused by an unrelated process
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
            stopped = True
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.2)
            else:
                raise LocalCloudError(f"process {pid} did not stop within {timeout:.0f}s")
    with contextlib.suppress(OSError):
        (workdir / "localcloud.pid").unlink()
    return stopped


# --------------------------------------------------------------------------- CLI


def _raise_stop(signum: int, _frame: object) -> None:
    raise _Stop(signal.Signals(signum).name)


def cmd_run(args: argparse.Namespace) -> int:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_stop)
    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        _lock_workdir(workdir).close()  # fail fast, before picking a port, if another run owns it
    except LocalCloudError as e:
        _log(f"ERROR: {e}")
        return 1
    port = args.port or int(os.environ.get("LOCALCLOUD_PORT") or 0) or None
    if port is None:
        port = DEFAULT_PORT if _port_free(DEFAULT_PORT) else free_port()
    started = time.monotonic()
    cloud: Cloud | None = None
    try:
        _log(f"starting ministack on {HOST}:{port} (state in {workdir}; logs in {workdir / 'logs'})")
        api_key = None if args.no_api_key else local_api_key(workdir)
        cloud = start_cloud(
            workdir,
            port=port,
            persist=not args.no_persist,
            parameter_overrides=args.parameter_overrides,
            project=Path(args.project),
            deploy_stack=False,
            api_key=api_key,
        )
        _log(f"ministack is up ({cloud.timings['ministack']:.1f}s); sam build + deploy (stack {cloud.stack_name})...")
        if cloud.unclean:
            _log(f"{cloud.unclean}: ministack lost what it had not saved; recovering from S3...")
        deploy_or_recover(cloud, with_api_key(args.parameter_overrides, api_key), force=args.force_deploy)
        for line in cloud.recovery:
            _log(line)
        path = cloud.write_endpoint_file()
        t = cloud.timings
        if t.get("skipped"):
            _log(
                f"sources unchanged since the last deploy: build and deploy skipped "
                f"(total {time.monotonic() - started:.1f}s; --force-deploy to redeploy)"
            )
        else:
            _log(
                f"deployed (build {t['sam_build']:.1f}s, deploy {t['sam_deploy']:.1f}s, "
                f"total {time.monotonic() - started:.1f}s)"
            )
        bar = "=" * 78
        print(
            f"\n{bar}\n  DICOMweb base URL:  {cloud.base_url}\n"
            f"  WADO-URI:           {cloud.wado_uri_url}\n"
            f"  API key:            {cloud.api_key or '(none: --no-api-key)'}  (header apikey or x-api-key)\n"
            f"  AWS endpoint:       {cloud.aws_endpoint_url}  (region {cloud.region}, keys test/test)\n"
            f"  bucket / table:     {cloud.bucket} / {cloud.table}\n"
            f"  written to:         {path}\n"
            f"  Ctrl-C (or `python scripts/localcloud.py stop`) stops it; state is kept.\n{bar}\n",
            flush=True,
        )
        while cloud.alive():
            time.sleep(0.5)
        _log(
            f"ministack exited unexpectedly (code {cloud.process.returncode})\n"
            f"{_tail(workdir / 'logs' / 'ministack.log')}"
        )
        return 1
    except _Stop as stop_signal:
        _log(f"{stop_signal} received: stopping ministack (saving state)...")
        return 0
    except LocalCloudError as e:
        _log(f"ERROR: {e}")
        return 1
    finally:
        # Signals during the shutdown must not interrupt the state save.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        if cloud is not None:
            rc = cloud.stop()
            _log(f"ministack stopped (exit code {rc})")


def cmd_stop(args: argparse.Namespace) -> int:
    if stop(args.workdir):
        _log("stopped")
    else:
        _log(f"no local cloud is running from {args.workdir}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    path = Path(args.workdir) / "endpoint.json"
    try:
        data = json.loads(path.read_text())
        ok = _http_get(f"{data['aws_endpoint_url']}/_ministack/health")[0] == 200
    except (OSError, ValueError, KeyError, urllib.error.URLError):
        ok = False
    if not ok:
        print(f"not running ({path} missing or its endpoint does not answer)", file=sys.stderr)
        return 1
    print(json.dumps(data, indent=2))
    return 0


@contextlib.contextmanager
def running_cloud(workdir: Path | str, **kwargs: Any) -> Iterator[Cloud]:
    """`with running_cloud(tmp) as cloud:` — start_cloud + a guaranteed graceful stop."""
    cloud = start_cloud(workdir, **kwargs)
    try:
        yield cloud
    finally:
        cloud.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--workdir", default=str(DEFAULT_WORKDIR), help="state, logs and endpoint.json (default: .local)"
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="start ministack, deploy, print the URL, stay in the foreground")
    run.add_argument(
        "--port",
        type=int,
        default=None,
        help=f"default: $LOCALCLOUD_PORT, else {DEFAULT_PORT} if free, else a free port",
    )
    run.add_argument(
        "--parameter-overrides",
        default=None,
        help='passed to sam deploy, e.g. "LogLevel=DEBUG MaxRequestBytes=1000000"',
    )
    run.add_argument("--no-persist", action="store_true", help="keep all state in memory")
    run.add_argument("--no-api-key", action="store_true", help="deploy without an API key (open routes)")
    run.add_argument(
        "--force-deploy",
        action="store_true",
        help="run sam build + deploy even if no source changed since the last deploy",
    )
    run.add_argument("--project", default=str(ROOT), help=argparse.SUPPRESS)
    run.set_defaults(func=cmd_run)
    sub.add_parser("stop", help="stop the cloud that `run` started").set_defaults(func=cmd_stop)
    sub.add_parser("status", help="print endpoint.json if the cloud answers").set_defaults(func=cmd_status)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
