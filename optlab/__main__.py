"""``python -m optlab`` works like the ``optlab`` command."""

import sys

from optlab._cli import main

sys.exit(main())
