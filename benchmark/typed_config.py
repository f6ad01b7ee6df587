"""Type-checked configuration: coerce a mapping (a scenario card's block, ``--set`` overrides) onto a
``Config`` dataclass's annotations, refusing wrong types and unknown keys with one-line messages.

Only strings are converted (YAML 1.1 reads ``1e-5`` as the string ``"1e-5"``; ``--set steps=4`` may arrive
as ``"4"``); a value that already has an acceptable type is returned unchanged, so a config built from a
valid card is the same as before (records compare ``dataclasses.asdict(config)`` to decide reuse). The
exceptions: lists become the declared container (``tuple[float, ...]`` gets a tuple, ``list[...]`` a
list) and an integral float given for an ``int`` (``4.0``) becomes that ``int``.

Handled annotations: ``int``, ``float``, ``bool``, ``str``, ``None``, ``X | None`` / ``Optional[X]`` and
other unions, ``Literal[...]``, ``tuple[X, ...]``, ``tuple[X, Y]``, ``list[X]``, ``dict[K, V]`` and the
bare containers; ``Any`` and anything else pass through unchecked.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import numbers
import sys
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, Union

from benchmark import UnlearnbenchError

__all__ = ["ConfigError", "coerce_config", "coerce_field", "config_hints", "describe"]

_TRUE = frozenset({"true", "yes", "on", "y"})
_FALSE = frozenset({"false", "no", "off", "n"})
_NULL = frozenset({"none", "null", "~"})


class ConfigError(UnlearnbenchError, ValueError):
    """A config value of the wrong type or an unknown config key (a ``ValueError`` too, for old callers)."""


class _Mismatch(Exception):
    def __init__(self, where: str, expected: str, value: Any):
        super().__init__(where)
        self.where, self.expected, self.value = where, expected, value


def _show(value: Any, limit: int = 80) -> str:
    text = repr(value).replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -- describing annotations ------------------------------------------------------------------------------

_NAMES = {
    int: ("an integer", "integers"),
    float: ("a float", "floats"),
    bool: ("a boolean (true/false)", "booleans"),
    str: ("a string", "strings"),
    type(None): ("null", "nulls"),
    dict: ("a mapping", "mappings"),
    list: ("a list", "lists"),
    tuple: ("a list", "lists"),
}


def _is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) is Union or isinstance(annotation, types.UnionType)


def describe(annotation: Any, plural: bool = False) -> str:
    """What a value of ``annotation`` is, in words: ``a float``, ``an integer or null``, ``one of 'a', 'b'``."""
    if annotation in _NAMES:
        return _NAMES[annotation][plural]
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if _is_union(annotation):
        return " or ".join(describe(a, plural) for a in args)
    if origin is Literal:
        return ("values in " if plural else "one of ") + ", ".join(repr(a) for a in args)
    if origin in (tuple, list):
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            head = f"lists of {len(args)}" if plural else f"a list of {len(args)}"
            return f"{head} ({', '.join(describe(a) for a in args)})"
        item = args[0] if args else Any
        if item is Any:
            return "lists" if plural else "a list"
        return f"lists of {describe(item, True)}" if plural else f"a list of {describe(item, True)}"
    if origin is dict or annotation is dict:
        return "mappings" if plural else "a mapping"
    name = getattr(annotation, "__name__", None) or str(annotation)
    return f"{name} values" if plural else f"a {name}"


# -- coercion --------------------------------------------------------------------------------------------


def _to_int(value: Any, where: str, annotation: Any) -> int:
    if isinstance(value, bool):
        raise _Mismatch(where, describe(annotation), value)
    if isinstance(value, numbers.Integral):
        return value  # type: ignore[return-value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            pass
        try:
            number = float(text)
        except ValueError:
            number = math.nan
        if math.isfinite(number) and number.is_integer():
            return int(number)
    raise _Mismatch(where, describe(annotation), value)


def _to_float(value: Any, where: str, annotation: Any) -> Any:
    if isinstance(value, bool):
        raise _Mismatch(where, describe(annotation), value)
    if isinstance(value, numbers.Real):
        return value  # an int stays an int: the stored configs of existing records must not change
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            pass
    raise _Mismatch(where, describe(annotation), value)


def _to_bool(value: Any, where: str, annotation: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise _Mismatch(where, describe(annotation), value)


def _exact(value: Any, annotation: Any) -> bool:
    """``value`` already has type ``annotation`` (no conversion needed); only for the scalar types."""
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    if annotation is type(None):
        return value is None
    return False


def _sequence(value: Any, where: str, annotation: Any, origin: type, args: tuple[Any, ...]) -> Any:
    if not isinstance(value, (list, tuple)):
        raise _Mismatch(where, describe(annotation), value)
    if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
        if len(value) != len(args):
            raise _Mismatch(where, describe(annotation), value)
        items = [_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args))]
    else:
        item = args[0] if args else Any
        items = [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    return tuple(items) if origin is tuple else list(items)


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    if annotation is Any or annotation is object:
        return value
    if annotation is None or annotation is type(None):
        if value is None or (isinstance(value, str) and value.strip().lower() in _NULL):
            return None
        raise _Mismatch(where, "null", value)
    if annotation is bool:
        return _to_bool(value, where, annotation)
    if annotation is int:
        return _to_int(value, where, annotation)
    if annotation is float:
        return _to_float(value, where, annotation)
    if annotation is str:
        if isinstance(value, str):
            return value
        raise _Mismatch(where, describe(annotation), value)
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if _is_union(annotation):
        for member in args:  # a value that already fits a member is kept as it is ...
            if _exact(value, member):
                return value
        for member in args:  # ... else the first member that converts it wins
            try:
                return _coerce(value, member, where)
            except _Mismatch:
                continue
        raise _Mismatch(where, describe(annotation), value)
    if origin is Literal:
        for option in args:
            if value == option and type(value) is type(option):
                return value
        if isinstance(value, str):
            for option in args:
                if isinstance(option, (bool, int, float)):
                    try:
                        if _coerce(value, type(option), where) == option:
                            return option
                    except _Mismatch:
                        continue
        raise _Mismatch(where, describe(annotation), value)
    if origin in (tuple, list) or annotation in (tuple, list):
        return _sequence(value, where, annotation, origin or annotation, args)
    if origin is dict or annotation is dict:
        if not isinstance(value, Mapping):
            raise _Mismatch(where, describe(annotation), value)
        if not args:
            return value
        key_type, value_type = args
        return {
            _coerce(k, key_type, f"{where} key {k!r}"): _coerce(v, value_type, f"{where}[{k!r}]")
            for k, v in value.items()
        }
    return value  # an annotation this module does not know: unchecked


def coerce_field(owner: str, key: str, value: Any, annotation: Any, expected: str | None = None) -> Any:
    """``value`` checked against (and, for strings, converted to) ``annotation``.

    Raises ``ConfigError`` with one line: ``"{owner}: {key} must be {expected}, got {value!r}"`` (the
    offending item's index is appended to ``key`` inside lists). ``expected`` overrides the description
    of the whole value's type (e.g. ``"a number"``).
    """
    try:
        return _coerce(value, annotation, key)
    except _Mismatch as exc:
        what = expected if expected is not None and exc.where == key else exc.expected
        raise ConfigError(f"{owner}: {exc.where} must be {what}, got {_show(exc.value)}") from None


@functools.cache
def config_hints(config_type: type) -> dict[str, Any]:
    """Resolved annotations of the dataclass ``config_type``'s init fields (``Any`` where unresolvable)."""
    try:
        hints = typing.get_type_hints(config_type)
    except Exception:  # a name only importable under TYPE_CHECKING, say: check what resolves
        hints = {}
        for klass in reversed(config_type.__mro__):
            module = sys.modules.get(klass.__module__)
            for name, ann in vars(klass).get("__annotations__", {}).items():
                if isinstance(ann, str):
                    try:
                        ann = eval(ann, dict(vars(module)) if module else {}, dict(vars(klass)))
                    except Exception:
                        ann = Any
                hints[name] = ann
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(config_type) if f.init}


def coerce_config(owner: str, config_type: type, values: Mapping[str, Any] | None) -> dict[str, Any]:
    """``values`` checked key by key against the dataclass ``config_type``: a new dict to pass as
    ``config_type(**result)``. Unknown keys raise ``ConfigError`` listing the known ones (with the
    nearest as a did-you-mean); wrong types raise as in ``coerce_field``."""
    hints = config_hints(config_type)
    values = dict(values or {})
    unknown = [k for k in values if k not in hints]
    if unknown:
        bad = sorted(map(str, unknown))
        close = [c for k in bad for c in difflib.get_close_matches(k, list(hints), n=1, cutoff=0.6)]
        hint = f" (did you mean {', '.join(repr(c) for c in dict.fromkeys(close))}?)" if close else ""
        label = "option" if len(bad) == 1 else "options"
        raise ConfigError(
            f"{owner}: unknown {label} {', '.join(repr(k) for k in bad)}{hint}; "
            f"known: {', '.join(sorted(hints)) or 'none'}"
        )
    return {k: coerce_field(owner, k, v, hints[k]) for k, v in values.items()}
