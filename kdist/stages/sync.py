"""Sync stage: mirror the source tree into its workdir on a host, and hand over the version."""

from __future__ import annotations

import asyncio
import posixpath
import time
from pathlib import Path

from kdist.aio import wait_for
from kdist.errors import InfraError, OutputTooLarge, TransferError
from kdist.model import Limits
from kdist.remote import hostside
from kdist.remote.argv import write_file
from kdist.remote.trees import git_answers, slot_tree
from kdist.stages.gitrepo import MIRROR, Shipped
from kdist.transport import LINE_LIMIT, Progress, Spawned, Transport

LIMITS = Limits()  # the defaults, for callers without a job's own
LOCK_SLACK = 30.0  # seconds on top of --lock-wait for the lock holder to start and say so


async def sync_tree(
    transport: Transport,
    source: Path,
    workdir: str,
    progress: Progress | None = None,
    *,
    limits: Limits = LIMITS,
) -> float:
    """Rsync `source` to `workdir` (excluding _output/ and .git/); returns seconds taken."""
    if transport.host.local:
        return 0.0  # the head node builds in its own tree
    result = await transport.push(source, workdir, progress=progress, deadline=limits.transfer)
    if not result.ok:
        msg = f"{transport.host.name}: sync to {workdir} failed (rsync exit {result.returncode})"
        raise TransferError(msg + (f"\n{result.tail(5)}" if result.stdout else ""))
    return result.duration


async def ship_git(
    transport: Transport,
    shipped: Shipped | None,
    workdir: str,
    progress: Progress | None = None,
    *,
    limits: Limits = LIMITS,
) -> None:
    """Give the host's tree the head node's git answers (or take them away: `shipped` None).

    The repository goes to WORKDIR/.kdist/git (sync neither sends nor deletes .kdist/), then
    the host-side script makes WORKDIR/.git its own folder that points there.
    """
    if transport.host.local:
        return  # the head node builds in its own checkout, which has the real .git
    name = transport.host.name
    if shipped is not None:
        dest = posixpath.join(workdir, MIRROR)
        result = await transport.push(
            shipped.mirror, dest, progress=progress, deadline=limits.transfer
        )
        if not result.ok:
            msg = f"{name}: sending git answers to {dest} failed (rsync exit {result.returncode})"
            raise TransferError(msg + (f"\n{result.tail(5)}" if result.stdout else ""))
    done = await transport.run(
        git_answers(workdir, install=shipped is not None), timeout=limits.command_timeout
    )
    if not done.ok:
        raise InfraError(f"{name}: cannot set up the git answers in {workdir}: {done.tail(3)}")


async def slot(transport: Transport, tree: str, workdir: str, *, limits: Limits = LIMITS) -> None:
    """Make `workdir` a fresh private copy of the synced `tree` (hard links, nothing left over)."""
    done = await transport.run(slot_tree(tree, workdir), timeout=limits.command_timeout)
    if not done.ok:
        msg = f"{transport.host.name}: cannot make the slice's tree {workdir}: {done.tail(3)}"
        raise InfraError(msg)


async def take_lock(transport: Transport, workdir: str, run_id: str, wait: float) -> Spawned:
    """Hold this tree's workdir lock on the host for the rest of the run (or report it busy)."""
    # Starting the holder and its first line share one deadline: a host (or its sshd) that
    # never answers is "cannot lock", not a wait for ever.
    deadline = time.monotonic() + wait + LOCK_SLACK
    try:
        holder = await wait_for(
            transport.spawn(hostside.hold_lock(workdir, run_id, wait)), wait + LOCK_SLACK
        )
    except asyncio.TimeoutError:
        msg = f"{transport.host.name}: cannot lock {workdir}: no answer in {wait + LOCK_SLACK:g}s"
        raise InfraError(msg) from None
    try:
        line = await wait_for(holder.readline(), max(deadline - time.monotonic(), 0.0))
    except asyncio.TimeoutError:
        line = ""
    if len(line.rstrip("\n")) > LINE_LIMIT:  # cut by the transport: no honest answer is that long
        await holder.close()
        msg = (
            f"{transport.host.name}: the lock holder's answer is over the line_limit "
            f"({LINE_LIMIT} characters); refused"
        )
        raise OutputTooLarge(LINE_LIMIT, msg)
    if line.startswith("locked "):
        return holder
    await holder.close()
    if line.startswith("busy"):
        owner = line.removeprefix("busy").strip() or "another run"
        msg = f"{transport.host.name}: busy: {workdir} is locked by {owner} (waited {wait:g}s)"
    else:
        msg = f"{transport.host.name}: cannot lock {workdir}: {line.strip() or 'no answer'}"
    raise InfraError(msg)


async def write_remote_file(
    transport: Transport, path: str, content: str, *, limits: Limits = LIMITS
) -> None:
    """Write `content` to `path` on the host, atomically."""
    result = await transport.run(write_file(path), stdin=content, timeout=limits.command_timeout)
    if not result.ok:
        msg = f"{transport.host.name}: cannot write {path}: {result.tail(3)}"
        raise InfraError(msg)
