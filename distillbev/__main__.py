"""``python -m distillbev ...`` and ``torchrun ... -m distillbev ...``: the ``distillbev.cli`` commands."""

from distillbev.cli import main

if __name__ == "__main__":
    main()
