"""``python -m optlab`` works like the ``optlab`` command."""

from optlab.cli import main

main()
