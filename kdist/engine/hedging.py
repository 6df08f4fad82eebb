"""Hedged stragglers: a build far past its estimate gets a twin on an idle host; first one wins.

The twins share a claim: the first attempt whose binaries are verified takes it and moves them
into the output; the other one's are dropped in its staging folder, and its build is stopped
on its host (cancelling it kills the build's process group there, through the host-side guard).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from kdist.engine.scheduler import Scheduler
from kdist.events import Hedged, Note, Reporter
from kdist.model import Hedge, Platform, Slice, SliceResult, Status

TWIN = "twin"  # the attempt label of a twin ends with it: `<run>-<os>-<arch>-1-twin`

Attempt = Callable[[Slice, str | int, Callable[[str], bool]], Awaitable[SliceResult]]


class Learner(Protocol):
    """Takes a build time a host showed for a platform (the history learns from it)."""

    def learn(self, platform: Platform, host: str, seconds: float) -> None:
        """Remember one sample."""


@dataclass
class Claim:
    """Which attempt's binaries go into the output: the first to ask."""

    owner: str = ""

    def take(self, attempt: str) -> bool:
        """True for the first attempt that asks, and for it again; False for every other."""
        self.owner = self.owner or attempt
        return self.owner == attempt


async def race(
    slc: Slice,
    sched: Scheduler,
    attempt: Attempt,
    reporter: Reporter,
    number: int,
    learner: Learner,
) -> SliceResult:
    """Run one attempt of `slc`; when it straggles and a slot is idle, a twin; the first ok wins.

    Without a winner, the first attempt's failure is the result (a twin's too, if it was alone).
    """
    claim = Claim()
    running = {asyncio.ensure_future(attempt(slc, number, claim.take)): slc}
    waiter = (
        asyncio.ensure_future(sched.queue.twin(slc.platform, slc.host)) if sched.hedge else None
    )
    twin: Slice | None = None
    failed: SliceResult | None = None
    caught: list[SliceResult] = []  # integrity violations: never lost to the other one's result
    try:
        while running:
            waits: set[asyncio.Future[object]] = set(running)  # type: ignore[arg-type]
            if waiter is not None:
                waits.add(waiter)  # type: ignore[arg-type]
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            if waiter is not None and waiter in done:
                twin = _start_twin(slc, waiter.result(), sched, reporter)
                waiter = None
                running[asyncio.ensure_future(attempt(twin, f"{number}-{TWIN}", claim.take))] = twin
            for task in [t for t in running if t in done]:
                here = running.pop(task)
                result = task.result()
                if result.ok:
                    won = await _settle(result, slc, twin, running, sched, reporter, learner)
                    return _with_violations(won, caught)
                if failed is None or here is slc:
                    failed = result  # the straggler's own failure says more than its twin's
                if result.status is Status.INTEGRITY:
                    caught.append(result)
                # A host that sent something failing verification is left out even when its
                # twin wins; a straggler's own host failure is for the caller to judge.
                leave = result.status is Status.INTEGRITY or (
                    result.status is Status.INFRA and here is not slc
                )
                if leave:
                    sched.exclude(here.host, result.error.splitlines()[0] if result.error else "")
    finally:
        left = [*running, *([waiter] if waiter is not None else [])]
        for pending in left:
            pending.cancel()
        await asyncio.gather(*left, return_exceptions=True)
    assert failed is not None
    return _with_violations(failed, caught)


def _with_violations(result: SliceResult, caught: list[SliceResult]) -> SliceResult:
    """`result` carrying the integrity violations of the other attempts of the race."""
    lines = [line for r in caught if r is not result for line in r.error.splitlines()]
    return dataclasses.replace(result, violations=(*result.violations, *lines)) if lines else result


def _start_twin(slc: Slice, host: str, sched: Scheduler, reporter: Reporter) -> Slice:
    """The twin's slice on `host`, announced."""
    twin = sched.slice_on(slc.platform, host)
    after = sched.queue.elapsed(slc.platform, slc.host)
    expected = sched.queue.rules.seconds(slc.platform, slc.host)
    reporter.emit(Hedged(slc.key, slc.host, twin.host, round(after, 3)))
    reporter.emit(
        Note(f"{slc.platform}: {slc.host} is slow ({after:.0f}s, expected {expected:.0f}s): "
             f"twin started on {twin.host}")
    )  # fmt: skip
    return twin


async def _settle(
    result: SliceResult,
    first: Slice,
    twin: Slice | None,
    losers: dict[asyncio.Task[SliceResult], Slice],
    sched: Scheduler,
    reporter: Reporter,
    learner: Learner,
) -> SliceResult:
    """The winner is known: stop the other build, say so, remember how slow the straggler was."""
    if twin is None:
        return result  # never hedged
    stopped = next(iter(losers.values()), None)
    if stopped is first:  # the straggler lost: it ran at least this long, which is worth knowing
        learner.learn(first.platform, first.host, sched.queue.elapsed(first.platform, first.host))
    after = sched.queue.hedged_after.get(first.platform, 0.0)
    for task in losers:
        task.cancel()
    await asyncio.gather(*losers, return_exceptions=True)
    losers.clear()
    winner, loser = result.slice.host, stopped.host if stopped is not None else ""
    reporter.emit(Hedged(first.key, first.host, twin.host, after, winner=winner, stopped=loser))
    if loser:
        reporter.emit(Note(f"{first.platform}: {winner} finished first; {loser}'s build stopped"))
    hedge = Hedge(host=first.host, twin=twin.host, after=after, winner=winner, stopped=loser)
    return dataclasses.replace(result, hedge=hedge)
