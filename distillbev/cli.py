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
from distillbev.paths import CONFIGS

app = typer.Typer(add_completion=False, no_args_is_help=True, help="DistillBEV in pure PyTorch.")
viz_app = typer.Typer(no_args_is_help=True, help="Pictures: cameras, BEV, distillation masks.")
app.add_typer(viz_app, name="viz")

PRESETS = ("smoke", "small", "medium")
DEMO_STAGES = ("data", "gt-eval", "teacher", "pretrain", "student", "distill")
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
    path = CONFIGS / kind / f"{name}.yaml"
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
    out: Path = typer.Option(
        None,
        help="Where to save the metrics JSON (default beside the results); with --checkpoint the "
        "devkit's files go to eval_<split> beside it (default: beside the checkpoint).",
    ),
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


@app.command("export")
def export(
    checkpoint: Path = typer.Argument(..., help="A camera student's checkpoint (baseline or distilled)."),
    out: Path = typer.Option(..., help="The ONNX file to write, e.g. student.onnx."),
    index: int = typer.Option(0, help="Val sample whose cameras are fixed in the graph."),
    set_: list[str] = typer.Option(
        [], "--set", help="Override a key of the checkpoint's config, e.g. data.dataroot=..."
    ),
    dry_run: bool = typer.Option(False, help="Print the inputs, outputs and cameras, and exit."),
) -> None:
    """ONNX of a student for fixed cameras (those of one val sample): images [+ the previous frame and
    the ego motion for 4D students] -> the head's raw maps; decoding stays in Python (export.OnnxStudent).
    No teacher, no adapters."""
    from distillbev.export import export_checkpoint

    try:
        with _user_errors():
            meta = export_checkpoint(checkpoint, out, index, set_, dry_run=dry_run)
    except ImportError as e:
        _fail(f"export needs the onnx package ({e}): pip install onnx onnxruntime")
    cams = meta["cameras"]
    typer.echo(f"{meta['kind']} from {checkpoint} (step {meta['checkpoint']['step']})")
    typer.echo(f"cameras: {cams['split']} #{cams['index']} ({cams['sample_token']}) in {cams['dataroot']}")
    typer.echo("inputs: " + ", ".join(f"{k} {tuple(v)}" for k, v in meta["inputs"].items()))
    typer.echo(f"outputs: {', '.join(meta['outputs'])}")
    typer.echo(f"output: {out}")
    if not dry_run:
        typer.echo(f"wrote {out}")


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


@app.command("reproduce")
def reproduce(
    out: Path = typer.Option(..., help="Plan folder: <cell>/seed<k> run folders, plan.json, results.*."),
    folders: list[Path] = typer.Argument(None, help="With --merge: the plan folders to combine."),
    merge: bool = typer.Option(False, help="Combine the results.json of plans split by --cells."),
    scale: str = typer.Option("tiny", help="tiny: configs/student/<s>.yaml (CPU); full: <s>_full.yaml."),
    seeds: int = typer.Option(3, help="Seeds per cell (0..N-1)."),
    centerpoint: Path = typer.Option(None, help="CenterPoint teacher checkpoint (default: the plan's)."),
    mvp: Path = typer.Option(None, help="MVP teacher checkpoint (default: the plan's)."),
    students: str = typer.Option(
        "", help="Comma-separated student presets (default bevdet,bevdet4d,bevdepth[,bevformer])."
    ),
    ablation_student: str = typer.Option("bevdet4d", help="Student of the ablation tables."),
    ablation_teacher: str = typer.Option("centerpoint", help="Teacher of the ablation tables."),
    cells: list[str] = typer.Option(
        [], "--cells", help="Only these cells: globs over cell names or tables (grid, components, layers)."
    ),
    dataroot: Path = typer.Option(None, help="Dataroot of every run (else the presets')."),
    set_: list[str] = typer.Option([], "--set", help="Override of every run, e.g. distill.loss_weight=0.1."),
    baselines_from: Path = typer.Option(
        None,
        help="Another plan folder whose baseline seeds (<student>-none) this plan reuses where it has none "
        "of its own; it must differ only in distill.* overrides (default: the plan's recorded one).",
    ),
    head_baselines: bool = typer.Option(
        True,
        help="Grid rows of the plain student started from each teacher's head task branches (the "
        "baseline a distilled student, which inherits that head, is fairly compared with).",
    ),
    resume: bool = typer.Option(False, help="Continue interrupted runs (by default they are left alone)."),
    in_process: bool = typer.Option(False, help="Train in this process instead of one subprocess per run."),
    jobs: int = typer.Option(
        1, help="Trainings at once, each a subprocess (e.g. 2 on 2 CPU cores with --set threads=1)."
    ),
    dry_run: bool = typer.Option(False, help="Print the plan (each run's state and command) and exit."),
) -> None:
    """The paper's grid (teachers x students) and ablation tables, N seeds per cell, resumably:
    finished runs are skipped; results.md / results.json hold mean +- std and gains over the baselines."""
    from distillbev.experiments.plan import PlanSpec
    from distillbev.experiments.runner import describe, make_plan, merge_plans, run_plan

    if merge:
        if not folders:
            _fail("--merge needs the plan folders: distillbev reproduce --merge DIR1 DIR2 --out DIR")
        typer.echo(f"output: {out}")
        if not dry_run:
            with _user_errors():
                merge_plans(list(folders), out)
            typer.echo(f"wrote {out / 'results.md'} and {out / 'results.json'}")
        return
    if folders:
        _fail(f"unexpected arguments {[str(f) for f in folders]} (plan folders are given with --merge)")
    overrides = ([f"data.dataroot={dataroot.resolve()}"] if dataroot is not None else []) + list(set_)
    with _user_errors():
        spec = PlanSpec(
            out=out,
            scale=scale,
            seeds=seeds,
            students=tuple(s.strip() for s in students.split(",") if s.strip()),
            teachers={"centerpoint": centerpoint, "mvp": mvp},
            ablation_student=ablation_student,
            ablation_teacher=ablation_teacher,
            overrides=tuple(overrides),
            baselines_from=baselines_from,
            head_baselines=head_baselines,
        )
        plan = make_plan(spec, cells)
    typer.echo("\n".join(describe(plan, commands=dry_run)))
    if dry_run:
        return
    with _user_errors():
        outcome = run_plan(plan, resume=resume, in_process=in_process, jobs=jobs)
    typer.echo(
        f"trained {len(outcome['trained'])}, already finished {len(outcome['finished'])}, "
        f"skipped {len(outcome['skipped'])}, failed {len(outcome['failed'])}; results: {out / 'results.md'}"
    )
    if outcome["failed"]:
        _fail("failed runs: " + "; ".join(outcome["failed"]))


@app.command("report")
def report(
    run_folder: Path = typer.Argument(..., help="A folder of runs: the demo workdir or a reproduce plan."),
    out: Path = typer.Option(None, help="The HTML page (default RUN_FOLDER/report.html)."),
    baseline: Path = typer.Option(None, help="The baseline student's run folder (default: found)."),
    distilled: Path = typer.Option(None, help="The distilled student's run folder (default: found)."),
    teacher: Path = typer.Option(None, help="The teacher checkpoint for the masks (default: found)."),
    samples: int = typer.Option(3, help="Val samples drawn in BEV (the masks use the first)."),
    score_threshold: float = typer.Option(0.3, help="Detections drawn in BEV: score at least this."),
    dry_run: bool = typer.Option(False, help="Print the runs found and the pair compared, and exit."),
) -> None:
    """One self-contained HTML page: tables, training curves, BEV views, distillation masks, per-class
    and per-distance AP of the baseline vs the distilled student."""
    from distillbev.viz.report import build_report, find_report_inputs

    with _user_errors():
        inputs = find_report_inputs(run_folder, baseline, distilled, teacher)
    typer.echo(inputs.summary())
    out = out or run_folder / "report.html"
    typer.echo(f"output: {out}")
    if dry_run:
        return
    with _user_errors():
        build_report(inputs, out, samples=samples, score_threshold=score_threshold)
    typer.echo(f"wrote {out}")


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
    from distillbev.viz.features import render_masks

    with _user_errors():
        paths = render_masks(teacher, student, out, index, distill_cfg)
    for p in paths:
        typer.echo(f"wrote {p}")


@app.command("demo")
def demo(
    workdir: Path = typer.Option(Path("runs/demo"), help="Where data, checkpoints and metrics go."),
    seed: int = typer.Option(0, help="Seed for data and training."),
    stages: str = typer.Option(
        ",".join(DEMO_STAGES), help=f"Comma-separated stages to run, in order ({', '.join(DEMO_STAGES)})."
    ),
    scale: str = typer.Option(
        "tiny", help="Model scale: tiny (the small world, CPU presets) or smoke (seconds)."
    ),
    fresh: bool = typer.Option(False, help="Redo every stage (by default finished stages are reused)."),
    from_scratch: bool = typer.Option(
        False, help="Train the teacher and pretrain the image encoder instead of using checkpoints/."
    ),
    epochs: int | None = typer.Option(
        None,
        help="Students' epochs (default: 8 at tiny scale to stay under an hour, "
        "the preset's at smoke; 0 = the preset's).",
    ),
    jobs: int = typer.Option(
        2, help="2: baseline and distilled student side by side (one core each); 1: in turn."
    ),
    student: str = typer.Option(
        "bevdepth", help="Camera student: bevdet, bevdet4d, bevdepth, bevdepth4d, bevformer."
    ),
    kd_weight: float | None = typer.Option(
        None,
        help="The distilled student's imitation-loss weight (distill.loss_weight; default 0.1, "
        "measured for this world's teacher; the paper's 1.0 is configs/distill/full.yaml's).",
    ),
    inherit_head: bool = typer.Option(
        True,
        help="The distilled student starts from the teacher's head task branches, as the official "
        "recipe does (--no-inherit-head: the students differ only by the imitation loss).",
    ),
) -> None:
    """The main job: synthetic world -> official metrics -> teacher -> image encoder -> baseline and
    distilled student -> the paper-style table."""
    from distillbev.demo import DemoPlan, run_demo

    try:
        plan = DemoPlan(
            workdir,
            scale,
            seed,
            tuple(s.strip() for s in stages.split(",") if s.strip()),
            fresh,
            from_scratch,
            epochs,
            jobs,
            student=student,
            kd_weight=kd_weight,
            inherit_head=inherit_head,
        )
        run_demo(plan)
    except (ConfigError, FileNotFoundError, ValueError, KeyError, RuntimeError) as e:
        _fail(str(e))


def main() -> None:
    """Entry point used by ``python -m distillbev``."""
    app()


if __name__ == "__main__":
    sys.exit(main())
