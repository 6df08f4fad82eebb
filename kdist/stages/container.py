"""Container builds: a slice's command runs in a container on its host, driven by the docker SDK.

The only module that imports docker. A host's daemon is reached through a Unix socket that the
host's transport forwards over kdist's one SSH connection (`Transport.forward_socket`), so a host
still authenticates once per run; docker-py's own ssh:// (a login per connection) is never used.

A build container
- runs the slice's argv in the synced tree, bind-mounted at the same path, as the uid:gid that
  owns the tree (so outputs are never root-owned), with `--network none` unless the profile says
  otherwise, an init process, and the project's cache volume at /kdist-cache (GOCACHE,
  GOMODCACHE);
- is created with stdin open and attached before it starts. kdist never writes to it; a
  watchdog in the container kills every process there when stdin reaches EOF, and the daemon
  closes stdin when kdist's attach connection goes away (StdinOnce): when kdist stops, dies or
  loses its SSH connection, so a build never outlives its run;
- is removed by the daemon when it exits (AutoRemove). kdist registers its wait before it
  starts the container, so the exit status is never lost to the removal;
- carries labels naming the run, attempt, tree and host: a later run of the same tree on the
  same host (it holds the host-side lock, so other runs of it are over) removes what dead runs
  left behind.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import os
import re
import socket
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import docker
import docker.errors
import requests.exceptions
from docker.utils.socket import frames_iter

from kdist.errors import InfraError
from kdist.model import CommandResult, ContainerSpec, DaemonReport, Host, Limits, Platform
from kdist.remote import hostside
from kdist.remote.argv import owner_of, socket_access
from kdist.text import HOST_ERRORS
from kdist.transport import LineSink, OutputCollector, Transport

LABEL = "io.kdist"
CACHE_MOUNT = "/kdist-cache"
DEFAULT_SOCKET = "/var/run/docker.sock"
API_TIMEOUT = 120.0  # one API call; image transfers and builds have none
COMMAND_TIMEOUT = Limits.command_timeout  # the few host commands it runs (socket, owner, marker)
SEND_CHUNK = 1 << 20
STOP_WAIT = 10.0  # seconds to see a stopped container gone

# `sh -c BOX_SCRIPT kdist-box ARGV...`: ARGV becomes the container's main process; when stdin
# reaches EOF (kdist stopped, died or lost the connection) every process there is killed. Only
# under the container's init (parent pid 1) does it kill everything it may (`kill -1`);
# anywhere else it kills the build alone.
BOX_SCRIPT = (
    "exec 3<&0 </dev/null; p=$PPID; "
    "(while read -r _ <&3; do :; done; "
    'if [ "$p" = 1 ]; then kill -s KILL -1; else kill -s KILL "$$"; fi) 2>/dev/null & '
    'exec "$@" 3<&-'
)
# `sh -c CACHE_SCRIPT kdist-cache MOUNT UID:GID`: make a fresh cache volume the builder's.
CACHE_SCRIPT = 'mkdir -p "$1/build" "$1/mod" && chown "$2" "$1" "$1/build" "$1/mod"'

T = TypeVar("T")


# --------------------------------------------------------------------------- pure parts


def image_for(spec: ContainerSpec, platform: Platform) -> str:
    """The image for a daemon of `platform`: the per-platform name, else the default one."""
    return spec.images.get(str(platform), spec.image)


def cache_env() -> dict[str, str]:
    """Where Go keeps its caches inside a build container: the persistent volume."""
    return {"GOCACHE": f"{CACHE_MOUNT}/build", "GOMODCACHE": f"{CACHE_MOUNT}/mod"}


def cache_volume(project: str, user: str) -> str:
    """The cache volume of a project (one per daemon, i.e. per host) for one builder uid."""
    return f"kdist-cache-{project}-{user.split(':', 1)[0]}"


def labels(*, run: str, attempt: str, tree: str, host: str, project: str) -> dict[str, str]:
    """The labels of one attempt's container."""
    return {
        f"{LABEL}.run": run,
        f"{LABEL}.attempt": attempt,
        f"{LABEL}.tree": tree,
        f"{LABEL}.host": host,
        f"{LABEL}.project": project,
    }


def boxed(argv: Sequence[str]) -> list[str]:
    """argv under the in-container watchdog (stdin EOF kills everything)."""
    return ["sh", "-c", BOX_SCRIPT, "kdist-box", *argv]


def socket_problem(answer: str, path: str) -> str:
    """Why the probe's answer means the socket cannot be used ('' when it can)."""
    word, _, rest = answer.strip().partition(" ")
    if word == "ok":
        return ""
    if word == "missing":
        return f"no docker socket at {path} (is the daemon installed and running?)"
    if word == "not-a-socket":
        return f"{path} is not a socket"
    if word == "denied":
        user, _, mode = rest.partition(" ")
        return f"{user or 'the SSH user'} may not use the docker socket {path} ({mode.strip()})"
    return f"cannot check the docker socket {path}: {answer.strip() or 'no answer'}"


@dataclass(frozen=True)
class Box:
    """Everything one build container is made of."""

    image: str
    argv: tuple[str, ...]
    workdir: str
    env: Mapping[str, str]
    user: str  # uid:gid
    network: str
    volume: str
    labels: Mapping[str, str]
    mount: str = ""  # the host folder bind-mounted at the same path ("": the workdir itself)

    @property
    def tree(self) -> str:
        """What is mounted: the synced tree, which holds a slice's private tree and .git."""
        return self.mount or self.workdir

    def create_args(self) -> dict[str, Any]:
        """Keyword arguments for the SDK's low-level create_container (without host_config)."""
        return {
            "image": self.image,
            "command": boxed(self.argv),
            "user": self.user,
            "working_dir": self.workdir,
            "environment": dict(self.env),
            "labels": dict(self.labels),
            "stdin_open": True,  # with detach=False: attached stdin, closed when we go (StdinOnce)
            "detach": False,
        }

    def host_args(self) -> dict[str, Any]:
        """Keyword arguments for create_host_config."""
        return {
            "binds": {
                self.tree: {"bind": self.tree, "mode": "rw"},
                self.volume: {"bind": CACHE_MOUNT, "mode": "rw"},
            },
            "network_mode": self.network,
            "init": True,
            "auto_remove": True,
        }

    def docker_run(self) -> list[str]:
        """The `docker run` command line this container amounts to (for -n and logs)."""
        words = ["docker", "run", "--rm", "--init", "-i", "--network", self.network]
        words += ["--user", self.user, "--workdir", self.workdir]
        words += ["--volume", f"{self.tree}:{self.tree}"]
        words += ["--volume", f"{self.volume}:{CACHE_MOUNT}"]
        words += [f"--label={k}={v}" for k, v in sorted(self.labels.items())]
        words += [f"--env={k}={v}" for k, v in sorted(self.env.items())]
        return [*words, self.image, *self.argv]


@dataclass(frozen=True)
class DaemonFacts:
    """What a host's docker daemon says about itself."""

    version: str
    api_version: str
    platform: Platform
    rootless: bool


@dataclass(frozen=True)
class ImageChoice:
    """The image a host builds in, and how it got there."""

    name: str
    id: str
    how: str  # present | built | sent


@dataclass(frozen=True)
class HeadImage:
    """An image as the head node's own daemon has it."""

    name: str
    id: str
    platform: Platform


# --------------------------------------------------------------------------- the SDK at the edge


def _why(exc: BaseException) -> str:
    """A one-line reason from a docker SDK, requests or OS error."""
    if isinstance(exc, docker.errors.APIError):
        return str(exc.explanation or exc)
    text = str(exc)
    if "Connection refused" in text or "ConnectionRefused" in text:
        return "connection refused (is the daemon running?)"
    if "No such file" in text or "FileNotFound" in text:
        return "no socket (is the daemon running?)"
    return text.splitlines()[0] if text else type(exc).__name__


_FAILURES = (docker.errors.DockerException, requests.exceptions.RequestException, OSError)


def _client(url: str) -> docker.DockerClient:
    return docker.DockerClient(base_url=url, version="auto", timeout=int(API_TIMEOUT))


def head_client() -> docker.DockerClient | None:
    """The head node's own daemon ($DOCKER_HOST, else the default socket), or None."""
    try:
        client = docker.from_env(version="auto", timeout=int(API_TIMEOUT))
        client.ping()
    except _FAILURES:
        return None
    return client


def local_socket() -> str:
    """The head node's docker socket: $DOCKER_HOST when it is unix://, else the default."""
    url = os.environ.get("DOCKER_HOST", "")
    return url.removeprefix("unix://") if url.startswith("unix://") else DEFAULT_SOCKET


def socket_of(host: Host) -> str:
    """The docker socket kdist uses for `host` (the head node's own for the local host)."""
    return local_socket() if host.local else host.docker_socket


def head_image(client: docker.DockerClient | None, name: str) -> HeadImage | None:
    """`name` as the head node's daemon has it, or None."""
    if client is None:
        return None
    try:
        attrs = client.images.get(name).attrs
    except _FAILURES:
        return None
    platform = Platform(attrs.get("Os", "linux"), attrs.get("Architecture", ""))
    return HeadImage(name, attrs["Id"], platform)


def save_image(name: str) -> Iterator[bytes]:
    """`docker save NAME` from the head node's daemon ($DOCKER_HOST), as a stream of chunks.

    A server image's base may be a local image (kdist.packaging.bases). Raises LookupError
    saying why when no daemon answers or it has no image of that name.
    """
    where = os.environ.get("DOCKER_HOST") or f"unix://{DEFAULT_SOCKET}"
    try:
        client = docker.from_env(version="auto", timeout=int(API_TIMEOUT))
        client.images.get(name)
        chunks: Iterator[bytes] = client.api.get_image(name, chunk_size=SEND_CHUNK)
    except docker.errors.ImageNotFound:
        msg = f"the daemon at {where} has no image {name}"
        raise LookupError(msg) from None
    except _FAILURES as exc:
        msg = f"no Docker daemon answers at {where}: {_why(exc)}"
        raise LookupError(msg) from exc
    return chunks


def _remove_volume(volume: Any) -> None:  # noqa: ANN401 - the SDK's Volume
    """Remove a volume; one already gone (another host of the same daemon won) is fine."""
    with contextlib.suppress(docker.errors.NotFound):
        volume.remove(force=True)


def _frames(sock: Any) -> Iterator[bytes]:  # noqa: ANN401 - the SDK's raw socket
    for _stream, data in frames_iter(sock, tty=False):  # type: ignore[no-untyped-call]
        yield data


def _shutdown(sock: Any) -> None:  # noqa: ANN401 - the SDK's raw socket
    raw = getattr(sock, "_sock", sock)
    with contextlib.suppress(OSError, AttributeError):
        raw.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError, AttributeError):
        sock.close()


class Lines:
    """Splits a byte stream into decoded lines, whatever the chunking."""

    def __init__(self, collector: OutputCollector) -> None:
        self._collector = collector  # it bounds each line and what is kept
        self._decoder = codecs.getincrementaldecoder("utf-8")(HOST_ERRORS)  # see kdist.text

    def feed(self, data: bytes) -> None:
        """Take a chunk; complete lines go to the collector."""
        self._collector.feed_text(self._decoder.decode(data))

    def close(self) -> None:
        """Flush an unterminated last line."""
        self._collector.feed_text(self._decoder.decode(b"", final=True))
        self._collector.close()


@dataclass
class DockerHost:
    """One build host's docker daemon, through its transport's forwarded socket."""

    name: str
    client: docker.DockerClient
    socket: str
    running: dict[str, str] = field(default_factory=dict)  # attempt -> container id

    @classmethod
    async def open(cls, transport: Transport, path: str) -> DockerHost:
        """Check the socket, forward it, and reach the daemon; InfraError names the reason."""
        name = transport.host.name
        if not transport.host.local:
            probe = await transport.run(socket_access(path), timeout=COMMAND_TIMEOUT)
            problem = socket_problem(probe.stdout, path)
            if problem:
                raise InfraError(f"{name}: {problem}")
        try:
            local = await transport.forward_socket(path)
        except InfraError as exc:
            msg = f"{name}: docker daemon not reachable at {path}: {exc}"
            raise InfraError(msg) from exc
        try:
            client = await asyncio.to_thread(_client, f"unix://{local}")
        except _FAILURES as exc:
            msg = f"{name}: docker daemon not reachable at {path}: {_why(exc)}"
            raise InfraError(msg) from exc
        return cls(name, client, path)

    async def _call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:  # noqa: ANN401
        """Run one blocking SDK call in a thread; failures become InfraError naming the host."""
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except _FAILURES as exc:
            msg = f"{self.name}: docker: {what}: {_why(exc)}"
            raise InfraError(msg) from exc

    async def facts(self) -> DaemonFacts:
        """Version, platform and rootlessness of the daemon."""
        version = await self._call("version", self.client.version)
        info = await self._call("info", self.client.info)
        rootless = any("rootless" in str(o) for o in info.get("SecurityOptions") or ())
        platform = Platform(str(version.get("Os", "linux")), str(version.get("Arch", "")))
        return DaemonFacts(
            str(version.get("Version", "")), str(version.get("ApiVersion", "")), platform, rootless
        )

    async def image_id(self, ref: str) -> str | None:
        """The id of `ref` (a name or an id) on this daemon, or None when it has no such image."""
        try:
            attrs = (await asyncio.to_thread(self.client.images.get, ref)).attrs
        except docker.errors.ImageNotFound:
            return None
        except _FAILURES as exc:
            msg = f"{self.name}: docker: inspect {ref}: {_why(exc)}"
            raise InfraError(msg) from exc
        return str(attrs["Id"])

    async def provide_image(
        self,
        name: str,
        head: HeadImage | None,
        head_client: docker.DockerClient | None,
        dockerfile: Path | None,
        facts: DaemonFacts,
    ) -> ImageChoice:
        """The image to build in: present (same id), built from the Dockerfile, or sent."""
        have = await self.image_id(head.id if head else name)
        if have is not None:
            return ImageChoice(name, have, "present")
        if dockerfile is not None:
            return ImageChoice(name, await self._build(name, dockerfile), "built")
        if head is not None and head_client is not None:
            if head.platform != facts.platform:
                msg = (
                    f"{self.name}: image {name} is {head.platform} on the head node, "
                    f"the daemon runs {facts.platform}; name a {facts.platform} image "
                    "in the profile (container.images)"
                )
                raise InfraError(msg)
            await self._receive(head, head_client)
            return ImageChoice(name, head.id, "sent")
        msg = (
            f"{self.name}: image {name} is missing, the head node does not have it to send "
            "and the profile names no dockerfile to build it"
        )
        raise InfraError(msg)

    async def _build(self, name: str, dockerfile: Path) -> str:
        """Build `name` from the head node's Dockerfile (its folder is the context)."""
        image, _logs = await self._call(
            f"build {name} from {dockerfile}",
            self.client.images.build,
            path=str(dockerfile.parent),
            dockerfile=dockerfile.name,
            tag=name,
            pull=False,
            rm=True,
            forcerm=True,
            timeout=None,
        )
        return str(image.id)

    async def _receive(self, head: HeadImage, head_client: docker.DockerClient) -> None:
        """docker save on the head node, streamed over the connection, docker load here."""
        chunks = head_client.api.get_image(head.id, chunk_size=SEND_CHUNK)
        await self._call(f"load {head.name}", self.client.images.load, chunks)
        if await self.image_id(head.id) is None:
            msg = f"{self.name}: image {head.name} ({head.id[:19]}) missing after docker load"
            raise InfraError(msg)

    async def ensure_cache(self, volume: str, image: str, user: str, project: str) -> None:
        """Create the cache volume when missing, owned by the builder's uid:gid."""
        try:
            await asyncio.to_thread(self.client.volumes.get, volume)
            return
        except docker.errors.NotFound:
            pass
        except _FAILURES as exc:
            raise InfraError(f"{self.name}: docker: volume {volume}: {_why(exc)}") from exc
        tags = {f"{LABEL}.project": project, f"{LABEL}.cache": "1"}
        await self._call(f"create volume {volume}", self.client.volumes.create, volume, labels=tags)
        await self._call(
            f"prepare volume {volume}",
            self.client.containers.run,
            image,
            ["sh", "-c", CACHE_SCRIPT, "kdist-cache", CACHE_MOUNT, user],
            user="0:0",
            network_mode="none",
            volumes={volume: {"bind": CACHE_MOUNT, "mode": "rw"}},
            labels=tags,
            remove=True,
        )

    async def toolchain(self, image: str, user: str) -> str:
        """`go version` inside the image (what the journal and provenance record)."""
        try:
            out = await asyncio.to_thread(
                self.client.containers.run, image, ["go", "version"], user=user,
                network_mode="none", remove=True, stderr=True,
            )  # fmt: skip
        except _FAILURES:
            return f"go: not found in {image[:19]}"
        return bytes(out).decode("utf-8", "replace").strip()

    async def sweep(self, tree: str, host: str, run: str) -> int:
        """Remove containers that runs other than `run` left for this tree and host."""
        wanted = [f"{LABEL}.tree={tree}", f"{LABEL}.host={host}"]
        found = await self._call(
            "list containers", self.client.api.containers, all=True, filters={"label": wanted}
        )
        stale = [c["Id"] for c in found if c.get("Labels", {}).get(f"{LABEL}.run") != run]
        for cid in stale:
            await self._remove(cid)
        return len(stale)

    async def remove_project(self, tree: str, project: str) -> list[str]:
        """`clean --remote`: this tree's containers and the project's cache volumes."""
        found = await self._call(
            "list containers",
            self.client.api.containers,
            all=True,
            filters={"label": f"{LABEL}.tree={tree}"},
        )
        for c in found:
            await self._remove(c["Id"])
        if not project:
            return []
        volumes = await self._call(
            "list volumes",
            self.client.volumes.list,
            filters={"label": f"{LABEL}.project={project}"},
        )
        for volume in volumes:
            await self._call(f"remove volume {volume.name}", _remove_volume, volume)
        return [str(v.name) for v in volumes]

    async def run(self, box: Box, sink: LineSink | None, attempt: str) -> CommandResult:
        """Run one build container to the end, streaming its output; exit codes are data."""
        start = time.monotonic()
        collector = OutputCollector(sink)
        api = self.client.api
        host_config = api.create_host_config(**box.host_args())
        created = await self._call(
            "create container", api.create_container, host_config=host_config, **box.create_args()
        )
        cid = str(created["Id"])
        self.running[attempt] = cid
        sock: Any = None
        try:
            sock = await self._call(
                "attach",
                api.attach_socket,
                cid,
                params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1},
            )
            waiter = await self._call("wait", self._register_wait, cid)
            await self._call("start container", api.start, cid)
            await self._pump(sock, Lines(collector))
            status = await self._call("wait", waiter.json)
        except BaseException:
            await asyncio.shield(self._remove(cid))
            raise
        finally:
            if sock is not None:
                _shutdown(sock)
            self.running.pop(attempt, None)
        code = int(status.get("StatusCode", 255))
        return CommandResult(tuple(box.argv), code, collector.text(), "", time.monotonic() - start)

    def _register_wait(self, cid: str) -> requests.Response:
        # The daemon answers the headers of /wait once the waiter is registered and the body
        # when the container exits: registered before start, an AutoRemove cannot outrun it.
        api = self.client.api
        url = f"{api.base_url}/v{api.api_version}/containers/{cid}/wait"
        response = api.post(url, params={"condition": "next-exit"}, stream=True, timeout=None)
        response.raise_for_status()
        return response

    async def _pump(self, sock: Any, lines: Lines) -> None:  # noqa: ANN401
        """Read the attach stream in a thread, feeding lines here, until it ends."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()

        def reader() -> None:
            try:
                for data in _frames(sock):
                    loop.call_soon_threadsafe(queue.put_nowait, data)
            except (OSError, ValueError):
                pass  # the stream was shut down under us: the run is being stopped
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, None)

        thread = asyncio.create_task(asyncio.to_thread(reader))
        try:
            while (data := await queue.get()) is not None:
                lines.feed(data)
            lines.close()
        finally:
            _shutdown(sock)
            with contextlib.suppress(Exception):
                await thread

    async def stop(self, attempt: str, grace: int) -> None:
        """Stop an attempt's container (SIGTERM, `grace` s, SIGKILL) and see it removed."""
        cid = self.running.get(attempt)
        if cid is None:
            return
        with contextlib.suppress(InfraError):
            await self._call("stop container", self.client.api.stop, cid, timeout=grace)
        await self._remove(cid)

    async def _remove(self, cid: str) -> None:
        """Force-remove a container and wait until the daemon no longer lists it."""
        with contextlib.suppress(InfraError):
            await self._call("remove container", self.client.api.remove_container, cid, force=True)
        deadline = time.monotonic() + STOP_WAIT
        while time.monotonic() < deadline:
            try:
                await asyncio.to_thread(self.client.api.inspect_container, cid)
            except docker.errors.NotFound:
                return
            except _FAILURES:
                return  # the daemon is gone with it; the in-container watchdog has done its job
            await asyncio.sleep(0.1)

    def close(self) -> None:
        """Close the SDK's connections."""
        with contextlib.suppress(Exception):
            self.client.close()


# --------------------------------------------------------------------------- a host's setup


_OWNER = re.compile(r"\d+:\d+")


@dataclass(frozen=True)
class HeadImages:
    """The images of a run as the head node's daemon has them (to compare ids and to send)."""

    client: docker.DockerClient | None
    found: Mapping[str, HeadImage]

    @classmethod
    def load(cls, spec: ContainerSpec) -> HeadImages:
        """Look up every image the spec names on the head node's daemon (blocking)."""
        client = head_client()
        names = dict.fromkeys([spec.image, *spec.images.values()])
        found = {n: h for n in names if (h := head_image(client, n)) is not None}
        return cls(client, found)

    def key(self, spec: ContainerSpec) -> str:
        """What the journal keys container builds on: each image name and its head-node id."""
        names = sorted({spec.image, *spec.images.values()})
        return " ".join(f"{n}@{self.found[n].id if n in self.found else '?'}" for n in names)

    def close(self) -> None:
        """Close the head node's client."""
        if self.client is not None:
            with contextlib.suppress(Exception):
                self.client.close()


@dataclass(frozen=True)
class Setup:
    """What every host's container setup of one run shares."""

    spec: ContainerSpec
    head: HeadImages
    source: Path  # the head node's tree: Dockerfile builds take their context from it
    project: str
    tree: str
    run: str
    toolchains: dict[str, asyncio.Task[str]] = field(default_factory=dict)  # image id -> go version

    def toolchain(self, daemon: DockerHost, image: str, user: str) -> asyncio.Task[str]:
        """`go version` in `image`, asked once per run: the same image id, the same toolchain."""
        if image not in self.toolchains:
            self.toolchains[image] = asyncio.ensure_future(daemon.toolchain(image, user))
        return self.toolchains[image]


@dataclass
class ContainerRunner:
    """Builds slices in containers on one host: the container side of the build seam."""

    daemon: DockerHost
    transport: Transport
    image: ImageChoice
    user: str
    network: str
    volume: str
    base_labels: Mapping[str, str]
    tree: str = ""  # the synced tree on the host, mounted whole (slices may build in a copy)

    def box(self, argv: Sequence[str], workdir: str, env: Mapping[str, str], attempt: str) -> Box:
        """The container of one attempt."""
        return Box(
            image=self.image.id,
            argv=tuple(argv),
            workdir=workdir,
            env={**env, **cache_env()},
            user=self.user,
            network=self.network,
            volume=self.volume,
            labels={**self.base_labels, f"{LABEL}.attempt": attempt},
            mount=self.tree,
        )

    async def run(self, argv: Sequence[str], workdir: str, env: Mapping[str, str],
                  sink: LineSink, attempt: str, grace: int) -> CommandResult:  # fmt: skip
        """Mark the attempt's start on the host, then run its container to the end."""
        if not self.transport.host.local:
            marked = await self.transport.run(
                hostside.mark_start(workdir, attempt), timeout=COMMAND_TIMEOUT
            )
            if not marked.ok:
                msg = f"{self.daemon.name}: cannot mark the start of {attempt}: {marked.tail(3)}"
                raise InfraError(msg)
        sink(f"# kdist: container {self.image.name} ({self.image.id[:19]}) as {self.user}")
        return await self.daemon.run(self.box(argv, workdir, env, attempt), sink, attempt)

    async def stop(self, attempt: str, grace: int) -> None:
        """Stop and remove the attempt's container."""
        await self.daemon.stop(attempt, grace)

    def close(self) -> None:
        """Close the daemon's client."""
        self.daemon.close()


async def _owner(transport: Transport, workdir: str) -> str:
    """uid:gid owning the tree on the host: the container's user, so outputs are theirs."""
    result = await transport.run(owner_of(workdir), timeout=COMMAND_TIMEOUT)
    owner = result.stdout.strip()
    if not result.ok or not _OWNER.fullmatch(owner):
        msg = f"{transport.host.name}: cannot tell who owns {workdir}: {result.tail(3)}"
        raise InfraError(msg)
    return owner


async def prepare(
    transport: Transport, workdir: str, setup: Setup, note: Callable[[str], None]
) -> tuple[ContainerRunner, str]:
    """Once per host and run: daemon, image, user, cache volume, orphans; (runner, toolchain)."""
    name = transport.host.name
    daemon = await DockerHost.open(transport, socket_of(transport.host))
    try:
        facts = await daemon.facts()
        wanted = image_for(setup.spec, facts.platform)
        dockerfile = setup.source / setup.spec.dockerfile if setup.spec.dockerfile else None
        image = await daemon.provide_image(
            wanted, setup.head.found.get(wanted), setup.head.client, dockerfile, facts
        )
        if image.how != "present":
            note(f"{name}: image {wanted} {image.how} ({image.id[:19]})")
        user = "0:0" if facts.rootless else await _owner(transport, workdir)
        volume = cache_volume(setup.project, user)
        toolchain = setup.toolchain(daemon, image.id, user)
        await daemon.ensure_cache(volume, image.id, user, setup.project)
        swept = await daemon.sweep(setup.tree, name, setup.run)
        if swept:
            note(f"{name}: removed {swept} container(s) that earlier, dead runs left")
        version = await asyncio.shield(toolchain)
    except BaseException:
        daemon.close()
        raise
    tags = {f"{LABEL}.run": setup.run, f"{LABEL}.tree": setup.tree, f"{LABEL}.host": name,
            f"{LABEL}.project": setup.project}  # fmt: skip
    runner = ContainerRunner(
        daemon, transport, image, user, setup.spec.network, volume, tags, workdir
    )
    return runner, version


async def check(transport: Transport, spec: ContainerSpec) -> DaemonReport:
    """`hosts check`: socket permission, daemon version, the build image's id or its absence."""
    path = socket_of(transport.host)
    try:
        daemon = await DockerHost.open(transport, path)
    except InfraError as exc:
        return DaemonReport(path, problem=str(exc).removeprefix(f"{transport.host.name}: "))
    try:
        facts = await daemon.facts()
        name = image_for(spec, facts.platform)
        found = await daemon.image_id(name)
    except InfraError as exc:
        return DaemonReport(path, problem=str(exc))
    finally:
        daemon.close()
    return DaemonReport(path, facts.version, name, found or "")


async def clean(transport: Transport, tree: str, project: str) -> list[str]:
    """`clean --remote`: the tree's containers and the project's cache volumes (if docker)."""
    probe = await transport.run(
        socket_access(transport.host.docker_socket), timeout=COMMAND_TIMEOUT
    )
    if socket_problem(probe.stdout, transport.host.docker_socket):
        return []  # no usable daemon: nothing of kdist's can be in it
    daemon = await DockerHost.open(transport, transport.host.docker_socket)
    try:
        return await daemon.remove_project(tree, project)
    finally:
        daemon.close()
