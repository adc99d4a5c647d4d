"""A parameter declared once: default, type, allowed values, help (:class:`Param`).

The operations (:mod:`ltaug.ops`) declare their parameters with it, and so does what they share
with other commands (the planner's target, :data:`ltaug.rebalance.planning.TARGET_FIELDS`): the
validation, the messages and the command-line help come from the one declaration.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, overload

from ltaug.errors import SpecError


@dataclass(frozen=True)
class Param:
    """One parameter: its default, help text, type and allowed values.

    ``type``: ``int``, ``float``, ``str`` or ``bool`` (of each element when ``nargs`` is set;
    taken from the default when not given). ``optional``: None is allowed (and is the default's
    meaning: "derived", said in ``help``). ``choices``: allowed values. ``low`` / ``high``: an
    inclusive range; ``above``: an exclusive lower bound. ``nargs``: a fixed-length tuple (``2``)
    or a list (``"*"``). ``fields``: a mapping of named sub-parameters, each its own flag (a
    budget's ``min_instances``, ...). ``required``: no default. ``flag``: the command-line
    flag when it is not the name (``--lambda`` for ``lam``; for a true-by-default switch, the
    flag that turns it off). ``metavar`` and ``group`` shape ``--help``.
    """

    default: Any
    help: str
    type: Callable | None = None
    optional: bool = False
    choices: tuple | None = None
    low: float | None = None
    high: float | None = None
    above: float | None = None
    nargs: int | str | None = None
    fields: Mapping[str, Param] | None = None
    required: bool = False
    flag: str | None = None
    metavar: str | tuple | None = None
    group: str | None = None
    name: str = field(default="", compare=False)

    def __set_name__(self, owner: object, name: str) -> None:
        object.__setattr__(self, "name", name)

    if TYPE_CHECKING:
        # For type checkers only (nothing changes at run time): on the class, a parameter is
        # its Param; on an operation, it reads as the validated value that __init__ stored.
        @overload
        def __get__(self, obj: None, owner: Any = None) -> Param: ...
        @overload
        def __get__(self, obj: object, owner: Any = None) -> Any: ...
        def __get__(self, obj: object, owner: Any = None) -> Any: ...

    @property
    def kind(self) -> Callable:
        if self.type is not None:
            return self.type
        sample = self.default[0] if self.nargs is not None and self.default else self.default
        return type(sample) if sample is not None else str

    # -- validation ------------------------------------------------------------------------

    def validate(self, value: Any) -> Any:
        """The value as stored (tuples for fixed-length, dicts for fields), or SpecError."""
        if value is None and self.required:
            raise SpecError(self.name, "is required" + (f" (one of {', '.join(self.choices)})" if self.choices else ""))
        if value is None and (self.optional or (self.fields is not None)):
            return {} if self.fields is not None else None
        if self.fields is not None:
            return self._validate_fields(value)
        if self.nargs is not None:
            if isinstance(value, str | bytes) or not isinstance(value, Iterable):
                raise SpecError(self.name, f"must be a list{self._length()}, got {value!r}")
            items = tuple(self._scalar(v, value) for v in value)
            if isinstance(self.nargs, int) and len(items) != self.nargs:
                raise SpecError(self.name, f"must be a list{self._length()}, got {list(value)!r}")
            return items
        return self._scalar(value, value)

    def _length(self) -> str:
        return f" of {self.nargs} values" if isinstance(self.nargs, int) else ""

    def _scalar(self, v: Any, shown: Any) -> Any:
        kind = self.kind
        if kind is bool:
            if not isinstance(v, bool):
                raise SpecError(self.name, f"must be true or false, got {shown!r}")
        elif kind is int:
            if isinstance(v, bool) or not isinstance(v, int):
                raise SpecError(self.name, f"must be an integer, got {shown!r}")
        elif kind is float:
            if isinstance(v, bool) or not isinstance(v, int | float) or math.isnan(v):
                raise SpecError(self.name, f"must be a number, got {shown!r}")
        elif kind is str and not isinstance(v, str):
            raise SpecError(self.name, f"must be a string, got {shown!r}")
        if self.choices is not None and v not in self.choices:
            raise SpecError(self.name, f"must be one of {', '.join(map(str, self.choices))}, got {v!r}")
        if (self.low is not None and v < self.low) or (self.high is not None and v > self.high) or \
                (self.above is not None and not v > self.above):
            raise SpecError(self.name, f"must be {self.range_text()}, got {shown!r}")
        return v

    def _validate_fields(self, value: Any) -> dict:
        fields = self.fields
        assert fields is not None  # validate() calls this only for a Param with fields
        if not isinstance(value, Mapping):
            raise SpecError(self.name, f"must be a mapping with keys {', '.join(fields)}, got {value!r}")
        unknown = sorted(set(value) - set(fields))
        if unknown:
            raise SpecError(self.name, f"has unknown key(s) {', '.join(map(str, unknown))} "
                                       f"(known: {', '.join(fields)})")
        out = {}
        for k, v in value.items():
            if v is not None:
                try:
                    out[k] = fields[k].validate(v)
                except SpecError as exc:
                    raise SpecError(k, exc.detail) from None
        return out

    def range_text(self) -> str:
        """The allowed range in words: ``>= 1``, ``in [0, 1]``, ``> 0``."""
        if self.above is not None:
            return f"> {self.above:g}" + (f" and <= {self.high:g}" if self.high is not None else "")
        if self.low is not None and self.high is not None:
            return f"in [{self.low:g}, {self.high:g}]"
        if self.low is not None:
            return f">= {self.low:g}"
        if self.high is not None:
            return f"<= {self.high:g}"
        return ""

    def record(self, value: Any) -> Any:
        """The value as JSON records it."""
        return list(value) if isinstance(value, tuple) else dict(value) if isinstance(value, Mapping) else value

    def help_text(self) -> str:
        """``help`` with the default and the allowed range, as ``--help`` shows them."""
        notes = "; ".join(n for n in (self._default_text(), self.range_text()) if n)
        if not notes:
            return self.help
        return f"{self.help[:-1]}; {notes})" if self.help.endswith(")") else f"{self.help} ({notes})"

    def _default_text(self) -> str:
        if self.default is None or self.default == {} or isinstance(self.default, bool):
            return ""
        shown = " ".join(map(str, self.default)) if isinstance(self.default, tuple | list) else str(self.default)
        return f"default {shown}"
