"""``generate_world(scenes=...)``: a subset of scenes equals the same scenes of the whole world."""

import json

import pytest

from distillbev.data.synthetic.generate import generate_world


def test_val_scenes_alone_equal_the_full_worlds(smoke_world, tmp_path):
    cfg = smoke_world.config
    val = list(range(cfg.num_scenes - cfg.num_val_scenes, cfg.num_scenes))
    summary = generate_world(cfg, tmp_path / "val", seed=0, scenes=val)
    assert summary["scenes"] == len(val)
    full_tables = smoke_world.dataroot / cfg.version
    sub_tables = tmp_path / "val" / cfg.version
    full_splits = json.loads((full_tables / "splits.json").read_text())
    sub_splits = json.loads((sub_tables / "splits.json").read_text())
    assert sub_splits[cfg.val_split] == full_splits[cfg.val_split] and sub_splits[cfg.train_split] == []
    full = {r["token"]: r for r in json.loads((full_tables / "sample_annotation.json").read_text())}
    sub = json.loads((sub_tables / "sample_annotation.json").read_text())
    assert sub and all(full[r["token"]] == r for r in sub)  # same tokens, boxes and attributes
    data = json.loads((sub_tables / "sample_data.json").read_text())
    some = [r["filename"] for r in data if r["filename"].endswith(".jpg")][:3]
    for name in some:  # the same rendered bytes
        assert (tmp_path / "val" / name).read_bytes() == (smoke_world.dataroot / name).read_bytes()


def test_bad_scene_indices_are_refused(smoke_world, tmp_path):
    with pytest.raises(ValueError, match="scenes"):
        generate_world(smoke_world.config, tmp_path / "w", seed=0, scenes=[smoke_world.config.num_scenes])
