"""CBGS: hand-computed per-class draws, class balance on the smoke world, the loader wiring."""

import numpy as np
import pytest
from torch.utils.data import Subset
from torch.utils.data.distributed import DistributedSampler

from distillbev.config import load_config
from distillbev.data.cbgs import CBGSDataset, cbgs_indices, class_sample_lists, kept_labels
from distillbev.data.nuscenes import NuScenesDataset
from distillbev.train.config import RunConfig
from distillbev.train.data import make_loader
from distillbev.train.distributed import DistInfo

CAR, PED, CONE = 0, 8, 9
# 10 samples: car in 7 (0-6), pedestrian in 3 (5-7), cone in 1 (8), sample 9 has no box.
LABELS = [
    np.array([CAR, CAR]),
    np.array([CAR]),
    np.array([CAR]),
    np.array([CAR, CAR, CAR]),
    np.array([CAR]),
    np.array([CAR, PED]),
    np.array([PED, CAR, PED]),
    np.array([PED]),
    np.array([CONE]),
    np.array([], dtype=np.int64),
]


def class_shares(labels, indices) -> dict[int, float]:
    """Each class's share of class occurrences (a sample counts once per class it holds) over ``indices``."""
    counts: dict[int, int] = {}
    for i in indices:
        for c in np.unique(labels[i]):
            counts[int(c)] = counts.get(int(c), 0) + 1
    total = sum(counts.values())
    return {c: n / total for c, n in counts.items()}


def imbalance(labels, indices) -> float:
    """The largest distance of a class's share from 1/K (K = classes present)."""
    shares = class_shares(labels, indices)
    return max(abs(s - 1 / len(shares)) for s in shares.values())


def test_class_lists_count_a_sample_once_per_class():
    lists = class_sample_lists(LABELS)
    assert list(lists) == [CAR, PED, CONE]  # ascending, empty classes skipped
    np.testing.assert_array_equal(lists[CAR], [0, 1, 2, 3, 4, 5, 6])
    np.testing.assert_array_equal(lists[PED], [5, 6, 7])
    np.testing.assert_array_equal(lists[CONE], [8])


def test_hand_computed_draws_and_balance():
    # D = 7 + 3 + 1 = 11, K = 3: draws_c = int(len_c * (1/3) / (len_c / 11)) = int(11 / 3) = 3 each.
    idx = cbgs_indices(LABELS, seed=0)
    assert len(idx) == 9
    assert set(idx[0:3]) <= {0, 1, 2, 3, 4, 5, 6}  # the car block
    assert set(idx[3:6]) <= {5, 6, 7}  # the pedestrian block
    np.testing.assert_array_equal(idx[6:9], [8, 8, 8])  # the only cone sample, three times
    assert 9 not in idx
    before = imbalance(LABELS, range(len(LABELS)))  # shares 7/11, 3/11, 1/11
    assert before == pytest.approx(7 / 11 - 1 / 3)
    after = imbalance(LABELS, idx)  # at worst 6/15, 6/15, 3/15
    assert after <= 2 / 15 + 1e-9 and after < before / 2
    assert class_shares(LABELS, idx)[CONE] >= 0.2 > class_shares(LABELS, range(10))[CONE] * 2


def test_draws_use_classes_present_and_are_seeded():
    # car in 3 samples, cone in 1: D = 4, K = 2 -> car int(3 * 0.5 / 0.75) = 2, cone int(1 * 0.5 / 0.25) = 2.
    labels = [np.array([CAR]), np.array([CAR]), np.array([CAR]), np.array([CONE])]
    idx = cbgs_indices(labels, seed=5)
    assert len(idx) == 4 and set(idx[:2]) <= {0, 1, 2}
    np.testing.assert_array_equal(idx[2:], [3, 3])
    np.testing.assert_array_equal(cbgs_indices(LABELS, seed=7), cbgs_indices(LABELS, seed=7))
    draws = {tuple(cbgs_indices(LABELS, seed=s)) for s in range(10)}
    assert len(draws) > 1  # the seed changes the draw


def _cfg(smoke_world, *overrides: str) -> RunConfig:
    return load_config(
        RunConfig,
        [],
        [
            f"data.dataroot={smoke_world.dataroot}",
            f"data.version={smoke_world.version}",
            f"data.train_split={smoke_world.train_split}",
            f"data.val_split={smoke_world.val_split}",
            "model=centerpoint",
            "optim.batch_size=2",
            *overrides,
        ],
    )


def _dataset_labels(ds: NuScenesDataset) -> list[np.ndarray]:
    return kept_labels(ds.records, ds.cfg, range(len(ds.records)))


# The full-range smoke world has nearly every class in every sample (nothing to balance); a 20 m range
# leaves 6 classes in 1 to 8 of the 8 training samples.
NEAR = "data.reader.point_range=[-10, -10, -5, 10, 10, 3]"


def test_loader_with_cbgs_balances_the_smoke_world(smoke_world, capsys):
    plain = make_loader(_cfg(smoke_world, NEAR), train=True).dataset
    loader = make_loader(_cfg(smoke_world, NEAR, "data.cbgs=true"), train=True)
    ds = loader.dataset
    assert isinstance(plain, NuScenesDataset) and isinstance(ds, CBGSDataset)
    assert ds.num_source == len(plain) and len(ds) > len(plain)
    assert f"CBGS: {len(plain)} training samples -> {len(ds)} per epoch" in capsys.readouterr().out
    labels = _dataset_labels(ds.dataset)
    # the labels CBGS counts are the ones the reader returns (test mode: the same filters, no augmentation)
    reader = NuScenesDataset(
        smoke_world.dataroot, smoke_world.version, smoke_world.train_split, ds.dataset.cfg
    )
    for i in range(len(reader)):
        np.testing.assert_array_equal(np.sort(reader[i].labels), np.sort(labels[i]))
    # one block per class, int(len_c * (1/K) / (len_c / D)) draws, each holding that class
    lists = class_sample_lists(labels)
    total, start = sum(len(v) for v in lists.values()), 0
    assert len(lists) == 6 and len(ds) == sum(
        int(len(v) * ((1 / 6) / (len(v) / total))) for v in lists.values()
    )
    for c, members in lists.items():
        n = int(len(members) * ((1 / 6) / (len(members) / total)))  # mmdet3d's float order
        assert n >= 1 and all(c in labels[i] for i in ds.indices[start : start + n])
        start += n
    before, after = class_shares(labels, range(len(plain))), class_shares(labels, ds.indices)
    assert set(after) == set(before)
    assert max(after.values()) / min(after.values()) < 0.75 * max(before.values()) / min(before.values())
    rarest = min(before, key=before.get)
    assert after[rarest] > 1.25 * before[rarest]
    assert imbalance(labels, ds.indices) < imbalance(labels, range(len(plain)))
    again = make_loader(_cfg(smoke_world, NEAR, "data.cbgs=true"), train=True).dataset
    assert again.indices == ds.indices  # deterministic for the same seed
    other = make_loader(_cfg(smoke_world, NEAR, "data.cbgs=true", "seed=1"), train=True).dataset
    assert other.indices != ds.indices
    full = make_loader(_cfg(smoke_world, "data.cbgs=true"), train=True).dataset
    assert len(full) > len(full.dataset)


def test_cbgs_keeps_epochs_samplers_and_the_sample_limit(smoke_world):
    loader = make_loader(_cfg(smoke_world, "data.cbgs=true", "data.max_train_samples=3"), train=True)
    ds = loader.dataset
    assert ds.num_source == 3 and set(ds.indices) <= {0, 1, 2}
    labels = _dataset_labels(ds.dataset)
    assert len(ds) == len(cbgs_indices(labels[:3], seed=0))
    # the training loop's lookup reaches the reader, so each epoch gets new augmentation draws
    base = getattr(loader.dataset, "dataset", loader.dataset)
    assert isinstance(base, NuScenesDataset)
    base.set_epoch(3)
    assert base.epoch == 3
    ds.set_epoch(4)
    assert base.epoch == 4
    assert ds[0].token == base.records.tokens[ds.indices[0]]
    ddp = make_loader(_cfg(smoke_world, "data.cbgs=true"), train=True, info=DistInfo(rank=1, world_size=2))
    assert isinstance(ddp.sampler, DistributedSampler)
    assert len(ddp.sampler) == (len(ddp.dataset) + 1) // 2
    assert all(0 <= i < len(ddp.dataset) for i in ddp.sampler)


def test_cbgs_off_and_val_loaders_are_unchanged(smoke_world, capsys):
    ds = make_loader(_cfg(smoke_world), train=True).dataset
    assert type(ds) is NuScenesDataset and len(ds) == len(ds.records)
    limited = make_loader(_cfg(smoke_world, "data.max_train_samples=3"), train=True).dataset
    assert type(limited) is Subset and list(limited.indices) == [0, 1, 2]
    val = make_loader(_cfg(smoke_world, "data.cbgs=true"), train=False).dataset
    assert type(val) is NuScenesDataset and val.split == smoke_world.val_split
    assert len(val) == len(val.records)
    assert "CBGS" not in capsys.readouterr().out


def test_repeated_samples_get_their_own_augmentation(smoke_world):
    """A sample drawn twice by CBGS is augmented differently each time; draw 0 is the sample's own."""
    from distillbev.data.cbgs import CBGSDataset
    from distillbev.data.config import ReaderConfig
    from distillbev.data.nuscenes import NuScenesDataset

    reader = ReaderConfig(load_images=False, load_prev=False)
    ds = NuScenesDataset(
        smoke_world.dataroot, smoke_world.version, smoke_world.train_split, reader, train=True
    )
    wrapped = CBGSDataset(ds, [0, 1, 0], num_source=2)
    assert wrapped.repeat == [0, 0, 1]
    first, again = wrapped[0], wrapped[2]
    np.testing.assert_array_equal(first.bev_aug, ds[0].bev_aug)  # first draw = the plain reader's
    assert not np.allclose(first.bev_aug, again.bev_aug)
