"""Test support shipped with kdist, never used by a run: fakes, the sshd dev farm, dockerd."""
