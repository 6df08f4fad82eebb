"""Build stage: run one slice's build command on its host, streaming output to the log."""

from __future__ import annotations

from collections.abc import Mapping

from kdist import commands
from kdist.errors import InfraError
from kdist.model import CommandResult, Slice
from kdist.transport import LineSink, Transport

# Exit codes that mean the host, not the source, is at fault.
INFRA_EXIT_CODES = {
    commands.NO_WORKDIR: "workdir missing",
    126: "not executable",
    127: "command not found",
}


async def build_slice(
    transport: Transport,
    slc: Slice,
    env: Mapping[str, str],
    sink: LineSink,
    timeout: float | None = None,
) -> CommandResult:
    """Clear the slice's old artifacts, then run its build; the result carries the exit code."""
    cleared = await transport.run(commands.remove(slc.artifacts))
    if not cleared.ok:
        msg = f"{slc.host}: cannot clear {slc.artifacts}: {cleared.tail(3)}"
        raise InfraError(msg)
    sink(f"$ {commands.to_shell(slc.argv)}")
    return await transport.run(slc.argv, cwd=slc.workdir, env=env, sink=sink, timeout=timeout)
