"""Sync stage: mirror the source tree into its workdir on a host, and hand over the version."""

from __future__ import annotations

from pathlib import Path

from kdist import commands
from kdist.errors import InfraError, TransferError
from kdist.transport import Transport


async def sync_tree(transport: Transport, source: Path, workdir: str) -> float:
    """Rsync `source` to `workdir` (excluding _output/ and .git/); returns seconds taken."""
    if transport.host.local:
        return 0.0  # the head node builds in its own tree
    result = await transport.push(source, workdir)
    if not result.ok:
        msg = f"{transport.host.name}: sync to {workdir} failed (rsync exit {result.returncode})"
        raise TransferError(msg + (f"\n{result.tail(5)}" if result.stdout else ""))
    return result.duration


async def write_remote_file(transport: Transport, path: str, content: str) -> None:
    """Write `content` to `path` on the host, atomically."""
    result = await transport.run(commands.write_file(path), stdin=content)
    if not result.ok:
        msg = f"{transport.host.name}: cannot write {path}: {result.tail(3)}"
        raise InfraError(msg)
