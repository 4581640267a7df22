"""Smoke-size overrides for tests, read from the one place that owns them: ``configs/scale/smoke.yaml``
(also what ``distillbev demo --scale smoke`` applies)."""

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
SMOKE_SCALE = ROOT / "configs" / "scale" / "smoke.yaml"


def _value(value: object) -> str:
    """A YAML value as ``--set`` takes it ("" stays empty)."""
    if value == "":
        return ""
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def _flat(node: dict, prefix: str = "") -> list[str]:
    out = []
    for key, value in node.items():
        if isinstance(value, dict):
            out += _flat(value, f"{prefix}{key}.")
        else:
            out.append(f"{prefix}{key}={_value(value)}")
    return out


def smoke_overrides(*sections: str) -> list[str]:
    """``--set`` strings of the smoke scale's sections, e.g. ``smoke_overrides("student")`` (the student's
    sizes and its reader's image size) or ``smoke_overrides("teacher")``."""
    data = yaml.safe_load(SMOKE_SCALE.read_text())
    out = []
    for section in sections:
        out += _flat({section: data[section]})
        if section == "student":
            out += _flat({"data": data["data"]})
    return out


TEACHER_SMOKE = smoke_overrides("teacher")
STUDENT_SMOKE = smoke_overrides("student")
