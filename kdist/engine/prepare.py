"""Before a run: connections (at most one per host), platform detection, then the plan."""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kdist.engine import plan
from kdist.engine.estimate import Estimates, learn
from kdist.engine.job import Job
from kdist.engine.journal import load_history
from kdist.engine.timeline import span
from kdist.errors import ConnectError, KdistError, PlanError, head_node_faults
from kdist.events import Note, NullReporter, Reporter
from kdist.model import Host, Plan, Platform
from kdist.remote.probe import probe_host
from kdist.transport import Transport

TransportFactory = Callable[[Host], Transport]


@dataclass(frozen=True)
class Prepared:
    """The outcome of planning: the plan, every host's platforms, and the hosts found dead."""

    plan: Plan
    natives: dict[str, tuple[Platform, ...]]
    down: dict[str, str]
    estimates: Estimates = field(default_factory=Estimates)  # learned from OUTPUT's history


class Connections:
    """One transport per host, opened at most once per run and closed together."""

    def __init__(self, factory: TransportFactory, reporter: Reporter | None = None) -> None:
        self._factory = factory
        self._reporter = reporter or NullReporter()  # hears of every connect (--timeline)
        self._open: dict[str, Transport] = {}

    async def open(self, hosts: Sequence[Host]) -> dict[str, str]:
        """Connect to `hosts` in parallel; return {host: error} for those that failed."""
        todo = [h for h in hosts if h.name not in self._open]
        outcomes = await asyncio.gather(*(self._connect(h) for h in todo))
        return {h.name: err for h, err in zip(todo, outcomes, strict=True) if err}

    async def _connect(self, host: Host) -> str:
        transport = self._factory(host)
        try:
            with span(self._reporter, "connect", host.name):
                await transport.connect()
        except KdistError as exc:
            await transport.close()
            return str(exc)
        self._open[host.name] = transport
        return ""

    def __getitem__(self, name: str) -> Transport:
        return self._open[name]

    async def close(self) -> None:
        """Close every open transport."""
        await asyncio.gather(*(t.close() for t in self._open.values()), return_exceptions=True)
        self._open.clear()


PROBE_BYTES = 1 << 20  # written and synced once, so a full disk shows before any build


def check_output(output: Path) -> None:
    """Refuse, naming the path, an output folder this machine cannot write (read-only, full)."""
    with head_node_faults():
        output.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=output, prefix=".kdist-probe-") as probe:
            probe.write(bytes(PROBE_BYTES))
            probe.flush()
            os.fsync(probe.fileno())


async def prepare(
    job: Job, hosts: Sequence[Host], conns: Connections, reporter: Reporter
) -> Prepared:
    """Detect the platforms of hosts that do not declare them, then plan (pure).

    Planned hosts are connected lazily when their first slice starts; a host that cannot be
    reached then is left out and its slices move, so a dead host costs one failed connect.
    """
    natives: dict[str, tuple[Platform, ...]] = {
        h.name: h.platforms for h in hosts if h.platforms is not None
    }
    down: dict[str, str] = {}
    await _detect(hosts, natives, conns, down, reporter)
    if job.pin in down:
        raise ConnectError(down[job.pin])
    alive = [h for h in hosts if h.name not in down]
    if not alive:
        raise ConnectError("no usable build host:\n" + "\n".join(down.values()))
    estimates = learn(load_history(job.output))
    request = job.request(_own_platform(job, alive, natives))
    the_plan = plan.make_plan(alive, natives, request, estimates)
    return Prepared(the_plan, natives, down, estimates)


def _own_platform(
    job: Job, hosts: Sequence[Host], natives: Mapping[str, tuple[Platform, ...]]
) -> tuple[Platform, ...]:
    # `kdist build` without --platform builds for the building host's own platform.
    name = job.pin or hosts[0].name
    own = natives.get(name, ())[:1]
    if not job.platforms and not own:
        msg = f"{name}: its platform is unknown; pass --platform"
        raise PlanError(msg)
    return own


async def _detect(
    hosts: Sequence[Host],
    natives: dict[str, tuple[Platform, ...]],
    conns: Connections,
    down: dict[str, str],
    reporter: Reporter,
) -> None:
    unknown = [h for h in hosts if h.name not in natives]
    failed = await conns.open(unknown)
    for host in unknown:
        if host.name in failed:
            continue
        try:
            facts = await probe_host(conns[host.name], host)
        except KdistError as exc:
            failed[host.name] = str(exc)
            continue
        natives[host.name] = (facts.platform,) if facts.platform else ()
    for error in failed.values():
        reporter.emit(Note(f"{error} — left out of this run", "warning"))
    down.update(failed)
