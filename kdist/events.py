"""Progress events the pipeline emits, and the Reporter contract that displays them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from kdist.model import Plan, SliceResult, format_size


@dataclass(frozen=True)
class RunStarted:
    """A run begins: what the head of the live view says."""

    project: str
    version: str
    run_id: str
    hosts: tuple[str, ...]  # hosts with work in the plan
    platforms: tuple[str, ...]
    output: str
    started: float  # Unix time
    command: str = "release"  # release | build
    capacity: Mapping[str, int] = field(default_factory=dict)  # host -> slices at once
    expected: Mapping[str, float] = field(default_factory=dict)  # slice key -> seconds it took


@dataclass(frozen=True)
class PlanReady:
    """The plan is final; every slice is queued."""

    plan: Plan


@dataclass(frozen=True)
class PhaseStarted:
    """A slice entered a phase: connect, sync, build, pull or package."""

    key: str  # Slice.key
    phase: str
    host: str = ""  # the host of this attempt ('' when it did not change)
    attempt: int = 0  # 1 for the first host, 2 after one move, ... (0: unchanged)


@dataclass(frozen=True)
class OutputLine:
    """One line of a slice's build output (the live view shows the latest)."""

    key: str
    line: str


@dataclass(frozen=True)
class LogTruncated:
    """A slice's log reached half its limit: from now on it keeps only a rolling tail."""

    key: str  # Slice.key
    path: str  # the log file
    limit: int  # bytes the log may hold
    level = "warning"  # shown as a Note of this level

    @property
    def text(self) -> str:
        """What the live view and the run's notes say."""
        platform = self.key.replace("-", "/", 1)
        return (
            f"{platform}: the build talks a lot: its log keeps the first part and the last lines, "
            f"at most {format_size(self.limit)} ({self.path})"
        )


@dataclass(frozen=True)
class Transfer:
    """Bytes a transfer has moved so far: a host's sync (key '') or a slice's pull."""

    host: str
    key: str
    direction: str  # sync | pull
    done: int  # bytes so far, on the wire
    finished: bool = False


@dataclass(frozen=True)
class Span:
    """A phase that ended, with when it ran: what --timeline draws."""

    phase: str  # connect lock sync build pull package tests publish
    host: str  # '' for the head node
    key: str  # the slice, '' for a host's own phases (connect, lock, sync)
    start: float  # Unix time
    end: float
    ok: bool = True
    attempt: str = ""


@dataclass(frozen=True)
class HostSetup:
    """A host's setup (connect, lock, sync, toolchain) began, or ended (`done`, ok or not)."""

    host: str
    done: bool = False


@dataclass(frozen=True)
class SliceFinished:
    """A slice ended (ok or not); its result is final."""

    result: SliceResult


@dataclass(frozen=True)
class Estimate:
    """The scheduler's estimate of the run's end, made anew as slices start and finish."""

    remaining: float  # seconds until every slice is built, from `at`
    at: float  # Unix time of the estimate


@dataclass(frozen=True)
class Hedged:
    """A straggler got a twin on another host; `winner` is set once one of them finished."""

    key: str  # Slice.key
    host: str  # where the straggling build runs
    twin: str  # where the twin runs
    after: float  # seconds the straggler had been building
    winner: str = ""  # '' while both run
    stopped: str = ""  # the loser's host, whose build was stopped


@dataclass(frozen=True)
class Note:
    """Something the user should read: a host left out, a cross-compiled platform, a warning."""

    text: str
    level: str = "info"  # info | warning | error


@dataclass(frozen=True)
class RunFinished:
    """The run is over; `summary` is the JSON-ready report."""

    ok: bool
    summary: dict[str, object] = field(default_factory=dict)


Event = (
    RunStarted
    | PlanReady
    | PhaseStarted
    | OutputLine
    | LogTruncated
    | Transfer
    | Span
    | HostSetup
    | SliceFinished
    | Estimate
    | Hedged
    | Note
    | RunFinished
)


class Reporter(Protocol):
    """Receives events; must be cheap, never block, never raise."""

    def emit(self, event: Event) -> None:
        """Handle one event."""

    def close(self) -> None:
        """Stop any live display and flush."""


class NullReporter:
    """Drops every event (for --quiet, --json and tests that don't look)."""

    def emit(self, event: Event) -> None:
        """Ignore the event."""

    def close(self) -> None:
        """Nothing to flush."""
