"""``python -m optlab`` works like the ``optlab`` command."""

import sys

from optlab._console import main

sys.exit(main())
