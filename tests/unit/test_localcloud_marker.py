"""The local cloud's unclean-stop marker: removed only by a graceful stop of a run whose state can
be trusted (a clean start, or a recovery that finished). A recovery that failed midway leaves it,
so the next `make run` recovers again instead of trusting a half-reconciled index."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import localcloud  # noqa: E402


def _stopped(tmp_path: Path, unclean: str, recovery: list[str]) -> bool:
    """Whether the marker survives a graceful stop of a cloud in this state."""
    marker = tmp_path / localcloud.RUNNING_MARKER
    marker.write_text("1 2 3\n")
    process = subprocess.Popen(["sleep", "30"])  # stands in for ministack: SIGTERM ends it
    cloud = localcloud.Cloud(
        workdir=tmp_path, port=0, process=process, persist=True, unclean=unclean, recovery=recovery
    )
    cloud.stop(timeout=10)
    return marker.exists()


@pytest.mark.parametrize(
    ("unclean", "recovery", "kept"),
    [
        ("", [], False),  # a clean run stopped gracefully
        ("the last run did not stop cleanly", ["recovered"], False),  # a finished recovery
        ("the last run did not stop cleanly", [], True),  # a recovery that failed midway
    ],
)
def test_the_marker_is_kept_unless_the_state_can_be_trusted(tmp_path, unclean, recovery, kept) -> None:
    assert _stopped(tmp_path, unclean, recovery) is kept


def test_a_killed_emulator_leaves_the_marker(tmp_path) -> None:
    marker = tmp_path / localcloud.RUNNING_MARKER
    marker.write_text("1 2 3\n")
    process = subprocess.Popen(["sleep", "30"])
    process.kill()
    process.wait()
    localcloud.Cloud(workdir=tmp_path, port=0, process=process, persist=True).stop(timeout=10)
    assert marker.exists()
    assert localcloud.unclean_reason(tmp_path) == "the last run did not stop cleanly"
