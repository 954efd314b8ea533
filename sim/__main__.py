"""`python -m workyard.sim SCENARIO [--seed N] [--out DIR] [--compare]`."""

import sys

from ._cli import main

sys.exit(main())
