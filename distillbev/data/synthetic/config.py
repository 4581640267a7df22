"""The synthetic world's knobs. Presets (values only) live in configs/data/{smoke,small,medium}.yaml and
are loaded with ``distillbev.config.load_config(WorldConfig, [yaml], overrides)``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WorldConfig:
    """Size, sensors and population of the procedurally generated nuScenes-format world."""

    # ---- dataset layout
    version: str = "v1.0-synthetic"  # table folder name under the dataroot
    train_split: str = "synth_train"  # split names written to <version>/splits.json
    val_split: str = "synth_val"
    num_scenes: int = 10  # total scenes (train + val)
    num_val_scenes: int = 2  # the last scenes form the val split
    samples_per_scene: int = 20  # key frames per scene, 2 Hz (a 40-sample scene lasts 19.5 s)
    sweeps_per_keyframe: int = 2  # non-key LiDAR sweeps (20 Hz) written before each key frame
    workers: int = 1  # processes generating scenes in parallel (the output is identical for any value)

    # ---- cameras (6, nuScenes layout and n015 calibration)
    image_width: int = 320  # rendered resolution (px); nuScenes is 1600x900, intrinsics are scaled
    image_height: int = 180
    jpeg_quality: int = 90  # 1..100
    image_noise: float = 1.5  # std of the sensor noise added to every pixel (8-bit levels)
    shadows: bool = True  # cast sun shadows of objects onto the ground (about +25% render time)
    camera_time_offsets: bool = True  # cameras fire 4-46 ms before the LiDAR key frame, as on nuScenes
    camera_max_range: float = 250.0  # m; beyond it the ground fades into the sky

    # ---- LIDAR_TOP (32-beam spinning LiDAR, n015-like mounting)
    lidar_beams: int = 32  # vertical channels, evenly spaced from lidar_fov_down to lidar_fov_up
    lidar_fov_up: float = 10.67  # deg
    lidar_fov_down: float = -30.67  # deg
    lidar_azimuth_steps: int = 1084  # rays per beam per rotation (0.33 deg)
    lidar_max_range: float = 70.0  # m
    lidar_min_range: float = 1.0  # m; closer returns are discarded
    lidar_range_noise: float = 0.02  # std of the range noise (m)
    lidar_dropout: float = 0.05  # probability that any return is lost
    lidar_intensity_noise: float = 0.15  # relative std of the intensity

    # ---- scene layout and motion
    annotation_range: float = 70.0  # objects farther than this from the ego (m) are not annotated
    ego_speed_min: float = 3.0  # m/s
    ego_speed_max: float = 10.0  # m/s
    straight_road_fraction: float = 0.4  # share of scenes on a straight road, the rest are curved
    min_curve_radius: float = 150.0  # m; curved roads have radius in [min_curve_radius, 1000]
    crosswalk_prob: float = 0.6  # probability of a zebra crossing near the ego path
    parking_lot_prob: float = 0.35  # probability of a parking lot beside the road
    bike_lane_prob: float = 0.4  # probability of bike lanes
    jam_lane_prob: float = 0.15  # probability that a lane other than the ego's is stopped (queue)

    # ---- annotated objects per scene (means; each scene draws 0.6-1.4x, at least 1 of every class)
    cars: int = 14
    trucks: int = 3
    buses: int = 2
    trailers: int = 2
    construction_vehicles: int = 1
    pedestrians: int = 12
    motorcycles: int = 2
    bicycles: int = 3
    traffic_cones: int = 6
    barriers: int = 4

    # ---- un-annotated distractors per scene
    buildings: int = 16  # facades along both sides of the road
    poles: int = 12  # street lamps, signs, traffic lights
    trees: int = 12
    clutter: int = 10  # dumpsters, bins, crates, benches, hydrants, bollards, planters, mailboxes

    def __post_init__(self) -> None:
        if self.num_scenes < 2 or not 1 <= self.num_val_scenes < self.num_scenes:
            raise ValueError("num_scenes must be >= 2 and 1 <= num_val_scenes < num_scenes")
        if self.samples_per_scene < 2:
            raise ValueError("samples_per_scene must be >= 2 (instances need two annotations for velocity)")
        if self.image_width < 16 or self.image_height < 9:
            raise ValueError("image_width must be >= 16 and image_height >= 9")
        if self.train_split == self.val_split:
            raise ValueError("train_split and val_split must differ")
        if not 0 <= self.sweeps_per_keyframe <= 9:
            raise ValueError("sweeps_per_keyframe must be in 0..9 (20 Hz sweeps between 2 Hz key frames)")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError("jpeg_quality must be in 1..100")
        if self.lidar_beams < 2 or self.lidar_azimuth_steps < 16 or self.lidar_fov_up <= self.lidar_fov_down:
            raise ValueError("lidar_beams >= 2, lidar_azimuth_steps >= 16 and lidar_fov_up > lidar_fov_down")
        if not 0 <= self.lidar_dropout < 1:
            raise ValueError("lidar_dropout must be in [0, 1)")
        if not 0 < self.ego_speed_min <= self.ego_speed_max:
            raise ValueError("need 0 < ego_speed_min <= ego_speed_max")
        if self.min_curve_radius < 50:
            raise ValueError("min_curve_radius must be >= 50 m")
        if self.workers < 1:
            raise ValueError("workers must be >= 1")
        counts = (
            self.cars,
            self.trucks,
            self.buses,
            self.trailers,
            self.construction_vehicles,
            self.pedestrians,
            self.motorcycles,
            self.bicycles,
            self.traffic_cones,
            self.barriers,
            self.buildings,
            self.poles,
            self.trees,
            self.clutter,
        )
        if min(counts) < 0:
            raise ValueError("object and distractor counts must be >= 0")
