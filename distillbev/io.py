"""Atomic file output: write to a temporary name in the same folder, then rename.

Nothing distillbev writes is ever left half-written: a crash leaves either the old file or none.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``.

    Works for files and folders alike (the caller creates whatever it writes at the yielded path).
    On an exception the temporary is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    target = tmp / path.name
    try:
        yield target
        if not target.exists():
            raise FileNotFoundError(f"nothing was written to the temporary {target}")
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        os.replace(target, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_text(path: str | Path, text: str) -> None:
    """Atomically write ``text`` to ``path``."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | Path, obj: Any, indent: int | None = 1) -> None:
    """Atomically write ``obj`` as JSON to ``path``."""
    write_text(path, json.dumps(obj, indent=indent))


#: What ``--overwrite`` may replace: a dataset (our world's config or a nuScenes table folder) or a run
#: folder (what ``train``/``distill``/``pretrain`` write). Anything else is never deleted.
DATASET_MARKERS = ("world_config.yaml", "v1.0-*")
RUN_MARKERS = ("config.yaml", "checkpoint.pt", "log.jsonl", "image_encoder.pt")


def output_kind(path: str | Path) -> str | None:
    """``"dataset"``, ``"run"`` or None for a folder that is neither (or does not exist)."""
    path = Path(path)
    if not path.is_dir():
        return None
    if any(any(path.glob(m)) for m in DATASET_MARKERS):
        return "dataset"
    if any((path / m).exists() for m in RUN_MARKERS):
        return "run"
    return None


def check_output_folder(path: str | Path, overwrite: bool, replaceable: tuple[str, ...], hint: str) -> bool:
    """Check that ``path`` may be written: absent, empty, or (with ``overwrite``) recognisably one of
    the ``replaceable`` kinds. Returns True when existing contents are to be replaced; raises
    FileExistsError naming the folder otherwise (``hint`` says what to pass instead). Deletes nothing."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"{path} exists and is not a directory")
    if not path.is_dir() or not any(path.iterdir()):
        return False
    if not overwrite:
        raise FileExistsError(f"{path} exists and is not empty ({hint})")
    if output_kind(path) not in replaceable:
        markers = {"dataset": DATASET_MARKERS, "run": RUN_MARKERS}
        names = [m for kind in replaceable for m in markers[kind]]
        raise FileExistsError(
            f"refusing to overwrite {path}: it is not a {' or '.join(replaceable)} folder (none of "
            f"{', '.join(names)} in it)"
        )
    return True


def check_writable(path: str | Path, folder: bool = False) -> None:
    """Fail now, before any work, if the file (or ``folder``) ``path`` could not be written later: the
    nearest existing folder on its way must let us create files. Leaves nothing behind."""
    path = Path(path).absolute()
    if path.is_dir() and not folder:
        raise IsADirectoryError(f"cannot write {path}: it is a directory")
    parent = path if folder and path.is_dir() else path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise NotADirectoryError(f"cannot write {path}: {parent} is not a directory")
    try:
        fd, probe = tempfile.mkstemp(prefix=".distillbev_probe.", dir=parent)
    except OSError as e:
        raise PermissionError(f"cannot write {path}: {parent} is not writable ({e.strerror})") from None
    os.close(fd)
    os.remove(probe)


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises KeyboardInterrupt like Ctrl-C, so ``finally`` clauses (temporary
    folders) run; the previous handler is restored after."""
    import signal

    def _raise(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
