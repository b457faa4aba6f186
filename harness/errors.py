"""The exit codes every ``alexbench`` command shares, and the error that means "bad input".

A ``UsageError`` is printed as one line and exits ``ExitCode.USAGE``; nothing else in the
harness decides an exit code.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0  # success; for compare: every backend within tolerance
    MISMATCH = 1  # a numeric, shape or parameter-count mismatch (wins over BACKEND when both happen)
    USAGE = 2  # usage error, or an invalid spec, weights or input file
    BACKEND = 3  # a backend failed to build, export or run, or its framework is missing; compare: nothing checked
    INTERRUPTED = 130  # Ctrl-C; every worker is stopped


EXIT_CODES_HELP = """exit codes:
  0    success (compare: every backend within tolerance)
  1    a numeric, shape or parameter-count mismatch
  2    usage error, or an invalid spec, weights or input file
  3    a backend failed to build, export or run (a missing framework included);
       compare: also when no backend was compared with the reference (nothing was checked)
  130  interrupted"""


class UsageError(Exception):
    """Bad command-line or API input (what, where, what was received, what would be valid);
    printed as one line, exit code 2."""


class StructureMismatch(Exception):
    """``compare --model ... --spec ...``: the model is not the spec's network. The message is the
    structural diff; exit code ``ExitCode.MISMATCH``."""
