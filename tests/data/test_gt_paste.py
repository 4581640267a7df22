"""GT-paste on the smoke world: the database (train split only, each object's points, the cache), the
rotated-rectangle overlap test, pasted objects that overlap nothing and carry exactly their points,
determinism, the order against the BEV augmentation, and the teacher-only rule."""

import dataclasses
import warnings

import numpy as np
import pytest
from shapely.geometry import Polygon

from distillbev.config import ConfigError, load_config
from distillbev.data import gt_paste as gt_paste_module
from distillbev.data.config import GTPasteConfig, GTPasteGroups, ReaderConfig
from distillbev.data.geometry import transform_boxes, transform_points
from distillbev.data.gt_paste import bev_boxes_overlap, database_paths, paste_objects, sample_objects
from distillbev.data.index import load_index
from distillbev.data.nuscenes import NuScenesDataset
from distillbev.structures import CLASS_NAMES, box_corners_bev, points_in_boxes
from distillbev.train.config import RunConfig
from distillbev.train.data import reader_for_run

HUGE = (-1e4, -1e4, -1e4, 1e4, 1e4, 1e4)  # a point range that filters nothing
#: Enough to paste several objects of every class into every smoke sample.
MANY = GTPasteGroups(**{name: 12 for name in CLASS_NAMES})
TEACHER = ReaderConfig(
    point_range=HUGE,
    load_images=False,
    load_prev=False,
    image_aug=False,
    bev_aug=False,
    gt_paste=GTPasteConfig(enabled=True, sample_groups=MANY, min_points=5),
)


def box(x, y, l, w, yaw=0.0):
    return [x, y, 0.0, l, w, 1.5, yaw, 0.0, 0.0]


def polygon(b):
    return Polygon(box_corners_bev(np.asarray([b]))[0])


@pytest.fixture(scope="module")
def teacher_sets(smoke_world):
    """The smoke train split read plainly (no paste) and with GT-paste (seed 0), no BEV augmentation."""
    w = smoke_world
    plain = NuScenesDataset(
        w.dataroot, w.version, w.train_split, dataclasses.replace(TEACHER, gt_paste=GTPasteConfig())
    )
    pasted = NuScenesDataset(w.dataroot, w.version, w.train_split, TEACHER, train=True, seed=0)
    return plain, pasted


def test_overlap_test_on_hand_made_rectangles():
    a = box(0.0, 0.0, 4.0, 2.0)  # x in [-2, 2], y in [-1, 1]
    cases = [
        (box(4.5, 0.0, 4.0, 2.0), False),  # a 0.5 m gap along x
        (box(3.9, 0.0, 4.0, 2.0), True),  # 0.1 m overlap
        (box(0.0, 0.0, 1.0, 1.0), True),  # inside
        # a 2 x 2 square turned 45 deg: its bounding square overlaps a near a's corner (2, 1), the square
        # itself stays 0.41 m away (edge x + y = 3.59); moved to (2.5, 1.5) it covers that corner
        (box(3.0, 2.0, 2.0, 2.0, np.pi / 4), False),
        (box(2.5, 1.5, 2.0, 2.0, np.pi / 4), True),
    ]
    got = bev_boxes_overlap(np.asarray([a]), np.asarray([c for c, _ in cases]))[0]
    assert list(got) == [expected for _, expected in cases]
    for c, expected in cases:  # shapely agrees
        assert (polygon(a).intersection(polygon(c)).area > 0) == expected
    touching = box(4.0, 0.0, 4.0, 2.0)  # shares the edge x = 2: zero area, still refused (conservative)
    assert bev_boxes_overlap(np.asarray([a]), np.asarray([touching]))[0, 0]
    assert bev_boxes_overlap(np.zeros((0, 9)), np.asarray([a])).shape == (0, 1)


def test_database_holds_the_train_split_objects_with_their_points(smoke_world, teacher_sets):
    plain, pasted = teacher_sets
    db = pasted._gt_db
    train = load_index(smoke_world.dataroot, smoke_world.version, smoke_world.train_split)
    val = load_index(smoke_world.dataroot, smoke_world.version, smoke_world.val_split)
    assert db.split == smoke_world.train_split and len(db) > 20
    assert set(db.tokens) <= set(train.tokens) and not set(db.tokens) & set(val.tokens)
    assert db.points.shape[1] == 5 and len(db.points) == db.point_offsets[-1]
    by_token = {t: i for i, t in enumerate(plain.records.tokens)}
    for k in range(len(db)):
        rec = plain.records[by_token[db.tokens[k]]]
        j = int(np.flatnonzero((rec.boxes == db.boxes[k]).all(1))[0])  # a GT box of its source sample
        assert rec.labels[j] == db.labels[k] and rec.velocity_valid[j] == db.velocity_valid[k]
        source = plain.source_points(rec)
        inside = source[points_in_boxes(source, db.boxes[k : k + 1])[:, 0]]
        assert np.array_equal(db.object_points(k), inside)  # exactly its points, every channel, unmoved


def test_database_is_cached_per_split_and_reader_setting(smoke_world, teacher_sets, monkeypatch):
    _, pasted = teacher_sets
    w = smoke_world
    path = database_paths(pasted.records, w.dataroot, TEACHER)[0]
    assert (path / "meta.npz").is_file() and (path / "points.npy").is_file()
    assert path.parent == w.dataroot / ".distillbev_cache" and w.train_split in path.name

    def no_build(*args, **kwargs):
        raise AssertionError("the cached database should have been read")

    monkeypatch.setattr(gt_paste_module, "build_database", no_build)
    again = NuScenesDataset(w.dataroot, w.version, w.train_split, TEACHER, train=True, seed=0)
    assert np.array_equal(again._gt_db.boxes, pasted._gt_db.boxes)
    assert np.array_equal(np.asarray(again._gt_db.points), np.asarray(pasted._gt_db.points))
    fewer = dataclasses.replace(TEACHER, num_sweeps=0)
    assert database_paths(pasted.records, w.dataroot, fewer) != database_paths(
        pasted.records, w.dataroot, TEACHER
    )
    with pytest.raises(AssertionError, match="cached database"):  # another setting: another database
        NuScenesDataset(w.dataroot, w.version, w.train_split, fewer, train=True, seed=0)


def test_unreadable_or_unwritable_cache_folders_fall_back(teacher_sets, tmp_path, monkeypatch):
    _, pasted = teacher_sets
    first, second = tmp_path / "dataroot_cache", tmp_path / "user_cache"
    monkeypatch.setattr(gt_paste_module, "cache_dirs", lambda root: [first, second])
    real_write = gt_paste_module._write

    def write(path, db):
        if path.parent == first:
            raise OSError("read-only dataroot")
        real_write(path, db)

    monkeypatch.setattr(gt_paste_module, "_write", write)
    load = pasted.source_points
    with pytest.warns(UserWarning, match="could not write the GT database"):
        db = gt_paste_module.load_database(pasted.records, "unused", TEACHER, load)
    path = gt_paste_module.database_paths(pasted.records, "unused", TEACHER)[1]
    assert not first.exists() and path.parent == second and np.array_equal(db.boxes, pasted._gt_db.boxes)
    np.save(path / "points.npy", np.zeros((3, 5), np.float32))  # no longer what meta.npz describes
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = gt_paste_module.load_database(pasted.records, "unused", TEACHER, load)
    assert any("unreadable GT database" in str(w.message) for w in caught)
    assert np.array_equal(np.asarray(again.points), np.asarray(pasted._gt_db.points))


def test_pasted_objects_overlap_nothing_and_carry_exactly_their_points(teacher_sets):
    plain, pasted = teacher_sets
    db = pasted._gt_db
    total = 0
    for i in range(len(plain)):
        before, after = plain[i], pasted[i]
        n = len(before.boxes)
        assert np.array_equal(after.boxes[:n], before.boxes) and np.array_equal(
            after.labels[:n], before.labels
        )
        chosen = sample_objects(db, TEACHER.gt_paste, before.boxes, before.labels, pasted._paste_rng(i))
        assert np.array_equal(after.boxes[n:], db.boxes[chosen])
        assert np.array_equal(after.labels[n:], db.labels[chosen])
        total += len(chosen)
        # BEV IoU 0 between every pasted box and every other box (shapely, independent of the SAT test)
        polys = [polygon(b) for b in after.boxes]
        for a in range(n, len(polys)):
            for b in range(len(polys)):
                if a != b:
                    assert polys[a].intersection(polys[b]).area < 1e-9, (i, a, b)
        # the points inside each pasted box are exactly the database object's; the originals keep theirs
        inside = points_in_boxes(after.points, after.boxes)
        for m, k in enumerate(chosen):
            got = after.points[inside[:, n + m]]
            want = db.object_points(k)
            assert np.array_equal(got[np.lexsort(got.T)], want[np.lexsort(want.T)]), (i, k)
        old_inside = points_in_boxes(before.points, before.boxes)
        for m in range(n):
            got, want = after.points[inside[:, m]], before.points[old_inside[:, m]]
            assert np.array_equal(got[np.lexsort(got.T)], want[np.lexsort(want.T)])
        # per class at most max(0, N - present) pasted, each with at least min_points points
        present = np.bincount(before.labels, minlength=len(CLASS_NAMES))
        added = np.bincount(db.labels[chosen], minlength=len(CLASS_NAMES))
        assert (added <= np.maximum(0, 12 - present)).all()
        assert (db.num_points[chosen] >= 5).all()
    assert total >= 2 * len(plain)  # several objects pasted per sample


def test_paste_is_deterministic_for_a_seed(smoke_world, teacher_sets):
    _, pasted = teacher_sets
    w = smoke_world
    twin = NuScenesDataset(w.dataroot, w.version, w.train_split, TEACHER, train=True, seed=0)
    other = NuScenesDataset(w.dataroot, w.version, w.train_split, TEACHER, train=True, seed=1)
    differs = False
    for i in (2, 0, 1):  # any order
        a, b, c = pasted[i], twin[i], other[i]
        assert np.array_equal(a.points, b.points) and np.array_equal(a.boxes, b.boxes)
        differs |= len(a.boxes) != len(c.boxes) or not np.array_equal(a.boxes, c.boxes)
    assert differs  # another seed, other draws
    twin.set_epoch(1)
    assert not np.array_equal(twin[0].boxes, pasted[0].boxes)  # and another epoch too


def test_paste_comes_before_the_bev_augmentation(smoke_world, teacher_sets):
    _, pasted = teacher_sets
    w = smoke_world
    cfg = dataclasses.replace(TEACHER, bev_aug=True)
    aug = NuScenesDataset(w.dataroot, w.version, w.train_split, cfg, train=True, seed=0)
    for i in range(3):
        flat, turned = pasted[i], aug[i]  # same paste stream, the BEV stream is separate
        m = turned.bev_aug
        assert not np.allclose(m, np.eye(4))
        assert np.allclose(turned.boxes, transform_boxes(flat.boxes, m))
        assert np.allclose(turned.points, transform_points(flat.points.astype(np.float64), m), atol=1e-4)


def test_nothing_is_pasted_without_the_option_or_outside_training(smoke_world, teacher_sets):
    plain, pasted = teacher_sets
    w = smoke_world
    evaluation = NuScenesDataset(w.dataroot, w.version, w.train_split, TEACHER, train=False)
    assert evaluation._gt_db is None
    assert np.array_equal(evaluation[0].points, plain[0].points)
    s = plain[0]
    zero = GTPasteConfig(enabled=True, sample_groups=GTPasteGroups(**{n: 0 for n in CLASS_NAMES}))
    rng = np.random.default_rng(0)
    out = paste_objects(s.points, s.boxes, s.labels, s.velocity_valid, pasted._gt_db, zero, rng)
    assert len(out.pasted) == 0 and out.points is s.points and out.boxes is s.boxes


def test_camera_students_never_get_pasted_objects(smoke_world):
    w = smoke_world
    with_images = dataclasses.replace(TEACHER, load_images=True)
    with pytest.raises(ValueError, match="data.reader.gt_paste.enabled"):
        NuScenesDataset(w.dataroot, w.version, w.train_split, with_images, train=True)
    student = load_config(RunConfig, [], ["model=student", "data.reader.gt_paste.enabled=true"])
    with pytest.raises(ConfigError, match="data.reader.gt_paste.enabled"):
        reader_for_run(student)
    teacher = load_config(RunConfig, [], ["model=centerpoint", "data.reader.gt_paste.enabled=true"])
    assert reader_for_run(teacher).gt_paste.enabled and not reader_for_run(teacher).load_images


def test_presets_full_teachers_paste_tiny_ones_do_not():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "configs" / "teacher"
    for name, enabled in (
        ("centerpoint_pillar_full", True),
        ("mvp_full", True),
        ("centerpoint_pillar", False),
        ("mvp", False),
    ):
        paste = load_config(RunConfig, [root / f"{name}.yaml"]).data.reader.gt_paste
        assert paste.enabled is enabled, name
    full = load_config(RunConfig, [root / "centerpoint_pillar_full.yaml"]).data.reader.gt_paste
    assert dataclasses.astuple(full.sample_groups) == (2, 3, 7, 4, 6, 2, 6, 6, 2, 2)  # CenterPoint's nuScenes
    assert [f.name for f in dataclasses.fields(GTPasteGroups)] == list(CLASS_NAMES)
