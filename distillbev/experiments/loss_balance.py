"""How a run's training loss is shared between its task terms and its imitation terms.

Reads a run folder's ``log.jsonl`` (one row per logged step, ``loss/<term>`` scalars) and averages each
term over equal phases of training. The imitation terms are the ``loss/kd_*`` ones; the task terms are
every other ``loss/*`` term but ``loss/total``. Used to see whether distillation's loss dominates the
detection and depth losses (docs/results/overview.md, "Distillation").
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from distillbev.train.logging import read_log


@dataclass(frozen=True)
class Phase:
    """Mean of every loss term over the logged steps ``first..last`` (inclusive)."""

    first: int
    last: int
    terms: dict[str, float]

    @property
    def task(self) -> float:
        return sum(v for k, v in self.terms.items() if not k.startswith("kd_"))

    @property
    def imitation(self) -> float:
        return sum(v for k, v in self.terms.items() if k.startswith("kd_"))


def read_loss_rows(log: Path) -> list[dict[str, float]]:
    """The rows of ``log.jsonl`` that carry loss terms: ``{"step": s, "<term>": value, ...}`` (the
    ``loss/`` prefix dropped, ``total`` left out), in step order."""
    log = Path(log)
    if not log.is_file():
        raise FileNotFoundError(f"{log}: no training log (a run folder holds log.jsonl)")
    rows = []
    for row in read_log(log, strict=True):
        terms = {k[5:]: float(v) for k, v in row.items() if k.startswith("loss/") and k != "loss/total"}
        if terms:
            rows.append({"step": row["step"], **terms})
    if not rows:
        raise ValueError(f"{log}: no loss/* scalars logged")
    return sorted(rows, key=lambda r: r["step"])


def loss_phases(log: Path, phases: int = 4) -> list[Phase]:
    """Split the logged rows into ``phases`` consecutive groups of (nearly) equal size and average every
    term in each. A term missing from a row counts as absent (not zero) in that row."""
    if phases < 1:
        raise ValueError(f"phases must be >= 1, got {phases}")
    rows = read_loss_rows(log)
    phases = min(phases, len(rows))
    out = []
    for p in range(phases):
        part = rows[p * len(rows) // phases : (p + 1) * len(rows) // phases]
        names = sorted({k for r in part for k in r if k != "step"})
        terms = {}
        for k in names:
            values = [r[k] for r in part if k in r]
            terms[k] = sum(values) / len(values)
        out.append(Phase(part[0]["step"], part[-1]["step"], terms))
    return out


def loss_balance_table(runs: dict[str, Path], phases: int = 4) -> str:
    """A Markdown table: per run and phase, the mean task loss, the mean imitation loss and their ratio,
    then the largest terms."""
    lines = [
        "| run | steps | task loss | imitation loss | imitation / task | terms (mean) |",
        "|---|---|---|---|---|---|",
    ]
    for name, run in runs.items():
        for ph in loss_phases(Path(run) / "log.jsonl", phases):
            ratio = f"{ph.imitation / ph.task:.2f}" if ph.task > 0 else "-"
            top = sorted(ph.terms.items(), key=lambda kv: -kv[1])[:6]
            terms = ", ".join(f"{k} {v:.3g}" for k, v in top)
            lines.append(
                f"| {name} | {ph.first}-{ph.last} | {ph.task:.3f} | {ph.imitation:.3f} | {ratio} | {terms} |"
            )
    return "\n".join(lines) + "\n"
