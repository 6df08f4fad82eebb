"""Test support shipped with kdist: fakes, the local sshd farm, a private Docker daemon."""
