"""Container builds end to end: a real dockerd, real sshd hosts using it, the kdist CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import jsonschema
import pytest

from kdist.cli import documents
from kdist.cli.commands import tree_id
from kdist.testing.devfarm import Farm
from kdist.testing.dockerd import Dockerd
from tests.helpers import REPO, git, kdist, make_project, release

pytestmark = [pytest.mark.e2e, pytest.mark.docker]

THREE = "linux/386,linux/arm,windows/386"  # client-only platforms: the cheapest real slices
OWNER = 4321  # not root: the uid that owns h1's tree, so its container must run as it


@pytest.fixture(scope="module")
def boxes(dockerd: Dockerd, build_image: tuple[str, str], gocache: Path,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Farm]:  # fmt: skip
    """Three sshd hosts (h1 amd64, h2 arm64, h3 s390x) whose docker_socket is the test daemon."""
    root = tmp_path_factory.mktemp("boxes")
    with Farm(root, 3, first_address=101, gocache=gocache, docker_socket=dockerd.socket) as farm:
        yield farm


@pytest.fixture
def env(dockerd: Dockerd, build_image: tuple[str, str]) -> dict[str, str]:
    """The head node's environment: its own daemon, and the test image as kube-cross."""
    repository, tag = build_image[0].rsplit(":", 1)
    return {**dockerd.env(), "KUBE_CROSS_IMAGE": repository, "KUBE_CROSS_VERSION": tag}


@pytest.fixture
def client(dockerd: Dockerd) -> Iterator[docker.DockerClient]:
    """A docker SDK client of the test daemon, to look at what kdist left."""
    sdk = docker.DockerClient(base_url=dockerd.url)
    yield sdk
    sdk.close()


def kdist_containers(client: docker.DockerClient) -> list[str]:
    """Every container (running or not) that carries kdist's labels."""
    found = client.containers.list(all=True, filters={"label": "io.kdist.run"})
    return [str(c.name) for c in found]


def boxed_project(root: Path, image: str, build: str, name: str = "boxed") -> Path:
    """A generic project whose build runs `build` in the container `image`."""
    root.mkdir(parents=True)
    (root / "kdist.yaml").write_text(
        f"name: {name}\nplatforms: [linux/amd64]\nbuild: {build}\n"
        f"artifacts: out/{{os}}/{{arch}}\ncontainer: {{image: {image}}}\n"
    )
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "import")
    git(root, "tag", "v0.1.0")
    return root


# Copies the image's own gofmt (a linux/amd64 ELF) as the "binary": a build without a compile.
COPY_GOFMT = "sh -c 'mkdir -p out/{os}/{arch} && cp /usr/local/go/bin/gofmt out/{os}/{arch}/'"
HANG = "sh -c 'echo building; exec sleep 600'"


def test_kubernetes_release_in_containers_on_three_hosts(
    boxes: Farm, env: dict[str, str], build_image: tuple[str, str], tmp_path: Path
) -> None:
    """3 platforms build in containers on 3 hosts: one login each, verified, owned, image in --json."""
    source = make_project("kubernetes", tmp_path / "kubernetes")
    h1_tree = boxes.host("h1").workdir / tree_id(source)
    (h1_tree / "_output").mkdir(parents=True)
    for path in (h1_tree, h1_tree / "_output"):
        os.chown(path, OWNER, OWNER)
    logins = {h.name: boxes.accepted_logins(h.name) for h in boxes}
    ran = release(source, "--container", hosts=boxes.inventory_path, out=tmp_path / "out",
                  platforms=THREE, env=env)  # fmt: skip
    assert ran.code == 0, ran.stderr + ran.stdout
    doc = ran.json
    assert sorted(s["host"] for s in doc["slices"]) == ["h1", "h2", "h3"], doc["notes"]
    assert {s["image"] for s in doc["slices"]} == {build_image[1]}
    assert all(s["artifacts"] for s in doc["slices"])
    assert {h.name: boxes.accepted_logins(h.name) - logins[h.name] for h in boxes} == {
        "h1": 1, "h2": 1, "h3": 1
    }  # fmt: skip
    for slc in doc["slices"]:
        tree = boxes.host(slc["host"]).workdir / tree_id(source)
        built = tree / "_output/local/bin" / slc["platform"]
        owner = OWNER if slc["host"] == "h1" else 0
        assert {(p.stat().st_uid, p.stat().st_gid) for p in built.iterdir()} == {(owner, owner)}
    assert len(doc["tarballs"]) > 3
    schema = json.loads(documents.SCHEMA.read_text())
    jsonschema.Draft202012Validator(schema).validate(doc)


def test_quick_release_in_a_container_of_the_head_nodes_daemon(
    env: dict[str, str], build_image: tuple[str, str], tmp_path: Path
) -> None:
    """Without --hosts, quick-release --container builds in the head node's own daemon."""
    source = make_project("kubernetes", tmp_path / "kubernetes")
    ran = kdist("quick-release", "--container", "--platforms", "linux/386", "--no-images",
                "--source", source, "--json", env=env)  # fmt: skip
    assert ran.code == 0, ran.stderr + ran.stdout
    (slc,) = ran.json["slices"]
    assert (slc["host"], slc["image"]) == ("local", build_image[1])
    assert (source / "_output/dockerized/bin/linux/386/kubectl").is_file()


def test_dry_run_prints_the_container_command(
    boxes: Farm, env: dict[str, str], build_image: tuple[str, str], k8s_source: Path
) -> None:
    """-n shows the docker run each host would do: image, no network, init, the cache volume."""
    ran = kdist("release", "--source", k8s_source, "--hosts", boxes.inventory_path,
                "--platforms", "linux/386", "--container", "-n", env=env)  # fmt: skip
    assert ran.code == 0, ran.stderr
    assert "docker run --rm --init -i --network none" in ran.stdout.replace("\n", " ")
    assert build_image[0] in ran.stdout
    assert "kdist-cache-kubernetes" in ran.stdout


def test_warm_cache_volume_makes_the_next_release_faster(
    boxes: Farm, env: dict[str, str], client: docker.DockerClient, tmp_path: Path
) -> None:
    """After a one-file change the second release is faster: the cache volume is warm."""
    source = make_project("kubernetes", tmp_path / "kubernetes")
    cleaned = kdist("clean", "--remote", "--source", source, "--hosts", boxes.inventory_path,
                    env=env)  # fmt: skip
    assert cleaned.code == 0, cleaned.stderr
    assert client.volumes.list(filters={"label": "io.kdist.project=kubernetes"}) == []
    args = ("--container", "--host", "h1")

    def timed() -> float:
        began = time.monotonic()
        ran = release(source, *args, hosts=boxes.inventory_path, platforms="linux/386", env=env)
        assert ran.code == 0, ran.stderr + ran.stdout
        return time.monotonic() - began

    cold = timed()
    main = source / "cmd/kubectl/kubectl.go"
    main.write_text(main.read_text() + "\n// a one-line change\n")
    warm = timed()
    assert client.volumes.list(filters={"label": "io.kdist.project=kubernetes"})
    assert warm < cold * 0.8, (cold, warm)


def test_interrupt_leaves_no_container(
    boxes: Farm, env: dict[str, str], build_image: tuple[str, str],
    client: docker.DockerClient, tmp_path: Path,
) -> None:  # fmt: skip
    """Ctrl-C during a container build: within 15 s no container with kdist's labels is left."""
    source = boxed_project(tmp_path / "hang", build_image[0], HANG)
    proc = subprocess.Popen(
        [sys.executable, "-m", "kdist", "release", "--source", str(source), "--hosts",
         str(boxes.inventory_path), "--host", "h2", "--skip-tests", "-q"],
        env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        cwd=REPO,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not client.containers.list(filters={"label": "io.kdist.project=boxed"}):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no build container started"
            time.sleep(0.2)
        interrupted = time.monotonic()
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        while kdist_containers(client) and time.monotonic() - interrupted < 15:
            time.sleep(0.2)
        assert kdist_containers(client) == []
        assert proc.returncode == 130
    finally:
        if proc.poll() is None:
            proc.kill()


def test_hung_container_build_is_stopped_by_the_idle_timeout(
    boxes: Farm, env: dict[str, str], build_image: tuple[str, str],
    client: docker.DockerClient, tmp_path: Path,
) -> None:  # fmt: skip
    """A silent container build is stopped by --idle-timeout and its container removed."""
    source = boxed_project(tmp_path / "hang", build_image[0], HANG)
    ran = release(source, "--idle-timeout", "3", "--attempts", "1", "--host", "h3",
                  hosts=boxes.inventory_path, env=env)  # fmt: skip
    assert ran.code == 3, ran.stderr + ran.stdout
    assert "no output for 3s" in ran.json["slices"][0]["error"]
    assert kdist_containers(client) == []


def test_host_that_cannot_use_its_socket_moves_the_slice(
    boxes: Farm, env: dict[str, str], build_image: tuple[str, str], tmp_path: Path
) -> None:
    """h1's socket has no daemon behind it: the slice moves to h2 and the reason is shown."""
    stale = tmp_path / "stale.sock"
    stale.touch()  # a plain file where the socket should be
    inventory = tmp_path / "inventory.yaml"
    text = boxes.inventory_path.read_text()
    inventory.write_text(text.replace("  h1:\n", f'  h1:\n    docker_socket: "{stale}"\n'))
    source = boxed_project(tmp_path / "copy", build_image[0], COPY_GOFMT)
    ran = release(source, hosts=inventory, env=env)
    assert ran.code == 0, ran.stderr + ran.stdout
    (slc,) = ran.json["slices"]
    assert (slc["host"], slc["attempts"]) == ("h2", 2), ran.json["notes"]
    assert any(f"{stale} is not a socket" in note for note in ran.json["notes"])


def test_image_is_sent_once_to_a_host_that_lacks_it(
    env: dict[str, str], build_image: tuple[str, str], gocache: Path, tmp_path: Path
) -> None:
    """A host whose daemon lacks the image gets it from the head node once, not on the next run."""
    with (
        Dockerd(tmp_path / "d2") as empty,
        Farm(
            tmp_path / "farm", 1, first_address=105, gocache=gocache, docker_socket=empty.socket
        ) as lonely,
    ):
        source = boxed_project(tmp_path / "copy", build_image[0], COPY_GOFMT)
        first = release(source, hosts=lonely.inventory_path, env=env)
        second = release(source, "--rebuild", hosts=lonely.inventory_path, env=env)
        assert empty.api("GET", f"/images/{build_image[1]}/json")["Id"] == build_image[1]
    assert first.code == 0, first.stderr + first.stdout
    assert second.code == 0, second.stderr + second.stdout
    assert [n for n in first.json["notes"] if "sent" in n] == [
        f"h1: image {build_image[0]} sent ({build_image[1][:19]})"
    ]
    assert [n for n in second.json["notes"] if "sent" in n] == []
    assert second.json["slices"][0]["image"] == build_image[1]


def test_hosts_check_reports_daemon_and_image(
    boxes: Farm, env: dict[str, str], build_image: tuple[str, str], dockerd: Dockerd,
    k8s_source: Path,
) -> None:  # fmt: skip
    """hosts check --container shows each daemon's version and the build image's id."""
    ran = kdist("hosts", "check", "--hosts", boxes.inventory_path, "--source", k8s_source,
                "--container", "--json", env=env)  # fmt: skip
    assert ran.code == 0, ran.stderr + ran.stdout
    version = dockerd.api("GET", "/version")["Version"]
    for host in ran.json["hosts"]:
        assert host["docker"]["version"] == version
        assert host["docker"]["image_id"] == build_image[1]
