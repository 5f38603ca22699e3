"""The ``optlab`` console script and ``python -m optlab``: the command line, loaded so that a
Ctrl-C while it loads ends the process quietly.

Loading the command line (typer, click, rich, optlab's own modules) takes a fraction of a
second, before :func:`optlab._cli.main` can install its handler. A Ctrl-C then raised
:class:`KeyboardInterrupt` inside some import and printed its traceback. Nothing has started
at that point, so SIGINT keeps the default action while the command line loads: the process
ends by the signal, as it does after any Ctrl-C of ``optlab``, and says nothing. (SIGINT
ignored by the parent, as for a shell's background job, stays ignored.)
"""

from __future__ import annotations

import signal

__all__ = ["main"]


def main() -> int:
    """Load the command line and run it (:func:`optlab._cli.main`); its exit status."""
    quiet = signal.getsignal(signal.SIGINT) is signal.default_int_handler
    if quiet:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
    try:
        from optlab._cli import main as command
    finally:  # Python's handler back, unless an import installed one of its own
        if quiet and signal.getsignal(signal.SIGINT) == signal.SIG_DFL:
            signal.signal(signal.SIGINT, signal.default_int_handler)
    return command()
