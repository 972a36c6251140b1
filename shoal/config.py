"""TOML configuration with typed, documented defaults.

Public: :func:`option`, :func:`load`, :func:`read_toml`, :func:`from_mapping`,
:func:`render_defaults`, :class:`ConfigError`.

Every daemon describes its configuration as a frozen dataclass whose fields are declared with
:func:`option` (a default and one line of documentation). :func:`load` reads a TOML file (or a
table of it), rejects unknown keys and values of the wrong type with a :class:`ConfigError` that
names the option and the value, and returns the dataclass. A bad value is therefore a one-line
error at start-up, never a traceback in the middle of a request.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """The configuration is wrong; the message names the option and the value."""


def option(default: Any, doc: str, *, check: typing.Callable[[Any], bool] | None = None) -> Any:
    """Declare a config field with its default, its documentation and an optional check."""
    if isinstance(default, list | dict):
        value = default
        return dataclasses.field(
            default_factory=lambda: type(value)(value), metadata={"doc": doc, "check": check}
        )
    return dataclasses.field(default=default, metadata={"doc": doc, "check": check})


def _coerce(name: str, value: Any, annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        errors = []
        for arm in typing.get_args(annotation):
            if arm is type(None):
                if value is None:
                    return None
                continue
            try:
                return _coerce(name, value, arm)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{name}: bad value {value!r}")
    if origin is list:
        (item_type,) = typing.get_args(annotation) or (Any,)
        if not isinstance(value, list):
            raise ConfigError(f"option {name!r}: expected a list, got {value!r}")
        return [_coerce(f"{name}[]", item, item_type) for item in value]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"option {name!r}: expected a table, got {value!r}")
        return dict(value)
    if annotation is Any:
        return value
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation is Path and isinstance(value, str):
        return Path(value)
    if annotation is bool and not isinstance(value, bool):
        raise ConfigError(f"option {name!r}: expected true or false, got {value!r}")
    if annotation is int and isinstance(value, bool):
        raise ConfigError(f"option {name!r}: expected an integer, got {value!r}")
    if isinstance(annotation, type) and not isinstance(value, annotation):
        raise ConfigError(f"option {name!r}: expected {annotation.__name__}, got {value!r}")
    return value


def from_mapping(cls: type[T], data: dict[str, Any], *, where: str = "") -> T:
    """Build the dataclass ``cls`` from a mapping, validating every key and value."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    prefix = f"{where}." if where else ""
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise ConfigError(f"unknown option {prefix}{key!r} (known: {known})")
        coerced = _coerce(prefix + key, value, hints[key])
        check = fields[key].metadata.get("check")
        if check is not None and not check(coerced):
            doc = fields[key].metadata.get("doc", "")
            raise ConfigError(f"option {prefix}{key!r}: bad value {value!r} ({doc})")
        kwargs[key] = coerced
    return cls(**kwargs)


def read_toml(path: str | Path) -> dict[str, Any]:
    """The TOML document at ``path``; a missing, unreadable or invalid file is a ConfigError."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"config file {str(path)!r} cannot be read: {exc.strerror}") from None


def load(cls: type[T], path: str | Path | None, *, table: str | None = None) -> T:
    """Load ``cls`` from the TOML file ``path`` (defaults only when ``path`` is None).

    Raises:
        ConfigError: the file is missing or unreadable, is not TOML, or has a bad option.
    """
    if path is None:
        return cls()
    data = read_toml(path)
    if table is not None:
        data = data.get(table, {})
        if not isinstance(data, dict):
            raise ConfigError(f"config file {str(path)!r}: [{table}] must be a table")
    return from_mapping(cls, data, where=table or "")


def render_defaults(cls: type, *, table: str | None = None) -> str:
    """Return a TOML document listing every option of ``cls`` with its default and its doc."""
    lines = [f"[{table}]"] if table else []
    for f in dataclasses.fields(cls):
        lines.append(f"# {f.metadata.get('doc', '')}")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        lines.append(f"{f.name} = {_toml_value(default)}")
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | Path):
        return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        inner = ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items())
        return "{" + inner + "}"
    if value is None:
        return '""'
    return repr(value)
