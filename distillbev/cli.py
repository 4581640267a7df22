"""The one command line: ``distillbev <command>``.

Every command prints the resolved config and its output location, supports ``--dry-run`` where it
writes anything, writes atomically, and exits non-zero with a message naming the file or key on bad
input. Heavy imports happen inside the commands so ``--help`` stays instant.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer

from distillbev.config import ConfigError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="DistillBEV in pure PyTorch.")
viz_app = typer.Typer(no_args_is_help=True, help="Pictures: cameras, BEV, distillation masks.")
app.add_typer(viz_app, name="viz")

ROOT = Path(__file__).resolve().parent.parent
PRESETS = ("smoke", "small", "medium")
#: What bad input or the environment raise (config, files, permissions, corrupt data, a diverged
#: training): one line on stderr and exit code 2 instead of a traceback.
USER_ERRORS = (ConfigError, OSError, ValueError, KeyError, IndexError, FloatingPointError)


def _fail(msg: str) -> None:
    one_line = re.sub(r"\s*\n\s*", " ", msg.strip())
    typer.secho(f"error: {one_line}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


@contextmanager
def _user_errors() -> Iterator[None]:
    """Turn ``USER_ERRORS`` raised in the block into ``_fail``."""
    try:
        yield
    except USER_ERRORS as e:
        _fail(str(e))


def _preset_file(kind: str, name: str) -> Path:
    path = ROOT / "configs" / kind / f"{name}.yaml"
    if not path.is_file():
        _fail(f"no {kind} preset {name!r} (looked for {path})")
    return path


def _echo_config(cfg: object) -> None:
    import yaml

    from distillbev.config import to_dict

    typer.echo(yaml.safe_dump(to_dict(cfg), sort_keys=False).rstrip())


RESUME_HELP = (
    "Resume a run from its checkpoint (optimizer, step, RNG), in the checkpoint's folder unless --out; "
    "the config must match the checkpoint's (but for eval/log frequency, threads, loader workers)."
)
OVERWRITE_HELP = "Replace an existing run folder (without it a non-empty --out is refused)."


@app.command("make-data")
def make_data(
    preset: str = typer.Option("small", help=f"World size preset: {', '.join(PRESETS)}."),
    out: Path = typer.Option(..., help="Output dataroot (must not exist or be empty)."),
    seed: int = typer.Option(0, help="Random seed: the same seed gives the same world."),
    set_: list[str] = typer.Option([], "--set", help="Override a WorldConfig key, e.g. num_scenes=4."),
    overwrite: bool = typer.Option(
        False, help="Replace an existing dataroot (a dataset or run folder only)."
    ),
    dry_run: bool = typer.Option(False, help="Print the resolved config and exit."),
) -> None:
    """Generate the synthetic world in the nuScenes on-disk format."""
    from distillbev.config import load_config
    from distillbev.data.synthetic.config import WorldConfig
    from distillbev.data.synthetic.generate import generate_world
    from distillbev.io import sigterm_as_interrupt

    with _user_errors():
        cfg = load_config(WorldConfig, [_preset_file("data", preset)], set_)
    _echo_config(cfg)
    typer.echo(f"output: {out}")
    if dry_run:
        return
    with _user_errors(), sigterm_as_interrupt():  # an interruption removes the temporary folder
        summary = generate_world(cfg, out, seed=seed, progress=True, overwrite=overwrite)
    typer.echo(" ".join(f"{k}={v}" for k, v in summary.items()))


@app.command("eval")
def eval_(
    dataroot: Path = typer.Option(..., help="nuScenes-format dataroot."),
    results: Path = typer.Option(None, help="nuScenes result JSON to score."),
    checkpoint: Path = typer.Option(None, help="Or: a model checkpoint to run on the split, then score."),
    version: str = typer.Option("", help="Table version (default: the single v1.0-* folder in dataroot)."),
    split: str = typer.Option("", help="Split to score (default: the val split of that version)."),
    out: Path = typer.Option(None, help="Where to save the metrics JSON (default beside the results)."),
    set_: list[str] = typer.Option([], "--set", help="Override a key of the checkpoint's config."),
) -> None:
    """Score detections with the official nuScenes metrics (mAP, NDS, mATE..mAAE, per class)."""
    from distillbev.eval.tables import print_metrics
    from distillbev.workflows import resolve_dataset, score_checkpoint, score_results

    if (results is None) == (checkpoint is None):
        _fail("give exactly one of --results and --checkpoint")
    with _user_errors():
        version, split = resolve_dataset(dataroot, version, split)
        if results is not None:
            metrics = score_results(dataroot, version, split, results, out)
        else:
            metrics = score_checkpoint(checkpoint, dataroot, version, split, out, set_)
    print_metrics(metrics)


@app.command("train")
def train(
    configs: list[Path] = typer.Argument(..., help="Preset YAML files, applied in order."),
    out: Path = typer.Option(None, help="Run directory (default runs/<config name>)."),
    set_: list[str] = typer.Option([], "--set", help="Override, e.g. optim.epochs=2."),
    teacher: Path = typer.Option(None, help="A teacher checkpoint: distil it into the student."),
    resume: Path = typer.Option(None, help=RESUME_HELP),
    init_from: Path = typer.Option(None, help="Initialise model weights from a checkpoint (strict)."),
    overwrite: bool = typer.Option(False, help=OVERWRITE_HELP),
    dry_run: bool = typer.Option(False, help="Print the resolved config and exit."),
) -> None:
    """Train a teacher or a student (with --teacher: distil)."""
    from distillbev.train.run import run_training

    with _user_errors():
        run_training(
            configs,
            out,
            set_,
            teacher=teacher,
            resume=resume,
            init_from=init_from,
            dry_run=dry_run,
            overwrite=overwrite,
        )


@app.command("distill")
def distill(
    teacher: Path = typer.Option(..., help="Trained teacher checkpoint (CenterPoint or MVP)."),
    student: list[Path] = typer.Option(..., help="Student preset YAML (repeatable, applied in order)."),
    distill_cfg: Path = typer.Option(None, "--distill", help="A distillation preset (configs/distill/)."),
    out: Path = typer.Option(None, help="Run directory."),
    set_: list[str] = typer.Option([], "--set", help="Override, e.g. distill.w_fg=0.01."),
    resume: Path = typer.Option(None, help=RESUME_HELP),
    overwrite: bool = typer.Option(False, help=OVERWRITE_HELP),
    dry_run: bool = typer.Option(False, help="Print the resolved config and exit."),
) -> None:
    """Train a camera student while imitating a frozen LiDAR teacher (DistillBEV)."""
    from distillbev.train.run import run_training

    files = list(student) + ([distill_cfg] if distill_cfg else [])
    with _user_errors():
        run_training(
            files,
            out,
            set_,
            teacher=teacher,
            resume=resume,
            init_from=None,
            dry_run=dry_run,
            overwrite=overwrite,
        )


@app.command("pretrain")
def pretrain(
    configs: list[Path] = typer.Argument(..., help="A student preset (its image backbone), then overrides."),
    out: Path = typer.Option(..., help="Output folder: image_encoder.pt, metrics.json, log.jsonl."),
    set_: list[str] = typer.Option([], "--set", help="Override, e.g. pretrain.epochs=4."),
) -> None:
    """Pretrain a student's image backbone + neck on dense image targets of the train split
    (LiDAR depth, projected box centres, class masks where the dataroot has them)."""
    from distillbev.train.pretrain import run_pretrain

    try:
        run_pretrain(configs, out, set_)
    except (ConfigError, FileNotFoundError, FileExistsError, ValueError, KeyError) as e:
        _fail(str(e))


@viz_app.command("sample")
def viz_sample(
    dataroot: Path = typer.Option(..., help="nuScenes-format dataroot."),
    out: Path = typer.Option(..., help="Folder for the PNGs."),
    version: str = typer.Option("", help="Table version (default: autodetect)."),
    split: str = typer.Option("", help="Split (default: the val split)."),
    index: int = typer.Option(0, help="Sample index within the split."),
    results: Path = typer.Option(None, help="Optional result JSON whose boxes are drawn too."),
) -> None:
    """A 6-camera mosaic with projected GT boxes and a BEV plot of LiDAR points and boxes."""
    from distillbev.workflows import render_sample

    with _user_errors():
        paths = render_sample(dataroot, version, split, index, out, results)
    for p in paths:
        typer.echo(f"wrote {p}")


@viz_app.command("masks")
def viz_masks(
    teacher: Path = typer.Option(..., help="Teacher checkpoint."),
    student: Path = typer.Option(..., help="Student (baseline or distilled) checkpoint."),
    out: Path = typer.Option(..., help="Folder for the PNGs."),
    index: int = typer.Option(0, help="Validation sample index."),
    distill_cfg: Path = typer.Option(None, "--distill", help="Distillation preset for the masks."),
) -> None:
    """FG/FP/BG masks, scale map and teacher/student attention per distilled layer."""
    from distillbev.workflows import render_masks

    with _user_errors():
        paths = render_masks(teacher, student, out, index, distill_cfg)
    for p in paths:
        typer.echo(f"wrote {p}")


@app.command("demo")
def demo(
    preset: str = typer.Option("small", help="World preset."),
    workdir: Path = typer.Option(Path("runs/demo"), help="Where data, checkpoints and metrics go."),
    seed: int = typer.Option(0, help="Seed for data and training."),
    stages: str = typer.Option(
        "data,gt-eval,teacher,student,distill", help="Comma-separated stages to run, in order."
    ),
    scale: str = typer.Option("tiny", help="Model scale preset for the training stages (tiny or smoke)."),
) -> None:
    """The main job: synthetic world -> official metrics -> teacher -> student -> distilled student."""
    from distillbev.workflows import run_demo

    try:
        run_demo(preset, workdir, seed, [s.strip() for s in stages.split(",") if s.strip()], scale)
    except (ConfigError, FileNotFoundError, ValueError, KeyError) as e:
        _fail(str(e))


def main() -> None:
    """Entry point used by ``python -m distillbev``."""
    app()


if __name__ == "__main__":
    sys.exit(main())
