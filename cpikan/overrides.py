"""Dotted ``key=value`` overrides as text: splitting, parsing, coercion to a field's type, and
the inverse, `format_value`: the text ``--set key=<text>`` accepts for a value.

Generic: nothing here knows the RunConfig schema. Coercion fails with a ValueError or TypeError
stating the reason; `cpikan.config` turns it into a ConfigError that names the key.
"""

from __future__ import annotations

import ast
import json
import shlex
import types
import typing
from typing import Any, Mapping

NONE_WORDS = ("none", "null", "off")  # what an optional field reads as None


def split(item: Any) -> tuple[str, str]:
    """``"train.grad_clip = 1.0"`` -> ``("train.grad_clip", "1.0")``; ValueError for anything but
    a string with a ``=``."""
    if not isinstance(item, str) or "=" not in item:
        raise ValueError(f"override {item!r} is not 'key=value' (e.g. 'train.grad_clip=1.0')")
    key, _, value = item.partition("=")
    return key.strip(), value.strip()


def parse_literal(text: str) -> Any:
    """JSON, else a Python literal, else the text itself: ``"[8, 8]"`` -> [8, 8], ``"abc"`` -> "abc"."""
    for parse in (json.loads, ast.literal_eval):
        try:
            return parse(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
    return text


def is_optional(hint: Any) -> bool:
    """True for ``X | None`` (and ``Optional[X]``)."""
    origin = typing.get_origin(hint)
    return origin in (typing.Union, types.UnionType) and type(None) in typing.get_args(hint)


def coerce(hint: Any, value: Any) -> Any:
    """`value` (text as typed, or a Python value) as type `hint`: bool, int, float, str,
    ``tuple[T, ...]``, dict, or an optional of one of those, which also reads None and the
    words in `NONE_WORDS`. Raises ValueError or TypeError with the reason."""
    if is_optional(hint):
        if value is None or (isinstance(value, str) and value.lower() in NONE_WORDS):
            return None
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if hint is bool:
        return _boolean(value)
    if hint is int:
        number = parse_literal(value) if isinstance(value, str) else value
        if isinstance(number, bool) or not isinstance(number, (int, float)) or int(number) != number:
            raise ValueError("not an integer")
        return int(number)
    if hint is float:
        number = parse_literal(value) if isinstance(value, str) else value
        if isinstance(number, bool) or not isinstance(number, (int, float)):
            raise ValueError("not a number")
        return float(number)
    if hint is str:
        if not isinstance(value, str):
            raise TypeError("not a string")
        return value
    if typing.get_origin(hint) is tuple:
        items = parse_literal(value) if isinstance(value, str) else value
        if isinstance(items, (int, float)):
            items = [items]
        if isinstance(items, str):
            items = [parse_literal(part) for part in items.split(",")]
        return tuple(coerce(typing.get_args(hint)[0], item) for item in items)
    if hint is dict or typing.get_origin(hint) is dict:
        data = parse_literal(value) if isinstance(value, str) else value
        if not isinstance(data, Mapping):
            raise TypeError("not a mapping")
        return dict(data)
    raise TypeError(f"unsupported field type {hint}")


def _boolean(value: Any) -> bool:
    if isinstance(value, str):
        if value.lower() in ("true", "1", "yes", "on"):
            return True
        if value.lower() in ("false", "0", "no", "off"):
            return False
        raise ValueError("not a boolean")
    if not isinstance(value, (bool, int)):
        raise TypeError("not a boolean")
    return bool(value)


def format_value(value: Any) -> str:
    """The text that `coerce` reads back as `value`, for a field of the value's type:
    None -> ``none``, True -> ``true``, 0.5 -> ``0.5``, (8, 8) -> ``[8, 8]``,
    {"count": 4} -> ``{"count": 4}`` (JSON); a string as it is."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list, dict)):
        return json.dumps(value)
    if isinstance(value, float):
        return repr(float(value))  # the shortest text that reads back as the same float
    return str(value)


def set_arguments(values: Mapping[str, Any]) -> str:
    """``--set key=<text>`` for each item, quoted for a POSIX shell:
    ``{"train.grad_clip": 1.0}`` -> ``--set train.grad_clip=1.0``."""
    return " ".join(f"--set {shlex.quote(f'{key}={format_value(value)}')}" for key, value in values.items())
