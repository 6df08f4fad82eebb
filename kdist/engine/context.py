"""A run's shared context: what every stage of one run needs to know, in one object.

`execute` builds it once; the per-slice steps take it instead of six loose arguments.
Stages below the engine (build, collect, sync) still take only the values they use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from kdist.engine.job import Job
from kdist.engine.journal import Memo
from kdist.engine.logtail import SliceLog
from kdist.engine.scheduler import Scheduler
from kdist.events import LogTruncated, Reporter
from kdist.model import Platform, Slice

if TYPE_CHECKING:
    from kdist.stages.publish import Packager


@dataclass
class RunContext:
    """One run: the job, its id, the hosts' scheduler, the reporter, the journal, the packager."""

    job: Job
    run_id: str
    sched: Scheduler
    reporter: Reporter
    memo: Memo
    packager: Packager | None = None  # None: binaries only, or a release that is unchanged
    sampled: frozenset[Platform] = frozenset()  # platforms rebuilt on a second host

    logs: dict[str, SliceLog] = field(default_factory=dict)  # slice key -> its open log

    def log_path(self, slc: Slice) -> Path:
        """The build log of one slice on the head node."""
        return self.job.output / "logs" / f"{slc.key}.log"

    def open_log(self, slc: Slice) -> SliceLog:
        """Open the slice's log, within the job's log limit, for every attempt of the slice."""
        path, limit = self.log_path(slc), self.job.limits.log_limit

        def truncated() -> None:
            self.reporter.emit(LogTruncated(slc.key, str(path), limit))

        log = self.logs[slc.key] = SliceLog(path, limit, truncated)
        return log

    def attempt_id(self, slc: Slice, number: int | str) -> str:
        """The id of one attempt of a slice: `<run>-<os>-<arch>-<n>`."""
        return f"{self.run_id}-{slc.key}-{number}"
