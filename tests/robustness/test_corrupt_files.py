"""Parts 1 and 4 of issue 17: corrupt input files (a LiDAR file with a partial point, a truncated
JPEG, a truncated table) are errors naming the file, not silently wrong samples or tracebacks."""

from __future__ import annotations

import cv2
import pytest
from robust_helpers import cli, error_line

from distillbev.data.index import load_index
from distillbev.data.nuscenes import NuScenesDataset, read_points


def _first_record(world, smoke_world):
    return load_index(world, smoke_world.version, smoke_world.train_split)[0]


@pytest.mark.parametrize("extra_bytes", [1, 2, 3])
def test_lidar_file_with_a_partial_float_is_refused(world, smoke_world, extra_bytes):
    # 20k + 1..3 bytes: np.fromfile reads whole floats only, so counting floats saw 20k bytes of points.
    path = world / _first_record(world, smoke_world).lidar_path
    points = read_points(path)
    with open(path, "ab") as f:
        f.write(b"\0" * extra_bytes)
    with pytest.raises(ValueError, match=f"{path.name}.*{points.nbytes + extra_bytes} bytes"):
        read_points(path)
    ds = NuScenesDataset(world, smoke_world.version, smoke_world.train_split)
    with pytest.raises(ValueError, match=str(path)):
        ds[0]


def test_truncated_jpeg_is_refused(world, smoke_world):
    path = world / _first_record(world, smoke_world).cameras[0].path
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert cv2.imread(str(path)) is not None  # libjpeg alone decodes it (grey bottom half, a warning)
    ds = NuScenesDataset(world, smoke_world.version, smoke_world.train_split)
    with pytest.raises(ValueError, match=f"truncated JPEG.*{path}"):
        ds[0]


def test_truncated_table_json_names_the_file(world, tmp_path):
    table = next(world.glob("v1.0-*")) / "sample_annotation.json"
    table.write_text(table.read_text()[:-100])
    r = cli("viz", "sample", "--dataroot", world, "--out", tmp_path / "pics")
    assert str(table) in error_line(r) and "not valid JSON" in r.output
    assert not (tmp_path / "pics").exists()
