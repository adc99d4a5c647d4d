"""A parameter declared once: default, type, allowed values, help (:class:`Param`).

The operations (:mod:`ltaug.ops`) declare their parameters with it, and so does what they share
with other commands (the planner's target, :data:`ltaug.rebalance.planning.TARGET_FIELDS`): the
validation, the messages and the command-line help come from the one declaration.
"""
from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, NoReturn, TypeVar, overload

from ltaug.errors import SpecError

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self from Python 3.11


@dataclass(frozen=True)
class Param:
    """One parameter: its default, help text, type and allowed values.

    ``type``: ``int``, ``float``, ``str`` or ``bool`` (of each element when ``nargs`` is set;
    taken from the default when not given). ``optional``: None is allowed (and is the default's
    meaning: "derived", said in ``help``). ``choices``: allowed values, or a function giving them
    (a registry's names: what is registered when the value is checked). ``low`` / ``high``: an
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
    choices: tuple | Callable[[], Iterable] | None = None
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

    def allowed(self) -> tuple | None:
        """The allowed values (``choices``, called when it is a function), or None for any."""
        if self.choices is None or isinstance(self.choices, tuple):
            return self.choices
        return tuple(self.choices())

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
            allowed = self.allowed()
            raise SpecError(self.name, "is required" + (f" (one of {', '.join(map(str, allowed))})" if allowed else ""))
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
        allowed = self.allowed()
        if allowed is not None and v not in allowed:
            raise SpecError(self.name, f"must be one of {', '.join(map(str, allowed))}, got {v!r}")
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
        if self.help.endswith(")"):  # a closing remark in brackets takes the notes: "(default: all; >= 1)"
            opening = self.help.rfind("(")
            if opening > 0 and self.help[opening - 1] == " " and ")" not in self.help[opening:-1]:
                return f"{self.help[:-1]}; {notes})"
        return f"{self.help} ({notes})"

    def _default_text(self) -> str:
        if self.default is None or self.default == {} or isinstance(self.default, bool):
            return ""
        shown = " ".join(map(str, self.default)) if isinstance(self.default, tuple | list) else str(self.default)
        return f"default {shown}"


T = TypeVar("T", bound=type)


class Declared:
    """A set of validated parameter values, declared as :class:`Param` class attributes
    (immutable once made). The base of operations (:class:`ltaug.ops.Operation`) and of resample
    methods (:class:`ltaug.rebalance.methods.ResampleMethod`).

    ``name`` prefixes its error messages. :meth:`declared` gives the parameters (own ones first,
    then those of its base classes); a subclass whose parameters depend on others (``resample``:
    those of every registered method) overrides it. :meth:`check` adds rules across parameters.
    """

    name: ClassVar[str] = ""
    parameters: ClassVar[dict[str, Param]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own: dict[str, Param] = {}
        inherited: dict[str, Param] = {}
        for klass in reversed(cls.__mro__):
            for key, value in vars(klass).items():
                if isinstance(value, Param):
                    (own if klass is cls else inherited)[key] = value
        inherited = {k: v for k, v in inherited.items() if k not in own}
        cls.parameters = {**own, **inherited}
        # help(), inspect and the API reference show the declared parameters, not **values
        cls.__signature__ = inspect.Signature([  # type: ignore[attr-defined]
            inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY,
                              default=inspect.Parameter.empty if p.required else p.default)
            for k, p in cls.declared().items()])

    @classmethod
    def declared(cls) -> dict[str, Param]:
        """The parameters, by name, in declaration order."""
        return cls.parameters

    def __init__(self, **values: Any) -> None:
        declared = self.declared()
        unknown = sorted(set(values) - set(declared))
        if unknown:
            raise SpecError(unknown[0], f"is not a parameter (known: {', '.join(declared)})", self.name)
        for key, p in declared.items():
            try:
                object.__setattr__(self, key, p.validate(values.get(key, p.default)))
            except SpecError as exc:
                raise SpecError(exc.field, exc.detail, self.name) from None
        try:
            self.check()
        except SpecError as exc:
            raise SpecError(exc.field, exc.detail, self.name) from None

    def check(self) -> None:
        """Rules across parameters; raise :class:`SpecError` naming the parameter to change."""

    def __setattr__(self, key: str, value: Any) -> NoReturn:
        raise AttributeError(f"{type(self).__name__} is immutable: use .replace({key}=...)")

    def values(self) -> dict[str, Any]:
        """Every parameter's value, as validated."""
        return {k: getattr(self, k) for k in self.declared()}

    def replace(self, **changes: Any) -> Self:
        """A copy with some parameters changed (validated again)."""
        return type(self)(**{**self.values(), **changes})

    def params(self) -> dict:
        """Every parameter's value, as JSON (``run.json``, provenance) records it."""
        declared = self.declared()
        return {k: declared[k].record(v) for k, v in self.values().items()}

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and isinstance(other, Declared) and other.params() == self.params()

    __hash__ = None  # type: ignore[assignment]  # unhashable on purpose (equal by value; typeshed does the same)

    def __repr__(self) -> str:
        changed = [f"{k}={v!r}" for (k, v), p in zip(self.values().items(), self.declared().values())
                   if v != p.validate(p.default)]
        return f"{type(self).__name__}({', '.join(changed)})"

    def __reduce__(self) -> tuple[Callable[..., Declared], tuple[type[Declared], dict]]:
        return _rebuild, (type(self), self.values())


def _rebuild(cls: type[Declared], values: dict) -> Declared:
    return cls(**values)


class Registry(Generic[T]):
    """Classes by name (their ``name``), in registration order. :meth:`register` is a class
    decorator; ``what`` names the kind in messages (``operation``, ``resample method``)."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._items: dict[str, T] = {}

    def register(self, cls: T) -> T:
        name = getattr(cls, "name", "")
        if not name:
            raise TypeError(f"{cls.__name__} has no name")
        if self._items.get(name, cls) is not cls:
            raise TypeError(f"{self.what} {name!r} is registered already ({self._items[name].__name__})")
        self._items[name] = cls
        return cls

    def unregister(self, name: str) -> None:
        self._items.pop(name, None)

    def get(self, name: str) -> T:
        if name not in self._items:
            raise SpecError(str(name), f"is not a known {self.what} (known: {', '.join(self._items)})")
        return self._items[name]

    def names(self) -> list[str]:
        return list(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[T]:
        return iter(self._items.values())
