"""Progress events the pipeline emits, and the Reporter contract that displays them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from kdist.model import Plan, SliceResult


@dataclass(frozen=True)
class PlanReady:
    """The plan is final; every slice is queued."""

    plan: Plan


@dataclass(frozen=True)
class PhaseStarted:
    """A slice entered a phase: connect, sync, build, pull or package."""

    key: str  # Slice.key
    phase: str


@dataclass(frozen=True)
class OutputLine:
    """One line of a slice's build output (the live view shows the latest)."""

    key: str
    line: str


@dataclass(frozen=True)
class SliceFinished:
    """A slice ended (ok or not); its result is final."""

    result: SliceResult


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


Event = PlanReady | PhaseStarted | OutputLine | SliceFinished | Note | RunFinished


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
