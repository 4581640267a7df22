"""Training logs: one JSON line per logged step (``log.jsonl``) and TensorBoard scalars."""

from __future__ import annotations

import json
import time
from pathlib import Path

from distillbev.io import write_text


def read_log(path: Path, strict: bool = False) -> list[dict]:
    """The rows of a ``log.jsonl`` that carry an integer ``step``, in file order; none when the file is
    absent. A line that is not JSON (a row cut short by a kill) is skipped, or with ``strict`` is an
    error naming the file and line."""
    path = Path(path)
    rows = []
    if not path.is_file():
        return rows
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            if strict:
                raise ValueError(f"{path}:{n}: not a JSON row ({e})") from None
            continue
        if isinstance(row, dict) and isinstance(row.get("step"), int):
            rows.append(row)
    return rows


def truncate_log(path: Path, last_step: int) -> float:
    """Keep the rows of ``log.jsonl`` up to ``last_step`` (a resumed checkpoint's step), atomically, so
    the steps run again after a resume are not logged twice. A row cut short by a kill is dropped too.
    Returns the last kept row's ``time`` (0 when none)."""
    if not path.is_file():
        return 0.0
    kept = [row for row in read_log(path) if row["step"] <= last_step]
    write_text(path, "".join(f"{json.dumps(row)}\n" for row in kept))
    return float(kept[-1].get("time", 0.0)) if kept else 0.0


class RunLogger:
    """Writes scalars to ``<run_dir>/log.jsonl`` and ``<run_dir>/tb`` (main process only).

    ``resume_step``: the step of the checkpoint a run resumes from; later rows (and TensorBoard events)
    of the interrupted run are dropped first, and ``time`` continues from the last kept row.
    """

    def __init__(
        self, run_dir: Path, enabled: bool = True, tensorboard: bool = True, resume_step: int | None = None
    ):
        self.enabled = enabled
        self.start = time.time()
        self._tb = None
        if not enabled:
            return
        run_dir.mkdir(parents=True, exist_ok=True)
        if resume_step is not None:
            self.start -= truncate_log(run_dir / "log.jsonl", resume_step)
        self._file = open(run_dir / "log.jsonl", "a", buffering=1)  # noqa: SIM115 - closed in close()
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            purge = resume_step + 1 if resume_step is not None else None
            self._tb = SummaryWriter(str(run_dir / "tb"), purge_step=purge)

    def log(self, step: int, scalars: dict[str, float], **extra: object) -> None:
        """Record ``scalars`` at ``step``."""
        if not self.enabled:
            return
        row = {"step": step, "time": round(time.time() - self.start, 2), **extra, **scalars}
        self._file.write(json.dumps(row) + "\n")
        if self._tb is not None:
            for k, v in scalars.items():
                self._tb.add_scalar(k, v, step)

    def close(self) -> None:
        """Flush and close."""
        if not self.enabled:
            return
        self._file.close()
        if self._tb is not None:
            self._tb.close()
