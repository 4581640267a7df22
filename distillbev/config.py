"""Typed configuration: frozen dataclasses filled from YAML files and ``--set a.b=c`` overrides.

A run's config is ``defaults <- YAML files in the order given <- --set overrides``. YAML holds values
only. Unknown keys fail naming the key, the file and the closest valid key; wrong types fail naming
the key. The resolved config is saved next to every output (``dump_config``) and hashed into
checkpoints (``config_hash``).
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

import yaml

from distillbev.io import write_text

T = TypeVar("T")
#: A decimal number in any notation, e.g. ``1e-3``, which YAML 1.1 reads as a string.
_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


class ConfigError(ValueError):
    """A config file or override that does not fit the schema."""


def _closest(key: str, options: list[str]) -> str:
    match = difflib.get_close_matches(key, options, n=1, cutoff=0.5)
    return f" (did you mean {match[0]!r}?)" if match else f" (valid keys: {', '.join(sorted(options))})"


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check/convert ``value`` to the annotated type ``tp``; raise ConfigError naming ``where``."""
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping for {tp.__name__}, got {value!r}")
        return _build(tp, value, where)
    if origin is Literal:
        if value not in get_args(tp):
            raise ConfigError(f"{where}: {value!r} is not one of {list(get_args(tp))}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[-1] if errors else f"{where}: invalid value {value!r}")
    if origin is tuple:
        args = get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
        return tuple(_coerce(v, a, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True)))
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
            value = float(value)  # YAML 1.1 reads 1e-3 (no dot) as a string
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if tp is Any:
        return value
    raise ConfigError(f"{where}: unsupported config type {tp!r}")


def _build(cls: type[T], data: dict[str, Any], where: str) -> T:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            raise ConfigError(f"{where}: unknown key {key!r}{_closest(key, list(fields))}")
        kwargs[key] = _coerce(value, hints[key], f"{where}.{key}" if where else key)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where or cls.__name__}: {e}") from None


def to_dict(cfg: Any) -> Any:
    """A plain (YAML/JSON-ready) dict of a config dataclass."""
    if dataclasses.is_dataclass(cfg):
        return {f.name: to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, (list, tuple)):
        return [to_dict(v) for v in cfg]
    return cfg


def _merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for k, v in update.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def parse_override(text: str) -> dict[str, Any]:
    """``"a.b=3"`` -> ``{"a": {"b": 3}}`` (the value is parsed as YAML)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key.sub=value")
    key, raw = text.split("=", 1)
    value = yaml.safe_load(raw) if raw.strip() else ""
    out: dict[str, Any] = {}
    node = out
    parts = key.strip().split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value
    return out


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; clear errors for a missing or malformed file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    return data


def _check_layer(cls: type, data: dict[str, Any], where: str) -> None:
    """Check the keys and leaf types of one layer without constructing (cross-field checks run once,
    on the fully merged config)."""
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls) if f.init}
    for key, value in data.items():
        if key not in fields:
            raise ConfigError(f"{where}: unknown key {key!r}{_closest(key, list(fields))}")
        tp, path = hints[key], f"{where}.{key}" if where else key
        if dataclasses.is_dataclass(tp) and isinstance(value, dict):
            _check_layer(tp, value, path)
        elif not dataclasses.is_dataclass(tp):
            _coerce(value, tp, path)


def load_config(
    cls: type[T],
    files: list[str | Path] | tuple = (),
    overrides: list[str] | tuple = (),
    base: T | None = None,
) -> T:
    """Build ``cls`` from ``base`` (or its defaults), the YAML ``files`` in order, then ``overrides``."""
    data: dict[str, Any] = to_dict(base) if base is not None else to_dict(_build(cls, {}, ""))
    for f in files:
        layer = read_yaml(f)
        try:
            _check_layer(cls, layer, "")
        except ConfigError as e:
            raise ConfigError(f"{f}: {e}") from None
        data = _merge(data, layer)
    for o in overrides:
        layer = parse_override(o)
        try:
            _check_layer(cls, layer, "")
        except ConfigError as e:
            raise ConfigError(f"--set {o}: {e}") from None
        data = _merge(data, layer)
    sources = ", ".join([str(f) for f in files] + [f"--set {o}" for o in overrides]) or "defaults"
    try:
        return _build(cls, data, "")
    except ConfigError as e:
        raise ConfigError(f"{e} (from {sources})") from None


def config_from_dict(cls: type[T], data: dict[str, Any], source: str = "") -> T:
    """Build ``cls`` from a plain dict (e.g. one stored in a checkpoint)."""
    try:
        return _build(cls, data, "")
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}" if source else str(e)) from None


def dump_config(cfg: Any, path: str | Path) -> None:
    """Atomically write the resolved config as YAML."""
    write_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))


def config_hash(cfg: Any) -> str:
    """A short stable hash of the resolved config."""
    blob = json.dumps(to_dict(cfg), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:12]
