"""The repository's own folders: the one definition of the repository root.

Presets (``configs/``), shipped checkpoints (``checkpoints/``) and default run folders (``runs/``) are
found relative to the checkout that holds the ``distillbev`` package, whatever the working directory.
"""

from __future__ import annotations

from pathlib import Path

#: The repository root: the folder that holds the ``distillbev`` package.
ROOT = Path(__file__).resolve().parent.parent
#: The YAML presets.
CONFIGS = ROOT / "configs"
#: Shipped checkpoints (weights with their provenance).
CHECKPOINTS = ROOT / "checkpoints"
