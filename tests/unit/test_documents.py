"""Unit tests for kdist.cli.documents.exit_status: the gravest failure class decides the exit code."""

from __future__ import annotations

import pytest

from kdist.cli.documents import exit_status
from kdist.engine.job import RunResult
from kdist.errors import ExitStatus
from kdist.model import Plan, Platform, Slice, SliceResult, Status

PLATFORMS = (
    Platform("linux", "amd64"),
    Platform("linux", "arm64"),
    Platform("linux", "s390x"),
    Platform("linux", "ppc64le"),
)
SLICES = tuple(
    Slice(p, f"h{i}", False, "/w", ("make", "cross"), f"/w/_output/local/bin/{p}")
    for i, p in enumerate(PLATFORMS)
)
PLAN = Plan(slices=SLICES, env={})


def _run(*statuses: Status, package_error: str = "") -> RunResult:
    results = [
        SliceResult(s, status, 1.0, error="" if status is Status.OK else "boom")
        for s, status in zip(SLICES, statuses, strict=False)
    ]
    return RunResult(plan=PLAN, results=results, package_error=package_error)


def test_all_ok_is_ok() -> None:
    """Every slice OK and no packaging error is exit 0."""
    result = _run(Status.OK, Status.OK, Status.OK)
    assert result.ok
    assert exit_status(result) is ExitStatus.OK
    assert exit_status(result) == 0


@pytest.mark.parametrize(
    ("statuses", "package_error", "expected"),
    [
        ((Status.OK, Status.INTEGRITY), "", ExitStatus.INTEGRITY_ERROR),
        ((Status.FAILED, Status.INTEGRITY, Status.INFRA), "", ExitStatus.INTEGRITY_ERROR),
        ((Status.INTEGRITY,), "tar failed", ExitStatus.INTEGRITY_ERROR),
        ((Status.INFRA, Status.INTEGRITY, Status.CANCELLED), "", ExitStatus.INTEGRITY_ERROR),
        ((Status.OK, Status.FAILED), "", ExitStatus.BUILD_FAILED),
        ((Status.INFRA, Status.FAILED), "", ExitStatus.BUILD_FAILED),
        ((Status.FAILED, Status.CANCELLED), "", ExitStatus.BUILD_FAILED),
        ((Status.OK, Status.OK), "tar failed", ExitStatus.BUILD_FAILED),
        ((Status.INFRA, Status.OK), "tar failed", ExitStatus.BUILD_FAILED),
        ((Status.OK, Status.INFRA), "", ExitStatus.INFRA_FAILED),
        ((Status.INFRA, Status.CANCELLED), "", ExitStatus.INFRA_FAILED),
        ((Status.OK, Status.CANCELLED), "", ExitStatus.INFRA_FAILED),
    ],
)
def test_gravest_failure_wins(
    statuses: tuple[Status, ...], package_error: str, expected: ExitStatus
) -> None:
    """Integrity beats a build failure (or packaging error), which beats an infra failure."""
    result = _run(*statuses, package_error=package_error)
    assert not result.ok
    assert exit_status(result) is expected


def test_exit_codes_are_the_documented_numbers() -> None:
    """The statuses exit_status returns have the documented process exit codes."""
    assert (
        ExitStatus.OK,
        ExitStatus.BUILD_FAILED,
        ExitStatus.INFRA_FAILED,
        ExitStatus.INTEGRITY_ERROR,
    ) == (0, 1, 3, 4)


def test_order_of_results_does_not_matter() -> None:
    """The same set of outcomes in any order gives the same exit status."""
    forward = _run(Status.INFRA, Status.FAILED, Status.OK)
    backward = _run(Status.OK, Status.FAILED, Status.INFRA)
    assert exit_status(forward) == exit_status(backward) == ExitStatus.BUILD_FAILED
