"""Training logs: one JSON line per logged step (``log.jsonl``) and TensorBoard scalars."""

from __future__ import annotations

import json
import time
from pathlib import Path


class RunLogger:
    """Writes scalars to ``<run_dir>/log.jsonl`` and ``<run_dir>/tb`` (main process only)."""

    def __init__(self, run_dir: Path, enabled: bool = True, tensorboard: bool = True):
        self.enabled = enabled
        self.start = time.time()
        self._tb = None
        if not enabled:
            return
        run_dir.mkdir(parents=True, exist_ok=True)
        self._file = open(run_dir / "log.jsonl", "a", buffering=1)  # noqa: SIM115 - closed in close()
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(run_dir / "tb"))

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
