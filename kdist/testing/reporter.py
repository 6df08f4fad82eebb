"""A reporter that keeps every event, for tests of code that emits progress events."""

from __future__ import annotations

from kdist.events import Event


class RecordingReporter:
    """Keeps every event in order, for tests."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def emit(self, event: Event) -> None:
        """Record the event."""
        self.events.append(event)

    def close(self) -> None:
        """Nothing to flush."""
