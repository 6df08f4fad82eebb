"""Host-side tree helpers: the shipped git repository, and private trees for concurrent builds.

Both are scripts in scripts/ (`git-answers.sh`, `slot-tree.sh`), run as `sh -c SCRIPT NAME
ARGS...` with values passed only as positional arguments.
"""

from __future__ import annotations

from kdist.remote.hostside import host_script

GIT_ANSWERS_SCRIPT = host_script("git-answers.sh")
SLOT_TREE_SCRIPT = host_script("slot-tree.sh")


def git_answers(tree: str, *, install: bool) -> list[str]:
    """Make the shipped repository the tree's .git (install), or remove both (not install)."""
    return ["sh", "-c", GIT_ANSWERS_SCRIPT, "kdist-git", tree, "install" if install else "remove"]


def slot_tree(tree: str, slot: str) -> list[str]:
    """Make or refresh the private tree `slot`: hard links to `tree`, nothing a build left there."""
    return ["sh", "-c", SLOT_TREE_SCRIPT, "kdist-slot", tree, slot]
