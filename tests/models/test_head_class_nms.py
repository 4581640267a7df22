"""Class-aware NMS of a single-task CenterHead (the CPU presets put all 10 classes in one task)."""

import torch

from distillbev.models.heads import CenterHead, HeadConfig
from distillbev.structures import CLASS_NAMES, BEVGrid, class_index


def _head(nms: str) -> CenterHead:
    cfg = HeadConfig(
        share_channels=8,
        head_channels=8,
        tasks=(CLASS_NAMES,),
        circle_radius=(1.0,),
        class_aware_nms=True,
        nms=nms,
    )
    return CenterHead(8, BEVGrid(cell=3.2), cfg)


def _boxes(rows):
    b = torch.zeros(len(rows), 9)
    for i, (x, y, l, w) in enumerate(rows):
        b[i, :2] = torch.tensor([x, y])
        b[i, 3:6] = torch.tensor([l, w, 1.5])
    return b


def test_overlapping_boxes_of_different_classes_both_survive():
    head = _head("rotate")
    boxes = _boxes([(0, 0, 4, 2), (0.2, 0, 4, 2), (0.1, 0, 4, 2)])
    scores = torch.tensor([0.9, 0.8, 0.7])
    car, truck = class_index("car"), class_index("truck")
    labels = torch.tensor([car, car, truck])
    keep = head._nms_per_class(boxes, scores, labels, 0)
    assert keep.tolist() == [0, 2]  # the second car is suppressed by the first; the truck is not


def test_scale_nms_inflates_pedestrians_per_class():
    head = _head("scale")
    # Two pedestrians 0.6 m apart do not overlap as 0.7 m boxes, but do when inflated x4.5 (IoU > 0.5).
    boxes = _boxes([(0, 0, 0.7, 0.7), (0.6, 0, 0.7, 0.7), (10, 0, 0.7, 0.7)])
    scores = torch.tensor([0.9, 0.8, 0.7])
    ped = class_index("pedestrian")
    keep = head._nms_per_class(boxes, scores, torch.tensor([ped, ped, ped]), 0)
    assert keep.tolist() == [0, 2]
    plain = _head("rotate")
    assert plain._nms_per_class(boxes, scores, torch.tensor([ped, ped, ped]), 0).tolist() == [0, 1, 2]
