"""Command-line flags generated from the config dataclasses: one `--flag` per setting, with its help.

A flag defaults to None, "not given", so that only what the user typed overrides a profile, a YAML file or
the dataclass's defaults; `given` collects those values nested like the dataclass.
"""
from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any

from .config import base_type, typed_fields


def flag(path: str) -> str:
    """The flag of a setting: `--voxel-size` for 'meshing.voxel_size' (nested settings are unprefixed)."""
    return "--" + path.rsplit(".", 1)[-1].replace("_", "-")


def add_flags(parser: argparse.ArgumentParser, cls: type, defaults: Any = None, skip: tuple[str, ...] = (),
              group: Any = None) -> None:
    """One flag per field of the dataclass `cls`, the fields of a nested dataclass in a group of their own.
    With `defaults` (an instance), the help says each default."""
    container = group or parser
    for item, kind in typed_fields(cls):
        default = getattr(defaults, item.name) if defaults is not None else None
        if item.name in skip:
            continue
        if dataclasses.is_dataclass(kind):
            add_flags(parser, kind, default, skip, parser.add_argument_group(item.name))
            continue
        text = item.metadata.get("help", "")
        if defaults is not None:
            text = f"{text} (default: {default})" if text else f"default: {default}"
        container.add_argument(flag(item.name), dest=item.name, default=None, help=text,
                               **_value_options(base_type(kind), item.metadata.get("choices")))


def _value_options(kind: Any, choices: tuple | None) -> dict[str, Any]:
    if kind is bool:
        return {"action": argparse.BooleanOptionalAction}
    if typing.get_origin(kind) is tuple:
        types = typing.get_args(kind)
        if types[-1] is Ellipsis:
            return {"type": types[0], "nargs": "+", "metavar": types[0].__name__.upper()}
        return {"type": types[0], "nargs": len(types), "metavar": tuple(t.__name__.upper() for t in types)}
    if typing.get_origin(kind) is typing.Literal:
        return {"choices": typing.get_args(kind)}
    return {"type": kind, **({"choices": choices} if choices else {})}


def given(args: argparse.Namespace, cls: type, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """The values of the flags of `cls` that were given, nested like the dataclass ({'model': {...}})."""
    values: dict[str, Any] = {}
    for item, kind in typed_fields(cls):
        if item.name in skip:
            continue
        if dataclasses.is_dataclass(kind):
            nested = given(args, kind, skip)
            if nested:
                values[item.name] = nested
        elif getattr(args, item.name, None) is not None:
            value = getattr(args, item.name)
            values[item.name] = tuple(value) if isinstance(value, list) else value
    return values
