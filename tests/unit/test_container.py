"""Pure parts of container builds: image choice, names, labels, the container's shape."""

from __future__ import annotations

import dataclasses
import re
import shlex
import subprocess
from pathlib import Path

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
    labels=container.labels(
        run="r1", attempt="r1-linux-386-1", tree="k8s-123", host="h1", project="kubernetes"
    ),
)


def test_image_for_prefers_the_per_platform_name() -> None:
    """A daemon's platform picks its own image; others get the default name."""
    spec = ContainerSpec(image="cross:1", images={"linux/arm64": "cross-arm64:1"})
    assert container.image_for(spec, Platform("linux", "arm64")) == "cross-arm64:1"
    assert container.image_for(spec, Platform("linux", "amd64")) == "cross:1"


def test_cache_volume_is_per_project_and_uid() -> None:
    """Two builder uids on one daemon never share (and fight over) one cache volume."""
    assert container.cache_volume("kubernetes", "1000:1000") == "kdist-cache-kubernetes-1000"
    assert container.cache_volume("kubernetes", "0:0") != container.cache_volume(
        "kubernetes", "1000:1000"
    )


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
        (
            "denied builder srw-rw---- 0 998\n",
            "builder may not use the docker socket /s (srw-rw---- 0 998)",
        ),
        ("", "cannot check the docker socket /s: no answer"),
    ],
)
def test_socket_problem_names_the_reason(answer: str, expected: str) -> None:
    """Each probe answer becomes a reason a person can act on."""
    assert container.socket_problem(answer, "/s").startswith(expected)


def test_socket_probe_script_answers_for_real_paths(tmp_path: Path) -> None:
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
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None and proc.stdin is not None
    assert proc.stdout.readline() == "started\n"
    proc.stdin.close()
    assert proc.wait(timeout=10) != 0


def _profile(text: str) -> object:
    from kdist.config.loader import load_yaml_text
    from kdist.config.profile import parse_profile
    from kdist.errors import ProfileError

    return parse_profile(load_yaml_text(text, "kdist.yaml", ProfileError), "kdist.yaml")


GENERIC = "name: p\nplatforms: [linux/amd64]\nbuild: make\nartifacts: out\n"


def test_profile_container_as_a_name_or_a_mapping() -> None:
    """`container:` takes an image name, or a mapping with per-platform images and a network."""
    from kdist.model import Profile

    short = _profile(GENERIC + "container: cross:1\n")
    full = _profile(
        GENERIC + "container:\n  image: cross:1\n  images: {linux/arm64: cross-arm:1}\n"
        "  dockerfile: build/Dockerfile\n  network: host\n"
    )
    assert isinstance(short, Profile) and isinstance(full, Profile)
    assert short.container == ContainerSpec(image="cross:1")
    assert full.container == ContainerSpec(
        "cross:1", {"linux/arm64": "cross-arm:1"}, "build/Dockerfile", "host"
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("container: {images: {}}\n", "container.image: is required"),
        ("container: '-rm'\n", "container: '-rm' is not an image name"),
        ("container: {image: x, images: {linux/x: y}}\n", "container.images.linux/x: unknown arch"),
        (
            "container: {image: x, dockerfile: /etc/Dockerfile}\n",
            "container.dockerfile: must be a path inside",
        ),
        ("container: {image: x, volumes: []}\n", "container.volumes: unknown key"),
    ],
)
def test_profile_container_errors_name_the_key(body: str, message: str) -> None:
    """A bad container section is a profile error naming the key."""
    from kdist.errors import ProfileError

    with pytest.raises(ProfileError, match=re.escape(message)):
        _profile(GENERIC + body)


def test_kube_cross_image_follows_upstream_overrides() -> None:
    """VERSION file by default; KUBE_BASE_IMAGE_REGISTRY, KUBE_CROSS_IMAGE/VERSION override."""
    from kdist.config.kubernetes import kube_cross_image

    assert kube_cross_image("v1.32.0-go1.23.4-bullseye.0\n", {}) == (
        "registry.k8s.io/build-image/kube-cross:v1.32.0-go1.23.4-bullseye.0"
    )
    assert kube_cross_image("v1\n", {"KUBE_BASE_IMAGE_REGISTRY": "r.example/b"}) == (
        "r.example/b/kube-cross:v1"
    )
    assert (
        kube_cross_image(None, {"KUBE_CROSS_IMAGE": "mine", "KUBE_CROSS_VERSION": "v2"})
        == "mine:v2"
    )
    with pytest.raises(ValueError, match="KUBE_CROSS_VERSION"):
        kube_cross_image(None, {})


def test_container_mode_comes_from_the_flags_or_the_profile(tmp_path: Path) -> None:
    """--native wins, --container selects the profile's (or kube-cross) image, else the profile."""
    from kdist.config.profile import KUBERNETES, container_spec
    from kdist.errors import ProfileError
    from kdist.model import Profile

    boxed = _profile(GENERIC + "container: cross:1\n")
    plain = _profile(GENERIC)
    assert isinstance(boxed, Profile) and isinstance(plain, Profile)
    assert container_spec(boxed, tmp_path, {}, None) == ContainerSpec("cross:1")
    assert container_spec(boxed, tmp_path, {}, False) is None
    assert container_spec(plain, tmp_path, {}, None) is None
    with pytest.raises(ProfileError, match="needs a `container:` image"):
        container_spec(plain, tmp_path, {}, True)
    env = {"KUBE_CROSS_VERSION": "v9"}
    assert container_spec(KUBERNETES, tmp_path, env, True) == ContainerSpec(
        "registry.k8s.io/build-image/kube-cross:v9"
    )


def test_container_builds_keep_the_hosts_env_out() -> None:
    """A container has its own PATH: the host's env is not passed, the profile's and kdist's are."""
    from kdist.config.profile import KUBERNETES
    from kdist.engine.plan import PlanRequest, build_env
    from kdist.model import Host, VersionInfo

    host = Host("h", "h", env={"PATH": "/opt/go/bin"})
    req = PlanRequest((Platform("linux", "386"),), KUBERNETES, "/src", "t", VersionInfo("v1"))
    assert build_env(host, req)["PATH"] == "/opt/go/bin"
    boxed = build_env(host, dataclasses.replace(req, containerized=True))
    assert "PATH" not in boxed and boxed["KDIST_VERSION"] == "v1"


def test_journal_key_changes_with_the_image() -> None:
    """A new build image (a new id for the same name) changes every slice's journal key."""
    from kdist.config.profile import KUBERNETES
    from kdist.engine.journal import slice_key
    from kdist.model import Slice, VersionInfo

    slc = Slice(Platform("linux", "386"), "h1", True, "/w", ("make",), "/w/out")
    keys = {
        slice_key("tree", slc, KUBERNETES, VersionInfo("v1"), (), image)
        for image in ("", "cross:1@sha256:aa", "cross:1@sha256:bb")
    }
    assert len(keys) == 3


def test_head_images_key_names_each_image_and_its_id() -> None:
    """The journal's container key has every image name with the head node's id ('?' if none)."""
    spec = ContainerSpec("cross:1", {"linux/arm64": "cross-arm:1"})
    head = container.HeadImages(
        None, {"cross:1": container.HeadImage("cross:1", "sha256:aa", Platform("linux", "amd64"))}
    )
    assert head.key(spec) == "cross-arm:1@? cross:1@sha256:aa"


def test_hosts_check_in_container_mode_needs_no_host_go_but_a_daemon() -> None:
    """With a build container a host needs rsync and a usable daemon, not its own make and go."""
    from kdist.engine.check import HostReport
    from kdist.model import DaemonReport, Host
    from kdist.remote.probe import Facts

    facts = Facts(arch="amd64", os="linux", tools={"rsync": "rsync 3.2"}, workdir_ok=True)
    host = Host("h1", "h1")
    assert "go not found" in HostReport(host, facts).problems()
    usable = HostReport(host, facts, docker=DaemonReport("/s", "24.0.7", "cross:1", "sha256:aa"))
    assert usable.ok and usable.row()[-2:] == ["24.0.7", "cross:1 sha256:aa"]
    down = HostReport(host, facts, docker=DaemonReport("/s", problem="no docker socket at /s"))
    assert down.problems() == ["no docker socket at /s"] and not down.ok
    docker = down.as_dict()["docker"]
    assert isinstance(docker, dict) and docker["problem"] == "no docker socket at /s"
