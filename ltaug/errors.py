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


class SpecError(UsageError, ValueError):
    """A parameter of an operation (or another declared option) has a value it does not take.

    ``field``: the parameter's name as the Python API and the YAML file spell it (``max_overlap``);
    Also a ``ValueError``, as albumentations' transforms raise for a bad parameter.
    ``detail``: what is wrong (``must lie in [0, 1], got 1.5``); ``owner``: the operation (``paste``).
    The message reads ``paste: max_overlap must be in [0, 1], got 1.5``; the command line names
    the flag instead (``--max-overlap must be in [0, 1], got 1.5``).
    """

    def __init__(self, field: str, detail: str, owner: str | None = None) -> None:
        self.field, self.detail, self.owner = field, detail, owner
        super().__init__(f"{owner + ': ' if owner else ''}{field} {detail}")
