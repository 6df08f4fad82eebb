"""Git answers: the shipped repository answers as the head node's real one, with real git."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from kdist.remote.argv import rsync_push
from kdist.remote.trees import git_answers
from kdist.stages.gitrepo import Shipped, ship

pytestmark = pytest.mark.integration

# What version scripts ask (KubeEdge's hack/lib, operator Makefiles, Kubernetes' version.sh).
QUESTIONS = (
    ("describe", "--tags"),
    ("describe",),
    ("describe", "--tags", "--abbrev=14", "--dirty"),
    ("describe", "--tags", "--match", "v1.*", "--dirty"),
    ("describe", "--tags", "--exclude", "v2*", "--long"),
    ("describe", "--always", "--dirty=-modified"),
    ("describe", "--tags", "--abbrev=0"),
    ("describe", "--tags", "--abbrev=14", "HEAD^{commit}"),
    ("describe", "--first-parent", "--tags"),
    ("rev-parse", "HEAD"),
    ("rev-parse", "HEAD^{commit}"),
    ("rev-parse", "--short", "HEAD"),
    ("rev-parse", "--abbrev-ref", "HEAD"),
    ("status", "--porcelain"),
    ("show", "-s", "--format=%ct", "HEAD"),
    ("log", "-1", "--format=%cd %s", "--date=iso-strict"),
    ("rev-list", "--count", "HEAD"),
    ("diff-index", "--quiet", "HEAD"),
)


class Repo:
    """A head-node repository with commits at distinct, fixed times."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.clock = 1_700_000_000
        path.mkdir(parents=True, exist_ok=True)
        self.git("init", "-q", "-b", "main")

    def git(self, *args: str, cwd: Path | None = None) -> str:
        """Run git here with a fixed identity, the next second as the commit time."""
        self.clock += 1
        stamp = f"{self.clock} +0000"
        env = {**os.environ, "GIT_AUTHOR_NAME": "a", "GIT_AUTHOR_EMAIL": "a@example.com",
               "GIT_COMMITTER_NAME": "a", "GIT_COMMITTER_EMAIL": "a@example.com",
               "GIT_AUTHOR_DATE": stamp, "GIT_COMMITTER_DATE": stamp}  # fmt: skip
        done = subprocess.run(["git", *args], cwd=cwd or self.path, env=env, check=True,
                              capture_output=True, text=True)  # fmt: skip
        return done.stdout

    def commit(self, path: str, text: str, message: str = "") -> None:
        """Append `text` to `path` and commit it."""
        file = self.path / path
        file.parent.mkdir(parents=True, exist_ok=True)
        with file.open("a") as f:
            f.write(text + "\n")
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message or f"change {path}")


def answers(tree: Path, home: Path) -> dict[str, tuple[int, str]]:
    """Every question's exit code and output in `tree`, git reading only `home`'s settings."""
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
           "LC_ALL": "C"}  # fmt: skip
    found = {}
    for question in QUESTIONS:
        done = subprocess.run(["git", *question], cwd=tree, env=env, capture_output=True,
                              text=True, check=False)  # fmt: skip
        found[" ".join(question)] = (done.returncode, done.stdout.rstrip("\n"))
    return found


def on_host(source: Path, output: Path, tree: Path) -> Shipped:
    """Ship the repository as a release would, and install it into a synced copy of `source`."""
    shipped = ship(source, output / ".kdist" / "git")
    assert shipped is not None
    for src, dest in ((source, tree), (shipped.mirror, tree / ".kdist" / "git")):
        dest.mkdir(parents=True, exist_ok=True)  # as Transport.push does
        subprocess.run(rsync_push(None, src, str(dest)), check=True, capture_output=True)
    subprocess.run(git_answers(str(tree), install=True), check=True, capture_output=True)
    return shipped


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """An empty home: git on the "host" reads no settings of the head node's user."""
    path = tmp_path / "host-home"
    path.mkdir()
    return path


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[Repo]:
    """History with a merge, annotated and lightweight tags, and tags on another branch."""
    r = Repo(tmp_path / "src")
    (r.path / ".gitignore").write_text("/bin/\n*.tmp\n")
    for i in range(6):
        r.commit(f"pkg/a{i % 2}.go", f"// {i}")
    r.git("tag", "v1.0.0")
    r.commit("pkg/b.go", "// b")
    r.git("tag", "-a", "v1.1.0", "-m", "release 1.1.0")
    r.git("checkout", "-q", "-b", "side", "HEAD~1")
    r.commit("side.go", "// side")
    r.git("tag", "v2.0.0-side")
    r.git("checkout", "-q", "-b", "unmerged")
    r.commit("unmerged.go", "// never merged")
    r.git("tag", "v9.0.0")  # not merged into main: cannot change an answer there
    r.git("checkout", "-q", "main")
    r.commit("pkg/c.go", "// c")
    r.git("merge", "-q", "--no-edit", "--no-ff", "side")
    r.commit("pkg/d.go", "// d")
    r.git("tag", "release-7")
    r.commit("pkg/e.go", "// e")
    yield r


def assert_same(source: Path, tree: Path, home: Path) -> None:
    """Every question gets the same exit code and output on the head node and the host."""
    assert answers(tree, home) == answers(source, Path.home())


def test_past_a_tag_with_merges(repo: Repo, tmp_path: Path, home: Path) -> None:
    """One commit past a tag, history with a merge: describe, rev-parse, status, times agree."""
    on_host(repo.path, tmp_path / "out", tmp_path / "host")
    assert_same(repo.path, tmp_path / "host", home)
    assert answers(tmp_path / "host", home)["describe --tags"][1].startswith("release-7-1-g")


def test_tagged_clean_tree(repo: Repo, tmp_path: Path, home: Path) -> None:
    """HEAD is an annotated tag: describe names it alone."""
    repo.git("tag", "-a", "v1.2.0", "-m", "release 1.2.0")
    on_host(repo.path, tmp_path / "out", tmp_path / "host")
    assert_same(repo.path, tmp_path / "host", home)
    assert answers(tmp_path / "host", home)["describe --tags --abbrev=14 --dirty"][1] == "v1.2.0"


def test_dirty_trees(repo: Repo, tmp_path: Path, home: Path) -> None:
    """Modified, untracked, staged, removed from the index, ignored: status and --dirty agree."""
    (repo.path / "pkg" / "a0.go").write_text("changed\n")
    (repo.path / "new.go").write_text("package x\n")
    (repo.path / "scratch.tmp").write_text("ignored\n")
    (repo.path / "staged.go").write_text("staged\n")
    repo.git("add", "staged.go")
    repo.git("rm", "-q", "--cached", "pkg/b.go")  # untracked now, still in the tree
    (repo.path / "pkg" / "c.go").write_text("staged then reverted\n")
    repo.git("add", "pkg/c.go")
    repo.git("checkout", "HEAD", "--", "pkg/c.go")
    repo.git("reset", "-q")  # unstage everything but keep the files
    repo.git("add", "staged.go")
    repo.git("rm", "-q", "--cached", "pkg/b.go")
    tree = tmp_path / "host"
    on_host(repo.path, tmp_path / "out", tree)
    assert_same(repo.path, tree, home)
    status = answers(tree, home)["status --porcelain"][1].splitlines()
    assert {"A  staged.go", "D  pkg/b.go", "?? pkg/b.go", "?? new.go", " M pkg/a0.go"} <= set(
        status
    )
    assert answers(tree, home)["describe --tags --abbrev=14 --dirty"][1].endswith("-dirty")


def test_build_outputs_and_kdist_folders_do_not_count(
    repo: Repo, tmp_path: Path, home: Path
) -> None:
    """The host's own .kdist/ and _output/ are not untracked files; ignored outputs neither."""
    tree = tmp_path / "host"
    on_host(repo.path, tmp_path / "out", tree)
    (tree / "_output" / "local" / "bin").mkdir(parents=True)
    (tree / "_output" / "local" / "bin" / "x").write_text("binary")
    (tree / "bin").mkdir()
    (tree / "bin" / "y").write_text("binary")
    assert answers(tree, home)["status --porcelain"] == (0, "")


def test_a_new_tag_changes_the_digest_and_costs_little(
    repo: Repo, tmp_path: Path, home: Path
) -> None:
    """A second run sends only new objects; a tag on HEAD changes the answers' digest."""
    first = on_host(repo.path, tmp_path / "out", tmp_path / "host")
    again = on_host(repo.path, tmp_path / "out", tmp_path / "host")
    assert (again.new_objects, again.digest) == (0, first.digest)
    repo.git("tag", "v9.1.0", "unmerged")  # not merged into main: no answer changes
    assert on_host(repo.path, tmp_path / "out", tmp_path / "host").digest == first.digest
    repo.git("tag", "-a", "v1.3.0", "-m", "release 1.3.0")
    tagged = on_host(repo.path, tmp_path / "out", tmp_path / "host")
    assert tagged.digest != first.digest
    assert tagged.new_objects == 1  # the annotated tag object
    assert_same(repo.path, tmp_path / "host", home)
    repo.commit("pkg/f/g.go", "// g")
    moved = on_host(repo.path, tmp_path / "out", tmp_path / "host")
    assert moved.new_objects == 4  # the commit, the root tree, pkg/ and pkg/f/
    assert_same(repo.path, tmp_path / "host", home)


def test_source_in_a_subfolder(repo: Repo, tmp_path: Path, home: Path) -> None:
    """A project in a subfolder: HEAD's real name, its own tree, the parent's ignore rules."""
    (repo.path / ".gitignore").write_text("/bin/\n*.tmp\n*.log\n")
    repo.commit("edge/hack/version.sh", "echo")
    (repo.path / "edge" / "debug.log").write_text("ignored by the parent's .gitignore\n")
    source = repo.path / "edge"
    tree = tmp_path / "host"
    on_host(source, tmp_path / "out", tree)
    host = answers(tree, home)
    head = answers(source, Path.home())
    assert host["status --porcelain"] == (0, "")
    for question in ("rev-parse HEAD", "describe --tags --abbrev=14 --dirty", "rev-list --count HEAD",
                     "show -s --format=%ct HEAD"):  # fmt: skip
        assert host[question] == head[question]
    (tree / "edge.go").write_text("package edge\n")
    assert answers(tree, home)["status --porcelain"] == (0, "?? edge.go")


def test_shallow_clone_and_detached_head(repo: Repo, tmp_path: Path, home: Path) -> None:
    """A shallow CI checkout on a detached HEAD answers as shallowly on the host."""
    clone = tmp_path / "clone"
    repo.git("clone", "-q", "--depth", "3", f"file://{repo.path}", str(clone), cwd=tmp_path)
    repo.git("checkout", "-q", "--detach", "HEAD", cwd=clone)
    on_host(clone, tmp_path / "out", tmp_path / "host")
    assert_same(clone, tmp_path / "host", home)
    assert answers(tmp_path / "host", home)["rev-list --count HEAD"][1] == "3"


def test_global_excludes_of_the_head_node(
    repo: Repo, tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Files the head node's global excludes ignore stay ignored on a host without them."""
    config = tmp_path / "head-config"
    (config / "git").mkdir(parents=True)
    (config / "git" / "ignore").write_text("*.swp\n")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config))
    (repo.path / "main.go.swp").write_text("editor state\n")
    on_host(repo.path, tmp_path / "out", tmp_path / "host")
    assert answers(tmp_path / "host", home)["status --porcelain"] == (0, "")


def test_not_in_git_and_remove(tmp_path: Path) -> None:
    """A tree outside git ships nothing; remove takes the host's .git and the repository away."""
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "main.go").write_text("package main\n")
    assert ship(plain, tmp_path / "out" / ".kdist" / "git") is None
    tree = tmp_path / "host"
    (tree / ".git").mkdir(parents=True)
    (tree / ".kdist" / "git").mkdir(parents=True)
    subprocess.run(git_answers(str(tree), install=False), check=True)
    assert not (tree / ".git").exists()
    assert not (tree / ".kdist" / "git").exists()
    shutil.rmtree(tree)


def test_an_output_on_another_file_system(repo: Repo, tmp_path: Path, home: Path) -> None:
    """--output on another disk (a tmpfs here): the pack is written there, no cross-device rename."""
    other = tmp_path / "other-disk"
    other.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(other)],
                             capture_output=True, check=False)  # fmt: skip
    if mounted.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs (the tests run as root): {mounted.stderr!r}")
    try:
        assert os.stat(other).st_dev != os.stat(repo.path).st_dev
        on_host(repo.path, other / "out", tmp_path / "host")
        assert_same(repo.path, tmp_path / "host", home)
        repo.git("tag", "v3.0.0")  # a second run adds a pack beside the first
        on_host(repo.path, other / "out", tmp_path / "host2")
        assert_same(repo.path, tmp_path / "host2", home)
        packs = sorted((other / "out/.kdist/git/objects/pack").iterdir())
        assert not [p for p in packs if p.name.startswith("tmp-")]
    finally:
        subprocess.run(["umount", str(other)], check=False)
