"""distillbev: DistillBEV (ICCV 2023) in pure PyTorch."""

__version__ = "0.1.0"
