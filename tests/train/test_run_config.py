"""``RunConfig``'s checks of values that two sections state: the image size and the point range."""

from __future__ import annotations

from pathlib import Path

import pytest

from distillbev.config import ConfigError, load_config
from distillbev.structures import POINT_RANGE
from distillbev.train.config import RunConfig

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
MODELS = sorted((CONFIGS / "teacher").glob("*.yaml")) + sorted((CONFIGS / "student").glob("*.yaml"))


@pytest.mark.parametrize("preset", MODELS, ids=lambda p: p.stem)
def test_every_model_preset_agrees_with_its_reader(preset):
    for files in ([preset], [preset, CONFIGS / "scale" / "smoke.yaml"]):
        cfg = load_config(RunConfig, files)
        if cfg.model == "student":
            assert cfg.data.reader.image.final_size == cfg.student.image_size
        assert cfg.data.reader.point_range == POINT_RANGE


def test_a_student_reader_resizes_to_the_student_input():
    student, size = CONFIGS / "student" / "bevdet.yaml", "student.image_size=[32, 96]"
    with pytest.raises(ConfigError, match=r"final_size \(112, 320\) differs from student.image_size"):
        load_config(RunConfig, [student], [size])
    cfg = load_config(RunConfig, [student], [size, "data.reader.image.final_size=[32, 96]"])
    assert cfg.student.image_size == (32, 96)
    # a teacher reads no images: its reader's size is not checked
    teacher = CONFIGS / "teacher" / "centerpoint_pillar.yaml"
    load_config(RunConfig, [teacher], ["data.reader.image.final_size=[8, 16]"])


def test_the_reader_range_must_lie_on_the_model_grid():
    teacher, student = CONFIGS / "teacher" / "centerpoint_pillar.yaml", CONFIGS / "student" / "bevdet.yaml"
    wider = "data.reader.point_range=[-60, -51.2, -5, 51.2, 51.2, 3]"
    with pytest.raises(ConfigError, match="reaches beyond student.bev_range"):
        load_config(RunConfig, [student], [wider])
    with pytest.raises(ConfigError, match="reaches beyond teacher.point_range"):
        load_config(RunConfig, [teacher], [wider])
    # a narrower reader (fewer objects, e.g. a near-range run) is fine
    cfg = load_config(RunConfig, [teacher], ["data.reader.point_range=[-10, -10, -5, 10, 10, 3]"])
    assert cfg.data.reader.point_range[3] == 10
