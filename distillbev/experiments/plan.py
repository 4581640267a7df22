"""The reproduction plan: which cells exist, which (cell, seed) runs they need, and where each run stands.

A cell is one row of one of the paper's tables: a student preset, a teacher (or none, the baseline)
and a distillation preset of ``configs/distill/``. The distillation presets start the student from the
teacher's head task branches (``distill.inherit_head``, as the official recipe does), so the grid also
has, per teacher, the plain student started from that teacher's head (``inherit_head_from``, no
imitation loss): against it a distilled student's gain is the imitation loss's own share
(docs/reproduce.md). Ablation rows whose preset states the same values as
another cell (``layers_B1_B2_H`` = ``components_fgbg_att_scale``; ``full`` with the ablation teacher =
the grid cell) are the same cell, trained once and shown in every table that has it.
Each (cell, seed) run lives in ``PLAN_DIR/<cell>/seed<k>``, a plain ``distillbev train`` run folder.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from distillbev.config import ConfigError, read_yaml, to_dict
from distillbev.paths import CONFIGS, ROOT

TEACHERS = ("centerpoint", "mvp")
TEACHER_NAMES = {None: "none", "centerpoint": "CenterPoint", "mvp": "MVP"}
PAPER_STUDENTS = ("bevdet", "bevdet4d", "bevdepth")
SCALES = ("tiny", "full")
GROUPS = ("grid", "components", "layers")
#: The component ablation, top to bottom as in the paper (each row adds one component).
COMPONENT_ROWS = (
    ("no teacher", None),
    ("plain imitation", "components_plain"),
    ("+ FG/BG split", "components_fgbg"),
    ("+ spatial attention", "components_fgbg_att"),
    ("+ adaptive scaling", "components_fgbg_att_scale"),
    ("+ FP region (full)", "full"),
)
#: The layer ablation as in the paper; the paper ranks these rows (mAP, low to high) as in
#: ``LAYER_ORDER``: distilling B0 as well hurts.
LAYER_ROWS = (
    ("no teacher", None),
    ("H", "layers_H"),
    ("B2 + H", "layers_B2_H"),
    ("B1 + B2 + H", "layers_B1_B2_H"),
    ("B0 + B1 + B2 + H", "layers_B0_B1_B2_H"),
)
LAYER_ORDER = ("no teacher", "B0 + B1 + B2 + H", "H", "B2 + H", "B1 + B2 + H")


@dataclass(frozen=True)
class Cell:
    """One table cell: ``student`` preset stem, ``teacher`` (None = baseline), ``distill`` preset stem.
    A teacher without a distill preset is a plain student whose head task branches start from that
    teacher's (``head``)."""

    name: str  # e.g. "bevdet-none", "bevdet-mvp", "bevdet4d-centerpoint-layers_H"
    student: str
    teacher: str | None
    distill: str | None
    groups: tuple[str, ...]  # the tables that show it: grid, components, layers

    @property
    def baseline(self) -> str:
        """The name of the same student's baseline cell."""
        return f"{self.student}-none"

    @property
    def distilled(self) -> bool:
        """Trained with a teacher and an imitation loss (not a baseline, with or without a head)."""
        return self.distill is not None

    @property
    def head(self) -> bool:
        """A plain student started from ``teacher``'s head task branches (no imitation loss)."""
        return is_head_cell(self.teacher, self.distill)


def is_head_cell(teacher: str | None, distill: str | None) -> bool:
    """Whether a cell of this teacher and distill preset is a plain student from the teacher's head."""
    return teacher is not None and distill is None


def head_cell_name(student: str, teacher: str) -> str:
    """The cell of ``student`` trained alone from ``teacher``'s head task branches."""
    return f"{student}-none-head_{teacher}"


@dataclass(frozen=True)
class Table:
    """One results table: ``rows`` of (label, cell name); ``order`` is the paper's ranking of the
    labels by mAP, low to high (empty: no ranking claim)."""

    key: str
    title: str
    rows: tuple[tuple[str, str], ...]
    order: tuple[str, ...] = ()


@dataclass(frozen=True)
class PlanSpec:
    """What the user asked for (``distillbev reproduce`` options)."""

    out: Path
    scale: str = "tiny"
    seeds: int = 3
    students: tuple[str, ...] = ()  # empty: the paper's students (+ bevformer when its preset exists)
    teachers: dict[str, Path | None] = field(default_factory=dict)  # centerpoint / mvp -> checkpoint
    ablation_student: str = "bevdet4d"
    ablation_teacher: str = "centerpoint"
    overrides: tuple[str, ...] = ()  # --set for every run (and data.dataroot from --dataroot)
    baselines_from: Path | None = None  # another plan whose baseline seeds this one reuses
    head_baselines: bool = True  # the grid's "plain student from the teacher's head" cells

    def __post_init__(self) -> None:
        if self.scale not in SCALES:
            raise ConfigError(f"--scale {self.scale!r}: valid scales are {', '.join(SCALES)}")
        if self.seeds < 1:
            raise ConfigError(f"--seeds must be >= 1, got {self.seeds}")
        if self.ablation_teacher not in TEACHERS:
            raise ConfigError(f"--ablation-teacher {self.ablation_teacher!r}: one of {', '.join(TEACHERS)}")
        unknown = set(self.teachers) - set(TEACHERS)
        if unknown:
            raise ConfigError(f"unknown teacher(s) {sorted(unknown)}; teachers are {', '.join(TEACHERS)}")

    def student_names(self) -> tuple[str, ...]:
        """The students of the grid."""
        if self.students:
            return self.students
        extra = ("bevformer",) if (CONFIGS / "student" / "bevformer.yaml").is_file() else ()
        return PAPER_STUDENTS + extra

    def student_preset(self, student: str) -> Path:
        """``configs/student/<s>.yaml`` (tiny) or ``<s>_full.yaml`` (full)."""
        return CONFIGS / "student" / (f"{student}.yaml" if self.scale == "tiny" else f"{student}_full.yaml")


@dataclass(frozen=True)
class Run:
    """One (cell, seed) training: the arguments of ``distillbev train`` and why it cannot run, if so."""

    cell: Cell
    seed: int
    run_dir: Path
    files: tuple[Path, ...]
    overrides: tuple[str, ...]
    teacher: Path | None
    blocked: str = ""  # "" = runnable; else the reason (no teacher checkpoint, no preset file)

    @property
    def label(self) -> str:
        """``<cell>/seed<k>``."""
        return f"{self.cell.name}/seed{self.seed}"


def _distill_values(name: str) -> str:
    """A distillation preset's values, canonically (cells with equal values are one cell)."""
    return json.dumps(read_yaml(CONFIGS / "distill" / f"{name}.yaml"), sort_keys=True)


def build_grid(
    students: tuple[str, ...],
    ablation_student: str = "bevdet4d",
    ablation_teacher: str = "centerpoint",
    head_baselines: bool = True,
) -> tuple[list[Cell], list[Table]]:
    """Every cell of the paper's tables for these students, and the tables (rows -> cell names). With
    ``head_baselines`` the grid puts before each distilled row the plain student started from that
    teacher's head task branches."""
    cells: dict[str, Cell] = {}
    by_values: dict[tuple, str] = {}

    def add(student: str, teacher: str | None, distill: str | None, group: str) -> str:
        key = (student, teacher, _distill_values(distill) if distill else None)
        if key in by_values:
            name = by_values[key]
            if group not in cells[name].groups:
                cells[name] = replace(cells[name], groups=cells[name].groups + (group,))
            return name
        parts = [student, teacher or "none"] + ([distill] if distill and distill != "full" else [])
        name = "-".join(parts)
        by_values[key] = name
        cells[name] = Cell(name, student, teacher, distill, (group,))
        return name

    grid_rows = []
    for s in students:
        grid_rows.append((TEACHER_NAMES[None], add(s, None, None, "grid")))
        for t in TEACHERS:
            if head_baselines:
                name = head_cell_name(s, t)
                cells[name] = Cell(name, s, t, None, ("grid",))
                grid_rows.append((f"none, {TEACHER_NAMES[t]}'s head", name))
            grid_rows.append((TEACHER_NAMES[t], add(s, t, "full", "grid")))
    t_name = TEACHER_NAMES[ablation_teacher]

    def ablation(rows: tuple, group: str) -> tuple[tuple[str, str], ...]:
        return tuple(
            (label, add(ablation_student, ablation_teacher if preset else None, preset, group))
            for label, preset in rows
        )

    comp = ablation(COMPONENT_ROWS, "components")
    layers = ablation(LAYER_ROWS, "layers")
    tables = [
        Table("grid", "Every teacher with every student", tuple(grid_rows)),
        Table(
            "components",
            f"Ablation: what the loss is made of ({ablation_student}, {t_name} teacher)",
            comp,
            tuple(label for label, _ in COMPONENT_ROWS),
        ),
        Table(
            "layers",
            f"Ablation: which layers are distilled ({ablation_student}, {t_name} teacher)",
            layers,
            LAYER_ORDER,
        ),
    ]
    return list(cells.values()), tables


def select_cells(cells: list[Cell], patterns: list[str]) -> list[Cell]:
    """The cells matching any pattern: a glob over cell names (``bevdet-*``) or a table name
    (grid, components, layers). Patterns may be comma-separated; none selects every cell."""
    pats = [p.strip() for text in patterns for p in text.split(",") if p.strip()]
    if not pats:
        return list(cells)
    for p in pats:
        if p not in GROUPS and not any(fnmatch.fnmatchcase(c.name, p) for c in cells):
            raise ConfigError(
                f"--cells {p!r} matches no cell; cells are {', '.join(c.name for c in cells)} "
                f"(or a table: {', '.join(GROUPS)})"
            )
    return [c for c in cells if any(p in c.groups or fnmatch.fnmatchcase(c.name, p) for p in pats)]


def plan_runs(spec: PlanSpec, cells: list[Cell]) -> list[Run]:
    """Every (cell, seed) run, seed-major (seed 0 of every cell first, so a partial plan covers the
    whole grid early), baselines (plain, then from a teacher's head) before the distilled cells within
    a seed. A head cell trains without ``--teacher``: its teacher checkpoint (resolved, so that the
    config reads the same from any folder) goes to ``inherit_head_from``."""
    ordered = sorted(cells, key=lambda c: (c.teacher is not None, c.distilled))  # stable: table order
    runs = []
    for seed in range(spec.seeds):
        for cell in ordered:
            files = cell_files(spec, cell)
            teacher = spec.teachers.get(cell.teacher) if cell.teacher else None
            blocked = ""
            missing = [str(f) for f in files if not f.is_file()]
            if missing:
                blocked = f"no preset {missing[0]}"
            elif cell.teacher and teacher is None:
                blocked = f"no --{cell.teacher} teacher checkpoint given"
            elif teacher is not None and not Path(teacher).is_file():
                blocked = f"teacher checkpoint {teacher} not found"
            head = (f"inherit_head_from={Path(teacher).resolve()}",) if cell.head and teacher else ()
            runs.append(
                Run(
                    cell=cell,
                    seed=seed,
                    run_dir=Path(spec.out) / cell.name / f"seed{seed}",
                    files=tuple(files),
                    overrides=(*spec.overrides, *head, f"seed={seed}"),
                    teacher=Path(teacher) if teacher is not None and not cell.head else None,
                    blocked=blocked,
                )
            )
    return runs


def cell_files(spec: PlanSpec, cell: Cell) -> list[Path]:
    """The preset files a cell's runs train from: the student's, then the distill preset's if any."""
    distill = [CONFIGS / "distill" / f"{cell.distill}.yaml"] if cell.distill else []
    return [spec.student_preset(cell.student), *distill]


#: Preset keys that name a weights file the runs start from: its bytes are part of the fingerprint.
WEIGHT_KEYS: tuple[tuple[str, str], ...] = (("student", "image_pretrained"), ("student", "pretrained"))


def named_weights(preset: Path) -> list[Path | None]:
    """The weights files a preset names under ``WEIGHT_KEYS`` (a relative path is looked up from the
    working directory, then from the repository root, as the students load it); None for a named file
    that is not there."""
    data = read_yaml(preset)
    found: list[Path | None] = []
    for section, key in WEIGHT_KEYS:
        value = (data.get(section) or {}).get(key) if isinstance(data.get(section), dict) else None
        if not value:
            continue
        path = Path(value)
        if not path.is_file() and not path.is_absolute() and (ROOT / path).is_file():
            path = ROOT / path
        found.append(path if path.is_file() else None)
    return found


def preset_sha256(files: list[Path]) -> str | None:
    """One sha256 over the contents of a cell's preset files and of the weights files they name
    (``named_weights``, e.g. the pretrained image encoder); None when one is missing. A baseline
    borrowed from another plan (``--baselines-from``) must have trained from the same presets."""
    digest = hashlib.sha256()
    for f in files:
        if not Path(f).is_file():
            return None
        digest.update(Path(f).read_bytes())
        digest.update(b"\0")
        for weights in named_weights(Path(f)):
            if weights is None:
                return None
            digest.update(weights.read_bytes())
            digest.update(b"\0")
    return digest.hexdigest()


def plan_document(spec: PlanSpec, cells: list[Cell], tables: list[Table]) -> dict[str, Any]:
    """``plan.json``: the whole grid (not only the selected cells), the teachers, the overrides and a
    sha256 of each cell's preset files."""
    return {
        "format": "distillbev-plan-v1",
        "scale": spec.scale,
        "seeds": spec.seeds,
        "overrides": list(spec.overrides),
        "teachers": {k: str(Path(v).resolve()) for k, v in spec.teachers.items() if v is not None},
        # resolved like the teachers, so that a later sitting from another folder finds it
        **({"baselines_from": str(Path(spec.baselines_from).resolve())} if spec.baselines_from else {}),
        "cells": [asdict(c) for c in cells],
        "tables": [asdict(t) for t in tables],
        "presets": {c.name: preset_sha256(cell_files(spec, c)) for c in cells},
    }


def check_plan_folder(spec: PlanSpec) -> None:
    """A plan folder holds one plan: refuse another scale or other overrides than its ``plan.json``
    (their runs would mix configs); more seeds, other cells or moved teachers are fine."""
    path = Path(spec.out) / "plan.json"
    if not path.is_file():
        return
    try:
        old = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if old.get("scale") != spec.scale or list(old.get("overrides", [])) != list(spec.overrides):
        raise ConfigError(
            f"{spec.out} holds a plan with scale {old.get('scale')!r} and overrides {old.get('overrides')}; "
            f"this one has scale {spec.scale!r} and overrides {list(spec.overrides)}: use another --out"
        )


def checkpoint_epoch(path: Path) -> int:
    """The epoch a checkpoint was saved at (memory-mapped: the weights are not read)."""
    import torch

    try:
        blob = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means a bad file
        raise ValueError(f"{path}: not a readable checkpoint ({type(e).__name__}: {e})") from None
    return int(blob.get("epoch", 0)) if isinstance(blob, dict) else 0


def run_state(run_dir: Path) -> tuple[str, str]:
    """Where a run folder stands: ``new`` (absent or empty), ``finished`` (checkpoint at the config's
    last epoch and its metrics written), ``interrupted`` (anything less), or ``broken`` (finished
    but its metrics are missing); with a one-line detail."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir() or not any(run_dir.iterdir()):
        return "new", ""
    cfg_path, ckpt = run_dir / "config.yaml", run_dir / "checkpoint.pt"
    if not cfg_path.is_file():
        return "interrupted", "no config.yaml yet"
    epochs = int(read_yaml(cfg_path).get("optim", {}).get("epochs", 0))
    if not ckpt.is_file():
        return "interrupted", "no checkpoint yet"
    epoch = checkpoint_epoch(ckpt)
    if epoch < epochs:
        return "interrupted", f"checkpoint at epoch {epoch} of {epochs}"
    metrics = run_dir / f"eval_epoch{epochs}" / "metrics.json"
    if not metrics.is_file():
        return "broken", f"finished but {metrics} is missing"
    return "finished", f"epoch {epoch} of {epochs}"


def finished_metrics(run_dir: Path) -> dict[str, Any] | None:
    """The final metrics of a finished run, or None."""
    from distillbev.eval.nuscenes_eval import load_metrics

    if run_state(run_dir)[0] != "finished":
        return None
    epochs = int(read_yaml(Path(run_dir) / "config.yaml")["optim"]["epochs"])
    return load_metrics(Path(run_dir) / f"eval_epoch{epochs}" / "metrics.json")


def teacher_checkpoint_info(path: Path, kind: str) -> tuple[Any, dict[str, Any]]:
    """A teacher checkpoint's RunConfig and metrics; a checkpoint of another model is refused."""
    import torch

    from distillbev.train.checkpoint import FORMAT, checkpoint_config

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--{kind}: teacher checkpoint not found: {path}")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    except Exception as e:  # noqa: BLE001
        raise ValueError(f"--{kind} {path}: not a readable checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ValueError(f"--{kind} {path}: not a distillbev checkpoint")
    cfg = checkpoint_config(blob, path)
    if cfg.model != kind:
        raise ValueError(f"--{kind} {path} holds a {cfg.model!r} model, not a {kind!r} teacher")
    return cfg, dict(blob.get("metrics") or {})


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        out |= _flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v}
    return out


def resolve_run_config(run: Run, teacher_cfg: Any) -> Any:
    """The RunConfig ``distillbev train`` resolves for a run (``teacher_cfg``: its teacher's, or None)."""
    from distillbev.config import load_config
    from distillbev.train.config import RunConfig
    from distillbev.train.run import with_teacher_points

    cfg = load_config(RunConfig, list(run.files), list(run.overrides))
    return with_teacher_points(cfg, teacher_cfg) if teacher_cfg is not None else cfg


def config_difference(run: Run, teacher_cfg: Any) -> str:
    """'' when the run folder's config.yaml is what the plan resolves for the run now (but for the keys
    a resume may change); else the differing keys."""
    from distillbev.train.checkpoint import RESUME_SAFE_KEYS

    stored = Path(run.run_dir) / "config.yaml"
    if not stored.is_file():
        return ""
    old, new = _flat(read_yaml(stored)), _flat(to_dict(resolve_run_config(run, teacher_cfg)))
    keys = [
        k for k in sorted(old.keys() | new.keys()) if old.get(k) != new.get(k) and k not in RESUME_SAFE_KEYS
    ]
    shown = ", ".join(f"{k} ({old.get(k)!r} there, {new.get(k)!r} now)" for k in keys[:4])
    return shown + (f" and {len(keys) - 4} more" if len(keys) > 4 else "")
