"""Unit-test stage: the profile's tests (`make test`) once, on one host, before publishing."""

from __future__ import annotations

import secrets

from kdist.engine import plan
from kdist.engine.job import Job, RunResult
from kdist.engine.logtail import SliceLog
from kdist.engine.scheduler import Scheduler
from kdist.engine.timeline import span
from kdist.errors import KdistError
from kdist.events import Note, Reporter
from kdist.model import format_size
from kdist.remote.argv import to_shell
from kdist.stages.build import NativeRunner, run_watched
from kdist.text import inert


async def run_tests(job: Job, sched: Scheduler, outcome: RunResult, reporter: Reporter) -> None:
    """Run the profile's unit tests once, on the plan's test host; a failure blocks the publish."""
    name = outcome.plan.test_host
    if name in sched.excluded:
        name = next(r.slice.host for r in outcome.results if r.slice.host not in sched.excluded)
    command = to_shell(job.profile.test)
    reporter.emit(Note(f"unit tests on {name}: {command}"))
    log_path = job.output / "logs" / "test.log"
    log_path.write_bytes(b"")

    def truncated() -> None:
        size = format_size(job.limits.log_limit)
        text = f"unit tests: their log keeps the first part and the last lines, at most {size}"
        reporter.emit(Note(text, "warning"))

    with SliceLog(log_path, job.limits.log_limit, truncated) as log:  # the host's bytes, bounded
        log.write(f"$ {command}")
        try:
            with span(reporter, "tests", name):
                session = await sched.session(name)
                workdir = plan.tree_workdir(session.host, job.request())
                sink = log.write
                # Like a build: in the build container or under the host-side guard, with the
                # idle and total deadlines, stopped on its host by a deadline or Ctrl-C.
                runner = session.runner or NativeRunner(session.transport)
                attempt = f"{outcome.run_id or 'run'}-test-{secrets.token_hex(4)}"
                result = await run_watched(
                    runner, job.profile.test, workdir, session.env, sink, attempt,
                    job.deadlines, (name, "the unit tests were"),
                )  # fmt: skip
        except KdistError as exc:
            outcome.test_error = inert(f"{name}: unit tests could not run: {exc}", newlines=True)
            return
    outcome.tests = result
    if result.ok:
        reporter.emit(Note(f"unit tests passed on {name} in {result.duration:.1f}s"))
    else:
        outcome.test_error = inert(
            f"{name}: unit tests failed (exit {result.returncode}); "
            f"see {log_path}\n{result.tail(10)}",
            newlines=True,
        )  # the test's last lines are the host's words
        reporter.emit(Note(outcome.test_error, "error"))
