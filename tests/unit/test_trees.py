"""The tree scripts run for real through `sh -c` (no SSH): a slice's private tree."""

from __future__ import annotations

import subprocess
from pathlib import Path

from kdist.engine.plan import slot_workdir
from kdist.model import Platform
from kdist.remote.argv import NO_WORKDIR
from kdist.remote.trees import slot_tree


def _tree(root: Path) -> Path:
    """A synced tree: sources, a .git of the host's own, kdist's .kdist folder."""
    tree = root / "tree"
    (tree / "cmd").mkdir(parents=True)
    (tree / "cmd" / "main.go").write_text("package main\n")
    (tree / ".git").mkdir()
    (tree / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (tree / ".kdist" / "attempts").mkdir(parents=True)
    return tree


def test_private_tree_is_hard_links_without_kdist_folders(tmp_path: Path) -> None:
    """Every file of the tree is a hard link in the slot; .kdist (and the slots) stay out."""
    tree = _tree(tmp_path)
    slot = Path(slot_workdir(str(tree), Platform("linux", "arm64")))
    subprocess.run(slot_tree(str(tree), str(slot)), check=True)
    for name in ("cmd/main.go", ".git/HEAD"):
        assert (slot / name).stat().st_ino == (tree / name).stat().st_ino
    assert not (slot / ".kdist").exists()


def test_refresh_drops_leftovers_keeps_output_and_follows_the_tree(tmp_path: Path) -> None:
    """A refresh removes what a build left (not _output/), and takes the tree's new files."""
    tree = _tree(tmp_path)
    slot = Path(slot_workdir(str(tree), Platform("linux", "amd64")))
    subprocess.run(slot_tree(str(tree), str(slot)), check=True)
    (slot / "leftover.o").write_text("object\n")
    (slot / "_output" / "local" / "go").mkdir(parents=True)
    (slot / "_output" / "local" / "go" / "cache").write_text("build cache\n")
    (slot / ".kdist" / "attempts").mkdir(parents=True)
    (slot / ".kdist" / "attempts" / "a.start").write_text("")
    replaced = tree / "cmd" / "main.go.new"
    replaced.write_text("package main // changed\n")
    replaced.replace(tree / "cmd" / "main.go")  # as sync writes a changed file: a new inode
    subprocess.run(slot_tree(str(tree), str(slot)), check=True)
    assert not (slot / "leftover.o").exists()
    assert (slot / "_output" / "local" / "go" / "cache").read_text() == "build cache\n"
    assert (slot / ".kdist" / "attempts" / "a.start").exists()
    assert (slot / "cmd/main.go").read_text() == "package main // changed\n"
    assert (slot / "cmd/main.go").stat().st_ino == (tree / "cmd/main.go").stat().st_ino


def test_missing_tree_exits_no_workdir(tmp_path: Path) -> None:
    """A tree that is not there is the workdir problem every host script reports the same way."""
    done = subprocess.run(slot_tree(str(tmp_path / "gone"), str(tmp_path / "slot")),
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert done.returncode == NO_WORKDIR
    assert "no directory" in done.stderr
