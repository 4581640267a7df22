"""How samples are read and augmented (``RunConfig.data.reader``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from distillbev.structures import POINT_RANGE


@dataclass(frozen=True)
class ImageAugConfig:
    """Per-camera image augmentation (BEVDet style), folded into post_rot / post_tran."""

    final_size: tuple[int, int] = (64, 176)  # network input (H, W) = student.image_size (RunConfig checks)
    # resize r = final W / source W + U(jitter) (train) or + test_resize_offset (test); BEVDet's values
    resize_jitter: tuple[float, float] = (-0.06, 0.11)
    test_resize_offset: float = 0.04
    flip: bool = True  # random horizontal flip (p = 0.5, train)
    rotate_deg: float = 5.4  # rotation drawn from U(-r, r) degrees (train)

    def __post_init__(self) -> None:
        if len(self.final_size) != 2 or min(self.final_size) < 1:
            raise ValueError(f"final_size must be (H, W) > 0, got {self.final_size}")
        if self.resize_jitter[0] > self.resize_jitter[1]:
            raise ValueError(f"resize_jitter must be (low, high) with low <= high, got {self.resize_jitter}")
        if self.rotate_deg < 0:
            raise ValueError(f"rotate_deg must be >= 0, got {self.rotate_deg}")


@dataclass(frozen=True)
class BEVAugConfig:
    """Global BEV augmentation applied to points, boxes and camera extrinsics together."""

    rotate: float = 0.3925  # rad, U(-r, r)
    scale: tuple[float, float] = (0.95, 1.05)
    flip_x: bool = True  # p = 0.5 each
    flip_y: bool = True
    # One coin for both flips: x and y flip together or not at all, a half turn, which keeps the scene's
    # handedness (which side of the road traffic keeps to). Independent flips mirror it half of the time,
    # and a mirrored scene holds no rule for the front/back of a vehicle from where it drives
    # (docs/architectures.md, "BEV augmentation and handedness"). Needs flip_x and flip_y.
    flip_together: bool = False

    def __post_init__(self) -> None:
        if not 0 < self.scale[0] <= self.scale[1]:
            raise ValueError(f"scale must be (low, high) with 0 < low <= high, got {self.scale}")
        if self.rotate < 0:
            raise ValueError(f"rotate must be >= 0, got {self.rotate}")
        if self.flip_together and not (self.flip_x and self.flip_y):
            raise ValueError("flip_together needs flip_x and flip_y both true (it flips both at once)")


@dataclass(frozen=True)
class GTPasteGroups:
    """Per class, how many objects of it a training sample should hold after GT-paste (CenterPoint's
    ``sample_groups``): ``max(0, N - objects of the class already in the sample)`` are drawn. Defaults
    are the tiny scale's (the small world holds 1-6 objects of a class per sample); the full presets
    state CenterPoint's nuScenes values (car 2, truck 3, construction_vehicle 7, bus 4, trailer 6,
    barrier 2, motorcycle 6, bicycle 6, pedestrian 2, traffic_cone 2)."""

    car: int = 2
    truck: int = 2
    construction_vehicle: int = 2
    bus: int = 2
    trailer: int = 2
    barrier: int = 2
    motorcycle: int = 2
    bicycle: int = 2
    pedestrian: int = 2
    traffic_cone: int = 2

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if value < 0:
                raise ValueError(f"sample_groups.{name} must be >= 0, got {value}")


@dataclass(frozen=True)
class GTPasteConfig:
    """GT-paste (object sampling, SECOND/CenterPoint's database sampler) for the LiDAR teachers' training
    samples (``distillbev/data/gt_paste.py``): objects of other training samples, each with its points,
    pasted where they were in their own LiDAR frame, before the BEV augmentation. Teachers only: camera
    images cannot show pasted objects, so a reader that loads images refuses it."""

    enabled: bool = False
    sample_groups: GTPasteGroups = field(default_factory=GTPasteGroups)
    min_points: int = 5  # database objects with fewer points (key frame + sweeps) are never pasted

    def __post_init__(self) -> None:
        if self.min_points < 1:
            raise ValueError(f"min_points must be >= 1, got {self.min_points}")


@dataclass(frozen=True)
class ReaderConfig:
    """What each sample holds."""

    num_sweeps: int = 2  # previous LiDAR sweeps merged into the key frame (full scale: 9)
    point_range: tuple[float, ...] = POINT_RANGE  # x, y, z min then max (m): points and GT boxes kept
    remove_close: float = (
        1.0  # drop points with |x| and |y| < this in their sensor's frame (m), as the devkit
    )
    pad_empty_sweeps: bool = True  # no earlier sweep (scene start): repeat the key frame num_sweeps times
    drop_empty_boxes: bool = True  # drop GT boxes with no LiDAR/radar point (the devkit ignores them too)
    load_images: bool = True  # teachers need no images
    load_prev: bool = True  # the previous key frame's images (temporal students)
    image_aug: bool = True  # train-time image augmentation
    bev_aug: bool = True  # train-time BEV augmentation
    image: ImageAugConfig = field(default_factory=ImageAugConfig)
    bev: BEVAugConfig = field(default_factory=BEVAugConfig)
    virtual_points: bool = False  # append MVP virtual/painted points (17-d points); set by MVP runs
    load_masks: bool = False  # per-pixel class maps from <dataroot>/masks (image pretraining only)
    gt_paste: GTPasteConfig = field(default_factory=GTPasteConfig)  # train split, teachers only

    def __post_init__(self) -> None:
        if len(self.point_range) != 6:
            raise ValueError("point_range needs 6 values (x_min, y_min, z_min, x_max, y_max, z_max)")
        if self.num_sweeps < 0:
            raise ValueError("num_sweeps must be >= 0")
