"""Pure parts of container builds: image choice, names, labels, the container's shape."""

from __future__ import annotations

import shlex
import subprocess

import pytest

from kdist.model import ContainerSpec, Platform
from kdist.remote.argv import socket_access
from kdist.stages import container
from kdist.transport import OutputCollector

BOX = container.Box(
    image="sha256:abc",
    argv=("make", "cross", "KUBE_BUILD_PLATFORMS=linux/386"),
    workdir="/var/tmp/kdist/k8s-123",
    env={"GOCACHE": "/kdist-cache/build", "SOURCE_DATE_EPOCH": "1"},
    user="1000:1000",
    network="none",
    volume="kdist-cache-kubernetes-1000",
    labels=container.labels(run="r1", attempt="r1-linux-386-1", tree="k8s-123", host="h1",
                            project="kubernetes"),
)


def test_image_for_prefers_the_per_platform_name() -> None:
    """A daemon's platform picks its own image; others get the default name."""
    spec = ContainerSpec(image="cross:1", images={"linux/arm64": "cross-arm64:1"})
    assert container.image_for(spec, Platform("linux", "arm64")) == "cross-arm64:1"
    assert container.image_for(spec, Platform("linux", "amd64")) == "cross:1"


def test_cache_volume_is_per_project_and_uid() -> None:
    """Two builder uids on one daemon never share (and fight over) one cache volume."""
    assert container.cache_volume("kubernetes", "1000:1000") == "kdist-cache-kubernetes-1000"
    assert container.cache_volume("kubernetes", "0:0") != container.cache_volume("kubernetes", "1000:1000")


def test_box_runs_as_the_owner_without_network_with_init_and_autoremove() -> None:
    """The container runs as the tree's owner, offline, under an init, removed when it exits."""
    create = BOX.create_args()
    host = BOX.host_args()
    assert create["user"] == "1000:1000"
    assert create["working_dir"] == BOX.workdir
    assert create["stdin_open"] is True and create["detach"] is False
    assert create["command"][-3:] == list(BOX.argv)
    assert host["network_mode"] == "none"
    assert host["init"] is True and host["auto_remove"] is True
    assert host["binds"][BOX.workdir] == {"bind": BOX.workdir, "mode": "rw"}
    assert host["binds"][BOX.volume]["bind"] == container.CACHE_MOUNT


def test_docker_run_words_say_everything_that_matters() -> None:
    """The -n rendering names the image, user, network, mounts, labels, env and argv."""
    words = BOX.docker_run()
    text = shlex.join(words)
    assert words[:2] == ["docker", "run"]
    assert "--network none" in text and "--user 1000:1000" in text and "--init" in text
    assert f"{BOX.workdir}:{BOX.workdir}" in words
    assert "--label=io.kdist.attempt=r1-linux-386-1" in words
    assert "--env=SOURCE_DATE_EPOCH=1" in words
    assert words[-4:] == ["sha256:abc", *BOX.argv]


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("ok\n", ""),
        ("missing\n", "no docker socket at /s"),
        ("not-a-socket\n", "/s is not a socket"),
        ("denied builder srw-rw---- 0 998\n", "builder may not use the docker socket /s (srw-rw---- 0 998)"),
        ("", "cannot check the docker socket /s: no answer"),
    ],
)
def test_socket_problem_names_the_reason(answer: str, expected: str) -> None:
    """Each probe answer becomes a reason a person can act on."""
    assert container.socket_problem(answer, "/s").startswith(expected)


def test_socket_probe_script_answers_for_real_paths(tmp_path) -> None:
    """The socket probe tells a missing path, a plain file and a usable socket apart."""
    import socket as sockets

    plain = tmp_path / "plain"
    plain.write_text("")
    sock_path = tmp_path / "s.sock"
    server = sockets.socket(sockets.AF_UNIX)
    server.bind(str(sock_path))
    try:
        answers = [
            subprocess.run(socket_access(str(p)), capture_output=True, text=True).stdout
            for p in (tmp_path / "nothing", plain, sock_path)
        ]
    finally:
        server.close()
    assert [a.split()[0] for a in answers] == ["missing", "not-a-socket", "ok"]


def test_lines_reassembles_chunks_and_flushes_the_tail() -> None:
    """Output split anywhere, even inside a UTF-8 character, comes out as whole lines."""
    got: list[str] = []
    lines = container.Lines(OutputCollector(got.append))
    data = "héllo\nworld\nlast".encode()
    for i in range(len(data)):
        lines.feed(data[i : i + 1])
    lines.close()
    assert got == ["héllo", "world", "last"]


def test_box_script_kills_everything_when_stdin_closes() -> None:
    """The in-container watchdog ends the build when its stdin reaches EOF."""
    proc = subprocess.Popen(
        container.boxed(["sh", "-c", "echo started; sleep 30"]),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True,
    )
    assert proc.stdout is not None and proc.stdin is not None
    assert proc.stdout.readline() == "started\n"
    proc.stdin.close()
    assert proc.wait(timeout=10) != 0
