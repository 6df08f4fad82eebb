"""Docker over the one SSH connection: a farm host's forwarded socket reaches a real daemon."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from pathlib import Path

import pytest

from kdist.config.inventory import load_inventory
from kdist.errors import InfraError
from kdist.model import Host
from kdist.stages.container import DockerHost
from kdist.testing.devfarm import Farm
from kdist.testing.dockerd import Dockerd
from kdist.transport import open_transport

pytestmark = [pytest.mark.integration, pytest.mark.docker]


def farm_host(farm: Farm, name: str, socket_path: Path | str) -> Host:
    """A farm host whose docker_socket is `socket_path`."""
    host = load_inventory(farm.inventory_path).host(name)
    assert host is not None
    return dataclasses.replace(host, docker_socket=str(socket_path))


async def daemon_version(host: Host) -> str:
    """Open the host's daemon through its SSH connection and ask its version."""
    transport = open_transport(host)
    await transport.connect()
    try:
        daemon = await DockerHost.open(transport, host.docker_socket)
        try:
            return (await daemon.facts()).version
        finally:
            daemon.close()
    finally:
        await transport.close()


def test_daemon_answers_through_the_one_connection(farm: Farm, dockerd: Dockerd) -> None:
    """The daemon's version comes back over the forwarded socket with one SSH login."""
    before = farm.accepted_logins("h1")
    version = asyncio.run(daemon_version(farm_host(farm, "h1", dockerd.socket)))
    assert version == dockerd.api("GET", "/version")["Version"]
    assert farm.accepted_logins("h1") == before + 1


def test_missing_socket_is_an_infrastructure_failure(farm: Farm, tmp_path: Path) -> None:
    """A host without the socket fails with the reason, as an infrastructure failure."""
    with pytest.raises(InfraError, match="no docker socket at"):
        asyncio.run(daemon_version(farm_host(farm, "h1", tmp_path / "none.sock")))


def test_dead_daemon_is_an_infrastructure_failure(farm: Farm, tmp_path: Path) -> None:
    """A socket nobody answers on (the daemon is down) fails naming the socket."""
    stale = tmp_path / "stale.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(stale))
    listener.close()  # the file stays, nobody listens: what a crashed daemon leaves
    with pytest.raises(InfraError, match=f"docker daemon not reachable at {stale}"):
        asyncio.run(daemon_version(farm_host(farm, "h1", stale)))
