"""User-facing errors.

Every problem a user can cause (a bad file, a bad flag) is raised as an :class:`LtaugError`
whose message is one line naming the file, image id or annotation id and what is wrong.
The CLI prints that line and exits non-zero; it never shows a traceback for these.
"""
from __future__ import annotations


class LtaugError(Exception):
    """Base class: a one-line message meant for the user. ``exit_code`` is the CLI's status."""

    exit_code = 1


class InputError(LtaugError):
    """An input file or folder is missing, unreadable or invalid."""


class UsageError(LtaugError):
    """The command was called wrongly (bad flag value, output over input, ...)."""

    exit_code = 2
