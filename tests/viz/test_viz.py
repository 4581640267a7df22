"""Box projection, camera mosaic and BEV plot (hand-computed geometry; the world-based check is below)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from distillbev.eval.nuscenes_eval import load_nuscenes, split_sample_tokens
from distillbev.structures import CAMERA_NAMES, CLASS_NAMES
from distillbev.viz.bev import render_bev
from distillbev.viz.cameras import (
    CLASS_COLORS,
    GT_COLOR,
    draw_boxes,
    load_sample_for_viz,
    project_box_edges,
    render_camera_mosaic,
)

K = np.array([[900.0, 0.0, 800.0], [0.0, 900.0, 450.0], [0.0, 0.0, 1.0]])
# A camera at the LiDAR origin looking along +x: camera x = -y_lidar, y = -z_lidar, z = +x_lidar.
CAM2LIDAR = np.array([[0, 0, 1, 0], [-1, 0, 0, 0], [0, -1, 0, 0], [0, 0, 0, 1]], dtype=np.float64)


def _drawn_bbox(img: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(img.any(-1))
    return xs.min(), ys.min(), xs.max(), ys.max()


def test_projection_matches_pinhole_by_hand():
    """A 2 m cube 10 m ahead: its near face (depth 9 m) spans 800 +- 900/9 = [700, 900] px in u."""
    box = np.array([[10.0, 0.0, 0.0, 2.0, 2.0, 2.0, 0.0, 0.0, 0.0]])
    segs = project_box_edges(box, K, CAM2LIDAR)[0]
    assert segs.shape == (14, 2, 2)  # 12 edges + the 2 front-face diagonals
    np.testing.assert_allclose(segs[..., 0].min(), 700.0)
    np.testing.assert_allclose(segs[..., 0].max(), 900.0)
    np.testing.assert_allclose(segs[..., 1].min(), 350.0)
    np.testing.assert_allclose(segs[..., 1].max(), 550.0)
    img = draw_boxes(np.zeros((900, 1600, 3), np.uint8), K, CAM2LIDAR, box, [GT_COLOR], thickness=1)
    x0, y0, x1, y1 = _drawn_bbox(img)
    assert abs(x0 - 700) <= 1 and abs(x1 - 900) <= 1 and abs(y0 - 350) <= 1 and abs(y1 - 550) <= 1


def test_boxes_behind_the_camera_are_clipped():
    behind = np.array([[-10.0, 0.0, 0.0, 2.0, 2.0, 2.0, 0.0, 0.0, 0.0]])
    assert project_box_edges(behind, K, CAM2LIDAR)[0].shape == (0, 2, 2)
    img = draw_boxes(np.zeros((900, 1600, 3), np.uint8), K, CAM2LIDAR, behind, [GT_COLOR])
    assert not img.any()
    # Straddling the camera (x from -3 to 3 m): the edges along x are cut at depth 0.1 m, where the
    # box side (1 m off-axis) projects to 800 +- 900 * 1 / 0.1 px; nothing behind is mirrored in front.
    straddle = np.array([[0.0, 0.0, 0.0, 6.0, 2.0, 2.0, 0.0, 0.0, 0.0]])
    segs = project_box_edges(straddle, K, CAM2LIDAR, near=0.1)[0]
    assert len(segs) == 4 + 4 + 2  # front face, the 4 cut side edges, the heading cross
    np.testing.assert_allclose(np.abs(segs[..., 0] - 800).max(), 9000.0)
    np.testing.assert_allclose(np.abs(segs[..., 0] - 800).min(), 900 / 3)


def _cameras(n_boxes: int = 2):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 60, (90, 160, 3), dtype=np.uint8) for _ in range(6)]
    k = K * np.array([[0.1], [0.1], [1.0]])  # scaled to 160x90
    yaws = np.deg2rad([55, 0, -55, 110, 180, -110])
    c2l = []
    for yaw in yaws:
        r = np.array([[np.cos(yaw), -np.sin(yaw), 0], [np.sin(yaw), np.cos(yaw), 0], [0, 0, 1]])
        t = np.eye(4)
        t[:3, :3] = r @ CAM2LIDAR[:3, :3]
        c2l.append(t)
    gt = np.array([[10.0, 0, 0, 4, 2, 1.5, 0.3, 0, 0], [-8.0, 3, 0, 1, 1, 1.8, 0, 0, 0]])  # car, pedestrian
    return images, np.stack([k] * 6), np.stack(c2l), gt[:n_boxes], np.array([0, 8])[:n_boxes]


def _count(tile: np.ndarray, color: tuple[int, int, int]) -> int:
    """Pixels within a small distance of ``color``."""
    return int((np.abs(tile.astype(int) - color).sum(-1) < 40).sum())


def test_camera_mosaic_png(tmp_path):
    images, ks, c2l, gt, labels = _cameras()
    pred = (gt + [0.0, 1.0, 0, 0, 0, 0, 0, 0, 0], np.array([0.9, 0.1]), labels)  # 2nd below the threshold
    out = tmp_path / "mosaic.png"
    mosaic = render_camera_mosaic(images, ks, c2l, gt, labels, pred, out, scale=1.0)
    assert mosaic.shape == (180, 480, 3)
    np.testing.assert_array_equal(np.asarray(Image.open(out)), mosaic)
    front, back = mosaic[:90, 160:320], mosaic[90:, 160:320]  # CAM_FRONT, CAM_BACK tiles
    assert _count(front, GT_COLOR) > 30 and _count(front, CLASS_COLORS["car"]) > 30
    assert _count(back, GT_COLOR) > 30 and _count(back, CLASS_COLORS["pedestrian"]) == 0
    plain = render_camera_mosaic(images, ks, c2l, gt[:0], labels[:0], scale=1.0)
    assert _count(plain, GT_COLOR) == 0
    with pytest.raises(ValueError, match="expected 6 cameras"):
        render_camera_mosaic(images[:5], ks, c2l, gt, labels)


def test_bev_png(tmp_path):
    rng = np.random.default_rng(0)
    points = rng.uniform(-50, 50, (2000, 4)).astype(np.float32)
    _, _, _, gt, labels = _cameras()
    out = tmp_path / "bev.png"
    render_bev(points, gt, labels, (gt, np.ones(2), labels), out, range=30.0)
    img = np.asarray(Image.open(out))
    assert img.ndim == 3 and img.shape[0] > 300 and img.std() > 10
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bev.png"]
    with pytest.raises(ValueError, match="points must be"):
        render_bev(points[:, :2], gt, labels)


@pytest.fixture(scope="module")
def world_sample(smoke_world):
    """The first val sample of the smoke world, loaded for viz with the devkit."""
    nusc = load_nuscenes(smoke_world.dataroot, smoke_world.version)
    token = split_sample_tokens(nusc, smoke_world.val_split)[0]
    return nusc, load_sample_for_viz(nusc, token)


def _bbox(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=float)


def _coverage(drawn: np.ndarray, target: np.ndarray) -> float:
    """Fraction of the ``target`` bbox's area inside the ``drawn`` bbox."""
    w = max(0.0, min(drawn[2], target[2]) - max(drawn[0], target[0]))
    h = max(0.0, min(drawn[3], target[3]) - max(drawn[1], target[1]))
    return w * h / ((target[2] - target[0]) * (target[3] - target[1]))


def test_projected_boxes_land_on_instance_masks(smoke_world, world_sample):
    """Each visible object's drawn box encloses its rendered instance-mask pixels (and another
    object's box does not): checks K, camera->LiDAR poses and the box frame of load_sample_for_viz."""
    _, s = world_sample
    right, wrong = [], []
    for c, cam in enumerate(CAMERA_NAMES):
        image = Path(s["image_paths"][c])
        stem = image.name[: -len(image.suffix)]
        masks = Path(smoke_world.dataroot) / "masks" / cam
        mask = np.asarray(Image.open(masks / f"{stem}.png"))
        instances = json.loads((masks / f"{stem}.json").read_text())["instances"]
        for inst in instances:
            m = mask == inst["id"]
            if m.sum() < 50 or inst["annotation_token"] not in s["ann_tokens"]:
                continue
            i = s["ann_tokens"].index(inst["annotation_token"])
            assert CLASS_NAMES[s["gt_labels"][i]] == inst["detection_name"]
            blank = np.zeros_like(s["images"][c])
            for j, out in ((i, right), ((i + 1) % len(s["gt_boxes"]), wrong)):
                drawn = draw_boxes(blank, s["intrinsics"][c], s["cam2lidar"][c], s["gt_boxes"][j : j + 1],
                                   [(255, 255, 255)], thickness=1)
                out.append(_coverage(_bbox(drawn.any(-1)), _bbox(m)) if drawn.any() else 0.0)
    assert len(right) >= 5
    assert min(right) > 0.9, right
    assert np.mean(wrong) < 0.3, wrong


def test_load_sample_for_viz_matches_devkit_tables(world_sample):
    nusc, s = world_sample
    sample = nusc.get("sample", s["sample_token"])
    anns = [nusc.get("sample_annotation", a) for a in sample["anns"]]
    assert len(s["gt_boxes"]) == len(anns)  # every synthetic annotation is a detection class
    assert len(s["images"]) == 6 and all(img.dtype == np.uint8 and img.ndim == 3 for img in s["images"])
    lidar = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
    n_points = np.fromfile(Path(nusc.dataroot) / lidar["filename"], dtype=np.float32).size // 5
    assert s["points"].shape == (n_points, 4)
    # centres mapped back to global equal the annotation translations
    for box, token in zip(s["gt_boxes"], s["ann_tokens"], strict=True):
        centre = s["lidar2global"] @ np.r_[box[:3], 1.0]
        np.testing.assert_allclose(centre[:3], nusc.get("sample_annotation", token)["translation"], atol=1e-6)


def test_world_sample_renders(tmp_path, world_sample):
    _, s = world_sample
    mosaic = render_camera_mosaic(s["images"], s["intrinsics"], s["cam2lidar"], s["gt_boxes"], s["gt_labels"],
                                  out_path=tmp_path / "cams.png")
    render_bev(s["points"], s["gt_boxes"], s["gt_labels"], out_path=tmp_path / "bev.png")
    for name in ("cams.png", "bev.png"):
        assert (tmp_path / name).stat().st_size > 1000
    assert _count(mosaic, GT_COLOR) > 100
