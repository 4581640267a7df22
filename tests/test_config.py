"""The config system: defaults <- YAML files <- --set overrides, with errors that name the key."""

from dataclasses import dataclass, field
from typing import Literal

import pytest

from distillbev.config import ConfigError, config_hash, dump_config, load_config, parse_override, read_yaml


@dataclass(frozen=True)
class Inner:
    cell: float = 0.8
    channels: tuple[int, ...] = (32, 64)


@dataclass(frozen=True)
class Outer:
    name: str = "a"
    steps: int = 10
    mode: Literal["x", "y"] = "x"
    flag: bool = False
    inner: Inner = field(default_factory=Inner)


def test_layering_and_overrides(tmp_path):
    f1 = tmp_path / "one.yaml"
    f1.write_text("steps: 20\ninner:\n  cell: 1.6\n")
    f2 = tmp_path / "two.yaml"
    f2.write_text("inner:\n  channels: [8, 16, 32]\n")
    cfg = load_config(Outer, [f1, f2], ["mode=y", "inner.cell=3.2"])
    assert cfg.steps == 20 and cfg.mode == "y"
    assert cfg.inner.cell == 3.2 and cfg.inner.channels == (8, 16, 32)
    assert isinstance(cfg.inner.cell, float)


def test_unknown_key_names_key_file_and_suggestion(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("inner:\n  cel: 1.6\n")
    with pytest.raises(ConfigError) as e:
        load_config(Outer, [f])
    msg = str(e.value)
    assert "bad.yaml" in msg and "'cel'" in msg and "'cell'" in msg


def test_type_errors_and_literals():
    with pytest.raises(ConfigError, match="steps"):
        load_config(Outer, [], ["steps=abc"])
    with pytest.raises(ConfigError, match="mode"):
        load_config(Outer, [], ["mode=z"])
    with pytest.raises(ConfigError, match="flag"):
        load_config(Outer, [], ["flag=3"])
    with pytest.raises(ConfigError, match="--set nope=1"):
        load_config(Outer, [], ["nope=1"])


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        read_yaml(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        read_yaml(bad)


def test_dump_roundtrip_and_hash(tmp_path):
    cfg = load_config(Outer, [], ["inner.channels=[1, 2, 3]", "name=b"])
    dump_config(cfg, tmp_path / "c.yaml")
    again = load_config(Outer, [tmp_path / "c.yaml"])
    assert again == cfg
    assert config_hash(again) == config_hash(cfg)
    assert config_hash(load_config(Outer)) != config_hash(cfg)


def test_parse_override():
    assert parse_override("a.b.c=1.5") == {"a": {"b": {"c": 1.5}}}
    with pytest.raises(ConfigError):
        parse_override("novalue")


@dataclass(frozen=True)
class Fixed:
    size: tuple[int, float] = (1, 2.0)


def test_fixed_length_tuple():
    cfg = load_config(Fixed, [], ["size=[3, 4]"])
    assert cfg.size == (3, 4.0) and isinstance(cfg.size[1], float)
    with pytest.raises(ConfigError, match="expected 2 values"):
        load_config(Fixed, [], ["size=[1, 2, 3]"])
