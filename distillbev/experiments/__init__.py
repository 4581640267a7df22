"""``distillbev reproduce``: the paper's teacher x student grid and ablation tables as a resumable plan.

``plan.py`` lists the cells and their run folders, ``runner.py`` trains what is missing, ``stats.py``
turns finished runs into mean +- std per cell and gains over the baseline (``results.md`` / ``.json``).
"""
