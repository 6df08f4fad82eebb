"""`python -m kdist`: the same as the `kdist` console script."""

from kdist.cli.main import entry

entry()
