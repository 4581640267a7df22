"""Head inheritance: the student's CenterHead task branches start as the teacher's (and nothing else)."""

from pathlib import Path

import pytest
import torch
from smoke_sizes import STUDENT_SMOKE, TEACHER_SMOKE

import distillbev.train.loop as loop
from distillbev.config import ConfigError, load_config
from distillbev.models import build_model
from distillbev.train.checkpoint import save_checkpoint
from distillbev.train.config import RunConfig
from distillbev.train.inherit import file_sha256, inherit_head
from distillbev.train.run import head_source, run_training

ROOT = Path(__file__).resolve().parents[2]
TEACHER = ROOT / "configs/teacher/centerpoint_pillar.yaml"
STUDENT = ROOT / "configs/student/bevdet.yaml"
# Student FPN 8 wide vs the teacher's 3 x 16: the shared convs differ, the task branches fit.
RUN_SMOKE = ["optim.epochs=1", "optim.batch_size=1", "data.max_train_samples=1", "data.max_val_samples=1"]


def _teacher(*overrides: str) -> torch.nn.Module:
    torch.manual_seed(1)
    model = build_model(load_config(RunConfig, [TEACHER], [*TEACHER_SMOKE, *overrides]))
    # Non-default BatchNorm statistics, so that copying the buffers is observable.
    for name, buf in model.head.task_heads.named_buffers():
        if name.endswith("running_mean") or name.endswith("running_var"):
            buf.copy_(torch.rand_like(buf) + 0.5)
    return model


def _student(*overrides: str) -> torch.nn.Module:
    torch.manual_seed(2)
    return build_model(load_config(RunConfig, [STUDENT], [*STUDENT_SMOKE, *overrides]))


def _clone(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()}


def _same_task_heads(student: torch.nn.Module, teacher: torch.nn.Module) -> bool:
    theirs = teacher.head.task_heads.state_dict()
    return all(torch.equal(v, theirs[k]) for k, v in student.head.task_heads.state_dict().items())


def test_task_branches_are_copied_and_nothing_else():
    teacher, student = _teacher(), _student()
    assert student.head.shared_conv.conv.weight.shape[1] != teacher.head.shared_conv.conv.weight.shape[1]
    assert not _same_task_heads(student, teacher)
    before, t_before = _clone(student), _clone(teacher)
    inherit_head(student, teacher)
    after = student.state_dict()
    task_keys = [k for k in after if k.startswith("head.task_heads.")]
    assert len(task_keys) == len(teacher.head.task_heads.state_dict()) > 0
    for k in task_keys:  # every parameter and BN buffer of every branch, heatmap bias included
        assert torch.equal(after[k], teacher.state_dict()[k]), k
    assert any(not torch.equal(after[k], before[k]) for k in task_keys)
    for k, v in before.items():  # the shared conv, the backbone, ... are untouched
        if not k.startswith("head.task_heads."):
            assert torch.equal(after[k], v), k
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in t_before.items())
    # A copy, not shared storage: training the student must not move the teacher.
    w = student.head.task_heads[0].branches["heatmap"][1].weight
    assert w.data_ptr() != teacher.head.task_heads[0].branches["heatmap"][1].weight.data_ptr()


def test_head_channel_mismatch_names_the_parameter_and_both_shapes():
    teacher, student = _teacher(), _student("student.head.head_channels=8")
    before = _clone(student)
    with pytest.raises(ConfigError) as err:
        inherit_head(student, teacher)
    msg = str(err.value)
    assert "head.task_heads.0.branches.heatmap.0.conv.weight" in msg
    assert "(8, 16, 3, 3) in the student" in msg and "(16, 16, 3, 3) in the teacher" in msg
    assert "distill.inherit_head=false" in msg
    assert all(torch.equal(v, student.state_dict()[k]) for k, v in before.items())  # nothing half-copied


def test_share_channel_mismatch_is_refused():
    teacher, student = _teacher(), _student("student.head.share_channels=8")
    with pytest.raises(ConfigError, match=r"heatmap\.0\.conv\.weight is \(16, 8, 3, 3\) in the student"):
        inherit_head(student, teacher)


def test_different_tasks_are_refused_even_with_equal_shapes():
    teacher = _teacher()
    # Same number of classes in another order: every shape fits, the heatmap channels would not.
    classes = list(teacher.head.tasks[0])
    swapped = "[[" + ", ".join([classes[1], classes[0], *classes[2:]]) + "]]"
    student = _student(f"student.head.tasks={swapped}")
    with pytest.raises(ConfigError, match="head.tasks") as err:
        inherit_head(student, teacher)
    assert "distill.inherit_head=false" in str(err.value)
    split = _student("student.head.tasks=[[car], [pedestrian]]", "student.head.circle_radius=[1.0, 1.0]")
    with pytest.raises(ConfigError, match=r"\[\['car'\], \['pedestrian'\]\]"):
        inherit_head(split, teacher)


def test_velocity_scale_mismatch_is_refused():
    with pytest.raises(ConfigError, match="velocity_scale is 10.0 in the student but 1.0"):
        inherit_head(_student("student.head.velocity_scale=10.0"), _teacher())


def test_head_source_rules(tmp_path):
    ckpt, other = tmp_path / "t.pt", tmp_path / "u.pt"
    ckpt.write_bytes(b"x")
    other.write_bytes(b"y")
    student = load_config(RunConfig, [STUDENT])
    assert head_source(student, ckpt, None) == ckpt  # distillation: on by default
    assert head_source(student, None, None) is None  # plain student: off by default
    off = load_config(RunConfig, [STUDENT], ["distill.inherit_head=false"])
    assert head_source(off, ckpt, None) is None
    plain = load_config(RunConfig, [STUDENT], [f"inherit_head_from={ckpt}"])
    assert head_source(plain, None, None) == ckpt
    assert head_source(plain, ckpt, None) == ckpt  # the same teacher both ways is fine
    assert head_source(plain, None, tmp_path / "resume.pt") is None  # resume keeps the student's head
    assert head_source(load_config(RunConfig, [STUDENT]), ckpt, tmp_path / "resume.pt") is None
    with pytest.raises(ConfigError, match="differs from the distillation teacher"):
        head_source(plain, other, None)
    both_off = load_config(RunConfig, [STUDENT], [f"inherit_head_from={ckpt}", "distill.inherit_head=false"])
    with pytest.raises(ConfigError, match="distill.inherit_head=false"):
        head_source(both_off, ckpt, None)
    missing = load_config(RunConfig, [STUDENT], [f"inherit_head_from={tmp_path / 'no.pt'}"])
    with pytest.raises(ConfigError, match="not found"):
        head_source(missing, None, None)
    with pytest.raises(ConfigError, match="teacher run"):
        head_source(load_config(RunConfig, [TEACHER], [f"inherit_head_from={ckpt}"]), None, None)


@pytest.fixture(scope="module")
def teacher_ckpt(tmp_path_factory) -> Path:
    """An untrained smoke teacher saved as a checkpoint (inheritance needs weights, not training)."""
    cfg = load_config(RunConfig, [TEACHER], TEACHER_SMOKE)
    path = tmp_path_factory.mktemp("teacher") / "checkpoint.pt"
    save_checkpoint(path, _teacher(), cfg, step=0, epoch=0)
    return path


@pytest.fixture
def captured(monkeypatch) -> dict:
    """Replaces the training loop: records the student and teacher it is handed, trains nothing."""
    seen: dict = {}

    def fake_train(cfg, run_dir, model, teacher=None, distill_loss=None, resume=None, **_):
        seen.update(model=model, teacher=teacher, distill_loss=distill_loss)
        return {}

    monkeypatch.setattr(loop, "train", fake_train)
    return seen


@pytest.mark.parametrize("inherit", [True, False])
def test_distillation_run_starts_from_the_teacher_head(
    inherit, smoke_world, teacher_ckpt, captured, tmp_path, capsys
):
    over = [f"data.dataroot={smoke_world.dataroot}", *RUN_SMOKE, *STUDENT_SMOKE]
    run_training(
        [STUDENT, ROOT / "configs/distill/full.yaml"],
        tmp_path,
        [*over, f"distill.inherit_head={str(inherit).lower()}"],
        teacher=teacher_ckpt,
    )
    student, teacher = captured["model"], captured["teacher"]
    assert teacher is not None and captured["distill_loss"] is not None
    assert _same_task_heads(student, teacher) is inherit
    line = f"head task branches inherited from {teacher_ckpt} (sha256 {file_sha256(teacher_ckpt)[:12]})"
    assert (line in capsys.readouterr().out) is inherit


def test_plain_student_inherits_from_the_checkpoint_named(smoke_world, teacher_ckpt, captured, tmp_path):
    over = [f"data.dataroot={smoke_world.dataroot}", *RUN_SMOKE, *STUDENT_SMOKE]
    run_training([STUDENT], tmp_path / "plain", over)
    assert captured["teacher"] is None and not _same_task_heads(captured["model"], _teacher())
    run_training([STUDENT], tmp_path / "inherited", [*over, f"inherit_head_from={teacher_ckpt}"])
    assert captured["teacher"] is None  # still a plain run: no distillation
    assert _same_task_heads(captured["model"], _teacher())
    inherit = f"inherit_head_from={teacher_ckpt}"
    cfg = load_config(RunConfig, [STUDENT], [*over, inherit])  # resume checks the checkpoint's config
    save_checkpoint(tmp_path / "r.pt", build_model(cfg), cfg, step=0, epoch=0)
    run_training([STUDENT], tmp_path / "resumed", [*over, inherit], resume=tmp_path / "r.pt")
    assert not _same_task_heads(captured["model"], _teacher())  # resume: the checkpoint's head wins
