"""What a run is doing, kept from its own events: notes, and what to say when interrupted.

The notes go into the summary; when the user interrupts, `stopped` gives one line per host
saying what was stopped there.
"""

from __future__ import annotations

from dataclasses import dataclass

from kdist.events import (
    Estimate,
    Event,
    HostSetup,
    LogTruncated,
    Note,
    PhaseStarted,
    Reporter,
    SliceFinished,
)

# How each phase of a slice reads after "stopped": the slice waits in `sync` for its host's
# connection, lock and sync; `package` happens on this machine.
_STOPPED = {
    "sync": "while connecting and syncing for {platform}",
    "queued": "{platform}, waiting for a free build slot",
    "build": "the build of {platform} (attempt {attempt})",
    "pull": "pulling {platform}",
}


@dataclass
class _Doing:
    host: str
    phase: str
    attempt: int


class RunWatch:
    """Passes events on; keeps every note, and each unfinished slice's host, phase and attempt."""

    def __init__(self, inner: Reporter) -> None:
        self.inner = inner
        self.notes: list[str] = []
        self.stage = "slices"  # then "tests", then "publish" (set by the pipeline)
        self.test_host = ""
        self._doing: dict[str, _Doing] = {}  # slice key -> what it is doing
        # Hosts being set up (False), or set up with no attempt begun there yet (True): the
        # queue grants a host's slots once it is ready, a moment before an attempt says so.
        self._hosts: dict[str, bool] = {}
        self.estimates: list[tuple[float, float]] = []  # (Unix time, seconds left) as it moved

    def emit(self, event: Event) -> None:
        """Keep notes and phases, forward everything."""
        match event:
            case Note(text=text) | LogTruncated(text=text):
                self.notes.append(text)
            case PhaseStarted(key=key, phase=phase, host=host, attempt=attempt):
                self._hosts.pop(host, None)
                before = self._doing.get(key, _Doing("", "", 1))
                self._doing[key] = _Doing(host or before.host, phase, attempt or before.attempt)
            case SliceFinished(result=result):
                self._doing.pop(result.slice.key, None)
            case HostSetup(host=host, done=done):
                self._hosts[host] = done
            case Estimate(remaining=remaining, at=at):
                self._estimated(at, remaining)
        self.inner.emit(event)

    def _estimated(self, at: float, remaining: float) -> None:
        """Keep an estimate when the expected end moved (by more than a tenth of a second)."""
        if self.estimates:
            last_at, last_left = self.estimates[-1]
            if abs((at + remaining) - (last_at + last_left)) <= 0.1:
                return
        self.estimates.append((at, remaining))

    def close(self) -> None:
        """Close the wrapped reporter."""
        self.inner.close()

    def stopped(self) -> list[str]:
        """One line per host with something stopped: `h1: stopped the build of linux/amd64`."""
        if self.stage == "tests":
            return [f"{self.test_host}: stopped the unit tests"]
        if self.stage == "publish":
            return ["this machine: stopped publishing (the previous release-tars/ is untouched)"]
        setup = {False: "while connecting and syncing", True: "before its first build began"}
        by_host: dict[str, list[str]] = {h: [setup[ready]] for h, ready in self._hosts.items()}
        for key, doing in self._doing.items():
            platform = key.replace("-", "/", 1)
            if doing.phase == "package":
                host, what = "this machine", f"packing {platform}"
            else:
                text = _STOPPED.get(doing.phase, doing.phase + " of {platform}")
                host, what = doing.host, text.format(platform=platform, attempt=doing.attempt)
            by_host.setdefault(host, []).append(what)
        return [f"{host}: stopped {'; '.join(items)}" for host, items in by_host.items()]
