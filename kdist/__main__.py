"""`python -m kdist`: the same as the `kdist` console script."""

import sys

from kdist.cli.main import main

sys.exit(main())
