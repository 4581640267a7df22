"""Helpers of the robustness suite: run the CLI in-process, read its one-line error, train the tiny
teacher (``tiny_teacher.yaml``), snapshot a folder."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from distillbev.cli import app

ROOT = Path(__file__).resolve().parents[2]
TEACHER = [
    str(ROOT / "configs/teacher/centerpoint_pillar.yaml"),
    str(Path(__file__).parent / "tiny_teacher.yaml"),
]


def cli(*args: object):
    """Run ``distillbev *args`` in-process; the result has ``exit_code`` and ``output`` (stdout + stderr)."""
    return CliRunner().invoke(app, [str(a) for a in args])


def error_line(result) -> str:
    """The CLI's error: exit code 2 (an uncaught exception would give 1) and exactly one ``error:`` line."""
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.output
    return lines[0]


def train_args(world, out: Path | None, *sets: str) -> list[str]:
    """``train`` of the tiny teacher on ``world`` into ``out`` with extra ``--set`` overrides."""
    args = ["train", *TEACHER, "--set", f"data.dataroot={world}"]
    for s in sets:
        args += ["--set", s]
    return args + (["--out", str(out)] if out is not None else [])


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file's bytes under ``folder`` (to assert that nothing was touched)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
