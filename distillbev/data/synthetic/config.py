"""The synthetic world's knobs (presets in configs/data/{smoke,small,medium}.yaml)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WorldConfig:
    """Size, sensors and population of the procedurally generated nuScenes-format world."""

    version: str = "v1.0-synthetic"  # table folder name under the dataroot
    train_split: str = "synth_train"  # split names written to <version>/splits.json
    val_split: str = "synth_val"
    num_scenes: int = 10  # total scenes (train + val)
    num_val_scenes: int = 2  # the last scenes form the val split
    samples_per_scene: int = 20  # key frames per scene, 2 Hz
    sweeps_per_keyframe: int = 2  # non-key LiDAR sweeps (20 Hz) written before each key frame
    image_width: int = 320  # rendered camera resolution (px); nuScenes is 1600x900
    image_height: int = 180
    jpeg_quality: int = 90
    lidar_beams: int = 32  # vertical channels, from lidar_fov_up to lidar_fov_down
    lidar_fov_up: float = 10.67  # degrees
    lidar_fov_down: float = -30.67  # degrees
    lidar_azimuth_steps: int = 1084  # rays per beam per rotation
    lidar_max_range: float = 70.0  # m
    lidar_range_noise: float = 0.02  # std of the range noise (m)
    lidar_dropout: float = 0.05  # probability that a return is lost
    annotation_range: float = 70.0  # objects farther than this from the ego (m) are not annotated
    ego_speed_min: float = 4.0  # m/s
    ego_speed_max: float = 9.0
    cars: int = 14  # annotated objects per scene, by class (each class has at least one)
    trucks: int = 3
    buses: int = 2
    trailers: int = 2
    construction_vehicles: int = 1
    pedestrians: int = 12
    motorcycles: int = 2
    bicycles: int = 3
    traffic_cones: int = 6
    barriers: int = 4
    buildings: int = 14  # un-annotated distractors per scene
    poles: int = 12
    trees: int = 12
    clutter: int = 8  # dumpsters, boxes and benches on the sidewalks (look like objects, are not)
    workers: int = 1  # processes generating scenes in parallel (output is identical for any value)

    def __post_init__(self) -> None:
        if self.num_scenes < 2 or not 1 <= self.num_val_scenes < self.num_scenes:
            raise ValueError("num_scenes must be >= 2 and 1 <= num_val_scenes < num_scenes")
        if self.samples_per_scene < 2:
            raise ValueError("samples_per_scene must be >= 2 (instances need two annotations for velocity)")
        if self.image_width < 16 or self.image_height < 16:
            raise ValueError("image_width and image_height must be >= 16")
        if self.train_split == self.val_split:
            raise ValueError("train_split and val_split must differ")
