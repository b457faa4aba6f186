"""Progress for long commands: lines on stderr, so that stdout stays the result."""

from __future__ import annotations

import sys


def stderr_progress(quiet: bool):
    """Progress lines for long commands: on stderr, so stdout stays the result; none with --quiet."""
    def progress(message: str) -> None:
        if not quiet:
            print(message, file=sys.stderr, flush=True)
    return progress
